//! PostgreSQL memory and worker settings sized from the host (a pure function).
//!
//! The rules, for a host with `M` MB of RAM and `C` CPUs and `max_connections` `N`:
//!
//! | parameter | rule |
//! |---|---|
//! | `shared_buffers` | 25 % of M |
//! | `effective_cache_size` | 75 % of M |
//! | `maintenance_work_mem` | M / 16, between 64 MB and 2048 MB |
//! | `work_mem` | (M − shared_buffers) / (3 × N), between 4 MB and 256 MB |
//! | `max_worker_processes` | max(8, C) |
//! | `max_parallel_workers` | C |
//! | `max_parallel_workers_per_gather` | C / 2, between 1 and 4 |
//! | `max_parallel_maintenance_workers` | C / 2, between 1 and 4 |
//! | `huge_pages` | `try` |
//! | `wal_keep_size` | 1024 MB (a replica that lags behind a restart can still catch up) |
//! | `max_wal_senders`, `max_replication_slots` | 10 |
//! | `checkpoint_completion_target` | 0.9; `random_page_cost` 1.1 (NVMe, as the design sizes) |
//!
//! `work_mem` is per sort or hash node per connection, so it is divided over three per
//! connection at the full `max_connections`; every value can be overridden through the
//! module's `parameters` option.

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

/// What the sizing reads from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub memory_mb: u64,
    pub cpus: u64,
}

fn mb(value: u64) -> Yaml {
    Yaml::from(format!("{value}MB"))
}

/// The sized parameters (before the user's overrides).
pub fn parameters(host: Host, max_connections: i64) -> BTreeMap<String, Yaml> {
    let m = host.memory_mb.max(256);
    let c = host.cpus.max(1);
    let n = max_connections.max(1) as u64;
    let shared_buffers = m / 4;
    let half_cpus = (c / 2).clamp(1, 4);
    let mut p = BTreeMap::new();
    p.insert("shared_buffers".to_string(), mb(shared_buffers));
    p.insert("effective_cache_size".to_string(), mb(m * 3 / 4));
    p.insert(
        "maintenance_work_mem".to_string(),
        mb((m / 16).clamp(64, 2048)),
    );
    p.insert(
        "work_mem".to_string(),
        mb(((m - shared_buffers) / (3 * n)).clamp(4, 256)),
    );
    p.insert("max_worker_processes".to_string(), Yaml::from(c.max(8)));
    p.insert("max_parallel_workers".to_string(), Yaml::from(c));
    p.insert(
        "max_parallel_workers_per_gather".to_string(),
        Yaml::from(half_cpus),
    );
    p.insert(
        "max_parallel_maintenance_workers".to_string(),
        Yaml::from(half_cpus),
    );
    p.insert("huge_pages".to_string(), Yaml::from("try"));
    p.insert("wal_keep_size".to_string(), mb(1024));
    p.insert("max_wal_senders".to_string(), Yaml::from(10));
    p.insert("max_replication_slots".to_string(), Yaml::from(10));
    p.insert("checkpoint_completion_target".to_string(), Yaml::from(0.9));
    p.insert("random_page_cost".to_string(), Yaml::from(1.1));
    p.insert(
        "password_encryption".to_string(),
        Yaml::from("scram-sha-256"),
    );
    p
}

/// RAM in MB from the text of `/proc/meminfo` (`MemTotal:` in kB).
pub fn memory_mb_from_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_small_node() {
        // Small scale: 8 vCPU, 32 GB, max_connections 330 (the inventory's figure).
        let p = parameters(
            Host {
                memory_mb: 32768,
                cpus: 8,
            },
            330,
        );
        assert_eq!(p["shared_buffers"], "8192MB");
        assert_eq!(p["effective_cache_size"], "24576MB");
        assert_eq!(p["maintenance_work_mem"], "2048MB");
        assert_eq!(p["work_mem"], "24MB");
        assert_eq!(p["max_worker_processes"], 8);
        assert_eq!(p["max_parallel_workers_per_gather"], 4);
    }

    #[test]
    fn tiny_host_gets_floors() {
        let p = parameters(
            Host {
                memory_mb: 1024,
                cpus: 1,
            },
            100,
        );
        assert_eq!(p["shared_buffers"], "256MB");
        assert_eq!(p["maintenance_work_mem"], "64MB");
        assert_eq!(p["work_mem"], "4MB");
        assert_eq!(p["max_worker_processes"], 8);
        assert_eq!(p["max_parallel_workers"], 1);
        assert_eq!(p["max_parallel_workers_per_gather"], 1);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       24684088 kB\nMemFree:        22183424 kB\n";
        assert_eq!(memory_mb_from_meminfo(text), Some(24105));
        assert_eq!(memory_mb_from_meminfo("garbage"), None);
    }
}
