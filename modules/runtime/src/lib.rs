//! The Ansible binary-module runtime every matrix-ha module is built on.
//!
//! It plays the part of ansible-core's `AnsibleModule` for native modules:
//! - [`spec`]: a module declares its options once; that spec drives validation, `--help` and
//!   the ansible-doc sidecar ([`docs`]);
//! - [`params`] and [`coerce`]: the flat JSON args file Ansible writes, Ansible's type
//!   coercion, unknown-option and choice checks, `no_log` masking;
//! - [`result`]: one JSON result, with every secret scrubbed from every string in it;
//! - [`text`]: the one check every value goes through before it is written into a
//!   configuration file, by the file's syntax; [`yaml`]: YAML that reads back with its types;
//! - [`fs`]: safe file writes under an exclusive lock (atomic rename, in-place fallback for
//!   bind-mounted files, stale temporary files cleaned);
//! - [`run`]: the process around it all, where every error and every panic becomes a
//!   `failed` result on stdout.
//!
//! A module binary is a typed-args struct, a static [`ModuleSpec`] and one function:
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     matrix_ha_runtime::main(&etc_hosts::SPEC, etc_hosts::run)
//! }
//! ```

pub mod coerce;
pub mod docs;
pub mod fs;
pub mod params;
pub mod result;
pub mod run;
pub mod spec;
pub mod text;
pub mod yaml;

pub use result::{Diff, Failure, Outcome};
pub use run::{execute, main, Context, Overrides, RunFn};
pub use spec::{DefaultValue, Kind, ModuleSpec, OptionSpec, RequiredIf, ReturnSpec};
