//! Ansible module `z3r0d3v.matrix_ha.keepalived_vip`: the HAProxy pair's virtual IP.
//!
//! The module owns keepalived.conf whole: [`config::validate`] checks the options against
//! each other and against the interface's addresses, [`config::render`] writes the file (both
//! pure). [`run`] reads the interface, tests the candidate with `keepalived -t` from a
//! temporary file, installs it, sets `net.ipv4.ip_nonlocal_bind` when asked and reloads a
//! running keepalived by SIGHUP (which keeps the VIP; a restart would drop it).

pub mod config;
pub mod system;

use std::path::{Path, PathBuf};

use matrix_ha_runtime::fs::{self, Attrs, WriteOptions};
use matrix_ha_runtime::{
    Context, DefaultValue, Diff, Failure, Kind, ModuleSpec, OptionSpec, Outcome, ReturnSpec,
};
use serde::Deserialize;

/// Typed arguments; the names and types mirror [`SPEC`].
#[derive(Debug, Deserialize)]
pub struct Args {
    pub path: String,
    /// The keepalived settings, validated and rendered by [`config`].
    #[serde(flatten)]
    pub request: config::Request,
    pub create_script_user: bool,
    pub state_file: Option<String>,
    pub nonlocal_bind: bool,
    pub sysctl_path: String,
    pub config_test: bool,
    pub keepalived_bin: String,
    pub reload: bool,
    pub pid_file: String,
}

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "keepalived_vip",
    short_description: "Keep the HAProxy pair's virtual IP under keepalived (unicast VRRP)",
    description: &[
        "Writes the whole keepalived configuration file for one virtual IP held by a pair (or \
         more) of HAProxy nodes: C(global_defs) with C(enable_script_security) and \
         C(script_user), a C(vrrp_script) checking HAProxy, and one C(vrrp_instance) with \
         unicast peers, optional PASS authentication and an optional notify hook.",
        "The module owns the file: anything else in it is replaced (the first line says so). \
         It is written 0640 (an existing file keeps its owner; the mode is set to 0640 because \
         the file can hold O(auth_pass)).",
        "Every instance starts as BACKUP and the highest O(priority) wins the election. When the \
         check fails O(check_fall) times the instance goes to FAULT and releases the VIP; with \
         O(nopreempt) a recovered node with a higher priority does not take the VIP back.",
        "Before installing, the candidate is written to a temporary file and tested with \
         C(keepalived -t -f FILE) when keepalived is installed; anything it reports fails the \
         task and nothing is installed.",
        "When the file changed and keepalived runs (its O(pid_file) names a live keepalived \
         process), it is sent SIGHUP: it re-reads the file and keeps the VIP it holds. It is \
         never restarted (a restart drops the VIP).",
    ],
    options: &[
        OptionSpec::new("path", Kind::Path)
            .default(DefaultValue::Str("/etc/keepalived/keepalived.conf"))
            .doc(&["The keepalived configuration file, owned whole by this module."]),
        OptionSpec::new("interface", Kind::Str)
            .required()
            .doc(&["The interface that carries the VIP and the VRRP adverts; it must exist."]),
        OptionSpec::new("vip", Kind::Str).required().doc(&[
            "The virtual IPv4 address with its prefix, e.g. C(10.20.0.10/24). It must be inside \
             a network of O(interface) with the same prefix (read from the interface now).",
        ]),
        OptionSpec::new("virtual_router_id", Kind::Int).doc(&[
            "VRRP router id, 1 to 255, unique per layer-2 segment and equal on every node of \
             the pair.",
            "Default: the last octet of the VIP (0 becomes 1), the same rule as the inventory's \
             C(keepalived_vrid) default, which it emits as C(keepalived_virtual_router_id).",
        ]),
        OptionSpec::new("priority", Kind::Int)
            .default(DefaultValue::Int(100))
            .doc(&[
                "VRRP priority, 1 to 254; the highest healthy node holds the VIP. The inventory \
                    gives the first HAProxy node 150 and each next one 10 less.",
            ]),
        OptionSpec::new("peers", Kind::List)
            .elements(Kind::Str)
            .required()
            .doc(&[
                "IPv4 addresses of the other nodes (unicast VRRP: clouds and many switches \
                    drop multicast). Not empty, no duplicates, never this node's own address.",
            ]),
        OptionSpec::new("unicast_src_ip", Kind::Str).doc(&[
            "This node's address the adverts come from. Default: the first address of \
             O(interface) in the VIP's network. It must be an address of O(interface).",
        ]),
        OptionSpec::new("auth_pass", Kind::Str).no_log().doc(&[
            "VRRP PASS authentication: exactly 8 printable ASCII characters without blanks, \
             quotes, braces, C(#), C(!) or C(\\). keepalived takes 1 to 8 and silently uses only \
             the first 8 of a longer one; fewer than 8 are refused because every secret needs \
             8 characters to be masked safely in the result. Unset: no authentication block.",
        ]),
        OptionSpec::new("advert_int", Kind::Int)
            .default(DefaultValue::Int(1))
            .doc(&[
                "Seconds between adverts, 1 to 255. A backup takes over after about 3 missed \
                    adverts.",
            ]),
        OptionSpec::new("nopreempt", Kind::Bool)
            .default(DefaultValue::Bool(false))
            .doc(&[
                "Keep the VIP where it is when a node with a higher priority comes back (one \
                    move per failure instead of two).",
            ]),
        OptionSpec::new("check_script", Kind::Str)
            .default(DefaultValue::Str("/usr/bin/pgrep -x haproxy"))
            .doc(&[
                "The health check of HAProxy, run by keepalived as O(script_user) without a \
                    shell: an absolute program path and its arguments; exit 0 means healthy. \
                    At most 512 bytes, without quotes, single quotes, braces, C(#), C(!), \
                    C(\\) or control characters (keepalived's own command-line splitting).",
            ]),
        OptionSpec::new("check_interval", Kind::Int)
            .default(DefaultValue::Int(2))
            .doc(&["Seconds between checks (also the check's timeout), 1 to 3600."]),
        OptionSpec::new("check_fall", Kind::Int)
            .default(DefaultValue::Int(2))
            .doc(&["Failed checks in a row before the node gives up the VIP, 1 to 100."]),
        OptionSpec::new("check_rise", Kind::Int)
            .default(DefaultValue::Int(2))
            .doc(&["Good checks in a row before the node may hold the VIP again, 1 to 100."]),
        OptionSpec::new("script_user", Kind::Str)
            .default(DefaultValue::Str("keepalived_script"))
            .doc(&[
                "The user keepalived runs scripts as (C(enable_script_security)); it must exist \
                    (keepalived's own default name).",
            ]),
        OptionSpec::new("create_script_user", Kind::Bool)
            .default(DefaultValue::Bool(false))
            .doc(&[
                "Create a missing O(script_user) as a system user without home or login shell \
                    (C(useradd --system)). Unset, a missing user fails the task.",
            ]),
        OptionSpec::new("instance_name", Kind::Str)
            .default(DefaultValue::Str("matrix_ha_vip"))
            .doc(&["Name of the vrrp_instance (shown in keepalived's logs): 1 to 64 characters without blanks, quotes, braces, C(#), C(!) or C(\\)."]),
        OptionSpec::new("notify_script", Kind::Str).doc(&[
            "A notify hook: keepalived runs it as O(script_user) on every state change with the \
             arguments C(INSTANCE NAME STATE PRIORITY). An absolute program path and arguments.",
            "To have the module report RV(vrrp_state), let this hook write the state (its third \
             argument) to O(state_file).",
        ]),
        OptionSpec::new("state_file", Kind::Path).doc(&[
            "A file holding the current VRRP state (C(MASTER), C(BACKUP), C(FAULT)), written by \
             the O(notify_script). When set and readable, its content is returned as \
             RV(vrrp_state). keepalived offers no other per-instance state query that works \
             without a fixed shared path.",
        ]),
        OptionSpec::new("nonlocal_bind", Kind::Bool)
            .default(DefaultValue::Bool(false))
            .doc(&[
                "Ensure C(net.ipv4.ip_nonlocal_bind = 1) (in O(sysctl_path) and live, in this \
                    network namespace), so that HAProxy can bind the VIP on the backup node.",
            ]),
        OptionSpec::new("sysctl_path", Kind::Path)
            .default(DefaultValue::Str(
                "/etc/sysctl.d/60-matrix-ha-nonlocal-bind.conf",
            ))
            .doc(&["The sysctl.d file O(nonlocal_bind) writes (owned whole, mode 0644)."]),
        OptionSpec::new("config_test", Kind::Bool)
            .default(DefaultValue::Bool(true))
            .doc(&[
                "Test the candidate with C(keepalived -t) when O(keepalived_bin) is installed \
                    (skipped, with RV(config_test=skipped), when it is not).",
            ]),
        OptionSpec::new("keepalived_bin", Kind::Path)
            .default(DefaultValue::Str("keepalived"))
            .doc(&[
                "The keepalived program, a path or a name looked up in the system directories.",
            ]),
        OptionSpec::new("reload", Kind::Bool)
            .default(DefaultValue::Bool(true))
            .doc(&["Send SIGHUP to the running keepalived when the file changed."]),
        OptionSpec::new("pid_file", Kind::Path)
            .default(DefaultValue::Str("/run/keepalived.pid"))
            .doc(&["keepalived's pid file (its C(-p) option; Debian's default)."]),
    ],
    required_if: &[],
    notes: &[
        "Supports check mode and diff mode (the diff hides O(auth_pass)). Check mode still runs \
         the config test, on a private temporary file that is removed.",
        "IPv4 only (VRRPv2): an IPv6 VIP is refused.",
        "Every problem with the options is reported at once, naming the option and the value, \
         and nothing is written.",
    ],
    examples: r#"- name: The VIP of chat.z3r0d3v.com on the first HAProxy node
  z3r0d3v.matrix_ha.keepalived_vip:
    interface: eth0
    vip: 10.20.0.10/24
    priority: 150
    peers: [10.20.0.12]
    auth_pass: "{{ vault_keepalived_auth_pass }}"
    nopreempt: true
    nonlocal_bind: true
    create_script_user: true
