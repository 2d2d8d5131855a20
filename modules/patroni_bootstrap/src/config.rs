//! The pure part: validated settings in, `patroni.yml` out.
//!
//! [`Settings::validate`] checks everything a user can get wrong (addresses, ports, CIDRs,
//! Patroni's timing rule, names, locales, parameter overrides) and reports every problem at
//! once, each naming the option and the value. [`render`] turns validated settings and the
//! host's size into the YAML text of the file. Nothing here touches the system.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use matrix_ha_runtime::text::{self, Syntax};
use matrix_ha_runtime::yaml;
use serde::Serialize;
use serde_yaml_ng::Value as Yaml;
use thiserror::Error;

use crate::sizing::{self, Host};

/// One problem with one option.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("option '{option}': {message}")]
pub struct ConfigError {
    pub option: String,
    pub message: String,
}

/// Every problem found, joined with `"; "`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// `synchronous_mode`: how commits wait for a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous replication.
    Off,
    /// Patroni's `synchronous_mode: true`: one synchronous standby while one is healthy;
    /// Patroni promotes only a synchronous standby, so no acknowledged commit is lost.
    On,
    /// `synchronous_mode_strict: true` as well: writes stop while no standby is synchronous.
    Strict,
}

/// A database the module ensures on the leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub locale: String,
}

/// A login role the module ensures on the leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Session defaults of the role (`ALTER ROLE name SET key = 'value'`).
    #[serde(default)]
    pub settings: Option<BTreeMap<String, serde_json::Value>>,
}

/// A role setting's value as PostgreSQL takes it: text as it is, numbers, booleans as on/off;
/// None for other JSON (lists, maps, null).
pub fn setting_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(t) => Some(t.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_string()),
        _ => None,
    }
}

/// Whether `key` is a PostgreSQL parameter name (`name` or `extension.name`, the runtime's
/// parameter-name grammar), written in lower case as PostgreSQL shows it.
pub fn is_setting_name(key: &str) -> bool {
    text::is_parameter_name(key) && !key.bytes().any(|b| b.is_ascii_uppercase())
}

/// Everything the file is made of, before validation (the module's options of the same names).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Settings {
    pub scope: String,
    pub name: String,
    pub etcd_hosts: Vec<String>,
    pub listen: String,
    pub connect_address: String,
    pub restapi_listen: String,
    pub restapi_username: String,
    pub restapi_password: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub pg_hba_networks: Vec<String>,
    pub superuser_username: String,
    pub superuser_password: String,
    pub replication_username: String,
    pub replication_password: String,
    pub ttl: i64,
    pub loop_wait: i64,
    pub retry_timeout: i64,
    pub maximum_lag_on_failover: i64,
    pub synchronous_mode: SyncMode,
    pub max_connections: i64,
    pub superuser_reserved_connections: i64,
    #[serde(deserialize_with = "null_as_empty")]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub databases: Vec<Database>,
    pub users: Vec<User>,
    pub pgbouncer_auth_user: String,
    pub pgbouncer_auth_password: Option<String>,
    /// pgBackRest's stanza: WAL archiving to the repository, restores from it.
    #[serde(default)]
    pub pgbackrest_stanza: Option<String>,
}

/// An unset `parameters` option (null) is no parameters.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    Ok(<Option<_> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// A `host:port` pair as Patroni reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The text as Patroni expects it (`[v6]:port` for IPv6).
    pub fn text(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Settings that passed [`Settings::validate`], with the parsed addresses.
#[derive(Debug, Clone)]
pub struct Valid {
    pub s: Settings,
    pub listen: HostPort,
    pub connect: HostPort,
    pub restapi_listen: HostPort,
    /// The REST API as other members and this module reach it: the host of
    /// `connect_address`, the port of `restapi_listen`.
    pub restapi_connect: HostPort,
    pub networks: Vec<IpNet>,
    /// Parameter overrides, typed for YAML.
    pub overrides: BTreeMap<String, Yaml>,
}

/// PostgreSQL settings Patroni itself sets from other keys, or that this module renders
/// from its own options: an override would be ignored or would break the cluster.
pub const RESERVED_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "cluster_name",
    "max_connections",
    "superuser_reserved_connections",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
    "hot_standby",
    "wal_level",
    "password_encryption",
    "restore_command",
];

/// Parameters Patroni keeps in the DCS (the same on every member; Patroni ignores them in a
/// member's local `postgresql.parameters`).
pub const DCS_PARAMETERS: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "wal_level",
    "track_commit_timestamp",
    "max_wal_senders",
    "max_replication_slots",
    "wal_log_hints",
];

fn err(errors: &mut Vec<ConfigError>, option: &str, message: impl Into<String>) {
    errors.push(ConfigError {
        option: option.to_string(),
        message: message.into(),
    });
}

