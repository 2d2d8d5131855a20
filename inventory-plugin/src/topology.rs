//! The design's topology: one set of roles at every scale; only counts, sizes and workers change.

use crate::error::SiteError;
use crate::site::SiteFile;

use matrix_ha_rules::names;
pub use matrix_ha_rules::scale::{design_role, design_workers, DesignWorkers, Role, Scale, Size};

/// Every role-like group, in output order.
pub const GROUPS: [&str; 12] = [
    "matrix_servers",
    "synapse",
    "patroni",
    "etcd",
    "pgbouncer",
    "minio",
    "haproxy",
    "keepalived",
    "coturn",
    "livekit",
    "monitoring",
    "backup",
];

/// One role's planned servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePlan {
    pub role: Role,
    pub count: u32,
    pub size: Size,
}

/// A validated site: everything but the addresses.
#[derive(Debug, Clone)]
pub struct Topology {
    pub domain: String,
    /// Group-name prefix of the site.
    pub name: String,
    pub scale: Scale,
    pub expected_ccu: Option<u64>,
    pub roles: Vec<RolePlan>,
    pub workers: DesignWorkers,
    pub name_pattern: String,
    pub federation: bool,
    /// HAProxy serves the base domain's `/.well-known/matrix/*` (site key `serve_base_domain`).
    pub serve_base_domain: bool,
    /// MDAD's Matrix RTC stack with its LiveKit JWT service on (site key `matrix_rtc`).
    pub matrix_rtc: bool,
    pub media_bucket: String,
    /// `host:port` of the registry MDAD's Synapse image is pulled from.
    pub image_registry: String,
}

pub const DEFAULT_NAME_PATTERN: &str = "{role}-{index}";

/// The registry on the Synapse host's loopback, which Docker trusts without TLS.
pub const DEFAULT_IMAGE_REGISTRY: &str = "127.0.0.1:5000";

/// `host:port`, the host a DNS name or an IPv4 address.
fn is_registry_address(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok() || names::is_host_name(host);
    port_ok && host_ok
}

impl Topology {
    /// Validates the non-network part of a site file.
    pub fn from_site(site: &SiteFile) -> Result<Topology, SiteError> {
        let domain = match &site.domain {
            Some(d) => d.trim().to_ascii_lowercase(),
            None => {
                return Err(SiteError::InvalidOption {
                    site: "<unnamed>".into(),
                    option: "domain".into(),
                    value: String::new(),
                    reason: "required: the Matrix domain, e.g. chat.z3r0d3v.com".into(),
                })
            }
        };
        check_domain(&domain)?;
        let invalid = |option: &str, value: String, reason: &str| SiteError::InvalidOption {
            site: domain.clone(),
            option: option.into(),
            value,
            reason: reason.into(),
        };

        let name = match &site.name {
            Some(n) => n.clone(),
            None => default_site_name(&domain),
        };
        if !is_group_name(&name) {
            return Err(invalid(
                "name",
                name,
                "a group name: letters, digits and _, not starting with a digit",
            ));
        }
        if GROUPS.contains(&name.as_str()) || name.starts_with("scale_") || name == "all" {
            return Err(invalid(
                "name",
                name,
                "clashes with a group the inventory defines itself",
            ));
        }

        let scale = choose_scale(site, &domain)?;

        let mut roles = Vec::with_capacity(Role::ALL.len());
        for role in Role::ALL {
            let (count, size) = design_role(scale, role);
            roles.push(RolePlan { role, count, size });
        }
        for (role_name, o) in &site.roles {
            let role = Role::parse(role_name).ok_or_else(|| {
                invalid(
                    &format!("roles.{role_name}"),
                    role_name.clone(),
                    "unknown role: expected one of haproxy, synapse, patroni, minio, coturn, \
                     livekit, monitoring, backup",
                )
            })?;
            let plan = &mut roles[role.block_index() as usize];
            if let Some(c) = o.count {
                check_count(&domain, role, c)?;
                plan.count = c;
            }
            for (field, value) in [("vcpu", o.vcpu), ("ram_gb", o.ram_gb)] {
                if value == Some(0) {
                    return Err(invalid(
                        &format!("roles.{role_name}.{field}"),
                        "0".into(),
                        "must be at least 1",
                    ));
                }
            }
            if let Some(v) = o.vcpu {
                plan.size.vcpu = v;
            }
            if let Some(v) = o.ram_gb {
                plan.size.ram_gb = v;
            }
            if o.disk_gb.is_some() {
                plan.size.disk_gb = o.disk_gb;
            }
            if o.bandwidth_gbps.is_some() {
                plan.size.bandwidth_gbps = o.bandwidth_gbps;
            }
        }

        let mut workers = design_workers(scale);
        let w = &site.workers;
        if let Some(a) = w.auxiliary {
            workers.auxiliary = a;
        }
        for (field, value, target) in [
            ("sync", w.sync, &mut workers.sync),
            ("generic", w.generic, &mut workers.generic),
            (
                "federation_sender",
                w.federation_sender,
                &mut workers.federation_sender,
            ),
            (
                "event_persister",
                w.event_persister,
                &mut workers.event_persister,
            ),
        ] {
            if let Some(v) = value {
                if v == 0 && field != "generic" {
                    return Err(invalid(
                        &format!("workers.{field}"),
                        "0".into(),
                        "the design needs at least one worker of this type",
                    ));
                }
                if v > 64 {
                    return Err(invalid(
                        &format!("workers.{field}"),
                        v.to_string(),
                        "more than 64 workers of one type on one Synapse host",
                    ));
                }
                *target = v;
            }
        }

        let name_pattern = site
            .name_pattern
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME_PATTERN.to_string());
        check_name_pattern(&domain, &name_pattern)?;

