//! patroni_bootstrap against a real cluster: etcd 3.4 and three Patroni 3.0.2 members with
//! PostgreSQL 15 (Debian 12), all on loopback, started and stopped by the test.

use std::os::unix::fs::MetadataExt;

use matrix_ha_tests::patroni::Cluster;
use serde_json::json;

#[test]
fn three_members_leader_replicas_synapse_database_and_a_quiet_second_run() {
    let mut c = Cluster::new(3);
    let n = c.members.len();

    // 1. Render every member's file (validated by patroni --validate-config), then start them.
    for i in 0..n {
        let r = c.module(&c.args(i, &json!({"wait_for_cluster": false})));
        c.assert_ok(&r, "render");
        assert_eq!(r["changed"], json!(true));
        let meta = std::fs::metadata(c.members[i].config()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(
            !r.get("warnings")
                .is_some_and(|w| w.to_string().contains("not validated")),
            "Patroni must be installed to validate: {r}"
        );
    }
    for i in 0..n {
        c.start(i);
    }

    // 2. Wait for the cluster on every member; only the leader does the database work.
    let mut results = Vec::new();
    for i in 0..n {
        let r = c.module(&c.args(i, &json!({})));
        c.assert_ok(&r, "wait and ensure");
        results.push(r);
    }
    let leaders: Vec<usize> = (0..n)
        .filter(|&i| results[i]["is_leader"] == json!(true))
        .collect();
    assert_eq!(leaders.len(), 1, "{results:?}");
    let l = leaders[0];
    let lr = &results[l];
    assert_eq!(lr["changed"], json!(true));
    let actions = lr["actions"].to_string();
    for needle in [
        "create role synapse",
        "create role pgbouncer",
        "create database synapse",
        "create function pgbouncer.get_auth(text) in database synapse",
        "set statement_timeout of role synapse to '10min'",
    ] {
        assert!(actions.contains(needle), "{needle} missing from {actions}");
    }
    assert_eq!(lr["members"].as_array().unwrap().len(), 3);
    assert_eq!(lr["leader"], json!(c.members[l].name));
    assert!(lr["timeline"].as_u64().is_some());
    for (i, r) in results.iter().enumerate() {
        if i != l {
            assert_eq!(r["changed"], json!(false), "a replica changes nothing: {r}");
            assert!(r.get("actions").is_none());
        }
    }
    let secrets = [
        &c.superuser_password,
        &c.replication_password,
        &c.restapi_password,
        &c.synapse_password,
        &c.pgbouncer_password,
    ];
    for r in &results {
        for s in secrets {
            assert!(!r.to_string().contains(s.as_str()), "secret in result {r}");
        }
    }

    // 3. What a user cares about, read from PostgreSQL itself.
    let su = |sql: &str| {
        c.query(l, "postgres", &c.superuser_password, "postgres", sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    // Patroni reports the synchronous standby once PostgreSQL has it; allow it a few loops.
    let mut streaming = Vec::new();
    for _ in 0..20 {
        streaming = su("SELECT state, sync_state FROM pg_stat_replication ORDER BY 2");
        if streaming.iter().any(|r| r[1] == "sync") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(streaming.len(), 2, "{streaming:?}");
    assert!(
        streaming.iter().all(|r| r[0] == "streaming"),
        "{streaming:?}"
    );
    assert_eq!(
        streaming.iter().filter(|r| r[1] == "sync").count(),
        1,
        "synchronous_mode on: one synchronous standby: {streaming:?}"
    );
    let db = su(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype, \
                 pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'synapse'",
    );
    assert_eq!(db, vec![vec!["UTF8", "C", "C", "synapse"]]);
    assert_eq!(su("SHOW data_checksums"), vec![vec!["on"]]);
    assert_eq!(su("SHOW max_connections"), vec![vec!["50"]]);
    let methods = su("SELECT DISTINCT auth_method FROM pg_hba_file_rules");
    assert_eq!(methods, vec![vec!["scram-sha-256"]]);
    let verifier = su("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'synapse'");
    assert_eq!(verifier, vec![vec!["SCRAM-SHA-256$"]]);

    // The roles log in with SCRAM; only the auth role may call the lookup function, and it
    // never returns a superuser.
    let synapse = c
        .query(
            l,
            "synapse",
            &c.synapse_password,
            "synapse",
            "SELECT current_user",
        )
        .expect("synapse logs in");
    assert_eq!(synapse, vec![vec!["synapse"]]);
    // The role's session defaults hold in a new session (as behind transaction pooling).
    let defaults = c
        .query(
            l,
            "synapse",
            &c.synapse_password,
            "synapse",
            "SELECT current_setting('transaction_isolation'), current_setting('statement_timeout')",
        )
        .expect("synapse logs in");
    assert_eq!(defaults, vec![vec!["read committed", "10min"]]);
    let lookup = c
        .query(
            l,
            "pgbouncer",
            &c.pgbouncer_password,
            "synapse",
            "SELECT usename, left(passwd, 14) FROM pgbouncer.get_auth('synapse')",
        )
        .expect("the auth role calls get_auth");
    assert_eq!(lookup, vec![vec!["synapse", "SCRAM-SHA-256$"]]);
    let superuser = c
        .query(
            l,
            "pgbouncer",
            &c.pgbouncer_password,
            "synapse",
            "SELECT * FROM pgbouncer.get_auth('postgres')",
        )
        .unwrap();
    assert!(superuser.is_empty(), "superusers are never returned");
    let denied = c.query(
        l,
        "synapse",
        &c.synapse_password,
        "synapse",
        "SELECT * FROM pgbouncer.get_auth('synapse')",
    );
    assert!(denied.unwrap_err().contains("permission denied"));

    // 4. A second run against the healthy cluster changes nothing, on any member; so does
    // check mode.
    for i in 0..n {
        let r = c.module(&c.args(i, &json!({})));
        c.assert_ok(&r, "second run");
        assert_eq!(r["changed"], json!(false), "second run on member {i}: {r}");
        let r = c.module(&c.args(i, &json!({"_ansible_check_mode": true})));
        c.assert_ok(&r, "check mode");
        assert_eq!(r["changed"], json!(false), "check mode on member {i}: {r}");
    }

    // 5. A changed password is noticed (by logging in) and set again; check mode first.
    let mut args = c.args(l, &json!({}));
    args["users"][0]["password"] = json!(format!("{}-new", c.synapse_password));
    args["_ansible_check_mode"] = json!(true);
    let r = c.module(&args);
    c.assert_ok(&r, "check mode with a new password");
    assert_eq!(r["changed"], json!(true));
    assert_eq!(r["actions"], json!(["set the password of role synapse"]));
    assert!(c
        .query(l, "synapse", &c.synapse_password, "synapse", "SELECT 1")
        .is_ok());
    args["_ansible_check_mode"] = json!(false);
    let r = c.module(&args);
    c.assert_ok(&r, "new password");
    assert_eq!(r["actions"], json!(["set the password of role synapse"]));
    let new = format!("{}-new", c.synapse_password);
    assert!(c.query(l, "synapse", &new, "synapse", "SELECT 1").is_ok());
    assert!(c
        .query(l, "synapse", &c.synapse_password, "synapse", "SELECT 1")
        .is_err());

    // 6. A database with another locale is refused, not "fixed"; nothing else is touched.
    su("CREATE DATABASE wrong_locale TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'");
    let mut args = c.args(l, &json!({}));
    args["databases"] = json!([{"name": "wrong_locale", "owner": "synapse"}]);
    let r = c.module(&args);
    assert_eq!(r["failed"], json!(true), "{r}");
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("database 'wrong_locale' exists with encoding UTF8, LC_COLLATE 'C.UTF-8'"),
        "{msg}"
    );

    // 7. A changed parameter on a running member: the file is rewritten (Patroni's validator
    // sees its own ports in use, which does not count), then nothing changes.
    let replica = (l + 1) % n;
    let tuned = json!({"parameters": {"unix_socket_directories": c.members[replica].dir,
                                      "huge_pages": "off", "wal_keep_size": "64MB",
                                      "work_mem": "8MB"}});
    let r = c.module(&c.args(replica, &tuned));
    c.assert_ok(&r, "changed parameter");
    assert_eq!(r["changed"], json!(true), "{r}");
    let text = std::fs::read_to_string(c.members[replica].config()).unwrap();
    assert!(text.contains("\"work_mem\": \"8MB\""));
    let r = c.module(&c.args(replica, &tuned));
    assert_eq!(r["changed"], json!(false), "{r}");

    // 8. A cluster that cannot get ready in time fails with what it saw.
    let r = c.module(&c.args(l, &json!({"cluster_size": 4, "wait_timeout": 2})));
    assert_eq!(r["failed"], json!(true));
    let msg = r["msg"].as_str().unwrap();
    assert!(
        msg.contains("did not get a leader and 3 streaming replica(s) within 2 s"),
        "{msg}"
    );

    for i in 0..n {
        c.stop(i);
    }
}
