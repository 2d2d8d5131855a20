//! The pure part of etc_hosts: from the current file and the wanted entries to the new file.
//!
//! No I/O here: [`plan`] takes bytes and returns bytes, so every rule is unit tested.
//!
//! Rules:
//! - The module's lines live in one block between `# BEGIN z3r0d3v.matrix_ha.etc_hosts MARKER`
//!   and `# END …` lines. Every other line is kept byte for byte, except the one case below.
//! - The block is rewritten whole from `entries`, so a name that left the list leaves the file.
//!   Entries with the same address are merged into one line; a name given twice is kept once.
//! - A name has at most one address per family (IPv4, IPv6).
//! - Debian's `127.0.1.1 HOSTNAME` line: when the block gives one of its names a real address,
//!   the line is commented out with a prefix naming the block; when no name of it is mapped by
//!   the block any more (or the block is removed), the prefix is taken off again, restoring the
//!   original line exactly.
//! - A name that an active line outside the block maps to another address gets a warning:
//!   resolvers return the first matching line, which may not be ours.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

/// The address Debian gives the machine's own host name when it has no permanent address.
const DEBIAN_HOSTNAME_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);

/// One wanted line: an address and its names, as given in the `entries` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ip: String,
    pub names: Vec<String>,
}

/// What the block should hold: `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub marker: String,
    pub entries: Option<Vec<Entry>>,
}

/// The new file and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub content: Vec<u8>,
    /// Lines of the block, after merging.
    pub lines: usize,
    /// 1-based numbers (in the new file) of 127.0.1.1 lines this run commented out.
    pub disabled: Vec<usize>,
    /// 1-based numbers (in the new file) of lines this run restored.
    pub restored: Vec<usize>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HostsError {
    #[error("option 'entries[{index}].ip': value \"{value}\" is not an IPv4 or IPv6 address")]
    BadAddress { index: usize, value: String },
    #[error(
        "option 'entries[{index}].ip': value \"{value}\" has a zone index; /etc/hosts cannot \
         hold one"
    )]
    ZoneIndex { index: usize, value: String },
    #[error("option 'entries[{index}].names': the list is empty; give at least one host name")]
    NoNames { index: usize },
    #[error(
        "option 'entries[{index}].names[{pos}]': value \"{value}\" is not a valid host name: {why}"
    )]
    BadName {
        index: usize,
        pos: usize,
        value: String,
        why: &'static str,
    },
    #[error(
        "option 'entries': name \"{name}\" is given two {family} addresses, {first} \
         (entries[{first_index}]) and {second} (entries[{second_index}]); a name has at most \
         one address per family"
    )]
    TwoAddresses {
        name: String,
        family: &'static str,
        first: String,
        first_index: usize,
        second: String,
        second_index: usize,
    },
    #[error(
        "option 'marker': {} must be 1 to 64 printable characters without '#'",
        matrix_ha_runtime::text::shown(.0)
    )]
    BadMarker(String),
    #[error(
        "line {line}: '{begin}' has no matching '{end}' after it; the file was left as it is: \
         remove or complete the block by hand"
    )]
    Unterminated {
        line: usize,
        begin: String,
        end: String,
    },
    #[error(
        "line {line}: '{end}' has no matching '{begin}' before it; the file was left as it is: \
         remove it by hand"
    )]
    StrayEnd {
        line: usize,
        begin: String,
        end: String,
    },
    #[error(
        "lines {first} and {second}: the block '{begin}' appears twice; the file was left as it \
         is: keep one block by hand"
    )]
    DuplicateBlock {
        first: usize,
        second: usize,
        begin: String,
    },
}

/// Checks one host name against RFC 1123 (an all-digit last label refused, RFC 3696): the
/// rules crate's syntax, shared with the inventory and the other modules.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    matrix_ha_rules::names::check_host_name(name).map_err(|e| e.reason())
}

/// A validated block line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    ip: IpAddr,
    names: Vec<String>,
}

