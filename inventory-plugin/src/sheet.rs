//! The architecture sheet (`matrix_inventory plan`): servers, groups, addresses, sizes and the
//! ports each server must open.

use std::fmt::Write as _;

use serde::Serialize;

use crate::planned::{
    PlannedSite, ETCD_CLIENT_PORT, ETCD_PEER_PORT, LIVEKIT_PORT, LIVEKIT_REDIS_PORT,
    LIVEKIT_RTC_TCP_PORT, LIVEKIT_RTC_UDP_PORT, LIVEKIT_TURN_TLS_PORT, LIVEKIT_TURN_UDP_PORT,
    MINIO_API_PORT, PATRONI_RESTAPI_PORT, PGBOUNCER_PORT, POSTGRES_PORT, SYNAPSE_CLIENT_PORT,
    SYNAPSE_FEDERATION_PORT, SYNAPSE_METRICS_PORT,
};
use crate::topology::Role;

/// One inbound firewall rule.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Port {
    /// A port or a range, e.g. `443` or `49152-65535`.
    pub port: String,
    /// `tcp`, `udp`, or `vrrp` (IP protocol 112).
    pub proto: &'static str,
    /// Who connects: `internet` or the intranet role(s).
    pub from: &'static str,
    /// `design`: the design's firewall list; `chain`: needed by the deployment this inventory
    /// describes (Traefik behind HAProxy, PgBouncer, Patroni health checks, VRRP).
    pub source: &'static str,
    pub purpose: &'static str,
}

fn p(
    port: impl ToString,
    proto: &'static str,
    from: &'static str,
    source: &'static str,
    purpose: &'static str,
) -> Port {
    Port {
        port: port.to_string(),
        proto,
        from,
        source,
        purpose,
    }
}

/// Inbound ports of a role.
///
/// LiveKit: the design lists 7882/UDP and 50100-50200/UDP, but LiveKit uses either a single
/// muxed UDP port or a range, never both (with `rtc.udp_port` set the range is ignored). The
/// plan uses the muxed 7882/UDP and leaves the range closed.
pub fn ports(role: Role) -> Vec<Port> {
    match role {
        Role::Haproxy => vec![
            p(80, "tcp", "internet", "design", "HTTP (redirect, ACME)"),
            p(443, "tcp", "internet", "design", "HTTPS, TLS ends here"),
            p(8448, "tcp", "internet", "design", "Matrix federation"),
            p(
                POSTGRES_PORT,
                "tcp",
                "synapse",
                "chain",
                "PostgreSQL to the Patroni primary, for PgBouncer",
            ),
            p(
                MINIO_API_PORT,
                "tcp",
                "synapse, backup",
                "chain",
                "S3 API to MinIO",
            ),
            p(
                "-",
                "vrrp",
                "haproxy",
                "chain",
                "keepalived VRRP (IP protocol 112, unicast)",
            ),
        ],
        Role::Synapse => vec![
            p(
                SYNAPSE_CLIENT_PORT,
                "tcp",
                "haproxy",
                "chain",
                "Synapse client API (main process)",
            ),
            p(9093, "tcp", "synapse", "design", "worker replication"),
            p(
                SYNAPSE_FEDERATION_PORT,
                "tcp",
                "haproxy",
                "chain",
                "Synapse federation, plain HTTP behind HAProxy",
            ),
            p(
                SYNAPSE_METRICS_PORT,
                "tcp",
                "monitoring",
                "chain",
                "Synapse metrics (main process)",
            ),
            p(
                "18551-29999",
                "tcp",
                "haproxy",
                "chain",
                "Synapse workers' HTTP listeners (MDAD's port ranges)",
            ),
            p(
                PGBOUNCER_PORT,
                "tcp",
                "synapse",
                "chain",
                "PgBouncer, from Synapse's containers",
            ),
        ],
        Role::Patroni => vec![
            p(
                POSTGRES_PORT,
                "tcp",
                "haproxy, backup, monitoring",
                "design",
                "PostgreSQL",
            ),
            p(
                format!("{ETCD_CLIENT_PORT}-{ETCD_PEER_PORT}"),
                "tcp",
                "patroni",
                "design",
                "etcd client and peer",
            ),
            p(
                PATRONI_RESTAPI_PORT,
                "tcp",
                "haproxy, monitoring",
                "chain",
                "Patroni REST API (HAProxy health checks)",
            ),
        ],
        Role::Minio => vec![p(
            MINIO_API_PORT,
            "tcp",
            "haproxy, minio",
            "design",
            "S3 API and inter-node traffic",
        )],
        Role::Coturn => vec![
            p(3478, "tcp", "internet", "design", "TURN"),
            p(3478, "udp", "internet", "design", "TURN"),
            p(5349, "tcp", "internet", "design", "TURN over TLS"),
            p(5349, "udp", "internet", "design", "TURN over DTLS"),
            p(
                "49152-65535",
                "udp",
                "internet",
                "design",
                "TURN relay range",
            ),
        ],
        Role::Livekit => vec![
            p(
                LIVEKIT_PORT,
                "tcp",
                "haproxy",
                "design",
                "LiveKit API and WebSocket",
            ),
            p(
                LIVEKIT_RTC_TCP_PORT,
                "tcp",
                "internet",
                "design",
                "WebRTC over TCP (ICE-TCP)",
            ),
            p(
                LIVEKIT_RTC_UDP_PORT,
                "udp",
                "internet",
                "design",
                "WebRTC over UDP (single muxed port)",
            ),
            p(
                LIVEKIT_TURN_UDP_PORT,
                "udp",
                "internet",
                "design",
                "LiveKit TURN/UDP",
            ),
            p(
                LIVEKIT_TURN_TLS_PORT,
                "tcp",
                "internet",
                "design",
                "LiveKit TURN/TLS",
            ),
            p(
                LIVEKIT_REDIS_PORT,
                "tcp",
                "livekit",
                "chain",
                "Redis shared by the LiveKit nodes (on the first node)",
            ),
        ],
        Role::Monitoring => vec![
            p(9090, "tcp", "haproxy", "design", "Prometheus"),
            p(3000, "tcp", "haproxy", "design", "Grafana"),
        ],
        Role::Backup => vec![],
    }
}

