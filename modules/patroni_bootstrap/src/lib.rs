//! Ansible module `z3r0d3v.matrix_ha.patroni_bootstrap`: Patroni's configuration, a bounded
//! wait for the cluster, and, on the leader, the Synapse database, its roles and PgBouncer's
//! auth lookup function.
//!
//! [`config`] and [`sizing`] are pure (settings in, YAML out); [`cluster`] reads Patroni's
//! REST API; [`db`] talks to the leader; [`maxconn`] raises a running cluster's
//! max_connections; [`run`] ties them together.

pub mod cluster;
pub mod config;
pub mod db;
pub mod maxconn;
pub mod sizing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use matrix_ha_runtime::fs::{self, Attrs, WriteOptions};
use matrix_ha_runtime::{
    Context, DefaultValue, Diff, Failure, Kind, ModuleSpec, OptionSpec, Outcome, ReturnSpec,
};
use serde::Deserialize;

use config::{Settings, SyncMode, User};
use sizing::Host;

/// Typed arguments; the names and types mirror [`SPEC`].
#[derive(Debug, Deserialize)]
pub struct Args {
    pub config_path: String,
    pub owner: String,
    pub group: String,
    /// What the file is made of, validated by [`config`].
    #[serde(flatten)]
    pub settings: Settings,
    pub memory_mb: Option<i64>,
    pub cpus: Option<i64>,
    pub validate: bool,
    pub wait_for_cluster: bool,
    pub cluster_size: i64,
    pub wait_timeout: i64,
}

static DATABASE_OPTIONS: [OptionSpec; 3] = [
    OptionSpec::new("name", Kind::Str)
        .required()
        .doc(&["Database name (lower-case letters, digits, '_')."]),
    OptionSpec::new("owner", Kind::Str)
        .required()
        .doc(&["Owning role; must be one of O(users) (or the superuser)."]),
    OptionSpec::new("locale", Kind::Str)
        .default(DefaultValue::Str("C"))
        .doc(&[
            "LC_COLLATE and LC_CTYPE. Only V(C) is accepted: Synapse refuses to start on any \
             other locale, so asking for another one fails before anything is done.",
        ]),
];