/// Validates the entries, merges those with the same address, and checks one address per
/// family per name. Returns the block's lines in the order the addresses first appear.
fn block_lines(entries: &[Entry]) -> Result<Vec<Line>, HostsError> {
    let mut lines: Vec<Line> = Vec::new();
    // lower-cased name -> (is_ipv6) -> (address, entry index)
    let mut owner: HashMap<(String, bool), (IpAddr, usize)> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let text = entry.ip.trim();
        if text.contains('%') {
            return Err(HostsError::ZoneIndex {
                index,
                value: entry.ip.clone(),
            });
        }
        let ip: IpAddr = text.parse().map_err(|_| HostsError::BadAddress {
            index,
            value: entry.ip.clone(),
        })?;
        if entry.names.is_empty() {
            return Err(HostsError::NoNames { index });
        }
        let at = match lines.iter().position(|l| l.ip == ip) {
            Some(at) => at,
            None => {
                lines.push(Line {
                    ip,
                    names: Vec::new(),
                });
                lines.len() - 1
            }
        };
        for (pos, name) in entry.names.iter().enumerate() {
            check_name(name).map_err(|why| HostsError::BadName {
                index,
                pos,
                value: name.clone(),
                why,
            })?;
            let key = (name.to_ascii_lowercase(), ip.is_ipv6());
            match owner.get(&key) {
                Some((first, first_index)) if *first != ip => {
                    return Err(HostsError::TwoAddresses {
                        name: name.clone(),
                        family: if ip.is_ipv6() { "IPv6" } else { "IPv4" },
                        first: first.to_string(),
                        first_index: *first_index,
                        second: ip.to_string(),
                        second_index: index,
                    });
                }
                Some(_) => {} // same name, same address: already on the line
                None => {
                    owner.insert(key, (ip, index));
                    lines[at].names.push(name.clone());
                }
            }
        }
    }
    Ok(lines)
}

fn check_marker(marker: &str) -> Result<(), HostsError> {
    let ok = !marker.trim().is_empty()
        && marker.len() <= 64
        && !marker.contains('#')
        && matrix_ha_runtime::text::problem(marker, matrix_ha_runtime::text::Syntax::Line)
            .is_none();
    if ok {
        Ok(())
    } else {
        Err(HostsError::BadMarker(marker.to_string()))
    }
}

fn begin_line(marker: &str) -> String {
    format!("# BEGIN z3r0d3v.matrix_ha.etc_hosts {marker}")
}

fn end_line(marker: &str) -> String {
    format!("# END z3r0d3v.matrix_ha.etc_hosts {marker}")
}

fn disabled_prefix(marker: &str) -> String {
    format!("# disabled by z3r0d3v.matrix_ha.etc_hosts {marker}: ")
}

/// A line with trailing white space (and a CR) removed, for marker comparison.
fn trimmed(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &line[..end]
}

/// An active hosts line's address and names (comment stripped); `None` for blank lines,
/// comments and lines whose first field is not an address.
fn parse_active(line: &[u8]) -> Option<(IpAddr, Vec<String>)> {
    let text = String::from_utf8_lossy(line);
    let data = text.split('#').next().unwrap_or_default();
    let mut fields = data.split_ascii_whitespace();
    let ip = fields.next()?.parse().ok()?;
    Some((ip, fields.map(str::to_string).collect()))
}

/// Where the block sits in the current file: indices of its BEGIN and END lines.
fn find_block(lines: &[&[u8]], marker: &str) -> Result<Option<(usize, usize)>, HostsError> {
    let (begin, end) = (begin_line(marker), end_line(marker));
    let mut found: Option<(usize, usize)> = None;
    let mut open: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        let t = trimmed(line);
        if t == begin.as_bytes() {
            if let Some(start) = open {
                return Err(HostsError::Unterminated {
                    line: start + 1,
                    begin,
                    end,
                });
            }
            if let Some((first, _)) = found {
                return Err(HostsError::DuplicateBlock {
                    first: first + 1,
                    second: i + 1,
                    begin,
                });
            }
            open = Some(i);
        } else if t == end.as_bytes() {
            match open.take() {
                Some(start) => found = Some((start, i)),
                None => {
                    return Err(HostsError::StrayEnd {
                        line: i + 1,
                        begin,
                        end,
                    })
                }
            }
        }
    }
    if let Some(start) = open {
        return Err(HostsError::Unterminated {
            line: start + 1,
            begin,
            end,
        });
    }
    Ok(found)
}

/// Checks the request alone, before any file is read.
pub fn validate(request: &Request) -> Result<(), HostsError> {
    check_marker(&request.marker)?;
    block_lines(request.entries.as_deref().unwrap_or_default()).map(|_| ())
}

