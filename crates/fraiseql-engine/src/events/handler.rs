//! What a consumer group runs for a message: its `[[subscribers]] sql` in its database, or the
//! Rust handler registered for it. Used by the subscribers and by `fraiseql events dead-letters
//! retry` alike.

use std::sync::Arc;

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use super::EventsError;
use crate::connections::{Pools, TextParam};
use crate::resolvers::{EventContext, EventMessage, Resolvers, SubscriberFn};

/// The handler of a `[[subscribers]]` entry: its SQL, or the Rust handler registered for it.
pub(crate) fn compile(
    s: &fraiseql_config::SubscriberConfig,
    resolvers: &Resolvers,
) -> Result<Handler, EventsError> {
    let template = |message: String| EventsError::Template {
        group: s.consumer_group.clone(),
        message,
    };
    match (
        &s.sql,
        &s.database,
        resolvers.subscriber_fn(&s.consumer_group),
    ) {
        (Some(_), _, Some(_)) => Err(template(
            "is set and a Rust handler is registered too: keep one".to_owned(),
        )),
        (Some(sql), Some(database), None) => {
            let (sql, names) = fraiseql_schema::compile_open(sql).map_err(template)?;
            Ok(Handler::Sql {
                sql,
                names,
                database: database.clone(),
            })
        }
        (None, _, Some(f)) => Ok(Handler::Rust(f.clone())),
        _ => Err(template(
            "is missing and no Rust handler is registered for this consumer group".to_owned(),
        )),
    }
}

/// How a consumer group handles a message.
#[derive(Clone)]
pub(crate) enum Handler {
    /// `[[subscribers]] sql`, compiled: the statement, its parameter names, its database.
    Sql {
        sql: String,
        names: Vec<String>,
        database: String,
    },
    /// A Rust handler registered for the group.
    Rust(Arc<SubscriberFn>),
}

/// Runs the group's handler for one message; `Err` is the reason (for logs and dead letters).
pub(crate) async fn run_handler(
    pools: &Arc<Pools>,
    handler: &Handler,
    subject: &str,
    raw: &str,
    body: &Value,
    delivered: i64,
) -> Result<(), String> {
    match handler {
        Handler::Sql {
            sql,
            names,
            database,
        } => handle_sql(pools, database, sql, names, subject, raw, body).await,
        Handler::Rust(f) => f(
            EventContext {
                pools: pools.clone(),
            },
            EventMessage {
                subject: subject.to_owned(),
                payload: body.clone(),
                delivered,
            },
        )
        .await
        .map_err(|e| e.message),
    }
}

async fn handle_sql(
    pools: &Pools,
    database: &str,
    sql: &str,
    names: &[String],
    subject: &str,
    raw: &str,
    body: &Value,
) -> Result<(), String> {
    let client = pools.lease(database).await.map_err(|e| e.message)?;
    let values: Vec<Option<String>> = names
        .iter()
        .map(|n| match n.as_str() {
            "data" => Some(raw.to_owned()),
            "subject" => Some(subject.to_owned()),
            other => body.get(other).and_then(fraiseql_plan::param_text),
        })
        .collect();
    let params: Vec<Option<TextParam<'_>>> =
        values.iter().map(|v| v.as_deref().map(TextParam)).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let stmt = client.prepare(sql).await.map_err(|e| e.to_string())?;
    let tenant = body.get("tenant_id").and_then(Value::as_str);
    client
        .execute(&stmt, &refs)
        .instrument(crate::telemetry::sql(database, tenant, sql))
        .await
        .map(drop)
        .map_err(|e| match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        })
}
