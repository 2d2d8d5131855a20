//! The pgbouncer_tune binary as Ansible runs it: an args file in, one JSON result out.
//! No daemon here (max_connections is given); the real PostgreSQL/PgBouncer tests are in the
//! workspace's tests/ crate.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use assert_cmd::Command;
use matrix_ha_testkit::{self as testkit, per_run};
use serde_json::{json, Value};

static SYNAPSE_PW: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static ADMIN_PW: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static OTHER_PW: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));
static BOTH_PW: LazyLock<String> = LazyLock::new(|| per_run("s3cret-", 12));

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn args(&self, value: &Value) -> PathBuf {
        let path = self.p("args.json");
        fs::write(&path, value.to_string()).unwrap();
        path
    }
    fn listing(&self) -> Vec<String> {
        testkit::listing(self.dir.path())
    }
    /// Good options: the inventory's small scale, files in the scratch directory, owned by the
    /// current user and group (root in CI, anyone when run by hand).
    fn good(&self) -> Value {
        let uid = fs::metadata(self.dir.path()).unwrap().uid();
        let gid = fs::metadata(self.dir.path()).unwrap().gid();
        json!({
            "path": self.p("pgbouncer.ini"),
            "auth_file": self.p("userlist.txt"),
            "app_processes": 24,
            "max_connections": 330,
            "listen_addr": ["10.20.0.21"],
            "databases": [{"name": "synapse", "host": "10.20.0.10", "users": ["synapse"]}],
            "auth_users": [{"name": "synapse", "password": &*SYNAPSE_PW}],
            "admin_password": &*ADMIN_PW,
            "owner": uid.to_string(),
            "group": gid.to_string(),
            "pgbouncer_binary": "/nonexistent/pgbouncer",
        })
    }
}