/// Parses `host:port` / `[v6]:port`; the host is an IP address or an RFC 1123 name.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let shown = format!("value \"{text}\"");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{shown} is not host:port ([IPv6]:port for IPv6)"))?;
        (h, p)
    } else {
        let (h, p) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{shown} is not host:port (the port is missing)"))?;
        if h.contains(':') {
            return Err(format!("{shown}: write an IPv6 address as [address]:port"));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(format!("{shown} has no host"));
    }
    let port: u32 = port
        .parse()
        .map_err(|_| format!("{shown} has port \"{port}\", which is not a number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("{shown} has port {port}, outside 1 to 65535"));
    }
    if host.parse::<IpAddr>().is_err() && host != "*" && !valid_host_name(host) {
        return Err(format!(
            "{shown} has host \"{host}\", which is neither an IP address nor a valid host name"
        ));
    }
    Ok(HostPort {
        host: host.to_string(),
        port: port as u16,
    })
}

fn valid_host_name(name: &str) -> bool {
    matrix_ha_rules::names::is_host_name(name)
}

/// What `pgbackrest_stanza` needs: a stanza name pgBackRest takes, the superuser pgBackRest logs
/// in as, and no archiving parameters of the user's that would replace pgBackRest's.
fn check_pgbackrest(errors: &mut Vec<ConfigError>, s: &Settings, stanza: &str) {
    let ok = !stanza.is_empty()
        && stanza.len() <= 63
        && stanza
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        err(
            errors,
            "pgbackrest_stanza",
            format!(
                "value \"{stanza}\" must be 1 to 63 letters, digits, '-', '_' or '.' (it is \
                 written into archive_command and names the repository's directories)"
            ),
        );
    }
    if s.superuser_username != "postgres" {
        err(
            errors,
            "superuser_username",
            format!(
                "value \"{}\": with pgbackrest_stanza set, pgBackRest logs in over the local \
                 socket as its default user, postgres (with the password the backup role puts \
                 in postgres's ~/.pgpass), so the superuser must be postgres",
                s.superuser_username
            ),
        );
    }
    for key in PGBACKREST_PARAMETERS {
        if s.parameters.contains_key(*key) {
            err(
                errors,
                &format!("parameters.{key}"),
                format!(
                    "is set from pgbackrest_stanza (\"{}\"); remove it from parameters",
                    pgbackrest_parameter(key, stanza)
                ),
            );
        }
    }
}

/// Parameters rendered from `pgbackrest_stanza`.
pub const PGBACKREST_PARAMETERS: &[&str] = &["archive_mode", "archive_command"];

fn pgbackrest_parameter(key: &str, stanza: &str) -> String {
    match key {
        "archive_mode" => "on".to_string(),
        _ => format!("pgbackrest --stanza={stanza} archive-push %p"),
    }
}

/// The command that fetches a WAL segment from the repository (Patroni's `restore_command`).
pub fn pgbackrest_restore_command(stanza: &str) -> String {
    format!("pgbackrest --stanza={stanza} archive-get %f \"%p\"")
}

/// A PostgreSQL identifier this module creates: lower case, no quoting surprises.
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn check_name(errors: &mut Vec<ConfigError>, option: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        err(
            errors,
            option,
            format!(
                "value \"{value}\" must be 1 to 63 letters, digits, '-', '_' or '.' (it names \
                 keys in etcd)"
            ),
        );
    }
}

fn check_identifier(errors: &mut Vec<ConfigError>, option: &str, value: &str) {
    if !valid_identifier(value) {
        err(
            errors,
            option,
            format!(
                "value \"{value}\" is not a plain PostgreSQL name: use 1 to 63 lower-case \
                 letters, digits and '_', not starting with a digit"
            ),
        );
    }
}

fn check_password(errors: &mut Vec<ConfigError>, option: &str, value: &str) {
    if value.chars().count() < 8 {
        err(
            errors,
            option,
            "the value (hidden: no_log) is shorter than 8 characters",
        );
    } else if value.chars().any(char::is_control) {
        err(
            errors,
            option,
            "the value (hidden: no_log) contains a control character",
        );
    }
}

fn check_path(errors: &mut Vec<ConfigError>, option: &str, value: &str) {
    if !value.starts_with('/') || value.contains('\n') {
        err(
            errors,
            option,
            format!("value \"{value}\" is not an absolute path"),
        );
    }
}

/// The longest text value of a parameter (PostgreSQL's longest in practice, lists such as
/// `shared_preload_libraries`, are far shorter).
pub const MAX_PARAMETER_VALUE: usize = 4096;

/// A JSON override value as YAML: text (one line, no control character: Patroni writes it
/// into postgresql.conf), a number or a boolean.
fn parameter_value(value: &serde_json::Value) -> Option<Yaml> {
    match value {
        serde_json::Value::String(s)
            if !s.is_empty()
                && s.len() <= MAX_PARAMETER_VALUE
                && text::problem(s, Syntax::Line).is_none() =>
        {
            Some(Yaml::String(s.clone()))
        }
        serde_json::Value::Number(n) => serde_yaml_ng::to_value(n).ok(),
        serde_json::Value::Bool(b) => Some(Yaml::Bool(*b)),
        _ => None,
    }
}

