//! The patroni_bootstrap binary as Ansible runs it: an args file in, one JSON result out.
//! These runs only render the file (no cluster is waited for); the cluster tests are in
//! the workspace's `tests/` crate.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use assert_cmd::Command;
use matrix_ha_testkit::{self as testkit, per_run};
use serde_json::{json, Value};

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("patroni.yml")
    }
    fn args(&self, value: &Value) -> PathBuf {
        let path = self.dir.path().join("args.json");
        fs::write(&path, value.to_string()).unwrap();
        path
    }
    fn listing(&self) -> Vec<String> {
        testkit::listing(self.dir.path())
    }
}

fn run(args_file: &Path, flags: &[&str]) -> (Value, bool, String) {
    let ran = testkit::run("patroni_bootstrap", args_file, flags);
    (ran.value, ran.ok, ran.stderr)
}

static SUPER: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static REPL: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static REST: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static SYNAPSE: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));

fn good(config: &Path) -> Value {
    json!({
        "config_path": config,
        "owner": "root",
        "group": "root",
        "scope": "chat",
        "name": "patroni-1",
        "etcd_hosts": ["10.20.0.31:2379", "10.20.0.32:2379", "10.20.0.33:2379"],
        "connect_address": "10.20.0.31:5432",
        "pg_hba_networks": ["10.20.0.0/24"],
        "superuser_password": &*SUPER,
        "replication_password": &*REPL,
        "restapi_password": &*REST,
        "max_connections": 330,
        "memory_mb": 32768,
        "cpus": 8,
        "validate": false,
        "wait_for_cluster": false,
        "users": [{"name": "synapse", "password": &*SYNAPSE}],
        "databases": [{"name": "synapse", "owner": "synapse"}],
    })
}

fn with(config: &Path, key: &str, value: Value) -> Value {
    let mut v = good(config);
    v[key] = value;
    v
}