static USER_OPTIONS: [OptionSpec; 3] = [
    OptionSpec::new("name", Kind::Str)
        .required()
        .doc(&["Role name (lower-case letters, digits, '_')."]),
    OptionSpec::new("password", Kind::Str)
        .required()
        .no_log()
        .doc(&["Password, at least 8 characters; stored as a SCRAM-SHA-256 verifier."]),
    OptionSpec::new("settings", Kind::Dict).doc(&[
        "The role's session defaults (C(ALTER ROLE name SET key = 'value'), read back from \
         C(pg_db_role_setting), so a re-run changes nothing). Listed keys are ensured, a key \
         whose value is null is removed from the role (C(ALTER ROLE name RESET key)), other \
         settings of the role are left alone. For Synapse behind PgBouncer in transaction \
         pooling, the settings Synapse makes per session (C(pgbouncer_tune)'s RV(role_settings)): \
         C(bytea_output: escape), C(statement_timeout: 10min), \
         C(idle_in_transaction_session_timeout: 30min); no isolation level (Synapse sets \
         REPEATABLE READ with each BEGIN and needs READ COMMITTED, the server default, for its \
         autocommit statements).",
    ]),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "patroni_bootstrap",
    short_description: "Configure a Patroni member and ensure the Synapse database on the leader",
    description: &[
        "Renders Patroni's configuration file (mode 0600, owner O(owner)): REST API with basic \
         authentication, the etcd v3 hosts, C(bootstrap.dcs) with Patroni's timing rule \
         enforced (O(loop_wait) + 2 × O(retry_timeout) ≤ O(ttl), O(ttl) ≥ 20), synchronous \
         replication, C(use_pg_rewind) and C(use_slots), PostgreSQL parameters sized from the \
         host, a C(pg_hba) with C(scram-sha-256) only, and C(initdb) with encoding UTF8, locale \
         C and data checksums.",
        "Sizing (overridable one by one through O(parameters)), for M MB of RAM, C CPUs and \
         N = O(max_connections): shared_buffers 25% of M; effective_cache_size 75% of M; \
         maintenance_work_mem M/16 within 64 MB..2 GB; work_mem (M - shared_buffers)/(3N) \
         within 4..256 MB; max_worker_processes max(8, C); max_parallel_workers C; \
         max_parallel_workers_per_gather and max_parallel_maintenance_workers C/2 within 1..4; \
         huge_pages try; wal_keep_size 1 GB; max_wal_senders and max_replication_slots 10; \
         checkpoint_completion_target 0.9; random_page_cost 1.1 (NVMe); password_encryption \
         scram-sha-256. RAM is read from /proc/meminfo and CPUs from the scheduler affinity, \
         unless O(memory_mb) / O(cpus) are given.",
        "Parameters Patroni keeps cluster-wide (max_connections, max_worker_processes, \
         max_wal_senders, max_replication_slots, max_locks_per_transaction, \
         max_prepared_transactions, wal_level, wal_log_hints, track_commit_timestamp) go to \
         C(bootstrap.dcs.postgresql.parameters), the others to the member's \
         C(postgresql.parameters). C(bootstrap.dcs) only counts when the cluster is first \
         bootstrapped: change a running cluster's DCS settings with C(patronictl edit-config) \
         (O(max_connections) excepted, see below).",
        "On a running cluster, the leader's run compares O(max_connections) with \
         C(postgresql.parameters.max_connections) of Patroni's dynamic configuration \
         (C(GET /config) on this member; a failed request fails the task, naming the URL). \
         Equal: nothing is written (members that still wait for a restart from an earlier, \
         interrupted raise are restarted, after checking their C(SHOW max_connections)). Higher \
         (or unset): C(PATCH /config) with the new value (basic authentication with \
         O(restapi_username)/O(restapi_password)), then a rolling restart of every member \
         still running a lower value, replicas first (a hot standby refuses a lower \
         max_connections than its primary), the leader last: for each, a bounded wait \
         (O(wait_timeout)) until its Patroni reports C(pending_restart), C(POST /restart) on \
         its REST API, a bounded wait until the cluster is ready again, and C(SHOW \
         max_connections) on it. The leader is restarted in place (no switchover): writes stop \
         for its PostgreSQL restart, usually a few seconds (a shutdown checkpoint, then \
         crash-free start); Patroni keeps its leader key, so no failover happens. Lower: \
         nothing is applied (PgBouncer's pools must shrink first); a warning names both \
         values and RV(max_connections_pending) is true. Only the leader's run does this; the \
         other members' runs do not look. Check mode reports what would be done.",
        "pg_hba: C(local all all), C(host all all) and C(host replication REPLICATION_USER) \
         from 127.0.0.1/32 and ::1/128 (Patroni and this module connect locally), then \
         C(host replication REPLICATION_USER NET) and C(host all all NET) for every network \
         of O(pg_hba_networks); every line C(scram-sha-256); no trust, peer or md5.",
        "When the file changes and Patroni is installed, the candidate is checked with \
         C(patroni --validate-config) (in a private temporary directory) before it replaces \
         the old one. Patroni's validator reports a listen port in use as an error; when the \
         file already existed (the member runs) those errors are ignored.",
        "Then, with O(wait_for_cluster), it polls the REST API's C(/cluster) of this member \
         (the host of O(connect_address), the port of O(restapi_listen)) once every 0.5 s, \
         for at most O(wait_timeout) seconds, until one leader runs and O(cluster_size) - 1 \
         replicas stream on its timeline with a known lag (with O(synchronous_mode) on or strict, \
         one of them the synchronous standby). A cluster that does not get there \
         fails the task with the members seen.",
        "On the leader only (the member named O(name) leads), over a client connection as \
         the superuser (SCRAM): the roles of O(users) and O(pgbouncer_auth_user) with SCRAM \
         passwords, the databases of O(databases) (UTF8, LC_COLLATE and LC_CTYPE C, from \
         template0, owned by their role), and in each of them the PgBouncer lookup function \
         C(pgbouncer.get_auth(p_usename text\\) RETURNS TABLE(usename name, passwd text\\)): \
         LANGUAGE sql, STABLE, SECURITY DEFINER, C(search_path = pg_catalog), reading \
         C(pg_catalog.pg_shadow) for non-superusers only, owned by the superuser, EXECUTE \
         revoked from PUBLIC and granted to O(pgbouncer_auth_user) only; schema C(pgbouncer) \
         owned by the superuser, USAGE for the auth role only. PgBouncer's setting is \
         C(auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1\\)).",
        "Passwords never appear in SQL text, on a command line or in a log: a role's password \
         is sent as a SCRAM verifier computed by the module, and whether it is already right is \
         checked by logging in as the role. A re-run against a healthy cluster changes nothing.",
    ],
    options: &[
        OptionSpec::new("config_path", Kind::Path)
            .default(DefaultValue::Str("/etc/patroni/config.yml"))
            .doc(&[
                "Patroni's configuration file (Debian's patroni package reads \
                    /etc/patroni/config.yml). Its directory must exist.",
            ]),
        OptionSpec::new("owner", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Owner of the file (it holds passwords: mode 0600)."]),
        OptionSpec::new("group", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["Group of the file."]),
        OptionSpec::new("scope", Kind::Str)
            .required()
            .doc(&["Cluster name, the same on every member (the inventory's C(patroni_scope))."]),
        OptionSpec::new("name", Kind::Str)
            .required()
            .doc(&["This member's name, unique in the cluster (C(patroni_name))."]),
        OptionSpec::new("etcd_hosts", Kind::List)
            .elements(Kind::Str)
            .required()
            .doc(&[
                "etcd client addresses as host:port, read with etcd's v3 API \
                    (C(patroni_etcd_hosts)). Not empty.",
            ]),
        OptionSpec::new("listen", Kind::Str)
            .default(DefaultValue::Str("0.0.0.0:5432"))
            .doc(&["Where PostgreSQL listens, host:port (a host of V(*) or V(0.0.0.0) for all)."]),
        OptionSpec::new("connect_address", Kind::Str)
            .required()
            .doc(&[
                "host:port other members and clients reach PostgreSQL at; not a loopback \
                    or wildcard address (Patroni refuses those).",
            ]),
        OptionSpec::new("restapi_listen", Kind::Str)
            .default(DefaultValue::Str("0.0.0.0:8008"))
            .doc(&[
                "Where Patroni's REST API listens, host:port. Its connect address is the \
                    host of O(connect_address) with this port.",
            ]),
        OptionSpec::new("restapi_username", Kind::Str)
            .default(DefaultValue::Str("patroni"))
            .doc(&[
                "User of the REST API's basic authentication (needed for its unsafe \
                    methods; C(/cluster) stays readable).",
            ]),
        OptionSpec::new("restapi_password", Kind::Str)
            .required()
            .no_log()
            .doc(&["Its password (C(vault_patroni_restapi_password))."]),
        OptionSpec::new("data_dir", Kind::Path)
            .default(DefaultValue::Str("/var/lib/postgresql/15/main"))
            .doc(&[
                "PostgreSQL's data directory. Patroni's password file is written next to \
                    it as C(.pgpass.patroni).",
            ]),
        OptionSpec::new("bin_dir", Kind::Path)
            .default(DefaultValue::Str("/usr/lib/postgresql/15/bin"))
            .doc(&["PostgreSQL's programs (Debian 12: /usr/lib/postgresql/15/bin)."]),
        OptionSpec::new("pg_hba_networks", Kind::List)
            .elements(Kind::Str)
            .required()
            .doc(&[
                "Networks in CIDR form allowed to connect and replicate, with host bits \
                    zero (10.20.0.0/24, fd00::/64): the members and C(patroni_allowed_clients).",
            ]),
        OptionSpec::new("superuser_username", Kind::Str)
            .default(DefaultValue::Str("postgres"))
            .doc(&["PostgreSQL superuser; pg_rewind runs as it too."]),
        OptionSpec::new("superuser_password", Kind::Str)
            .required()
            .no_log()
            .doc(&["Its password, at least 8 characters."]),
        OptionSpec::new("replication_username", Kind::Str)
            .default(DefaultValue::Str("replicator"))
            .doc(&["Replication role Patroni creates at bootstrap."]),
        OptionSpec::new("replication_password", Kind::Str)
            .required()
            .no_log()
            .doc(&["Its password, at least 8 characters."]),
        OptionSpec::new("ttl", Kind::Int)
            .default(DefaultValue::Int(30))
            .range(1, 3600)
            .doc(&[
                "Leader key TTL in seconds: at least 20 and at least O(loop_wait) + 2 × \
                    O(retry_timeout). With the defaults a dead leader is replaced within about \
                    30 to 40 s.",
            ]),
        OptionSpec::new("loop_wait", Kind::Int)
            .default(DefaultValue::Int(10))
            .range(1, 3600)
            .doc(&["Seconds between Patroni's HA loops."]),
        OptionSpec::new("retry_timeout", Kind::Int)
            .default(DefaultValue::Int(10))
            .range(1, 3600)
            .doc(&["Seconds Patroni retries etcd and PostgreSQL before demoting."]),
        OptionSpec::new("maximum_lag_on_failover", Kind::Int)
            .default(DefaultValue::Int(1048576))
            .range(0, 1 << 40)
            .doc(&["Bytes a replica may lag and still be promoted (asynchronous mode only)."]),
        OptionSpec::new("synchronous_mode", Kind::Str)
            .choices(&["off", "on", "strict"])
            .default(DefaultValue::Str("on"))
            .doc(&[
                "V(on) (the design's synchronous replication): one synchronous standby while \
                 one is healthy, and Patroni promotes only it, so no acknowledged commit is \
                 lost in a failover; writes go on when no standby is left.",
                "V(strict): writes stop while no standby is synchronous. V(off): asynchronous.",
            ]),
        OptionSpec::new("max_connections", Kind::Int)
            .default(DefaultValue::Int(100))
            .range(10, 100000)
            .doc(&[
                "PostgreSQL's max_connections, cluster-wide. Give the inventory's \
                    C(patroni_max_connections): pgbouncer_tune sizes its pools so that they \
                    and the reserved connections fit in this figure. Raising it on a \
                    running cluster is applied with a rolling restart (see above); lowering \
                    it is only reported.",
            ]),
        OptionSpec::new("superuser_reserved_connections", Kind::Int)
            .default(DefaultValue::Int(3))
            .range(0, 1000)
            .doc(&["Connections kept for superusers (C(patroni_superuser_reserved_connections))."]),
        OptionSpec::new("parameters", Kind::Dict).doc(&[
            "PostgreSQL parameters that replace the sized ones or add to them (text, numbers \
             or booleans). Names follow postgresql.conf's grammar (C(name) or \
             C(extension.name), lower case); text values are one line without control \
             characters (Patroni writes them into postgresql.conf). Every string is written \
             quoted, so C(on), C(off), C(yes), C(no) stay text for Patroni. Parameters Patroni or \
             this module set from other options (port, listen_addresses, max_connections, \
             wal_level, hot_standby, password_encryption, synchronous_standby_names, …) are \
             refused.",
        ]),
        OptionSpec::new("memory_mb", Kind::Int)
            .range(256, 1 << 30)
            .doc(&["RAM to size for, in MB, instead of /proc/meminfo's MemTotal."]),
        OptionSpec::new("cpus", Kind::Int)
            .range(1, 4096)
            .doc(&["CPUs to size for, instead of the CPUs this process may run on."]),
        OptionSpec::new("validate", Kind::Bool)
            .default(DefaultValue::Bool(true))
            .doc(&[
                "Check a changed file with C(patroni --validate-config) when Patroni is \
                    installed (it needs etcd reachable).",
            ]),
        OptionSpec::new("wait_for_cluster", Kind::Bool)
            .default(DefaultValue::Bool(true))
            .doc(&[
                "Wait for the cluster and, on the leader, ensure O(users), O(databases) and \
                    the PgBouncer lookup function. V(false) only writes the file (for the run \
                    before Patroni starts). In check mode the REST API is asked once, without \
                    waiting.",
            ]),
        OptionSpec::new("cluster_size", Kind::Int)
            .default(DefaultValue::Int(3))
            .range(1, 15)
            .doc(&[
                "Members to wait for: one leader and O(cluster_size) - 1 streaming replicas \
                    (one synchronous when O(synchronous_mode) is not V(off)).",
            ]),
        OptionSpec::new("wait_timeout", Kind::Int)
            .default(DefaultValue::Int(300))
            .range(1, 3600)
            .doc(&["Seconds to wait for the cluster at most."]),
        OptionSpec::new("databases", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&DATABASE_OPTIONS)
            .default(DefaultValue::EmptyList)
            .doc(&[
                "Databases to ensure on the leader (Synapse's: name V(synapse), owner \
                    V(synapse)). An existing database with another encoding or locale fails the \
                    task: PostgreSQL cannot change them in place.",
            ]),
        OptionSpec::new("users", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&USER_OPTIONS)
            .default(DefaultValue::EmptyList)
            .doc(&["Login roles to ensure on the leader, with SCRAM passwords."]),
        OptionSpec::new("pgbouncer_auth_user", Kind::Str)
            .default(DefaultValue::Str("pgbouncer"))
            .doc(&[
                "Role PgBouncer's C(auth_user) logs in as to run C(auth_query); the only \
                    role allowed to execute C(pgbouncer.get_auth).",
            ]),
        OptionSpec::new("pgbouncer_auth_password", Kind::Str)
            .no_log()
            .doc(&["Its password. When unset, neither the role nor the function is created."]),
        OptionSpec::new("pgbackrest_stanza", Kind::Str).doc(&[
            "pgBackRest's stanza (the inventory's C(patroni_pgbackrest_stanza)). When set: \
             C(archive_mode=on) and C(archive_command) pushing each WAL segment to the \
             repository (pgBackRest's own configuration, written by the C(backup) role, names \
             the repository host); C(recovery_conf.restore_command) fetching WAL from it; \
             C(create_replica_methods) V(pgbackrest) then V(basebackup), so a new or wiped \
             member restores the newest backup (C(--delta), keeping what is still right) \
             before it streams from the leader. pgBackRest logs in over the local socket as \
             postgres with the password the C(backup) role puts in postgres's C(~/.pgpass) \
             (pg_hba stays SCRAM only), so this needs O(superuser_username=postgres); \
             C(archive_mode) and C(archive_command) may then not be in O(parameters). \
             C(archive_mode) needs a PostgreSQL restart on a running cluster \
             (C(patronictl restart)).",
        ]),
    ],
    required_if: &[],
    notes: &[
        "Supports check mode (nothing is written and nothing is created; the REST API and the \
         leader are only read) and diff mode (the file's before and after, secrets masked).",
        "The module does not start, stop or reload Patroni: start it after the first run \
         (O(wait_for_cluster=false)), reload it (SIGHUP) after a change.",
        "Tested with Debian 12's Patroni 3.0.2, PostgreSQL 15 and etcd 3.4.23 (amd64: etcd \
         needs no C(ETCD_UNSUPPORTED_ARCH) there, and 3.4 serves the v3 API by default through \
         its gRPC gateway, which Patroni's C(etcd3) client finds on its own). Patroni 4 removed \
         C(bootstrap.users); this module never uses it and creates roles over a client \
         connection instead. Patroni 4 itself was not tested.",
        "Patroni 3.0.2's C(/cluster) reports a streaming replica as C(running); 3.1 and later \
         say C(streaming): both count.",
    ],
    examples: r#"- name: Write Patroni's configuration (before Patroni runs)
  z3r0d3v.matrix_ha.patroni_bootstrap:
    scope: "{{ patroni_scope }}"
    name: "{{ patroni_name }}"
    etcd_hosts: "{{ patroni_etcd_hosts }}"
    connect_address: "{{ ansible_host }}:{{ patroni_postgres_port }}"
    pg_hba_networks: [10.20.0.0/24]
    max_connections: "{{ patroni_max_connections }}"
    superuser_password: "{{ patroni_superuser_password }}"
    replication_password: "{{ patroni_replication_password }}"
    restapi_password: "{{ patroni_restapi_password }}"
    wait_for_cluster: false

- name: Wait for the cluster; on the leader, the Synapse database
  z3r0d3v.matrix_ha.patroni_bootstrap:
    scope: "{{ patroni_scope }}"
    name: "{{ patroni_name }}"
    etcd_hosts: "{{ patroni_etcd_hosts }}"
    connect_address: "{{ ansible_host }}:{{ patroni_postgres_port }}"
    pg_hba_networks: [10.20.0.0/24]
    max_connections: "{{ patroni_max_connections }}"
    superuser_password: "{{ patroni_superuser_password }}"
    replication_password: "{{ patroni_replication_password }}"
    restapi_password: "{{ patroni_restapi_password }}"
    users:
      - name: synapse
        password: "{{ patroni_synapse_password }}"
    databases:
      - name: synapse
        owner: synapse
    pgbouncer_auth_password: "{{ vault_pgbouncer_auth_password }}"
"#,
    returns: &[
        ReturnSpec {
            name: "config_path",
            description: "The file written.",
            returned: "always",
            kind: "str",
            sample: Some("\"/etc/patroni/config.yml\""),
        },
        ReturnSpec {
            name: "sized",
            description: "RAM (MB) and CPUs the parameters were sized for.",
            returned: "always",
            kind: "dict",
            sample: Some("{\"memory_mb\": 32768, \"cpus\": 8}"),
        },
        ReturnSpec {
            name: "leader",
            description: "Name of the leader.",
            returned: "when the cluster was waited for",
            kind: "str",
            sample: Some("\"patroni-1\""),
        },
        ReturnSpec {
            name: "members",
            description: "Members as /cluster lists them: name, role, state, host, port, \
                          timeline, lag (bytes).",
            returned: "when the cluster was waited for",
            kind: "list",
            sample: None,
        },
        ReturnSpec {
            name: "timeline",
            description: "The leader's timeline.",
            returned: "when the cluster was waited for",
            kind: "int",
            sample: Some("1"),
        },
        ReturnSpec {
            name: "is_leader",
            description: "Whether this member leads (only the leader does the database work).",
            returned: "when the cluster was waited for",
            kind: "bool",
            sample: Some("true"),
        },
        ReturnSpec {
            name: "actions",
            description: "What was done on the leader (in check mode: what would be done).",
            returned: "on the leader",
            kind: "list",
            sample: Some("[\"create role synapse\"]"),
        },
        ReturnSpec {
            name: "max_connections",
            description: "max_connections on a running cluster: C(running) (the dynamic \
                          configuration's value before the run, null when unset), C(wanted) \
                          (O(max_connections)), C(raised) (written to the DCS), C(restarted) \
                          (members restarted, in order), C(pending) (a lower value not \
                          applied). In check mode: what would be done.",
            returned: "on the leader",
            kind: "dict",
            sample: Some("{\"running\": 100, \"wanted\": 200, \"raised\": true, \"restarted\": [\"patroni-2\", \"patroni-3\", \"patroni-1\"], \"pending\": false}"),
        },
        ReturnSpec {
            name: "max_connections_pending",
            description: "Whether O(max_connections) is lower than the cluster's and was not applied.",
            returned: "on the leader",
            kind: "bool",
            sample: Some("false"),
        },
        ReturnSpec {
            name: "replication",
            description: "pg_stat_replication on the leader: name, client_addr, state, \
                          sync_state, replay_lag_bytes.",
            returned: "on the leader",
            kind: "list",
            sample: None,
        },
    ],
};

/// The host's size: the options when given, else /proc/meminfo and the CPU affinity.
fn host(args: &Args) -> Result<Host, Failure> {
    let memory_mb = match args.memory_mb {
        Some(m) => m as u64,
        None => {
            let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| {
                Failure::new(format!(
                    "cannot read /proc/meminfo to size PostgreSQL ({e}); give option 'memory_mb'"
                ))
            })?;
            sizing::memory_mb_from_meminfo(&text).ok_or_else(|| {
                Failure::new("no MemTotal in /proc/meminfo; give option 'memory_mb'")
            })?
        }
    };
    let cpus = match args.cpus {
        Some(c) => c as u64,
        None => std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    };
    Ok(Host { memory_mb, cpus })
}