impl Settings {
    /// Checks every option; returns the parsed form or every problem found.
    pub fn validate(self) -> Result<Valid, ConfigErrors> {
        let mut e = Vec::new();
        check_name(&mut e, "scope", &self.scope);
        check_name(&mut e, "name", &self.name);

        if self.etcd_hosts.is_empty() {
            err(
                &mut e,
                "etcd_hosts",
                "the list is empty: give the etcd members' client addresses as host:port",
            );
        }
        for (i, h) in self.etcd_hosts.iter().enumerate() {
            match parse_host_port(h) {
                Ok(hp) if hp.host == "*" || hp.host == "0.0.0.0" || hp.host == "::" => err(
                    &mut e,
                    &format!("etcd_hosts[{i}]"),
                    format!("value \"{h}\" is a wildcard, not an address to connect to"),
                ),
                Ok(_) => {}
                Err(m) => err(&mut e, &format!("etcd_hosts[{i}]"), m),
            }
        }

        let mut parsed = |option: &str, text: &str| match parse_host_port(text) {
            Ok(hp) => Some(hp),
            Err(m) => {
                err(&mut e, option, m);
                None
            }
        };
        let listen = parsed("listen", &self.listen);
        let connect = parsed("connect_address", &self.connect_address);
        let restapi_listen = parsed("restapi_listen", &self.restapi_listen);
        if let Some(c) = &connect {
            // Patroni refuses these: other members must be able to reach the address.
            if matches!(
                c.host.as_str(),
                "127.0.0.1" | "0.0.0.0" | "*" | "::1" | "::" | "localhost"
            ) {
                err(
                    &mut e,
                    "connect_address",
                    format!(
                        "value \"{}\" is a loopback or wildcard address: give the address the \
                         other members reach this one at",
                        self.connect_address
                    ),
                );
            }
        }
        if let (Some(l), Some(r)) = (&listen, &restapi_listen) {
            let same_host = l.host == r.host || l.host == "*" || r.host == "*";
            if l.port == r.port && same_host {
                err(
                    &mut e,
                    "restapi_listen",
                    format!(
                        "value \"{}\" uses port {}, which PostgreSQL listens on (option 'listen')",
                        self.restapi_listen, r.port
                    ),
                );
            }
        }

        check_path(&mut e, "data_dir", &self.data_dir);
        check_path(&mut e, "bin_dir", &self.bin_dir);

        let mut networks = Vec::new();
        if self.pg_hba_networks.is_empty() {
            err(
                &mut e,
                "pg_hba_networks",
                "the list is empty: give the networks (CIDR) of the other members and the clients",
            );
        }
        for (i, n) in self.pg_hba_networks.iter().enumerate() {
            let option = format!("pg_hba_networks[{i}]");
            match n.parse::<IpNet>() {
                Ok(net) if net.trunc() != net => err(
                    &mut e,
                    &option,
                    format!(
                        "value \"{n}\" has host bits set: the network is \"{}\"",
                        net.trunc()
                    ),
                ),
                Ok(net) => networks.push(net),
                Err(_) => err(
                    &mut e,
                    &option,
                    format!(
                        "value \"{n}\" is not a network in CIDR form (10.20.0.0/24, fd00::/64)"
                    ),
                ),
            }
        }

        for (option, value) in [
            ("superuser_username", &self.superuser_username),
            ("replication_username", &self.replication_username),
            ("pgbouncer_auth_user", &self.pgbouncer_auth_user),
        ] {
            check_identifier(&mut e, option, value);
        }
        check_name(&mut e, "restapi_username", &self.restapi_username);
        if self.replication_username == self.superuser_username {
            err(
                &mut e,
                "replication_username",
                format!(
                    "value \"{}\" is the superuser's name: replication needs its own role",
                    self.replication_username
                ),
            );
        }
        check_password(&mut e, "superuser_password", &self.superuser_password);
        check_password(&mut e, "replication_password", &self.replication_password);
        check_password(&mut e, "restapi_password", &self.restapi_password);
        if let Some(p) = &self.pgbouncer_auth_password {
            check_password(&mut e, "pgbouncer_auth_password", p);
        }

        // Patroni's rule: the leader key must outlive a loop plus two retries.
        if self.ttl < 20 {
            err(
                &mut e,
                "ttl",
                format!("value {} is below 20 seconds (Patroni's minimum)", self.ttl),
            );
        }
        if self.loop_wait + 2 * self.retry_timeout > self.ttl {
            err(
                &mut e,
                "ttl",
                format!(
                    "value {} breaks Patroni's timing rule loop_wait + 2 × retry_timeout ≤ ttl: \
                     {} + 2 × {} = {}; raise ttl to {} or lower loop_wait/retry_timeout",
                    self.ttl,
                    self.loop_wait,
                    self.retry_timeout,
                    self.loop_wait + 2 * self.retry_timeout,
                    (self.loop_wait + 2 * self.retry_timeout).max(20)
                ),
            );
        }
        if self.superuser_reserved_connections >= self.max_connections {
            err(
                &mut e,
                "superuser_reserved_connections",
                format!(
                    "value {} leaves no connection for anyone else (max_connections is {})",
                    self.superuser_reserved_connections, self.max_connections
                ),
            );
        }

        let mut overrides = BTreeMap::new();
        for (key, value) in &self.parameters {
            let option = format!("parameters.{key}");
            if !is_setting_name(key) {
                err(
                    &mut e,
                    &option,
                    format!(
                        "{} is not a PostgreSQL parameter name",
                        text::shown(key).trim_start_matches("value ")
                    ),
                );
            } else if RESERVED_PARAMETERS.contains(&key.as_str()) {
                err(
                    &mut e,
                    &option,
                    format!(
                        "\"{key}\" is set by Patroni or from this module's own options; it \
                         cannot be overridden here"
                    ),
                );
            } else {
                match parameter_value(value) {
                    Some(v) => {
                        overrides.insert(key.clone(), v);
                    }
                    None => err(
                        &mut e,
                        &option,
                        match value.as_str() {
                            Some(t) => match text::problem(t, Syntax::Line) {
                                Some(reason) => format!("{} {reason}", text::shown(t)),
                                None if t.len() > MAX_PARAMETER_VALUE => format!(
                                    "{} has {} bytes; at most {MAX_PARAMETER_VALUE} are allowed",
                                    text::shown(t),
                                    t.len()
                                ),
                                None => format!("value {value} must be a non-empty string, a number or a boolean"),
                            },
                            None => format!("value {value} must be a non-empty string, a number or a boolean"),
                        },
                    ),
                }
            }
        }

        let mut seen = Vec::new();
        for (i, db) in self.databases.iter().enumerate() {
            check_identifier(&mut e, &format!("databases[{i}].name"), &db.name);
            check_identifier(&mut e, &format!("databases[{i}].owner"), &db.owner);
            if db.locale != "C" {
                err(
                    &mut e,
                    &format!("databases[{i}].locale"),
                    format!(
                        "value \"{}\" is refused: Synapse requires LC_COLLATE and LC_CTYPE 'C' \
                         (it refuses to start on another locale); use \"C\"",
                        db.locale
                    ),
                );
            }
            if ["postgres", "template0", "template1"].contains(&db.name.as_str()) {
                err(
                    &mut e,
                    &format!("databases[{i}].name"),
                    format!("value \"{}\" is a system database", db.name),
                );
            }
            if seen.contains(&&db.name) {
                err(
                    &mut e,
                    &format!("databases[{i}].name"),
                    format!("value \"{}\" is listed twice", db.name),
                );
            }
            seen.push(&db.name);
            let owner_known = self.users.iter().any(|u| u.name == db.owner)
                || db.owner == self.superuser_username;
            if !owner_known {
                err(
                    &mut e,
                    &format!("databases[{i}].owner"),
                    format!(
                        "value \"{}\" is not in option 'users' (the owner must be a role this \
                         module ensures)",
                        db.owner
                    ),
                );
            }
        }
        let mut seen = Vec::new();
        for (i, u) in self.users.iter().enumerate() {
            check_identifier(&mut e, &format!("users[{i}].name"), &u.name);
            check_password(&mut e, &format!("users[{i}].password"), &u.password);
            for (key, value) in u.settings.iter().flatten() {
                if !is_setting_name(key) {
                    err(
                        &mut e,
                        &format!("users[{i}].settings"),
                        format!(
                            "key \"{key}\" is not a PostgreSQL parameter name (lower-case \
                             letters, digits and '_', optionally one 'extension.' prefix)"
                        ),
                    );
                }
                match setting_text(value) {
                    // null: the setting is removed from the role (ALTER ROLE ... RESET).
                    None if value.is_null() => {}
                    None => err(
                        &mut e,
                        &format!("users[{i}].settings.{key}"),
                        format!("value {value} is not text, a number or a boolean"),
                    ),
                    Some(t) if text::problem(&t, Syntax::Line).is_some() => err(
                        &mut e,
                        &format!("users[{i}].settings.{key}"),
                        format!(
                            "{} {}",
                            text::shown(&t),
                            text::problem(&t, Syntax::Line).unwrap_or_default()
                        ),
                    ),
                    Some(_) => {}
                }
            }
            let reserved = [
                &self.superuser_username,
                &self.replication_username,
                &self.pgbouncer_auth_user,
            ];
            if reserved.contains(&&u.name) {
                err(
                    &mut e,
                    &format!("users[{i}].name"),
                    format!(
                        "value \"{}\" is the superuser, replication or PgBouncer auth role, \
                         which this module manages from its own options",
                        u.name
                    ),
                );
            }
            if seen.contains(&&u.name) {
                err(
                    &mut e,
                    &format!("users[{i}].name"),
                    format!("value \"{}\" is listed twice", u.name),
                );
            }
            seen.push(&u.name);
        }

        if let Some(stanza) = &self.pgbackrest_stanza {
            check_pgbackrest(&mut e, &self, stanza);
        }

        if !e.is_empty() {
            return Err(ConfigErrors(e));
        }
        let (Some(listen), Some(connect), Some(restapi_listen)) = (listen, connect, restapi_listen)
        else {
            return Err(ConfigErrors(e));
        };
        let restapi_connect = HostPort {
            host: connect.host.clone(),
            port: restapi_listen.port,
        };
        Ok(Valid {
            s: self,
            listen,
            connect,
            restapi_listen,
            restapi_connect,
            networks,
            overrides,
        })
    }
}

