//! Every way a site file can be wrong, each naming the file, option, host or address at fault.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// An error in a site file or in what it asks for. The messages are meant for the operator who
/// wrote the site file: they name the site, the option and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{path}: cannot read the site file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}: malformed site file: {message}")]
    Yaml { path: PathBuf, message: String },

    #[error(
        "{path}: the site file has {size} bytes or more; site files are limited to {limit} bytes \
         (a site is a few kilobytes: is this the right file?)"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error(
        "{path}: line {line}: the site file nests deeper than {limit} levels (a site file needs \
         about 5)"
    )]
    TooDeep {
        path: PathBuf,
        line: usize,
        limit: usize,
    },

    #[error("no site file given: pass --site PATH or set MATRIX_HA_SITE")]
    NoSite,

    #[error("{path}: the directory holds no site file (*.yml or *.yaml)")]
    EmptyDirectory { path: PathBuf },

    #[error("site {site}: option `{option}` is invalid: {value:?} ({reason})")]
    InvalidOption {
        site: String,
        option: String,
        value: String,
        reason: String,
    },

    #[error("site {site}: unknown scale {value:?}: expected one of small, medium, large")]
    UnknownScale { site: String, value: String },

    #[error("site {site}: neither `scale` nor `expected_ccu` is set: give one of them")]
    NoScale { site: String },

    #[error(
        "site {site}: `expected_ccu` {ccu} exceeds the largest scale the design covers \
         (large, {max} concurrent users)"
    )]
    CcuTooLarge { site: String, ccu: u64, max: u64 },

    #[error(
        "site {site}: `expected_ccu` {ccu} needs scale {needed}, but `scale` says {scale} \
         (which serves up to {capacity} concurrent users)"
    )]
    CcuExceedsScale {
        site: String,
        ccu: u64,
        needed: &'static str,
        scale: &'static str,
        capacity: u64,
    },

    #[error("site {site}: `roles.{role}.count` is {count}: {reason}")]
    InvalidCount {
        site: String,
        role: String,
        count: u32,
        reason: String,
    },

    #[error("site {site}: `hosts` pins {host:?}, which is not a host of this site at scale {scale} (hosts are: {known})")]
    UnknownPinnedHost {
        site: String,
        host: String,
        scale: &'static str,
        known: String,
    },

    #[error("site {site}: host {host} address {address} is outside the network {network}")]
    AddressOutsideNetwork {
        site: String,
        host: String,
        address: Ipv4Addr,
        network: ipnet::Ipv4Net,
    },

    #[error("site {site}: host {host} address {address} is the {what} of {network}")]
    AddressReserved {
        site: String,
        host: String,
        address: Ipv4Addr,
        what: &'static str,
        network: ipnet::Ipv4Net,
    },

    #[error("site {site}: hosts {first} and {second} both have address {address}")]
    DuplicateAddress {
        site: String,
        first: String,
        second: String,
        address: Ipv4Addr,
    },

    #[error("site {site}: host {host} address {address} collides with the vip")]
    VipCollision {
        site: String,
        host: String,
        address: Ipv4Addr,
    },

    #[error("site {site}: `{option}` {address} is {what} of the network {network}")]
    BadSiteAddress {
        site: String,
        option: &'static str,
        address: Ipv4Addr,
        what: &'static str,
        network: ipnet::Ipv4Net,
    },

    #[error(
        "site {site}: network {network} is too small for scale {scale}: host {host} would need \
         address offset {offset} ({address}), but the network has {size} addresses"
    )]
    NetworkTooSmall {
        site: String,
        network: ipnet::Ipv4Net,
        scale: &'static str,
        host: String,
        offset: u64,
        address: String,
        size: u64,
    },

    #[error(
        "site {site}: host {host} finds no free address in the {role} block {first}-{last}: \
         raise `ip_plan.block_size`, move the block with `ip_plan.offsets.{role}`, or pin the host"
    )]
    BlockExhausted {
        site: String,
        host: String,
        role: String,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },

    #[error("site {site}: the address blocks of {first} and {second} overlap (see `ip_plan`)")]
    BlocksOverlap {
        site: String,
        first: String,
        second: String,
    },

    #[error("{first} and {second} both define the site {what} {value:?}")]
    DuplicateSite {
        first: PathBuf,
        second: PathBuf,
        what: &'static str,
        value: String,
    },

    #[error("no host named {0:?} in the inventory")]
    UnknownHost(String),
}

impl SiteError {
    /// Prefixes the error with the file it came from when the message does not name it already.
    pub fn in_file(self, path: &std::path::Path) -> FileError {
        FileError {
            path: path.to_path_buf(),
            error: Box::new(self),
        }
    }
}

/// A [`SiteError`] together with the site file it was found in.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(path, error))]
pub struct FileError {
    pub path: PathBuf,
    pub error: Box<SiteError>,
}

fn render(path: &std::path::Path, error: &SiteError) -> String {
    match error {
        SiteError::Read { .. }
        | SiteError::Yaml { .. }
        | SiteError::TooLarge { .. }
        | SiteError::TooDeep { .. }
        | SiteError::NoSite
        | SiteError::EmptyDirectory { .. }
        | SiteError::DuplicateSite { .. }
        | SiteError::UnknownHost(_) => error.to_string(),
        _ => format!("{}: {error}", path.display()),
    }
}
