//! Where a PostgreSQL database is and how to reach it: a connection URL (libpq's
//! `postgres://` form or its `key=value` form) with libpq's TLS modes. tokio-postgres parses
//! the URL but knows only `disable`, `prefer` and `require`; `verify-ca`, `verify-full` and
//! `sslrootcert` are taken out here and become the rustls verifier (the build's one TLS stack).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::wire::Wire;
use super::DbError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS, unverified (verified against `sslrootcert` when one is given, as libpq does).
    Require,
    /// TLS, the certificate chain verified, not the host name.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl TlsMode {
    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "disable" | "allow" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// A parsed connection target: the driver's config and the TLS connector for it.
#[derive(Clone)]
pub struct Target {
    /// The driver's settings (host, port, database, user, password, options...).
    pub config: tokio_postgres::Config,
    /// The TLS mode.
    pub tls: TlsMode,
    connector: Option<MakeRustlsConnect>,
    /// The same TLS settings, for sockets TLS is negotiated on here (`wire.rs`).
    tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Identifies the connection's settings: connections of equal keys are interchangeable.
    pub key: Arc<str>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL or the password.
        f.debug_struct("Target")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits libpq's `key=value key='quoted value'` form into pairs.
fn kv_pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.push(chars.next()?);
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

fn quote_kv(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Takes `sslmode` and `sslrootcert` out of `url`; returns the rest and the two values. Public
/// for the operations crate, which hands them to libpq's tools as written.
pub fn split_tls(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let mut mode = None;
    let mut root = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)),
                "sslrootcert" => root = Some(percent_decode(v)),
                "sslcert" | "sslkey" => {
                    return Err("client certificates (sslcert/sslkey) are not supported".into())
                }
                _ => kept.push(part),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    let pairs = kv_pairs(url).ok_or("malformed key=value connection string")?;
    let mut kept = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => mode = Some(v),
            "sslrootcert" => root = Some(v),
            "sslcert" | "sslkey" => {
                return Err("client certificates (sslcert/sslkey) are not supported".into())
            }
            _ => kept.push(format!("{k}={}", quote_kv(&v))),
        }
    }
    Ok((kept.join(" "), mode, root))
}

/// Parses `url` for `[databases.<name>]` (or a tenant's registry row), never echoing it.
pub fn parse(name: &str, url: &str) -> Result<Target, DbError> {
    let bad = |reason: String| DbError::BadUrl {
        name: name.to_owned(),
        reason,
    };
    let (rest, mode, root) = split_tls(url).map_err(bad)?;
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| bad(e.to_string()))?;
    let tls = match mode.as_deref() {
        None => TlsMode::Prefer,
        Some(m) => TlsMode::parse(m).ok_or_else(|| {
            bad(format!(
                "sslmode {m:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        })?,
    };
    // libpq: `require` with a root certificate verifies the chain like `verify-ca`.
    let tls = match (tls, &root) {
        (TlsMode::Require, Some(_)) => TlsMode::VerifyCa,
        (t, _) => t,
    };
    config.ssl_mode(match tls {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let tls_config = match tls {
        TlsMode::Disable => None,
        other => Some(Arc::new(
            client_config(other, root.as_deref()).map_err(bad)?,
        )),
    };
    let connector = tls_config
        .as_ref()
        .map(|c| MakeRustlsConnect::new(rustls::ClientConfig::clone(c)));
    let key = Arc::from(format!("{url}\u{0}"));
    Ok(Target {
        config,
        tls,
        connector,
        tls_config,
        key,
    })
}

fn roots(root: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err("no system root certificates found; set sslrootcert".into());
            }
        }
        Some(path) => {
            let pem = std::fs::read(PathBuf::from(path))
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            let certs: Vec<CertificateDer<'static>> =
                rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {path}: no certificate in it"));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: TlsMode, root: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Arc::new(Unverified(provider())),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let full = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root)?),
                provider(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            Arc::new(Verified {
                inner: full,
                check_name: mode == TlsMode::VerifyFull,
            })
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `verify-ca` / `verify-full`: webpki's verification; `verify-ca` forgives a name mismatch.
#[derive(Debug)]
struct Verified {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` / `require`: encrypted, the certificate not checked (libpq's semantics for these
/// modes). The handshake signatures are still verified.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Target {
    /// The same target with `f` applied to its driver settings; `extra` distinguishes the
    /// resulting key (e.g. the database and role of a tenant).
    pub fn derive(&self, extra: &str, f: impl FnOnce(&mut tokio_postgres::Config)) -> Target {
        let mut t = self.clone();
        f(&mut t.config);
        t.key = Arc::from(format!("{}{extra}", self.key));
        t
    }

    #[cfg(test)]
    pub(crate) fn tls_config_for_tests(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls_config.as_ref()
    }

    /// Opens a connection whose socket reads can borrow ([`super::wire`]); its I/O runs in a
    /// task of its own. Targets it cannot open that way (several hosts) are connected the
    /// driver's way, without a [`Wire`].
    pub async fn connect_lendable(&self) -> Result<(Client, Option<Wire>), tokio_postgres::Error> {
        match super::wire::open(&self.config, self.tls, self.tls_config.as_ref()).await? {
            Some((client, wire)) => Ok((client, Some(wire))),
            None => Ok((self.connect().await?, None)),
        }
    }

    /// Opens a connection; its I/O runs in a task of its own.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        match &self.connector {
            None => {
                let (client, conn) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_url_forms() {
        let (rest, mode, root) = split_tls(
            "postgres://u:p@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .expect("url");
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, root) =
            split_tls("host=h dbname='my db' sslmode=verify-ca sslrootcert=/ca.pem").expect("kv");
        assert_eq!(rest, "host='h' dbname='my db'");
        assert_eq!(
            (mode.as_deref(), root.as_deref()),
            (Some("verify-ca"), Some("/ca.pem"))
        );
        assert_eq!(
            split_tls("postgres://h/db?sslcert=x")
                .expect_err("client certificates refused")
                .to_string(),
            "client certificates (sslcert/sslkey) are not supported"
        );
    }

    #[test]
    fn modes_and_defaults() {
        let t = parse("db", "postgres://h/db").expect("default");
        assert_eq!(t.tls, TlsMode::Prefer);
        let t = parse("db", "postgres://h/db?sslmode=disable").expect("disable");
        assert_eq!(t.tls, TlsMode::Disable);
        let e = parse("db", "postgres://h/db?sslmode=sometimes").expect_err("bad mode");
        assert!(e.to_string().contains("sslmode \"sometimes\""), "{e}");
        let e = parse(
            "db",
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nope.pem",
        )
        .expect_err("missing root");
        assert!(e.to_string().contains("/nope.pem"), "{e}");
        // The password never appears in errors.
        let e = parse("db", "postgres://u:secret@h:notaport/db").expect_err("bad port");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
