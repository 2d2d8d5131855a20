//! A fully planned site: topology, addresses, workers and pools, and the variables derived from
//! them for our roles and for MDAD.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::error::SiteError;
use crate::ipplan::{IpPlan, PlannedHost};
use crate::routing::{Process, RoutingTable};
use crate::site::SiteFile;
use crate::synapse::{MdadWorkers, PoolSizing};
use crate::topology::{Role, Topology};
use crate::vars::{Val, Vars};

/// The MDAD migration version this inventory was checked against
/// (`matrix_playbook_migration_expected_version` in MDAD's defaults).
pub const MDAD_VALIDATED_VERSION: &str = "v2026.05.18.0";

/// Every vault variable the inventory refers to. The inventory never holds a secret: it emits
/// `"{{ vault_… }}"` references that the operator's Ansible Vault file resolves.
pub const VAULT_VARIABLES: [(&str, &str); 14] = [
    (
        "vault_matrix_homeserver_generic_secret_key",
        "MDAD's generic secret (matrix_homeserver_generic_secret_key)",
    ),
    (
        "vault_synapse_db_password",
        "password of the `synapse` PostgreSQL role, used by Synapse, PgBouncer and Patroni",
    ),
    (
        "vault_patroni_superuser_password",
        "PostgreSQL superuser (`postgres`) password",
    ),
    (
        "vault_patroni_replication_password",
        "PostgreSQL replication role password",
    ),
    (
        "vault_patroni_restapi_password",
        "Patroni REST API basic-auth password",
    ),
    (
        "vault_turn_shared_secret",
        "TURN static-auth secret shared by coturn and Synapse",
    ),
    ("vault_minio_root_user", "MinIO root user"),
    ("vault_minio_root_password", "MinIO root password"),
    (
        "vault_minio_synapse_access_key",
        "access key of the MinIO user Synapse stores media with",
    ),
    (
        "vault_minio_synapse_secret_key",
        "secret key of that MinIO user",
    ),
    (
        "vault_keepalived_auth_pass",
        "VRRP password, at most 8 characters (keepalived truncates longer ones)",
    ),
    (
        "vault_livekit_api_key",
        "API key of the LiveKit nodes, shared with MDAD's LiveKit JWT service",
    ),
    (
        "vault_livekit_api_secret",
        "its secret, 32 characters or more (LiveKit refuses shorter ones)",
    ),
    (
        "vault_livekit_redis_password",
        "password of the Redis the LiveKit nodes mesh through, 16 characters or more",
    ),
];

fn vault(name: &str) -> Value {
    debug_assert!(VAULT_VARIABLES.iter().any(|(n, _)| *n == name), "{name}");
    Value::String(format!("{{{{ {name} }}}}"))
}

/// The site file's `admin_networks`: IPv4 networks in CIDR form without host bits, inside the
/// private ranges unless `admin_networks_public: true` says otherwise.
fn admin_networks(site: &SiteFile, domain: &str) -> Result<Vec<String>, SiteError> {
    let public_ok = site.admin_networks_public.unwrap_or(false);
    let mut out = Vec::new();
    for text in &site.admin_networks {
        let invalid = |reason: &str| SiteError::InvalidOption {
            site: domain.into(),
            option: "admin_networks".into(),
            value: text.clone(),
            reason: reason.into(),
        };
        let net: ipnet::Ipv4Net = text
            .trim()
            .parse()
            .map_err(|_| invalid("an IPv4 network in CIDR form, e.g. 10.20.5.0/24"))?;
        if net.network() != net.addr() {
            return Err(invalid(&format!(
                "host bits are set: did you mean {}?",
                net.trunc()
            )));
        }
        if !public_ok && !crate::ipplan::is_private(net) {
            return Err(invalid(
                "not a private network (RFC 1918 or RFC 6598): Synapse's admin API would be \
                 open to it; set admin_networks_public: true if that is meant",
            ));
        }
        if !out.contains(&net.to_string()) {
            out.push(net.to_string());
        }
    }
    Ok(out)
}

/// Fixed ports of the chain.
pub const PGBOUNCER_PORT: u16 = 6432;
pub const POSTGRES_PORT: u16 = 5432;
pub const PATRONI_RESTAPI_PORT: u16 = 8008;
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const MINIO_API_PORT: u16 = 9000;
pub const MINIO_CONSOLE_PORT: u16 = 9001;
/// Synapse's main process: client and federation listeners, published on the Synapse host's
/// intranet address for HAProxy (every worker's HTTP listener is published there too).
pub use crate::routing::{MAIN_CLIENT_PORT, MAIN_FEDERATION_PORT};
/// Synapse's client API (main process), published by MDAD on the Synapse host's intranet
/// address for HAProxy.
pub const SYNAPSE_CLIENT_PORT: u16 = MAIN_CLIENT_PORT;
/// Synapse's plain (TLS-less) federation listener, published the same way.
pub const SYNAPSE_FEDERATION_PORT: u16 = MAIN_FEDERATION_PORT;
/// Synapse's metrics listener (main process), published the same way.
pub const SYNAPSE_METRICS_PORT: u16 = 9100;
/// The Synapse image as the site's registry holds it (`scripts/build-mdad-images` makes it from
/// PyPI's matrix-synapse, the version the tested MDAD pins).
pub const SYNAPSE_IMAGE: &str = "matrix-ha/synapse:v1.159.0";
/// The Valkey-compatible image (Debian's redis-server) MDAD's valkey role runs.
pub const VALKEY_IMAGE: &str = "matrix-ha/valkey:7.0";
/// LiveKit's ports (the port sheet's): HTTP API and WebSocket, ICE over TCP, the one muxed
/// ICE UDP port, its embedded TURN server on UDP and TLS (off coturn's 3478 and 5349), and the
/// Redis the nodes mesh through.
pub const LIVEKIT_PORT: u16 = 7880;
pub const LIVEKIT_RTC_TCP_PORT: u16 = 7881;
pub const LIVEKIT_RTC_UDP_PORT: u16 = 7882;
pub const LIVEKIT_TURN_UDP_PORT: u16 = 3479;
pub const LIVEKIT_TURN_TLS_PORT: u16 = 5350;
pub const LIVEKIT_REDIS_PORT: u16 = 6379;
/// The path of the Matrix name under which clients reach LiveKit (MDAD's own path for its
/// LiveKit server, so clients see the layout they would with MDAD's).
pub const LIVEKIT_PATH: &str = "/livekit-server";
/// The region MinIO answers to unless configured otherwise.
pub const MINIO_REGION: &str = "us-east-1";
/// The age of the newest backup past which the backup role's health check fails the run:
/// one daily backup missed, with two hours' slack for a long one.
pub const BACKUP_MAX_AGE_HOURS: u32 = 26;

