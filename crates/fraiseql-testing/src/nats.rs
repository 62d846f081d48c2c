//! A `nats-server` with JetStream of a test's own.

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
