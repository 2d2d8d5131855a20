//! MinIO's topology arithmetic, pure: ellipsis notation, erasure-set size, parity, capacity.
//!
//! MinIO (cmd/endpoint-ellipses.go and minio/pkg ellipses) expands each pool argument such as
//! `http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio`, multiplies the lengths
//! of its ranges into the pool's drive count, and picks the erasure-set size among 2..16:
//! the sizes dividing the drive count, kept only when they are "symmetric" with the range that
//! MinIO checks last — the first range of the argument, the hosts — and of those the largest
//! (fewest sets). This module mirrors that, so the set size it reports is the one MinIO will use.

use thiserror::Error;

/// Erasure-set sizes MinIO supports.
pub const SET_SIZES: std::ops::RangeInclusive<u64> = 2..=16;

/// A list that cannot be written as `prefix{a...b}suffix`, or a topology MinIO refuses.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("is empty")]
    Empty,
    #[error("value {0:?} contains a character MinIO's ellipsis notation reserves ('{{', '}}' or '...') or whitespace")]
    Reserved(String),
    #[error("value {0:?} is listed twice")]
    Duplicate(String),
    #[error("cannot be written in MinIO's ellipsis notation PREFIX{{N...M}}SUFFIX: {0}")]
    NoRange(String),
    #[error("has {drives} drive(s) in all: MinIO's erasure coding needs at least 2")]
    TooFewDrives { drives: u64 },
    #[error("has {drives} drives, which no erasure-set size from 2 to 16 divides")]
    NoSetSize { drives: u64 },
    #[error("has {drives} drives on {hosts} hosts: no erasure-set size from 2 to 16 divides the drives and spreads symmetrically over the hosts")]
    NoSymmetry { drives: u64, hosts: u64 },
}

/// One numeric range of the notation, as MinIO formats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub prefix: String,
    pub start: u64,
    pub end: u64,
    /// The text between the braces: `1...4`, `01...16`.
    pub text: String,
    pub suffix: String,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A list written in the notation: a single literal item, or a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compact {
    Literal(String),
    Range(Range),
}

impl Compact {
    pub fn len(&self) -> u64 {
        match self {
            Compact::Literal(_) => 1,
            Compact::Range(r) => r.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The notation: `minio-{1...4}.chat.z3r0d3v.com`.
    pub fn notation(&self) -> String {
        match self {
            Compact::Literal(s) => s.clone(),
            Compact::Range(r) => format!("{}{{{}}}{}", r.prefix, r.text, r.suffix),
        }
    }
}

/// MinIO's expansion of `{start_text...end_text}` (minio/pkg ellipses `parseEllipsesRange`):
/// zero-padded to the end's width when the start has a leading zero or the end starts with 0.
pub fn expand_range(start_text: &str, end_text: &str) -> Option<Vec<String>> {
    let start: u64 = start_text.parse().ok()?;
    let end: u64 = end_text.parse().ok()?;
    if start > end {
        return None;
    }
    let padded = (start_text.starts_with('0') && start_text.len() > 1) || end_text.starts_with('0');
    Some(
        (start..=end)
            .map(|i| {
                if padded {
                    format!("{i:0width$}", width = end_text.len())
                } else {
                    i.to_string()
                }
            })
            .collect(),
    )
}

fn reserved(s: &str) -> bool {
    s.contains('{') || s.contains('}') || s.contains("...") || s.chars().any(char::is_whitespace)
}

/// Writes `items` in the notation, or says why it cannot.
///
/// Each run of digits of the first item is tried as the varying part; the candidate is
/// accepted only if MinIO's own expansion of it gives back `items` exactly, in order.
pub fn compact(items: &[String]) -> Result<Compact, TopologyError> {
    let first = items.first().ok_or(TopologyError::Empty)?;
    for item in items {
        if reserved(item) || item.is_empty() {
            return Err(TopologyError::Reserved(item.clone()));
        }
    }
    for (i, a) in items.iter().enumerate() {
        if items[..i].contains(a) {
            return Err(TopologyError::Duplicate(a.clone()));
        }
    }
    if items.len() == 1 {
        return Ok(Compact::Literal(first.clone()));
    }
    let last = &items[items.len() - 1];
    let bytes = first.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        let (prefix, start_text, suffix) = (&first[..i], &first[i..j], &first[j..]);
        if let Some(end_text) = last
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            if let Some(seq) = expand_range(start_text, end_text) {
                let expanded: Vec<String> =
                    seq.iter().map(|n| format!("{prefix}{n}{suffix}")).collect();
                if expanded == items {
                    return Ok(Compact::Range(Range {
                        prefix: prefix.to_string(),
                        start: start_text.parse().unwrap_or(0),
                        end: end_text.parse().unwrap_or(0),
                        text: format!("{start_text}...{end_text}"),
                        suffix: suffix.to_string(),
                    }));
                }
            }
        }
        i = j;
    }
    Err(TopologyError::NoRange(format!(
        "the items must differ only in one number counting up by 1 ({} ... {}), in the same \
         zero-padding",
        first, last
    )))
}

