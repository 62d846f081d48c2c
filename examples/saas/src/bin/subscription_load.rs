//! The load generator of `bench/subscriptions.sh`: many `graphql-transport-ws` clients of
//! `projectCreated`, spread over tenants, against a running server.
//!
//!   saas-subscription-load --port P --tokens FILE --clients N --mode hold|fanout|resume
//!                          [--mutations M] [--rate R] [--out FILE]
//!
//! `FILE` holds one `<tenant> <token>` per line; client `i` uses line `i mod lines`.
//! - `hold`: the clients subscribe, `LIVE n` is printed once all are live; they stay until
//!   standard input closes (the script measures the server meanwhile).
//! - `fanout`: once live, `M` projects are created at `R` a second, round robin over the
//!   tenants; every client must get each of its tenant's projects once.
//! - `resume`: each client gets one event of its tenant, all disconnect, `M` projects are
//!   created, then every client reconnects at once with its last position (`extensions.after`)
//!   and must get each missed project once, in order.
//!
//! Every event received is written to `--out` as `client tenant project position epoch`
//! (receive time, seconds), for `bench/subscriptions.py`; a summary line goes to stdout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// One received event.
#[derive(Clone)]
struct Received {
    project: String,
    position: String,
    at: f64,
}

struct Args {
    port: u16,
    tokens: Vec<(String, String)>,
    clients: usize,
    mode: String,
    mutations: usize,
    rate: f64,
    out: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        map.insert(k.trim_start_matches("--").to_owned(), v);
    }
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .with_context(|| format!("--{k} is required"))
    };
    let tokens = std::fs::read_to_string(get("tokens")?)?
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, k)| (t.to_owned(), k.trim().to_owned()))
        .collect::<Vec<_>>();
    if tokens.is_empty() {
        bail!("no `<tenant> <token>` line in --tokens");
    }
    Ok(Args {
        port: get("port")?.parse()?,
        tokens,
        clients: get("clients")?.parse()?,
        mode: get("mode")?,
        mutations: map.get("mutations").map_or(Ok(0), |v| v.parse())?,
        rate: map.get("rate").map_or(Ok(100.0), |v| v.parse())?,
        out: map.get("out").cloned(),
    })
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One subscribed client: its events are pushed into `log`; `live` counts clients whose
/// subscription is registered (a `pong` after the `subscribe`).
async fn client(
    port: u16,
    token: String,
    after: Option<String>,
    log: Arc<Mutex<Vec<Received>>>,
    live: Arc<AtomicUsize>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let mut req = format!("ws://127.0.0.1:{port}/graphql").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await?;
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    ))
    .await?;
    let extensions = after.map_or(json!({}), |a| json!({ "after": a }));
    ws.send(send(json!({"id": "p", "type": "subscribe", "payload": {
        "query": "subscription { projectCreated { id } }", "extensions": extensions }})))
        .await?;
    ws.send(send(json!({"type": "ping"}))).await?;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = &mut stopped => {
                let _ = ws.close(None).await;
                return Ok(());
            }
        };
        let Some(msg) = msg else { return Ok(()) };
        let Message::Text(text) = msg? else { continue };
        let v: Value = serde_json::from_str(text.as_str())?;
        match v["type"].as_str() {
            Some("pong") => {
                live.fetch_add(1, Ordering::Relaxed);
            }
            Some("next") => {
                let p = &v["payload"];
                let project = p["data"]["projectCreated"]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let position = p["extensions"]["position"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let mut log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push(Received {
                    project,
                    position,
                    at: now(),
                });
            }
            Some("error") => bail!("subscription refused: {v}"),
            _ => {}
        }
    }
}

