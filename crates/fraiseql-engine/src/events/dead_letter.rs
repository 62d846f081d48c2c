//! Dead letters: messages a consumer group could not handle after `max_deliver` deliveries, with
//! the payload, the last error and the attempts. `fraiseql events dead-letters list|retry`.

use fraiseql_config::Config;
use serde::Serialize;

use crate::connections::{Lease, Pools};
use crate::resolvers::Resolvers;

/// The table, created when the event runtime starts. A message is dead-lettered once per
/// consumer group: by its stream sequence and by its event id (a redelivery, a second instance
/// or a retried insert adds nothing). `retry_started_at` marks a row an operator's retry has
/// claimed.
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS fraiseql_dead_letter (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    subject text NOT NULL,
    payload text NOT NULL,
    error text NOT NULL,
    attempts bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE fraiseql_dead_letter ADD COLUMN IF NOT EXISTS stream text;
ALTER TABLE fraiseql_dead_letter ADD COLUMN IF NOT EXISTS stream_sequence bigint;
ALTER TABLE fraiseql_dead_letter ADD COLUMN IF NOT EXISTS event_id text;
ALTER TABLE fraiseql_dead_letter ADD COLUMN IF NOT EXISTS retry_started_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS fraiseql_dead_letter_message ON fraiseql_dead_letter (consumer, stream, stream_sequence);
CREATE UNIQUE INDEX IF NOT EXISTS fraiseql_dead_letter_event ON fraiseql_dead_letter (consumer, event_id);";

/// A message a consumer group gives up on.
#[derive(Debug, Clone)]
pub struct Letter<'a> {
    /// The consumer group.
    pub consumer: &'a str,
    /// The message's subject.
    pub subject: &'a str,
    /// Its body.
    pub payload: &'a str,
    /// The last error.
    pub error: &'a str,
    /// Deliveries so far.
    pub attempts: i64,
    /// The JetStream stream.
    pub stream: &'a str,
    /// Its sequence in the stream.
    pub sequence: Option<i64>,
    /// Its `event_id`, if it has one.
    pub event_id: Option<&'a str>,
}

/// Records a dead letter in `[databases.<database>]`, once per message (`ON CONFLICT DO
/// NOTHING`: a redelivery, a second instance or a repeated insert adds nothing); true if this
/// call recorded it.
pub async fn insert(pools: &Pools, database: &str, l: &Letter<'_>) -> Result<bool, String> {
    // The table exists: the event runtime creates it at start-up (and `list` does).
    let client = pools.lease(database).await.map_err(|e| e.message)?;
    client
        .execute(
            "INSERT INTO fraiseql_dead_letter (consumer, subject, payload, error, attempts, stream, stream_sequence, event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[&l.consumer, &l.subject, &l.payload, &l.error, &l.attempts, &l.stream, &l.sequence, &l.event_id],
        )
        .await
        .map(|n| n == 1)
        .map_err(|e| e.to_string())
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Row id (for `retry --id`).
    pub id: i64,
    /// The consumer group.
    pub consumer: String,
    /// The message's subject.
    pub subject: String,
    /// The message body.
    pub payload: String,
    /// The last error.
    pub error: String,
    /// Deliveries (and retries) so far.
    pub attempts: i64,
    /// When it arrived here (RFC 3339).
    pub created_at: String,
    /// When an operator's retry claimed it, if one did and did not finish (outcome unknown:
    /// `retry --id N --force` runs it again).
    pub retry_started_at: Option<String>,
}

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The database is not reachable.
    #[error("dead letter database `{0}`: {1}")]
    Database(String, String),
}

/// The database holding the dead letters: `[observers] dead_letter_database`, else the registry
/// (multi-tenant) or `tenant`.
pub fn database(config: &Config) -> String {
    config
        .observers
        .dead_letter_database
        .clone()
        .unwrap_or_else(|| {
            if config.multi_tenancy.enabled {
                config.multi_tenancy.registry.clone()
            } else {
                fraiseql_config::TENANT_DATABASE.to_owned()
            }
        })
}

async fn client(config: &Config, pools: &Pools) -> Result<Lease, DeadLetterError> {
    let db = database(config);
    let c = pools
        .lease(&db)
        .await
        .map_err(|e| DeadLetterError::Database(db.clone(), e.message))?;
    c.batch_execute(DDL)
        .await
        .map_err(|e| DeadLetterError::Database(db, e.to_string()))?;
    Ok(c)
}

