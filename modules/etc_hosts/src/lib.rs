//! Ansible module `z3r0d3v.matrix_ha.etc_hosts`: the intranet host map in `/etc/hosts`.
//!
//! Matrix clusters of the design run on private networks without DNS once the internet is
//! cut: every server finds the others, and the Matrix domain's VIP, through `/etc/hosts`.
//! This module keeps one marked block of that file equal to a list of entries, leaves every
//! other line alone, and deals with Debian's `127.0.1.1 HOSTNAME` line (see [`hosts`]).
//!
//! [`hosts::plan`] is the pure part (bytes in, bytes out); [`run`] reads the file, asks for
//! the plan and writes it with the runtime's safe write.

pub mod hosts;

use std::path::Path;

use matrix_ha_runtime::fs::{self, Attrs, WriteOptions};
use matrix_ha_runtime::{
    Context, DefaultValue, Diff, Failure, Kind, ModuleSpec, OptionSpec, Outcome, RequiredIf,
    ReturnSpec,
};
use serde::Deserialize;

use hosts::{Entry, Request};

/// Typed arguments; the names and types mirror [`SPEC`].
#[derive(Debug, Deserialize)]
pub struct Args {
    pub path: String,
    pub entries: Option<Vec<EntryArg>>,
    pub state: State,
    pub marker: String,
    pub backup: bool,
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EntryArg {
    pub ip: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Present,
    Absent,
}

static ENTRY_OPTIONS: [OptionSpec; 2] = [
    OptionSpec::new("ip", Kind::Str)
        .required()
        .doc(&["IPv4 or IPv6 address (no zone index)."]),
    OptionSpec::new("names", Kind::List)
        .elements(Kind::Str)
        .required()
        .doc(&[
            "Host names for the address, canonical name first (RFC 1123: labels of letters, \
             digits and inner hyphens, at most 63 characters each, 253 in all).",
        ]),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "etc_hosts",
    short_description: "Keep the intranet host map in /etc/hosts",
    description: &[
        "Keeps one marked block of a hosts file equal to O(entries); every line outside the \
         block is kept byte for byte.",
        "The block is rewritten whole, so a name removed from O(entries) is removed from the \
         file (no stale lines). Entries with the same address are merged into one line.",
        "A name has at most one address per family: an IPv4 and an IPv6 line for one name are \
         fine, two IPv4 addresses fail.",
        "When the block gives a real address to a name that Debian's C(127.0.1.1) line holds, \
         that line is commented out (with a prefix naming the block) so the name no longer \
         resolves to loopback; it is restored exactly once no name of it is mapped any more.",
        "A name that an active line outside the block maps to another address gets a warning: \
         resolvers return the first matching line.",
        "Writes are atomic (temporary file, fsync, rename). A bind-mounted file (such as \
         /etc/hosts in a container) cannot be renamed over: it is then rewritten in place, \
         never left empty or short, and the result has RV(write_method=in_place) and a warning.",
        "Runs against one file at once (several plays, C(delegate_to) tasks with different \
         markers) are serialized by an exclusive lock on C(.NAME.matrix-ha.lock) beside the \
         file, held from the read to the write: no run loses another's block. A temporary \
         file left by a killed run is removed by the next one, with a warning.",
    ],
    options: &[
        OptionSpec::new("path", Kind::Path)
            .default(DefaultValue::Str("/etc/hosts"))
            .doc(&["The hosts file. A symbolic link is followed, not replaced."]),
        OptionSpec::new("entries", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&ENTRY_OPTIONS)
            .doc(&[
                "What the block holds, in this order. An empty list removes the block.",
                "The inventory's C(matrix_inventory hosts) prints this list for a site.",
            ]),
        OptionSpec::new("state", Kind::Str)
            .choices(&["present", "absent"])
            .default(DefaultValue::Str("present"))
            .doc(&["V(absent) removes the block (O(entries) is then ignored)."]),
        OptionSpec::new("marker", Kind::Str)
            .default(DefaultValue::Str("intranet"))
            .doc(&[
                "Names the block: C(# BEGIN z3r0d3v.matrix_ha.etc_hosts MARKER) ... \
                 C(# END ...). Several blocks with different markers can share a file.",
            ]),
        OptionSpec::new("backup", Kind::Bool)
            .default(DefaultValue::Bool(false))
            .doc(&["Keep a copy of the old file as C(PATH.PID.YYYY-MM-DD@HH:MM:SS~) (UTC)."]),
        OptionSpec::new("mode", Kind::Mode).doc(&[
            "Mode of the file. Unset keeps the mode of an existing file; a new file gets 0644.",
        ]),
        OptionSpec::new("owner", Kind::Str)
            .doc(&["Owner (name or uid). Unset keeps the existing owner."]),
        OptionSpec::new("group", Kind::Str)
            .doc(&["Group (name or gid). Unset keeps the existing group."]),
    ],
    required_if: &[RequiredIf {
        option: "state",
        value: "present",
        requires: &["entries"],
    }],
    notes: &[
        "Supports check mode and diff mode; with O(state=present) and a missing file, the file \
         is created (its directory must exist).",
        "A block whose BEGIN or END line is missing or doubled is refused with the line numbers, \
         never guessed at.",
    ],
    examples: r#"- name: Write the intranet host map of chat.z3r0d3v.com
  z3r0d3v.matrix_ha.etc_hosts:
    entries:
      - ip: 10.20.0.10
        names: [chat.z3r0d3v.com, matrix.chat.z3r0d3v.com]
      - ip: 10.20.0.31
        names: [patroni-1.chat.z3r0d3v.com, patroni-1]

- name: Remove the block again
  z3r0d3v.matrix_ha.etc_hosts:
    state: absent
"#,
    returns: &[
        ReturnSpec {
            name: "path",
            description: "The file acted on (a symbolic link resolved).",
            returned: "always",
            kind: "str",
            sample: Some("\"/etc/hosts\""),
        },
        ReturnSpec {
            name: "lines",
            description: "Lines in the block after merging entries with the same address.",
            returned: "always",
            kind: "int",
            sample: Some("2"),
        },
        ReturnSpec {
            name: "disabled_lines",
            description: "Line numbers of 127.0.1.1 lines this run commented out.",
            returned: "always",
            kind: "list",
            sample: Some("[2]"),
        },
        ReturnSpec {
            name: "restored_lines",
            description: "Line numbers of lines this run restored.",
            returned: "always",
            kind: "list",
            sample: Some("[]"),
        },
        ReturnSpec {
            name: "write_method",
            description: "C(renamed) (atomic) or C(in_place) (bind-mounted file).",
            returned: "when the file was written",
            kind: "str",
            sample: Some("\"renamed\""),
        },
        ReturnSpec {
            name: "backup_file",
            description: "Where the old file was copied.",
            returned: "when O(backup=true) and the file changed",
            kind: "str",
            sample: Some("\"/etc/hosts.4242.2026-11-24@10:00:00~\""),
        },
    ],
};

/// Applies the module: read, plan, write (unless in check mode).
pub fn run(args: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let entries = args
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| Entry {
            ip: e.ip,
            names: e.names,
        })
        .collect();
    let request = Request {
        marker: args.marker,
        entries: (args.state == State::Present).then_some(entries),
    };
    hosts::validate(&request)?;
    let attrs = Attrs::resolve(args.owner.as_deref(), args.group.as_deref(), args.mode)?;
    let path_error = |e: fs::FsError| Failure::new(format!("option 'path': {e}"));
    let target = fs::resolve(Path::new(&args.path)).map_err(path_error)?;
    // Held from the read to the write: a concurrent run reads what this one wrote.
    let lock = match ctx.check_mode {
        true => None,
        false => Some(fs::lock(&target).map_err(path_error)?),
    };
    for note in lock.iter().flat_map(fs::Locked::notes) {
        ctx.warn(note);
    }
    let current = fs::read(&target).map_err(path_error)?;
    let before: &[u8] = current.as_ref().map_or(&[], |(bytes, _)| bytes);

