//! The address plan: a fixed block of addresses per role, so growth never renumbers a host.
//!
//! Role `k` (in [`Role::ALL`] order) owns the offsets `base+1 ..= base+block_size-1` of the
//! network, with `base = block_size·(k+1)` unless `ip_plan.offsets.<role>` moves it. Inside its
//! block a role's unpinned hosts take the free offsets in index order, skipping the network and
//! broadcast addresses, the gateway, the VIP and every pinned address. A host's address therefore
//! depends only on its own role's block and the reserved addresses, never on how many servers
//! other roles have: moving a site from small to large adds hosts and keeps every address.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::SiteError;
use crate::site::SiteFile;
use crate::topology::{Role, Topology};

/// Default number of offsets per role block.
pub const DEFAULT_BLOCK_SIZE: u32 = 10;

/// One server with its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHost {
    pub role: Role,
    /// 1-based position inside the role.
    pub index: u32,
    /// Short host name, e.g. `patroni-1`.
    pub name: String,
    /// Full name: `<name>.<domain>`, the inventory host name.
    pub fqdn: String,
    pub address: Ipv4Addr,
    /// `address` as text, formatted once.
    pub address_text: String,
    /// Whether the site file pinned the address.
    pub pinned: bool,
}

/// A site's addresses.
#[derive(Debug, Clone)]
pub struct IpPlan {
    pub network: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub vip: Ipv4Addr,
    /// Hosts in role order, then index order.
    pub hosts: Vec<PlannedHost>,
}

