//! z3r0d3v.matrix_ha.pgbouncer_tune against a real PostgreSQL and a real PgBouncer (Debian's
//! packages), both started by the test as the postgres user on free loopback ports.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use matrix_ha_tests::collection;
use matrix_ha_tests::pg::{self, PgBouncer, Postgres};
use serde_json::{json, Value};

fn module() -> PathBuf {
    collection().join("plugins/modules/pgbouncer_tune")
}

/// Runs the built module with `args` (written to a 0600 file in `dir`): result, success.
fn run_module(dir: &Path, args: &Value) -> (Value, bool) {
    let file = dir.join("args.json");
    fs::write(&file, args.to_string()).unwrap();
    let out = Command::new(module()).arg(&file).output().unwrap();
    let _ = fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (value, out.status.success())
}

/// A server_check_query holding ';', '#', '=', '[' and quotes: all plain text to PgBouncer.
/// (server_reset_query is the module's own: DISCARD ALL in transaction pooling.)
const CHECK_QUERY: &str = "SELECT '# ; = [x] \"q\"';";

#[test]
fn scram_through_pgbouncer_reload_applies_and_synapse_settings_hold() {
    let server = Postgres::start(60);
    let synapse_pw = pg::password();
    let admin_pw = pg::password();
    server.create_role_and_db("synapse", &synapse_pw, "synapse");
    // Our verifier check agrees with PostgreSQL's stored verifier.
    let stored = server.stored_verifier("synapse");
    assert!(pgbouncer_tune::scram::matches(&synapse_pw, &stored));
    assert!(!pgbouncer_tune::scram::matches("not-the-password", &stored));

    let dir = server.dir.path();
    let ini = dir.join("pgbouncer.ini");
    let port = pg::free_port();
    let args = |processes: u32, admin: bool| {
        let mut a = json!({
            "path": ini,
            "auth_file": dir.join("userlist.txt"),
            "app_processes": processes,
            "app_pool_max": 2,
            "reserved_connections": 5,
            "listen_addr": ["127.0.0.1"],
            "listen_port": port,
            "unix_socket_dir": dir,
            "pidfile": dir.join("pgbouncer.pid"),
            "databases": [{"name": "synapse", "host": "127.0.0.1", "port": server.port, "users": ["synapse"]}],
            // The server's own verifier: PgBouncer passes SCRAM through with it.
            "auth_users": [{"name": "synapse", "verifier": stored}],
            // max_connections is read from the server over SCRAM.
            "login_host": "127.0.0.1",
            "login_port": server.port,
            "login_user": "postgres",
            "login_password": server.superuser_password,
            "pgbouncer_binary": "/usr/sbin/pgbouncer",
            // Values with the ini syntax's own characters inside, which must reach PgBouncer
            // exactly (a line break or comma item would be refused, see the CLI tests).
            "ignore_startup_parameters": ["extra_float_digits", "options"],
            "settings": {"server_check_query": CHECK_QUERY},
        });
        if admin {
            a["admin_password"] = json!(admin_pw);
        }
        a
    };

    // First run: nothing runs yet; max_connections comes from the server.
    let (first, ok) = run_module(dir, &args(4, true));
    assert!(ok, "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["max_connections_source"], json!("server"));
    assert_eq!(first["sizing"]["max_connections"], json!(60));
    assert_eq!(first["sizing"]["default_pool_size"], json!(8));
    assert_eq!(first["reloaded"], json!("none"));
    assert!(first["pgbouncer_version"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    let text = first.to_string();
    assert!(
        !text.contains(&synapse_pw)
            && !text.contains(&admin_pw)
            && !text.contains(&server.superuser_password)
    );

    // The role defaults the module returns, run before any server connection exists.
    for sql in first["role_settings"].as_array().unwrap() {
        server.psql("postgres", sql.as_str().unwrap());
    }
    let bouncer = PgBouncer::start(&ini, port);

    // SCRAM login through PgBouncer, as Synapse logs in.
    let rows = pg::query(
        port,
        "synapse",
        &synapse_pw,
        "synapse",
        "SELECT current_user AS u",
    )
    .unwrap_or_else(|e| panic!("login through PgBouncer: {e}\n{}", bouncer.log()));
    assert_eq!(rows[0][0].1, "synapse");
    assert!(pg::query(port, "synapse", "wrong-password", "synapse", "SELECT 1").is_err());
    assert_eq!(
        pg::show_config(port, "pgbouncer_admin", &admin_pw, "default_pool_size").as_deref(),
        Some("8")
    );
    // PgBouncer's own reading of the values written.
    assert_eq!(
        pg::show_config(
            port,
            "pgbouncer_admin",
            &admin_pw,
            "ignore_startup_parameters"
        )
        .as_deref(),
        Some("extra_float_digits,options")
    );
    assert_eq!(
        pg::show_config(port, "pgbouncer_admin", &admin_pw, "server_check_query").as_deref(),
        Some(CHECK_QUERY)
    );

    // A new pool size applies by RELOAD on the admin console, verified with SHOW CONFIG.
    let (second, ok) = run_module(dir, &args(6, true));
    assert!(ok, "{second}\n{}", bouncer.log());
    assert_eq!(second["changed"], json!(true));
    assert_eq!(second["reloaded"], json!("console"));
    assert_eq!(second["verified"]["default_pool_size"], json!("12"));
    assert_eq!(second["verified"]["max_client_conn"], json!("24"));
    assert_eq!(
        pg::show_config(port, "pgbouncer_admin", &admin_pw, "default_pool_size").as_deref(),
        Some("12")
    );

    // Unchanged: nothing written, nothing reloaded.
    let (third, ok) = run_module(dir, &args(6, true));
    assert!(ok);
    assert_eq!(third["changed"], json!(false), "{third}");
    assert_eq!(third["reloaded"], json!("none"));

    // A file written without reload leaves PgBouncer on the old values: the next run sees
    // it in SHOW CONFIG and reloads, although the file is already right.
    let mut no_reload = args(5, true);
    no_reload["reload"] = json!(false);
    let (v, ok) = run_module(dir, &no_reload);
    assert!(ok && v["changed"] == json!(true), "{v}");
    assert_eq!(v["reloaded"], json!("none"));
    let (stale, ok) = run_module(dir, &args(5, true));
    assert!(ok, "{stale}");
    assert_eq!(stale["changed"], json!(true), "{stale}");
    assert!(
        stale["msg"]
            .as_str()
            .unwrap()
            .contains("default_pool_size = \"12\" (expected \"10\")"),
        "{stale}"
    );
    assert_eq!(stale["reloaded"], json!("console"));
    assert_eq!(stale["verified"]["default_pool_size"], json!("10"));
    let (settled, _) = run_module(dir, &args(5, true));
    assert_eq!(settled["changed"], json!(false), "{settled}");
    assert_eq!(settled["verified"]["default_pool_size"], json!("10"));

    // Without the admin password the module reloads by SIGHUP to the pidfile's process; the
    // admin user keeps its verifier through auth_users.
    let users = fs::read_to_string(dir.join("userlist.txt")).unwrap();
    let admin_verifier = users
        .lines()
        .find_map(|l| l.strip_prefix("\"pgbouncer_admin\" \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap()
        .to_string();
    let mut hup = args(7, false);
    hup["auth_users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "pgbouncer_admin", "verifier": admin_verifier}));
    let (fourth, ok) = run_module(dir, &hup);
    assert!(ok, "{fourth}");
    assert_eq!(fourth["reloaded"], json!("sighup"));
    let mut applied = None;
    for _ in 0..50 {
        applied = pg::show_config(port, "pgbouncer_admin", &admin_pw, "default_pool_size");
        if applied.as_deref() == Some("14") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(applied.as_deref(), Some("14"), "{}", bouncer.log());

    // Synapse's session settings as role defaults hold in transaction pooling.
    for (setting, want) in [
        ("transaction_isolation", "read committed"),
        ("bytea_output", "escape"),
        ("statement_timeout", "10min"),
    ] {
        let rows = pg::query(
            port,
            "synapse",
            &synapse_pw,
            "synapse",
            &format!("SHOW {setting}"),
        )
        .unwrap();
        assert_eq!(rows[0][0].1, want, "{setting}");
    }

    // A session setting one client makes cannot reach the next client's queries: PgBouncer
    // hands out the server connection used last, which ran the SET, and DISCARD ALL (run when
    // it returns to the pool) has reset it to the role's default.
    let ini_text = fs::read_to_string(&ini).unwrap();
    assert!(
        ini_text.contains("server_reset_query = DISCARD ALL\nserver_reset_query_always = 1\n"),
        "{ini_text}"
    );
    for round in 0..5 {
        pg::query(
            port,
            "synapse",
            &synapse_pw,
            "synapse",
            "SET SESSION statement_timeout = 0",
        )
        .unwrap();
        let rows = pg::query(
            port,
            "synapse",
            &synapse_pw,
            "synapse",
            "SHOW statement_timeout",
        )
        .unwrap();
        assert_eq!(rows[0][0].1, "10min", "round {round}: a SET leaked");
    }

    // A pool that cannot fit fails, names the fix and leaves the running config alone.
    let before = fs::read(&ini).unwrap();
    let (v, ok) = run_module(dir, &args(40, true));
    assert!(!ok);
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("option 'max_connections': value 60 is too small"),
        "{msg}"
    );
    assert!(msg.contains("raise max_connections to"), "{msg}");
    assert_eq!(fs::read(&ini).unwrap(), before);
    eprintln!("ran against {} and {}", server.version, bouncer.version);
}

#[test]
fn auth_query_through_the_lookup_function() {
    let server = Postgres::start(60);
    let synapse_pw = pg::password();
    let admin_pw = pg::password();
    server.create_role_and_db("synapse", &synapse_pw, "synapse");
    // What patroni_bootstrap creates: the auth user, without a password, admitted by `peer`
    // on the Unix socket only (PgBouncer runs as the postgres system user), and the SECURITY
    // DEFINER lookup function with the signature the module documents, only it may run.
    server.psql("postgres", "CREATE ROLE pgbouncer LOGIN");
    server.psql(
        "synapse",
        "CREATE SCHEMA pgbouncer AUTHORIZATION postgres;
         CREATE FUNCTION pgbouncer.get_auth(p_usename text)
           RETURNS TABLE(usename name, passwd text)
           LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
           $$ SELECT rolname, rolpassword FROM pg_authid
              WHERE rolname = p_usename AND rolcanlogin AND NOT rolsuper $$;
         REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
         GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer;
         GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer;",
    );
    server.prepend_hba(
        &[
            "local all pgbouncer peer map=pgbouncer",
            "local all synapse scram-sha-256",
        ],
        &["pgbouncer postgres pgbouncer"],
    );

    let dir = server.dir.path();
    let ini = dir.join("pgbouncer.ini");
    let port = pg::free_port();
    let args = json!({
        "path": ini,
        "auth_file": dir.join("userlist.txt"),
        "auth_mode": "auth_query",
        "app_processes": 3,
        "app_pool_max": 2,
        "max_connections": 60,
        "reserved_connections": 5,
        "listen_addr": ["127.0.0.1"],
        "listen_port": port,
        "unix_socket_dir": dir,
        "pidfile": dir.join("pgbouncer.pid"),
        "databases": [{"name": "synapse", "host": dir, "port": server.port, "users": ["synapse"]}],
        "admin_password": admin_pw,
        "pgbouncer_binary": "/usr/sbin/pgbouncer",
    });
    let (first, ok) = run_module(dir, &args);
    assert!(ok, "{first}");
    // One more pool: the auth user's.
    assert_eq!(first["sizing"]["pools"], json!(2));
    assert_eq!(first["sizing"]["max_db_connections"]["synapse"], json!(12));
    let users = fs::read_to_string(dir.join("userlist.txt")).unwrap();
    assert!(
        !users.contains("\"synapse\""),
        "synapse comes from auth_query: {users}"
    );

    let bouncer = PgBouncer::start(&ini, port);
    let rows = pg::query(
        port,
        "synapse",
        &synapse_pw,
        "synapse",
        "SELECT current_user AS u",
    )
    .unwrap_or_else(|e| panic!("auth_query login: {e}\n{}", bouncer.log()));
    assert_eq!(rows[0][0].1, "synapse");
    assert!(pg::query(port, "synapse", "wrong-password", "synapse", "SELECT 1").is_err());
    // The superuser is not served by the lookup function.
    assert!(pg::query(
        port,
        "postgres",
        &server.superuser_password,
        "synapse",
        "SELECT 1"
    )
    .is_err());
    assert_eq!(
        pg::show_config(port, "pgbouncer_admin", &admin_pw, "auth_query").as_deref(),
        Some("SELECT usename, passwd FROM pgbouncer.get_auth($1)")
    );
}

/// Debian's package starts PgBouncer with its own configuration on installation: the console is
/// not where the new file says. The module loads the file by SIGHUP, says to restart, and keeps
/// reporting a change until PgBouncer listens as configured.
#[test]
fn a_pgbouncer_listening_elsewhere_is_reloaded_by_sighup_until_restarted() {
    let server = Postgres::start(60);
    let synapse_pw = pg::password();
    let admin_pw = pg::password();
    server.create_role_and_db("synapse", &synapse_pw, "synapse");
    let stored = server.stored_verifier("synapse");
    let dir = server.dir.path();
    let ini = dir.join("pgbouncer.ini");
    let old_port = pg::free_port();
    let new_port = (0..20)
        .map(|_| pg::free_port())
        .find(|p| *p != old_port)
        .unwrap();
    let args = |port: u16| {
        let mut a = pg::synapse_bouncer_args(dir, port, server.port, &stored, &admin_pw);
        a["pgbouncer_binary"] = json!("/usr/sbin/pgbouncer");
        a
    };
    let (first, ok) = run_module(dir, &args(old_port));
    assert!(ok, "{first}");
    let bouncer = PgBouncer::start(&ini, old_port);

    let (moved, ok) = run_module(dir, &args(new_port));
    assert!(ok, "{moved}\n{}", bouncer.log());
    assert_eq!(moved["changed"], json!(true));
    assert_eq!(moved["reloaded"], json!("sighup"), "{moved}");
    assert!(
        moved["warnings"].to_string().contains("restart PgBouncer"),
        "{moved}"
    );
    let (again, ok) = run_module(dir, &args(new_port));
    assert!(ok, "{again}");
    assert_eq!(again["changed"], json!(true), "{again}");
    assert!(
        again["msg"]
            .as_str()
            .unwrap()
            .contains("admin console does not answer"),
        "{again}"
    );
    // Nothing in the files changed on the second run; the process is what is stale.
    assert_eq!(again["reloaded"], json!("sighup"), "{again}");

    drop(bouncer);
    let bouncer = PgBouncer::start(&ini, new_port);
    let (settled, ok) = run_module(dir, &args(new_port));
    assert!(ok, "{settled}\n{}", bouncer.log());
    assert_eq!(settled["changed"], json!(false), "{settled}");
    assert_eq!(
        settled["verified"]["listen_port"],
        json!(new_port.to_string())
    );
    // Listening as configured: nothing left that only a restart applies.
    assert_eq!(settled["restart_required"], json!([]), "{settled}");
}

/// Several PgBouncer processes on one port (so_reuseport), each with its own pidfile and socket
/// directory, from one module run each: both run, and logins through the shared port work.
#[test]
fn two_processes_share_the_port_with_so_reuseport() {
    let server = Postgres::start(60);
    let synapse_pw = pg::password();
    let admin_pw = pg::password();
    server.create_role_and_db("synapse", &synapse_pw, "synapse");
    let stored = server.stored_verifier("synapse");
    let port = pg::free_port();
    let (uid, gid) = pg::postgres_ids();
    let mut bouncers = Vec::new();
    for name in ["first", "second"] {
        let dir = server.dir.path().join(name);
        fs::create_dir(&dir).unwrap();
        nix::unistd::chown(
            &dir,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
        let ini = dir.join("pgbouncer.ini");
        let mut args = pg::synapse_bouncer_args(&dir, port, server.port, &stored, &admin_pw);
        args["so_reuseport"] = json!(true);
        args["pgbouncer_binary"] = json!("/usr/sbin/pgbouncer");
        let (v, ok) = run_module(&dir, &args);
        assert!(ok, "{v}");
        assert!(fs::read_to_string(&ini)
            .unwrap()
            .contains("so_reuseport = 1"));
        let bouncer = PgBouncer::start(&ini, port);
        bouncers.push((dir, bouncer));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (dir, bouncer) in &bouncers {
        assert!(
            dir.join(format!(".s.PGSQL.{port}")).exists() && dir.join("pgbouncer.pid").exists(),
            "each process has its own socket and pidfile: {}",
            bouncer.log()
        );
    }
    for _ in 0..8 {
        let rows = pg::query(
            port,
            "synapse",
            &synapse_pw,
            "synapse",
            "SELECT current_user AS u",
        )
        .unwrap_or_else(|e| panic!("login through the shared port: {e}"));
        assert_eq!(rows[0][0].1, "synapse");
    }
}
