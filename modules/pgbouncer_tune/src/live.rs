//! The side-effecting part: PostgreSQL's `max_connections`, PgBouncer's admin console, the
//! pidfile signal and the installed PgBouncer version.
//!
//! PostgreSQL and the admin console are reached with tokio-postgres on a current-thread
//! runtime; the admin console speaks the simple query protocol only, so every statement here
//! goes through `simple_query`. Every wait is bounded by a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tokio_postgres::{Config, NoTls, SimpleQueryMessage};

#[derive(Debug, Error)]
pub enum LiveError {
    #[error("{what}: cannot start the I/O runtime: {source}")]
    Runtime {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Postgres { what: String, message: String },
    #[error("{what}: no answer within {seconds} s")]
    Timeout { what: String, seconds: u64 },
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub timeout: Duration,
}

fn runtime(what: &str) -> Result<tokio::runtime::Runtime, LiveError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| LiveError::Runtime {
            what: what.to_string(),
            source,
        })
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

/// Runs `queries` in order over one connection with the simple query protocol and returns the
/// rows of each as column → value maps.
pub fn simple_queries(
    target: &Target,
    what: &str,
    queries: &[&str],
) -> Result<Vec<Vec<BTreeMap<String, String>>>, LiveError> {
    let rt = runtime(what)?;
    let mut config = Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .dbname(&target.dbname)
        .connect_timeout(target.timeout);
    if let Some(p) = &target.password {
        config.password(p.as_bytes());
    }
    let err = |e: tokio_postgres::Error| LiveError::Postgres {
        what: what.to_string(),
        message: describe(&e),
    };
    let work = async {
        let (client, connection) = config.connect(NoTls).await.map_err(err)?;
        let driver = tokio::spawn(connection);
        let mut all = Vec::new();
        for q in queries {
            let messages = client.simple_query(q).await.map_err(err)?;
            let rows = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(
                        row.columns()
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                (
                                    c.name().to_string(),
                                    row.get(i).unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                    ),
                    _ => None,
                })
                .collect();
            all.push(rows);
        }
        drop(client);
        let _ = driver.await;
        Ok(all)
    };
    let seconds = target.timeout.as_secs().max(1) * 2;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(seconds), work)
            .await
            .unwrap_or(Err(LiveError::Timeout {
                what: what.to_string(),
                seconds,
            }))
    })
}

/// `SHOW max_connections` on PostgreSQL.
pub fn max_connections(target: &Target) -> Result<u32, LiveError> {
    let what = format!(
        "reading max_connections from PostgreSQL at {}:{} as '{}'",
        target.host, target.port, target.user
    );
    let rows = simple_queries(target, &what, &["SHOW max_connections"])?;
    let value = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|row| row.get("max_connections"))
        .cloned()
        .unwrap_or_default();
    value.trim().parse().map_err(|_| LiveError::Postgres {
        what,
        message: format!("unexpected answer {value:?}"),
    })
}

/// `SHOW CONFIG` of the admin console, optionally after `RELOAD`: key → (value, changeable).
pub fn console_config(
    target: &Target,
    reload: bool,
) -> Result<BTreeMap<String, (String, bool)>, LiveError> {
    let what = format!(
        "PgBouncer admin console at {}:{} as '{}'",
        target.host, target.port, target.user
    );
    let queries: &[&str] = if reload {
        &["RELOAD", "SHOW CONFIG"]
    } else {
        &["SHOW CONFIG"]
    };
    let results = simple_queries(target, &what, queries)?;
    let rows = results.last().cloned().unwrap_or_default();
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let key = row.get("key")?.clone();
            let value = row.get("value").cloned().unwrap_or_default();
            let changeable = row.get("changeable").is_some_and(|c| c == "yes");
            Some((key, (value, changeable)))
        })
        .collect())
}

/// The PID in `pidfile` when that process is alive.
pub fn running_pid(pidfile: &str) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(pidfile).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1)?;
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, None).ok().map(|_| pid)
}

/// SIGHUP: PgBouncer re-reads its configuration.
pub fn sighup(pid: nix::unistd::Pid) -> Result<(), nix::errno::Errno> {
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
}

/// `(major, minor)` of `pgbouncer --version` ("PgBouncer 1.18.0"), or why not.
pub fn pgbouncer_version(binary: &str) -> Result<(u32, u32, String), String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run '{binary} --version': {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_version(&text).ok_or_else(|| {
        format!(
            "'{binary} --version' printed no PgBouncer version: {:?}",
            text.lines().next().unwrap_or_default()
        )
    })
}

/// Parses the first line of `pgbouncer --version`.
pub fn parse_version(text: &str) -> Option<(u32, u32, String)> {
    let first = text.lines().next()?.trim();
    let version = first.strip_prefix("PgBouncer ")?;
    let version = version.split_whitespace().next()?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("PgBouncer 1.18.0\nlibevent 2.1.12-stable\n"),
            Some((1, 18, "1.18.0".into()))
        );
        assert_eq!(
            parse_version("PgBouncer 1.24.1"),
            Some((1, 24, "1.24.1".into()))
        );
        assert_eq!(parse_version("pgbouncer: command not found"), None);
    }
}