impl IpPlan {
    pub fn build(topology: &Topology, site: &SiteFile) -> Result<IpPlan, SiteError> {
        let sname = topology.domain.as_str();
        let network = parse_network(sname, site.network.as_deref())?;
        let net_text = network;
        let base = u32::from(network.network());
        let size: u64 = 1u64 << (32 - u32::from(network.prefix_len()));
        let offset_of = |a: Ipv4Addr| u64::from(u32::from(a).wrapping_sub(base));
        let in_net = |a: Ipv4Addr| network.contains(&a);
        let last = size - 1;

        // Gateway and VIP: inside the network, not its network or broadcast address.
        let gateway = match &site.gateway {
            Some(text) => parse_addr(sname, "gateway", text)?,
            None => Ipv4Addr::from(base.wrapping_add(1)),
        };
        let vip = match &site.vip {
            Some(text) => parse_addr(sname, "vip", text)?,
            None => {
                return Err(SiteError::InvalidOption {
                    site: sname.into(),
                    option: "vip".into(),
                    value: String::new(),
                    reason: "required: the HAProxy/keepalived virtual IP inside `network`".into(),
                })
            }
        };
        for (option, addr) in [("gateway", gateway), ("vip", vip)] {
            let what = if !in_net(addr) {
                Some("outside")
            } else if offset_of(addr) == 0 {
                Some("the network address")
            } else if offset_of(addr) == last {
                Some("the broadcast address")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(SiteError::BadSiteAddress {
                    site: sname.into(),
                    option,
                    address: addr,
                    what,
                    network: net_text,
                });
            }
        }
        if vip == gateway {
            return Err(SiteError::BadSiteAddress {
                site: sname.into(),
                option: "vip",
                address: vip,
                what: "the gateway",
                network: net_text,
            });
        }

        // Pinned hosts: known names, addresses inside the network, no collisions.
        let names = if site.hosts.is_empty() {
            Vec::new()
        } else {
            topology.host_names()
        };
        let suffix = format!(".{}", topology.domain);
        let mut pins: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        let mut pinned_by: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        for (key, text) in &site.hosts {
            let short = key.strip_suffix(&suffix).unwrap_or(key).to_string();
            if !names.contains(&short) {
                return Err(SiteError::UnknownPinnedHost {
                    site: sname.into(),
                    host: key.clone(),
                    scale: topology.scale.name(),
                    known: names.join(", "),
                });
            }
            let address = parse_addr(sname, &format!("hosts.{key}"), text)?;
            if !in_net(address) {
                return Err(SiteError::AddressOutsideNetwork {
                    site: sname.into(),
                    host: short,
                    address,
                    network: net_text,
                });
            }
            let reserved = match offset_of(address) {
                0 => Some("network address"),
                o if o == last => Some("broadcast address"),
                _ if address == gateway => Some("gateway"),
                _ => None,
            };
            if let Some(what) = reserved {
                return Err(SiteError::AddressReserved {
                    site: sname.into(),
                    host: short,
                    address,
                    what,
                    network: net_text,
                });
            }
            if address == vip {
                return Err(SiteError::VipCollision {
                    site: sname.into(),
                    host: short,
                    address,
                });
            }
            if let Some(first) = pinned_by.get(&address) {
                return Err(SiteError::DuplicateAddress {
                    site: sname.into(),
                    first: first.clone(),
                    second: short,
                    address,
                });
            }
            if pins.contains_key(&short) {
                return Err(SiteError::InvalidOption {
                    site: sname.into(),
                    option: format!("hosts.{key}"),
                    value: text.clone(),
                    reason: format!("{short} is pinned twice (short name and full name)"),
                });
            }
            pinned_by.insert(address, short.clone());
            pins.insert(short, address);
        }

        let blocks = role_blocks(topology, site)?;
        let mut hosts = Vec::with_capacity(topology.total_servers() as usize);
        for plan in &topology.roles {
            let (block_base, block_size) = blocks[plan.role.block_index() as usize];
            let first = u64::from(block_base) + 1;
            let end = u64::from(block_base) + u64::from(block_size); // exclusive
            let mut next = first;
            for index in 1..=plan.count {
                let name = topology.host_name(plan.role, index);
                if let Some(address) = pins.get(&name) {
                    hosts.push(PlannedHost {
                        role: plan.role,
                        index,
                        fqdn: format!("{name}.{}", topology.domain),
                        name,
                        address: *address,
                        address_text: address.to_string(),
                        pinned: true,
                    });
                    continue;
                }
                let offset = loop {
                    if next >= end {
                        return Err(SiteError::BlockExhausted {
                            site: sname.into(),
                            host: name,
                            role: plan.role.name().into(),
                            first: Ipv4Addr::from(base.wrapping_add(first as u32)),
                            last: Ipv4Addr::from(base.wrapping_add((end - 1) as u32)),
                        });
                    }
                    if next >= last {
                        let address = base
                            .checked_add(next as u32)
                            .map(|a| Ipv4Addr::from(a).to_string())
                            .unwrap_or_else(|| "beyond 255.255.255.255".into());
                        return Err(SiteError::NetworkTooSmall {
                            site: sname.into(),
                            network: net_text,
                            scale: topology.scale.name(),
                            host: name,
                            offset: next,
                            address,
                            size,
                        });
                    }
                    let candidate = Ipv4Addr::from(base + next as u32);
                    next += 1;
                    if candidate != gateway
                        && candidate != vip
                        && !pinned_by.contains_key(&candidate)
                    {
                        break candidate;
                    }
                };
                hosts.push(PlannedHost {
                    role: plan.role,
                    index,
                    fqdn: format!("{name}.{}", topology.domain),
                    name,
                    address: offset,
                    address_text: offset.to_string(),
                    pinned: false,
                });
            }
        }

        Ok(IpPlan {
            network,
            gateway,
            vip,
            hosts,
        })
    }

    pub fn hosts_of(&self, role: Role) -> impl Iterator<Item = &PlannedHost> {
        self.hosts.iter().filter(move |h| h.role == role)
    }
}

