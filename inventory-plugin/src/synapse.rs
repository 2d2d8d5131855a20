//! Synapse workers as MDAD counts them, and the database pool sizing that follows from them.

use crate::topology::DesignWorkers;

/// MDAD's worker counts (`matrix_synapse_workers_<type>_workers_count`) for the
/// `specialized-workers` preset. Every count is emitted explicitly so the inventory, not the
/// preset's current defaults, decides how many Synapse processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdadWorkers {
    pub sync: u32,
    pub room: u32,
    pub client_reader: u32,
    pub federation_reader: u32,
    pub federation_sender: u32,
    pub events_stream_writers: u32,
    /// Single-instance or one-per-preset workers, at the preset's value of 1 (0 when the site
    /// turns `workers.auxiliary` off): pusher, media_repository, appservice, user_dir, background.
    pub singles: [(&'static str, u32); 5],
    /// Stream writers other than `events`, at the preset's values.
    pub other_stream_writers: [(&'static str, u32); 9],
}

impl MdadWorkers {
    /// Maps the design's counts onto MDAD's specialized worker types.
    ///
    /// MDAD refuses generic workers next to room/sync/client_reader/federation_reader workers,
    /// so the design's `generic` count `n` becomes `max(n, 3)` specialized workers handed out
    /// round-robin over room → client_reader → federation_reader. Each type gets at least one:
    /// without it, its endpoints fall back to the main process.
    pub fn from_design(w: &DesignWorkers) -> MdadWorkers {
        let total = w.generic.max(3);
        let aux = u32::from(w.auxiliary);
        MdadWorkers {
            sync: w.sync,
            room: total.div_ceil(3),
            client_reader: (total + 1) / 3,
            federation_reader: total / 3,
            federation_sender: w.federation_sender,
            events_stream_writers: w.event_persister,
            singles: [
                ("pusher", aux),
                ("media_repository", aux),
                ("appservice", aux),
                ("user_dir", aux),
                ("background", aux),
            ],
            other_stream_writers: [
                ("typing", aux),
                ("to_device", aux),
                ("account_data", aux),
                ("receipts", aux),
                ("presence", aux),
                ("push_rules", aux),
                ("device_lists", aux),
                ("thread_subscriptions", 0),
                ("quarantined_media_changes", aux),
            ],
        }
    }

    /// All `(MDAD variable, count)` pairs.
    pub fn variables(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = [
            ("sync", self.sync),
            ("room", self.room),
            ("client_reader", self.client_reader),
            ("federation_reader", self.federation_reader),
            ("generic", 0),
            ("federation_sender", self.federation_sender),
        ]
        .into_iter()
        .chain(self.singles)
        .map(|(t, n)| (format!("matrix_synapse_workers_{t}_workers_count"), n))
        .collect();
        v.push((
            "matrix_synapse_workers_stream_writer_events_stream_workers_count".into(),
            self.events_stream_writers,
        ));
        for (stream, n) in self.other_stream_writers {
            v.push((
                format!("matrix_synapse_workers_stream_writer_{stream}_stream_workers_count"),
                n,
            ));
        }
        v
    }

    /// Synapse processes: the main process plus every worker.
    pub fn processes(&self) -> u32 {
        1 + self.variables().iter().map(|(_, n)| n).sum::<u32>()
    }
}

/// Synapse's per-process connection pool (`matrix_synapse_database_cp_min`, MDAD's default).
pub const CP_MIN: u32 = 5;
/// Synapse's per-process connection pool ceiling (`matrix_synapse_database_cp_max`): the
/// design's "10 connections per process".
pub const CP_MAX: u32 = 10;
/// Share of PostgreSQL's `max_connections` PgBouncer may use; the rest is headroom for
/// replication, backups, monitoring and admins (doc 002: pool 18 of 22, alert at 80 %).
pub const POOL_SHARE_PERCENT: u32 = 80;
/// PostgreSQL `superuser_reserved_connections`, inside the headroom.
pub const SUPERUSER_RESERVED: u32 = 3;

/// PgBouncer and PostgreSQL connection numbers for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizing {
    pub synapse_processes: u32,
    pub cp_min: u32,
    pub cp_max: u32,
    /// Most connections Synapse can open: processes × cp_max.
    pub synapse_max_connections: u32,
    /// PgBouncer `default_pool_size` for the Synapse (database, user) pair: the design's
    /// "(workers + main) × 10" so no Synapse connection waits on the pooler.
    pub default_pool_size: u32,
    /// PgBouncer `reserve_pool_size`: a tenth of the pool, at least 5.
    pub reserve_pool_size: u32,
    /// PgBouncer `max_db_connections`: pool plus reserve, the hard cap towards PostgreSQL.
    pub max_db_connections: u32,
    /// PgBouncer `max_client_conn`: twice Synapse's ceiling, so a rolling restart where old
    /// and new processes overlap never hits the limit.
    pub max_client_conn: u32,
    /// PostgreSQL `max_connections`: the pooler's cap is at most 80 % of it, rounded up to 10.
    pub postgres_max_connections: u32,
}

impl PoolSizing {
    pub fn for_processes(processes: u32) -> PoolSizing {
        let synapse_max = processes * CP_MAX;
        let pool = synapse_max;
        let reserve = (pool / 10).max(5);
        let max_db = pool + reserve;
        let needed = (max_db * 100).div_ceil(POOL_SHARE_PERCENT);
        let postgres_max = needed.div_ceil(10) * 10;
        PoolSizing {
            synapse_processes: processes,
            cp_min: CP_MIN,
            cp_max: CP_MAX,
            synapse_max_connections: synapse_max,
            default_pool_size: pool,
            reserve_pool_size: reserve,
            max_db_connections: max_db,
            max_client_conn: 2 * synapse_max,
            postgres_max_connections: postgres_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{design_workers, Scale};

    #[test]
    fn generic_workers_map_onto_specialized_types() {
        let small = MdadWorkers::from_design(&design_workers(Scale::Small));
        assert_eq!(
            (small.room, small.client_reader, small.federation_reader),
            (1, 1, 1)
        );
        let large = MdadWorkers::from_design(&design_workers(Scale::Large));
        assert_eq!(
            (large.room, large.client_reader, large.federation_reader),
            (2, 1, 1)
        );
        let six = MdadWorkers::from_design(&DesignWorkers {
            sync: 1,
            generic: 6,
            federation_sender: 1,
            event_persister: 1,
            auxiliary: false,
        });
        assert_eq!(
            (six.room, six.client_reader, six.federation_reader),
            (2, 2, 2)
        );
        // Without the auxiliary workers: main, 1 sync, 6 specialized, 1 sender, 1 persister.
        assert_eq!(six.processes(), 10);
        assert!(large
            .variables()
            .iter()
            .any(|(k, v)| k == "matrix_synapse_workers_generic_workers_count" && *v == 0));
    }

    #[test]
    fn processes_count_main_and_every_worker() {
        // large: 8 sync + 4 specialized + 4 senders + 2 event writers + 5 singles + 8 writers.
        let large = MdadWorkers::from_design(&design_workers(Scale::Large));
        assert_eq!(large.processes(), 32);
        let small = MdadWorkers::from_design(&design_workers(Scale::Small));
        assert_eq!(small.processes(), 24);
    }

    #[test]
    fn pool_follows_the_design_rule_and_leaves_headroom() {
        let s = PoolSizing::for_processes(32);
        assert_eq!(s.default_pool_size, 320);
        assert_eq!(s.max_db_connections, 352);
        assert!(s.max_db_connections * 100 <= s.postgres_max_connections * POOL_SHARE_PERCENT);
        assert!(s.postgres_max_connections - s.max_db_connections >= SUPERUSER_RESERVED);
        assert!(s.max_client_conn >= s.synapse_max_connections);
    }
}
