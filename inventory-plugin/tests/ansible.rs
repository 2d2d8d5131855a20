//! The inventory through real Ansible (the project's `.venv`, made by `scripts/setup`): the
//! script form (`-i matrix_inventory` with `MATRIX_HA_SITE`) and the plugin form
//! (`-i site.matrix_ha.yml` through `z3r0d3v.matrix_ha.scale`) give the same inventory, vault
//! references are templated, and a bad site file fails the run with the binary's message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the repository")
        .to_path_buf()
}

fn example(scale: &str) -> PathBuf {
    repo_root()
        .join("examples/sites")
        .join(scale)
        .join("chat.z3r0d3v.com.matrix_ha.yml")
}

/// A tool of the project's virtualenv; fails (never skips) when it is missing.
fn venv_tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup to create the project's virtualenv with Ansible",
        path.display()
    );
    path
}

/// A scratch directory that makes this checkout the installed collection z3r0d3v.matrix_ha.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = dir.path().join("ansible_collections/z3r0d3v");
        std::fs::create_dir_all(&ns).expect("creates the collection path");
        std::os::unix::fs::symlink(repo_root(), ns.join("matrix_ha")).expect("links the checkout");
        Sandbox { dir }
    }

    /// An Ansible command isolated from the user's configuration, running in the sandbox.
    fn ansible(&self, tool: &str) -> Command {
        let mut cmd = Command::new(venv_tool(tool));
        cmd.current_dir(self.dir.path())
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("MATRIX_HA_SITE")
            .env("ANSIBLE_COLLECTIONS_PATH", self.dir.path())
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join("tmp"))
            .env("ANSIBLE_HOME", self.dir.path().join("home"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
            .env(
                "MATRIX_HA_INVENTORY_BIN",
                env!("CARGO_BIN_EXE_matrix_inventory"),
            );
        cmd
    }

    /// `tool -i <source> args…` through the plugin form.
    fn plugin(&self, tool: &str, site: &Path, args: &[&str]) -> Output {
        self.ansible(tool)
            .env(
                "ANSIBLE_INVENTORY_ENABLED",
                "z3r0d3v.matrix_ha.scale,host_list,script,auto,yaml,ini",
            )
            .arg("-i")
            .arg(site)
            .args(args)
            .output()
            .expect("runs ansible")
    }

    /// `tool -i matrix_inventory args…` through the script form.
    fn script(&self, tool: &str, site: &Path, args: &[&str]) -> Output {
        self.ansible(tool)
            .env("ANSIBLE_INVENTORY_ENABLED", "script")
            .env("MATRIX_HA_SITE", site)
            .arg("-i")
            .arg(env!("CARGO_BIN_EXE_matrix_inventory"))
            .args(args)
            .output()
            .expect("runs ansible")
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Group children in a canonical order: Ansible lists them in the order it met them.
fn sorted_children(mut doc: Value) -> Value {
    if let Some(groups) = doc.as_object_mut() {
        for group in groups.values_mut() {
            if let Some(Value::Array(children)) = group.get_mut("children") {
                children.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    doc
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("ansible-inventory prints JSON")
}

#[test]
fn script_and_plugin_forms_give_the_same_inventory() {
    let sandbox = Sandbox::new();
    for scale in ["small", "large"] {
        let site = example(scale);
        let via_script = json(&ok(
            &sandbox.script("ansible-inventory", &site, &["--list"]),
            "script --list",
        ));
        let via_plugin = json(&ok(
            &sandbox.plugin("ansible-inventory", &site, &["--list"]),
            "plugin --list",
        ));
        assert_eq!(
            sorted_children(via_script),
            sorted_children(via_plugin.clone()),
            "{scale}: the two forms differ"
        );

        let hostvars = via_plugin["_meta"]["hostvars"]
            .as_object()
            .expect("hostvars");
        assert_eq!(hostvars.len(), if scale == "small" { 16 } else { 19 });
        let synapse = &hostvars["synapse-1.chat.z3r0d3v.com"];
        assert_eq!(synapse["ansible_host"], "10.20.0.21");
        assert_eq!(synapse["matrix_synapse_database_port"], 6432);
        assert_eq!(synapse["site_scale"], scale, "site facts reach the hosts");
        assert_eq!(
            synapse["etc_hosts_entries"][0]["names"][0],
            "chat.z3r0d3v.com"
        );
        let haproxy = &hostvars["haproxy-1.chat.z3r0d3v.com"];
        assert_eq!(haproxy["keepalived_unicast_peers"][0], "10.20.0.12");
        assert_eq!(haproxy["keepalived_vip"], "10.20.0.10");
        assert_eq!(
            via_plugin["matrix_servers"]["children"][0],
            "chat_z3r0d3v_com_matrix_servers"
        );
    }
}

#[test]
fn a_directory_of_sites_gives_the_same_inventory_in_both_forms() {
    let sandbox = Sandbox::new();
    let dir = repo_root().join("examples/sites/provider");
    let via_script = json(&ok(
        &sandbox.script("ansible-inventory", &dir, &["--list"]),
        "script --list on a directory",
    ));
    let via_plugin = json(&ok(
        &sandbox.plugin("ansible-inventory", &dir, &["--list"]),
        "plugin --list on a directory",
    ));
    assert_eq!(
        sorted_children(via_script),
        sorted_children(via_plugin.clone()),
        "the two forms differ"
    );
    let hostvars = via_plugin["_meta"]["hostvars"]
        .as_object()
        .expect("hostvars");
    assert_eq!(hostvars.len(), 16 + 17 + 19);
    assert_eq!(
        hostvars["patroni-1.team.z3r0d3v.com"]["ansible_host"],
        "172.16.8.31"
    );
    assert_eq!(
        hostvars["patroni-1.ops.z3r0d3v.com"]["ansible_host"],
        "192.168.50.16"
    );
    let mut scales: Vec<&str> = ["scale_small", "scale_medium", "scale_large"]
        .iter()
        .map(|g| via_plugin[*g]["children"][0].as_str().unwrap_or_default())
        .collect();
    scales.sort_unstable();
    assert_eq!(
        scales,
        ["chat_z3r0d3v_com", "ops_z3r0d3v_com", "team_z3r0d3v_com"]
    );
}

#[test]
fn graph_shows_the_groups_in_every_form() {
    let sandbox = Sandbox::new();
    let site = example("medium");
    // Ansible's default inventory plugins: `auto` finds ours through the file's `plugin:` key.
    let with_defaults = sandbox
        .ansible("ansible-inventory")
        .env_remove("ANSIBLE_INVENTORY_ENABLED")
        .arg("-i")
        .arg(&site)
        .arg("--graph")
        .output()
        .expect("runs ansible");
    for (form, out) in [
        (
            "script",
            sandbox.script("ansible-inventory", &site, &["--graph"]),
        ),
        (
            "plugin",
            sandbox.plugin("ansible-inventory", &site, &["--graph"]),
        ),
        ("plugin through auto", with_defaults),
    ] {
        let graph = ok(&out, form);
        for needle in [
            "@scale_medium:",
            "@chat_z3r0d3v_com:",
            "@matrix_servers:",
            "@chat_z3r0d3v_com_patroni:",
            "@chat_z3r0d3v_com_pgbouncer:",
            "|--patroni-1.chat.z3r0d3v.com",
            "|--livekit-3.chat.z3r0d3v.com",
        ] {
            assert!(
                graph.contains(needle),
                "{form}: {needle} missing in\n{graph}"
            );
        }
    }
}

#[test]
fn vault_references_are_templated_by_ansible() {
    let sandbox = Sandbox::new();
    let vars = sandbox.dir.path().join("vars.yml");
    std::fs::write(
        &vars,
        "vault_synapse_db_password: placeholder-for-the-test\n",
    )
    .expect("writes vars");
    let extra = format!("@{}", vars.display());
    let args = [
        "synapse-1.chat.z3r0d3v.com",
        "-c",
        "local",
        "-m",
        "ansible.builtin.debug",
        "-a",
        "var=matrix_synapse_database_password",
        "-e",
        extra.as_str(),
    ];
    for (form, out) in [
        (
            "script",
            sandbox.script("ansible", &example("small"), &args),
        ),
        (
            "plugin",
            sandbox.plugin("ansible", &example("small"), &args),
        ),
    ] {
        let text = ok(&out, form);
        assert!(
            text.contains("\"matrix_synapse_database_password\": \"placeholder-for-the-test\""),
            "{form}: {text}"
        );
    }
}

#[test]
fn a_bad_site_file_fails_the_run_with_the_binarys_message() {
    let sandbox = Sandbox::new();
    let site = sandbox.dir.path().join("bad.matrix_ha.yml");
    std::fs::write(
        &site,
        "plugin: z3r0d3v.matrix_ha.scale\ndomain: chat.z3r0d3v.com\nscale: small\n\
         network: 10.20.0.0/24\nvip: 10.20.0.10\nhosts:\n  minio-1: 10.30.0.41\n",
    )
    .expect("writes");
    let out = sandbox.plugin("ansible-inventory", &site, &["--list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a bad site file");
    assert!(
        err.contains("minio-1") && err.contains("10.30.0.41"),
        "message lost: {err}"
    );
}

#[test]
fn the_plugin_says_where_it_looked_for_the_binary() {
    // A collection holding only the plugin: no bin/, and no matrix_inventory on PATH.
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir
        .path()
        .join("ansible_collections/z3r0d3v/matrix_ha/plugins/inventory");
    std::fs::create_dir_all(&plugins).expect("creates");
    std::os::unix::fs::symlink(
        repo_root().join("plugins/inventory/scale.py"),
        plugins.join("scale.py"),
    )
    .expect("links the plugin");
    let run = |bin: Option<&str>| {
        let mut cmd = Command::new(venv_tool("ansible-inventory"));
        cmd.current_dir(dir.path())
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("MATRIX_HA_INVENTORY_BIN")
            .env("ANSIBLE_COLLECTIONS_PATH", dir.path())
            .env("ANSIBLE_HOME", dir.path().join("home"))
            .env("ANSIBLE_LOCAL_TEMP", dir.path().join("tmp"))
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
            .env("ANSIBLE_INVENTORY_ENABLED", "z3r0d3v.matrix_ha.scale")
            .env("PATH", "/nonexistent")
            .arg("-i")
            .arg(example("small"))
            .arg("--list");
        if let Some(bin) = bin {
            cmd.env("MATRIX_HA_INVENTORY_BIN", bin);
        }
        let out = cmd.output().expect("runs");
        assert!(!out.status.success(), "found a binary that does not exist");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(None);
    for needle in [
        "MATRIX_HA_INVENTORY_BIN",
        "matrix_ha/bin/matrix_inventory",
        "matrix_inventory on PATH",
    ] {
        assert!(err.contains(needle), "{needle} not in: {err}");
    }
    let err = run(Some("/nonexistent/matrix_inventory"));
    assert!(
        err.contains("MATRIX_HA_INVENTORY_BIN") && err.contains("/nonexistent/matrix_inventory"),
        "{err}"
    );
}

/// MDAD's own check, with Ansible's `varnames` lookup and its regular expressions: none of
/// MDAD's refused patterns matches any variable of any host. A planted variable proves the
/// check can fail.
#[test]
fn mdads_varnames_check_finds_nothing_in_the_inventory() {
    let sandbox = Sandbox::new();
    let list = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mdad-forbidden-names.txt"),
    )
    .expect("reads the pattern list");
    let patterns: Vec<String> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            if l.starts_with('^') {
                l.to_string()
            } else {
                format!("^{l}$")
            }
        })
        .collect();
    let vars = sandbox.dir.path().join("forbidden.json");
    std::fs::write(
        &vars,
        serde_json::json!({ "mdad_forbidden": patterns }).to_string(),
    )
    .expect("writes vars");
    let playbook = sandbox.dir.path().join("check.yml");
    std::fs::write(
        &playbook,
        "- hosts: all\n  gather_facts: false\n  connection: local\n  tasks:\n\
         \x20   - name: No variable matches MDAD's refused patterns\n\
         \x20     ansible.builtin.assert:\n\
         \x20       that: found | length == 0\n\
         \x20       fail_msg: \"refused by MDAD: {{ found }}\"\n\
         \x20       quiet: true\n\
         \x20     vars:\n\
         \x20       found: \"{{ query('ansible.builtin.varnames', *mdad_forbidden) }}\"\n",
    )
    .expect("writes the playbook");
    let extra = format!("@{}", vars.display());
    let play = |more: &[&str]| {
        let mut args = vec![playbook.to_str().expect("utf-8 path"), "-e", extra.as_str()];
        args.extend_from_slice(more);
        sandbox.plugin("ansible-playbook", &example("large"), &args)
    };
    let out = play(&[]);
    let text = ok(&out, "ansible-playbook");
    assert!(text.contains("ok=1"), "{text}");
    assert!(!text.contains("failed=1"), "{text}");

    let planted = play(&[
        "--limit",
        "synapse-1.chat.z3r0d3v.com",
        "-e",
        "matrix_coturn_enabled=true",
    ]);
    let text = String::from_utf8_lossy(&planted.stdout);
    assert!(
        !planted.status.success(),
        "the check missed a planted variable: {text}"
    );
    assert!(text.contains("matrix_coturn_enabled"), "{text}");
}