/// The clients of a run.
struct Clients {
    logs: Vec<Arc<Mutex<Vec<Received>>>>,
    live: Arc<AtomicUsize>,
    stop: Arc<tokio::sync::Notify>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Clients {
    fn open(a: &Args, after: &[Option<String>]) -> Self {
        let live = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut logs = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..a.clients {
            let log = Arc::new(Mutex::new(Vec::new()));
            logs.push(log.clone());
            let token = a.tokens[i % a.tokens.len()].1.clone();
            let after = after.get(i).cloned().flatten();
            tasks.push(tokio::spawn(client(
                a.port,
                token,
                after,
                log,
                live.clone(),
                stop.clone(),
            )));
        }
        Self {
            logs,
            live,
            stop,
            tasks,
        }
    }

    async fn wait_live(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.live.load(Ordering::Relaxed) < n {
            if let Some(t) = self.tasks.iter().find(|t| t.is_finished()) {
                bail!("a client ended before it was live ({t:?})");
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} clients live after 120 s",
                    self.live.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until client `i` has `want(i)` events (or 60 s pass).
    async fn wait_events(&self, want: impl Fn(usize) -> usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = self
                .logs
                .iter()
                .enumerate()
                .all(|(i, l)| l.lock().map_or(0, |l| l.len()) >= want(i));
            if done {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn close(self) {
        self.stop.notify_waiters();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// POSTs a GraphQL request; the answer.
async fn graphql(port: u16, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
    let auth = format!("Bearer {token}");
    let body = json!({ "query": query, "variables": variables }).to_string();
    let answer = fraiseql_testing::http(
        port,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &body,
    )
    .await
    .context("no answer")?;
    Ok(answer.json())
}

/// One organization per tenant (by token line); their ids.
async fn orgs(a: &Args) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (tenant, token) in &a.tokens {
        let v = graphql(
            a.port,
            token,
            "mutation($n: String!) { createOrganization(name: $n) { id } }",
            json!({ "n": format!("load {tenant} {}", now()) }),
        )
        .await?;
        out.push(
            v["data"]["createOrganization"]["id"]
                .as_str()
                .with_context(|| format!("createOrganization: {v}"))?
                .to_owned(),
        );
    }
    Ok(out)
}

/// Creates `n` projects at `rate` a second, round robin over the tenants; their ids per tenant.
async fn mutate(
    a: &Args,
    orgs: &[String],
    n: usize,
    rate: f64,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut running = Vec::with_capacity(n);
    // Project names (and identifiers) are unique per tenant: each call has names of its own.
    let run = format!("{:.6}", now());
    for i in 0..n {
        tick.tick().await;
        let t = i % a.tokens.len();
        let (port, token, org) = (a.port, a.tokens[t].1.clone(), orgs[t].clone());
        let name = format!("load {run} {i}");
        running.push((
            t,
            tokio::spawn(async move {
                graphql(
                    port,
                    &token,
                    "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id } }",
                    json!({ "o": org, "n": name }),
                )
                .await
            }),
        ));
    }
    let mut ids = vec![Vec::new(); a.tokens.len()];
    for (t, r) in running {
        let v = r.await??;
        let id = v["data"]["createProject"]["id"]
            .as_str()
            .with_context(|| format!("createProject: {v}"))?;
        ids[t].push(id.to_owned());
    }
    Ok(ids)
}

/// Counts, per client, the expected projects received once, lost and doubled; writes the log.
fn check(a: &Args, clients: &Clients, ids: &[Vec<String>], label: &str) -> anyhow::Result<bool> {
    let (mut delivered, mut lost, mut doubled, mut foreign) = (0usize, 0usize, 0usize, 0usize);
    let mut out = String::new();
    for (i, log) in clients.logs.iter().enumerate() {
        let t = i % a.tokens.len();
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for r in &log {
            *seen.entry(r.project.as_str()).or_default() += 1;
            out.push_str(&format!(
                "{i} {} {} {} {:.6}\n",
                a.tokens[t].0, r.project, r.position, r.at
            ));
        }
        for id in &ids[t] {
            match seen.remove(id.as_str()) {
                None => lost += 1,
                Some(1) => delivered += 1,
                Some(k) => {
                    delivered += 1;
                    doubled += k - 1;
                }
            }
        }
        foreign += seen.values().sum::<usize>();
    }
    if let Some(path) = &a.out {
        std::fs::write(path, out)?;
    }
    println!(
        "RESULT {label} clients={} delivered={delivered} lost={lost} doubled={doubled} other={foreign}",
        a.clients
    );
    Ok(lost == 0 && doubled == 0 && foreign == 0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    match a.mode.as_str() {
        "hold" => {
            let clients = Clients::open(&a, &[]);
            clients.wait_live(a.clients).await?;
            println!("LIVE {}", a.clients);
            // Held until the script closes standard input.
            let mut line = String::new();
            let _ =
                tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
            clients.close().await;
        }
        "fanout" => {
            let orgs = orgs(&a).await?;
            let clients = Clients::open(&a, &[]);
            clients.wait_live(a.clients).await?;
            println!("LIVE {}", a.clients);
            let started = Instant::now();
            let ids = mutate(&a, &orgs, a.mutations, a.rate).await?;
            println!(
                "MUTATED {} in {:.1} s",
                a.mutations,
                started.elapsed().as_secs_f64()
            );
            clients.wait_events(|i| ids[i % a.tokens.len()].len()).await;
            let ok = check(&a, &clients, &ids, "fanout")?;
            clients.close().await;
            if !ok {
                bail!("events lost, doubled or delivered to the wrong tenant");
            }
        }
        "resume" => {
            let orgs = orgs(&a).await?;
            let first = Clients::open(&a, &[]);
            first.wait_live(a.clients).await?;
            let warm = mutate(&a, &orgs, a.tokens.len(), a.rate).await?;
            first.wait_events(|i| warm[i % a.tokens.len()].len()).await;
            let positions: Vec<Option<String>> = first
                .logs
                .iter()
                .map(|l| {
                    l.lock()
                        .ok()
                        .and_then(|l| l.last().map(|r| r.position.clone()))
                })
                .collect();
            first.close().await;
            let missed = mutate(&a, &orgs, a.mutations, a.rate).await?;
            let started = Instant::now();
            let again = Clients::open(&a, &positions);
            again
                .wait_events(|i| missed[i % a.tokens.len()].len())
                .await;
            println!(
                "RECONNECTED {} clients, every missed event in {:.2} s",
                a.clients,
                started.elapsed().as_secs_f64()
            );
            let ok = check(&a, &again, &missed, "resume")?;
            again.close().await;
            if !ok {
                bail!("missed events lost, doubled or delivered to the wrong tenant");
            }
        }
        other => bail!("unknown --mode {other} (hold, fanout, resume)"),
    }
    Ok(())
}