/// `(base offset, block size)` of every role, in [`Role::ALL`] order.
fn role_blocks(topology: &Topology, site: &SiteFile) -> Result<Vec<(u32, u32)>, SiteError> {
    let sname = topology.domain.as_str();
    let block_size = site.ip_plan.block_size.unwrap_or(DEFAULT_BLOCK_SIZE);
    if !(2..=4096).contains(&block_size) {
        return Err(SiteError::InvalidOption {
            site: sname.into(),
            option: "ip_plan.block_size".into(),
            value: block_size.to_string(),
            reason: "must be between 2 and 4096".into(),
        });
    }
    for key in site.ip_plan.offsets.keys() {
        if Role::parse(key).is_none() {
            return Err(SiteError::InvalidOption {
                site: sname.into(),
                option: format!("ip_plan.offsets.{key}"),
                value: key.clone(),
                reason: "unknown role".into(),
            });
        }
    }
    let blocks: Vec<(u32, u32)> = Role::ALL
        .iter()
        .map(|r| {
            let base = site
                .ip_plan
                .offsets
                .get(r.name())
                .copied()
                .unwrap_or(block_size * (r.block_index() + 1));
            (base, block_size)
        })
        .collect();
    for (i, a) in blocks.iter().enumerate() {
        for (j, b) in blocks.iter().enumerate().skip(i + 1) {
            let (a0, a1) = (u64::from(a.0), u64::from(a.0) + u64::from(a.1));
            let (b0, b1) = (u64::from(b.0), u64::from(b.0) + u64::from(b.1));
            if a0 < b1 && b0 < a1 {
                return Err(SiteError::BlocksOverlap {
                    site: sname.into(),
                    first: Role::ALL[i].name().into(),
                    second: Role::ALL[j].name().into(),
                });
            }
        }
    }
    Ok(blocks)
}

fn parse_network(site: &str, text: Option<&str>) -> Result<Ipv4Net, SiteError> {
    let invalid = |value: &str, reason: &str| SiteError::InvalidOption {
        site: site.into(),
        option: "network".into(),
        value: value.into(),
        reason: reason.into(),
    };
    let text =
        text.ok_or_else(|| invalid("", "required: the private IPv4 range, e.g. 10.20.0.0/24"))?;
    let net: Ipv4Net = text
        .trim()
        .parse()
        .map_err(|_| invalid(text, "an IPv4 network in CIDR form, e.g. 10.20.0.0/24"))?;
    if net.network() != net.addr() {
        return Err(invalid(
            text,
            &format!("host bits are set: did you mean {}?", net.trunc()),
        ));
    }
    if net.prefix_len() > 30 {
        return Err(invalid(text, "a /31 or /32 has no room for a cluster"));
    }
    if !is_private(net) {
        return Err(invalid(
            text,
            "not a private network: the site's network must lie inside 10.0.0.0/8, \
             172.16.0.0/12 or 192.168.0.0/16 (RFC 1918) or 100.64.0.0/10 (RFC 6598, shared \
             address space); the cluster's database and storage ports listen on it",
        ));
    }
    Ok(net)
}

/// Whether `net` lies wholly inside an RFC 1918 private range or RFC 6598's shared address
/// space (the IPv4 ranges that are never routed on the internet; the site network is IPv4).
pub fn is_private(net: Ipv4Net) -> bool {
    const RANGES: [(Ipv4Addr, u8); 4] = [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
        (Ipv4Addr::new(100, 64, 0, 0), 10),
    ];
    RANGES
        .iter()
        .any(|&(addr, len)| Ipv4Net::new(addr, len).is_ok_and(|range| range.contains(&net)))
}