#[derive(Serialize)]
struct File<'a> {
    scope: &'a str,
    name: &'a str,
    restapi: RestApi,
    etcd3: Etcd<'a>,
    bootstrap: Bootstrap,
    postgresql: Postgresql<'a>,
    tags: BTreeMap<&'static str, bool>,
}

#[derive(Serialize)]
struct RestApi {
    listen: String,
    connect_address: String,
    authentication: Credentials,
}

#[derive(Serialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Etcd<'a> {
    hosts: &'a [String],
}

#[derive(Serialize)]
struct Bootstrap {
    dcs: Dcs,
    initdb: Vec<Yaml>,
    pg_hba: Vec<String>,
}

#[derive(Serialize)]
struct Dcs {
    ttl: i64,
    loop_wait: i64,
    retry_timeout: i64,
    maximum_lag_on_failover: i64,
    synchronous_mode: bool,
    synchronous_mode_strict: bool,
    postgresql: DcsPostgresql,
}

#[derive(Serialize)]
struct DcsPostgresql {
    use_pg_rewind: bool,
    use_slots: bool,
    parameters: BTreeMap<String, Yaml>,
}

#[derive(Serialize)]
struct Postgresql<'a> {
    listen: String,
    connect_address: String,
    data_dir: &'a str,
    bin_dir: &'a str,
    pgpass: String,
    authentication: Authentication,
    parameters: BTreeMap<String, Yaml>,
    pg_hba: Vec<String>,
    use_pg_rewind: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_conf: Option<BTreeMap<&'static str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_replica_methods: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pgbackrest: Option<ReplicaMethod>,
}