#[test]
fn renders_once_then_nothing_and_hides_secrets() {
    let s = Scratch::new();
    let args = good(&s.config());
    let mut diff_args = args.clone();
    diff_args["_ansible_diff"] = json!(true);
    let (first, ok, stderr) = run(&s.args(&diff_args), &[]);
    assert!(ok, "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["sized"], json!({"memory_mb": 32768, "cpus": 8}));
    let text = fs::read_to_string(s.config()).unwrap();
    assert!(
        text.contains(SUPER.as_str()),
        "the file holds the passwords"
    );
    let meta = fs::metadata(s.config()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let shown = first.to_string();
    for secret in [&*SUPER, &*REPL, &*REST, &*SYNAPSE] {
        assert!(!shown.contains(secret), "secret in the result: {shown}");
        assert!(!stderr.contains(secret));
    }
    assert!(first["diff"]["after"]
        .as_str()
        .unwrap()
        .contains("\"shared_buffers\": \"8192MB\""));
    assert_eq!(
        first["invocation"]["module_args"]["superuser_password"],
        json!("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
    );

    let (second, ok, _) = run(&s.args(&args), &[]);
    assert!(ok);
    assert_eq!(second["changed"], json!(false), "{second}");
    assert_eq!(fs::read_to_string(s.config()).unwrap(), text);
    assert_eq!(s.listing(), vec!["args.json", "patroni.yml"]);
}

#[test]
fn check_mode_writes_nothing() {
    let s = Scratch::new();
    let (v, ok, _) = run(&s.args(&good(&s.config())), &["--check"]);
    assert!(ok, "{v}");
    assert_eq!(v["changed"], json!(true));
    assert_eq!(s.listing(), vec!["args.json"]);
}

#[test]
fn owner_postgres_by_default() {
    let s = Scratch::new();
    let mut args = good(&s.config());
    args.as_object_mut().unwrap().remove("owner");
    args.as_object_mut().unwrap().remove("group");
    let (v, ok, _) = run(&s.args(&args), &[]);
    assert!(ok, "{v}");
    let postgres = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&postgres.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(fs::metadata(s.config()).unwrap().uid(), uid);
}

/// Bad input: (what it is, options given, text the message must contain).
fn bad_inputs(c: &Path) -> Vec<(&'static str, Value, &'static str)> {
    let users_db =
        |locale: &str| json!([{"name": "synapse", "owner": "synapse", "locale": locale}]);
    vec![
        ("ttl below the timing rule", with(c, "ttl", json!(25)), "option 'ttl': value 25 breaks Patroni's timing rule loop_wait + 2 × retry_timeout ≤ ttl"),
        ("ttl below 20", json!({"ttl": 15, "loop_wait": 5, "retry_timeout": 5}), "option 'ttl': value 15 is below 20"),
        ("retry_timeout too long", with(c, "retry_timeout", json!(15)), "option 'ttl': value 30 breaks"),
        ("non-C locale", with(c, "databases", users_db("en_US.UTF-8")), "option 'databases[0].locale': value \"en_US.UTF-8\" is refused: Synapse requires"),
        ("C.UTF-8 locale", with(c, "databases", users_db("C.UTF-8")), "option 'databases[0].locale'"),
        ("listen port 0", with(c, "listen", json!("0.0.0.0:0")), "option 'listen': value \"0.0.0.0:0\" has port 0, outside 1 to 65535"),
        ("connect port 70000", with(c, "connect_address", json!("10.20.0.31:70000")), "option 'connect_address': value \"10.20.0.31:70000\" has port 70000"),
        ("restapi port 70000", with(c, "restapi_listen", json!("0.0.0.0:70000")), "option 'restapi_listen'"),
        ("restapi on PostgreSQL's port", with(c, "restapi_listen", json!("0.0.0.0:5432")), "option 'restapi_listen': value \"0.0.0.0:5432\" uses port 5432"),
        ("listen without port", with(c, "listen", json!("0.0.0.0")), "option 'listen': value \"0.0.0.0\" is not host:port"),
        ("empty etcd_hosts", with(c, "etcd_hosts", json!([])), "option 'etcd_hosts': the list is empty"),
        ("etcd host without port", with(c, "etcd_hosts", json!(["10.20.0.31"])), "option 'etcd_hosts[0]'"),
        ("etcd wildcard", with(c, "etcd_hosts", json!(["0.0.0.0:2379"])), "option 'etcd_hosts[0]': value \"0.0.0.0:2379\" is a wildcard"),
        ("bad CIDR", with(c, "pg_hba_networks", json!(["10.20.0.0/33"])), "option 'pg_hba_networks[0]': value \"10.20.0.0/33\" is not a network in CIDR form"),
        ("CIDR with host bits", with(c, "pg_hba_networks", json!(["10.20.0.7/24"])), "option 'pg_hba_networks[0]': value \"10.20.0.7/24\" has host bits set"),
        ("address without prefix", with(c, "pg_hba_networks", json!(["10.20.0.7"])), "option 'pg_hba_networks[0]'"),
        ("empty pg_hba_networks", with(c, "pg_hba_networks", json!([])), "option 'pg_hba_networks': the list is empty"),
        ("unknown synchronous_mode", with(c, "synchronous_mode", json!("quorum")), "option 'synchronous_mode': value \"quorum\" is not one of: off, on, strict"),
        ("loopback connect_address", with(c, "connect_address", json!("127.0.0.1:5432")), "option 'connect_address': value \"127.0.0.1:5432\" is a loopback"),
        ("bad IPv6 form", with(c, "connect_address", json!("fd00::31:5432")), "option 'connect_address'"),
        ("scope with space", with(c, "scope", json!("my cluster")), "option 'scope': value \"my cluster\""),
        ("empty name", with(c, "name", json!("")), "option 'name': value \"\""),
        ("short superuser password", with(c, "superuser_password", json!("Xq7#")), "option 'superuser_password': the value (hidden: no_log) is shorter than 8"),
        ("missing replication password", {let mut v = good(c); v.as_object_mut().unwrap().remove("replication_password"); v}, "missing required option 'replication_password'"),
        ("relative data_dir", with(c, "data_dir", json!("data")), "option 'data_dir': value \"data\" is not an absolute path"),
        ("reserved parameter", with(c, "parameters", json!({"port": 5433})), "option 'parameters.port': \"port\" is set by Patroni"),
        ("list parameter", with(c, "parameters", json!({"work_mem": ["4MB"]})), "option 'parameters.work_mem'"),
        ("bad parameter name", with(c, "parameters", json!({"Work-Mem": "4MB"})), "option 'parameters.Work-Mem'"),
        ("max_connections too low", with(c, "max_connections", json!(5)), "option 'max_connections': value 5 is outside the range 10 to 100000"),
        ("reserved ≥ max", with(c, "superuser_reserved_connections", json!(330)), "option 'superuser_reserved_connections': value 330 leaves no connection"),
        ("owner not a user", with(c, "databases", json!([{"name": "synapse", "owner": "nobody"}])), "option 'databases[0].owner': value \"nobody\" is not in option 'users'"),
        ("upper-case role", with(c, "users", json!([{"name": "Synapse", "password": &*SYNAPSE}])), "option 'users[0].name': value \"Synapse\" is not a plain PostgreSQL name"),
        ("system database", with(c, "databases", json!([{"name": "postgres", "owner": "postgres"}])), "option 'databases[0].name': value \"postgres\" is a system database"),
        ("user named like the superuser", with(c, "users", json!([{"name": "postgres", "password": &*SYNAPSE}])), "option 'users[0].name': value \"postgres\" is the superuser"),
        ("role setting that is not a parameter name", with(c, "users", json!([{"name": "synapse", "password": &*SYNAPSE, "settings": {"statement_timeout = 0; DROP TABLE x; --": "1"}}])), "option 'users[0].settings': key \"statement_timeout = 0; DROP TABLE x; --\" is not a PostgreSQL parameter name"),
        ("role setting with a list value", with(c, "users", json!([{"name": "synapse", "password": &*SYNAPSE, "settings": {"search_path": ["a", "b"]}}])), "option 'users[0].settings.search_path': value [\"a\",\"b\"] is not text, a number or a boolean"),
        ("replication role is superuser", with(c, "replication_username", json!("postgres")), "option 'replication_username': value \"postgres\" is the superuser's name"),
        ("ttl as text", with(c, "ttl", json!("thirty")), "option 'ttl': value \"thirty\" is not a valid int"),
        ("cluster_size 0", with(c, "cluster_size", json!(0)), "option 'cluster_size': value 0 is outside the range 1 to 15"),
        ("unknown option", with(c, "synchronous", json!(true)), "unsupported option 'synchronous'"),
        ("unknown owner", with(c, "owner", json!("no-such-user-matrix-ha")), "option 'owner': no user named 'no-such-user-matrix-ha'"),
    ]
}

#[test]
fn every_bad_input_fails_names_the_option_and_writes_nothing() {
    let s = Scratch::new();
    // An existing file must stay byte-identical too.
    let (v, ok, _) = run(&s.args(&good(&s.config())), &[]);
    assert!(ok, "{v}");
    let before = fs::read(s.config()).unwrap();
    let cases = bad_inputs(&s.config());
    assert!(cases.len() >= 25);
    for (what, mut args, needle) in cases {
        if args.get("config_path").is_none() {
            let mut full = good(&s.config());
            for (k, val) in args.as_object().unwrap() {
                full[k] = val.clone();
            }
            args = full;
        }
        let (v, ok, _) = run(&s.args(&args), &[]);
        assert!(!ok, "{what}: exit code must be non-zero");
        assert_eq!(v["failed"], json!(true), "{what}: {v}");
        assert_eq!(v["changed"], json!(false), "{what}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        for secret in [&*SUPER, &*REPL, &*REST, &*SYNAPSE] {
            assert!(!v.to_string().contains(secret), "{what}: secret shown: {v}");
        }
        assert_eq!(
            fs::read(s.config()).unwrap(),
            before,
            "{what}: file changed"
        );
        assert_eq!(
            s.listing(),
            vec!["args.json", "patroni.yml"],
            "{what}: stray file"
        );
    }
}

#[test]
fn docs_come_from_the_spec() {
    let docs = Command::cargo_bin("patroni_bootstrap")
        .unwrap()
        .arg("--docs")
        .output()
        .unwrap();
    assert!(docs.status.success());
    let text = String::from_utf8(docs.stdout).unwrap();
    for option in patroni_bootstrap::SPEC.options {
        assert!(
            text.contains(&format!("\n    {}:\n", option.name)),
            "{}",
            option.name
        );
    }
    assert!(text.contains("pgbouncer.get_auth(p_usename text"));
}

#[test]
fn patroni_validate_config_refusal_fails_and_writes_nothing() {
    if !Path::new("/usr/bin/patroni").exists() {
        panic!("patroni is not installed: run scripts/setup (scripts/apt-packages.txt lists it)");
    }
    let s = Scratch::new();
    // Nothing listens on this port: Patroni's validator finds etcd unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = good(&s.config());
    args["validate"] = json!(true);
    args["etcd_hosts"] = json!([format!("127.0.0.1:{port}")]);
    args["data_dir"] = json!(s.dir.path().join("data"));
    let (v, ok, _) = run(&s.args(&args), &[]);
    assert!(!ok, "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains(
            "patroni --validate-config refused the rendered configuration (nothing was written)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("127.0.0.1:{port} is not reachable")),
        "{msg}"
    );
    assert_eq!(s.listing(), vec!["args.json"]);
}

/// A random number in `0..n`, from /dev/urandom (per-run credentials).
fn random_below(n: u32) -> u32 {
    let hex = per_run("", 4);
    u32::from_str_radix(&hex, 16).unwrap() % n
}

/// Passwords and parameter values that YAML 1.1 reads as other types when they are written as
/// plain scalars, made for this run: a sexagesimal number (`190:20:30` is 685230), a hex
/// number with underscores, a decimal with underscores, a date.
fn retypable_passwords() -> [String; 4] {
    [
        format!(
            "{}:{}:{}",
            100 + random_below(900),
            10 + random_below(50),
            10 + random_below(50)
        ),
        format!("0x_{}_{}", per_run("", 2), per_run("", 2)),
        format!("1_{:03}_{:03}", random_below(1000), random_below(1000)),
        format!(
            "{}-{:02}-{:02}",
            1990 + random_below(30),
            1 + random_below(12),
            1 + random_below(28)
        ),
    ]
}

/// Reads `path` with `code` in Debian's Python (the PyYAML and Patroni that Patroni runs
/// with); the file's path is the only argument. Returns what the code prints, as JSON.
fn python(code: &str, path: &Path) -> Value {
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(code)
        .arg(path)
        .output()
        .expect("Debian's python3 runs (scripts/apt-packages.txt installs it)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// patroni.yml reads back, through PyYAML and Patroni's own Config, with exactly the types it
/// was given: passwords that look like numbers and dates stay text, `on`/`off`/`yes`/`no`
/// stay text, numbers and booleans stay what they are.
#[test]
fn patroni_reads_back_exactly_the_values_given() {
    let s = Scratch::new();
    let [sexagesimal, hex, underscored, date] = retypable_passwords();
    let mut args = good(&s.config());
    args["superuser_password"] = json!(sexagesimal);
    args["replication_password"] = json!(hex);
    args["restapi_password"] = json!(underscored);
    args["users"] = json!([{"name": "synapse", "password": date}]);
    let parameters = json!({
        "jit": "off",
        "track_io_timing": "on",
        "log_connections": "yes",
        "log_disconnections": "no",
        "log_min_duration_statement": "1_000",
        "log_line_prefix": "%m [%p] 12:30:45 ~ \"q\" \\ #x",
        "track_activity_query_size": 4096,
        "random_page_cost": 1.5,
        "log_checkpoints": true,
    });
    args["parameters"] = parameters.clone();
    let (v, ok, _) = run(&s.args(&args), &[]);
    assert!(ok, "{v}");

    // PyYAML (YAML 1.1) reads the same document JSON reads: no value changed type.
    let yaml = python(
        "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        &s.config(),
    );
    let text = fs::read_to_string(s.config()).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with('#')).collect();
    let json_view: Value = serde_json::from_str(&body).unwrap();
    assert!(yaml == json_view, "PyYAML and JSON disagree on the file");

    // Patroni's own configuration loader.
    let patroni = python(
        "import json, sys\n\
         from patroni.config import Config\n\
         c = Config(sys.argv[1], validator=None)\n\
         p = c['postgresql']\n\
         print(json.dumps({'superuser': p['authentication']['superuser']['password'],\n\
                           'replication': p['authentication']['replication']['password'],\n\
                           'restapi': c['restapi']['authentication']['password'],\n\
                           'parameters': dict(p['parameters'])}))",
        &s.config(),
    );
    assert!(
        patroni["superuser"] == json!(sexagesimal),
        "superuser password retyped"
    );
    assert!(
        patroni["replication"] == json!(hex),
        "replication password retyped"
    );
    assert!(
        patroni["restapi"] == json!(underscored),
        "REST password retyped"
    );
    for (key, value) in parameters.as_object().unwrap() {
        assert_eq!(&patroni["parameters"][key], value, "parameters.{key}");
    }
}
