//! `fraiseql events status`: what `nats stream report` and `nats consumer report` would tell,
//! plus what only fraiseql knows: each tenant's outbox backlog (committed, not yet published)
//! and the dead letters per consumer group.

use std::time::Duration;

use fraiseql_config::Config;

use fraiseql_engine::connections::Pools;
use fraiseql_engine::tenancy::strategy;

use crate::provision;
use crate::server;

/// The stream, as JetStream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// `[observers.stream] name`.
    pub name: String,
    /// Its subjects.
    pub subjects: Vec<String>,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// First and last sequence.
    pub first_seq: u64,
    /// Last sequence.
    pub last_seq: u64,
    /// Configured replicas.
    pub replicas: usize,
    /// The cluster's leader of the stream and its replicas (`name (current|lagging)`), if
    /// clustered.
    pub cluster: Option<String>,
}

/// One consumer group (`[[subscribers]] consumer_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// Messages not yet delivered to it.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: u64,
    /// Delivered more than once (and not yet acknowledged).
    pub redelivered: u64,
    /// Its last acknowledged stream sequence.
    pub ack_floor: u64,
    /// Set when the consumer does not exist on the stream (yet): no server has started it.
    pub missing: Option<String>,
}

/// One tenant's (or the single database's) outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxStatus {
    /// The tenant key, or the database name without tenancy.
    pub target: String,
    /// Events committed and not yet published.
    pub unsent: i64,
    /// How old the oldest of them is, in seconds.
    pub oldest_secs: Option<f64>,
    /// Set when the outbox could not be read.
    pub error: Option<String>,
}

/// Everything `events status` prints.
#[derive(Debug, Clone)]
pub struct EventsStatus {
    /// `Err` with the reason when NATS or the stream could not be read.
    pub stream: Result<StreamStatus, String>,
    /// Per consumer group.
    pub consumers: Vec<ConsumerStatus>,
    /// Per tenant.
    pub outboxes: Vec<OutboxStatus>,
    /// Dead letters per consumer group (`Err`: the table could not be read).
    pub dead_letters: Result<Vec<(String, usize)>, String>,
}

/// Reads the stream, the consumer groups, every tenant's outbox and the dead letters.
pub async fn report(config: &Config, pools: &Pools) -> EventsStatus {
    let (stream, consumers) = match nats_status(config).await {
        Ok((stream, consumers)) => (Ok(stream), consumers),
        Err(e) => (Err(e), Vec::new()),
    };
    let outboxes = outboxes(config, pools).await;
    let dead_letters = match fraiseql_engine::events::dead_letter::list(config, pools).await {
        Ok(letters) => {
            let mut by: Vec<(String, usize)> = config
                .subscribers
                .iter()
                .map(|s| (s.consumer_group.clone(), 0))
                .collect();
            for l in letters {
                match by.iter_mut().find(|(c, _)| *c == l.consumer) {
                    Some((_, n)) => *n += 1,
                    None => by.push((l.consumer, 1)),
                }
            }
            Ok(by)
        }
        Err(e) => Err(e.to_string()),
    };
    EventsStatus {
        stream,
        consumers,
        outboxes,
        dead_letters,
    }
}

async fn nats_status(config: &Config) -> Result<(StreamStatus, Vec<ConsumerStatus>), String> {
    let client = fraiseql_engine::nats::probe(&config.nats, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let name = &config.observers.stream.name;
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| format!("stream `{name}`: {e} (it is created by the first server that starts with [observers] enabled)"))?;
    let info = stream.info().await.map_err(|e| e.to_string())?;
    let cluster = info.cluster.as_ref().map(|c| {
        let mut s = format!("leader {}", c.leader.as_deref().unwrap_or("none"));
        for r in &c.replicas {
            s.push_str(&format!(
                ", replica {} ({})",
                r.name,
                if r.current { "current" } else { "lagging" }
            ));
        }
        s
    });
    let st = StreamStatus {
        name: info.config.name.clone(),
        subjects: info.config.subjects.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
        replicas: info.config.num_replicas,
        cluster,
    };
    let mut consumers = Vec::new();
    let mut groups: Vec<&str> = config
        .subscribers
        .iter()
        .map(|s| s.consumer_group.as_str())
        .collect();
    groups.dedup();
    for group in groups {
        let c = match stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(group)
            .await
        {
            Ok(mut c) => match c.info().await {
                Ok(i) => ConsumerStatus {
                    name: group.to_owned(),
                    pending: i.num_pending,
                    ack_pending: i.num_ack_pending as u64,
                    redelivered: i.num_redelivered as u64,
                    ack_floor: i.ack_floor.stream_sequence,
                    missing: None,
                },
                Err(e) => missing(group, e.to_string()),
            },
            Err(e) => missing(group, e.to_string()),
        };
        consumers.push(c);
    }
    Ok((st, consumers))
}

fn missing(group: &str, reason: String) -> ConsumerStatus {
    ConsumerStatus {
        name: group.to_owned(),
        pending: 0,
        ack_pending: 0,
        redelivered: 0,
        ack_floor: 0,
        missing: Some(reason),
    }
}

const BACKLOG: &str = "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 FROM fraiseql_outbox WHERE sent_at IS NULL";

async fn outboxes(config: &Config, pools: &Pools) -> Vec<OutboxStatus> {
    let mut out = Vec::new();
    let read = |target: String, r: Result<tokio_postgres::Row, String>| match r {
        Ok(row) => OutboxStatus {
            target,
            unsent: row.get(0),
            oldest_secs: row.get(1),
            error: None,
        },
        Err(e) => OutboxStatus {
            target,
            unsent: 0,
            oldest_secs: None,
            error: Some(e),
        },
    };
    if !config.multi_tenancy.enabled {
        let r = async {
            let lease = pools
                .lease(fraiseql_config::TENANT_DATABASE)
                .await
                .map_err(|e| e.message)?;
            lease
                .client()
                .query_one(BACKLOG, &[])
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        out.push(read(fraiseql_config::TENANT_DATABASE.to_owned(), r));
        return out;
    }
    let tenants = match provision::list(config).await {
        Ok(t) => t,
        Err(e) => {
            out.push(read("(registry)".to_owned(), Err(e.to_string())));
            return out;
        }
    };
    for rec in tenants {
        let r = async {
            let path = (rec.schema != "public").then_some(rec.schema.as_str());
            let c = server::connect(&rec.server, Some(&rec.database), path)
                .await
                .map_err(|e| e.to_string())?;
            // Tenants that share tables share one outbox: their rows are told apart by key.
            let shared = strategy::named(&rec.strategy).is_some_and(|s| s.shares_tables());
            let sql = if shared {
                format!("{BACKLOG} AND tenant_key = $1")
            } else {
                BACKLOG.to_owned()
            };
            let row = if shared {
                c.query_one(&sql, &[&rec.key]).await
            } else {
                c.query_one(&sql, &[]).await
            };
            row.map_err(|e| e.to_string())
        }
        .await;
        out.push(read(rec.key.clone(), r));
    }
    out
}
