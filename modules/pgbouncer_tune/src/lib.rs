//! Ansible module `z3r0d3v.matrix_ha.pgbouncer_tune`: PgBouncer sized from the Synapse worker
//! count, SCRAM only, applied by reload and verified with `SHOW CONFIG`.
//!
//! [`sizing::compute`] is the pool formula, [`ini::render`] the file; both are pure. [`run`]
//! validates, reads PostgreSQL's `max_connections` when it is not given, writes the files with
//! the runtime's safe write, reloads PgBouncer and checks the new values ([`live`]).

pub mod ini;
pub mod live;
pub mod scram;
/// The pool formula, from the rules crate the inventory shares.
pub use matrix_ha_rules::pool as sizing;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use matrix_ha_runtime::fs::{self, Attrs, WriteOptions};
use matrix_ha_runtime::text::{self, Syntax};
use matrix_ha_runtime::{
    Context, DefaultValue, Diff, Failure, Kind, ModuleSpec, OptionSpec, Outcome, ReturnSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// systemd's default soft `LimitNOFILE`, which Debian's pgbouncer.service keeps.
pub const SOFT_NOFILE: u64 = 1024;

/// PgBouncer's first version with `peer_id` and `[peers]`.
pub const PEERING_SINCE: (u32, u32) = (1, 19);

#[derive(Debug, Deserialize)]
pub struct Args {
    pub path: String,
    pub app_processes: i64,
    pub app_pool_max: i64,
    pub client_headroom_percent: i64,
    pub max_connections: Option<i64>,
    pub reserved_connections: i64,
    pub databases: Vec<DatabaseArg>,
    pub default_pool_size: Option<i64>,
    pub reserve_pool_size: Option<i64>,
    pub pool_mode: String,
    pub listen_addr: Vec<String>,
    pub listen_port: i64,
    pub unix_socket_dir: Option<String>,
    pub pidfile: Option<String>,
    pub logfile: Option<String>,
    pub auth_mode: String,
    pub auth_file: String,
    pub auth_users: Vec<AuthUserArg>,
    pub auth_user: String,
    pub auth_function: String,
    pub admin_user: String,
    pub admin_password: Option<String>,
    pub stats_users: Vec<String>,
    pub ignore_startup_parameters: Vec<String>,
    pub so_reuseport: bool,
    pub peer_id: Option<i64>,
    pub peers: Vec<PeerArg>,
    pub settings: Option<serde_json::Map<String, Value>>,
    pub owner: String,
    pub group: String,
    pub reload: bool,
    pub pgbouncer_binary: String,
    pub login_host: Option<String>,
    pub login_port: i64,
    pub login_user: String,
    pub login_password: Option<String>,
    pub login_db: String,
    pub connect_timeout: i64,
}

#[derive(Debug, Deserialize)]
pub struct DatabaseArg {
    pub name: String,
    pub dbname: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub users: Vec<String>,
    pub pool_size: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct AuthUserArg {
    pub name: String,
    pub password: Option<String>,
    pub verifier: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PeerArg {
    pub id: i64,
    pub host: String,
    pub port: i64,
}

static DATABASE_OPTIONS: [OptionSpec; 6] = [
    OptionSpec::new("name", Kind::Str)
        .required()
        .doc(&["The database name clients ask for (letters, digits, C(_), C(-), C(.))."]),
    OptionSpec::new("dbname", Kind::Str)
        .doc(&["The database on the server; default O(databases[].name)."]),
    OptionSpec::new("host", Kind::Str).required().doc(&[
        "Server address, host name or Unix socket directory (absolute path): the inventory's \
         C(pgbouncer_upstream_host), the VIP in front of the Patroni primary.",
    ]),
    OptionSpec::new("port", Kind::Int)
        .range(1, 65535)
        .default(DefaultValue::Int(5432))
        .doc(&["Server port."]),
    OptionSpec::new("users", Kind::List)
        .elements(Kind::Str)
        .default(DefaultValue::EmptyList)
        .doc(&[
            "The roles that log in to this database through PgBouncer: one pool each. Empty \
             means one role named like the database (Synapse's C(synapse)/C(synapse)).",
        ]),
    OptionSpec::new("pool_size", Kind::Int)
        .range(1, 100000)
        .doc(&["This database's pool size per user; default the computed C(default_pool_size)."]),
];

static AUTH_USER_OPTIONS: [OptionSpec; 3] = [
    OptionSpec::new("name", Kind::Str)
        .required()
        .doc(&["Role name."]),
    OptionSpec::new("password", Kind::Str).no_log().doc(&[
        "Its password, at least 8 characters: a SCRAM-SHA-256 verifier is computed from it on \
         the target, the password itself is never written. An existing verifier the password still matches is kept, so \
         re-runs change nothing.",
    ]),
    OptionSpec::new("verifier", Kind::Str).no_log().doc(&[
        "A ready SCRAM-SHA-256 verifier (as in C(pg_authid.rolpassword)) instead of \
         O(auth_users[].password).",
    ]),
];

static PEER_OPTIONS: [OptionSpec; 3] = [
    OptionSpec::new("id", Kind::Int)
        .required()
        .range(1, 16383)
        .doc(&["The peer's C(peer_id)."]),
    OptionSpec::new("host", Kind::Str)
        .required()
        .doc(&["Its Unix socket directory (or address)."]),
    OptionSpec::new("port", Kind::Int)
        .required()
        .range(1, 65535)
        .doc(&["Its port."]),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "pgbouncer_tune",
    short_description: "Size, write and reload PgBouncer for Synapse (SCRAM only)",
    description: &[
        "Renders pgbouncer.ini (and the SCRAM auth file) whole from the options: the module owns \
         both files, every run writes the same bytes for the same options, and a hand edit is \
         replaced. Files are written atomically (temporary file, fsync, rename), mode 0640, \
         owner O(owner), group O(group).",
        "Pool formula. P = O(app_processes), C = O(app_pool_max), demand D = P x C (the \
         design's floor, (workers + main) x 10). C(max_client_conn) = ceil(D x (100 + \
         O(client_headroom_percent)) / 100). C(default_pool_size) = D unless given. \
         C(reserve_pool_size) = max(5, floor(pool / 10)) unless given. Each database gets \
         C(max_db_connections) = users x (pool + reserve) + 1 with O(auth_mode=auth_query) \
         (the auth user's own pool); PgBouncer enforces that cap whatever role logs in, so it \
         bounds every pool it can open. The sum of the caps plus O(reserved_connections) must \
         be at most O(max_connections); otherwise the run fails, names the max_connections to \
         raise to, and the one that keeps PgBouncer at 80 % or less (the smallest multiple of \
         10, the inventory's rule). A reserve pool that does not fit is refused too, never \
         shrunk: when the pools fit without it the message also names the largest \
         O(reserve_pool_size) that fits. Design 002's server (22 connections, pool 18, 3 \
         reserved) is refused with the default reserve (5) and accepted, exactly full, with \
         O(reserve_pool_size=1).",
        "These are the inventory's numbers: 24 processes give pool 240, reserve 24, cap 264 \
         (265 with auth_query), max_client_conn 480, and fit its max_connections 330.",
        "The result gives the figures, the utilisation of max_connections at full client load \
         (min(D, pool) / max_connections), PgBouncer's share, and the alert threshold: 80 % of \
         PgBouncer's cap, rounded up (the design's 18-of-22 example: alert at 15).",
        "SCRAM only: C(auth_type = scram-sha-256). With O(auth_mode=auth_file) PgBouncer checks \
         clients against verifiers in O(auth_file) and passes SCRAM through to PostgreSQL, which \
         works only when the server stores the same verifier for the role (same salt): give \
         O(auth_users[].verifier) read from C(pg_authid), or set the role's password to the \
         verifier this module wrote (ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...' stores it \
         verbatim). With O(auth_mode=auth_query) PgBouncer asks the server through \
         the query SELECT usename, passwd FROM <auth_function>($1), a SECURITY DEFINER function that \
         patroni_bootstrap creates, expected as pgbouncer.get_auth(p_usename text) RETURNS \
         TABLE(usename name, passwd text), executable by O(auth_user) only. PgBouncer logs in \
         as O(auth_user) itself, and a SCRAM verifier cannot log in to a server: the server \
         must admit O(auth_user) without a password from PgBouncer's host (C(cert) over TLS, or \
         C(peer) on a Unix socket); no plaintext password is ever written.",
        "The admin console user O(admin_user) (listed in C(admin_users)) gets a verifier from \
         O(admin_password) in the auth file; the module uses it for C(RELOAD) and C(SHOW CONFIG).",
        "Apply: after a change, when PgBouncer runs (the pid in O(pidfile) is alive, or the \
         admin console answers) and O(reload=true): C(RELOAD) on the admin console (simple \
         query protocol) when O(admin_password) is given, else SIGHUP to the pid in O(pidfile); \
         also SIGHUP, with a warning to restart, when the pid is alive but its console does not \
         answer at the address and as the user the new file gives (a PgBouncer started with \
         another configuration). \
         Then C(SHOW CONFIG) must show every changeable value of the file; the result lists \
         what was verified, and the run fails when a value did not apply. Settings PgBouncer \
         cannot change by reload (listen address and port, socket dir, pidfile, so_reuseport, \
         peer_id) get a warning: restart PgBouncer. When the files are already right but the \
         running PgBouncer (live pid in O(pidfile), O(admin_password) given) shows other \
         values, the run reloads and reports a change: a reload that failed before is not \
         forgotten. Check mode only reads SHOW CONFIG.",
        "Open files: PgBouncer holds one descriptor per client and per server connection; the \
         result gives RV(sizing.open_files_needed) (max_client_conn + server connections + 16) \
         and warns above 1024, systemd's default soft limit that Debian's pgbouncer.service \
         keeps (its LimitNOFILE line is commented out): the inventory's large scale needs \
         about 1008.",
        "Several PgBouncer processes on one port (O(so_reuseport)): one pgbouncer.ini each, \
         with its own O(pidfile), O(unix_socket_dir) and O(peer_id), and every process in \
         O(peers) so cancel requests reach the right one. Peering needs PgBouncer 1.19 or \
         later (Debian 12 ships 1.18): the module runs O(pgbouncer_binary) with C(--version) and \
         fails when peering is asked of an older one.",
        "Synapse and transaction pooling (synapse issue 4473). Current Synapse \
         (synapse/storage/engines/postgres.py, C(PostgresEngine.on_new_connection)) calls \
         psycopg2's set_isolation_level(ISOLATION_LEVEL_REPEATABLE_READ), and C(new_transaction) in \
         synapse/storage/database.py calls C(attempt_to_set_isolation_level) for a transaction \
         that asks for another level; psycopg2 since 2.7 sends the level \
         with every C(BEGIN) (BEGIN ISOLATION LEVEL REPEATABLE READ), not as a session \
         setting, so it holds in transaction pooling. The same function also runs session-level \
         C(SET bytea_output TO escape), C(SET statement_timeout) (10 min), C(SET \
         idle_in_transaction_session_timeout) (30 min) and, when configured, C(SET \
         synchronous_commit TO OFF); in transaction pooling these reach only the server \
         connection that ran them. The module therefore returns RV(role_settings): the \
         statements that make them role defaults (ALTER ROLE synapse SET ...) for \
         patroni_bootstrap (its C(users[].settings), which the patroni role sets) or an \
         operator to apply on the primary. No isolation level is made a role default: Synapse runs \
         its autocommit statements (its read-write locks) at the server default, READ \
         COMMITTED, and REPEATABLE READ there makes them fail with foreign-key violations. \
         In transaction and statement pooling the module also writes \
         C(server_reset_query = DISCARD ALL) with C(server_reset_query_always = 1): a session \
         setting one client makes (Synapse's background index builds send C(SET SESSION \
         statement_timeout = 0) and the index build as separate autocommit statements) can \
         never reach another client's queries; those index builds then run under the role's \
         C(statement_timeout) (10 min), so raise it for an upgrade that builds indexes on a \
         very large database. What the reset costs in throughput is measured in BENCHMARKS.md \
         (section PgBouncer: DISCARD ALL after every transaction). Both keys are the module's; \
         O(settings) cannot set them. psycopg2 sends no startup \
         parameter PgBouncer refuses; O(ignore_startup_parameters) is there for C(options) or \
         C(extra_float_digits) from other clients.",
    ],
    options: &[
        OptionSpec::new("path", Kind::Path)
            .default(DefaultValue::Str("/etc/pgbouncer/pgbouncer.ini"))
            .doc(&["pgbouncer.ini. Its directory must exist."]),
        OptionSpec::new("app_processes", Kind::Int)
            .required()
            .range(1, 10000)
            .doc(&["Synapse processes: the main process plus every worker (the inventory's C(pgbouncer_synapse_processes))."]),
        OptionSpec::new("app_pool_max", Kind::Int)
            .default(DefaultValue::Int(10))
            .range(1, 10000)
            .doc(&["Synapse's C(cp_max) per process (MDAD's C(matrix_synapse_database_cp_max), default 10)."]),
        OptionSpec::new("client_headroom_percent", Kind::Int)
            .default(DefaultValue::Int(100))
            .range(0, 1000)
            .doc(&["C(max_client_conn) above the demand, in percent: 100 doubles it for rolling restarts, where old and new processes overlap."]),
        OptionSpec::new("max_connections", Kind::Int)
            .range(1, 262143)
            .doc(&["PostgreSQL's C(max_connections). Unset: read with C(SHOW max_connections) over the O(login_host) connection."]),
        OptionSpec::new("reserved_connections", Kind::Int)
            .default(DefaultValue::Int(sizing::DEFAULT_RESERVED_CONNECTIONS as i64))
            .range(0, 262143)
            .doc(&["Connections to PostgreSQL that do not go through PgBouncer: C(superuser_reserved_connections) (3), Patroni's own, monitoring, backups, admins. (WAL senders are not counted in max_connections since PostgreSQL 12.)"]),
        OptionSpec::new("databases", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&DATABASE_OPTIONS)
            .required()
            .doc(&["The C([databases]) section; at least one."]),
        OptionSpec::new("default_pool_size", Kind::Int)
            .range(1, 100000)
            .doc(&["Overrides the computed C(default_pool_size) (app_processes x app_pool_max)."]),
        OptionSpec::new("reserve_pool_size", Kind::Int)
            .range(0, 100000)
            .doc(&["Overrides the computed C(reserve_pool_size) (max(5, pool / 10))."]),
        OptionSpec::new("pool_mode", Kind::Str)
            .default(DefaultValue::Str("transaction"))
            .choices(&["transaction", "session", "statement"])
            .doc(&["PgBouncer's pool mode. Synapse needs C(transaction) or C(session); C(statement) breaks its multi-statement transactions."]),
        OptionSpec::new("listen_addr", Kind::List)
            .elements(Kind::Str)
            .default(DefaultValue::EmptyList)
            .doc(&["Addresses to listen on (IPv4/IPv6, or C(*)); empty means C(127.0.0.1). The inventory gives the Synapse host's intranet address."]),
        OptionSpec::new("listen_port", Kind::Int)
            .default(DefaultValue::Int(6432))
            .range(1, 65535)
            .doc(&["Port to listen on."]),
        OptionSpec::new("unix_socket_dir", Kind::Path).doc(&["Unix socket directory (one per process with so_reuseport)."]),
        OptionSpec::new("pidfile", Kind::Path).doc(&["PgBouncer's pidfile: how the module finds the running process (SIGHUP)."]),
        OptionSpec::new("logfile", Kind::Path).doc(&["PgBouncer's log file; unset logs to stderr/syslog."]),
        OptionSpec::new("auth_mode", Kind::Str)
            .default(DefaultValue::Str("auth_file"))
            .choices(&["auth_file", "auth_query"])
            .doc(&["How PgBouncer finds SCRAM verifiers (see the description). Default C(auth_file): it works with a PostgreSQL that accepts scram-sha-256 only."]),
        OptionSpec::new("auth_file", Kind::Path)
            .default(DefaultValue::Str("/etc/pgbouncer/userlist.txt"))
            .doc(&["The auth file: SCRAM verifiers of O(auth_users) and O(admin_user), 0640."]),
        OptionSpec::new("auth_users", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&AUTH_USER_OPTIONS)
            .default(DefaultValue::EmptyList)
            .doc(&["Roles whose verifiers go into the auth file."]),
        OptionSpec::new("auth_user", Kind::Str)
            .default(DefaultValue::Str("pgbouncer"))
            .doc(&["With auth_query: the role PgBouncer runs the lookup as."]),
        OptionSpec::new("auth_function", Kind::Str)
            .default(DefaultValue::Str("pgbouncer.get_auth"))
            .doc(&["With auth_query: the schema-qualified SECURITY DEFINER lookup function."]),
        OptionSpec::new("admin_user", Kind::Str)
            .default(DefaultValue::Str("pgbouncer_admin"))
            .doc(&["The admin console user (C(admin_users))."]),
        OptionSpec::new("admin_password", Kind::Str)
            .no_log()
            .doc(&["Its password, at least 8 characters (a verifier goes into the auth file). Without it, reload is by SIGHUP and nothing can be verified."]),
        OptionSpec::new("stats_users", Kind::List)
            .elements(Kind::Str)
            .default(DefaultValue::EmptyList)
            .doc(&["C(stats_users): read-only console users (monitoring)."]),
        OptionSpec::new("ignore_startup_parameters", Kind::List)
            .elements(Kind::Str)
            .default(DefaultValue::EmptyList)
            .doc(&["Startup parameters PgBouncer accepts and ignores (for example C(extra_float_digits), C(options)). Each is a parameter name: letters, digits and C(_), not starting with a digit, or C(extension.name); at most 63 bytes. Anything else (a comma, a blank, a line break, NUL) is refused naming the item."]),
        OptionSpec::new("so_reuseport", Kind::Bool)
            .default(DefaultValue::Bool(false))
            .doc(&["Several processes share O(listen_port)."]),
        OptionSpec::new("peer_id", Kind::Int)
            .range(1, 16383)
            .doc(&["This process's peer id (PgBouncer 1.19 or later); must be one of O(peers)."]),
        OptionSpec::new("peers", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&PEER_OPTIONS)
            .default(DefaultValue::EmptyList)
            .doc(&["The C([peers]) section: every process of the group, this one included."]),
        OptionSpec::new("settings", Kind::Dict).doc(&["Other C([pgbouncer]) settings, written after the computed ones (a computed key cannot be overridden here). Keys are PgBouncer setting names (lower-case letters, digits and C(_)); values are text, numbers or booleans on one line, without control characters and without a blank at either end (PgBouncer's reader would strip it)."]),
        OptionSpec::new("owner", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Owner of both files."]),
        OptionSpec::new("group", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Group of both files (PgBouncer runs in it and reads them)."]),
        OptionSpec::new("reload", Kind::Bool)
            .default(DefaultValue::Bool(true))
            .doc(&["Reload a running PgBouncer after a change and verify with SHOW CONFIG."]),
        OptionSpec::new("pgbouncer_binary", Kind::Str)
            .default(DefaultValue::Str("pgbouncer"))
            .doc(&["The PgBouncer program, for C(--version)."]),
        OptionSpec::new("login_host", Kind::Str).doc(&["PostgreSQL to read C(max_connections) from (address, name, or socket directory), when O(max_connections) is unset. Named like community.postgresql's options."]),
        OptionSpec::new("login_port", Kind::Int)
            .default(DefaultValue::Int(5432))
            .range(1, 65535)
            .doc(&["Its port."]),
        OptionSpec::new("login_user", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Role to log in as."]),
        OptionSpec::new("login_password", Kind::Str).no_log().doc(&["Its password, at least 8 characters (sent only inside the SCRAM exchange)."]),
        OptionSpec::new("login_db", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Database to connect to."]),
        OptionSpec::new("connect_timeout", Kind::Int)
            .default(DefaultValue::Int(10))
            .range(1, 300)
            .doc(&["Seconds to wait for PostgreSQL or the admin console."]),
    ],
    required_if: &[],
    notes: &[
        "Supports check mode (nothing is written, nothing reloaded) and diff mode (the ini \
         before/after; the auth file's verifiers are never shown, only the names that change).",
        "Every bad option fails before anything is written, naming the option and the value.",
    ],
    examples: r#"- name: PgBouncer for Synapse, sized from the inventory
  z3r0d3v.matrix_ha.pgbouncer_tune:
    app_processes: "{{ pgbouncer_synapse_processes }}"
    app_pool_max: "{{ pgbouncer_synapse_cp_max }}"
    max_connections: "{{ hostvars[groups['patroni'][0]].patroni_max_connections }}"
    listen_addr: ["{{ pgbouncer_listen_address }}"]
    listen_port: "{{ pgbouncer_listen_port }}"
    databases:
      - name: synapse
        host: "{{ pgbouncer_upstream_host }}"
        port: "{{ pgbouncer_upstream_port }}"
        users: [synapse]
    auth_users:
      - name: synapse
        password: "{{ vault_synapse_db_password }}"
    admin_password: "{{ vault_pgbouncer_admin_password }}"
    pidfile: /run/postgresql/pgbouncer.pid
  register: pgbouncer

- name: Make Synapse's session settings role defaults (transaction pooling)
  ansible.builtin.debug:
    var: pgbouncer.role_settings
"#,
    returns: &[
        ReturnSpec { name: "sizing", description: "The computed figures: demand, max_client_conn, default_pool_size, reserve_pool_size, max_db_connections per database, pools, server_connections, needed, max_connections, utilisation_percent, pgbouncer_share_percent, alert_threshold, recommended_max_connections.", returned: "success", kind: "dict", sample: Some(r#"{"demand": 240, "default_pool_size": 240, "utilisation_percent": 72.7, "alert_threshold": 212}"#) },
        ReturnSpec { name: "max_connections_source", description: "C(option) or C(server) (read with SHOW max_connections).", returned: "success", kind: "str", sample: Some("\"option\"") },
        ReturnSpec { name: "restart_required", description: "Settings PgBouncer keeps until it restarts (a reload cannot change them), as SHOW CONFIG shows after the reload; each also gets a warning. Roles restart PgBouncer when this list is not empty.", returned: "success", kind: "list", sample: Some(r#"["listen_port"]"#) },
        ReturnSpec { name: "reloaded", description: "How PgBouncer was reloaded: C(console), C(sighup), or C(none).", returned: "success", kind: "str", sample: Some("\"console\"") },
        ReturnSpec { name: "verified", description: "Settings SHOW CONFIG showed with their new values.", returned: "when reloaded through the console", kind: "dict", sample: Some(r#"{"default_pool_size": "240"}"#) },
        ReturnSpec { name: "pgbouncer_version", description: "The installed PgBouncer's version, when it could be read.", returned: "success", kind: "str", sample: Some("\"1.18.0\"") },
        ReturnSpec { name: "role_settings", description: "SQL that makes Synapse's per-session settings role defaults, for each database user.", returned: "success", kind: "list", sample: Some(r#"["ALTER ROLE \"synapse\" SET bytea_output = 'escape'"]"#) },
        ReturnSpec { name: "auth_file_changed", description: "Names whose verifiers were added, replaced or removed.", returned: "success", kind: "list", sample: Some("[\"synapse\"]") },
    ],
};

/// A validation error naming the option.
fn bad(option: &str, value: impl std::fmt::Display, why: &str) -> Failure {
    Failure::new(format!("option '{option}': value {value} {why}"))
}

fn check_name(option: &str, name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return Err(bad(
            option,
            format!("{name:?}"),
            "is not a valid name: 1 to 63 letters, digits, '_', '-' or '.'",
        ));
    }
    Ok(())
}

fn check_db_name(option: &str, name: &str) -> Result<(), Failure> {
    check_name(option, name)?;
    if name.eq_ignore_ascii_case("pgbouncer") {
        return Err(bad(
            option,
            format!("{name:?}"),
            "is the admin console's database name",
        ));
    }
    Ok(())
}

fn check_host(option: &str, host: &str) -> Result<(), Failure> {
    let ok = if host.starts_with('/') {
        // A word of a [databases]/[peers] connection string: no blank, '=' or quote.
        text::problem(host, Syntax::IniListItem).is_none() && !host.contains(['=', '\''])
    } else {
        matrix_ha_rules::names::is_host(host)
    };
    if ok {
        Ok(())
    } else {
        Err(bad(
            option,
            format!("{host:?}"),
            "is not an IP address, a host name or an absolute socket directory",
        ))
    }
}

fn check_path_text(option: &str, path: &str) -> Result<(), Failure> {
    text::check(option, path, Syntax::IniValue)?;
    if path.starts_with('/') && !path.contains(';') {
        Ok(())
    } else {
        Err(bad(option, format!("{path:?}"), "is not an absolute path"))
    }
}

fn to_u32(option: &str, v: i64) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| bad(option, v, "is out of range"))
}

fn to_u16(option: &str, v: i64) -> Result<u16, Failure> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad(option, v, "is not a port (1 to 65535)"))
}

/// The longest value of an O(settings) entry (PgBouncer's longest, a query, is far shorter).
const MAX_SETTING_VALUE: usize = 4096;

/// Keys the module computes; O(settings) cannot set them.
const OWNED_KEYS: &[&str] = &[
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "pidfile",
    "logfile",
    "auth_type",
    "auth_file",
    "auth_user",
    "auth_query",
    "admin_users",
    "stats_users",
    "pool_mode",
    "server_reset_query",
    "server_reset_query_always",
    "max_client_conn",
    "default_pool_size",
    "reserve_pool_size",
    "ignore_startup_parameters",
    "so_reuseport",
    "peer_id",
    "auth_hba_file",
    "max_db_connections",
];

/// Settings PgBouncer only takes at start.
const RESTART_KEYS: &[&str] = &[
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "pidfile",
    "so_reuseport",
    "peer_id",
];

/// Everything validated, before any I/O but reading max_connections.
struct Checked {
    databases: Vec<(DatabaseArg, Vec<String>)>,
    listen_addr: Vec<String>,
    listen_port: u16,
    peers: Vec<ini::Peer>,
    peer_id: Option<u32>,
    settings: Vec<(String, String)>,
    auth_query: bool,
}

fn validate(a: &Args) -> Result<Checked, Failure> {
    check_path_text("path", &a.path)?;
    check_path_text("auth_file", &a.auth_file)?;
    if a.path == a.auth_file {
        return Err(bad(
            "auth_file",
            format!("{:?}", a.auth_file),
            "is the same file as 'path'",
        ));
    }
    for (opt, v) in [
        ("unix_socket_dir", &a.unix_socket_dir),
        ("pidfile", &a.pidfile),
        ("logfile", &a.logfile),
    ] {
        if let Some(p) = v {
            check_path_text(opt, p)?;
        }
    }
    if a.databases.is_empty() {
        return Err(Failure::new(
            "option 'databases': the list is empty; give at least one database",
        ));
    }
    let mut databases = Vec::new();
    let mut seen = Vec::new();
    for (i, d) in a.databases.iter().enumerate() {
        check_db_name(&format!("databases[{i}].name"), &d.name)?;
        if seen.contains(&d.name) {
            return Err(bad(
                &format!("databases[{i}].name"),
                format!("{:?}", d.name),
                "is given twice",
            ));
        }
        seen.push(d.name.clone());
        if let Some(n) = &d.dbname {
            check_name(&format!("databases[{i}].dbname"), n)?;
        }
        match &d.host {
            Some(h) => check_host(&format!("databases[{i}].host"), h)?,
            None => {
                return Err(Failure::new(format!(
                    "missing required option 'databases[{i}].host'"
                )))
            }
        }
        let users = if d.users.is_empty() {
            vec![d.name.clone()]
        } else {
            d.users.clone()
        };
        for (j, u) in users.iter().enumerate() {
            check_name(&format!("databases[{i}].users[{j}]"), u)?;
        }
        databases.push((
            DatabaseArg {
                name: d.name.clone(),
                dbname: d.dbname.clone(),
                host: d.host.clone(),
                port: d.port,
                users: d.users.clone(),
                pool_size: d.pool_size,
            },
            users,
        ));
    }
    let listen_addr = if a.listen_addr.is_empty() {
        vec!["127.0.0.1".to_string()]
    } else {
        a.listen_addr.clone()
    };
    for (i, addr) in listen_addr.iter().enumerate() {
        if addr != "*" && addr.parse::<IpAddr>().is_err() {
            return Err(bad(
                &format!("listen_addr[{i}]"),
                format!("{addr:?}"),
                "is not an IP address or '*'",
            ));
        }
    }
    let listen_port = to_u16("listen_port", a.listen_port)?;
    let auth_query = a.auth_mode == "auth_query";
    check_name("auth_user", &a.auth_user)?;
    check_name("admin_user", &a.admin_user)?;
    for (i, u) in a.stats_users.iter().enumerate() {
        check_name(&format!("stats_users[{i}]"), u)?;
    }
    let parts: Vec<&str> = a.auth_function.split('.').collect();
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !s.as_bytes()[0].is_ascii_digit()
    };
    if parts.len() != 2 || !parts.iter().all(|p| ident(p)) {
        return Err(bad(
            "auth_function",
            format!("{:?}", a.auth_function),
            "is not a schema-qualified function name (schema.function, lower-case identifiers)",
        ));
    }
    let mut names = Vec::new();
    for (i, u) in a.auth_users.iter().enumerate() {
        check_name(&format!("auth_users[{i}].name"), &u.name)?;
        if names.contains(&u.name) || (u.name == a.admin_user && a.admin_password.is_some()) {
            return Err(bad(
                &format!("auth_users[{i}].name"),
                format!("{:?}", u.name),
                "is given twice (admin_user's entry comes from admin_password)",
            ));
        }
        names.push(u.name.clone());
        match (&u.password, &u.verifier) {
            (Some(p), None) if !p.is_empty() => {}
            (None, Some(v)) if scram::is_verifier(v) => {}
            (None, Some(_)) => return Err(Failure::new(format!("option 'auth_users[{i}].verifier': the value (hidden: no_log) is not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>); md5 and plain passwords are refused"))),
            _ => return Err(Failure::new(format!("option 'auth_users[{i}]': give exactly one of 'password' (not empty) and 'verifier'"))),
        }
    }
    if a.admin_password.as_deref() == Some("") {
        return Err(Failure::new("option 'admin_password': the value is empty"));
    }
    let mut peers = Vec::new();
    for (i, p) in a.peers.iter().enumerate() {
        let id = to_u32(&format!("peers[{i}].id"), p.id)?;
        if peers.iter().any(|q: &ini::Peer| q.id == id) {
            return Err(bad(&format!("peers[{i}].id"), id, "is given twice"));
        }
        check_host(&format!("peers[{i}].host"), &p.host)?;
        peers.push(ini::Peer {
            id,
            host: p.host.clone(),
            port: to_u16(&format!("peers[{i}].port"), p.port)?,
        });
    }
    let peer_id = a.peer_id.map(|v| to_u32("peer_id", v)).transpose()?;
    match peer_id {
        Some(id) if !peers.iter().any(|p| p.id == id) => {
            return Err(bad("peer_id", id, "is not the id of any entry in 'peers'"));
        }
        None if !peers.is_empty() => {
            return Err(Failure::new(
                "option 'peer_id': missing, required when 'peers' is given",
            ));
        }
        _ => {}
    }
    if peer_id.is_some() && a.pidfile.is_none() {
        return Err(Failure::new("option 'pidfile': missing, required with 'peer_id' (each process of a so_reuseport group has its own)"));
    }
    if peer_id.is_some() && a.unix_socket_dir.is_none() {
        return Err(Failure::new("option 'unix_socket_dir': missing, required with 'peer_id' (each process of a so_reuseport group has its own)"));
    }
    for (i, p) in a.ignore_startup_parameters.iter().enumerate() {
        let option = format!("ignore_startup_parameters[{i}]");
        text::check(&option, p, Syntax::IniListItem)?;
        if !text::is_parameter_name(p) {
            return Err(bad(
                &option,
                text::shown(p).trim_start_matches("value "),
                "is not a startup parameter name (letters, digits and '_', not starting with a \
                 digit, or extension.name; at most 63 bytes)",
            ));
        }
    }
    let mut settings = Vec::new();
    for (k, v) in a.settings.iter().flatten() {
        if OWNED_KEYS.contains(&k.as_str()) {
            return Err(Failure::new(format!(
                "option 'settings.{k}': this setting is computed by the module; use its own option"
            )));
        }
        // PgBouncer's own setting names: lower-case identifiers (the parameter-name grammar
        // without an extension's dot).
        if !text::is_parameter_name(k)
            || k.contains('.')
            || k.bytes().any(|b| b.is_ascii_uppercase())
        {
            return Err(bad(
                "settings",
                text::shown(k).trim_start_matches("value "),
                "is not a PgBouncer setting name (lower-case letters, digits and '_', not \
                 starting with a digit)",
            ));
        }
        let value_text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            other => {
                return Err(bad(
                    &format!("settings.{k}"),
                    other,
                    "must be text, a number or a boolean",
                ))
            }
        };
        text::check(&format!("settings.{k}"), &value_text, Syntax::IniValue)?;
        if value_text.len() > MAX_SETTING_VALUE {
            return Err(bad(
                &format!("settings.{k}"),
                text::shown(&value_text).trim_start_matches("value "),
                &format!(
                    "has {} bytes; at most {MAX_SETTING_VALUE} are allowed",
                    value_text.len()
                ),
            ));
        }
        settings.push((k.clone(), value_text));
    }
    settings.sort();
    Ok(Checked {
        databases,
        listen_addr,
        listen_port,
        peers,
        peer_id,
        settings,
        auth_query,
    })
}

/// SQL that makes Synapse's per-session settings defaults of `role` (the rules crate's list).
pub fn role_settings(role: &str) -> Vec<String> {
    matrix_ha_rules::session::role_settings_sql(role)
}

/// Restart-only settings as (key, warning).
type Restart = Vec<(String, String)>;

/// Warns for each restart-only setting and returns their names, for `restart_required`.
fn restart_report(ctx: &mut Context, restart: Restart) -> Vec<String> {
    restart
        .into_iter()
        .map(|(key, warning)| {
            ctx.warn(warning);
            key
        })
        .collect()
}

/// SHOW CONFIG against the file's settings: (verified, wrong changeable ones, restart-only ones).
fn compare(
    cfg: &BTreeMap<String, (String, bool)>,
    expected: &[(String, String)],
) -> (serde_json::Map<String, Value>, Vec<String>, Restart) {
    let mut verified = serde_json::Map::new();
    let mut wrong = Vec::new();
    let mut restart = Vec::new();
    for (key, want) in expected {
        let Some((value, changeable)) = cfg.get(key) else {
            continue;
        };
        let same = value == want || (key == "auth_type" && value.eq_ignore_ascii_case(want));
        if same {
            verified.insert(key.clone(), json!(value));
        } else if RESTART_KEYS.contains(&key.as_str()) || !changeable {
            restart.push((
                key.clone(),
                format!(
                    "'{key}' is {want:?} in the file but PgBouncer keeps {value:?} until it restarts"
                ),
            ));
        } else {
            wrong.push(format!("{key} = {value:?} (expected {want:?})"));
        }
    }
    (verified, wrong, restart)
}

/// Applies the module.
pub fn run(a: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let c = validate(&a)?;
    let attrs = Attrs::resolve(Some(&a.owner), Some(&a.group), Some(0o640))?;
    let timeout = Duration::from_secs(u64::try_from(a.connect_timeout).unwrap_or(10));

    // Peering needs PgBouncer 1.19.
    let version = live::pgbouncer_version(&a.pgbouncer_binary);
    if let Some(id) = c.peer_id {
        match &version {
            Ok((major, minor, text)) if (*major, *minor) < PEERING_SINCE => {
                return Err(Failure::new(format!("option 'peer_id': value {id} needs PgBouncer 1.19 or later for peering, and '{}' is PgBouncer {text} (Debian 12 ships 1.18; Debian 13 has 1.24)", a.pgbouncer_binary)));
            }
            Err(why) => {
                return Err(Failure::new(format!("option 'peer_id': peering needs PgBouncer 1.19 or later, and the version cannot be checked: {why}")));
            }
            _ => {}
        }
    }

    let (max_connections, source) = match a.max_connections {
        Some(m) => (to_u32("max_connections", m)?, "option"),
        None => {
            let Some(host) = &a.login_host else {
                return Err(Failure::new("option 'max_connections': missing; give it, or 'login_host' (with login_user/login_password) to read it from PostgreSQL"));
            };
            check_host("login_host", host)?;
            let target = live::Target {
                host: host.clone(),
                port: to_u16("login_port", a.login_port)?,
                user: a.login_user.clone(),
                password: a.login_password.clone(),
                dbname: a.login_db.clone(),
                timeout,
            };
            (
                live::max_connections(&target)
                    .map_err(|e| Failure::new(format!("option 'login_host': {e}")))?,
                "server",
            )
        }
    };

    let sizing = sizing::compute(&sizing::Inputs {
        app_processes: to_u32("app_processes", a.app_processes)?,
        app_pool_max: to_u32("app_pool_max", a.app_pool_max)?,
        client_headroom_percent: to_u32("client_headroom_percent", a.client_headroom_percent)?,
        max_connections,
        reserved_connections: to_u32("reserved_connections", a.reserved_connections)?,
        databases: c
            .databases
            .iter()
            .map(|(d, users)| {
                Ok(sizing::DbPools {
                    name: d.name.clone(),
                    users: u32::try_from(users.len()).unwrap_or(u32::MAX),
                    pool_size: d
                        .pool_size
                        .map(|p| to_u32("databases[].pool_size", p))
                        .transpose()?,
                })
            })
            .collect::<Result<_, Failure>>()?,
        default_pool_size: a
            .default_pool_size
            .map(|v| to_u32("default_pool_size", v))
            .transpose()?,
        reserve_pool_size: a
            .reserve_pool_size
            .map(|v| to_u32("reserve_pool_size", v))
            .transpose()?,
        auth_query: c.auth_query,
    })
    .map_err(|e| {
        let f = Failure::new(e.to_string());
        match e {
            sizing::SizingError::DoesNotFit {
                needed,
                recommended,
                ..
            } => f
                .with("needed_max_connections", needed)
                .with("recommended_max_connections", recommended),
            _ => f,
        }
    })?;
    // One descriptor per client and per server connection, plus listeners, log and DNS.
    let open_files = u64::from(sizing.max_client_conn) + u64::from(sizing.server_connections) + 16;
    if open_files > SOFT_NOFILE {
        ctx.warn(format!(
            "PgBouncer needs about {open_files} open files (max_client_conn + server \
             connections): above the usual soft limit of {SOFT_NOFILE}; raise LimitNOFILE of \
             pgbouncer.service"
        ));
    }
    if sizing.pgbouncer_share_percent > f64::from(sizing::ALERT_PERCENT) {
        ctx.warn(format!(
            "PgBouncer can hold {} of max_connections {} ({} %), above the design's {} %: raise max_connections to {}",
            sizing.server_connections, max_connections, sizing.pgbouncer_share_percent, sizing::ALERT_PERCENT, sizing.recommended_max_connections
        ));
    }

    let databases: Vec<ini::Database> = c
        .databases
        .iter()
        .zip(sizing.max_db_connections.iter())
        .map(|((d, _), (_, cap))| {
            Ok(ini::Database {
                name: d.name.clone(),
                dbname: d.dbname.clone().unwrap_or_else(|| d.name.clone()),
                host: d.host.clone().unwrap_or_default(),
                port: d
                    .port
                    .map(|p| to_u16("databases[].port", p))
                    .transpose()?
                    .unwrap_or(5432),
                pool_size: d
                    .pool_size
                    .map(|p| to_u32("databases[].pool_size", p))
                    .transpose()?,
                max_db_connections: *cap,
            })
        })
        .collect::<Result<_, Failure>>()?;
    let config = ini::Config {
        databases,
        listen_addr: c.listen_addr.clone(),
        listen_port: c.listen_port,
        unix_socket_dir: a.unix_socket_dir.clone(),
        pidfile: a.pidfile.clone(),
        logfile: a.logfile.clone(),
        auth: if c.auth_query {
            ini::Auth::Query {
                user: a.auth_user.clone(),
                function: a.auth_function.clone(),
            }
        } else {
            ini::Auth::File
        },
        auth_file: a.auth_file.clone(),
        admin_users: vec![a.admin_user.clone()],
        stats_users: a.stats_users.clone(),
        pool_mode: a.pool_mode.clone(),
        sizing: sizing.clone(),
        app_processes: to_u32("app_processes", a.app_processes)?,
        app_pool_max: to_u32("app_pool_max", a.app_pool_max)?,
        reserved_connections: to_u32("reserved_connections", a.reserved_connections)?,
        ignore_startup_parameters: a.ignore_startup_parameters.clone(),
        so_reuseport: a.so_reuseport || c.peer_id.is_some(),
        peer_id: c.peer_id,
        peers: c.peers.clone(),
        settings: c.settings.clone(),
    };
    let content = ini::render(&config);

    // The auth file: keep verifiers the passwords still match.
    let path_err =
        |opt: &'static str| move |e: fs::FsError| Failure::new(format!("option '{opt}': {e}"));
    let ini_path = fs::resolve(Path::new(&a.path)).map_err(path_err("path"))?;
    let auth_path = fs::resolve(Path::new(&a.auth_file)).map_err(path_err("auth_file"))?;
    // Held from the reads to the writes (always the ini file first, then the auth file), so a
    // concurrent run reads what this one wrote.
    let locks = match ctx.check_mode {
        true => None,
        false => Some((
            fs::lock(&ini_path).map_err(path_err("path"))?,
            fs::lock(&auth_path).map_err(path_err("auth_file"))?,
        )),
    };
    if let Some((ini_lock, auth_lock)) = &locks {
        for note in ini_lock.notes().into_iter().chain(auth_lock.notes()) {
            ctx.warn(note);
        }
    }
    let ini_now = fs::read(&ini_path).map_err(path_err("path"))?;
    let auth_now = fs::read(&auth_path).map_err(path_err("auth_file"))?;
    let old_entries: BTreeMap<String, String> = auth_now
        .as_ref()
        .map(|(b, _)| {
            ini::parse_auth_file(&String::from_utf8_lossy(b))
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let mut wanted: Vec<(String, Option<String>, Option<String>)> = a
        .auth_users
        .iter()
        .map(|u| (u.name.clone(), u.password.clone(), u.verifier.clone()))
        .collect();
    if let Some(p) = &a.admin_password {
        wanted.push((a.admin_user.clone(), Some(p.clone()), None));
    }
    let mut entries = Vec::new();
    let mut auth_changed = Vec::new();
    for (name, password, verifier) in wanted {
        let old = old_entries.get(&name);
        let v = match (password, verifier) {
            (_, Some(v)) => v,
            (Some(p), None) => match old {
                Some(o) if scram::matches(&p, o) => o.clone(),
                _ => scram::verifier(&p),
            },
            (None, None) => continue,
        };
        if old != Some(&v) {
            auth_changed.push(name.clone());
        }
        entries.push((name, v));
    }
    for name in old_entries.keys() {
        if !entries.iter().any(|(n, _)| n == name) {
            auth_changed.push(name.clone());
        }
    }
    auth_changed.sort();
    let auth_content = ini::render_auth_file(&entries);

    let ini_before: &[u8] = ini_now.as_ref().map_or(&[], |(b, _)| b);
    let auth_before: &[u8] = auth_now.as_ref().map_or(&[], |(b, _)| b);
    let ini_changes = ini_before != content.as_bytes();
    let auth_changes = auth_before != auth_content.as_bytes();
    let mut attr_changes = Vec::new();
    for (now, label) in [(&ini_now, "path"), (&auth_now, "auth_file")] {
        if let Some((_, meta)) = now {
            for change in attrs.changes(meta) {
                attr_changes.push(format!("{label}: {change}"));
            }
        }
    }
    let changed = ini_changes || auth_changes || !attr_changes.is_empty();

    let mut role_sql = Vec::new();
    for (_, users) in &c.databases {
        for u in users {
            for s in role_settings(u) {
                if !role_sql.contains(&s) {
                    role_sql.push(s);
                }
            }
        }
    }
    let sizing_json = json!({
        "demand": sizing.demand,
        "max_client_conn": sizing.max_client_conn,
        "default_pool_size": sizing.default_pool_size,
        "reserve_pool_size": sizing.reserve_pool_size,
        "max_db_connections": sizing.max_db_connections.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
        "pools": sizing.pools,
        "server_connections": sizing.server_connections,
        "reserved_connections": a.reserved_connections,
        "needed": sizing.needed,
        "max_connections": sizing.max_connections,
        "utilisation_percent": sizing.utilisation_percent,
        "pgbouncer_share_percent": sizing.pgbouncer_share_percent,
        "alert_percent": sizing::ALERT_PERCENT,
        "alert_threshold": sizing.alert_threshold,
        "recommended_max_connections": sizing.recommended_max_connections,
        "open_files_needed": open_files,
    });
    let shown = ini_path.display().to_string();
    let mut msg_parts = Vec::new();
    if ini_changes {
        msg_parts.push(format!("wrote {shown}"));
    }
    if auth_changes {
        msg_parts.push(format!(
            "wrote {} ({} entr{} changed)",
            auth_path.display(),
            auth_changed.len(),
            if auth_changed.len() == 1 { "y" } else { "ies" }
        ));
    }
    if !attr_changes.is_empty() {
        msg_parts.push(format!("set {}", attr_changes.join(", ")));
    }
    let mut outcome = Outcome::new(
        changed,
        if msg_parts.is_empty() {
            "PgBouncer's files are up to date".to_string()
        } else {
            msg_parts.join("; ")
        },
    )
    .with("path", shown.clone())
    .with("auth_file", auth_path.display().to_string())
    .with("sizing", sizing_json)
    .with("max_connections_source", source)
    .with("role_settings", role_sql)
    .with("auth_file_changed", auth_changed.clone())
    .with("reloaded", "none")
    .with("restart_required", Vec::<String>::new());
    if let Ok((_, _, v)) = &version {
        outcome = outcome.with("pgbouncer_version", v.clone());
    }
    if ini_changes || auth_changes {
        let mut after = content.clone();
        if auth_changes {
            after.push_str(&format!(
                ";; auth file {}: verifiers changed for: {}\n",
                auth_path.display(),
                auth_changed.join(", ")
            ));
        }
        outcome = outcome.with_diff(Diff::file(
            &shown,
            String::from_utf8_lossy(ini_before),
            after,
        ));
    }
    // The running PgBouncer: a file already right but not loaded (a reload that failed
    // before) is a change too.
    let console = live::Target {
        host: a
            .unix_socket_dir
            .clone()
            .unwrap_or_else(|| match c.listen_addr[0].as_str() {
                "*" | "0.0.0.0" => "127.0.0.1".to_string(),
                "::" => "::1".to_string(),
                other => other.to_string(),
            }),
        port: c.listen_port,
        user: a.admin_user.clone(),
        password: a.admin_password.clone(),
        dbname: "pgbouncer".to_string(),
        timeout,
    };
    let pid = a.pidfile.as_deref().and_then(live::running_pid);
    let expected = ini::pgbouncer_settings(&config);
    let mut stale = false;
    if !changed && a.reload && a.admin_password.is_some() && pid.is_some() {
        match live::console_config(&console, false) {
            Ok(cfg) => {
                let (verified, wrong, restart) = compare(&cfg, &expected);
                outcome = outcome.with("restart_required", restart_report(ctx, restart));
                if wrong.is_empty() {
                    outcome = outcome.with("verified", Value::Object(verified));
                } else {
                    stale = true;
                    outcome.changed = true;
                    outcome.msg = format!(
                        "PgBouncer runs with values its file no longer has ({}): reload",
                        wrong.join(", ")
                    );
                }
            }
            Err(e) => {
                stale = true;
                outcome.changed = true;
                outcome.msg = format!(
                    "PgBouncer runs but its admin console does not answer as its file says ({e}): \
                     it was started with another configuration; reload"
                );
            }
        }
    }
    let Some((ini_lock, auth_lock)) = locks else {
        return Ok(outcome); // check mode
    };

    // Auth file first: the new ini may name users only it knows.
    let opts = WriteOptions {
        attrs,
        default_mode: 0o640,
        backup: false,
    };
    if auth_changes {
        fs::write(
            &auth_lock,
            auth_content.as_bytes(),
            auth_now.as_ref(),
            &opts,
        )
        .map_err(path_err("auth_file"))?;
    } else if auth_now.is_some() {
        fs::set_attrs(&auth_path, &attrs).map_err(path_err("auth_file"))?;
    }
    if ini_changes {
        fs::write(&ini_lock, content.as_bytes(), ini_now.as_ref(), &opts)
            .map_err(path_err("path"))?;
    } else if ini_now.is_some() {
        fs::set_attrs(&ini_path, &attrs).map_err(path_err("path"))?;
    }
    drop((ini_lock, auth_lock));
    if !(ini_changes || auth_changes || stale) || !a.reload {
        return Ok(outcome);
    }

    // Reload and verify.
    let console_reload = a
        .admin_password
        .as_ref()
        .map(|_| live::console_config(&console, true));
    let shown_config = match (console_reload, pid) {
        (Some(Ok(cfg)), _) => {
            outcome = outcome.with("reloaded", "console");
            Some(cfg)
        }
        // A running PgBouncer whose console does not answer as the new file says: it still
        // listens where its old configuration said, or does not know the admin user yet.
        // SIGHUP loads the file; the listen settings need a restart.
        (Some(Err(e)), Some(pid)) => {
            live::sighup(pid).map_err(|e| {
                Failure::new(format!("cannot send SIGHUP to PgBouncer (pid {pid}): {e}"))
            })?;
            ctx.warn(format!(
                "the admin console did not answer as the new file says ({e}): reloaded by SIGHUP, \
                 unchecked; restart PgBouncer so that it listens as configured"
            ));
            outcome = outcome.with("reloaded", "sighup");
            None
        }
        (Some(Err(_)), None) => {
            ctx.warn("PgBouncer does not run (no admin console answered): the new configuration applies when it starts");
            None
        }
        (None, Some(pid)) => {
            live::sighup(pid).map_err(|e| {
                Failure::new(format!("cannot send SIGHUP to PgBouncer (pid {pid}): {e}"))
            })?;
            ctx.warn("reloaded by SIGHUP: without 'admin_password' the new values cannot be checked with SHOW CONFIG");
            outcome = outcome.with("reloaded", "sighup");
            None
        }
        (None, None) => {
            ctx.warn("PgBouncer does not run (no live pid in 'pidfile', no admin_password): the new configuration applies when it starts");
            None
        }
    };
    if let Some(cfg) = shown_config {
        let (verified, wrong, restart) = compare(&cfg, &expected);
        outcome = outcome.with("restart_required", restart_report(ctx, restart));
        if !wrong.is_empty() {
            return Err(Failure::new(format!(
                "PgBouncer reloaded but SHOW CONFIG does not show the new values: {}",
                wrong.join(", ")
            ))
            .with("verified", Value::Object(verified)));
        }
        outcome = outcome.with("verified", Value::Object(verified));
    }
    Ok(outcome)
}
