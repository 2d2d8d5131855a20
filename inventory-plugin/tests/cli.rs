//! The `matrix_inventory` binary as Ansible and operators run it: golden `--list` outputs per
//! scale, `--host`, `plan`, `hosts`, directories of sites, and every bad site file refused
//! with a message naming what is wrong.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(scale: &str) -> PathBuf {
    crate_dir()
        .join("../examples/sites")
        .join(scale)
        .join("chat.z3r0d3v.com.matrix_ha.yml")
}

fn inventory() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_matrix_inventory"));
    cmd.env_remove("MATRIX_HA_SITE");
    cmd
}

fn run_json(args: &[&str], site: &Path) -> Value {
    let out = inventory()
        .arg("--site")
        .arg(site)
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Compares with the committed golden file; `MATRIX_HA_UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &Value) {
    let path = crate_dir().join("tests/golden").join(name);
    let text = serde_json::to_string_pretty(actual).expect("serializes") + "\n";
    if std::env::var_os("MATRIX_HA_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("writes golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with MATRIX_HA_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == text,
        "{} differs from the output; review the change and rerun with MATRIX_HA_UPDATE_GOLDEN=1",
        path.display()
    );
}

#[test]
fn list_matches_the_golden_output_at_every_scale() {
    for scale in ["small", "medium", "large"] {
        let doc = run_json(&["--list"], &example(scale));
        golden(&format!("list-{scale}.json"), &doc);
    }
}

#[test]
fn list_reads_the_site_from_the_environment() {
    let out = inventory()
        .env("MATRIX_HA_SITE", example("small"))
        .arg("--list")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        doc["_meta"]["hostvars"].as_object().map(|m| m.len()),
        Some(16)
    );
}

#[test]
fn growth_keeps_every_address() {
    let small = run_json(&["--list"], &example("small"));
    let large = run_json(&["--list"], &example("large"));
    let hv = |d: &Value| {
        d["_meta"]["hostvars"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (small, large) = (hv(&small), hv(&large));
    for (host, vars) in &small {
        assert_eq!(vars["ansible_host"], large[host]["ansible_host"], "{host}");
    }
    assert_eq!(large.len() - small.len(), 3);
}

#[test]
fn host_prints_one_hosts_variables() {
    let vars = run_json(&["--host", "patroni-1.chat.z3r0d3v.com"], &example("large"));
    assert_eq!(vars["ansible_host"], "10.20.0.31");
    assert_eq!(vars["site_host_address_pinned"], true);
    assert_eq!(vars["site_host_vcpu"], 16);
    inventory()
        .arg("--site")
        .arg(example("large"))
        .args(["--host", "nope.chat.z3r0d3v.com"])
        .fails_with("nope.chat.z3r0d3v.com");
}

#[test]
fn hosts_prints_etc_hosts_entries_with_the_vip_first() {
    let entries = run_json(&["hosts", "--format", "json"], &example("medium"));
    let list = entries.as_array().expect("a list");
    assert_eq!(list.len(), 18);
    assert_eq!(list[0]["ip"], "10.20.0.10");
    assert_eq!(list[0]["names"][0], "chat.z3r0d3v.com");
    assert!(list.iter().any(|e| e["ip"] == "10.20.0.31"
        && e["names"] == serde_json::json!(["patroni-1.chat.z3r0d3v.com", "patroni-1"])));
    // The YAML form parses to the same list.
    let out = inventory()
        .arg("--site")
        .arg(example("medium"))
        .arg("hosts")
        .output()
        .expect("runs");
    let yaml: Value = serde_yaml_ng::from_slice(&out.stdout).expect("YAML");
    assert_eq!(yaml, entries);
}

#[test]
fn plan_prints_the_architecture_sheet() {
    let out = inventory()
        .arg("--site")
        .arg(example("large"))
        .arg("plan")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("19 servers"), "{text}");
    assert!(text.contains("patroni-1      10.20.0.31*"), "{text}");
    assert!(text.contains("7882/udp"), "{text}");
    let sheet = run_json(&["plan", "--format", "json"], &example("small"));
    assert_eq!(sheet["servers_total"], 16);
    assert_eq!(sheet["servers"][0]["ports"][0]["port"], "80");
}

#[test]
fn a_directory_of_sites_is_one_inventory_with_per_site_groups() {
    let dir = crate_dir().join("../examples/sites/provider");
    let doc = run_json(&["--list"], &dir);
    let children: Vec<&str> = doc["matrix_servers"]["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(children.len(), 3, "{children:?}");
    assert!(children.contains(&"chat_z3r0d3v_com_matrix_servers"));
    let hosts = doc["_meta"]["hostvars"].as_object().expect("hostvars");
    assert_eq!(hosts.len(), 16 + 17 + 19);
    // Sites of one directory must differ in name and domain.
    let tmp = tempfile::tempdir().expect("tempdir");
    for n in ["a", "b"] {
        std::fs::copy(example("small"), tmp.path().join(format!("{n}.yml"))).expect("copies");
    }
    inventory()
        .arg("--site")
        .arg(tmp.path())
        .arg("--list")
        .fails_with("both define the site name");
    // plan/hosts need --name when the directory holds several sites.
    inventory()
        .arg("--site")
        .arg(&dir)
        .arg("hosts")
        .fails_with("--name");
    let entries = run_json(
        &["hosts", "--format", "json", "--name", "chat.z3r0d3v.com"],
        &dir,
    );
    assert_eq!(entries[0]["names"][0], "chat.z3r0d3v.com");
}

const GOOD: &str =
    "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n";

/// Every bad site file fails with a message naming the option, host or address.
#[test]
fn bad_site_files_fail_with_a_clear_message() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "address outside the network",
            format!("{GOOD}hosts:\n  patroni-1: 10.99.0.31\n"),
            &["patroni-1", "10.99.0.31", "outside the network 10.20.0.0/24"],
        ),
        (
            "duplicate address",
            format!("{GOOD}hosts:\n  patroni-1: 10.20.0.200\n  minio-2: 10.20.0.200\n"),
            &["minio-2", "patroni-1", "10.20.0.200"],
        ),
        (
            "vip collision",
            format!("{GOOD}hosts:\n  haproxy-1: 10.20.0.10\n"),
            &["haproxy-1", "10.20.0.10", "vip"],
        ),
        (
            "network too small",
            "domain: chat.z3r0d3v.com\nscale: large\nnetwork: 10.20.0.0/27\nvip: 10.20.0.5\n".into(),
            &["too small for scale large", "10.20.0.0/27", "host patroni-1", "10.20.0.31"],
        ),
        (
            "unknown pinned host",
            format!("{GOOD}hosts:\n  patroni-4: 10.20.0.34\n"),
            &["patroni-4", "scale small"],
        ),
        (
            "public network",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 8.8.8.0/24\nvip: 8.8.8.10\n".into(),
            &["option `network` is invalid: \"8.8.8.0/24\"", "not a private network", "RFC 1918"],
        ),
        (
            "the whole internet as the network",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 0.0.0.0/0\nvip: 10.20.0.10\n".into(),
            &["option `network` is invalid: \"0.0.0.0/0\"", "not a private network"],
        ),
        (
            "network straddling a private range",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 172.0.0.0/8\nvip: 172.16.0.10\n".into(),
            &["option `network` is invalid: \"172.0.0.0/8\"", "not a private network"],
        ),
        (
            "unknown scale",
            "domain: chat.z3r0d3v.com\nscale: huge\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n".into(),
            &["unknown scale", "huge"],
        ),
        (
            "malformed YAML",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: [10.20.0.0/24\nvip: 10.20.0.10\n".into(),
            &["malformed site file", "line "],
        ),
        (
            "unknown key",
            format!("{GOOD}scael: large\n"),
            &["scael", "line 5"],
        ),
        (
            "missing network",
            "domain: chat.z3r0d3v.com\nscale: small\nvip: 10.20.0.10\n".into(),
            &["`network`", "required"],
        ),
        (
            "network with host bits",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.7/24\nvip: 10.20.0.10\n".into(),
            &["`network`", "10.20.0.0/24"],
        ),
        (
            "vip outside the network",
            "domain: chat.z3r0d3v.com\nscale: small\nnetwork: 10.20.0.0/24\nvip: 10.21.0.10\n".into(),
            &["`vip`", "10.21.0.10", "outside"],
        ),
        (
            "pinned broadcast",
            format!("{GOOD}hosts:\n  minio-1: 10.20.0.255\n"),
            &["minio-1", "10.20.0.255", "broadcast"],
        ),
        (
            "not an address",
            format!("{GOOD}hosts:\n  minio-1: ten.twenty\n"),
            &["hosts.minio-1", "ten.twenty"],
        ),
        (
            "even patroni count",
            format!("{GOOD}roles:\n  patroni: {{count: 4}}\n"),
            &["roles.patroni.count", "4"],
        ),
        (
            "no scale",
            "domain: chat.z3r0d3v.com\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n".into(),
            &["scale", "expected_ccu"],
        ),
        (
            "ccu beyond the design",
            "domain: chat.z3r0d3v.com\nexpected_ccu: 50000\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n"
                .into(),
            &["expected_ccu", "50000"],
        ),
        (
            "block exhausted",
            format!("{GOOD}roles:\n  livekit: {{count: 12}}\n"),
            &["livekit-10", "livekit block", "10.20.0.61-10.20.0.69"],
        ),
        (
            "a VIP name that is a host's name",
            format!("{GOOD}vip_names: [patroni-2.chat.z3r0d3v.com]\n"),
            &["vip_names", "patroni-2", "10.20.0.32"],
        ),
        (
            "bad keepalived vrid",
            format!("{GOOD}keepalived_vrid: 300\n"),
            &["keepalived_vrid", "300"],
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, text, needles) in cases {
        let path = dir.path().join("site.matrix_ha.yml");
        std::fs::write(&path, text).expect("writes");
        let out = inventory()
            .arg("--site")
            .arg(&path)
            .arg("--list")
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{what}: accepted");
        assert!(out.stdout.is_empty(), "{what}: printed an inventory");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("site.matrix_ha.yml"),
            "{what}: no file named: {err}"
        );
        for needle in *needles {
            assert!(err.contains(needle), "{what}: {needle:?} not in: {err}");
        }
    }
}

#[test]
fn site_files_past_the_size_and_depth_limits_fail_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "100,000 flow levels",
            format!(
                "{GOOD}extra: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            "nests deeper than 32 levels",
        ),
        (
            // Indentation costs space: 1,400 block levels are what fits in 1 MiB.
            "1,400 block levels",
            format!(
                "{GOOD}extra:\n{}",
                (1..1_400)
                    .map(|i| format!("{}k:\n", " ".repeat(i)))
                    .collect::<String>()
            ),
            "nests deeper than 32 levels",
        ),
        (
            "100,000 sequence levels on one line",
            format!("{GOOD}extra:\n{}x\n", "- ".repeat(100_000)),
            "nests deeper than 32 levels",
        ),
        (
            "a 100 MB file",
            format!("{GOOD}# {}\n", "x".repeat(100 << 20)),
            "site files are limited to 1048576 bytes",
        ),
    ];
    for (what, text, needle) in cases {
        let file = dir.path().join("site.yml");
        std::fs::write(&file, &text).expect("writes");
        let started = std::time::Instant::now();
        inventory()
            .arg("--site")
            .arg(&file)
            .arg("--list")
            .fails_with(needle);
        // Not a timing assertion on speed: a parse of these takes minutes, a refusal does not.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn no_site_says_how_to_give_one() {
    inventory().arg("--list").fails_with("MATRIX_HA_SITE");
}

trait FailsWith {
    /// Runs the command and asserts it fails with `needle` in its error message.
    fn fails_with(&mut self, needle: &str);
}

impl FailsWith for Command {
    fn fails_with(&mut self, needle: &str) {
        let out = self.output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "succeeded; expected an error with {needle:?}"
        );
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Variable names: MDAD's current names only, never a forbidden one, ours prefixed.

/// Our own prefixes: site-wide facts and our roles.
const OUR_PREFIXES: [&str; 11] = [
    "site_",
    "backup_",
    "etc_hosts_",
    "etcd_",
    "patroni_",
    "pgbouncer_",
    "haproxy_",
    "keepalived_",
    "minio_",
    "livekit_sfu_",
    "ansible_",
];

/// MDAD's BorgBackup role's prefix, inside our `backup_`.
const MDAD_BORG_PREFIX: &str = "backup_borg_";

fn names_file(name: &str) -> Vec<String> {
    let path = crate_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Every variable name the inventory emits, host and group variables, for every example.
fn emitted_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for scale in ["small", "medium", "large"] {
        let doc = run_json(&["--list"], &example(scale));
        for vars in doc["_meta"]["hostvars"]
            .as_object()
            .expect("hostvars")
            .values()
        {
            names.extend(vars.as_object().expect("object").keys().cloned());
        }
        for (group, body) in doc.as_object().expect("object") {
            if group == "_meta" {
                continue;
            }
            if let Some(vars) = body.get("vars").and_then(Value::as_object) {
                names.extend(vars.keys().cloned());
            }
        }
    }
    names
}

/// The MDAD checkout: `MATRIX_HA_MDAD_DIR`, else `mdad/` in the repository, else the pinned copy
/// in `shared/mdad` beside the repository. Panics, saying where to put one, when there is none.
fn mdad_dir() -> PathBuf {
    let root = crate_dir().join("..");
    let candidates: Vec<PathBuf> = match std::env::var_os("MATRIX_HA_MDAD_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![root.join("mdad"), root.join("../shared/mdad")],
    };
    candidates
        .iter()
        .find(|d| d.join("setup.yml").is_file() && d.join("roles/galaxy").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no matrix-docker-ansible-deploy checkout with its roles (setup.yml, roles/galaxy/) \
                 at {candidates:?}: clone it there and install its roles, or set MATRIX_HA_MDAD_DIR"
            )
        })
}

/// Every variable MDAD defines: the top-level keys of its roles' (its own and the external
/// ones') `defaults/main.yml` and of its `group_vars/matrix_servers`.
fn mdad_names() -> BTreeSet<String> {
    let mdad = mdad_dir();
    let mut files = vec![mdad.join("group_vars/matrix_servers")];
    for kind in ["roles/custom", "roles/galaxy"] {
        let dir = mdad.join(kind);
        for role in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let defaults = role.expect("entry").path().join("defaults/main.yml");
            if defaults.is_file() {
                files.push(defaults);
            }
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for line in text.lines() {
            let Some((key, _)) = line.split_once(':') else {
                continue;
            };
            if !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                names.insert(key.to_string());
            }
        }
    }
    names
}

#[test]
fn every_mdad_variable_exists_in_mdad() {
    let known = mdad_names();
    assert!(known.len() > 5_000, "MDAD's names look truncated");
    let emitted = emitted_names();
    let mdad: Vec<&String> = emitted
        .iter()
        .filter(|n| !OUR_PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect();
    assert!(
        mdad.len() > 40,
        "expected the Synapse host's MDAD variables: {mdad:?}"
    );
    for name in mdad {
        assert!(
            known.contains(name),
            "{name} is not a variable of the MDAD at {}",
            mdad_dir().display()
        );
    }
}

#[test]
fn our_prefixes_share_nothing_with_mdad() {
    let known = mdad_names();
    for prefix in OUR_PREFIXES.iter().filter(|p| **p != "ansible_") {
        // MDAD's BorgBackup role owns backup_borg_*; our backup role's names never begin so.
        let clash: Vec<&String> = known
            .iter()
            .filter(|n| n.starts_with(prefix) && !n.starts_with(MDAD_BORG_PREFIX))
            .collect();
        assert!(clash.is_empty(), "{prefix}* collides with MDAD's {clash:?}");
    }
    // Names MDAD owns carry only MDAD's meaning: an emitted one must be MDAD's own variable.
    for name in emitted_names() {
        for owned in [
            "livekit_server_",
            "valkey_",
            "prometheus_",
            "grafana_",
            "backup_borg_",
        ] {
            assert!(
                !name.starts_with(owned) || known.contains(&name),
                "{name} uses MDAD's {owned}* prefix for a name MDAD does not have"
            );
        }
    }
}

/// MDAD's refusal patterns: `^prefix(alt|alt)...(.+)?` regular expressions or exact names.
fn forbidden(name: &str, pattern: &str) -> bool {
    let Some(re) = pattern.strip_prefix('^') else {
        return name == pattern;
    };
    let (re, exact) = match re.strip_suffix('$') {
        Some(r) => (r, true),
        None => (re, false),
    };
    let (re, needs_more) = match re.strip_suffix(".+") {
        Some(r) => (r, true),
        None => (re, false),
    };
    let alternatives: Vec<String> = match (re.find('('), re.find(')')) {
        (Some(open), Some(close)) if open < close => re[open + 1..close]
            .split('|')
            .map(|alt| format!("{}{}{}", &re[..open], alt, &re[close + 1..]))
            .collect(),
        _ => vec![re.to_string()],
    };
    alternatives.iter().any(|lit| {
        assert!(
            lit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "pattern {pattern} is beyond this matcher"
        );
        if exact {
            name == lit
        } else if needs_more {
            name.len() > lit.len() && name.starts_with(lit.as_str())
        } else {
            name.starts_with(lit.as_str())
        }
    })
}

#[test]
fn no_emitted_variable_matches_mdads_forbidden_patterns() {
    let patterns = names_file("mdad-forbidden-names.txt");
    assert!(patterns.iter().any(|p| p == "^matrix_coturn_.+"));
    // The matcher itself, on names MDAD refuses.
    for (name, pattern) in [
        ("matrix_coturn_turn_static_auth_secret", "^matrix_coturn_.+"),
        ("redis_enabled", "^redis_.+"),
        (
            "matrix_synapse_admin_enabled",
            "^matrix_synapse_admin_(enabled|base_path)",
        ),
        (
            "matrix_mautrix_slack_enabled",
            "^matrix_(hookshot|mautrix_slack)_.+",
        ),
    ] {
        assert!(forbidden(name, pattern), "{name} !~ {pattern}");
    }
    for name in emitted_names() {
        for pattern in &patterns {
            assert!(
                !forbidden(&name, pattern),
                "{name} matches MDAD's forbidden {pattern}"
            );
        }
    }
}

#[test]
fn secrets_are_vault_references_listed_in_the_readme() {
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).expect("inventory README");
    let text = run_json(&["--list"], &example("large")).to_string();
    let mut refs = BTreeSet::new();
    for part in text.split("{{ ").skip(1) {
        let name = part.split(" }}").next().unwrap_or_default();
        refs.insert(name.to_string());
    }
    assert!(refs.len() >= 8, "{refs:?}");
    for name in refs {
        assert!(
            name.starts_with("vault_"),
            "template {name} is not a vault variable"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not listed in README.md"
        );
    }
}

#[test]
fn mdad_migration_version_matches_mdads_expected_version() {
    let vars = run_json(&["--host", "synapse-1.chat.z3r0d3v.com"], &example("small"));
    assert_eq!(
        vars["matrix_playbook_migration_validated_version"],
        "v2026.05.18.0"
    );
    assert_eq!(vars["matrix_synapse_workers_preset"], "specialized-workers");
    assert_eq!(vars["matrix_synapse_workers_generic_workers_count"], 0);
    assert_eq!(vars["coturn_enabled"], false);
    assert_eq!(vars["postgres_enabled"], false);
}