/// The erasure-set size MinIO picks for one pool argument whose ranges have `range_lens`
/// lengths, the first being the one MinIO checks symmetry against (the hosts' range, or the
/// drives' when the host is a literal).
pub fn set_size(range_lens: &[u64]) -> Result<u64, TopologyError> {
    let drives: u64 = range_lens.iter().product();
    if drives < 2 {
        return Err(TopologyError::TooFewDrives { drives });
    }
    let candidates: Vec<u64> = SET_SIZES.filter(|s| drives % s == 0).collect();
    if candidates.is_empty() {
        return Err(TopologyError::NoSetSize { drives });
    }
    // possibleSetCountsWithSymmetry: the last pattern MinIO parses decides (the first range).
    let symmetric: Vec<u64> = match range_lens.first() {
        Some(&checked) => candidates
            .iter()
            .copied()
            .filter(|&ss| {
                if checked > ss {
                    checked % ss == 0
                } else {
                    ss % checked == 0
                }
            })
            .collect(),
        None => candidates.clone(),
    };
    if symmetric.is_empty() {
        return Err(TopologyError::NoSymmetry {
            drives,
            hosts: range_lens.first().copied().unwrap_or(1),
        });
    }
    // commonSetDriveCount: the size giving the fewest sets (the largest), ties to the larger.
    let largest = *symmetric.last().unwrap_or(&drives);
    if drives < largest {
        return Ok(drives);
    }
    let mut best = 0;
    let mut prev = drives / symmetric[0];
    for &s in &symmetric {
        if drives % s == 0 && drives / s <= prev {
            prev = drives / s;
            best = s;
        }
    }
    Ok(best)
}

/// MinIO's default STANDARD parity for an erasure set of `set_size` drives.
pub fn default_parity(set_size: u64) -> u64 {
    match set_size {
        0 | 1 => 0,
        2 | 3 => 1,
        4 | 5 => 2,
        6 | 7 => 3,
        _ => 4,
    }
}

/// Usable bytes of a pool: every drive counts as the pool's smallest, minus parity.
pub fn usable_bytes(drives: u64, set_size: u64, parity: u64, drive_bytes: u64) -> u128 {
    if set_size == 0 || parity >= set_size {
        return 0;
    }
    u128::from(drives) * u128::from(drive_bytes) * u128::from(set_size - parity)
        / u128::from(set_size)
}

/// Parses a size such as `4TiB`, `500GB`, `1.5 TB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" => 1024f64,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = number * factor;
    (1.0..1.8e19).contains(&bytes).then_some(bytes as u64)
}

