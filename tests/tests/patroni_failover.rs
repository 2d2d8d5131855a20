//! Failover of a real three-member Patroni cluster configured by patroni_bootstrap: under a
//! bounded write loop, kill -9 the primary's Patroni and PostgreSQL; a new leader takes over
//! and, with synchronous mode, every row the old primary acknowledged is there.
//!
//! The seconds from the kill to the first write acknowledged by the new primary are printed
//! (`failover_seconds=`), for `bench/patroni_failover.py`; they are not asserted. The
//! environment variable `MATRIX_HA_FAILOVER_TIMING=ttl,loop_wait,retry_timeout` replaces the
//! harness's timings (20,2,9), so the benchmark can compare them with Patroni's defaults.

use std::time::{Duration, Instant};

use matrix_ha_tests::patroni::{Cluster, MEMBER_HOST};
use serde_json::json;
use tokio_postgres::config::TargetSessionAttrs;

#[test]
fn kill_the_primary_under_writes_and_lose_no_acknowledged_row() {
    let timing: Vec<i64> = std::env::var("MATRIX_HA_FAILOVER_TIMING")
        .unwrap_or_else(|_| "20,2,9".to_string())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let [ttl, loop_wait, retry_timeout] = timing[..] else {
        panic!("MATRIX_HA_FAILOVER_TIMING must be ttl,loop_wait,retry_timeout");
    };
    let timing = json!({"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout});
    let mut c = Cluster::new(3);
    let n = c.members.len();
    for i in 0..n {
        let mut extra = timing.clone();
        extra["wait_for_cluster"] = json!(false);
        let r = c.module(&c.args(i, &extra));
        assert_eq!(r["failed"], json!(false), "{r}");
    }
    for i in 0..n {
        c.start(i);
    }
    for i in 0..n {
        let r = c.module(&c.args(i, &timing));
        assert_eq!(r["failed"], json!(false), "{r}\n{}", c.logs());
    }
    let old = c.leader(Duration::from_secs(30), None).expect("a leader");
    c.query(
        old,
        "postgres",
        &c.superuser_password,
        "postgres",
        "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz DEFAULT now())",
    )
    .unwrap();

    let mut config = tokio_postgres::Config::new();
    for m in &c.members {
        config.host(MEMBER_HOST).port(m.pg_port);
    }
    config
        .user("postgres")
        .password(c.superuser_password.as_str())
        .dbname("postgres")
        .target_session_attrs(TargetSessionAttrs::ReadWrite)
        .connect_timeout(Duration::from_secs(2));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked: Vec<i64> = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut killed_at: Option<Instant> = None;
    let mut recovered: Option<Duration> = None;
    let mut failed_writes = 0u32;
    let start = Instant::now();
    // Bounded: at most 20,000 attempts and 150 s; stops 5 s after the first write on the new
    // primary.
    for id in 1..=20_000i64 {
        if start.elapsed() > Duration::from_secs(150) {
            break;
        }
        if killed_at.is_none() && acked.len() >= 200 {
            assert!(
                c.crash(old),
                "the primary's Patroni and PostgreSQL PIDs were found"
            );
            killed_at = Some(Instant::now());
        }
        if client.as_ref().is_none_or(|cl| cl.is_closed()) {
            client = rt.block_on(async {
                let (cl, conn) = tokio::time::timeout(
                    Duration::from_secs(3),
                    config.connect(tokio_postgres::NoTls),
                )
                .await
                .ok()?
                .ok()?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Some(cl)
            });
        }
        let ok = match &client {
            None => None,
            Some(cl) => rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    cl.query_one(
                        "INSERT INTO acked (id) VALUES ($1) RETURNING inet_server_port()",
                        &[&id],
                    ),
                )
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|row| row.get::<_, Option<i32>>(0))
            }),
        };
        if let Some(port) = ok {
            acked.push(id);
            // Recovered: a write acknowledged by another server than the killed one.
            let elsewhere = port != Some(i32::from(c.members[old].pg_port));
            if let (Some(k), None, true) = (killed_at, recovered, elsewhere) {
                recovered = Some(k.elapsed());
            }
        } else {
            failed_writes += 1;
            client = None;
            std::thread::sleep(Duration::from_millis(100));
        }
        if let (Some(k), Some(r)) = (killed_at, recovered) {
            if k.elapsed() > r + Duration::from_secs(5) {
                break;
            }
        }
    }
    let recovered =
        recovered.unwrap_or_else(|| panic!("no write succeeded after the kill\n{}", c.logs()));
    let new = c
        .leader(Duration::from_secs(60), Some(old))
        .unwrap_or_else(|| panic!("no new leader\n{}", c.logs()));

    let present = c
        .query(
            new,
            "postgres",
            &c.superuser_password,
            "postgres",
            "SELECT id FROM acked ORDER BY id",
        )
        .unwrap();
    let present: std::collections::HashSet<i64> =
        present.iter().filter_map(|r| r[0].parse().ok()).collect();
    let lost: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
    println!(
        "failover_seconds={:.1} ttl={ttl} loop_wait={loop_wait} retry_timeout={retry_timeout} \
         acknowledged_rows={} failed_writes={failed_writes} lost_rows=0 old_leader={} new_leader={}",
        recovered.as_secs_f64(),
        acked.len(),
        c.members[old].name,
        c.members[new].name
    );
    drop(rt);
    for i in 0..n {
        c.stop(i);
    }
}
