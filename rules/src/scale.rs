//! The design's scales (doc 001): the roles, how many servers of each and their size, and the
//! Synapse worker counts, per scale. One set of roles at every scale; only counts, sizes and
//! workers change.

use std::fmt;

/// The three scales of the design, by concurrent users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scale {
    Small,
    Medium,
    Large,
}

impl Scale {
    pub const ALL: [Scale; 3] = [Scale::Small, Scale::Medium, Scale::Large];

    pub fn name(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Large => "large",
        }
    }

    /// Concurrent users the scale is designed for.
    pub fn capacity_ccu(self) -> u64 {
        match self {
            Scale::Small => 1_000,
            Scale::Medium => 5_000,
            Scale::Large => 10_000,
        }
    }

    pub fn parse(value: &str) -> Option<Scale> {
        Scale::ALL.into_iter().find(|s| s.name() == value)
    }

    /// The smallest scale whose capacity covers `ccu`.
    pub fn for_ccu(ccu: u64) -> Option<Scale> {
        Scale::ALL.into_iter().find(|s| ccu <= s.capacity_ccu())
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A server role. The order is the order of the address blocks (see [`crate::ipplan`]) and must
/// never change: appending a new role at the end keeps every existing address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Haproxy,
    Synapse,
    Patroni,
    Minio,
    Coturn,
    Livekit,
    Monitoring,
    Backup,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Haproxy,
        Role::Synapse,
        Role::Patroni,
        Role::Minio,
        Role::Coturn,
        Role::Livekit,
        Role::Monitoring,
        Role::Backup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Haproxy => "haproxy",
            Role::Synapse => "synapse",
            Role::Patroni => "patroni",
            Role::Minio => "minio",
            Role::Coturn => "coturn",
            Role::Livekit => "livekit",
            Role::Monitoring => "monitoring",
            Role::Backup => "backup",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == value)
    }

    /// Index of the role's address block.
    pub fn block_index(self) -> u32 {
        Role::ALL.iter().position(|r| *r == self).unwrap_or(0) as u32
    }

    /// Inventory groups a host of this role belongs to (besides the site and scale groups).
    pub fn groups(self) -> &'static [&'static str] {
        match self {
            Role::Haproxy => &["haproxy", "keepalived"],
            Role::Synapse => &["synapse", "matrix_servers", "pgbouncer"],
            Role::Patroni => &["patroni", "etcd"],
            Role::Minio => &["minio"],
            Role::Coturn => &["coturn"],
            Role::Livekit => &["livekit"],
            Role::Monitoring => &["monitoring"],
            Role::Backup => &["backup"],
        }
    }
}

/// Resources of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub vcpu: u32,
    pub ram_gb: u32,
    /// Data disk; `None` where the design gives none.
    pub disk_gb: Option<u32>,
    /// Network bandwidth; the design gives it for TURN servers only.
    pub bandwidth_gbps: Option<u32>,
}

const fn size(vcpu: u32, ram_gb: u32, disk_gb: Option<u32>) -> Size {
    Size {
        vcpu,
        ram_gb,
        disk_gb,
        bandwidth_gbps: None,
    }
}

/// The design's table (doc 001): server count and size of a role at a scale.
pub fn design_role(scale: Scale, role: Role) -> (u32, Size) {
    use Role::*;
    use Scale::*;
    match (role, scale) {
        (Synapse, Small) => (1, size(16, 64, Some(500))),
        (Synapse, Medium) => (1, size(24, 96, Some(1_000))),
        (Synapse, Large) => (1, size(48, 128, Some(2_000))),
        (Patroni, Small) => (3, size(8, 32, Some(500))),
        (Patroni, Medium) => (3, size(12, 48, Some(1_000))),
        (Patroni, Large) => (3, size(16, 64, Some(1_000))),
        (Minio, Small) => (4, size(4, 16, Some(2_000))),
        (Minio, Medium) => (4, size(8, 32, Some(4_000))),
        (Minio, Large) => (4, size(8, 32, Some(8_000))),
        (Haproxy, _) => (2, size(4, 8, None)),
        (Coturn, Small) => (2, with_bandwidth(size(4, 8, None), 1)),
        (Coturn, Medium) => (2, with_bandwidth(size(4, 8, None), 2)),
        (Coturn, Large) => (3, with_bandwidth(size(8, 16, None), 5)),
        (Livekit, Small) => (2, size(8, 16, None)),
        (Livekit, Medium) => (3, size(12, 24, None)),
        (Livekit, Large) => (4, size(16, 32, None)),
        (Monitoring, Small) => (1, size(4, 16, None)),
        (Monitoring, Medium | Large) => (1, size(8, 32, None)),
        (Backup, Small | Medium) => (1, size(4, 16, Some(2_000))),
        (Backup, Large) => (1, size(8, 32, Some(5_000))),
    }
}