        let media_bucket = site
            .media_bucket
            .clone()
            .unwrap_or_else(|| "synapse-media".to_string());
        if !is_bucket_name(&media_bucket) {
            return Err(invalid(
                "media_bucket",
                media_bucket,
                "an S3 bucket name: 3-63 characters of a-z, 0-9, . and -",
            ));
        }

        let image_registry = site
            .image_registry
            .clone()
            .unwrap_or_else(|| DEFAULT_IMAGE_REGISTRY.to_string());
        if !is_registry_address(&image_registry) {
            return Err(invalid(
                "image_registry",
                image_registry,
                "a registry address HOST:PORT (a host name or IPv4 address, a port 1-65535), \
                 without a scheme or path",
            ));
        }

        Ok(Topology {
            domain,
            name,
            scale,
            expected_ccu: site.expected_ccu,
            roles,
            workers,
            name_pattern,
            federation: site.federation.unwrap_or(true),
            serve_base_domain: site.serve_base_domain.unwrap_or(true),
            matrix_rtc: site.matrix_rtc.unwrap_or(false),
            media_bucket,
            image_registry,
        })
    }

    pub fn role(&self, role: Role) -> &RolePlan {
        &self.roles[role.block_index() as usize]
    }

    /// Short host name of the `index`-th (1-based) server of `role`.
    pub fn host_name(&self, role: Role, index: u32) -> String {
        expand_pattern(&self.name_pattern, role.name(), &index.to_string())
    }

    /// Every short host name, role by role.
    pub fn host_names(&self) -> Vec<String> {
        self.roles
            .iter()
            .flat_map(|p| (1..=p.count).map(move |i| (p.role, i)))
            .map(|(r, i)| self.host_name(r, i))
            .collect()
    }

    pub fn total_servers(&self) -> u32 {
        self.roles.iter().map(|r| r.count).sum()
    }
}

fn choose_scale(site: &SiteFile, domain: &str) -> Result<Scale, SiteError> {
    let from_ccu = match site.expected_ccu {
        Some(ccu) => Some(Scale::for_ccu(ccu).ok_or(SiteError::CcuTooLarge {
            site: domain.to_string(),
            ccu,
            max: Scale::Large.capacity_ccu(),
        })?),
        None => None,
    };
    match (&site.scale, from_ccu) {
        (Some(value), needed) => {
            let scale = Scale::parse(value.trim()).ok_or_else(|| SiteError::UnknownScale {
                site: domain.to_string(),
                value: value.clone(),
            })?;
            if let (Some(needed), Some(ccu)) = (needed, site.expected_ccu) {
                if needed > scale {
                    return Err(SiteError::CcuExceedsScale {
                        site: domain.to_string(),
                        ccu,
                        needed: needed.name(),
                        scale: scale.name(),
                        capacity: scale.capacity_ccu(),
                    });
                }
            }
            Ok(scale)
        }
        (None, Some(scale)) => Ok(scale),
        (None, None) => Err(SiteError::NoScale {
            site: domain.to_string(),
        }),
    }
}