/// Every dead letter, oldest first.
pub async fn list(config: &Config, pools: &Pools) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let c = client(config, pools).await?;
    let rows = c
        .query(
            "SELECT id, consumer, subject, payload, error, attempts, created_at::text, retry_started_at::text FROM fraiseql_dead_letter ORDER BY id",
            &[],
        )
        .await
        .map_err(|e| DeadLetterError::Database(database(config), e.to_string()))?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            consumer: r.get(1),
            subject: r.get(2),
            payload: r.get(3),
            error: r.get(4),
            attempts: r.get(5),
            created_at: r.get(6),
            retry_started_at: r.get(7),
        })
        .collect())
}

/// What a retry did to one dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    /// Its group's statement committed: the dead letter is gone.
    Done(i64),
    /// It failed again (the error is recorded, attempts counted).
    Failed(i64, String),
    /// Another retry holds it (or one was interrupted: `--force` takes it over).
    Claimed(i64),
    /// The handler ran but the dead letter could not be removed: it stays claimed, and is not
    /// run again unless forced.
    Unconfirmed(i64, String),
}

/// Runs each dead letter's consumer-group statement again (`id`: only that one). A success
/// deletes the dead letter; a failure records the new error. Each row is claimed first (under
/// `FOR UPDATE SKIP LOCKED`, marked `retry_started_at` and committed) so two operators never run
/// one handler twice; `force` also takes rows whose claim was interrupted. Groups handled by
/// Rust code need [`retry_with`] and the application's resolvers.
pub async fn retry(
    config: &Config,
    pools: &Pools,
    id: Option<i64>,
    force: bool,
) -> Result<Vec<Retried>, DeadLetterError> {
    retry_with(config, pools, &Resolvers::new(), id, force).await
}

/// [`retry`] with the application's Rust subscriber handlers.
pub async fn retry_with(
    config: &Config,
    pools: &Pools,
    resolvers: &Resolvers,
    id: Option<i64>,
    force: bool,
) -> Result<Vec<Retried>, DeadLetterError> {
    let c = client(config, pools).await?;
    let fail =
        |e: tokio_postgres::Error| DeadLetterError::Database(database(config), e.to_string());
    let shared = std::sync::Arc::new(pools.clone());
    let mut out = Vec::new();
    for dl in list(config, pools).await? {
        if id.is_some_and(|i| i != dl.id) {
            continue;
        }
        let claimed = c
            .query_opt(
                "UPDATE fraiseql_dead_letter SET retry_started_at = now() WHERE id = \
                 (SELECT id FROM fraiseql_dead_letter WHERE id = $1 AND (retry_started_at IS NULL OR $2) FOR UPDATE SKIP LOCKED) \
                 RETURNING attempts",
                &[&dl.id, &force],
            )
            .await
            .map_err(fail)?;
        let Some(row) = claimed else {
            out.push(Retried::Claimed(dl.id));
            continue;
        };
        let dl = DeadLetter {
            attempts: row.get(0),
            ..dl
        };
        match retry_one(config, &shared, resolvers, &dl).await {
            Ok(()) => match c
                .execute("DELETE FROM fraiseql_dead_letter WHERE id = $1", &[&dl.id])
                .await
            {
                Ok(_) => out.push(Retried::Done(dl.id)),
                Err(e) => out.push(Retried::Unconfirmed(dl.id, e.to_string())),
            },
            Err(e) => {
                c.execute(
                    "UPDATE fraiseql_dead_letter SET error = $2, attempts = attempts + 1, retry_started_at = NULL WHERE id = $1",
                    &[&dl.id, &e],
                )
                .await
                .map_err(fail)?;
                out.push(Retried::Failed(dl.id, e));
            }
        }
    }
    Ok(out)
}

async fn retry_one(
    config: &Config,
    pools: &std::sync::Arc<Pools>,
    resolvers: &Resolvers,
    dl: &DeadLetter,
) -> Result<(), String> {
    let s = config
        .subscribers
        .iter()
        .find(|s| s.consumer_group == dl.consumer)
        .ok_or_else(|| format!("consumer group `{}` is no longer configured", dl.consumer))?;
    let handler = super::handler::compile(s, resolvers).map_err(|e| e.to_string())?;
    let body: serde_json::Value =
        serde_json::from_str(&dl.payload).map_err(|e| format!("the message is not JSON: {e}"))?;
    if !body.is_object() {
        return Err("the message is not a JSON object".to_owned());
    }
    super::handler::run_handler(
        pools,
        &handler,
        &dl.subject,
        &dl.payload,
        &body,
        dl.attempts + 1,
    )
    .await
}