/// One planned site.
#[derive(Debug, Clone)]
pub struct PlannedSite {
    pub topology: Topology,
    pub ip: IpPlan,
    pub workers: MdadWorkers,
    /// Every Synapse worker MDAD creates for `workers` (names, types, ports).
    pub processes: Vec<Process>,
    /// HAProxy's Synapse back-ends and routes.
    pub routing: RoutingTable,
    pub pools: PoolSizing,
    pub keepalived_vrid: u32,
    /// Names the intranet /etc/hosts maps to the VIP.
    pub vip_names: Vec<String>,
    /// The site file's `admin_networks`, checked and normalised (CIDR).
    pub admin_networks: Vec<String>,
}

impl PlannedSite {
    /// Validates and plans a parsed site file (pure: no I/O).
    pub fn plan(site: &SiteFile) -> Result<PlannedSite, SiteError> {
        let topology = Topology::from_site(site)?;
        let ip = IpPlan::build(&topology, site)?;
        let workers = MdadWorkers::from_design(&topology.workers);
        let pools = PoolSizing::for_processes(workers.processes());
        let processes = crate::routing::worker_processes(&workers);
        let routing = RoutingTable::build(&processes, topology.federation);
        let keepalived_vrid = match site.keepalived_vrid {
            Some(v) if matrix_ha_rules::vrid::is_vrid(i64::from(v)) => v,
            Some(v) => {
                return Err(SiteError::InvalidOption {
                    site: topology.domain.clone(),
                    option: "keepalived_vrid".into(),
                    value: v.to_string(),
                    reason: "a VRRP router id between 1 and 255".into(),
                })
            }
            None => u32::from(matrix_ha_rules::vrid::default_vrid(ip.vip)),
        };
        let d = &topology.domain;
        let mut vip_names = vec![d.clone(), format!("matrix.{d}"), format!("element.{d}")];
        for extra in &site.vip_names {
            let name = extra.trim().to_ascii_lowercase();
            if !crate::topology::is_dns_name(&name) {
                return Err(SiteError::InvalidOption {
                    site: d.clone(),
                    option: "vip_names".into(),
                    value: extra.clone(),
                    reason: "a DNS name".into(),
                });
            }
            if let Some(h) = ip.hosts.iter().find(|h| h.fqdn == name || h.name == name) {
                return Err(SiteError::InvalidOption {
                    site: d.clone(),
                    option: "vip_names".into(),
                    value: extra.clone(),
                    reason: format!("already the name of host {} ({})", h.name, h.address),
                });
            }
            if !vip_names.contains(&name) {
                vip_names.push(name);
            }
        }
        let admin_networks = admin_networks(site, d)?;
        Ok(PlannedSite {
            topology,
            ip,
            workers,
            processes,
            routing,
            pools,
            keepalived_vrid,
            vip_names,
            admin_networks,
        })
    }

    /// The names HAProxy answers `/.well-known/matrix/*` on, which its certificate must cover:
    /// `matrix.<domain>`, and the base domain unless the site file says another web server
    /// serves it (`serve_base_domain: false`).
    pub fn well_known_hosts(&self) -> Vec<String> {
        let d = &self.topology.domain;
        if self.topology.serve_base_domain {
            vec![d.clone(), format!("matrix.{d}")]
        } else {
            vec![format!("matrix.{d}")]
        }
    }

    /// Group name of a role-like group inside this site, e.g. `chat_z3r0d3v_com_patroni`.
    pub fn group(&self, group: &str) -> String {
        format!("{}_{group}", self.topology.name)
    }

    fn hosts(&self, role: Role) -> Vec<&PlannedHost> {
        self.ip.hosts_of(role).collect()
    }

    fn synapse(&self) -> Option<&PlannedHost> {
        self.ip.hosts_of(Role::Synapse).next()
    }

    fn addresses(&self, role: Role) -> Vec<&str> {
        self.ip
            .hosts_of(role)
            .map(|h| h.address_text.as_str())
            .collect()
    }