fn find_patroni() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("patroni"))
        .find(|p| p.is_file())
}

/// Runs `patroni --validate-config` on `content` (a 0600 file in a private 0700 directory,
/// removed afterwards); fails with the errors it reports.
fn validate_with_patroni(
    patroni: &Path,
    content: &str,
    running: bool,
    ctx: &mut Context,
) -> Result<(), Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = tempfile::Builder::new()
        .prefix("patroni-validate.")
        .tempdir()
        .map_err(|e| Failure::new(format!("cannot make a temporary directory: {e}")))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Failure::new(format!("cannot restrict a temporary directory: {e}")))?;
    let file = dir.path().join("patroni.yml");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| Failure::new(format!("cannot write a temporary file: {e}")))?;
    std::io::Write::write_all(&mut f, content.as_bytes())
        .map_err(|e| Failure::new(format!("cannot write a temporary file: {e}")))?;
    drop(f);
    let out = std::process::Command::new(patroni)
        .arg("--validate-config")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Failure::new(format!("cannot run {}: {e}", patroni.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !(running && l.contains("is already in use")))
        .collect();
    if running && text.contains("is already in use") {
        ctx.warn(
            "patroni --validate-config found the listen ports in use (by this member, which \
             runs): not counted as an error",
        );
    }
    if problems.is_empty() && (out.status.success() || running) {
        return Ok(());
    }
    Err(Failure::new(format!(
        "patroni --validate-config refused the rendered configuration (nothing was written): {}",
        if problems.is_empty() {
            format!("exit status {}", out.status)
        } else {
            problems.join("; ")
        }
    )))
}