"#,
    returns: &[
        ReturnSpec {
            name: "path",
            description: "The configuration file.",
            returned: "always",
            kind: "str",
            sample: Some("\"/etc/keepalived/keepalived.conf\""),
        },
        ReturnSpec {
            name: "virtual_router_id",
            description: "The VRID used (given or derived from the VIP).",
            returned: "always",
            kind: "int",
            sample: Some("10"),
        },
        ReturnSpec {
            name: "unicast_src_ip",
            description: "The source address of the adverts (given or derived).",
            returned: "always",
            kind: "str",
            sample: Some("\"10.20.0.11\""),
        },
        ReturnSpec {
            name: "vip_present",
            description: "Whether O(interface) carries the VIP now (this node holds it).",
            returned: "always",
            kind: "bool",
            sample: Some("true"),
        },
        ReturnSpec {
            name: "vrrp_state",
            description: "The VRRP state read from O(state_file).",
            returned: "when O(state_file) is set and readable",
            kind: "str",
            sample: Some("\"MASTER\""),
        },
        ReturnSpec {
            name: "config_test",
            description: "C(passed), C(skipped) (keepalived not installed, \
                          O(config_test=false), or check mode with a script user still to \
                          create) or C(not needed) (file unchanged).",
            returned: "always",
            kind: "str",
            sample: Some("\"passed\""),
        },
        ReturnSpec {
            name: "reloaded",
            description: "Whether keepalived was sent SIGHUP (or would be, in check mode).",
            returned: "always",
            kind: "bool",
            sample: Some("true"),
        },
        ReturnSpec {
            name: "nonlocal_bind",
            description: "The live value of net.ipv4.ip_nonlocal_bind after the run.",
            returned: "always",
            kind: "bool",
            sample: Some("true"),
        },
    ],
};