/// A replica-creation method of Patroni's (`postgresql.<method>`).
#[derive(Serialize)]
struct ReplicaMethod {
    command: String,
    keep_data: bool,
    no_params: bool,
}

#[derive(Serialize)]
struct Authentication {
    superuser: Credentials,
    replication: Credentials,
    rewind: Credentials,
}

/// The pg_hba.conf lines: SCRAM only, local socket and loopback for Patroni and this module,
/// then replication and every database for each listed network.
pub fn pg_hba(v: &Valid) -> Vec<String> {
    let repl = &v.s.replication_username;
    let mut lines = Vec::with_capacity(5 + 2 * v.networks.len());
    lines.extend([
        "local all all scram-sha-256".to_string(),
        "host all all 127.0.0.1/32 scram-sha-256".to_string(),
        "host all all ::1/128 scram-sha-256".to_string(),
        format!("host replication {repl} 127.0.0.1/32 scram-sha-256"),
        format!("host replication {repl} ::1/128 scram-sha-256"),
    ]);
    for net in &v.networks {
        lines.push(format!("host replication {repl} {net} scram-sha-256"));
        lines.push(format!("host all all {net} scram-sha-256"));
    }
    lines
}

/// The PostgreSQL parameters, split into the DCS-wide ones and this member's local ones.
pub fn parameters(v: &Valid, host: Host) -> (BTreeMap<String, Yaml>, BTreeMap<String, Yaml>) {
    let mut all = sizing::parameters(host, v.s.max_connections);
    all.insert(
        "max_connections".into(),
        Yaml::from(v.s.max_connections as u64),
    );
    all.insert(
        "superuser_reserved_connections".into(),
        Yaml::from(v.s.superuser_reserved_connections as u64),
    );
    if let Some(stanza) = &v.s.pgbackrest_stanza {
        for key in PGBACKREST_PARAMETERS {
            all.insert(
                key.to_string(),
                Yaml::from(pgbackrest_parameter(key, stanza)),
            );
        }
    }
    for (k, val) in &v.overrides {
        all.insert(k.clone(), val.clone());
    }
    let (dcs, local) = all
        .into_iter()
        .partition(|(k, _)| DCS_PARAMETERS.contains(&k.as_str()));
    (dcs, local)
}

