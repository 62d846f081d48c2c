//! A PostgreSQL cluster of a test's own: `initdb` into a temporary folder, a free port.

use std::path::Path;

use crate::{free_port, unique_suffix, TestError};

/// A PostgreSQL cluster of a test's own (`initdb` into a temporary folder, a free port), stopped
/// and removed on drop: a second server to move tenants to, or one with TLS. Run as the
/// `postgres` OS user when the test runs as root (PostgreSQL refuses to run as root).
pub struct PgCluster {
    dir: std::path::PathBuf,
    /// The port it listens on (127.0.0.1 and localhost).
    pub port: u16,
    bin: std::path::PathBuf,
}

fn as_postgres(cmd: &Path) -> std::process::Command {
    // PostgreSQL refuses to run as root: root runs its tools as `postgres`.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        std::process::Command::new(cmd)
    }
}

impl PgCluster {
    /// Starts a cluster with `settings` appended to its `postgresql.conf` (e.g. `ssl = on`) and
    /// `hba` as its `pg_hba.conf` (trust for every local TCP connection when `None`).
    pub fn start(settings: &str, hba: Option<&str>) -> Result<Self, TestError> {
        let bin = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))?;
        let port = free_port()?;
        let dir = scratch_dir()?;
        let data = dir.join("data");
        let o = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !o.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 60\nfsync = off\nsynchronous_commit = off\n{settings}\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        if let Some(h) = hba {
            std::fs::write(data.join("pg_hba.conf"), h)?;
        }
        let cluster = Self { dir, port, bin };
        cluster.pg_ctl_start("pg_ctl start")?;
        Ok(cluster)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), on a port of its own: promote it
    /// with [`PgCluster::promote`] to fail over.
    pub fn standby_of(primary: &PgCluster) -> Result<Self, TestError> {
        let port = free_port()?;
        let dir = scratch_dir()?;
        let data = dir.join("data");
        let o = as_postgres(&primary.bin.join("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
                "-c",
                "fast",
            ])
            .output()?;
        if !o.status.success() {
            return Err(format!("pg_basebackup: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        let conf = format!(
            "\nport = {port}\nunix_socket_directories = '{}'\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        let cluster = Self {
            dir,
            port,
            bin: primary.bin.clone(),
        };
        cluster.pg_ctl_start("pg_ctl start (standby)")?;
        Ok(cluster)
    }

    /// Starts the cluster (`pg_ctl start`, waiting up to 30 s); `what` names the step in
    /// the error, which carries the server's log.
    fn pg_ctl_start(&self, what: &str) -> Result<(), TestError> {
        let o = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()?;
        if !o.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(format!("{what}: {}{log}", String::from_utf8_lossy(&o.stderr)).into());
        }
        Ok(())
    }

    /// Promotes a standby to a primary (`pg_ctl promote`, waiting for it).
    pub fn promote(&self) -> Result<(), TestError> {
        let o = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-t", "30", "promote"])
            .output()?;
        if !o.status.success() {
            return Err(format!("pg_ctl promote: {}", String::from_utf8_lossy(&o.stderr)).into());
        }
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash of its host would.
    pub fn crash(&self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// A folder the cluster's user can read (for certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The superuser URL of database `db` (plain TCP on 127.0.0.1).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }
}

/// A new temporary folder the `postgres` OS user owns (it runs the cluster when tests run as root).
fn scratch_dir() -> Result<std::path::PathBuf, TestError> {
    let dir = std::env::temp_dir().join(format!("fraiseql-pg-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    let _ = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status();
    Ok(dir)
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