    let plan = hosts::plan(before, &request)
        .map_err(|e| Failure::new(format!("'{}' {e}", target.display())))?;
    for warning in &plan.warnings {
        ctx.warn(format!("{}: {warning}", target.display()));
    }

    let shown = target.display().to_string();
    let writes_content = plan.content != before && !(current.is_none() && plan.content.is_empty());
    let attr_changes = match &current {
        Some((_, meta)) => attrs.changes(meta),
        None => Vec::new(),
    };
    let mut outcome = Outcome::new(
        writes_content || !attr_changes.is_empty(),
        describe(&current, &plan, writes_content, &attr_changes),
    )
    .with("path", shown.clone())
    .with("lines", plan.lines)
    .with("disabled_lines", plan.disabled.clone())
    .with("restored_lines", plan.restored.clone());
    if writes_content {
        outcome = outcome.with_diff(Diff::file(
            &shown,
            String::from_utf8_lossy(before),
            String::from_utf8_lossy(&plan.content),
        ));
    }
    let Some(lock) = lock else {
        return Ok(outcome); // check mode
    };

    if writes_content {
        let opts = WriteOptions {
            attrs,
            default_mode: 0o644,
            backup: args.backup,
        };
        let written = fs::write(&lock, &plan.content, current.as_ref(), &opts)?;
        if let Some(note) = written.note(&target) {
            ctx.warn(note);
        }
        outcome = outcome.with("write_method", written.method_name());
        if let Some(backup) = written.backup_file {
            outcome = outcome.with("backup_file", backup.display().to_string());
        }
    } else if !attr_changes.is_empty() {
        fs::set_attrs(&target, &attrs)?;
    }
    Ok(outcome)
}

fn describe(
    current: &Option<(Vec<u8>, std::fs::Metadata)>,
    plan: &hosts::Plan,
    writes_content: bool,
    attr_changes: &[String],
) -> String {
    let content = match (writes_content, current.is_some(), plan.lines) {
        (false, _, _) => None,
        (true, false, n) => Some(format!("created the file with a block of {n} line(s)")),
        (true, true, 0) => Some("removed the block".to_string()),
        (true, true, n) => Some(format!("wrote the block ({n} line(s))")),
    };
    let mut parts: Vec<String> = content.into_iter().collect();
    if !attr_changes.is_empty() {
        parts.push(format!("set {}", attr_changes.join(", ")));
    }
    if parts.is_empty() {
        "the file is up to date".to_string()
    } else {
        parts.join("; ")
    }
}