/// The YAML text of patroni.yml.
pub fn render(v: &Valid, host: Host) -> String {
    let s = &v.s;
    let (dcs_parameters, local_parameters) = parameters(v, host);
    let superuser = || Credentials {
        username: s.superuser_username.clone(),
        password: s.superuser_password.clone(),
    };
    let hba = pg_hba(v);
    let file = File {
        scope: &s.scope,
        name: &s.name,
        restapi: RestApi {
            listen: v.restapi_listen.text(),
            connect_address: v.restapi_connect.text(),
            authentication: Credentials {
                username: s.restapi_username.clone(),
                password: s.restapi_password.clone(),
            },
        },
        etcd3: Etcd {
            hosts: &s.etcd_hosts,
        },
        bootstrap: Bootstrap {
            dcs: Dcs {
                ttl: s.ttl,
                loop_wait: s.loop_wait,
                retry_timeout: s.retry_timeout,
                maximum_lag_on_failover: s.maximum_lag_on_failover,
                synchronous_mode: s.synchronous_mode != SyncMode::Off,
                synchronous_mode_strict: s.synchronous_mode == SyncMode::Strict,
                postgresql: DcsPostgresql {
                    use_pg_rewind: true,
                    use_slots: true,
                    parameters: dcs_parameters,
                },
            },
            initdb: vec![
                one_key("encoding", "UTF8"),
                one_key("locale", "C"),
                Yaml::from("data-checksums"),
            ],
            pg_hba: hba.clone(),
        },
        postgresql: Postgresql {
            listen: v.listen.text(),
            connect_address: v.connect.text(),
            data_dir: &s.data_dir,
            bin_dir: &s.bin_dir,
            pgpass: format!("{}/.pgpass.patroni", parent_dir(&s.data_dir)),
            authentication: Authentication {
                superuser: superuser(),
                replication: Credentials {
                    username: s.replication_username.clone(),
                    password: s.replication_password.clone(),
                },
                // pg_rewind runs as the superuser: Patroni then creates no extra role.
                rewind: superuser(),
            },
            parameters: local_parameters,
            pg_hba: hba,
            use_pg_rewind: true,
            // A new or wiped member restores the newest backup from the repository, then
            // replays WAL from it and streams from the leader; pg_basebackup from the leader
            // when the repository has no backup yet.
            recovery_conf: s
                .pgbackrest_stanza
                .as_deref()
                .map(|st| BTreeMap::from([("restore_command", pgbackrest_restore_command(st))])),
            create_replica_methods: s
                .pgbackrest_stanza
                .as_ref()
                .map(|_| vec!["pgbackrest", "basebackup"]),
            pgbackrest: s.pgbackrest_stanza.as_deref().map(|st| ReplicaMethod {
                command: format!("pgbackrest --stanza={st} --delta restore"),
                keep_data: true,
                no_params: true,
            }),
        },
        tags: BTreeMap::from([
            ("nofailover", false),
            ("noloadbalance", false),
            ("clonefrom", false),
            ("nosync", false),
        ]),
    };
    // Every string quoted (YAML 1.1 would retype `190:20:30`, `on`, `2001-12-14`): the
    // runtime's emitter writes JSON, which Patroni's PyYAML reads with exactly these types.
    let body = serde_json::to_value(&file)
        .map(|v| yaml::emit(&v))
        .unwrap_or_else(|e| format!("# cannot encode the configuration: {e}\n"));
    format!(
        "# Managed by z3r0d3v.matrix_ha.patroni_bootstrap: changes here are overwritten.\n{body}"
    )
}

fn one_key(key: &str, value: &str) -> Yaml {
    let mut map = serde_yaml_ng::Mapping::new();
    map.insert(Yaml::from(key), Yaml::from(value));
    Yaml::Mapping(map)
}