    fn peers(&self, role: Role) -> Val<'_> {
        Val::Peers(self.hosts(role))
    }

    /// The intranet /etc/hosts: the VIP with the Matrix names, then every server. Each entry is
    /// `{ip, names}`, the shape of the etc_hosts module's `entries` option.
    pub fn etc_hosts(&self) -> Vec<Value> {
        let mut entries = Vec::with_capacity(self.ip.hosts.len() + 1);
        entries.push(json!({"ip": self.ip.vip.to_string(), "names": self.vip_names}));
        for h in &self.ip.hosts {
            entries.push(json!({"ip": h.address_text.clone(), "names": [h.fqdn.clone(), h.name]}));
        }
        entries
    }

    /// TURN URIs handed to Matrix clients: every coturn server, UDP, TCP and TLS.
    pub fn turn_uris(&self) -> Vec<String> {
        let mut uris = Vec::new();
        for h in self.ip.hosts_of(Role::Coturn) {
            let f = &h.fqdn;
            uris.push(format!("turn:{f}:3478?transport=udp"));
            uris.push(format!("turn:{f}:3478?transport=tcp"));
            uris.push(format!("turns:{f}:5349?transport=tcp"));
        }
        uris
    }

    /// The WebSocket URL LiveKit is reached at, which MDAD's LiveKit JWT service hands to
    /// clients; None when the site has no LiveKit node.
    pub fn livekit_url(&self) -> Option<String> {
        self.ip.hosts_of(Role::Livekit).next()?;
        Some(format!(
            "wss://matrix.{}{LIVEKIT_PATH}",
            self.topology.domain
        ))
    }

    /// `site_*` facts, set on the site's parent group.
    pub fn site_vars(&self) -> Vars<'_> {
        let t = &self.topology;
        let mut v = Vars::with_capacity(16);
        v.insert("site_name", t.name.as_str());
        v.insert("site_domain", t.domain.as_str());
        v.insert("site_scale", t.scale.name());
        v.insert("site_capacity_ccu", json!(t.scale.capacity_ccu()));
        if let Some(ccu) = t.expected_ccu {
            v.insert("site_expected_ccu", json!(ccu));
        }
        v.insert("site_network", json!(self.ip.network.to_string()));
        v.insert("site_netmask", json!(self.ip.network.netmask().to_string()));
        v.insert("site_prefix_len", json!(self.ip.network.prefix_len()));
        v.insert("site_gateway", json!(self.ip.gateway.to_string()));
        v.insert("site_vip", json!(self.ip.vip.to_string()));
        v.insert("site_vip_names", Val::Strings(self.vip_names.clone()));
        v.insert("site_federation_enabled", json!(t.federation));
        v.insert("site_servers_total", json!(t.total_servers()));
        v.insert("site_turn_uris", Val::Strings(self.turn_uris()));
        if let Some(url) = self.livekit_url() {
            v.insert("site_livekit_url", json!(url));
        }
        v.insert("site_serve_base_domain", json!(t.serve_base_domain));
        v.insert(
            "site_admin_networks",
            Val::Strings(self.admin_networks.clone()),
        );
        // What site.yml's first play requires of the vault before any host changes.
        v.insert(
            "site_vault_variables",
            Val::Strings(VAULT_VARIABLES.iter().map(|(n, _)| n.to_string()).collect()),
        );
        v.insert("etc_hosts_entries", Val::EtcHosts(self));
        v
    }

    /// The backup tier's variables (pgBackRest's stanza and hosts, what is pulled from the
    /// Synapse host, the media bucket), for the groups the `backup` role runs on: the backup
    /// host, the Patroni members and the Synapse host. None when the site has no backup host.
    fn backup_vars<'a>(&'a self, v: &mut Vars<'a>) {
        let Some(repo) = self.ip.hosts_of(Role::Backup).next() else {
            return;
        };
        let t = &self.topology;
        v.insert("backup_stanza", json!(t.name));
        v.insert("backup_repo_host", json!(repo.address_text.clone()));
        v.insert("backup_pg_hosts", self.peers(Role::Patroni));
        v.insert(
            "backup_synapse_host",
            json!(self.synapse().map(|h| h.address_text.clone())),
        );
        v.insert("backup_max_age_hours", json!(BACKUP_MAX_AGE_HOURS));
        v.insert("backup_media_bucket", json!(t.media_bucket));
        v.insert(
            "backup_media_endpoint_url",
            json!(format!("http://{}:{MINIO_API_PORT}", self.ip.vip)),
        );
        v.insert("backup_media_region", json!(MINIO_REGION));
        v.insert(
            "backup_media_access_key",
            vault("vault_minio_synapse_access_key"),
        );
        v.insert(
            "backup_media_secret_key",
            vault("vault_minio_synapse_secret_key"),
        );
    }

    /// Variables of our roles, set on the site's role groups (`<site>_<group>`).
    pub fn group_vars(&self, group: &str) -> Vars<'_> {
        let mut v = Vars::with_capacity(24);
        if matches!(group, "backup" | "patroni" | "matrix_servers") {
            self.backup_vars(&mut v);
        }
        let p = &self.pools;
        let vip = self.ip.vip.to_string();
        match group {
            "etcd" => {
                v.insert("etcd_cluster_token", json!(self.topology.name));
                v.insert("etcd_peers", self.peers(Role::Patroni));
                v.insert("etcd_client_port", json!(ETCD_CLIENT_PORT));
                v.insert("etcd_peer_port", json!(ETCD_PEER_PORT));
            }
            "patroni" => {
                let etcd: Vec<String> = self
                    .hosts(Role::Patroni)
                    .iter()
                    .map(|h| format!("{}:{ETCD_CLIENT_PORT}", h.address))
                    .collect();
                let mut clients = self.addresses(Role::Haproxy);
                clients.extend(self.addresses(Role::Synapse));
                clients.extend(self.addresses(Role::Monitoring));
                clients.extend(self.addresses(Role::Backup));
                v.insert("patroni_scope", json!(self.topology.name));
                if self.ip.hosts_of(Role::Backup).next().is_some() {
                    // WAL archiving and replicas from the backup host's repository.
                    v.insert("patroni_pgbackrest_stanza", json!(self.topology.name));
                    // pgBackRest logs in as postgres on the members (pg_hba is SCRAM only).
                    v.insert(
                        "backup_pg_password",
                        vault("vault_patroni_superuser_password"),
                    );
                }
                v.insert("patroni_peers", self.peers(Role::Patroni));
                v.insert("patroni_etcd_hosts", json!(etcd));
                v.insert("patroni_postgres_port", json!(POSTGRES_PORT));
                v.insert("patroni_restapi_port", json!(PATRONI_RESTAPI_PORT));
                v.insert("patroni_max_connections", json!(p.postgres_max_connections));
                v.insert(
                    "patroni_superuser_reserved_connections",
                    json!(crate::synapse::SUPERUSER_RESERVED),
                );
                v.insert("patroni_allowed_clients", Val::Strs(clients));
                v.insert("patroni_synapse_database", json!("synapse"));
                v.insert("patroni_synapse_user", json!("synapse"));
                v.insert(
                    "patroni_synapse_password",
                    vault("vault_synapse_db_password"),
                );
                v.insert(
                    "patroni_superuser_password",
                    vault("vault_patroni_superuser_password"),
                );
                v.insert(
                    "patroni_replication_password",
                    vault("vault_patroni_replication_password"),
                );
                v.insert(
                    "patroni_restapi_password",
                    vault("vault_patroni_restapi_password"),
                );
            }
            "pgbouncer" => {
                let listen = self.synapse().map(|h| h.address_text.clone());
                v.insert("pgbouncer_listen_address", json!(listen));
                v.insert("pgbouncer_listen_port", json!(PGBOUNCER_PORT));
                v.insert("pgbouncer_pool_mode", json!("transaction"));
                v.insert("pgbouncer_upstream_host", json!(vip));
                v.insert("pgbouncer_upstream_port", json!(POSTGRES_PORT));
                v.insert("pgbouncer_database", json!("synapse"));
                v.insert("pgbouncer_user", json!("synapse"));
                v.insert("pgbouncer_password", vault("vault_synapse_db_password"));
                v.insert("pgbouncer_synapse_processes", json!(p.synapse_processes));
                v.insert("pgbouncer_synapse_cp_max", json!(p.cp_max));
                v.insert(
                    "pgbouncer_reserved_connections",
                    json!(p.reserved_connections),
                );
                // The pools patroni_max_connections was sized for; the role hands them to
                // pgbouncer_tune, which refuses them when they do not fit.
                v.insert("pgbouncer_default_pool_size", json!(p.default_pool_size));
                v.insert("pgbouncer_reserve_pool_size", json!(p.reserve_pool_size));
            }
            "haproxy" => {
                let postgres = Val::Backends {
                    hosts: self.hosts(Role::Patroni),
                    port: POSTGRES_PORT,
                    check_port: Some(PATRONI_RESTAPI_PORT),
                };
                let minio = Val::Backends {
                    hosts: self.hosts(Role::Minio),
                    port: MINIO_API_PORT,
                    check_port: None,
                };
                let synapse = self.synapse().map(|h| h.address_text.clone());
                let d = &self.topology.domain;
                let mut ports = vec![80, 443];
                if self.topology.federation {
                    ports.push(8448);
                }
                let mut processes = vec![json!({
                    "name": crate::routing::MAIN_NAME, "type": "main", "stream": null,
                    "port": MAIN_CLIENT_PORT,
                })];
                processes.extend(self.processes.iter().map(Process::to_json));
                let backends: Vec<Value> =
                    self.routing.backends.iter().map(|b| b.to_json()).collect();
                let routes: Vec<Value> = self.routing.routes.iter().map(|r| r.to_json()).collect();
                v.insert("haproxy_vip", json!(vip));
                v.insert("haproxy_public_ports", json!(ports));
                v.insert("haproxy_synapse_address", json!(synapse));
                v.insert("haproxy_synapse_web_port", json!(MAIN_CLIENT_PORT));
                v.insert(
                    "haproxy_synapse_federation_port",
                    json!(MAIN_FEDERATION_PORT),
                );
                v.insert(
                    "haproxy_synapse_processes",
                    Val::Json(Value::Array(processes)),
                );
                v.insert(
                    "haproxy_synapse_backends",
                    Val::Json(Value::Array(backends)),
                );
                v.insert("haproxy_synapse_routes", Val::Json(Value::Array(routes)));
                v.insert(
                    "haproxy_well_known_hosts",
                    Val::Strings(self.well_known_hosts()),
                );
                v.insert(
                    "haproxy_tls_certificate_names",
                    Val::Strings(self.well_known_hosts()),
                );
                v.insert(
                    "haproxy_well_known_server",
                    json!(crate::routing::well_known_server(d)),
                );
                v.insert(
                    "haproxy_well_known_client",
                    json!(crate::routing::well_known_client(d)),
                );
                v.insert(
                    "haproxy_admin_networks",
                    Val::Strings(self.admin_networks.clone()),
                );
                v.insert("haproxy_postgres_port", json!(POSTGRES_PORT));
                v.insert("haproxy_postgres_backends", postgres);
                v.insert("haproxy_minio_port", json!(MINIO_API_PORT));
                v.insert("haproxy_minio_backends", minio);
            }
            "keepalived" => {
                v.insert("keepalived_vip", json!(vip));
                v.insert(
                    "keepalived_vip_prefix_len",
                    json!(self.ip.network.prefix_len()),
                );
                v.insert("keepalived_virtual_router_id", json!(self.keepalived_vrid));
                v.insert("keepalived_auth_pass", vault("vault_keepalived_auth_pass"));
            }
            "minio" => {
                let n = self.topology.role(Role::Minio).count;
                let parity = default_parity(erasure_set_size(n));
                v.insert("minio_nodes", self.peers(Role::Minio));
                v.insert("minio_parity", json!(parity));
                v.insert("minio_api_port", json!(MINIO_API_PORT));
                v.insert("minio_console_port", json!(MINIO_CONSOLE_PORT));
                v.insert("minio_region", json!(MINIO_REGION));
                v.insert("minio_root_user", vault("vault_minio_root_user"));
                v.insert("minio_root_password", vault("vault_minio_root_password"));
                v.insert("minio_synapse_bucket", json!(self.topology.media_bucket));
            }
            "livekit" => {
                // One Redis for the whole mesh, on the first LiveKit node: LiveKit's `redis:`
                // block names one address. The secrets come from the vault through the role's
                // defaults.
                if let Some(first) = self.ip.hosts_of(Role::Livekit).next() {
                    v.insert("livekit_sfu_redis_host", json!(first.address_text.clone()));
                }
                v.insert("livekit_sfu_redis_port", json!(LIVEKIT_REDIS_PORT));
                v.insert("livekit_sfu_port", json!(LIVEKIT_PORT));
                v.insert("livekit_sfu_rtc_tcp_port", json!(LIVEKIT_RTC_TCP_PORT));
                v.insert("livekit_sfu_rtc_udp_port", json!(LIVEKIT_RTC_UDP_PORT));
                v.insert("livekit_sfu_turn_udp_port", json!(LIVEKIT_TURN_UDP_PORT));
                v.insert("livekit_sfu_turn_tls_port", json!(LIVEKIT_TURN_TLS_PORT));
                v.insert("livekit_sfu_turn_domain", json!(self.topology.domain));
            }
            _ => {}
        }
        v
    }

    /// Host variables: address, resources, per-host role settings, and for the Synapse host the
    /// MDAD variables (host variables outrank MDAD's own `group_vars/matrix_servers`).
    pub fn host_vars<'a>(&'a self, h: &'a PlannedHost) -> Vars<'a> {
        let size = self.topology.role(h.role).size;
        let mut v = Vars::with_capacity(if h.role == Role::Synapse { 80 } else { 16 });
        v.insert("ansible_host", h.address_text.as_str());
        v.insert("site_host_role", h.role.name());
        v.insert("site_host_index", json!(h.index));
        v.insert("site_host_short_name", h.name.as_str());
        v.insert("site_host_fqdn", h.fqdn.as_str());
        v.insert("site_host_address_pinned", json!(h.pinned));
        v.insert("site_host_vcpu", json!(size.vcpu));
        v.insert("site_host_ram_gb", json!(size.ram_gb));
        if let Some(d) = size.disk_gb {
            v.insert("site_host_disk_gb", json!(d));
        }
        if let Some(b) = size.bandwidth_gbps {
            v.insert("site_host_bandwidth_gbps", json!(b));
        }
        match h.role {
            Role::Patroni => {
                v.insert("patroni_name", h.name.as_str());
                v.insert("etcd_name", h.name.as_str());
            }
            Role::Haproxy => {
                let peers: Vec<&str> = self
                    .ip
                    .hosts_of(Role::Haproxy)
                    .filter(|p| p.name != h.name)
                    .map(|p| p.address_text.as_str())
                    .collect();
                // The first node is preferred; each next one 10 lower.
                let priority = 150u32.saturating_sub(10 * (h.index - 1)).max(1);
                v.insert("keepalived_priority", json!(priority));
                v.insert("keepalived_unicast_src_ip", json!(h.address_text.clone()));
                v.insert("keepalived_unicast_peers", Val::Strs(peers));
            }
            Role::Synapse => v.0.extend(self.mdad_vars(h.address).0),
            Role::Livekit => v.insert("livekit_sfu_node_ip", json!(h.address_text.clone())),
            _ => {}
        }
        v.checked()
    }

    /// The MDAD variables of the Synapse host, with MDAD's current names.
    pub fn mdad_vars(&self, synapse: Ipv4Addr) -> Vars<'_> {
        let t = &self.topology;
        let p = &self.pools;
        let vip = self.ip.vip;
        let mut v = Vars::with_capacity(64);
        v.insert("matrix_domain", json!(t.domain));
        v.insert(
            "matrix_playbook_migration_validated_version",
            json!(MDAD_VALIDATED_VERSION),
        );
        v.insert("matrix_homeserver_implementation", json!("synapse"));
        v.insert(
            "matrix_homeserver_generic_secret_key",
            vault("vault_matrix_homeserver_generic_secret_key"),
        );
        v.insert("matrix_homeserver_federation_enabled", json!(t.federation));

        // No reverse proxy of MDAD's (`none`): Traefik is not in Debian, and the worker-routing
        // companion's nginx configuration needs a newer nginx than Debian ships. Our HAProxy
        // routes every endpoint to the Synapse process that serves it, on the ports MDAD
        // publishes on this host's intranet address; it also answers /.well-known/matrix/*.
        v.insert("matrix_playbook_reverse_proxy_type", json!("none"));
        v.insert("matrix_playbook_ssl_enabled", json!(true));
        v.insert(
            "matrix_synapse_reverse_proxy_companion_enabled",
            json!(false),
        );
        v.insert("matrix_static_files_enabled", json!(false));
        v.insert(
            "matrix_synapse_container_client_api_host_bind_port",
            json!(format!("{synapse}:{SYNAPSE_CLIENT_PORT}")),
        );
        if t.federation {
            v.insert(
                "matrix_synapse_container_federation_api_plain_host_bind_port",
                json!(format!("{synapse}:{SYNAPSE_FEDERATION_PORT}")),
            );
        }
        v.insert(
            "matrix_synapse_workers_container_host_bind_address",
            json!(synapse.to_string()),
        );
        // Metrics for the monitoring server, on the intranet address only.
        v.insert("matrix_synapse_metrics_enabled", json!(true));
        v.insert(
            "matrix_synapse_container_metrics_api_host_bind_port",
            json!(format!("{synapse}:{SYNAPSE_METRICS_PORT}")),
        );

        // Offline: nothing from Docker's or Debian's repositories at MDAD's run (the
        // docker role of this collection installs Debian's docker.io), no image pulls but the
        // Synapse image's from the site's own registry, and no file the dynamic inventory
        // cannot provide (MDAD's state preserver copies host_vars/<host>/vars.yml and the
        // playbook's git commit; the site file is the operator's state).
        v.insert("matrix_playbook_docker_installation_enabled", json!(false));
        v.insert(
            "devture_docker_sdk_for_python_installation_enabled",
            json!(false),
        );
        v.insert("devture_timesync_installation_enabled", json!(false));
        v.insert(
            "devture_playbook_help_apt_cache_prewarming_enabled",
            json!(false),
        );
        v.insert("devture_playbook_state_preserver_enabled", json!(false));
        v.insert(
            "devture_systemd_docker_base_container_image_pull_method",
            json!("none"),
        );
        v.insert(
            "matrix_synapse_container_image",
            json!(format!("{}/{}", t.image_registry, SYNAPSE_IMAGE)),
        );
        v.insert(
            "matrix_synapse_container_image_customizations_enabled",
            json!(false),
        );
        v.insert(
            "valkey_container_image",
            json!(format!("{}/{}", t.image_registry, VALKEY_IMAGE)),
        );
        v.insert("exim_relay_enabled", json!(false));
        v.insert("matrix_client_element_enabled", json!(false));
        // The admin UI: no image of it is reachable offline, and Synapse's admin API is served
        // through HAProxy to the site's admin networks only (README: the public surface).
        v.insert("matrix_ketesa_enabled", json!(false));

        // Workers: the specialized preset, every count explicit.
        v.insert("matrix_synapse_workers_enabled", json!(true));
        v.insert(
            "matrix_synapse_workers_preset",
            json!("specialized-workers"),
        );
        for (name, count) in self.workers.variables() {
            v.insert(name, json!(count));
        }

        // External PostgreSQL through PgBouncer on this host (addresses, not names: Synapse's
        // container does not read the host's /etc/hosts).
        v.insert("postgres_enabled", json!(false));
        v.insert("matrix_synapse_database_host", json!(synapse.to_string()));
        v.insert("matrix_synapse_database_port", json!(PGBOUNCER_PORT));
        v.insert("matrix_synapse_database_user", json!("synapse"));
        v.insert(
            "matrix_synapse_database_password",
            vault("vault_synapse_db_password"),
        );
        v.insert("matrix_synapse_database_database", json!("synapse"));
        v.insert("matrix_synapse_database_cp_min", json!(p.cp_min));
        v.insert("matrix_synapse_database_cp_max", json!(p.cp_max));

        // Media in MinIO through the VIP.
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_enabled",
            json!(true),
        );
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_config_bucket",
            json!(t.media_bucket),
        );
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_config_endpoint_url",
            json!(format!("http://{vip}:{MINIO_API_PORT}")),
        );
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_config_region_name",
            json!(MINIO_REGION),
        );
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_config_access_key_id",
            vault("vault_minio_synapse_access_key"),
        );
        v.insert(
            "matrix_synapse_ext_synapse_s3_storage_provider_config_secret_access_key",
            vault("vault_minio_synapse_secret_key"),
        );

        // External TURN: our coturn servers, not MDAD's.
        v.insert("coturn_enabled", json!(false));
        v.insert("matrix_synapse_turn_uris", Val::Strings(self.turn_uris()));
        v.insert(
            "matrix_synapse_turn_shared_secret",
            vault("vault_turn_shared_secret"),
        );

        // External LiveKit: our livekit group, never MDAD's LiveKit server. MDAD turns its JWT
        // service on only together with its own LiveKit server (`matrix_rtc_enabled and
        // livekit_server_enabled`), so the site's `matrix_rtc` turns both the RTC stack and the
        // JWT service on, and the JWT service gets our LiveKit's URL and API key; Element Call
        // and Synapse's RTC transports point at the JWT service as MDAD wires them.
        if let Some(url) = self.livekit_url() {
            v.insert("livekit_server_enabled", json!(false));
            v.insert("matrix_rtc_enabled", json!(t.matrix_rtc));
            v.insert("matrix_livekit_jwt_service_enabled", json!(t.matrix_rtc));
            v.insert(
                "matrix_livekit_jwt_service_environment_variable_livekit_url",
                json!(url),
            );
            v.insert(
                "matrix_livekit_jwt_service_environment_variable_livekit_key",
                vault("vault_livekit_api_key"),
            );
            v.insert(
                "matrix_livekit_jwt_service_environment_variable_livekit_secret",
                vault("vault_livekit_api_secret"),
            );
        }
        v
    }
}

