//! The pure part: pools in, MINIO_VOLUMES and the env file out; the append-only rule.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::erasure::{self, Compact, TopologyError};

/// One pool as given.
#[derive(Debug, Clone, Default)]
pub struct PoolRequest {
    pub hosts: Vec<String>,
    pub drives: Vec<String>,
    pub port: i64,
    pub scheme: String,
    pub drive_size: Option<String>,
}

/// One pool, computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its MINIO_VOLUMES argument.
    pub volumes: String,
    pub hosts: u64,
    pub drives_per_host: u64,
    pub set_size: u64,
    pub sets: u64,
    pub drive_bytes: Option<u64>,
}

impl Pool {
    pub fn drives(&self) -> u64 {
        self.hosts * self.drives_per_host
    }
}

/// The whole layout: pools, the parity every pool uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub pools: Vec<Pool>,
    pub parity: u64,
    /// Whether the parity was given (and must be written to the env file).
    pub parity_given: bool,
}

impl Layout {
    /// Usable bytes of every pool whose drive size is known.
    pub fn usable(&self) -> Vec<Option<u128>> {
        self.pools
            .iter()
            .map(|p| {
                p.drive_bytes
                    .map(|b| erasure::usable_bytes(p.drives(), p.set_size, self.parity, b))
            })
            .collect()
    }
}

/// An invalid option, named with its path (`pools[1].hosts`).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("option '{option}': {reason}")]
pub struct Invalid {
    pub option: String,
    pub reason: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct Invalids(pub Vec<Invalid>);

fn inv(option: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        option: option.into(),
        reason: reason.into(),
    }
}

/// A host name (the rules crate's syntax) or an IPv4 address (IPv6 would need brackets in the
/// URLs MinIO is given).
fn valid_host(h: &str) -> bool {
    h.parse::<std::net::Ipv4Addr>().is_ok() || matrix_ha_rules::names::is_host_name(h)
}

