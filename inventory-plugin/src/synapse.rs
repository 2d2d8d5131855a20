//! Synapse workers as MDAD counts them; the database pool sizing that follows from them is the
//! rules crate's ([`matrix_ha_rules::pool`]).

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

pub use matrix_ha_rules::pool::{
    SitePools as PoolSizing, ALERT_PERCENT as POOL_SHARE_PERCENT, CP_MAX, CP_MIN,
    SUPERUSER_RESERVED,
};

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
