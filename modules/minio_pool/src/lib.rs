//! Ansible module `z3r0d3v.matrix_ha.minio_pool`: MinIO pools that a re-run can never corrupt.
//!
//! [`erasure`] mirrors MinIO's own topology arithmetic (ellipsis notation, erasure-set size,
//! default parity, usable capacity); [`plan`] turns the pools into MINIO_VOLUMES and the env
//! file and enforces the append-only rule against the file already there (all pure). [`run`]
//! reads and writes the env file and, when asked, ensures buckets through the S3 API ([`s3`]).

pub mod erasure;
pub mod plan;
pub mod s3;

use std::collections::BTreeMap;
use std::path::Path;

use matrix_ha_runtime::fs::{self, Attrs, WriteOptions};
use matrix_ha_runtime::text::{self, Syntax};
use matrix_ha_runtime::{
    Context, DefaultValue, Diff, Failure, Kind, ModuleSpec, OptionSpec, Outcome, ReturnSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Typed arguments; the names and types mirror [`SPEC`].
#[derive(Debug, Deserialize)]
pub struct Args {
    pub env_path: String,
    pub pools: Vec<PoolArg>,
    pub root_user: String,
    pub root_password: String,
    pub storage_class_parity: Option<i64>,
    pub extra_env: Option<serde_json::Map<String, Value>>,
    pub buckets: Vec<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
}

#[derive(Debug, Deserialize)]
pub struct PoolArg {
    pub hosts: Vec<String>,
    pub drives: Vec<String>,
    pub port: i64,
    pub scheme: String,
    pub drive_size: Option<String>,
}

static POOL_OPTIONS: [OptionSpec; 5] = [
    OptionSpec::new("hosts", Kind::List)
        .elements(Kind::Str)
        .required()
        .doc(&[
            "The pool's hosts in order, names or IPv4 addresses that differ only in one number \
             counting up by one (C(minio-1.chat.z3r0d3v.com) ... C(minio-4.chat.z3r0d3v.com)), \
             so that MinIO's notation C(minio-{1...4}.chat.z3r0d3v.com) can express them. One \
             host is written as it is.",
        ]),
    OptionSpec::new("drives", Kind::List)
        .elements(Kind::Str)
        .required()
        .doc(&[
            "The drive paths on every host of the pool, in the same way: \
             C(/mnt/disk1/minio) ... C(/mnt/disk4/minio) becomes C(/mnt/disk{1...4}/minio).",
        ]),
    OptionSpec::new("port", Kind::Int)
        .default(DefaultValue::Int(9000))
        .doc(&["The MinIO API port of the pool's hosts."]),
    OptionSpec::new("scheme", Kind::Str)
        .choices(&["http", "https"])
        .default(DefaultValue::Str("http"))
        .doc(&["How the nodes of the pool talk to each other."]),
    OptionSpec::new("drive_size", Kind::Str).doc(&[
        "The size of the pool's smallest drive (C(4TiB), C(500GB), or bytes). MinIO caps every \
         drive of a pool at the smallest, so this gives the usable capacity. Unset: no \
         capacity is reported for the pool.",
    ]),
];

pub static SPEC: ModuleSpec = ModuleSpec {
    name: "minio_pool",
    short_description: "MinIO server pools in the env file, append-only, with checked erasure sets",
    description: &[
        "Computes C(MINIO_VOLUMES) in MinIO's ellipsis notation from each pool's host and drive \
         lists, one argument per pool (C(http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio)), \
         and writes the env file that MinIO's systemd unit reads (mode 0600: it holds the root \
         credentials). The module owns the whole file.",
        "The erasure-set size is computed exactly as MinIO does when it starts: the pool's \
         drive count, the sizes from 2 to 16 that divide it and spread symmetrically over the \
         hosts, the largest of those. The parity is O(storage_class_parity), or MinIO's default \
         for the first pool's set size (2-3 drives EC:1, 4-5 EC:2, 6-7 EC:3, 8-16 EC:4), used by \
         every pool; a parity above half of any pool's set is refused, as MinIO would.",
        "Append-only: the pools already in the file's C(MINIO_VOLUMES) must come first in \
         O(pools), unchanged and in order. A run may only append pools; it never changes or \
         removes one (that would strand the data written to it). Appending warns that every \
         MinIO node must be restarted together.",
        "Ensures that O(buckets) exist through the S3 API at O(s3_endpoint) (SigV4-signed \
         HeadBucket, then CreateBucket for a missing one), with the root credentials.",
        "The MinIO server binary is not handled here (its open-source downloads are gone); the \
         role installs it from a path or URL the operator gives.",
    ],
    options: &[
        OptionSpec::new("env_path", Kind::Path)
            .default(DefaultValue::Str("/etc/default/minio"))
            .doc(&["The env file (systemd C(EnvironmentFile)), written 0600, owned whole."]),
        OptionSpec::new("pools", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&POOL_OPTIONS)
            .required()
            .doc(&["The server pools, oldest first. Existing pools must stay as they are."]),
        OptionSpec::new("root_user", Kind::Str)
            .required()
            .doc(&["C(MINIO_ROOT_USER), 3 to 128 characters without blanks, quotes, C(\\), C($) or C(`); also the S3 access key for O(buckets)."]),
        OptionSpec::new("root_password", Kind::Str)
            .required()
            .no_log()
            .doc(&["C(MINIO_ROOT_PASSWORD), 8 to 256 characters without control characters, quotes, C(\\), C($) or C(`); also the S3 secret key."]),
        OptionSpec::new("storage_class_parity", Kind::Int)
            .range(0, 8)
            .doc(&["Parity drives per erasure set (C(MINIO_STORAGE_CLASS_STANDARD=EC:N)). Unset: \
                    MinIO's default for the first pool's set size, and the variable is not written."]),
        OptionSpec::new("extra_env", Kind::Dict).doc(&[
            "More C(MINIO_*) variables for the file (C(MINIO_OPTS), C(MINIO_SERVER_URL), ...), \
             text values. The variables this module computes cannot be given here.",
        ]),
        OptionSpec::new("buckets", Kind::List)
            .elements(Kind::Str)
            .default(DefaultValue::EmptyList)
            .doc(&["Buckets that must exist, e.g. the Synapse media bucket (S3 naming rules)."]),
        OptionSpec::new("s3_endpoint", Kind::Str).doc(&[
            "The S3 API to create O(buckets) at, an C(http://) URL (the intranet endpoint; \
             the module carries no TLS client). Required when O(buckets) is not empty.",
        ]),
        OptionSpec::new("s3_region", Kind::Str)
            .default(DefaultValue::Str("us-east-1"))
            .doc(&["The region the requests are signed for (MinIO's default is us-east-1)."]),
    ],
    required_if: &[],
    notes: &[
        "Supports check mode (buckets are only looked up) and diff mode (the root password is \
         shown as C(********)).",
        "Every problem with the options is reported at once, naming the option and the value, \
         and nothing is written.",
    ],
    examples: r#"- name: The media store of chat.z3r0d3v.com
  z3r0d3v.matrix_ha.minio_pool:
    pools:
      - hosts: [minio-1.chat.z3r0d3v.com, minio-2.chat.z3r0d3v.com,
                minio-3.chat.z3r0d3v.com, minio-4.chat.z3r0d3v.com]
        drives: [/mnt/disk1/minio, /mnt/disk2/minio, /mnt/disk3/minio, /mnt/disk4/minio]
        drive_size: 4TiB
    root_user: matrix-admin
    root_password: "{{ vault_minio_root_password }}"
    buckets: [synapse-media]
    s3_endpoint: http://10.20.0.41:9000
"#,
    returns: &[
        ReturnSpec {
            name: "minio_volumes",
            description: "The value of MINIO_VOLUMES.",
            returned: "always",
            kind: "str",
            sample: Some("\"http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio\""),
        },
        ReturnSpec {
            name: "pools",
            description: "Per pool: C(volumes), C(hosts), C(drives_per_host), C(set_size), \
                          C(sets), C(parity), C(usable_bytes) and C(usable) (when the drive size \
                          is given).",
            returned: "always",
            kind: "list",
            sample: Some("[{\"set_size\": 16, \"sets\": 1, \"parity\": 4, \"usable\": \"48.0 TiB\"}]"),
        },
        ReturnSpec {
            name: "set_size",
            description: "The first pool's erasure-set size.",
            returned: "always",
            kind: "int",
            sample: Some("16"),
        },
        ReturnSpec {
            name: "parity",
            description: "The STANDARD storage class parity every pool uses.",
            returned: "always",
            kind: "int",
            sample: Some("4"),
        },
        ReturnSpec {
            name: "usable_bytes",
            description: "Usable bytes of all pools with a known drive size.",
            returned: "always",
            kind: "int",
            sample: Some("52776558133248"),
        },
        ReturnSpec {
            name: "pools_added",
            description: "How many pools this run appended to the file.",
            returned: "always",
            kind: "int",
            sample: Some("0"),
        },
        ReturnSpec {
            name: "buckets_created",
            description: "Buckets created (or, in check mode, that would be).",
            returned: "always",
            kind: "list",
            sample: Some("[\"synapse-media\"]"),
        },
    ],
};

/// Variables the module computes; `extra_env` may not set them.
const MANAGED: [&str; 4] = [
    "MINIO_VOLUMES",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "MINIO_STORAGE_CLASS_STANDARD",
];

/// The longest `root_user`: MinIO itself checks only the minimum (3), S3 clients and IAM
/// take access keys of at most 128 characters.
pub const MAX_ROOT_USER: usize = 128;
/// The longest `root_password` (MinIO checks only the minimum, 8).
pub const MAX_ROOT_PASSWORD: usize = 256;
/// The longest value of an `extra_env` variable.
pub const MAX_ENV_VALUE: usize = 4096;

fn env_text_problem(v: &str) -> bool {
    text::problem(v, Syntax::EnvValue).is_some()
}

/// Checks the options outside the pools; every problem at once.
fn validate(args: &Args) -> (BTreeMap<String, String>, Vec<String>) {
    let mut errs = Vec::new();
    let user = &args.root_user;
    if user.chars().count() < 3 {
        errs.push(format!(
            "option 'root_user': value {user:?} is shorter than 3 characters (MinIO refuses it)"
        ));
    } else if env_text_problem(user) || user.chars().any(char::is_whitespace) {
        errs.push(format!(
            "option 'root_user': {} holds whitespace, a quote, '\\', '$' or '`'",
            text::shown(user)
        ));
    } else if let Err(e) = text::check_len("root_user", user, MAX_ROOT_USER) {
        errs.push(e.to_string());
    }
    let pass = &args.root_password;
    if pass.chars().count() < 8 {
        errs.push(
            "option 'root_password': the value is shorter than 8 characters (MinIO refuses it)"
                .to_string(),
        );
    } else if pass.chars().count() > MAX_ROOT_PASSWORD {
        errs.push(format!(
            "option 'root_password': the value (hidden: no_log) has more than \
             {MAX_ROOT_PASSWORD} characters"
        ));
    } else if env_text_problem(pass) {
        errs.push(
            "option 'root_password': the value holds a control character, a quote, '\\', '$' \
             or '`', which the env file cannot carry safely"
                .to_string(),
        );
    }
    let mut extra = BTreeMap::new();
    for (k, v) in args.extra_env.iter().flatten() {
        let valid_key = k.starts_with("MINIO_")
            && k.len() > 6
            && k.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_key {
            errs.push(format!(
                "option 'extra_env.{k}': the name is not a MINIO_* variable (upper case, digits, '_')"
            ));
        } else if MANAGED.contains(&k.as_str()) {
            errs.push(format!(
                "option 'extra_env.{k}': the module computes this variable; use its own option"
            ));
        }
        match v.as_str() {
            Some(s) if s.chars().count() > MAX_ENV_VALUE => errs.push(format!(
                "option 'extra_env.{k}': {} has {} characters; at most {MAX_ENV_VALUE} are allowed",
                text::shown(s),
                s.chars().count()
            )),
            Some(s) if !env_text_problem(s) => {
                extra.insert(k.clone(), s.to_string());
            }
            _ => errs.push(format!(
                "option 'extra_env.{k}': value {v} is not text without quotes, '\\', '$', '`' or \
                 control characters"
            )),
        }
    }
    for (i, b) in args.buckets.iter().enumerate() {
        if let Some(reason) = s3::bucket_name_problem(b) {
            errs.push(format!("option 'buckets[{i}]': value {b:?} {reason}"));
        }
    }
    if !args.buckets.is_empty() && args.s3_endpoint.is_none() {
        errs.push("missing option 's3_endpoint', required when buckets is not empty".to_string());
    }
    if let Some(e) = &args.s3_endpoint {
        let ok = url::Url::parse(e)
            .ok()
            .is_some_and(|u| u.scheme() == "http" && u.host_str().is_some_and(|h| !h.is_empty()));
        if !ok {
            errs.push(s3::S3Error::Endpoint(e.clone()).to_string());
        }
    }
    if args.s3_region.is_empty()
        || !args
            .s3_region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        errs.push(format!(
            "option 's3_region': value {:?} is not a region name such as us-east-1",
            args.s3_region
        ));
    }
    (extra, errs)
}