/// MinIO's erasure set size for `drives` drives in one pool: the largest of 2..=16 dividing it.
pub fn erasure_set_size(drives: u32) -> u32 {
    (2..=16)
        .rev()
        .find(|s| drives % s == 0)
        .unwrap_or(drives.max(1))
}

/// MinIO's default parity for an erasure set size.
pub fn default_parity(set: u32) -> u32 {
    match set {
        0 | 1 => 0,
        2 | 3 => 1,
        4 | 5 => 2,
        6 | 7 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(extra: &str) -> PlannedSite {
        let text =
            format!("domain: chat.z3r0d3v.com\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n{extra}");
        let site = SiteFile::parse(&text, std::path::Path::new("t.yml")).expect("parses");
        PlannedSite::plan(&site).expect("plans")
    }

    #[test]
    fn etc_hosts_maps_the_matrix_names_to_the_vip_first() {
        let p = planned("scale: small\n");
        let entries = p.etc_hosts();
        assert_eq!(entries.len(), 17);
        assert_eq!(entries[0]["ip"], "10.20.0.10");
        assert_eq!(entries[0]["names"][0], "chat.z3r0d3v.com");
        assert!(entries.iter().any(|e| e["ip"] == "10.20.0.31"
            && e["names"] == json!(["patroni-1.chat.z3r0d3v.com", "patroni-1"])));
    }

    #[test]
    fn haproxy_serves_discovery_on_the_base_domain_unless_told_not_to() {
        let p = planned("scale: small\n");
        assert_eq!(
            p.well_known_hosts(),
            ["chat.z3r0d3v.com", "matrix.chat.z3r0d3v.com"]
        );
        let text = crate::sheet::render_text(&crate::sheet::sheet(&p));
        assert!(text.contains("Discovery: HAProxy on the VIP answers https://chat.z3r0d3v.com/.well-known/matrix/server"), "{text}");

        let p = planned("scale: small\nserve_base_domain: false\n");
        assert_eq!(p.well_known_hosts(), ["matrix.chat.z3r0d3v.com"]);
        let text = crate::sheet::render_text(&crate::sheet::sheet(&p));
        for line in [
            "the web server of chat.z3r0d3v.com must answer:",
            "  GET https://chat.z3r0d3v.com/.well-known/matrix/server\n    {\"m.server\":\"matrix.chat.z3r0d3v.com:8448\"}",
            "  GET https://chat.z3r0d3v.com/.well-known/matrix/client\n    {\"m.homeserver\":{\"base_url\":\"https://matrix.chat.z3r0d3v.com\"}}\n    with the header Access-Control-Allow-Origin: *",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        let sheet = serde_json::to_value(crate::sheet::sheet(&p)).expect("serializes");
        assert_eq!(sheet["discovery"]["served_by_haproxy"], false);
        assert_eq!(
            sheet["discovery"]["client_header"],
            "Access-Control-Allow-Origin: *"
        );
    }

    #[test]
    fn admin_networks_are_private_unless_the_site_says_otherwise() {
        let p =
            planned("scale: small\nadmin_networks: [10.20.5.0/24, 10.20.5.0/24, 192.168.1.7/32]\n");
        assert_eq!(p.admin_networks, ["10.20.5.0/24", "192.168.1.7/32"]);
        let site = |extra: &str| {
            let text = format!(
                "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n{extra}"
            );
            let site = SiteFile::parse(&text, std::path::Path::new("t.yml")).expect("parses");
            PlannedSite::plan(&site).map(|p| p.admin_networks)
        };
        let err = site("admin_networks: [203.0.113.0/24]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin_networks")
                && err.contains("203.0.113.0/24")
                && err.contains("admin_networks_public"),
            "{err}"
        );
        let err = site("admin_networks: [10.20.5.1/24]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean 10.20.5.0/24"), "{err}");
        let err = site("admin_networks: [everyone]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'everyone'") || err.contains("everyone"),
            "{err}"
        );
        assert_eq!(
            site("admin_networks: [203.0.113.0/24]\nadmin_networks_public: true\n").unwrap(),
            ["203.0.113.0/24"]
        );
    }

    #[test]
    fn the_etc_hosts_variable_is_the_hosts_sheet() {
        let p = planned("scale: large\nvip_names: [call.chat.z3r0d3v.com]\n");
        let from_vars = serde_json::to_value(Val::EtcHosts(&p)).expect("serializes");
        assert_eq!(from_vars, Value::Array(p.etc_hosts()));
    }

    #[test]
    fn synapse_reaches_pgbouncer_on_its_own_address_and_pool_matches() {
        let p = planned("scale: large\n");
        let v = p.mdad_vars(Ipv4Addr::new(10, 20, 0, 21)).to_json();
        assert_eq!(v["matrix_synapse_database_host"], "10.20.0.21");
        assert_eq!(v["matrix_synapse_database_port"], 6432);
        assert_eq!(v["postgres_enabled"], false);
        let pg = p.group_vars("pgbouncer").to_json();
        let cp_max = v["matrix_synapse_database_cp_max"].as_u64().unwrap_or(0);
        let procs = pg["pgbouncer_synapse_processes"].as_u64().unwrap_or(0);
        assert!(pg["pgbouncer_default_pool_size"].as_u64().unwrap_or(0) >= procs * cp_max);
    }

    #[test]
    fn minio_pool_layout() {
        let p = planned("scale: medium\n");
        let m = p.group_vars("minio").to_json();
        assert_eq!(m["minio_nodes"].as_array().map(Vec::len), Some(4));
        assert_eq!(m["minio_parity"], 2);
        assert_eq!(erasure_set_size(6), 6);
        assert_eq!(erasure_set_size(32), 16);
    }

    #[test]
    fn keepalived_peers_and_priorities() {
        let p = planned("scale: small\n");
        let hosts: Vec<_> = p.ip.hosts_of(Role::Haproxy).cloned().collect();
        let first = p.host_vars(&hosts[0]).to_json();
        let second = p.host_vars(&hosts[1]).to_json();
        assert_eq!(first["keepalived_unicast_peers"], json!(["10.20.0.12"]));
        assert_eq!(second["keepalived_unicast_peers"], json!(["10.20.0.11"]));
        assert!(first["keepalived_priority"].as_u64() > second["keepalived_priority"].as_u64());
        assert_eq!(
            p.group_vars("keepalived").to_json()["keepalived_virtual_router_id"],
            10
        );
    }

    #[test]
    fn the_backup_tier_names_its_hosts_and_the_stanza_archiving_uses() {
        let p = planned("scale: small\n");
        for group in ["backup", "patroni", "matrix_servers"] {
            let v = p.group_vars(group).to_json();
            assert_eq!(v["backup_stanza"], "chat_z3r0d3v_com", "{group}");
            assert_eq!(v["backup_repo_host"], "10.20.0.81", "{group}");
            assert_eq!(v["backup_synapse_host"], "10.20.0.21", "{group}");
            assert_eq!(v["backup_pg_hosts"][2]["address"], "10.20.0.33", "{group}");
            assert_eq!(v["backup_media_endpoint_url"], "http://10.20.0.10:9000");
            assert_eq!(
                v["backup_media_secret_key"],
                "{{ vault_minio_synapse_secret_key }}"
            );
            assert_eq!(v["backup_max_age_hours"], BACKUP_MAX_AGE_HOURS);
        }
        let patroni = p.group_vars("patroni").to_json();
        assert_eq!(
            patroni["patroni_pgbackrest_stanza"],
            patroni["backup_stanza"]
        );
        assert!(p
            .group_vars("haproxy")
            .to_json()
            .get("backup_stanza")
            .is_none());
    }

    #[test]
    fn livekit_meshes_through_one_redis_and_mdad_uses_it_not_its_own() {
        let p = planned("scale: medium\n");
        let nodes: Vec<_> = p.ip.hosts_of(Role::Livekit).cloned().collect();
        assert_eq!(nodes.len(), 3);
        let g = p.group_vars("livekit").to_json();
        // One Redis, on the first node, for every node.
        assert_eq!(g["livekit_sfu_redis_host"], json!(nodes[0].address_text));
        assert_eq!(g["livekit_sfu_redis_port"], 6379);
        assert_eq!(g["livekit_sfu_rtc_udp_port"], 7882);
        assert_eq!(g["livekit_sfu_turn_udp_port"], 3479);
        assert_eq!(g["livekit_sfu_turn_tls_port"], 5350);
        for n in &nodes {
            let h = p.host_vars(n).to_json();
            assert_eq!(h["livekit_sfu_node_ip"], json!(n.address_text));
        }
        let url = "wss://matrix.chat.z3r0d3v.com/livekit-server";
        assert_eq!(p.site_vars().to_json()["site_livekit_url"], url);
        let v = p.mdad_vars(Ipv4Addr::new(10, 20, 0, 21)).to_json();
        assert_eq!(v["livekit_server_enabled"], false);
        assert_eq!(v["matrix_rtc_enabled"], false);
        assert_eq!(v["matrix_livekit_jwt_service_enabled"], false);
        let rtc = planned("scale: small\nmatrix_rtc: true\n");
        let v = rtc.mdad_vars(Ipv4Addr::new(10, 20, 0, 21)).to_json();
        assert_eq!(v["matrix_rtc_enabled"], true);
        assert_eq!(v["matrix_livekit_jwt_service_enabled"], true);
        assert_eq!(v["livekit_server_enabled"], false);
        assert_eq!(
            v["matrix_livekit_jwt_service_environment_variable_livekit_url"],
            url
        );
        assert_eq!(
            v["matrix_livekit_jwt_service_environment_variable_livekit_key"],
            "{{ vault_livekit_api_key }}"
        );
        assert_eq!(
            v["matrix_livekit_jwt_service_environment_variable_livekit_secret"],
            "{{ vault_livekit_api_secret }}"
        );
        assert!(p.site_vars().to_json()["site_vault_variables"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("vault_livekit_redis_password"))));
    }
}
