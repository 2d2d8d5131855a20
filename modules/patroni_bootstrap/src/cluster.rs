//! Patroni's REST API: the members as `/cluster` lists them, and a bounded wait for a leader
//! and its streaming replicas.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

/// One member as `/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub name: String,
    pub role: String,
    pub state: String,
    pub host: String,
    pub port: u64,
    pub timeline: Option<u64>,
    /// Replay lag in bytes; `None` for the leader or when Patroni says `unknown`.
    pub lag: Option<u64>,
    /// Patroni's `pending_restart`: a parameter changed that only a restart applies.
    #[serde(skip)]
    pub pending_restart: bool,
    /// The member's REST API (`api_url` without its path), where it is restarted.
    #[serde(skip)]
    pub api: String,
}

/// Reads the `members` of a `/cluster` answer.
pub fn members(body: &Value) -> Vec<Member> {
    let Some(list) = body.get("members").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|m| {
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Member {
                name: text("name"),
                role: text("role"),
                state: text("state"),
                host: text("host"),
                port: m.get("port").and_then(Value::as_u64).unwrap_or(0),
                timeline: m.get("timeline").and_then(Value::as_u64),
                lag: m.get("lag").and_then(Value::as_u64),
                pending_restart: m.get("pending_restart").and_then(Value::as_bool) == Some(true),
                api: api_of(&text("api_url")),
            }
        })
        .collect()
}

/// `http://HOST:PORT/patroni` → `HOST:PORT` (Patroni's `api_url`); empty when not plain HTTP.
pub fn api_of(url: &str) -> String {
    url.strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// The leader, when exactly one member leads and runs.
pub fn leader(members: &[Member]) -> Option<&Member> {
    let mut leaders = members
        .iter()
        .filter(|m| m.role == "leader" || m.role == "standby_leader");
    match (leaders.next(), leaders.next()) {
        (Some(l), None) if l.state == "running" => Some(l),
        _ => None,
    }
}

/// Replicas that stream from the leader: running (Patroni 3.0) or streaming (3.1 and later),
/// on the leader's timeline, with a known lag.
pub fn streaming_replicas<'a>(members: &'a [Member], leader: &Member) -> Vec<&'a Member> {
    members
        .iter()
        .filter(|m| m.role == "replica" || m.role == "sync_standby")
        .filter(|m| m.state == "running" || m.state == "streaming")
        .filter(|m| m.lag.is_some() && m.timeline == leader.timeline)
        .collect()
}

/// Whether the cluster has a leader and `size - 1` streaming replicas, one of them the
/// synchronous standby when `sync` (synchronous mode) and there is a replica at all.
pub fn ready(members: &[Member], size: usize, sync: bool) -> bool {
    leader(members).is_some_and(|l| {
        let replicas = streaming_replicas(members, l);
        replicas.len() + 1 >= size
            && (!sync || size < 2 || replicas.iter().any(|m| m.role == "sync_standby"))
    })
}

/// GET `http://HOST:PORT/cluster`.
pub fn fetch(api: &str, timeout: Duration) -> Result<Vec<Member>, String> {
    let url = format!("http://{api}/cluster");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let body: Value = serde_json::from_str(&text)
        .map_err(|e| format!("GET {url}: the answer is not JSON: {e}"))?;
    Ok(members(&body))
}

/// Polls `/cluster` once a second until [`ready`] or `timeout`; returns the last members seen
/// and whether the cluster became ready.
pub fn wait(
    api: &str,
    size: usize,
    sync: bool,
    timeout: Duration,
) -> (Vec<Member>, Option<String>, bool) {
    let start = Instant::now();
    let mut last = Vec::new();
    let mut last_error = None;
    // Bounded twice: by the deadline and by the number of polls.
    for _ in 0..=timeout.as_secs().saturating_mul(2) {
        match fetch(api, Duration::from_secs(3)) {
            Ok(m) => {
                last_error = None;
                if ready(&m, size, sync) {
                    return (m, None, true);
                }
                last = m;
            }
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (last, last_error, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(replica_state: &str, lag: Value) -> Value {
        json!({"scope": "chat", "members": [
            {"name": "p1", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432, "timeline": 1},
            {"name": "p2", "role": "sync_standby", "state": replica_state, "host": "10.0.0.2", "port": 5432, "timeline": 1, "lag": 0},
            {"name": "p3", "role": "replica", "state": "running", "host": "10.0.0.3", "port": 5432, "timeline": 1, "lag": lag}
        ]})
    }

    #[test]
    fn ready_needs_a_leader_and_replicas_with_lag() {
        assert!(ready(&members(&body("running", json!(0))), 3, true));
        assert!(ready(&members(&body("streaming", json!(16))), 3, true));
        assert!(!ready(&members(&body("starting", json!(0))), 3, false));
        assert!(!ready(
            &members(&body("running", json!("unknown"))),
            3,
            false
        ));
        assert!(ready(&members(&body("running", json!("unknown"))), 2, true));
        assert!(!ready(&members(&json!({"members": []})), 1, false));
        let mut no_sync = body("running", json!(0));
        no_sync["members"][1]["role"] = json!("replica");
        assert!(!ready(&members(&no_sync), 3, true));
        assert!(ready(&members(&no_sync), 3, false));
        let m = members(&body("running", json!(0)));
        assert_eq!(leader(&m).map(|l| l.name.as_str()), Some("p1"));
    }

    #[test]
    fn two_leaders_is_no_leader() {
        let mut b = body("running", json!(0));
        b["members"][1]["role"] = json!("leader");
        assert!(leader(&members(&b)).is_none());
    }
}