/// Applies the module: validate, plan, refuse or append, write, buckets.
pub fn run(args: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let requests: Vec<plan::PoolRequest> = args
        .pools
        .iter()
        .map(|p| plan::PoolRequest {
            hosts: p.hosts.iter().map(|h| h.trim().to_string()).collect(),
            drives: p.drives.iter().map(|d| d.trim().to_string()).collect(),
            port: p.port,
            scheme: p.scheme.clone(),
            drive_size: p.drive_size.clone(),
        })
        .collect();
    let (extra, mut errs) = validate(&args);
    let layout = match plan::layout(&requests, args.storage_class_parity) {
        Ok(l) => Some(l),
        Err(e) => {
            errs.extend(e.0.iter().map(|i| i.to_string()));
            None
        }
    };
    let layout = match (layout, errs.is_empty()) {
        (Some(l), true) => l,
        _ => return Err(Failure::new(errs.join("; "))),
    };

    let path_error = |e: fs::FsError| Failure::new(format!("option 'env_path': {e}"));
    let target = fs::resolve(Path::new(&args.env_path)).map_err(path_error)?;
    // Held from the read to the write: the append-only rule is checked against what a
    // concurrent run wrote, never against a stale read.
    let lock = match ctx.check_mode {
        true => None,
        false => Some(fs::lock(&target).map_err(path_error)?),
    };
    for note in lock.iter().flat_map(fs::Locked::notes) {
        ctx.warn(note);
    }
    let current = fs::read(&target).map_err(path_error)?;
    let before = current
        .as_ref()
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let given: Vec<String> = layout.pools.iter().map(|p| p.volumes.clone()).collect();
    let appended = plan::append_only(&plan::existing_pools(&before), &given)?;

    let content = plan::render(&layout, &args.root_user, &args.root_password, &extra);
    let writes = before.as_bytes() != content.as_bytes();
    let attrs = Attrs {
        uid: None,
        gid: None,
        mode: Some(0o600),
    };
    let attr_changes = match &current {
        Some((_, meta)) if !writes => attrs.changes(meta),
        _ => Vec::new(),
    };
    if appended.added > 0 && appended.existing > 0 {
        ctx.warn(format!(
            "{} pool(s) appended to MINIO_VOLUMES in {}: restart every MinIO node together \
             (stop all, then start all) so that all agree on the new layout; a rolling restart \
             leaves nodes with different pool lists that refuse each other",
            appended.added,
            target.display()
        ));
    }

    let mut changes = Vec::new();
    if writes {
        changes.push(match (&current, appended.added, appended.existing) {
            (None, _, _) => format!("created the env file with {} pool(s)", given.len()),
            (Some(_), n, e) if n > 0 && e > 0 => format!("appended {n} pool(s)"),
            _ => "rewrote the env file".to_string(),
        });
    }
    if !attr_changes.is_empty() {
        changes.push(format!("set {}", attr_changes.join(", ")));
    }
    if let Some(lock) = &lock {
        if writes {
            let opts = WriteOptions {
                attrs,
                default_mode: 0o600,
                backup: false,
            };
            fs::write(lock, content.as_bytes(), current.as_ref(), &opts).map_err(path_error)?;
        } else if !attr_changes.is_empty() {
            fs::set_attrs(&target, &attrs).map_err(path_error)?;
        }
    }
    drop(lock);

    let mut created = Vec::new();
    if let (false, Some(endpoint)) = (args.buckets.is_empty(), &args.s3_endpoint) {
        created = s3::ensure(
            endpoint,
            &args.s3_region,
            &args.root_user,
            &args.root_password,
            &args.buckets,
            ctx.check_mode,
        )?;
        if !created.is_empty() {
            changes.push(format!("created bucket(s) {}", created.join(", ")));
        }
    }

    let usable = layout.usable();
    let pools: Vec<Value> = layout
        .pools
        .iter()
        .zip(&usable)
        .map(|(p, u)| {
            let mut v = json!({
                "volumes": p.volumes,
                "hosts": p.hosts,
                "drives_per_host": p.drives_per_host,
                "set_size": p.set_size,
                "sets": p.sets,
                "parity": layout.parity,
            });
            if let Some(u) = u {
                v["usable_bytes"] = json!(u);
                v["usable"] = json!(erasure::human(*u));
            }
            v
        })
        .collect();
    let total: u128 = usable.iter().flatten().sum();
    let changed = !changes.is_empty();
    let msg = if changed {
        changes.join("; ")
    } else {
        "the env file and the buckets are up to date".to_string()
    };
    let mut outcome = Outcome::new(changed, msg)
        .with("env_path", target.display().to_string())
        .with("minio_volumes", given.join(" "))
        .with("pools", pools)
        .with("set_size", layout.pools.first().map_or(0, |p| p.set_size))
        .with("parity", layout.parity)
        .with("usable_bytes", json!(total))
        .with("pools_added", appended.added)
        .with("buckets_created", created);
    if writes {
        outcome = outcome.with_diff(Diff::file(
            &target.display().to_string(),
            plan::scrub_password(&before),
            plan::scrub_password(&content),
        ));
    }
    Ok(outcome)
}
