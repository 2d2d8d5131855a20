//! Host-name and address syntax.
//!
//! A host name follows RFC 1123 §2.1: labels of ASCII letters, digits and inner hyphens, 1 to 63
//! characters each, at most 253 characters in all, written without the root's trailing dot.
//! Following RFC 3696 §2, the last label (the top-level domain) must not be all digits: a
//! resolver reads `10.20.0.256` or `host.123` as a (malformed) address, never as a name, so such
//! a name would not resolve the way it reads. A name that parses as an IP address is refused
//! too. Every place that takes a host name (the inventory's site file, `etc_hosts`,
//! `pgbouncer_tune`, `patroni_bootstrap`, `minio_pool`) checks it here.

use std::fmt;
use std::net::IpAddr;

/// Longest host name, without the trailing dot (RFC 1123 §2.1, RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 253;
/// Longest label.
pub const MAX_LABEL: usize = 63;

/// Why a text is not a host name. The texts complete "… is not a valid host name: ".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    TrailingDot,
    Address,
    EmptyLabel,
    LabelTooLong,
    Character,
    Hyphen,
    /// The last label is all digits (RFC 3696 §2).
    NumericTld,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for NameError {}

impl NameError {
    /// The reason as static text.
    pub fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "it is empty",
            NameError::TooLong => "it is longer than 253 characters",
            NameError::TrailingDot => "it ends with a dot",
            NameError::Address => "it is an address, not a name",
            NameError::EmptyLabel => "it has an empty label (two dots in a row, or a leading dot)",
            NameError::LabelTooLong => "a label is longer than 63 characters",
            NameError::Character => "only letters, digits, hyphens and dots are allowed",
            NameError::Hyphen => "a label starts or ends with a hyphen",
            NameError::NumericTld => {
                "its last label is all digits, which resolvers read as an address"
            }
        }
    }
}

/// Checks one label: 1 to 63 letters, digits and inner hyphens (either case).
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > MAX_LABEL {
        return Err(NameError::LabelTooLong);
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(NameError::Character);
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::Hyphen);
    }
    Ok(())
}

/// Whether `label` is one label of a host name.
pub fn is_label(label: &str) -> bool {
    check_label(label).is_ok()
}

/// Checks a host name (see the module documentation).
pub fn check_host_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    if name.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(NameError::Address);
    }
    for label in name.split('.') {
        check_label(label)?;
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NameError::NumericTld);
    }
    Ok(())
}

/// Whether `name` is a host name.
pub fn is_host_name(name: &str) -> bool {
    check_host_name(name).is_ok()
}

/// Whether `host` is an IP address (v4 or v6) or a host name.
pub fn is_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || is_host_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let long_label = "a".repeat(63);
        let over_253 = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
        let at_253 = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        let rows: Vec<(&str, Result<(), NameError>)> = vec![
            ("chat.z3r0d3v.com", Ok(())),
            ("patroni-1", Ok(())),
            ("Patroni-1.Chat.Example", Ok(())),
            ("3com.com", Ok(())),
            ("a", Ok(())),
            ("x1.b2", Ok(())),
            (&long_label, Ok(())),
            (&at_253, Ok(())),
            ("", Err(NameError::Empty)),
            (&over_253, Err(NameError::TooLong)),
            ("chat.z3r0d3v.com.", Err(NameError::TrailingDot)),
            ("10.20.0.1", Err(NameError::Address)),
            ("::1", Err(NameError::Address)),
            ("a..b", Err(NameError::EmptyLabel)),
            (".a", Err(NameError::EmptyLabel)),
            ("a_b.com", Err(NameError::Character)),
            ("a b", Err(NameError::Character)),
            ("-a.com", Err(NameError::Hyphen)),
            ("a-.com", Err(NameError::Hyphen)),
            // RFC 3696 §2: an all-numeric top-level label is refused, whatever comes before.
            ("10.20.0.256", Err(NameError::NumericTld)),
            ("host.123", Err(NameError::NumericTld)),
            ("1", Err(NameError::NumericTld)),
        ];
        for (name, want) in rows {
            assert_eq!(check_host_name(name), want, "{name:?}");
        }
        let too_long_label = "a".repeat(64);
        assert_eq!(
            check_host_name(&too_long_label),
            Err(NameError::LabelTooLong)
        );
        assert_eq!(
            NameError::NumericTld.to_string(),
            NameError::NumericTld.reason()
        );
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        for (host, ok) in [
            ("10.20.0.1", true),
            ("fd00::1", true),
            ("db.internal", true),
            ("10.20.0.256", false),
            ("10.20.0.10 port=1", false),
            ("", false),
        ] {
            assert_eq!(is_host(host), ok, "{host:?}");
        }
    }
}