fn run(args_file: &Path, flags: &[&str]) -> (Value, bool) {
    let ran = testkit::run("pgbouncer_tune", args_file, flags);
    (ran.value, ran.ok)
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[test]
fn writes_once_then_nothing_and_never_the_passwords() {
    let s = Scratch::new();
    let args = s.args(&with(s.good(), "_ansible_diff", json!(true)));
    let (first, ok) = run(&args, &[]);
    assert!(ok, "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["sizing"]["default_pool_size"], json!(240));
    assert_eq!(first["sizing"]["reserve_pool_size"], json!(24));
    assert_eq!(first["sizing"]["max_client_conn"], json!(480));
    assert_eq!(first["sizing"]["max_db_connections"]["synapse"], json!(264));
    assert_eq!(first["sizing"]["utilisation_percent"], json!(72.7));
    assert_eq!(first["sizing"]["alert_threshold"], json!(212));
    assert_eq!(first["sizing"]["open_files_needed"], json!(760));
    assert_eq!(first["max_connections_source"], json!("option"));
    assert_eq!(first["reloaded"], json!("none"));
    assert!(first["role_settings"][0]
        .as_str()
        .unwrap()
        .contains("ALTER ROLE \"synapse\" SET bytea_output = 'escape'"));
    let ini = fs::read_to_string(s.p("pgbouncer.ini")).unwrap();
    assert!(ini.contains("default_pool_size = 240\n"), "{ini}");
    assert!(ini.contains("auth_type = scram-sha-256\n"));
    assert!(ini.contains("admin_users = pgbouncer_admin\n"));
    let users = fs::read_to_string(s.p("userlist.txt")).unwrap();
    assert!(
        users.contains("\"synapse\" \"SCRAM-SHA-256$4096:"),
        "{users}"
    );
    assert!(users.contains("\"pgbouncer_admin\" \"SCRAM-SHA-256$4096:"));
    for file in ["pgbouncer.ini", "userlist.txt"] {
        let mode = fs::metadata(s.p(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{file}");
    }
    let everything = format!("{first}{ini}{users}");
    assert!(!everything.contains("s3cret"), "a password leaked");

    let (second, ok) = run(&args, &[]);
    assert!(ok);
    assert_eq!(second["changed"], json!(false), "{second}");
    assert_eq!(fs::read_to_string(s.p("userlist.txt")).unwrap(), users);
    assert_eq!(fs::read_to_string(s.p("pgbouncer.ini")).unwrap(), ini);

    // A new password replaces only that verifier.
    let mut changed = s.good();
    changed["auth_users"][0]["password"] = json!(&*OTHER_PW);
    let (third, _) = run(&s.args(&changed), &[]);
    assert_eq!(third["changed"], json!(true));
    assert_eq!(third["auth_file_changed"], json!(["synapse"]));
    assert_eq!(
        s.listing(),
        vec!["args.json", "pgbouncer.ini", "userlist.txt"]
    );
}

#[test]
fn check_mode_writes_nothing_and_diff_hides_verifiers() {
    let s = Scratch::new();
    let (v, ok) = run(&s.args(&s.good()), &["--check", "--diff"]);
    assert!(ok, "{v}");
    assert_eq!(v["changed"], json!(true));
    let after = v["diff"]["after"].as_str().unwrap();
    assert!(after.contains("max_client_conn = 480"));
    assert!(!after.contains("SCRAM-SHA-256$"), "{after}");
    assert_eq!(s.listing(), vec!["args.json"]);
}

#[test]
fn peering_is_refused_without_pgbouncer_1_19() {
    let s = Scratch::new();
    let mut a = s.good();
    a["peer_id"] = json!(1);
    a["pidfile"] = json!(s.p("pgbouncer-1.pid"));
    a["unix_socket_dir"] = json!(s.dir.path());
    a["peers"] = json!([{"id": 1, "host": s.dir.path(), "port": 6432}]);
    let (v, ok) = run(&s.args(&a), &[]);
    assert!(!ok);
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.starts_with("option 'peer_id'"), "{msg}");
    assert!(msg.contains("1.19"), "{msg}");
    // With Debian 12's real PgBouncer, when installed: it is 1.18, so refused by version.
    if Path::new("/usr/sbin/pgbouncer").exists() {
        a["pgbouncer_binary"] = json!("/usr/sbin/pgbouncer");
        let (v, ok) = run(&s.args(&a), &[]);
        let msg = v["msg"].as_str().unwrap_or_default().to_string();
        let version = std::process::Command::new("/usr/sbin/pgbouncer")
            .arg("--version")
            .output()
            .unwrap();
        let old = String::from_utf8_lossy(&version.stdout).starts_with("PgBouncer 1.1");
        if old {
            assert!(!ok);
            assert!(msg.contains("needs PgBouncer 1.19 or later"), "{msg}");
        }
    }
    assert_eq!(s.listing(), vec!["args.json"]);
}

/// Bad input: (what it is, options, text the message must contain).
fn bad_inputs(s: &Scratch) -> Vec<(&'static str, Value, String)> {
    let g = s.good();
    let db = |d: Value| with(g.clone(), "databases", json!([d]));
    let user = |u: Value| with(g.clone(), "auth_users", json!([u]));
    vec![
        ("pool cannot fit", with(g.clone(), "max_connections", json!(200)), "option 'max_connections': value 200 is too small".into()),
        ("pool cannot fit: the fix", with(g.clone(), "max_connections", json!(273)), "raise max_connections to 274 at least (330 keeps PgBouncer at 80 % or less)".into()),
        ("reserved too many", with(g.clone(), "reserved_connections", json!(100)), "raise max_connections to 364".into()),
        ("unknown pool_mode", with(g.clone(), "pool_mode", json!("txn")), "option 'pool_mode': value \"txn\" is not one of: transaction, session, statement".into()),
        ("port 0", with(g.clone(), "listen_port", json!(0)), "option 'listen_port': value 0 is outside the range 1 to 65535".into()),
        ("port 70000", with(g.clone(), "listen_port", json!(70000)), "option 'listen_port': value 70000 is outside the range".into()),
        ("bad listen_addr", with(g.clone(), "listen_addr", json!(["10.20.0.256"])), "option 'listen_addr[0]': value \"10.20.0.256\" is not an IP address".into()),
        ("host name as listen_addr", with(g.clone(), "listen_addr", json!(["chat.z3r0d3v.com"])), "option 'listen_addr[0]'".into()),
        ("negative reserved", with(g.clone(), "reserved_connections", json!(-1)), "option 'reserved_connections': value -1 is outside the range".into()),
        ("app_processes 0", with(g.clone(), "app_processes", json!(0)), "option 'app_processes': value 0 is outside the range 1 to 10000".into()),
        ("app_processes missing", { let mut v = g.clone(); v.as_object_mut().unwrap().remove("app_processes"); v }, "missing required option 'app_processes'".into()),
        ("app_pool_max text", with(g.clone(), "app_pool_max", json!("ten")), "option 'app_pool_max': value \"ten\" is not a valid int".into()),
        ("max_connections 0", with(g.clone(), "max_connections", json!(0)), "option 'max_connections': value 0 is outside the range".into()),
        ("no max_connections nor login_host", { let mut v = g.clone(); v.as_object_mut().unwrap().remove("max_connections"); v }, "option 'max_connections': missing; give it, or 'login_host'".into()),
        ("empty databases", with(g.clone(), "databases", json!([])), "option 'databases': the list is empty".into()),
        ("database without host", db(json!({"name": "synapse"})), "missing required option 'databases[0].host'".into()),
        ("database name with space", db(json!({"name": "syn apse", "host": "10.20.0.10"})), "option 'databases[0].name': value \"syn apse\" is not a valid name".into()),
        ("database named pgbouncer", db(json!({"name": "pgbouncer", "host": "10.20.0.10"})), "option 'databases[0].name': value \"pgbouncer\"".into()),
        ("database bad host", db(json!({"name": "synapse", "host": "10.20.0.10 port=1"})), "option 'databases[0].host': value \"10.20.0.10 port=1\" is not an IP address".into()),
        ("database port 70000", db(json!({"name": "synapse", "host": "10.20.0.10", "port": 70000})), "option 'databases[0].port': value 70000 is outside the range".into()),
        ("database user injection", db(json!({"name": "synapse", "host": "10.20.0.10", "users": ["a\nb"]})), "option 'databases[0].users[0]'".into()),
        ("database twice", with(g.clone(), "databases", json!([{"name": "synapse", "host": "10.0.0.1"}, {"name": "synapse", "host": "10.0.0.2"}])), "option 'databases[1].name': value \"synapse\" is given twice".into()),
        ("unknown database key", db(json!({"name": "synapse", "host": "10.20.0.10", "pool": 3})), "unsupported option 'databases[0].pool'".into()),
        ("auth user without password", user(json!({"name": "synapse"})), "option 'auth_users[0]': give exactly one of 'password' (not empty) and 'verifier'".into()),
        ("md5 verifier", user(json!({"name": "synapse", "verifier": "md5d41d8cd98f00b204e9800998ecf8427e"})), "option 'auth_users[0].verifier': the value (hidden: no_log) is not a SCRAM-SHA-256 verifier".into()),
        ("password and verifier", user(json!({"name": "synapse", "password": &*BOTH_PW, "verifier": "SCRAM-SHA-256$4096:AA==$AA==:AA=="})), "give exactly one of".into()),
        ("unknown auth_mode", with(g.clone(), "auth_mode", json!("md5")), "option 'auth_mode': value \"md5\" is not one of: auth_file, auth_query".into()),
        ("bad auth_function", with(g.clone(), "auth_function", json!("get_auth; DROP TABLE x")), "option 'auth_function': value \"get_auth; DROP TABLE x\" is not a schema-qualified function name".into()),
        ("relative path", with(g.clone(), "path", json!("pgbouncer.ini")), "option 'path': value \"pgbouncer.ini\" is not an absolute path".into()),
        ("auth_file is the ini", with(g.clone(), "auth_file", g["path"].clone()), "option 'auth_file'".into()),
        ("missing directory", with(g.clone(), "path", json!(s.p("nope/pgbouncer.ini"))), "option 'path': cannot create".into()),
        ("unknown owner", with(g.clone(), "owner", json!("no-such-user-matrix-ha")), "option 'owner': no user named 'no-such-user-matrix-ha'".into()),
        ("unknown group", with(g.clone(), "group", json!("no-such-group-matrix-ha")), "option 'group': no group named 'no-such-group-matrix-ha'".into()),
        ("peer_id not in peers", with(with(with(with(g.clone(), "peer_id", json!(3)), "peers", json!([{"id": 1, "host": "/run/pgb1", "port": 6432}])), "pidfile", json!("/run/pgb3.pid")), "unix_socket_dir", json!("/run/pgb3")), "option 'peer_id': value 3 is not the id of any entry in 'peers'".into()),
        ("peers without peer_id", with(g.clone(), "peers", json!([{"id": 1, "host": "/run/pgb1", "port": 6432}])), "option 'peer_id': missing".into()),
        ("peer_id without pidfile", with(with(g.clone(), "peer_id", json!(1)), "peers", json!([{"id": 1, "host": "/run/pgb1", "port": 6432}])), "option 'pidfile': missing, required with 'peer_id'".into()),
        ("setting the module owns", with(g.clone(), "settings", json!({"default_pool_size": 5})), "option 'settings.default_pool_size': this setting is computed by the module".into()),
        ("setting spanning lines", with(g.clone(), "settings", json!({"server_lifetime": "3600\nauth_type = trust"})), "option 'settings.server_lifetime': value \"3600\\nauth_type = trust\" contains the control character '\\n'".into()),
        ("setting of 10 MB", with(g.clone(), "settings", json!({"server_check_query": "x".repeat(10 << 20)})), "option 'settings.server_check_query': value \"xxxx".into()),
        ("NUL in a setting", with(g.clone(), "settings", json!({"application_name_add_host": "1\u{0}x"})), "option 'settings.application_name_add_host': value \"1\\0x\" contains the control character '\\0'".into()),
        ("setting with a blank around it", with(g.clone(), "settings", json!({"server_lifetime": " 3600"})), "option 'settings.server_lifetime': value \" 3600\" starts or ends with a blank".into()),
        ("setting name with '='", with(g.clone(), "settings", json!({"auth_type = trust\nx": "1"})), "option 'settings': value \"auth_type = trust\\nx\" is not a PgBouncer setting name".into()),
        ("directive injection through ignore_startup_parameters", with(g.clone(), "ignore_startup_parameters", json!(["extra_float_digits\nauth_type = trust\n[databases]\n* = host=10.66.66.66"])), "option 'ignore_startup_parameters[0]': value \"extra_float_digits\\nauth_type = trust\\n[databases]\\n* = host=10.66.66.66\" contains the control character '\\n'".into()),
        ("comma in ignore_startup_parameters", with(g.clone(), "ignore_startup_parameters", json!(["extra_float_digits", "a,b"])), "option 'ignore_startup_parameters[1]': value \"a,b\" contains ','".into()),
        ("blank in ignore_startup_parameters", with(g.clone(), "ignore_startup_parameters", json!(["a b"])), "option 'ignore_startup_parameters[0]': value \"a b\" contains a blank".into()),
        ("NUL in ignore_startup_parameters", with(g.clone(), "ignore_startup_parameters", json!(["options\u{0}"])), "option 'ignore_startup_parameters[0]': value \"options\\0\" contains the control character '\\0'".into()),
        ("not a parameter name", with(g.clone(), "ignore_startup_parameters", json!(["1st=x"])), "option 'ignore_startup_parameters[0]': value \"1st=x\" is not a startup parameter name".into()),
        ("NUL in a socket directory host", db(json!({"name": "synapse", "host": "/run/pg\u{0}sql"})), "option 'databases[0].host': value \"/run/pg\\0sql\" is not an IP address".into()),
        ("one-character admin_password", with(g.clone(), "admin_password", json!("a")), "option 'admin_password': the value (hidden: no_log) is shorter than 8 characters".into()),
        ("unknown option", with(g.clone(), "pool_size", json!(5)), "unsupported option 'pool_size'".into()),
        ("empty admin_password", with(g.clone(), "admin_password", json!("")), "option 'admin_password': the value is empty".into()),
        ("boolean app_processes", with(g.clone(), "app_processes", json!(true)), "option 'app_processes'".into()),
        ("headroom negative", with(g.clone(), "client_headroom_percent", json!(-5)), "option 'client_headroom_percent': value -5 is outside the range".into()),
    ]
}

#[test]
fn every_bad_input_fails_names_the_option_and_writes_nothing() {
    let s = Scratch::new();
    let cases = bad_inputs(&s);
    assert!(cases.len() >= 25, "{}", cases.len());
    for (what, args, needle) in cases {
        let (v, ok) = run(&s.args(&args), &[]);
        assert!(!ok, "{what}: must fail: {v}");
        assert_eq!(v["failed"], json!(true), "{what}");
        assert_eq!(v["changed"], json!(false), "{what}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(&needle), "{what}: {msg:?} lacks {needle:?}");
        assert!(
            !v.to_string().contains("s3cret"),
            "{what}: secret leaked: {v}"
        );
        assert_eq!(s.listing(), vec!["args.json"], "{what}: a file was written");
    }
}

#[test]
fn does_not_fit_returns_the_numbers() {
    let s = Scratch::new();
    let (v, ok) = run(&s.args(&with(s.good(), "max_connections", json!(200))), &[]);
    assert!(!ok);
    assert_eq!(v["needed_max_connections"], json!(274));
    assert_eq!(v["recommended_max_connections"], json!(330));
}

#[test]
fn docs_come_from_the_spec() {
    let out = Command::cargo_bin("pgbouncer_tune")
        .unwrap()
        .arg("--docs")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for option in pgbouncer_tune::SPEC.options {
        assert!(
            text.contains(&format!("\n    {}:\n", option.name)),
            "{}",
            option.name
        );
    }
    assert!(text.contains("PostgresEngine.on_new_connection"));
}