fn check_count(domain: &str, role: Role, count: u32) -> Result<(), SiteError> {
    let reason = match role {
        Role::Synapse if count != 1 => {
            Some("MDAD deploys Synapse and its workers on exactly one host")
        }
        Role::Patroni if count < 3 || count % 2 == 0 => {
            Some("Patroni with etcd needs an odd count of at least 3 for quorum")
        }
        Role::Minio if count < 4 => Some("MinIO erasure coding needs at least 4 nodes"),
        Role::Haproxy if count < 2 => Some("the VIP needs at least 2 HAProxy/keepalived nodes"),
        _ if count == 0 => Some("every role of the topology needs at least one server"),
        _ if count > 99 => Some("more than 99 servers of one role"),
        _ => None,
    };
    match reason {
        Some(reason) => Err(SiteError::InvalidCount {
            site: domain.to_string(),
            role: role.name().into(),
            count,
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

fn check_domain(domain: &str) -> Result<(), SiteError> {
    let ok = domain.contains('.') && is_dns_name(domain);
    if ok {
        Ok(())
    } else {
        Err(SiteError::InvalidOption {
            site: domain.to_string(),
            option: "domain".into(),
            value: domain.to_string(),
            reason: "a DNS name with at least two labels of a-z, 0-9 and -".into(),
        })
    }
}

/// `pattern` with `{role}` and `{index}` replaced, in one pass.
pub fn expand_pattern(pattern: &str, role: &str, index: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + role.len() + index.len());
    let mut rest = pattern;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{role}") {
            out.push_str(role);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{index}") {
            out.push_str(index);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn check_name_pattern(domain: &str, pattern: &str) -> Result<(), SiteError> {
    let sample = pattern
        .replace("{role}", "monitoring")
        .replace("{index}", "99");
    let reason = if !pattern.contains("{role}") || !pattern.contains("{index}") {
        Some("must contain both {role} and {index}")
    } else if !is_dns_label(&sample) {
        Some("must expand to a host name label of a-z, 0-9 and - (at most 63 characters)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SiteError::InvalidOption {
            site: domain.to_string(),
            option: "name_pattern".into(),
            value: pattern.to_string(),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

/// A lower-case host-name label (the inventory lower-cases names before it checks them).
pub fn is_dns_label(label: &str) -> bool {
    names::is_label(label) && !label.bytes().any(|b| b.is_ascii_uppercase())
}

/// A lower-case host name, by the rules' syntax (an all-digit last label is refused).
pub fn is_dns_name(name: &str) -> bool {
    names::is_host_name(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

fn is_group_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// `chat.z3r0d3v.com` → `chat_z3r0d3v_com`.
pub fn default_site_name(domain: &str) -> String {
    let name: String = domain
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("site_{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(extra: &str) -> SiteFile {
        let text = format!("domain: chat.z3r0d3v.com\n{extra}");
        SiteFile::parse(&text, std::path::Path::new("t.yml")).expect("test site parses")
    }

    #[test]
    fn totals_match_the_design() {
        for (scale, total) in [("small", 16), ("medium", 17), ("large", 19)] {
            let t = Topology::from_site(&site(&format!("scale: {scale}\n"))).expect("valid");
            assert_eq!(t.total_servers(), total, "{scale}");
        }
    }

    #[test]
    fn expected_ccu_picks_the_scale_by_the_design_thresholds() {
        for (ccu, scale) in [
            (1, Scale::Small),
            (1_000, Scale::Small),
            (1_001, Scale::Medium),
            (5_000, Scale::Medium),
            (9_999, Scale::Large),
        ] {
            let t = Topology::from_site(&site(&format!("expected_ccu: {ccu}\n"))).expect("ok");
            assert_eq!(t.scale, scale, "{ccu}");
        }
        let err = Topology::from_site(&site("expected_ccu: 20000\n")).expect_err("too big");
        assert!(err.to_string().contains("20000"), "{err}");
        let err = Topology::from_site(&site("scale: small\nexpected_ccu: 4000\n"))
            .expect_err("scale too small for ccu");
        assert!(err.to_string().contains("needs scale medium"), "{err}");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let t = Topology::from_site(&site(
            "scale: small\nroles:\n  livekit: {count: 5, vcpu: 32}\nworkers: {sync: 10}\n",
        ))
        .expect("valid");
        assert_eq!(t.role(Role::Livekit).count, 5);
        assert_eq!(t.role(Role::Livekit).size.vcpu, 32);
        assert_eq!(t.role(Role::Livekit).size.ram_gb, 16);
        assert_eq!(t.workers.sync, 10);
        let err = Topology::from_site(&site("scale: small\nroles:\n  patroni: {count: 4}\n"))
            .expect_err("even patroni");
        assert!(err.to_string().contains("roles.patroni.count"), "{err}");
        let err = Topology::from_site(&site("scale: small\nroles:\n  redis: {count: 1}\n"))
            .expect_err("unknown role");
        assert!(err.to_string().contains("roles.redis"), "{err}");
    }

    #[test]
    fn names_follow_the_pattern() {
        let t = Topology::from_site(&site("scale: small\nname_pattern: \"{role}{index}-ha\"\n"))
            .expect("valid");
        assert_eq!(t.host_name(Role::Patroni, 2), "patroni2-ha");
        assert_eq!(t.name, "chat_z3r0d3v_com");
        let err = Topology::from_site(&site("scale: small\nname_pattern: \"{role}\"\n"))
            .expect_err("no index");
        assert!(err.to_string().contains("name_pattern"), "{err}");
    }
}