/// Applies the module: render, validate, write, wait, and on the leader ensure the database.
pub fn run(args: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let valid = args
        .settings
        .clone()
        .validate()
        .map_err(|e| Failure::new(e.to_string()))?;
    let attrs = Attrs::resolve(Some(&args.owner), Some(&args.group), Some(0o600))?;
    let host = host(&args)?;
    let content = config::render(&valid, host);

    let path_error = |e: fs::FsError| Failure::new(format!("option 'config_path': {e}"));
    let target = fs::resolve(Path::new(&args.config_path)).map_err(path_error)?;
    // Held from the read to the write: a concurrent run reads what this one wrote.
    let lock = match ctx.check_mode {
        true => None,
        false => Some(fs::lock(&target).map_err(path_error)?),
    };
    for note in lock.iter().flat_map(fs::Locked::notes) {
        ctx.warn(note);
    }
    let current = fs::read(&target).map_err(path_error)?;
    let before: &[u8] = current.as_ref().map_or(&[], |(bytes, _)| bytes);
    let writes_content = content.as_bytes() != before;
    let attr_changes = match &current {
        Some((_, meta)) => attrs.changes(meta),
        None => Vec::new(),
    };
    if writes_content && args.validate {
        match find_patroni() {
            Some(p) => validate_with_patroni(&p, &content, current.is_some(), ctx)?,
            None => ctx.warn("patroni is not installed here: the file was not validated"),
        }
    }

    let shown = target.display().to_string();
    let mut changed = writes_content || !attr_changes.is_empty();
    let mut messages = Vec::new();
    if writes_content {
        messages.push(if current.is_some() {
            format!("rewrote {shown}")
        } else {
            format!("created {shown}")
        });
    } else if !attr_changes.is_empty() {
        messages.push(format!("set {} on {shown}", attr_changes.join(", ")));
    }
    let mut outcome = Outcome::new(false, "")
        .with("config_path", shown.clone())
        .with(
            "sized",
            serde_json::json!({"memory_mb": host.memory_mb, "cpus": host.cpus}),
        );
    if writes_content {
        outcome = outcome.with_diff(Diff::file(
            &shown,
            String::from_utf8_lossy(before),
            content.clone(),
        ));
    }
    if let Some(lock) = &lock {
        if writes_content {
            let opts = WriteOptions {
                attrs,
                default_mode: 0o600,
                backup: false,
            };
            fs::write(lock, content.as_bytes(), current.as_ref(), &opts)?;
        } else if !attr_changes.is_empty() {
            fs::set_attrs(&target, &attrs)?;
        }
    }
    drop(lock);

    if args.wait_for_cluster {
        let api = valid.restapi_connect.text();
        let size = args.cluster_size as usize;
        let sync = args.settings.synchronous_mode != SyncMode::Off;
        let (members, error, ready) = if ctx.check_mode {
            match cluster::fetch(&api, Duration::from_secs(3)) {
                Ok(m) => {
                    let ready = cluster::ready(&m, size, sync);
                    (m, None, ready)
                }
                Err(e) => (Vec::new(), Some(e), false),
            }
        } else {
            cluster::wait(
                &api,
                size,
                sync,
                Duration::from_secs(args.wait_timeout as u64),
            )
        };
        let leader = cluster::leader(&members).cloned();
        outcome = outcome
            .with(
                "members",
                serde_json::to_value(&members).unwrap_or_default(),
            )
            .with("leader", leader.as_ref().map(|l| l.name.clone()))
            .with("timeline", leader.as_ref().and_then(|l| l.timeline));
        if !ready {
            let seen = members
                .iter()
                .map(|m| format!("{} {} {}", m.name, m.role, m.state))
                .collect::<Vec<_>>()
                .join(", ");
            let why = match error {
                Some(e) => format!("last error: {e}"),
                None => format!(
                    "members seen: {}",
                    if seen.is_empty() { "none" } else { &seen }
                ),
            };
            if ctx.check_mode {
                ctx.warn(format!(
                    "check mode: the cluster at {api} is not ready ({why}); the database work \
                     is not checked"
                ));
            } else {
                return Err(Failure::new(format!(
                    "the cluster at {api} did not get a leader and {} streaming replica(s) \
                     within {} s ({why}); {}",
                    size - 1,
                    args.wait_timeout,
                    if messages.is_empty() {
                        "the file was already up to date".to_string()
                    } else {
                        format!("the file was written ({})", messages.join("; "))
                    }
                )));
            }
        }
        let is_leader = leader
            .as_ref()
            .is_some_and(|l| l.name == args.settings.name);
        outcome = outcome.with("is_leader", is_leader);
        if ready && is_leader {
            let target = db::Target {
                host: valid.connect.host.clone(),
                port: valid.connect.port,
                superuser: args.settings.superuser_username.clone(),
                password: args.settings.superuser_password.clone(),
            };
            let desired = db::Desired {
                users: args.settings.users.clone(),
                databases: args.settings.databases.clone(),
                pgbouncer: args
                    .settings
                    .pgbouncer_auth_password
                    .as_ref()
                    .map(|p| User {
                        name: args.settings.pgbouncer_auth_user.clone(),
                        password: p.clone(),
                        settings: Default::default(),
                    }),
            };
            let report = db::ensure(&target, &desired, ctx.check_mode).map_err(|e| {
                Failure::new(format!(
                    "on the leader {}: {e}{}",
                    args.settings.name,
                    if messages.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", messages.join("; "))
                    }
                ))
            })?;
            if !report.actions.is_empty() {
                changed = true;
                messages.push(report.actions.join("; "));
            }
            outcome = outcome
                .with("actions", report.actions)
                .with("replication", report.replication);

            let access = maxconn::Access {
                api: api.clone(),
                username: &args.settings.restapi_username,
                password: &args.settings.restapi_password,
                superuser: &args.settings.superuser_username,
                superuser_password: &args.settings.superuser_password,
                cluster_size: size,
                sync,
                timeout: Duration::from_secs(args.wait_timeout as u64),
            };
            let mut warnings = Vec::new();
            let wanted = args.settings.max_connections as u64;
            let mc = maxconn::ensure(
                &access,
                &members,
                &args.settings.name,
                wanted,
                ctx.check_mode,
                &mut |w| warnings.push(w),
            )
            .map_err(|e| {
                Failure::new(format!(
                    "raising max_connections to {wanted} through Patroni's dynamic \
                     configuration: {e}{}",
                    if messages.is_empty() {
                        String::new()
                    } else {
                        format!(" (already done: {})", messages.join("; "))
                    }
                ))
            })?;
            for w in warnings {
                ctx.warn(w);
            }
            if mc.raised {
                changed = true;
                messages.push(format!(
                    "max_connections raised from {} to {wanted} in the DCS",
                    mc.running
                        .map_or_else(|| "unset".to_string(), |r| r.to_string())
                ));
            }
            if !mc.restarted.is_empty() {
                changed = true;
                messages.push(format!("restarted {}", mc.restarted.join(", ")));
            }
            outcome = outcome.with("max_connections_pending", mc.pending).with(
                "max_connections",
                serde_json::to_value(&mc).unwrap_or_default(),
            );
        }
    }

    let msg = if messages.is_empty() {
        "the configuration and the cluster are up to date".to_string()
    } else {
        messages.join("; ")
    };
    outcome.changed = changed;
    outcome.msg = msg;
    Ok(outcome)
}
