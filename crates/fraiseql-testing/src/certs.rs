//! A CA and a server certificate for a test's TLS set-up (made with the `openssl` command).

use std::path::Path;

use crate::TestError;

/// Files of a TLS set-up made for a test: a CA and a server certificate it signed.
pub struct TestCerts {
    /// The CA certificate (PEM), for `sslrootcert` or `[nats] tls_ca`.
    pub ca: std::path::PathBuf,
    /// The server certificate (PEM), for `localhost` and `127.0.0.1`.
    pub cert: std::path::PathBuf,
    /// Its key (PEM).
    pub key: std::path::PathBuf,
}

impl TestCerts {
    /// Makes a CA and a server certificate (CN and SANs `localhost`, `127.0.0.1`) in `dir` with
    /// the `openssl` command.
    pub fn make(dir: &Path) -> Result<Self, TestError> {
        std::fs::create_dir_all(dir)?;
        let run = |args: &[&str]| -> Result<(), TestError> {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()?;
            if !o.status.success() {
                return Err(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr)
                )
                .into());
            }
            Ok(())
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=fraiseql test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])?;
        Ok(Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }
}
