//! The rules matrix-ha's dynamic inventory and its modules share, in one place.
//!
//! Pure functions and tables, no I/O: the inventory (which plans a site) and the modules (which
//! check what a task gives them) call the same code, so they cannot disagree.
//!
//! - [`pool`]: PgBouncer pool sizing and PostgreSQL's `max_connections` headroom;
//! - [`vrid`]: the keepalived VRID default;
//! - [`session`]: the per-session settings Synapse makes, as role defaults;
//! - [`names`]: host-name and address syntax;
//! - [`scale`]: the design's scales, roles, server sizes and worker counts.

pub mod names;
pub mod pool;
pub mod scale;
pub mod session;
pub mod vrid;