/// Computes the new file from the current one.
pub fn plan(current: &[u8], request: &Request) -> Result<Plan, HostsError> {
    check_marker(&request.marker)?;
    let block = block_lines(request.entries.as_deref().unwrap_or_default())?;
    // name (lower case) -> addresses the block gives it
    let mut mapped: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in &block {
        for name in &line.names {
            mapped
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(line.ip);
        }
    }
    let maps_off_loopback = |name: &str| {
        mapped
            .get(&name.to_ascii_lowercase())
            .is_some_and(|ips| ips.iter().any(|ip| !ip.is_loopback()))
    };

    let ends_with_newline = current.last() == Some(&b'\n');
    let body = if ends_with_newline {
        &current[..current.len() - 1]
    } else {
        current
    };
    let old_lines: Vec<&[u8]> = if current.is_empty() {
        Vec::new()
    } else {
        body.split(|b| *b == b'\n').collect()
    };
    let position = find_block(&old_lines, &request.marker)?;

    let prefix = disabled_prefix(&request.marker);
    let debian = IpAddr::V4(DEBIAN_HOSTNAME_ADDRESS);
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(old_lines.len() + block.len() + 2);
    let mut disabled = Vec::new();
    let mut restored = Vec::new();
    let mut warnings = Vec::new();
    let mut block_at: Option<usize> = None;

    for (i, line) in old_lines.iter().enumerate() {
        if let Some((start, end)) = position {
            if i == start {
                block_at = Some(out.len());
            }
            if (start..=end).contains(&i) {
                continue;
            }
        }
        if let Some(original) = line.strip_prefix(prefix.as_bytes()) {
            let still_mapped = parse_active(original)
                .is_some_and(|(_, names)| names.iter().any(|n| maps_off_loopback(n)));
            if still_mapped {
                out.push(line.to_vec());
            } else {
                out.push(original.to_vec());
                restored.push(out.len());
            }
            continue;
        }
        match parse_active(line) {
            Some((ip, names)) if ip == debian && names.iter().any(|n| maps_off_loopback(n)) => {
                let kept: Vec<&String> = names
                    .iter()
                    .filter(|n| !mapped.contains_key(&n.to_ascii_lowercase()))
                    .collect();
                if !kept.is_empty() {
                    warnings.push(format!(
                        "line {}: the {DEBIAN_HOSTNAME_ADDRESS} line was commented out because \
                         the block maps its host name; its other names ({}) no longer resolve \
                         through it",
                        i + 1,
                        kept.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let mut commented = prefix.as_bytes().to_vec();
                commented.extend_from_slice(line);
                out.push(commented);
                disabled.push(out.len());
            }
            Some((ip, names)) => {
                for name in &names {
                    let Some(ours) = mapped.get(&name.to_ascii_lowercase()) else {
                        continue;
                    };
                    let same_family: Vec<&IpAddr> = ours
                        .iter()
                        .filter(|o| o.is_ipv6() == ip.is_ipv6())
                        .collect();
                    if !same_family.is_empty() && !same_family.contains(&&ip) {
                        warnings.push(format!(
                            "line {}: '{name}' is also mapped to {ip} outside the managed block; \
                             lookups return the first matching line",
                            i + 1
                        ));
                    }
                }
                out.push(line.to_vec());
            }
            None => out.push(line.to_vec()),
        }
    }

    if !block.is_empty() {
        let mut lines = vec![begin_line(&request.marker).into_bytes()];
        lines.extend(
            block
                .iter()
                .map(|l| format!("{}\t{}", l.ip, l.names.join(" ")).into_bytes()),
        );
        lines.push(end_line(&request.marker).into_bytes());
        let at = block_at.unwrap_or(out.len());
        out.splice(at..at, lines);
        // Numbers after the block's place shift by the block's length.
        let shift = block.len() + 2;
        for n in disabled.iter_mut().chain(restored.iter_mut()) {
            if *n > at {
                *n += shift;
            }
        }
    }

    // A file that ended with a newline still does; an appended block always ends with one.
    let appended = position.is_none() && !block.is_empty();
    let mut content = out.join(&b'\n');
    if !out.is_empty() && (ends_with_newline || appended) {
        content.push(b'\n');
    }
    Ok(Plan {
        content,
        lines: block.len(),
        disabled,
        restored,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: &str, names: &[&str]) -> Entry {
        Entry {
            ip: ip.to_string(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn present(entries: Vec<Entry>) -> Request {
        Request {
            marker: "intranet".into(),
            entries: Some(entries),
        }
    }

    fn absent() -> Request {
        Request {
            marker: "intranet".into(),
            entries: None,
        }
    }

    fn text(plan: &Plan) -> String {
        String::from_utf8(plan.content.clone()).unwrap()
    }

    const DEBIAN: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";

    #[test]
    fn appends_a_block_and_keeps_everything_else() {
        let p = plan(
            b"127.0.0.1 localhost\n# cloud-init header\n",
            &present(vec![entry(
                "10.20.0.31",
                &["patroni-1.chat.z3r0d3v.com", "patroni-1"],
            )]),
        )
        .unwrap();
        assert_eq!(
            text(&p),
            "127.0.0.1 localhost\n# cloud-init header\n\
             # BEGIN z3r0d3v.matrix_ha.etc_hosts intranet\n\
             10.20.0.31\tpatroni-1.chat.z3r0d3v.com patroni-1\n\
             # END z3r0d3v.matrix_ha.etc_hosts intranet\n"
        );
        assert_eq!(p.lines, 1);
    }

    #[test]
    fn is_idempotent_and_replaces_the_block_in_place() {
        let first = plan(
            DEBIAN.as_bytes(),
            &present(vec![entry("10.20.0.10", &["chat.z3r0d3v.com"])]),
        )
        .unwrap();
        let again = plan(
            &first.content,
            &present(vec![entry("10.20.0.10", &["chat.z3r0d3v.com"])]),
        )
        .unwrap();
        assert_eq!(first.content, again.content);
        // Something after the block stays after it.
        let mut with_tail = first.content.clone();
        with_tail.extend_from_slice(b"192.0.2.9 later\n");
        let changed = plan(
            &with_tail,
            &present(vec![entry("10.20.0.11", &["chat.z3r0d3v.com"])]),
        )
        .unwrap();
        let t = text(&changed);
        assert!(
            t.ends_with("# END z3r0d3v.matrix_ha.etc_hosts intranet\n192.0.2.9 later\n"),
            "{t}"
        );
        assert!(!t.contains("10.20.0.10"));
    }

    #[test]
    fn names_that_left_the_list_leave_the_file() {
        let two = plan(
            b"",
            &present(vec![entry("10.0.0.1", &["a"]), entry("10.0.0.2", &["b"])]),
        )
        .unwrap();
        let one = plan(&two.content, &present(vec![entry("10.0.0.1", &["a"])])).unwrap();
        assert!(!text(&one).contains("10.0.0.2"));
        assert!(!text(&one).contains("\tb"));
    }

    #[test]
    fn absent_and_empty_remove_the_block_exactly() {
        let original = "127.0.0.1 localhost\n::1 localhost\n";
        let with = plan(
            original.as_bytes(),
            &present(vec![entry("10.0.0.1", &["a"])]),
        )
        .unwrap();
        assert_eq!(text(&plan(&with.content, &absent()).unwrap()), original);
        assert_eq!(
            text(&plan(&with.content, &present(vec![])).unwrap()),
            original
        );
        assert_eq!(plan(b"", &absent()).unwrap().content, b"");
    }

    #[test]
    fn merges_same_address_and_duplicate_names() {
        let p = plan(
            b"",
            &present(vec![
                entry("10.0.0.1", &["a", "b"]),
                entry("10.0.0.1", &["B", "c"]),
                entry("fd00::1", &["a"]),
            ]),
        )
        .unwrap();
        let t = text(&p);
        assert!(t.contains("10.0.0.1\ta b c\n"), "{t}");
        assert!(t.contains("fd00::1\ta\n"), "{t}");
        assert_eq!(p.lines, 2);
    }

    #[test]
    fn one_address_per_family_per_name() {
        let err = plan(
            b"",
            &present(vec![entry("10.0.0.1", &["db"]), entry("10.0.0.2", &["DB"])]),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            HostsError::TwoAddresses {
                family: "IPv4",
                first_index: 0,
                second_index: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("name \"DB\" is given two IPv4 addresses, 10.0.0.1 (entries[0]) and 10.0.0.2 (entries[1])"));
        assert!(plan(
            b"",
            &present(vec![entry("10.0.0.1", &["db"]), entry("fd00::1", &["db"])])
        )
        .is_ok());
    }

    #[test]
    fn host_names() {
        for good in [
            "a",
            "patroni-1",
            "chat.z3r0d3v.com",
            "x1.y2",
            "A-B.c",
            &"a".repeat(63),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62)
        );
        assert_eq!(long.len(), 254);
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "a b",
            "ä",
            "10.0.0.1",
            "123",
            "a.42",
            &"a".repeat(64),
            &long,
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debian_hostname_line_is_disabled_then_restored_exactly() {
        let req = present(vec![entry(
            "10.20.0.31",
            &["patroni-1.chat.z3r0d3v.com", "patroni-1"],
        )]);
        let p = plan(DEBIAN.as_bytes(), &req).unwrap();
        let t = text(&p);
        assert!(t.contains("\n# disabled by z3r0d3v.matrix_ha.etc_hosts intranet: 127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1\n"), "{t}");
        assert_eq!(p.disabled, vec![2]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // No active line maps the name to 127.0.1.1 any more.
        assert!(!t.lines().any(|l| l.starts_with("127.0.1.1")));
        // Idempotent.
        assert_eq!(plan(&p.content, &req).unwrap().content, p.content);
        // Removing the block restores the original file byte for byte.
        let back = plan(&p.content, &absent()).unwrap();
        assert_eq!(text(&back), DEBIAN);
        assert_eq!(back.restored, vec![2]);
    }

    #[test]
    fn debian_line_with_other_names_warns() {
        let p = plan(
            b"127.0.1.1 node1.example node1\n",
            &present(vec![entry("10.0.0.5", &["node1"])]),
        )
        .unwrap();
        assert_eq!(p.disabled, vec![1]);
        assert!(
            p.warnings[0].contains("its other names (node1.example) no longer resolve"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn loopback_mapping_does_not_disable() {
        let p = plan(
            b"127.0.1.1 me\n",
            &present(vec![entry("127.0.1.1", &["me"])]),
        )
        .unwrap();
        assert!(p.disabled.is_empty());
    }

    #[test]
    fn outside_claims_warn_only_for_other_addresses_of_the_same_family() {
        let current = b"10.9.9.9 db other\nfd00::9 db\n10.0.0.1 db\n";
        let p = plan(current, &present(vec![entry("10.0.0.1", &["db"])])).unwrap();
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0]
            .starts_with("line 1: 'db' is also mapped to 10.9.9.9 outside the managed block"));
    }

    #[test]
    fn file_without_final_newline_and_crlf_lines_are_kept() {
        let p = plan(
            b"127.0.0.1 localhost\r\n10.1.1.1 x",
            &present(vec![entry("10.0.0.1", &["a"])]),
        )
        .unwrap();
        assert!(text(&p).starts_with("127.0.0.1 localhost\r\n10.1.1.1 x\n# BEGIN"));
        let removed = plan(&p.content, &absent()).unwrap();
        assert_eq!(text(&removed), "127.0.0.1 localhost\r\n10.1.1.1 x\n");
    }

    #[test]
    fn non_utf8_lines_outside_the_block_survive() {
        let current = b"# caf\xe9\n127.0.0.1 localhost\n";
        let p = plan(current, &present(vec![entry("10.0.0.1", &["a"])])).unwrap();
        assert!(p.content.starts_with(current));
    }

    #[test]
    fn broken_blocks_are_refused_not_guessed() {
        let begin = "# BEGIN z3r0d3v.matrix_ha.etc_hosts intranet\n";
        let end = "# END z3r0d3v.matrix_ha.etc_hosts intranet\n";
        let unterminated = format!("a\n{begin}10.0.0.1 x\n");
        assert!(matches!(
            plan(unterminated.as_bytes(), &absent()),
            Err(HostsError::Unterminated { line: 2, .. })
        ));
        let stray = end.to_string();
        assert!(matches!(
            plan(stray.as_bytes(), &absent()),
            Err(HostsError::StrayEnd { line: 1, .. })
        ));
        let twice = format!("{begin}{end}{begin}{end}");
        assert!(matches!(
            plan(twice.as_bytes(), &absent()),
            Err(HostsError::DuplicateBlock {
                first: 1,
                second: 3,
                ..
            })
        ));
        // Another marker's block is just other lines to us.
        let other = "# BEGIN z3r0d3v.matrix_ha.etc_hosts other\n10.0.0.9 z\n# END z3r0d3v.matrix_ha.etc_hosts other\n";
        let p = plan(other.as_bytes(), &present(vec![entry("10.0.0.1", &["a"])])).unwrap();
        assert!(text(&p).starts_with(other));
    }

    #[test]
    fn bad_entries_name_the_option() {
        let cases = [
            (
                entry("10.0.0.300", &["a"]),
                "option 'entries[0].ip': value \"10.0.0.300\" is not an IPv4 or IPv6 address",
            ),
            (entry("fe80::1%eth0", &["a"]), "has a zone index"),
            (
                entry("10.0.0.1", &[]),
                "option 'entries[0].names': the list is empty",
            ),
            (
                entry("10.0.0.1", &["ok", "bad_name"]),
                "option 'entries[0].names[1]': value \"bad_name\" is not a valid host name",
            ),
        ];
        for (e, needle) in cases {
            let err = plan(b"", &present(vec![e])).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = plan(
            b"",
            &Request {
                marker: "a#b".into(),
                entries: None,
            },
        )
        .unwrap_err();
        assert_eq!(err, HostsError::BadMarker("a#b".into()));
    }
}
