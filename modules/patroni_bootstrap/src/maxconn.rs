//! Raising a running cluster's `max_connections`: `bootstrap.dcs` only counts at the first
//! bootstrap, so a higher O(max_connections) is written to Patroni's dynamic configuration
//! (`PATCH /config`) and the members are restarted one by one, replicas first and the leader
//! last (a hot standby refuses to run with a lower `max_connections` than its primary).
//!
//! Only the leader's run does this. A lower wanted value is reported, never applied: PgBouncer's
//! pools would have to shrink first.
//!
//! [`plan`] and [`restart_order`] are pure; [`ensure`] does the I/O, every wait bounded.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{self, Member};
use crate::db;

/// What the dynamic configuration's value asks for, before any member is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The same value: only members still waiting for a restart (an earlier run stopped half
    /// way) are looked at.
    Equal,
    /// Higher than the running value (or the DCS holds none): write it, then restart.
    Raise,
    /// Lower than the running value: reported, not applied.
    Lower,
}

/// `running` is `postgresql.parameters.max_connections` of `GET /config` (none when absent).
pub fn plan(running: Option<u64>, wanted: u64) -> Plan {
    match running {
        Some(r) if r == wanted => Plan::Equal,
        Some(r) if r > wanted => Plan::Lower,
        _ => Plan::Raise,
    }
}

/// The members to restart, in order: the replicas among `behind` (in `/cluster`'s order, by
/// name), then the leader when it is behind too.
pub fn restart_order(members: &[Member], leader: &str, behind: &[String]) -> Vec<String> {
    let is_behind = |m: &&Member| behind.contains(&m.name);
    let replicas = members
        .iter()
        .filter(|m| m.name != leader)
        .filter(is_behind);
    let leaders = members
        .iter()
        .filter(|m| m.name == leader)
        .filter(is_behind);
    replicas.chain(leaders).map(|m| m.name.clone()).collect()
}

/// `postgresql.parameters.max_connections` of a `/config` answer (a number or a numeric
/// string).
pub fn dcs_value(config: &Value) -> Option<u64> {
    let v = config.pointer("/postgresql/parameters/max_connections")?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The result's `max_connections`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// The dynamic configuration's value before this run (none when it held none).
    pub running: Option<u64>,
    pub wanted: u64,
    /// Whether `PATCH /config` was sent (in check mode: would be).
    pub raised: bool,
    /// Members restarted, in order (in check mode: would be).
    pub restarted: Vec<String>,
    /// A lower wanted value that was not applied.
    pub pending: bool,
}

/// Where and how to reach Patroni and PostgreSQL.
pub struct Access<'a> {
    /// This member's REST API, host:port.
    pub api: String,
    pub username: &'a str,
    pub password: &'a str,
    pub superuser: &'a str,
    pub superuser_password: &'a str,
    pub cluster_size: usize,
    pub sync: bool,
    /// Bound of each wait (a member's restart, the cluster getting ready again).
    pub timeout: Duration,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

fn auth(a: &Access) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", a.username, a.password))
    )
}

fn answer(
    url: &str,
    what: &str,
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, String> {
    let mut response = result.map_err(|e| format!("{what} {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{what} {url}: {e}"))?;
    if status != 200 {
        let text: String = text.chars().take(300).collect();
        return Err(format!("{what} {url}: HTTP {status}: {}", text.trim()));
    }
    Ok(text)
}

/// `GET http://API/config`: Patroni's dynamic configuration.
pub fn get_config(api: &str) -> Result<Value, String> {
    let url = format!("http://{api}/config");
    let text = answer(&url, "GET", agent(Duration::from_secs(10)).get(&url).call())?;
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: the answer is not JSON: {e}"))
}

fn patch_config(a: &Access, wanted: u64) -> Result<(), String> {
    let url = format!("http://{}/config", a.api);
    let body = json!({"postgresql": {"parameters": {"max_connections": wanted}}});
    let text = answer(
        &url,
        "PATCH",
        agent(Duration::from_secs(10))
            .patch(&url)
            .header("Authorization", auth(a))
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    )?;
    let after: Value =
        serde_json::from_str(&text).map_err(|e| format!("PATCH {url}: not JSON: {e}"))?;
    match dcs_value(&after) {
        Some(v) if v == wanted => Ok(()),
        other => Err(format!(
            "PATCH {url}: the configuration holds max_connections {other:?}, not {wanted}"
        )),
    }
}

fn restart(a: &Access, member: &Member) -> Result<(), String> {
    let url = format!("http://{}/restart", member.api);
    answer(
        &url,
        "POST",
        agent(a.timeout + Duration::from_secs(10))
            .post(&url)
            .header("Authorization", auth(a))
            .header("Content-Type", "application/json")
            .send(json!({"timeout": a.timeout.as_secs().max(1)}).to_string()),
    )
    .map(|_| ())
}

fn target(a: &Access, m: &Member) -> db::Target {
    db::Target {
        host: m.host.clone(),
        port: m.port as u16,
        superuser: a.superuser.to_string(),
        password: a.superuser_password.to_string(),
    }
}

/// Polls `/cluster` (every 0.5 s, at most `a.timeout`) until `name` shows Patroni's
/// `pending_restart`, i.e. its Patroni has loaded the new dynamic configuration.
fn wait_pending(a: &Access, name: &str) -> Result<Member, String> {
    let start = Instant::now();
    let mut last = String::from("not asked");
    for _ in 0..=a.timeout.as_secs().saturating_mul(2) {
        match cluster::fetch(&a.api, Duration::from_secs(3)) {
            Ok(ms) => match ms.into_iter().find(|m| m.name == name) {
                Some(m) if m.pending_restart => return Ok(m),
                Some(m) => last = format!("{} {}, no pending restart", m.role, m.state),
                None => last = "not listed".into(),
            },
            Err(e) => last = e,
        }
        if start.elapsed() >= a.timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "member {name} did not report a pending restart within {} s ({last})",
        a.timeout.as_secs()
    ))
}

