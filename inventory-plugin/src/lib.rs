//! Dynamic Ansible inventory for matrix-ha.
//!
//! An operator describes a customer once, in a site file (domain, scale, private network, VIP,
//! optional pinned addresses and overrides). This crate turns it into everything Ansible needs
//! to deploy the highly available Matrix/Synapse design next to matrix-docker-ansible-deploy
//! (MDAD): host groups, server sizes, a deterministic IP plan that never renumbers a host when
//! the site grows, the variables our roles need, and MDAD's own variables for the Synapse host.
//!
//! The pipeline is pure and unit-tested without I/O:
//! [`site::SiteFile`] → [`topology::Topology`] → [`ipplan::IpPlan`] → [`planned::PlannedSite`]
//! → [`inventory::list`] / [`sheet::sheet`] / [`planned::PlannedSite::etc_hosts`].
//! Only [`load`] touches the file system; the `matrix_inventory` binary is thin glue around it.

pub mod error;
pub mod inventory;
pub mod ipplan;
pub mod load;
pub mod planned;
pub mod routing;
pub mod sheet;
pub mod site;
pub mod synapse;
pub mod topology;
pub mod vars;