/// One server line of the sheet.
#[derive(Debug, Serialize)]
pub struct Server {
    pub name: String,
    pub fqdn: String,
    pub address: String,
    pub pinned: bool,
    pub role: &'static str,
    pub groups: Vec<String>,
    pub vcpu: u32,
    pub ram_gb: u32,
    pub disk_gb: Option<u32>,
    pub bandwidth_gbps: Option<u32>,
    pub ports: Vec<Port>,
}

/// The whole sheet of one site.
#[derive(Debug, Serialize)]
pub struct Sheet {
    pub site: String,
    pub domain: String,
    pub scale: &'static str,
    pub capacity_ccu: u64,
    pub network: String,
    pub gateway: String,
    pub vip: String,
    pub vip_names: Vec<String>,
    pub servers_total: u32,
    pub vcpu_total: u32,
    pub ram_gb_total: u32,
    pub disk_gb_total: u32,
    pub synapse_processes: u32,
    pub workers: Vec<(String, u32)>,
    pub servers: Vec<Server>,
    /// Matrix discovery on the base domain.
    pub discovery: Discovery,
}

/// Who answers `https://<domain>/.well-known/matrix/{server,client}`, and what they answer.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// The site's HAProxy (site key `serve_base_domain`, default true) or the operator's own web
    /// server.
    pub served_by_haproxy: bool,
    pub server_url: String,
    /// The body of `/.well-known/matrix/server`.
    pub server: String,
    pub client_url: String,
    /// The body of `/.well-known/matrix/client`.
    pub client: String,
    /// The header `/client` must be sent with, so that web clients may read it.
    pub client_header: &'static str,
}

pub fn sheet(site: &PlannedSite) -> Sheet {
    let t = &site.topology;
    let servers: Vec<Server> = site
        .ip
        .hosts
        .iter()
        .map(|h| {
            let size = t.role(h.role).size;
            Server {
                name: h.name.clone(),
                fqdn: h.fqdn.clone(),
                address: h.address_text.clone(),
                pinned: h.pinned,
                role: h.role.name(),
                groups: h.role.groups().iter().map(|g| site.group(g)).collect(),
                vcpu: size.vcpu,
                ram_gb: size.ram_gb,
                disk_gb: size.disk_gb,
                bandwidth_gbps: size.bandwidth_gbps,
                ports: ports(h.role),
            }
        })
        .collect();
    Sheet {
        site: t.name.clone(),
        domain: t.domain.clone(),
        scale: t.scale.name(),
        capacity_ccu: t.scale.capacity_ccu(),
        network: site.ip.network.to_string(),
        gateway: site.ip.gateway.to_string(),
        vip: site.ip.vip.to_string(),
        vip_names: site.vip_names.clone(),
        servers_total: t.total_servers(),
        vcpu_total: servers.iter().map(|s| s.vcpu).sum(),
        ram_gb_total: servers.iter().map(|s| s.ram_gb).sum(),
        disk_gb_total: servers.iter().filter_map(|s| s.disk_gb).sum(),
        synapse_processes: site.workers.processes(),
        workers: site
            .workers
            .variables()
            .into_iter()
            .map(|(k, n)| (short_worker(&k), n))
            .filter(|(_, n)| *n > 0)
            .collect(),
        servers,
        discovery: Discovery {
            served_by_haproxy: t.serve_base_domain,
            server_url: format!("https://{}/.well-known/matrix/server", t.domain),
            server: crate::routing::well_known_server(&t.domain),
            client_url: format!("https://{}/.well-known/matrix/client", t.domain),
            client: crate::routing::well_known_client(&t.domain),
            client_header: "Access-Control-Allow-Origin: *",
        },
    }
}