/// On the leader (`leader` is its name, `members` as `/cluster` last listed them): compares
/// the DCS value with `wanted` and raises it with a rolling restart. Check mode only reads.
/// Warnings (a lower wanted value) go to `warn`.
pub fn ensure(
    a: &Access,
    members: &[Member],
    leader: &str,
    wanted: u64,
    check: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Report, String> {
    let config = get_config(&a.api)?;
    let running = dcs_value(&config);
    let mut report = Report {
        running,
        wanted,
        ..Report::default()
    };
    let candidates: Vec<&Member> = match plan(running, wanted) {
        Plan::Lower => {
            report.pending = true;
            warn(format!(
                "max_connections {wanted} is lower than the cluster's {}: not applied (shrink \
                 PgBouncer's pools first, then lower it with patronictl edit-config and a \
                 rolling restart)",
                running.unwrap_or_default()
            ));
            return Ok(report);
        }
        // The no-op of every converge: one GET, and the flags /cluster already gave.
        Plan::Equal => members.iter().filter(|m| m.pending_restart).collect(),
        Plan::Raise => {
            report.raised = true;
            members.iter().collect()
        }
    };
    if candidates.is_empty() {
        return Ok(report);
    }
    let mut behind = Vec::new();
    for m in &candidates {
        let now = db::max_connections(&target(a, m))
            .map_err(|e| format!("reading max_connections of member {}: {e}", m.name))?;
        if now < wanted {
            behind.push(m.name.clone());
        }
    }
    let order = restart_order(members, leader, &behind);
    if check {
        report.restarted = order;
        return Ok(report);
    }
    if report.raised {
        patch_config(a, wanted)?;
    }
    for name in order {
        let member = wait_pending(a, &name)?;
        restart(a, &member).map_err(|e| {
            format!(
                "restarting member {name} (restarted so far: {:?}): {e}",
                report.restarted
            )
        })?;
        let (seen, error, ready) = cluster::wait(&a.api, a.cluster_size, a.sync, a.timeout);
        if !ready {
            let seen: Vec<String> = seen
                .iter()
                .map(|m| format!("{} {} {}", m.name, m.role, m.state))
                .collect();
            return Err(format!(
                "after restarting member {name} the cluster did not get a leader and {} \
                 streaming replica(s) within {} s (seen: {}; last error: {})",
                a.cluster_size.saturating_sub(1),
                a.timeout.as_secs(),
                seen.join(", "),
                error.unwrap_or_else(|| "none".into())
            ));
        }
        let now = db::max_connections(&target(a, &member))
            .map_err(|e| format!("after restarting member {name}: {e}"))?;
        if now != wanted {
            return Err(format!(
                "member {name} runs max_connections {now} after its restart, not {wanted}"
            ));
        }
        report.restarted.push(name);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, pending: bool) -> Member {
        Member {
            name: name.into(),
            role: role.into(),
            state: "running".into(),
            host: "10.0.0.1".into(),
            port: 5432,
            timeline: Some(1),
            lag: Some(0),
            pending_restart: pending,
            api: "10.0.0.1:8008".into(),
        }
    }

    #[test]
    fn plan_raises_only_upwards() {
        assert_eq!(plan(Some(100), 100), Plan::Equal);
        assert_eq!(plan(Some(100), 200), Plan::Raise);
        assert_eq!(plan(Some(300), 200), Plan::Lower);
        assert_eq!(plan(None, 100), Plan::Raise);
    }

    #[test]
    fn replicas_restart_before_the_leader() {
        let ms = [
            member("p1", "replica", true),
            member("p2", "leader", true),
            member("p3", "sync_standby", true),
        ];
        let all: Vec<String> = ["p1", "p2", "p3"].map(String::from).to_vec();
        assert_eq!(restart_order(&ms, "p2", &all), ["p1", "p3", "p2"]);
        assert_eq!(
            restart_order(&ms, "p2", &["p2".to_string(), "p3".to_string()]),
            ["p3", "p2"]
        );
        assert!(restart_order(&ms, "p2", &[]).is_empty());
    }

    #[test]
    fn dcs_value_reads_numbers_and_strings() {
        let v = json!({"postgresql": {"parameters": {"max_connections": 330}}});
        assert_eq!(dcs_value(&v), Some(330));
        let v = json!({"postgresql": {"parameters": {"max_connections": "120"}}});
        assert_eq!(dcs_value(&v), Some(120));
        assert_eq!(dcs_value(&json!({"ttl": 30})), None);
    }

    #[test]
    fn api_url_to_host_port() {
        assert_eq!(
            cluster::api_of("http://10.0.0.1:8008/patroni"),
            "10.0.0.1:8008"
        );
        assert_eq!(cluster::api_of("https://10.0.0.1:8008/patroni"), "");
    }
}
