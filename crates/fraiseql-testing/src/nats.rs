//! A `nats-server` with JetStream of a test's own, and what a stream and a consumer group did.

use std::time::{Duration, Instant};

use crate::{free_port, unique_suffix, TestError};

/// A `nats-server` with JetStream of a test's own (as nats.rs's tests do): a free local port and a
/// temporary store, killed and removed on drop. It can be stopped and started again on the same
/// port and store, to test what happens while NATS is away.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The port it listens on.
    pub port: u16,
    store: std::path::PathBuf,
    extra: Vec<String>,
}

impl NatsServer {
    /// Starts a server (`$NATS_SERVER_BIN`, else `nats-server` on the PATH, else
    /// `/usr/sbin/nats-server`) and waits until it accepts connections.
    pub fn start() -> Result<Self, TestError> {
        Self::start_with(&[])
    }

    /// Like [`NatsServer::start`] with more `nats-server` arguments (TLS, cluster routes...).
    pub fn start_with(extra: &[&str]) -> Result<Self, TestError> {
        Self::start_on(free_port()?, extra)
    }

    /// Like [`NatsServer::start_with`] on a given port.
    pub fn start_on(port: u16, extra: &[&str]) -> Result<Self, TestError> {
        let store = std::env::temp_dir().join(format!("fraiseql-nats-{}", unique_suffix()));
        std::fs::create_dir_all(&store)?;
        let mut s = Self {
            child: None,
            port,
            store,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        s.resume()?;
        Ok(s)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> Result<async_nats::jetstream::Context, TestError> {
        Ok(async_nats::jetstream::new(
            async_nats::connect(self.url()).await?,
        ))
    }

    fn binary() -> String {
        if let Ok(b) = std::env::var("NATS_SERVER_BIN") {
            return b;
        }
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()));
        if on_path {
            "nats-server".to_owned()
        } else {
            "/usr/sbin/nats-server".to_owned()
        }
    }

    /// Stops the server (SIGKILL): clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn resume(&mut self) -> Result<(), TestError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = std::process::Command::new(Self::binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("nats-server did not listen on port {}", self.port).into())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// What a JetStream stream took, and what one consumer group of it has left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDelivery {
    /// Messages the stream ever stored (its last sequence): a copy dropped by its `Nats-Msg-Id`
    /// is not among them, the same event published again under another id is.
    pub stored: u64,
    /// Deliveries the group made (its consumer sequence): one per stored message, plus one per
    /// redelivery of a message whose acknowledgement JetStream did not get in time.
    pub deliveries: u64,
    /// Messages not delivered to the group yet.
    pub pending: u64,
    /// Messages delivered and neither acknowledged nor terminated yet.
    pub unacknowledged: usize,
}

/// Waits until consumer group `group` of `stream` has been delivered every stored message and
/// acknowledged (or terminated) each delivery: from then on no handler runs until something new is
/// published, so what the handlers wrote can be counted. Fails with what was left after `within`.
pub async fn wait_consumer_idle(
    js: &async_nats::jetstream::Context,
    stream: &str,
    group: &str,
    within: Duration,
) -> Result<StreamDelivery, TestError> {
    let deadline = Instant::now() + within;
    loop {
        let last = stream_delivery(js, stream, group).await;
        match &last {
            Ok(d) if d.pending == 0 && d.unacknowledged == 0 => return Ok(*d),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "consumer group `{group}` of stream `{stream}` still busy after {within:?}: {last:?}"
                )
                .into())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn stream_delivery(
    js: &async_nats::jetstream::Context,
    stream: &str,
    group: &str,
) -> Result<StreamDelivery, String> {
    let mut s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let stored = s
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let mut consumer = s
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(group)
        .await
        .map_err(|e| e.to_string())?;
    let info = consumer.info().await.map_err(|e| e.to_string())?;
    Ok(StreamDelivery {
        stored,
        deliveries: info.delivered.consumer_sequence,
        pending: info.num_pending,
        unacknowledged: info.num_ack_pending,
    })
}