/// `chat_z3r0d3v_com_patroni,chat_z3r0d3v_com_etcd` → `patroni,etcd` for the text table.
fn short_groups(groups: &[String], site: &str) -> String {
    let prefix = format!("{site}_");
    groups
        .iter()
        .map(|g| g.strip_prefix(&prefix).unwrap_or(g))
        .collect::<Vec<_>>()
        .join(",")
}

fn short_worker(var: &str) -> String {
    var.trim_start_matches("matrix_synapse_workers_")
        .trim_end_matches("_workers_count")
        .to_string()
}

/// The sheet as a plain-text table.
pub fn render_text(s: &Sheet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Site {} ({}) — scale {} (up to {} concurrent users)",
        s.site, s.domain, s.scale, s.capacity_ccu
    );
    let _ = writeln!(
        out,
        "Network {}  gateway {}  VIP {} ({})",
        s.network,
        s.gateway,
        s.vip,
        s.vip_names.join(", ")
    );
    let _ = writeln!(
        out,
        "{} servers, {} vCPU, {} GB RAM, {} GB data disk; {} Synapse processes\n",
        s.servers_total, s.vcpu_total, s.ram_gb_total, s.disk_gb_total, s.synapse_processes
    );
    let _ = writeln!(
        out,
        "{:<14} {:<16} {:>4} {:>7} {:>9}  {:<34} ports (inbound)",
        "server", "address", "vCPU", "RAM GB", "disk GB", "groups"
    );
    for sv in &s.servers {
        let disk = sv
            .disk_gb
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        let ports: Vec<String> = sv
            .ports
            .iter()
            .map(|p| {
                if p.proto == "vrrp" {
                    "vrrp".to_string()
                } else {
                    format!("{}/{}", p.port, p.proto)
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<14} {:<16} {:>4} {:>7} {:>9}  {:<34} {}",
            sv.name,
            format!("{}{}", sv.address, if sv.pinned { "*" } else { "" }),
            sv.vcpu,
            sv.ram_gb,
            disk,
            short_groups(&sv.groups, &s.site),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(" ")
            }
        );
    }
    let _ = writeln!(out, "\n* pinned in the site file");
    let _ = writeln!(out, "\nSynapse workers:");
    for (kind, n) in &s.workers {
        let _ = writeln!(out, "  {kind:<48} {n}");
    }
    let _ = writeln!(out, "\nFirewall, by role (source: design = the design's list, chain = needed by this deployment):");
    for role in Role::ALL {
        let list = ports(role);
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {}:", role.name());
        for p in list {
            let port = if p.proto == "vrrp" {
                "IP proto 112".to_string()
            } else {
                format!("{}/{}", p.port, p.proto)
            };
            let _ = writeln!(
                out,
                "    {:<18} from {:<28} {:<7} {}",
                port, p.from, p.source, p.purpose
            );
        }
    }
    let _ = writeln!(
        out,
        "  note: LiveKit uses the muxed 7882/udp; the design's 50100-50200/udp range is not opened (LiveKit ignores the range when a UDP port is set)."
    );
    let d = &s.discovery;
    if d.served_by_haproxy {
        let _ = writeln!(
            out,
            "\nDiscovery: HAProxy on the VIP answers {} and {} (the base domain must resolve to the VIP, \
             and the site's certificate must name it).",
            d.server_url, d.client_url
        );
    } else {
        let _ = writeln!(
            out,
            "\nDiscovery: serve_base_domain is false, so the web server of {} must answer:",
            s.domain
        );
        let _ = writeln!(out, "  GET {}\n    {}", d.server_url, d.server);
        let _ = writeln!(
            out,
            "  GET {}\n    {}\n    with the header {}",
            d.client_url, d.client, d.client_header
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn livekit_uses_the_muxed_port_not_the_range() {
        let l = ports(Role::Livekit);
        assert!(l.iter().any(|p| p.port == "7882" && p.proto == "udp"));
        assert!(!l.iter().any(|p| p.port.contains("50100")));
    }

    #[test]
    fn every_design_port_is_listed() {
        let all: Vec<String> = Role::ALL
            .iter()
            .flat_map(|r| ports(*r))
            .map(|p| format!("{}/{}", p.port, p.proto))
            .collect();
        for needed in [
            "80/tcp",
            "443/tcp",
            "8448/tcp",
            "8008/tcp",
            "9093/tcp",
            "5432/tcp",
            "2379-2380/tcp",
            "9000/tcp",
            "3478/tcp",
            "3478/udp",
            "5349/tcp",
            "5349/udp",
            "49152-65535/udp",
            "7880/tcp",
            "7881/tcp",
            "7882/udp",
            "3479/udp",
            "5350/tcp",
            "9090/tcp",
            "3000/tcp",
        ] {
            assert!(all.iter().any(|p| p == needed), "{needed}");
        }
    }
}
