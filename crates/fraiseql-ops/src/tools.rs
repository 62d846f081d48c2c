//! `pg_dump` and `pg_restore`: where they are (`FRAISEQL_PG_BINDIR`), how they reach a server
//! (libpq's environment, so no password is on a command line) and what of their output an
//! operator needs when they fail.

use std::path::PathBuf;

use crate::error::{ProvisionError, TransferError};

fn tool_path(tool: &str) -> PathBuf {
    match std::env::var_os("FRAISEQL_PG_BINDIR") {
        Some(dir) => PathBuf::from(dir).join(tool),
        None => PathBuf::from(tool),
    }
}

/// Runs `tool` with `args` and the libpq environment `env`; returns what it printed.
pub(crate) async fn run_tool(
    tool: &str,
    args: &[String],
    env: &[(String, String)],
) -> Result<String, TransferError> {
    let out = tokio::process::Command::new(tool_path(tool))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("PGSERVICE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| TransferError::ToolMissing {
            tool: tool.to_owned(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(TransferError::Tool {
            tool: tool.to_owned(),
            status: out.status.to_string(),
            stderr: tool_failure(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The part of a PostgreSQL tool's stderr an operator needs: its `error:` lines (pg_restore
/// follows each with the whole statement, which can be pages long), else the last lines.
fn tool_failure(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .take(3)
        .collect();
    let lines = if errors.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        tail.into_iter().rev().collect()
    } else {
        errors
    };
    lines
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `<tool> --version`; fails when the tool cannot be run.
pub(crate) async fn tool_version(tool: &str) -> Result<String, TransferError> {
    run_tool(tool, &["--version".to_owned()], &[]).await
}

/// [`libpq_env`] as a transfer error.
pub(crate) fn env_for(url: &str, database: &str) -> Result<Vec<(String, String)>, TransferError> {
    libpq_env(url, database).map_err(|e| TransferError::Provision(ProvisionError::Config(e)))
}

/// A libpq connection-string value, quoted.
pub(crate) fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A pg_dump name pattern matching exactly `name` (inside double quotes nothing is special).
pub fn exact_pattern(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The libpq environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, …) that
/// reaches database `database` on the server of `url`, so no password is on a command line.
pub fn libpq_env(url: &str, database: &str) -> Result<Vec<(String, String)>, String> {
    use std::str::FromStr;
    // The URL's TLS settings go to libpq as written; the rest is parsed as the servers parse it.
    let (rest, mode, root) = fraiseql_engine::connections::target::split_tls(url)?;
    let c = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| format!("invalid connection URL ({e})"))?;
    let mode = mode.unwrap_or_else(|| "prefer".to_owned());
    if ![
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ]
    .contains(&mode.as_str())
    {
        return Err(format!(
            "sslmode {mode:?} is not one of disable, prefer, require, verify-ca, verify-full"
        ));
    }
    let mut env = vec![("PGDATABASE".to_owned(), database.to_owned())];
    match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => env.push(("PGHOST".into(), h.clone())),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => {
            env.push(("PGHOST".into(), p.display().to_string()));
        }
        None => {
            if let Some(a) = c.get_hostaddrs().first() {
                env.push(("PGHOSTADDR".into(), a.to_string()));
            }
        }
    }
    if let Some(p) = c.get_ports().first() {
        env.push(("PGPORT".into(), p.to_string()));
    }
    if let Some(u) = c.get_user() {
        env.push(("PGUSER".into(), u.to_owned()));
    }
    if let Some(p) = c.get_password() {
        env.push(("PGPASSWORD".into(), String::from_utf8_lossy(p).into_owned()));
    }
    env.push(("PGSSLMODE".into(), mode));
    if let Some(r) = root {
        env.push(("PGSSLROOTCERT".into(), r));
    }
    env.push(("PGAPPNAME".into(), "fraiseql-transfer".into()));
    env.push(("PGCONNECT_TIMEOUT".into(), "10".into()));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_failure_names_its_error_lines_not_the_statement_after_them() {
        let stderr = "pg_restore: while PROCESSING TOC:\npg_restore: error: could not execute query: ERROR:  this server refuses tb_task\nCONTEXT:  PL/pgSQL function refuse_tasks()\nCommand was: CREATE TABLE public.tb_task (\n    pk_task integer NOT NULL\n);\n";
        assert_eq!(
            tool_failure(stderr),
            "pg_restore: error: could not execute query: ERROR:  this server refuses tb_task"
        );
        assert_eq!(tool_failure("a\nb\n"), "a / b");
    }

    #[test]
    fn libpq_environment_carries_no_password_on_the_command_line() {
        let env = libpq_env(
            "postgres://admin:s3cr%3At@db.example:6543/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "tenant_acme",
        )
        .expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGUSER"), Some("admin"));
        assert_eq!(get("PGPASSWORD"), Some("s3cr:t"));
        assert_eq!(get("PGDATABASE"), Some("tenant_acme"));
        assert_eq!(get("PGSSLMODE"), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT"), Some("/nonexistent/ca.pem"));
        let plain =
            libpq_env("postgres://postgres@127.0.0.1:5432/x?sslmode=disable", "y").expect("env");
        assert!(plain.iter().all(|(k, _)| k != "PGPASSWORD"));
        assert!(libpq_env("not a url at all ::", "y").is_err());
    }

    #[test]
    fn patterns_and_conninfo_are_literal() {
        assert_eq!(exact_pattern("t_acme"), "\"t_acme\"");
        assert_eq!(exact_pattern("we\"ird*"), "\"we\"\"ird*\"");
        assert_eq!(conninfo_value("a'b\\c"), "'a\\'b\\\\c'");
    }
}
