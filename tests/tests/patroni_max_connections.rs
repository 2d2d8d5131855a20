//! patroni_bootstrap raising max_connections on a running cluster (etcd 3.4, three Patroni
//! 3.0.2 members with PostgreSQL 15, on loopback): through Patroni's dynamic configuration and
//! a rolling restart, replicas first; a lower value is reported and not applied.

use std::time::{Duration, Instant};

use matrix_ha_tests::patroni::Cluster;
use serde_json::json;

fn show(c: &Cluster, i: usize) -> String {
    c.query(
        i,
        "postgres",
        &c.superuser_password,
        "postgres",
        "SHOW max_connections",
    )
    .unwrap_or_else(|e| panic!("SHOW max_connections on member {i}: {e}"))[0][0]
        .clone()
}

#[test]
fn a_higher_max_connections_reaches_every_member_and_a_lower_one_is_only_reported() {
    let start = Instant::now();
    let mut c = Cluster::new(3);
    let n = c.members.len();
    for i in 0..n {
        c.assert_ok(
            &c.module(&c.args(i, &json!({"wait_for_cluster": false}))),
            "render",
        );
    }
    for i in 0..n {
        c.start(i);
    }
    let mut leader = None;
    for i in 0..n {
        let r = c.module(&c.args(i, &json!({})));
        c.assert_ok(&r, "bootstrap");
        if r["is_leader"] == json!(true) {
            assert_eq!(
                r["max_connections"],
                json!({"running": 50, "wanted": 50, "raised": false, "restarted": [],
                       "pending": false}),
                "{r}"
            );
            leader = Some(i);
        } else {
            assert!(r.get("max_connections").is_none(), "{r}");
        }
    }
    let l = leader.expect("one member leads");
    let leader_name = c.members[l].name.clone();
    for i in 0..n {
        assert_eq!(show(&c, i), "50");
    }
    eprintln!("bootstrapped in {:?}", start.elapsed());

    // Check mode: what would be done, nothing done.
    let r = c.module(&c.args(
        l,
        &json!({"max_connections": 80, "_ansible_check_mode": true}),
    ));
    c.assert_ok(&r, "check mode raise");
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(r["max_connections"]["raised"], json!(true), "{r}");
    let planned = r["max_connections"]["restarted"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(planned.len(), 3, "{r}");
    assert_eq!(planned[2], json!(leader_name), "the leader last: {r}");
    for i in 0..n {
        assert_eq!(show(&c, i), "50", "check mode changed nothing");
    }

    // Raise: every member runs the new value, the leader restarted last.
    let raise = Instant::now();
    let r = c.module(&c.args(l, &json!({"max_connections": 80})));
    c.assert_ok(&r, "raise");
    eprintln!("raised with a rolling restart in {:?}", raise.elapsed());
    assert_eq!(r["changed"], json!(true), "{r}");
    let mc = &r["max_connections"];
    assert_eq!(mc["running"], json!(50), "{r}");
    assert_eq!(mc["wanted"], json!(80), "{r}");
    assert_eq!(mc["raised"], json!(true), "{r}");
    let restarted = mc["restarted"].as_array().unwrap();
    assert_eq!(restarted.len(), 3, "{r}");
    assert_eq!(restarted[2], json!(leader_name), "{r}");
    for i in 0..n {
        assert_eq!(show(&c, i), "80", "member {i}");
    }
    assert_eq!(
        c.leader(Duration::from_secs(30), None),
        Some(l),
        "the leader was restarted in place"
    );
    let mut streaming = Vec::new();
    for _ in 0..40 {
        streaming = c
            .query(
                l,
                "postgres",
                &c.superuser_password,
                "postgres",
                "SELECT state FROM pg_stat_replication",
            )
            .unwrap();
        if streaming.len() == 2 && streaming.iter().all(|s| s[0] == "streaming") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        streaming,
        vec![vec!["streaming"], vec!["streaming"]],
        "two streaming replicas"
    );

    // The same value again: nothing written, nothing restarted.
    let r = c.module(&c.args(l, &json!({"max_connections": 80})));
    c.assert_ok(&r, "same value");
    assert_eq!(r["changed"], json!(false), "{r}");
    assert_eq!(
        r["max_connections"],
        json!({"running": 80, "wanted": 80, "raised": false, "restarted": [],
               "pending": false}),
        "{r}"
    );

    // Lower: reported with both numbers, not applied, not failed.
    let r = c.module(&c.args(l, &json!({"max_connections": 60})));
    c.assert_ok(&r, "lower value");
    assert_eq!(
        r["changed"],
        json!(true),
        "only the file's bootstrap.dcs: {r}"
    );
    assert_eq!(r["max_connections_pending"], json!(true), "{r}");
    assert_eq!(r["max_connections"]["pending"], json!(true), "{r}");
    assert_eq!(r["max_connections"]["restarted"], json!([]), "{r}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("max_connections 60 is lower than the cluster's 80"),
        "{warnings}"
    );
    for i in 0..n {
        assert_eq!(show(&c, i), "80", "member {i}");
    }
    for s in [&c.superuser_password, &c.restapi_password] {
        assert!(!r.to_string().contains(s.as_str()), "secret in result");
    }
    eprintln!("whole test {:?}", start.elapsed());
    for i in 0..n {
        c.stop(i);
    }
}