/// A size in binary units for messages: `28.0 TiB`.
pub fn human(bytes: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn compacts_hosts_and_drives() {
        let hosts: Vec<String> = (1..=4)
            .map(|i| format!("minio-{i}.chat.z3r0d3v.com"))
            .collect();
        assert_eq!(
            compact(&hosts).unwrap().notation(),
            "minio-{1...4}.chat.z3r0d3v.com"
        );
        let drives: Vec<String> = (1..=4).map(|i| format!("/mnt/disk{i}/minio")).collect();
        assert_eq!(
            compact(&drives).unwrap().notation(),
            "/mnt/disk{1...4}/minio"
        );
        let padded = strings(&["minio-09", "minio-10", "minio-11"]);
        assert_eq!(compact(&padded).unwrap().notation(), "minio-{09...11}");
        let padded = strings(&["node01", "node02"]);
        assert_eq!(compact(&padded).unwrap().notation(), "node{01...02}");
        // The second number varies, not the first.
        let racks = strings(&["r1-minio-5", "r1-minio-6"]);
        assert_eq!(compact(&racks).unwrap().notation(), "r1-minio-{5...6}");
        // Addresses: the last octet counts up.
        let ips = strings(&["10.20.0.41", "10.20.0.42", "10.20.0.43", "10.20.0.44"]);
        assert_eq!(compact(&ips).unwrap().notation(), "10.20.0.{41...44}");
        let unpadded = strings(&["minio9", "minio10", "minio11"]);
        assert_eq!(compact(&unpadded).unwrap().notation(), "minio{9...11}");
        assert_eq!(
            compact(&strings(&["minio-1"])).unwrap(),
            Compact::Literal("minio-1".into())
        );
    }

    #[test]
    fn refuses_what_minio_cannot_express() {
        for bad in [
            strings(&["minio-1", "minio-3"]),
            strings(&["minio-2", "minio-1"]),
            strings(&["minio-a", "minio-b"]),
            strings(&["minio-1", "minio-02"]),
            strings(&["minio-8", "minio-09", "minio-10"]),
            strings(&["a1", "b2"]),
        ] {
            assert!(
                matches!(compact(&bad), Err(TopologyError::NoRange(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            compact(&strings(&["x", "x"])),
            Err(TopologyError::Duplicate("x".into()))
        );
        assert!(matches!(
            compact(&strings(&["m{1...2}"])),
            Err(TopologyError::Reserved(_))
        ));
    }

    /// MinIO's documented examples and the cases of its own tests.
    #[test]
    fn set_sizes_as_minio_computes_them() {
        // (hosts, drives per host) -> set size
        let table: &[(u64, u64, u64)] = &[
            (4, 4, 16),
            (3, 1, 3),
            (8, 4, 16),
            (4, 1, 4),
            (2, 1, 2),
            (1, 4, 4),
            (16, 1, 16),
            (32, 1, 16),
            (6, 1, 6),
            (12, 1, 12),
            (5, 3, 15),
            (4, 8, 16),
            (4, 16, 16),
            (6, 4, 12),
            (10, 3, 10),
            (64, 1, 16),
            (3, 8, 12),
        ];
        for &(hosts, drives, want) in table {
            let lens: Vec<u64> = if hosts == 1 {
                vec![drives]
            } else if drives == 1 {
                vec![hosts]
            } else {
                vec![hosts, drives]
            };
            assert_eq!(set_size(&lens), Ok(want), "{hosts} x {drives}");
        }
        assert_eq!(
            set_size(&[1]),
            Err(TopologyError::TooFewDrives { drives: 1 })
        );
        assert_eq!(
            set_size(&[17]),
            Err(TopologyError::NoSetSize { drives: 17 })
        );
        // 7 hosts x 2 drives = 14: 2, 7 and 14 divide it; 2 is not symmetric with 7 hosts.
        assert_eq!(set_size(&[7, 2]), Ok(14));
        // 9 hosts x 2 = 18: 2, 3, 6, 9 divide; 2 and 6 are not symmetric with 9 hosts.
        assert_eq!(set_size(&[9, 2]), Ok(9));
        // 11 hosts x 2 = 22: 2 and 11 divide; 2 is not symmetric, 11 is.
        assert_eq!(set_size(&[11, 2]), Ok(11));
        // 17 hosts x 2 = 34: only 2 divides, and 17 % 2 != 0.
        assert_eq!(
            set_size(&[17, 2]),
            Err(TopologyError::NoSymmetry {
                drives: 34,
                hosts: 17
            })
        );
    }

    #[test]
    fn parity_and_capacity() {
        assert_eq!(default_parity(16), 4);
        assert_eq!(default_parity(3), 1);
        assert_eq!(default_parity(5), 2);
        assert_eq!(default_parity(7), 3);
        assert_eq!(default_parity(2), 1);
        // 4 x 4 drives of 1 TiB at EC:4: 16 TiB raw, 12 TiB usable.
        let tib = 1u64 << 40;
        assert_eq!(usable_bytes(16, 16, 4, tib), 12 * u128::from(tib));
        assert_eq!(human(12 * u128::from(tib)), "12.0 TiB");
        assert_eq!(usable_bytes(3, 3, 1, 900), 1800);
        assert_eq!(parse_size("4TiB"), Some(4 * tib));
        assert_eq!(parse_size("500 GB"), Some(500_000_000_000));
        assert_eq!(parse_size("1.5TB"), Some(1_500_000_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("4 tebibytes"), None);
        assert_eq!(parse_size("-1TB"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn expansion_matches_minio() {
        assert_eq!(expand_range("1", "3").unwrap(), strings(&["1", "2", "3"]));
        assert_eq!(
            expand_range("01", "03").unwrap(),
            strings(&["01", "02", "03"])
        );
        assert_eq!(
            expand_range("1", "03").unwrap(),
            strings(&["01", "02", "03"])
        );
        assert_eq!(expand_range("8", "10").unwrap(), strings(&["8", "9", "10"]));
        assert_eq!(expand_range("3", "1"), None);
    }
}
