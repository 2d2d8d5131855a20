//! Rendering pgbouncer.ini and the auth file: pure functions, text in, text out.
//!
//! The module owns both files: they are rendered whole, in a fixed order, so the same options
//! always give the same bytes (a re-run changes nothing) and a hand edit is replaced.

use std::fmt::Write as _;

use crate::sizing::Sizing;

/// One `[databases]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub dbname: String,
    pub host: String,
    pub port: u16,
    pub pool_size: Option<u32>,
    pub max_db_connections: u32,
}

/// One `[peers]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u32,
    pub host: String,
    pub port: u16,
}

/// Authentication, as it appears in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    File,
    Query { user: String, function: String },
}

/// Everything pgbouncer.ini holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub databases: Vec<Database>,
    pub listen_addr: Vec<String>,
    pub listen_port: u16,
    pub unix_socket_dir: Option<String>,
    pub pidfile: Option<String>,
    pub logfile: Option<String>,
    pub auth: Auth,
    pub auth_file: String,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    pub pool_mode: String,
    pub sizing: Sizing,
    pub app_processes: u32,
    pub app_pool_max: u32,
    pub reserved_connections: u32,
    pub ignore_startup_parameters: Vec<String>,
    pub so_reuseport: bool,
    pub peer_id: Option<u32>,
    pub peers: Vec<Peer>,
    pub settings: Vec<(String, String)>,
}

/// What PgBouncer runs on a server connection before another client gets it: every session
/// setting, prepared statement, temporary table and advisory lock of the last client goes.
pub const SERVER_RESET_QUERY: &str = "DISCARD ALL";

/// The `auth_query` PgBouncer runs for a user not in the auth file.
pub fn auth_query(function: &str) -> String {
    format!("SELECT usename, passwd FROM {function}($1)")
}

/// The settings of the `[pgbouncer]` section, in file order. Also what `SHOW CONFIG` is
/// checked against after a reload.
pub fn pgbouncer_settings(c: &Config) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| s.push((k.to_string(), v));
    put("listen_addr", c.listen_addr.join(","));
    put("listen_port", c.listen_port.to_string());
    if let Some(dir) = &c.unix_socket_dir {
        put("unix_socket_dir", dir.clone());
    }
    if let Some(pidfile) = &c.pidfile {
        put("pidfile", pidfile.clone());
    }
    if let Some(logfile) = &c.logfile {
        put("logfile", logfile.clone());
    }
    put("auth_type", "scram-sha-256".into());
    put("auth_file", c.auth_file.clone());
    if let Auth::Query { user, function } = &c.auth {
        put("auth_user", user.clone());
        put("auth_query", auth_query(function));
    }
    if !c.admin_users.is_empty() {
        put("admin_users", c.admin_users.join(","));
    }
    if !c.stats_users.is_empty() {
        put("stats_users", c.stats_users.join(","));
    }
    put("pool_mode", c.pool_mode.clone());
    // In transaction (and statement) pooling a client's session-level SET stays on the server
    // connection it ran on and reaches the next client's queries (Synapse's index builds send
    // `SET SESSION statement_timeout = 0` and the reset as separate autocommit statements).
    // Resetting every server connection when it returns to the pool makes that impossible.
    if c.pool_mode != "session" {
        put("server_reset_query", SERVER_RESET_QUERY.into());
        put("server_reset_query_always", "1".into());
    }
    put("max_client_conn", c.sizing.max_client_conn.to_string());
    put("default_pool_size", c.sizing.default_pool_size.to_string());
    put("reserve_pool_size", c.sizing.reserve_pool_size.to_string());
    if !c.ignore_startup_parameters.is_empty() {
        put(
            "ignore_startup_parameters",
            c.ignore_startup_parameters.join(","),
        );
    }
    if c.so_reuseport {
        put("so_reuseport", "1".into());
    }
    if let Some(id) = c.peer_id {
        put("peer_id", id.to_string());
    }
    for (k, v) in &c.settings {
        put(k, v.clone());
    }
    s
}