const PROC_NONLOCAL_BIND: &str = "/proc/sys/net/ipv4/ip_nonlocal_bind";
const SYSCTL_LINE: &str = "# Managed by z3r0d3v.matrix_ha.keepalived_vip: HAProxy binds the VIP on the backup node.\nnet.ipv4.ip_nonlocal_bind = 1\n";

/// Applies the module: validate, render, test, install, sysctl, reload, report.
pub fn run(args: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let addrs = system::interface_addresses()?;
    let iface = addrs.get(&args.request.interface).map(|v| v.as_slice());
    let settings = config::validate(&args.request, iface)?;
    let content = config::render(&settings);

    let path_error = |e: fs::FsError| Failure::new(format!("option 'path': {e}"));
    let sysctl_error = |e: fs::FsError| Failure::new(format!("option 'sysctl_path': {e}"));
    let target = fs::resolve(Path::new(&args.path)).map_err(path_error)?;
    let sysctl_target = fs::resolve(Path::new(&args.sysctl_path)).map_err(sysctl_error)?;
    // Held from the reads to the writes (always in this order: the configuration, then the
    // sysctl file), so a concurrent run reads what this one wrote.
    let locks = match ctx.check_mode {
        true => None,
        false => Some((
            fs::lock(&target).map_err(path_error)?,
            match args.nonlocal_bind {
                true => Some(fs::lock(&sysctl_target).map_err(sysctl_error)?),
                false => None,
            },
        )),
    };
    if let Some((conf, sysctl)) = &locks {
        for note in conf
            .notes()
            .into_iter()
            .chain(sysctl.iter().flat_map(fs::Locked::notes))
        {
            ctx.warn(note);
        }
    }
    let current = fs::read(&target).map_err(path_error)?;

    // The script user: checked (or created) before anything is written.
    let mut changes = Vec::new();
    let user_missing = !system::user_exists(&settings.script_user);
    if user_missing {
        if !args.create_script_user {
            return Err(system::SystemError::NoScriptUser(settings.script_user.clone()).into());
        }
        if !ctx.check_mode {
            system::create_user(&settings.script_user)?;
        }
        changes.push(format!("created user {}", settings.script_user));
    }

    let before = current.as_ref().map(|(b, _)| b.as_slice()).unwrap_or(&[]);
    let writes = before != content.as_bytes();
    let attrs = Attrs {
        uid: None,
        gid: None,
        mode: Some(0o640),
    };
    let attr_changes = match &current {
        Some((_, meta)) if !writes => attrs.changes(meta),
        _ => Vec::new(),
    };

    let keepalived = system::find_program(&args.keepalived_bin);
    let mut test = if writes { "not run" } else { "not needed" };
    if writes && args.config_test && user_missing && ctx.check_mode {
        // keepalived -t refuses a script user that does not exist yet.
        test = "skipped";
    } else if writes && args.config_test {
        match &keepalived {
            Some(bin) => {
                let dir = TempDir::new()?;
                let candidate = dir.0.join("keepalived.conf");
                std::fs::write(&candidate, &content).map_err(|e| {
                    Failure::new(format!(
                        "cannot write the config test's temporary file: {e}"
                    ))
                })?;
                system::config_test(bin, &candidate)?;
                test = "passed";
            }
            None => test = "skipped",
        }
    } else if writes {
        test = "skipped";
    }

    let shown = target.display().to_string();
    if writes {
        changes.push(match current {
            None => "created the keepalived configuration".to_string(),
            Some(_) => "rewrote the keepalived configuration".to_string(),
        });
    }
    if !attr_changes.is_empty() {
        changes.push(format!("set {}", attr_changes.join(", ")));
    }

    // net.ipv4.ip_nonlocal_bind.
    let proc_path = Path::new(PROC_NONLOCAL_BIND);
    let sysctl_current = if args.nonlocal_bind {
        fs::read(&sysctl_target).map_err(|e| Failure::new(format!("option 'sysctl_path': {e}")))?
    } else {
        None
    };
    let sysctl_writes = args.nonlocal_bind
        && sysctl_current.as_ref().map(|(b, _)| b.as_slice()) != Some(SYSCTL_LINE.as_bytes());
    let live_before = system::nonlocal_bind_live(proc_path);
    let live_writes = args.nonlocal_bind && live_before != Some(true);
    if sysctl_writes {
        changes.push(format!("wrote {}", sysctl_target.display()));
    }
    if live_writes {
        changes.push("set net.ipv4.ip_nonlocal_bind = 1".to_string());
    }

    let running = system::running_keepalived(Path::new(&args.pid_file));
    let reloads = writes && args.reload && running.is_some();
    if reloads {
        changes.push("reloaded keepalived (SIGHUP)".to_string());
    } else if writes && args.reload && running.is_none() {
        ctx.warn(format!(
            "keepalived is not running (no live keepalived in {}): the new configuration applies \
             when it starts",
            args.pid_file
        ));
    }

    if let Some((conf_lock, sysctl_lock)) = &locks {
        if writes {
            let opts = WriteOptions {
                attrs,
                default_mode: 0o640,
                backup: false,
            };
            fs::write(conf_lock, content.as_bytes(), current.as_ref(), &opts)?;
        } else if !attr_changes.is_empty() {
            fs::set_attrs(&target, &attrs)?;
        }
        if let (true, Some(sysctl_lock)) = (sysctl_writes, sysctl_lock) {
            let opts = WriteOptions {
                attrs: Attrs {
                    uid: None,
                    gid: None,
                    mode: Some(0o644),
                },
                default_mode: 0o644,
                backup: false,
            };
            fs::write(
                sysctl_lock,
                SYSCTL_LINE.as_bytes(),
                sysctl_current.as_ref(),
                &opts,
            )
            .map_err(|e| Failure::new(format!("option 'sysctl_path': {e}")))?;
        }
        if live_writes {
            system::set_nonlocal_bind_live(proc_path)?;
        }
        if let (true, Some(pid)) = (reloads, running) {
            system::reload(pid)?;
        }
    }

    // Where things stand now.
    let now = system::interface_addresses()?;
    let vip_present = now
        .get(&settings.interface)
        .is_some_and(|a| system::holds(a, settings.vip.addr()));
    let changed = !changes.is_empty();
    let msg = if changed {
        changes.join("; ")
    } else {
        "the keepalived configuration is up to date".to_string()
    };
    let mut outcome = Outcome::new(changed, msg)
        .with("path", shown.clone())
        .with("virtual_router_id", settings.virtual_router_id)
        .with("unicast_src_ip", settings.unicast_src_ip.to_string())
        .with("vip_present", vip_present)
        .with("config_test", test)
        .with("reloaded", reloads)
        .with(
            "nonlocal_bind",
            (args.nonlocal_bind && ctx.check_mode)
                || system::nonlocal_bind_live(proc_path) == Some(true),
        );
    if let Some(state_file) = &args.state_file {
        if let Ok(state) = std::fs::read_to_string(state_file) {
            outcome = outcome.with("vrrp_state", state.trim().to_string());
        }
    }
    if writes {
        // The runtime scrubs auth_pass (a no_log option) from the whole result, diff included.
        outcome = outcome.with_diff(Diff::file(
            &shown,
            String::from_utf8_lossy(before),
            content.clone(),
        ));
    }
    Ok(outcome)
}

/// A private temporary directory (0700) for the config test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, Failure> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for n in 0..16u32 {
            let path = base.join(format!(
                "matrix-ha-keepalived-{}-{}-{n}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Failure::new(format!(
                        "cannot create a temporary directory for the config test: {e}"
                    )))
                }
            }
        }
        Err(Failure::new(
            "cannot create a temporary directory for the config test",
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