fn valid_drive(d: &str) -> bool {
    d.starts_with('/')
        && d.len() > 1
        && !d.ends_with('/')
        && !d.split('/').any(|c| c == ".." || c == ".")
        && !d
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\' || c == '$' || c == '`')
}

/// Computes every pool and the parity; all problems are reported together.
pub fn layout(pools: &[PoolRequest], parity: Option<i64>) -> Result<Layout, Invalids> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    if pools.is_empty() {
        errs.push(inv("pools", "value [] is empty: give at least one pool"));
    }
    for (i, p) in pools.iter().enumerate() {
        let at = |k: &str| format!("pools[{i}].{k}");
        let mut ok = true;
        for (j, h) in p.hosts.iter().enumerate() {
            if !valid_host(h) {
                errs.push(inv(
                    format!("pools[{i}].hosts[{j}]"),
                    format!("value {h:?} is not a host name or IPv4 address"),
                ));
                ok = false;
            }
        }
        for (j, d) in p.drives.iter().enumerate() {
            if !valid_drive(d) {
                errs.push(inv(
                    format!("pools[{i}].drives[{j}]"),
                    format!(
                        "value {d:?} is not an absolute drive path (no trailing '/', '.', '..', \
                         quotes, '$', '`' or '\\')"
                    ),
                ));
                ok = false;
            }
        }
        if !(1..=65535).contains(&p.port) {
            errs.push(inv(
                at("port"),
                format!("value {} is outside 1 to 65535", p.port),
            ));
            ok = false;
        }
        let drive_bytes = match &p.drive_size {
            None => None,
            Some(s) => {
                match erasure::parse_size(s) {
                    Some(b) => Some(b),
                    None => {
                        errs.push(inv(
                        at("drive_size"),
                        format!("value {s:?} is not a size such as 4TiB, 500GB or a number of bytes"),
                    ));
                        ok = false;
                        None
                    }
                }
            }
        };
        let hosts = match erasure::compact(&p.hosts) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(inv(at("hosts"), e.to_string()));
                None
            }
        };
        let drives = match erasure::compact(&p.drives) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(inv(at("drives"), e.to_string()));
                None
            }
        };
        let (Some(hosts), Some(drives), true) = (hosts, drives, ok) else {
            continue;
        };
        let lens: Vec<u64> = [&hosts, &drives]
            .iter()
            .filter(|c| matches!(c, Compact::Range(_)))
            .map(|c| c.len())
            .collect();
        let set_size = match erasure::set_size(if lens.is_empty() { &[1] } else { &lens }) {
            Ok(s) => s,
            Err(e @ TopologyError::NoSymmetry { .. })
            | Err(e @ TopologyError::NoSetSize { .. }) => {
                errs.push(inv(format!("pools[{i}]"), e.to_string()));
                continue;
            }
            Err(e) => {
                errs.push(inv(format!("pools[{i}]"), e.to_string()));
                continue;
            }
        };
        let volumes = format!(
            "{}://{}:{}{}",
            p.scheme,
            hosts.notation(),
            p.port,
            drives.notation()
        );
        let drives_n = hosts.len() * drives.len();
        out.push(Pool {
            volumes,
            hosts: hosts.len(),
            drives_per_host: drives.len(),
            set_size,
            sets: drives_n / set_size,
            drive_bytes,
        });
    }
    // The same endpoint in two pools would be one drive counted twice.
    for (i, a) in pools.iter().enumerate() {
        for (j, b) in pools.iter().enumerate().skip(i + 1) {
            let shared: Vec<&String> = a
                .hosts
                .iter()
                .filter(|h| b.hosts.contains(h))
                .filter(|_| a.port == b.port && a.drives.iter().any(|d| b.drives.contains(d)))
                .collect();
            if let Some(h) = shared.first() {
                errs.push(inv(
                    format!("pools[{j}].hosts"),
                    format!(
                        "value {h:?} has a drive of pools[{i}] too: a drive belongs to one pool"
                    ),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(Invalids(errs));
    }
    let first_set = out.first().map(|p| p.set_size).unwrap_or(0);
    let (parity, given) = match parity {
        Some(p) => (p, true),
        None => (erasure::default_parity(first_set) as i64, false),
    };
    if parity < 0 {
        return Err(Invalids(vec![inv(
            "storage_class_parity",
            format!("value {parity} is negative"),
        )]));
    }
    let parity = parity as u64;
    for (i, p) in out.iter().enumerate() {
        if parity > p.set_size / 2 {
            errs.push(inv(
                "storage_class_parity",
                format!(
                    "value {parity} is more than half of pools[{i}]'s erasure set of {} drives \
                     (at most {}): MinIO refuses to start with it",
                    p.set_size,
                    p.set_size / 2
                ),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(Invalids(errs));
    }
    Ok(Layout {
        pools: out,
        parity,
        parity_given: given,
    })
}

/// What the append-only rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Pools already in the file (kept).
    pub existing: usize,
    /// Pools this run adds.
    pub added: usize,
}

/// Refusal of a run that would change or remove a pool.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("option 'pools[{index}]': the env file already has pool {index} as {existing:?}, the task gives {given:?}. A pool can never be changed: MinIO places every object on the erasure sets of the pool it was written to, by the layout of MINIO_VOLUMES, so a changed pool strands the data already on it (MinIO refuses to start or cannot find the objects). Give the existing pools exactly as they are and append new ones at the end")]
    Changed {
        index: usize,
        existing: String,
        given: String,
    },
    #[error("option 'pools': the env file has {existing} pool(s) and the task gives {given}: removing pool(s) {removed:?} would strand their data. Decommission a pool with `mc admin decommission` first, then remove it by hand")]
    Removed {
        existing: usize,
        given: usize,
        removed: Vec<String>,
    },
}

/// Checks that `given` keeps every pool of `existing` in place; returns what is appended.
pub fn append_only(existing: &[String], given: &[String]) -> Result<Appended, AppendError> {
    for (index, (e, g)) in existing.iter().zip(given).enumerate() {
        if e != g {
            return Err(AppendError::Changed {
                index,
                existing: e.clone(),
                given: g.clone(),
            });
        }
    }
    if given.len() < existing.len() {
        return Err(AppendError::Removed {
            existing: existing.len(),
            given: given.len(),
            removed: existing[given.len()..].to_vec(),
        });
    }
    Ok(Appended {
        existing: existing.len(),
        added: given.len() - existing.len(),
    })
}

/// Key/value lines of an env file (`KEY=VALUE`, `KEY="VALUE"`, comments skipped).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

/// The pools of MINIO_VOLUMES in an env file's text.
pub fn existing_pools(text: &str) -> Vec<String> {
    parse_env(text)
        .get("MINIO_VOLUMES")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

pub const HEADER: &str = "# Managed by z3r0d3v.matrix_ha.minio_pool: this whole file is rewritten on every change.\n# Pools in MINIO_VOLUMES are only ever appended: never edit or remove one here.\n";

/// The whole env file.
pub fn render(
    layout: &Layout,
    root_user: &str,
    root_password: &str,
    extra: &BTreeMap<String, String>,
) -> String {
    let volumes: Vec<&str> = layout.pools.iter().map(|p| p.volumes.as_str()).collect();
    let mut out = String::from(HEADER);
    out.push_str(&format!("MINIO_VOLUMES=\"{}\"\n", volumes.join(" ")));
    out.push_str(&format!("MINIO_ROOT_USER=\"{root_user}\"\n"));
    out.push_str(&format!("MINIO_ROOT_PASSWORD=\"{root_password}\"\n"));
    if layout.parity_given {
        out.push_str(&format!(
            "MINIO_STORAGE_CLASS_STANDARD=\"EC:{}\"\n",
            layout.parity
        ));
    }
    for (k, v) in extra {
        out.push_str(&format!("{k}=\"{v}\"\n"));
    }
    out
}

/// The env file with the root password's value hidden, for diffs.
pub fn scrub_password(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("MINIO_ROOT_PASSWORD=") {
                "MINIO_ROOT_PASSWORD=\"********\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(hosts: std::ops::RangeInclusive<u32>, drives: u32, size: Option<&str>) -> PoolRequest {
        PoolRequest {
            hosts: hosts
                .map(|i| format!("minio-{i}.chat.z3r0d3v.com"))
                .collect(),
            drives: (1..=drives)
                .map(|i| format!("/mnt/disk{i}/minio"))
                .collect(),
            port: 9000,
            scheme: "http".into(),
            drive_size: size.map(str::to_string),
        }
    }

    #[test]
    fn the_design_pool() {
        let l = layout(&[pool(1..=4, 4, Some("4TiB"))], None).unwrap();
        let p = &l.pools[0];
        assert_eq!(
            p.volumes,
            "http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio"
        );
        assert_eq!((p.set_size, p.sets, l.parity), (16, 1, 4));
        assert_eq!(l.usable(), vec![Some(48u128 << 40)]);
    }

    #[test]
    fn documented_examples() {
        // (hosts, drives) -> (set size, sets, default parity)
        for (hosts, drives, want) in [
            (4, 4, (16, 1, 4)),
            (3, 1, (3, 1, 1)),
            (8, 4, (16, 2, 4)),
            (4, 1, (4, 1, 2)),
            (2, 2, (4, 1, 2)),
            (6, 1, (6, 1, 3)),
            (16, 1, (16, 1, 4)),
            (8, 8, (16, 4, 4)),
        ] {
            let l = layout(&[pool(1..=hosts, drives, None)], None).unwrap();
            let p = &l.pools[0];
            assert_eq!((p.set_size, p.sets, l.parity), want, "{hosts} x {drives}");
        }
    }

    #[test]
    fn a_second_pool_uses_the_first_pools_parity() {
        let l = layout(
            &[pool(1..=4, 4, Some("1TiB")), pool(5..=12, 1, Some("2TiB"))],
            None,
        )
        .unwrap();
        assert_eq!(l.parity, 4);
        assert_eq!(l.pools[1].set_size, 8);
        // 16 x 1 TiB at 12/16 plus 8 x 2 TiB at 4/8.
        assert_eq!(l.usable(), vec![Some(12u128 << 40), Some(8u128 << 40)]);
        // 4 at parity 4 is more than half: the same refusal MinIO gives at start.
        let l = layout(&[pool(1..=4, 4, None), pool(5..=7, 1, None)], None);
        assert!(l
            .unwrap_err()
            .to_string()
            .contains("option 'storage_class_parity': value 4 is more than half of pools[1]'s erasure set of 3 drives"));
    }

    #[test]
    fn parity_over_half_is_refused() {
        let e = layout(&[pool(1..=4, 1, None)], Some(3)).unwrap_err();
        assert!(e.to_string().contains("value 3 is more than half"));
        assert!(layout(&[pool(1..=4, 1, None)], Some(2)).is_ok());
        assert!(layout(&[pool(1..=4, 1, None)], Some(0)).is_ok());
    }

    #[test]
    fn append_only_rule() {
        let a = "http://minio-{1...4}:9000/mnt/disk{1...4}";
        let b = "http://minio-{5...8}:9000/mnt/disk{1...4}";
        let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            append_only(&v(&[a]), &v(&[a, b])),
            Ok(Appended {
                existing: 1,
                added: 1
            })
        );
        assert_eq!(
            append_only(&[], &v(&[a])),
            Ok(Appended {
                existing: 0,
                added: 1
            })
        );
        let changed = append_only(&v(&[a]), &v(&[b])).unwrap_err();
        assert!(changed.to_string().contains("strands the data"));
        let removed = append_only(&v(&[a, b]), &v(&[a])).unwrap_err();
        assert!(removed.to_string().contains("would strand their data"));
        // Reordering is a change too.
        assert!(append_only(&v(&[a, b]), &v(&[b, a])).is_err());
    }

    #[test]
    fn env_file_round_trip() {
        let l = layout(&[pool(1..=4, 4, None)], Some(2)).unwrap();
        let mut extra = BTreeMap::new();
        extra.insert(
            "MINIO_OPTS".to_string(),
            "--console-address :9001".to_string(),
        );
        let text = render(&l, "admin", "secret-pass", &extra);
        assert!(text.contains("MINIO_STORAGE_CLASS_STANDARD=\"EC:2\"\n"));
        assert_eq!(existing_pools(&text), vec![l.pools[0].volumes.clone()]);
        assert_eq!(parse_env(&text)["MINIO_OPTS"], "--console-address :9001");
        let shown = scrub_password(&text);
        assert!(
            !shown.contains("secret-pass") && shown.contains("MINIO_ROOT_PASSWORD=\"********\"")
        );
    }

    #[test]
    fn hosts_that_are_not_a_range_are_refused() {
        let mut p = pool(1..=4, 4, None);
        p.hosts[2] = "minio-7.chat.z3r0d3v.com".into();
        let e = layout(&[p], None).unwrap_err().to_string();
        assert!(
            e.contains("option 'pools[0].hosts': cannot be written in MinIO's ellipsis notation"),
            "{e}"
        );
    }
}