fn parent_dir(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn settings() -> Settings {
        Settings {
            scope: "chat".into(),
            name: "patroni-1".into(),
            etcd_hosts: vec!["10.20.0.31:2379".into(), "10.20.0.32:2379".into()],
            listen: "0.0.0.0:5432".into(),
            connect_address: "10.20.0.31:5432".into(),
            restapi_listen: "0.0.0.0:8008".into(),
            restapi_username: "patroni".into(),
            restapi_password: "rest-password-1".into(),
            data_dir: "/var/lib/postgresql/15/main".into(),
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            pg_hba_networks: vec!["10.20.0.0/24".into()],
            superuser_username: "postgres".into(),
            superuser_password: "super-password-1".into(),
            replication_username: "replicator".into(),
            replication_password: "repl-password-1".into(),
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1048576,
            synchronous_mode: SyncMode::On,
            max_connections: 330,
            superuser_reserved_connections: 5,
            parameters: serde_json::Map::new(),
            databases: vec![Database {
                name: "synapse".into(),
                owner: "synapse".into(),
                locale: "C".into(),
            }],
            users: vec![User {
                name: "synapse".into(),
                password: "synapse-password-1".into(),
                settings: Default::default(),
            }],
            pgbouncer_auth_user: "pgbouncer".into(),
            pgbouncer_auth_password: Some("bouncer-password-1".into()),
            pgbackrest_stanza: None,
        }
    }

    #[test]
    fn pgbackrest_archives_and_restores() {
        let plain = render(&settings().validate().unwrap(), HOST);
        assert!(!plain.contains("pgbackrest"), "{plain}");
        assert!(!plain.contains("peer"), "{plain}");
        let mut s = settings();
        s.pgbackrest_stanza = Some("chat".into());
        let text = render(&s.validate().unwrap(), HOST);
        let yaml: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        let pg = &yaml["postgresql"];
        assert_eq!(pg["parameters"]["archive_mode"], "on");
        assert_eq!(
            pg["parameters"]["archive_command"],
            "pgbackrest --stanza=chat archive-push %p"
        );
        assert_eq!(
            pg["recovery_conf"]["restore_command"],
            "pgbackrest --stanza=chat archive-get %f \"%p\""
        );
        assert_eq!(pg["create_replica_methods"][0], "pgbackrest");
        assert_eq!(pg["create_replica_methods"][1], "basebackup");
        assert_eq!(
            pg["pgbackrest"]["command"],
            "pgbackrest --stanza=chat --delta restore"
        );
        assert_eq!(pg["pgbackrest"]["keep_data"], true);
        assert_eq!(pg["pgbackrest"]["no_params"], true);
        // pgBackRest logs in with a password like every other client: no peer line.
        assert!(!text.contains("peer"), "{text}");
        assert_eq!(pg["pg_hba"][0], "local all all scram-sha-256");
    }

    #[test]
    fn pgbackrest_bad_input_names_the_option() {
        let mut s = settings();
        s.pgbackrest_stanza = Some("chat; rm -rf /".into());
        s.superuser_username = "admin".into();
        s.parameters
            .insert("archive_command".into(), serde_json::json!("/bin/true"));
        let m = messages(s);
        assert!(
            m.contains("option 'pgbackrest_stanza': value \"chat; rm -rf /\" must be"),
            "{m}"
        );
        assert!(
            m.contains("option 'superuser_username': value \"admin\""),
            "{m}"
        );
        assert!(
            m.contains("option 'parameters.archive_command': is set from pgbackrest_stanza"),
            "{m}"
        );
    }

    const HOST: Host = Host {
        memory_mb: 32768,
        cpus: 8,
    };

    fn messages(s: Settings) -> String {
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn renders_the_design_file() {
        let v = settings().validate().unwrap();
        let text = render(&v, HOST);
        let yaml: Yaml = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(yaml["restapi"]["connect_address"], "10.20.0.31:8008");
        assert_eq!(yaml["etcd3"]["hosts"][1], "10.20.0.32:2379");
        let dcs = &yaml["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 30);
        assert_eq!(dcs["synchronous_mode"], true);
        assert_eq!(dcs["synchronous_mode_strict"], false);
        assert_eq!(dcs["postgresql"]["use_slots"], true);
        assert_eq!(dcs["postgresql"]["parameters"]["max_connections"], 330);
        assert_eq!(dcs["postgresql"]["parameters"]["max_worker_processes"], 8);
        let local = &yaml["postgresql"]["parameters"];
        assert_eq!(local["shared_buffers"], "8192MB");
        assert_eq!(local["effective_cache_size"], "24576MB");
        assert_eq!(local["superuser_reserved_connections"], 5);
        assert!(local.get("max_connections").is_none());
        assert_eq!(
            yaml["postgresql"]["authentication"]["rewind"]["username"],
            "postgres"
        );
        let hba: Vec<&str> = yaml["postgresql"]["pg_hba"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(hba.iter().all(|l| l.ends_with(" scram-sha-256")), "{hba:?}");
        assert!(hba.contains(&"host replication replicator 10.20.0.0/24 scram-sha-256"));
        assert_eq!(yaml["bootstrap"]["initdb"][0]["encoding"], "UTF8");
        assert_eq!(yaml["bootstrap"]["initdb"][2], "data-checksums");
        assert!(text.starts_with("# Managed by z3r0d3v.matrix_ha.patroni_bootstrap"));
    }

    #[test]
    fn strict_and_off() {
        let mut s = settings();
        s.synchronous_mode = SyncMode::Strict;
        let yaml: Yaml = serde_yaml_ng::from_str(&render(&s.validate().unwrap(), HOST)).unwrap();
        assert_eq!(yaml["bootstrap"]["dcs"]["synchronous_mode_strict"], true);
        let mut s = settings();
        s.synchronous_mode = SyncMode::Off;
        let yaml: Yaml = serde_yaml_ng::from_str(&render(&s.validate().unwrap(), HOST)).unwrap();
        assert_eq!(yaml["bootstrap"]["dcs"]["synchronous_mode"], false);
    }

    #[test]
    fn overrides_win_and_go_where_patroni_reads_them() {
        let mut s = settings();
        s.parameters.insert("work_mem".into(), "16MB".into());
        s.parameters
            .insert("max_worker_processes".into(), 16.into());
        s.parameters.insert("jit".into(), false.into());
        let yaml: Yaml = serde_yaml_ng::from_str(&render(&s.validate().unwrap(), HOST)).unwrap();
        assert_eq!(yaml["postgresql"]["parameters"]["work_mem"], "16MB");
        assert_eq!(yaml["postgresql"]["parameters"]["jit"], false);
        assert_eq!(
            yaml["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_worker_processes"],
            16
        );
    }

    #[test]
    fn timing_rule() {
        let mut s = settings();
        s.ttl = 25;
        let m = messages(s);
        assert!(
            m.contains("option 'ttl': value 25 breaks Patroni's timing rule"),
            "{m}"
        );
        assert!(m.contains("raise ttl to 30"), "{m}");
        let mut s = settings();
        (s.ttl, s.loop_wait, s.retry_timeout) = (15, 5, 5);
        assert!(messages(s).contains("value 15 is below 20"));
    }

    #[test]
    fn addresses_and_networks() {
        for (text, ok) in [
            ("10.0.0.1:5432", true),
            ("[fd00::1]:5432", true),
            ("db-1.chat.z3r0d3v.com:5432", true),
            ("10.0.0.1:0", false),
            ("10.0.0.1:70000", false),
            ("10.0.0.1", false),
            ("fd00::1:5432", false),
            (":5432", false),
            ("bad_host:5432", false),
        ] {
            assert_eq!(parse_host_port(text).is_ok(), ok, "{text}");
        }
        let mut s = settings();
        s.pg_hba_networks = vec!["10.20.0.5/24".into(), "10.20.0.0/33".into()];
        let m = messages(s);
        assert!(m.contains("option 'pg_hba_networks[0]': value \"10.20.0.5/24\" has host bits set: the network is \"10.20.0.0/24\""), "{m}");
        assert!(m.contains("option 'pg_hba_networks[1]'"), "{m}");
        let mut s = settings();
        s.connect_address = "127.0.0.1:5432".into();
        assert!(messages(s).contains("option 'connect_address'"));
    }

    #[test]
    fn locale_and_names() {
        let mut s = settings();
        s.databases[0].locale = "en_US.UTF-8".into();
        assert!(
            messages(s).contains("option 'databases[0].locale': value \"en_US.UTF-8\" is refused")
        );
        let mut s = settings();
        s.databases[0].owner = "nobody".into();
        assert!(messages(s)
            .contains("option 'databases[0].owner': value \"nobody\" is not in option 'users'"));
        let mut s = settings();
        s.users[0].name = "Synapse".into();
        assert!(messages(s).contains("option 'users[0].name': value \"Synapse\""));
    }

    #[test]
    fn secrets_never_appear_in_messages() {
        let mut s = settings();
        s.superuser_password = "short".into();
        let m = messages(s);
        assert!(m.contains("option 'superuser_password'"));
        assert!(!m.contains("short\""));
    }

    #[test]
    fn reserved_parameters_are_refused() {
        let mut s = settings();
        s.parameters.insert("port".into(), 5433.into());
        s.parameters
            .insert("work_mem".into(), serde_json::json!(["a"]));
        let m = messages(s);
        assert!(m.contains("option 'parameters.port'"), "{m}");
        assert!(m.contains("option 'parameters.work_mem'"), "{m}");
    }

    #[test]
    fn control_characters_in_parameter_values_are_refused_and_shown_escaped() {
        let mut s = settings();
        s.parameters.insert("work_mem".into(), "16MB\u{0}".into());
        s.parameters
            .insert("log_line_prefix".into(), "%m\nrestore_command = 'x'".into());
        s.parameters.insert("Bad Key".into(), "1".into());
        s.parameters
            .insert("search_path".into(), "p".repeat(5000).into());
        s.users[0].settings = Some(BTreeMap::from([(
            "search_path".to_string(),
            serde_json::json!("public\u{0}"),
        )]));
        let m = messages(s);
        assert!(
            m.contains("option 'parameters.work_mem': value \"16MB\\0\" contains the control character '\\0'"),
            "{m}"
        );
        assert!(m.contains("option 'parameters.log_line_prefix': value \"%m\\nrestore_command = 'x'\" contains the control character '\\n'"), "{m}");
        assert!(
            m.contains(
                "option 'parameters.Bad Key': \"Bad Key\" is not a PostgreSQL parameter name"
            ),
            "{m}"
        );
        assert!(m.contains("option 'users[0].settings.search_path': value \"public\\0\" contains the control character"), "{m}");
    }

    #[test]
    fn role_setting_names() {
        for ok in [
            "statement_timeout",
            "default_transaction_isolation",
            "auto_explain.log_min_duration",
            "_x1",
        ] {
            assert!(is_setting_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Statement_timeout",
            "a b",
            "a;b",
            "a.b.c",
            "1abc",
            "x'--",
            ".a",
            "a.",
        ] {
            assert!(!is_setting_name(bad), "{bad}");
        }
    }
}