const fn with_bandwidth(mut s: Size, gbps: u32) -> Size {
    s.bandwidth_gbps = Some(gbps);
    s
}

/// The design's Synapse worker counts, before mapping onto MDAD's worker types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesignWorkers {
    pub sync: u32,
    pub generic: u32,
    pub federation_sender: u32,
    pub event_persister: u32,
    /// The single-instance workers (pusher, media repository, appservice, user directory,
    /// background) and the stream writers other than `events`; without them the main process
    /// does their work.
    pub auxiliary: bool,
}

pub fn design_workers(scale: Scale) -> DesignWorkers {
    let (sync, generic, federation_sender, event_persister) = match scale {
        Scale::Small => (4, 2, 2, 1),
        Scale::Medium => (6, 3, 3, 2),
        Scale::Large => (8, 4, 4, 2),
    };
    DesignWorkers {
        sync,
        generic,
        federation_sender,
        event_persister,
        auxiliary: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_table_doc_001() {
        // (scale, role) -> (servers, vCPU, RAM GB, disk GB, Gbps), as doc 001 lists them.
        use Role::*;
        use Scale::*;
        for ((scale, role), (n, vcpu, ram, disk, gbps)) in [
            ((Small, Patroni), (3, 8, 32, Some(500), None)),
            ((Large, Patroni), (3, 16, 64, Some(1_000), None)),
            ((Medium, Minio), (4, 8, 32, Some(4_000), None)),
            ((Small, Haproxy), (2, 4, 8, None, None)),
            ((Large, Coturn), (3, 8, 16, None, Some(5))),
            ((Medium, Livekit), (3, 12, 24, None, None)),
            ((Large, Synapse), (1, 48, 128, Some(2_000), None)),
            ((Large, Backup), (1, 8, 32, Some(5_000), None)),
        ] {
            let (count, size) = design_role(scale, role);
            assert_eq!(
                (
                    count,
                    size.vcpu,
                    size.ram_gb,
                    size.disk_gb,
                    size.bandwidth_gbps
                ),
                (n, vcpu, ram, disk, gbps),
                "{scale} {}",
                role.name()
            );
        }
    }

    #[test]
    fn workers_and_capacity_by_scale() {
        // Doc 001: small 4/2/2/1, medium 6/3/3/2, large 8/4/4/2 (sync, generic, sender, persister).
        for (scale, want, ccu) in [
            (Scale::Small, (4, 2, 2, 1), 1_000),
            (Scale::Medium, (6, 3, 3, 2), 5_000),
            (Scale::Large, (8, 4, 4, 2), 10_000),
        ] {
            let w = design_workers(scale);
            assert_eq!(
                (w.sync, w.generic, w.federation_sender, w.event_persister),
                want
            );
            assert!(w.auxiliary);
            assert_eq!(scale.capacity_ccu(), ccu);
            assert_eq!(Scale::for_ccu(ccu), Some(scale));
            assert_eq!(Scale::parse(scale.name()), Some(scale));
        }
        assert_eq!(Scale::for_ccu(10_001), None);
        // The address blocks' order never changes.
        assert_eq!(Role::Haproxy.block_index(), 0);
        assert_eq!(Role::Backup.block_index(), 7);
    }
}