/// pgbouncer.ini, whole.
pub fn render(c: &Config) -> String {
    let z = &c.sizing;
    let mut out = String::new();
    let _ = writeln!(
        out,
        ";; Managed by z3r0d3v.matrix_ha.pgbouncer_tune: rendered whole on every run; edits \
         here are replaced."
    );
    let _ = writeln!(
        out,
        ";; Sizing: {} processes x {} = {} client connections at full load; {} pool(s); \
         PgBouncer holds at most {} server connections + {} reserved = {} of max_connections {} \
         ({}% used at full client load; alert at {} server connections).",
        c.app_processes,
        c.app_pool_max,
        z.demand,
        z.pools,
        z.server_connections,
        c.reserved_connections,
        z.needed,
        z.max_connections,
        z.utilisation_percent,
        z.alert_threshold
    );
    out.push_str("\n[databases]\n");
    for d in &c.databases {
        let _ = write!(
            out,
            "{} = host={} port={} dbname={}",
            d.name, d.host, d.port, d.dbname
        );
        if let Some(p) = d.pool_size {
            let _ = write!(out, " pool_size={p}");
        }
        let _ = writeln!(out, " max_db_connections={}", d.max_db_connections);
    }
    out.push_str("\n[pgbouncer]\n");
    for (k, v) in pgbouncer_settings(c) {
        let _ = writeln!(out, "{k} = {v}");
    }
    if !c.peers.is_empty() {
        out.push_str("\n[peers]\n");
        for p in &c.peers {
            let _ = writeln!(out, "{} = host={} port={}", p.id, p.host, p.port);
        }
    }
    out
}

/// The auth file: `"name" "SCRAM-SHA-256$..."` lines, sorted by name.
pub fn render_auth_file(entries: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort();
    let mut out =
        String::from(";; Managed by z3r0d3v.matrix_ha.pgbouncer_tune: SCRAM verifiers only.\n");
    for (name, verifier) in sorted {
        let _ = writeln!(out, "\"{name}\" \"{verifier}\"");
    }
    out
}

/// Entries of an existing auth file: (name, secret) for every `"name" "secret"` line.
pub fn parse_auth_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix('"')?;
            let (name, rest) = rest.split_once('"')?;
            let rest = rest.trim().strip_prefix('"')?;
            let (secret, _) = rest.split_once('"')?;
            Some((name.to_string(), secret.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizing::{compute, SitePools};

    fn config() -> Config {
        // The inventory's small scale (24 processes, max_connections 330), with auth_query.
        let mut inputs = SitePools::for_processes(24).module_inputs();
        inputs.auth_query = true;
        let sizing = compute(&inputs).unwrap();
        Config {
            databases: vec![Database {
                name: "synapse".into(),
                dbname: "synapse".into(),
                host: "10.20.0.10".into(),
                port: 5432,
                pool_size: None,
                max_db_connections: 265,
            }],
            listen_addr: vec!["10.20.0.21".into()],
            listen_port: 6432,
            unix_socket_dir: Some("/run/postgresql".into()),
            pidfile: None,
            logfile: None,
            auth: Auth::Query {
                user: "pgbouncer".into(),
                function: "pgbouncer.get_auth".into(),
            },
            auth_file: "/etc/pgbouncer/userlist.txt".into(),
            admin_users: vec!["pgbouncer_admin".into()],
            stats_users: vec![],
            pool_mode: "transaction".into(),
            sizing,
            app_processes: 24,
            app_pool_max: 10,
            reserved_connections: 10,
            ignore_startup_parameters: vec![],
            so_reuseport: false,
            peer_id: None,
            peers: vec![],
            settings: vec![],
        }
    }

    #[test]
    fn renders_the_inventory_small_scale() {
        let text = render(&config());
        assert!(text.contains(
            "[databases]\nsynapse = host=10.20.0.10 port=5432 dbname=synapse max_db_connections=265\n"
        ), "{text}");
        for line in [
            "auth_type = scram-sha-256\n",
            "auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1)\n",
            "pool_mode = transaction\n",
            "max_client_conn = 480\n",
            "default_pool_size = 240\n",
            "reserve_pool_size = 24\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(render(&config()), text, "deterministic");
    }

    #[test]
    fn peers_and_reuseport() {
        let mut c = config();
        c.so_reuseport = true;
        c.peer_id = Some(1);
        c.peers = vec![
            Peer {
                id: 1,
                host: "/run/pgbouncer-1".into(),
                port: 6432,
            },
            Peer {
                id: 2,
                host: "/run/pgbouncer-2".into(),
                port: 6432,
            },
        ];
        let text = render(&c);
        assert!(text.contains("so_reuseport = 1\npeer_id = 1\n"), "{text}");
        assert!(text.ends_with(
            "[peers]\n1 = host=/run/pgbouncer-1 port=6432\n2 = host=/run/pgbouncer-2 port=6432\n"
        ));
    }

    #[test]
    fn auth_file_round_trip() {
        let entries = vec![
            (
                "synapse".to_string(),
                "SCRAM-SHA-256$4096:a$b:c".to_string(),
            ),
            ("admin".to_string(), "SCRAM-SHA-256$4096:d$e:f".to_string()),
        ];
        let text = render_auth_file(&entries);
        assert!(text.contains("\"admin\" \"SCRAM-SHA-256$4096:d$e:f\"\n\"synapse\""));
        let mut back = parse_auth_file(&text);
        back.sort();
        let mut want = entries.clone();
        want.sort();
        assert_eq!(back, want);
    }
}