fn parse_addr(site: &str, option: &str, text: &str) -> Result<Ipv4Addr, SiteError> {
    text.trim().parse().map_err(|_| SiteError::InvalidOption {
        site: site.into(),
        option: option.into(),
        value: text.into(),
        reason: "an IPv4 address, e.g. 10.20.0.10".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<IpPlan, SiteError> {
        let site = SiteFile::parse(text, std::path::Path::new("t.yml")).expect("parses");
        let topology = Topology::from_site(&site)?;
        IpPlan::build(&topology, &site)
    }

    const BASE: &str = "domain: chat.z3r0d3v.com\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n";

    fn addr(p: &IpPlan, name: &str) -> String {
        p.hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn default_blocks_give_readable_addresses() {
        let p = plan(&format!("{BASE}scale: large\n")).expect("plans");
        assert_eq!(addr(&p, "haproxy-1"), "10.20.0.11");
        assert_eq!(addr(&p, "synapse-1"), "10.20.0.21");
        assert_eq!(addr(&p, "patroni-3"), "10.20.0.33");
        assert_eq!(addr(&p, "minio-4"), "10.20.0.44");
        assert_eq!(addr(&p, "livekit-4"), "10.20.0.64");
        assert_eq!(addr(&p, "backup-1"), "10.20.0.81");
    }

    #[test]
    fn growth_from_small_to_large_keeps_every_address() {
        let small = plan(&format!("{BASE}scale: small\n")).expect("small");
        let medium = plan(&format!("{BASE}scale: medium\n")).expect("medium");
        let large = plan(&format!(
            "{BASE}scale: large\nroles:\n  livekit: {{count: 9}}\n"
        ))
        .expect("large");
        for (smaller, larger) in [(&small, &medium), (&medium, &large)] {
            for h in &smaller.hosts {
                assert_eq!(addr(larger, &h.name), h.address.to_string(), "{}", h.name);
            }
            assert!(larger.hosts.len() > smaller.hosts.len());
        }
    }

    #[test]
    fn reserved_and_pinned_addresses_are_skipped() {
        // VIP inside the patroni block, a pin inside it too.
        let p = plan(
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.20.0.31\n\
             hosts:\n  minio-1: 10.20.0.32\n",
        )
        .expect("plans");
        assert_eq!(addr(&p, "patroni-1"), "10.20.0.33");
        assert_eq!(addr(&p, "patroni-2"), "10.20.0.34");
        assert_eq!(addr(&p, "minio-1"), "10.20.0.32");
        assert_eq!(addr(&p, "minio-2"), "10.20.0.41");
        let g = plan(
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.20.0.200\n\
             gateway: 10.20.0.11\n",
        )
        .expect("plans");
        assert_eq!(addr(&g, "haproxy-1"), "10.20.0.12");
    }

    #[test]
    fn errors_name_host_and_address() {
        let cases = [
            (
                "scale: small\nhosts:\n  patroni-1: 10.30.0.5\n",
                "patroni-1 address 10.30.0.5 is outside",
            ),
            (
                "scale: small\nhosts:\n  patroni-1: 10.20.0.10\n",
                "patroni-1 address 10.20.0.10 collides with the vip",
            ),
            (
                "scale: small\nhosts:\n  patroni-1: 10.20.0.50\n  minio-1: 10.20.0.50\n",
                "minio-1 and patroni-1 both have address 10.20.0.50",
            ),
            (
                "scale: small\nhosts:\n  patroni-4: 10.20.0.34\n",
                "patroni-4",
            ),
            (
                "scale: small\nhosts:\n  patroni-1: 10.20.0.255\n",
                "broadcast",
            ),
        ];
        for (extra, needle) in cases {
            let err = plan(&format!("{BASE}{extra}")).expect_err(extra);
            assert!(err.to_string().contains(needle), "{err} !~ {needle}");
        }
        let err = plan(
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/26\nvip: 10.20.0.10\n",
        )
        .expect_err("too small");
        let msg = err.to_string();
        assert!(
            msg.contains("too small for scale small") && msg.contains("host monitoring-1"),
            "{msg}"
        );
        let err = plan(
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.21.0.10\n",
        )
        .expect_err("vip outside");
        assert!(
            err.to_string().contains("`vip` 10.21.0.10 is outside"),
            "{err}"
        );
    }

    #[test]
    fn small_networks_fit_with_smaller_blocks() {
        let p = plan(
            "domain: chat.z3r0d3v.com\nscale: large\nnetwork: 10.20.0.0/26\nvip: 10.20.0.5\n\
             ip_plan: {block_size: 5}\n",
        )
        .expect("fits");
        assert_eq!(addr(&p, "haproxy-1"), "10.20.0.6");
        assert_eq!(addr(&p, "backup-1"), "10.20.0.41");
        let err = plan(&format!(
            "{BASE}scale: small\nip_plan: {{offsets: {{patroni: 25}}}}\n"
        ))
        .expect_err("overlap");
        assert!(
            err.to_string().contains("synapse and patroni overlap"),
            "{err}"
        );
    }
}
