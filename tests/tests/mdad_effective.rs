//! What MDAD makes of the inventory, for every example scale, without a server: MDAD's own
//! validation tasks must pass with zero failures, and the values MDAD derives from our variables
//! (Synapse's homeserver.yaml as MDAD renders it, MDAD's worker list, the services it would
//! start) must be the ones the inventory means. A right name with a wrong value fails here.
//!
//! The play (written per run) lists every role of MDAD's setup.yml with `when: false`, so their
//! defaults are there as in MDAD's own play, then runs `tests/tasks/mdad_effective.yml`
//! against the Synapse host with a local connection. MDAD's `group_vars/matrix_servers` sits
//! beside the dynamic inventory, where it ranks below the inventory's host variables as it does
//! beside MDAD's setup.yml. The vault's values are random per run, in a 0600 file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

use matrix_ha_tests::{matrix_inventory, mdad_dir, pg, root, Ansible};
use serde_json::{json, Value};

fn site(scale: &str) -> PathBuf {
    let dir = root().join("examples/sites").join(scale);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "yml"))
        .unwrap_or_else(|| panic!("no site file in {}", dir.display()))
}

/// Every `vault_*` name the inventory refers to.
fn vault_names(list: &Value) -> BTreeSet<String> {
    let text = list.to_string();
    text.match_indices("{{ vault_")
        .filter_map(|(i, _)| {
            let rest = &text[i + 3..];
            rest.find(" }}").map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The roles of MDAD's setup.yml, in order.
fn mdad_roles(mdad: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(mdad.join("setup.yml")).expect("MDAD's setup.yml");
    let mut roles = Vec::new();
    for line in text.lines() {
        let item = line
            .trim()
            .trim_start_matches("- ")
            .trim_start_matches("role: ");
        if (item.starts_with("custom/") || item.starts_with("galaxy/"))
            && item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
            && !roles.iter().any(|r| r == item)
        {
            roles.push(item.to_string());
        }
    }
    assert!(roles.len() > 50, "MDAD's setup.yml lists {roles:?}");
    roles
}

struct Effective {
    homeserver: Value,
    workers: Vec<Value>,
    services: Vec<String>,
    livekit: Value,
    vault: BTreeMap<String, String>,
    list: Value,
    synapse: Value,
}

fn run(scale: &str, extra: &[&str]) -> Result<Effective, String> {
    run_site(&site(scale), extra)
}

fn run_site(site: &Path, extra: &[&str]) -> Result<Effective, String> {
    let mdad = mdad_dir();
    let list = matrix_inventory(site, &["--list"]);
    let ansible = Ansible::new();
    let inv = ansible.path("inventory");
    std::fs::create_dir_all(inv.join("group_vars")).unwrap();
    symlink(
        mdad.join("group_vars/matrix_servers"),
        inv.join("group_vars/matrix_servers"),
    )
    .unwrap();
    symlink(root().join("bin/matrix_inventory"), inv.join("site")).unwrap();

    let vault: BTreeMap<String, String> = vault_names(&list)
        .into_iter()
        .map(|n| {
            let v = if n.contains("keepalived") {
                pg::password()[..8].to_string()
            } else {
                pg::password()
            };
            (n, v)
        })
        .collect();
    let vault_file = ansible.path("vault.json");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&vault_file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, json!(vault).to_string().as_bytes()))
        .unwrap();

    let mut play = String::from(
        "---\n- name: MDAD's effective configuration\n  hosts: matrix_servers\n  \
         gather_subset: ['!all', '!min', platform, hardware]\n  roles:\n",
    );
    for role in mdad_roles(&mdad) {
        play.push_str(&format!("    - {{role: {role}, when: false}}\n"));
    }
    play.push_str(&format!(
        "  tasks:\n    - ansible.builtin.import_tasks: {}\n",
        root().join("tests/tasks/mdad_effective.yml").display()
    ));
    let play_file = ansible.path("play.yml");
    std::fs::write(&play_file, play).unwrap();
    let out_dir = ansible.path("effective");
    std::fs::create_dir(&out_dir).unwrap();

    let out = ansible
        .command("ansible-playbook")
        .env("MATRIX_HA_SITE", site)
        .env("ANSIBLE_ROLES_PATH", mdad.join("roles"))
        .arg("-i")
        .arg(&inv)
        .arg(&play_file)
        .arg("-e")
        .arg(format!("@{}", vault_file.display()))
        .args(["-e", "ansible_connection=local", "-e"])
        .arg(format!(
            "ansible_python_interpreter={}",
            root().join(".venv/bin/python").display()
        ))
        .arg("-e")
        .arg(format!("matrix_ha_mdad_dir={}", mdad.display()))
        .arg("-e")
        .arg(format!("matrix_ha_effective_out={}", out_dir.display()))
        .args(extra)
        .output()
        .expect("ansible-playbook runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(text);
    }
    assert!(
        text.contains("failed=0"),
        "MDAD's checks reported failures:\n{text}"
    );
    let host = list["matrix_servers"]["children"]
        .as_array()
        .and_then(|c| c.first())
        .and_then(|g| list[g.as_str().unwrap_or_default()]["hosts"][0].as_str())
        .unwrap_or_else(|| panic!("no Synapse host in {list}"))
        .to_string();
    let file = out_dir.join(format!("{host}.json"));
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", file.display())),
    )
    .expect("JSON");
    let synapse = list["_meta"]["hostvars"][&host].clone();
    Ok(Effective {
        homeserver: doc["homeserver"].clone(),
        workers: doc["workers"].as_array().cloned().unwrap_or_default(),
        services: doc["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        livekit: doc["livekit"].clone(),
        vault,
        list,
        synapse,
    })
}

/// A variable of the site's parent group (`site_*`).
fn site_var<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_object()
        .and_then(|groups| {
            groups
                .values()
                .map(|g| &g["vars"][name])
                .find(|v| !v.is_null())
        })
        .unwrap_or_else(|| panic!("the inventory has no {name}"))
}

/// MDAD's LiveKit JWT service is given our LiveKit (its URL and the vault's API key and
/// secret), and MDAD's own LiveKit server stays off.
fn assert_points_at_our_livekit(e: &Effective, scale: &str) {
    let lk = &e.livekit;
    let url = site_var(&e.list, "site_livekit_url");
    assert!(
        url.as_str().is_some_and(|u| u.starts_with("wss://matrix.")),
        "{scale}: {url}"
    );
    assert_eq!(lk["server_enabled"], json!(false), "{scale}: {lk}");
    assert_eq!(&lk["jwt_livekit_url"], url, "{scale}: {lk}");
    assert_eq!(
        lk["jwt_livekit_key"],
        json!(e.vault["vault_livekit_api_key"]),
        "{scale}"
    );
    assert_eq!(
        lk["jwt_livekit_secret"],
        json!(e.vault["vault_livekit_api_secret"]),
        "{scale}"
    );
    assert!(
        !e.services.iter().any(|s| s.contains("livekit-server")),
        "{scale}: MDAD would start its own LiveKit server: {:?}",
        e.services
    );
}

/// The inventory's worker count variables, by MDAD's worker type names.
fn expected_workers(synapse: &Value) -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    for (name, value) in synapse.as_object().expect("host vars") {
        let n = value.as_u64().unwrap_or(0);
        if let Some(t) = name
            .strip_prefix("matrix_synapse_workers_stream_writer_")
            .and_then(|r| r.strip_suffix("_stream_workers_count"))
        {
            let _ = t;
            *want.entry("stream_writer".to_string()).or_insert(0) += n;
        } else if let Some(t) = name
            .strip_prefix("matrix_synapse_workers_")
            .and_then(|r| r.strip_suffix("_workers_count"))
        {
            let t = match t {
                "room" => "room_worker",
                "sync" => "sync_worker",
                "generic" => "generic_worker",
                other => other,
            };
            *want.entry(t.to_string()).or_insert(0) += n;
        }
    }
    want.retain(|_, n| *n > 0);
    want
}

#[test]
fn mdad_accepts_the_inventory_and_uses_its_values_at_every_scale() {
    for scale in ["small", "medium", "large"] {
        let e = run(scale, &[]).unwrap_or_else(|text| panic!("{scale}: MDAD refused:\n{text}"));
        let s = &e.synapse;
        let h = &e.homeserver;
        let db = &h["database"]["args"];
        assert_eq!(db["host"], s["matrix_synapse_database_host"], "{scale}");
        assert_eq!(
            db["port"],
            json!(6432),
            "{scale}: Synapse goes to PgBouncer"
        );
        assert_eq!(db["cp_min"], s["matrix_synapse_database_cp_min"], "{scale}");
        assert_eq!(db["cp_max"], s["matrix_synapse_database_cp_max"], "{scale}");
        assert_eq!(
            db["password"],
            json!(e.vault["vault_synapse_db_password"]),
            "{scale}"
        );
        let domain = s["matrix_domain"].as_str().expect("domain");
        assert_eq!(h["server_name"], json!(domain), "{scale}");
        assert_eq!(
            h["public_baseurl"],
            json!(format!("https://matrix.{domain}/")),
            "{scale}"
        );

        // Media in the S3 store behind the VIP.
        let s3 = &h["media_storage_providers"][0]["config"];
        assert_eq!(
            s3["endpoint_url"],
            s["matrix_synapse_ext_synapse_s3_storage_provider_config_endpoint_url"],
            "{scale}"
        );
        let vip = e
            .list
            .as_object()
            .and_then(|groups| groups.values().find_map(|g| g["vars"]["site_vip"].as_str()))
            .expect("the inventory's site_vip");
        assert_eq!(s3["endpoint_url"], json!(format!("http://{vip}:9000")));
        assert_eq!(s3["bucket"], json!("synapse-media"), "{scale}");
        assert_eq!(
            s3["secret_access_key"],
            json!(e.vault["vault_minio_synapse_secret_key"]),
            "{scale}"
        );

        // TURN: our coturn servers with the vault's secret.
        assert_eq!(h["turn_uris"], s["matrix_synapse_turn_uris"], "{scale}");
        assert!(
            h["turn_uris"].as_array().is_some_and(|u| u.len() >= 6),
            "{scale}: {}",
            h["turn_uris"]
        );
        assert_eq!(
            h["turn_shared_secret"],
            json!(e.vault["vault_turn_shared_secret"]),
            "{scale}"
        );

        // LiveKit: ours, for the JWT service; MDAD's off. Without Element Call or the Matrix
        // RTC stack the JWT service is off too (below: the services MDAD would start).
        assert_points_at_our_livekit(&e, scale);
        assert_eq!(e.livekit["jwt_service_enabled"], json!(false), "{scale}");

        // The listeners HAProxy feeds take the client's address from X-Forwarded-For.
        let listener = |port: u64| {
            h["listeners"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["port"] == json!(port)))
                .cloned()
                .unwrap_or_else(|| panic!("{scale}: no listener on {port}: {}", h["listeners"]))
        };
        assert_eq!(listener(8008)["x_forwarded"], json!(true), "{scale}");
        assert_eq!(listener(8048)["x_forwarded"], json!(true), "{scale}");
        assert_eq!(
            listener(8048)["resources"][0]["names"],
            json!(["federation"])
        );
        assert!(listener(9100)["type"] == json!("metrics"), "{scale}");

        // Workers: every type and count the inventory asks for, and no other.
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for w in &e.workers {
            *got.entry(w["type"].as_str().unwrap_or("?").to_string())
                .or_insert(0) += 1;
        }
        assert_eq!(got, expected_workers(s), "{scale}");
        let processes = e
            .list
            .as_object()
            .and_then(|groups| {
                groups
                    .values()
                    .find_map(|g| g["vars"]["pgbouncer_synapse_processes"].as_u64())
            })
            .expect("the inventory's pgbouncer_synapse_processes");
        assert_eq!(
            e.workers.len() as u64 + 1,
            processes,
            "{scale}: PgBouncer is sized for every Synapse process"
        );

        // What MDAD would start: Synapse, its workers and Valkey; none of what an offline
        // site behind our HAProxy must not run.
        for want in ["matrix-synapse.service", "matrix-valkey.service"] {
            assert!(e.services.iter().any(|s| s == want), "{scale}: {want}");
        }
        for unwanted in [
            "traefik",
            "reverse-proxy-companion",
            "static-files",
            "exim-relay",
            "client-element",
            "postgres",
            "coturn",
            "livekit",
            "ketesa",
        ] {
            assert!(
                !e.services.iter().any(|s| s.contains(unwanted)),
                "{scale}: MDAD would start {unwanted}: {:?}",
                e.services
            );
        }
        eprintln!(
            "{scale}: MDAD accepts the inventory; {} Synapse processes, {} services",
            processes,
            e.services.len()
        );
    }
}

#[test]
fn with_element_call_mdad_uses_our_livekit_and_not_its_own() {
    // The site's matrix_rtc turns MDAD's Matrix RTC stack on, which would bring MDAD's own
    // LiveKit server; the inventory keeps it off and gives the JWT service ours. Element Call
    // (the operator's own variable) then asks that JWT service.
    let dir = tempfile::tempdir().unwrap();
    let rtc_site = dir.path().join("site.yml");
    let text = std::fs::read_to_string(site("small")).unwrap();
    std::fs::write(
        &rtc_site,
        format!("{}\nmatrix_rtc: true\n", text.trim_end()),
    )
    .unwrap();
    let e = run_site(
        &rtc_site,
        &["-e", r#"{"matrix_element_call_enabled": true}"#],
    )
    .unwrap_or_else(|text| panic!("MDAD refused Element Call with our LiveKit:\n{text}"));
    let lk = &e.livekit;
    assert_points_at_our_livekit(&e, "small");
    assert_eq!(lk["jwt_service_enabled"], json!(true), "{lk}");
    assert!(
        e.services
            .iter()
            .any(|s| s == "matrix-livekit-jwt-service.service"),
        "{:?}",
        e.services
    );
    let jwt = lk["jwt_service_public_url"].as_str().expect("a URL");
    assert!(jwt.starts_with("https://matrix."), "{lk}");
    // Element Call and Synapse's RTC transports ask the JWT service, which hands out ours.
    assert_eq!(lk["element_call_enabled"], json!(true), "{lk}");
    assert_eq!(lk["element_call_livekit_service_url"], json!(jwt), "{lk}");
    assert_eq!(lk["synapse_rtc_transports_livekit_url"], json!(jwt), "{lk}");
}

#[test]
fn mdad_refusals_are_shown_as_mdad_prints_them() {
    // A variable MDAD has renamed away (matrix_postgres_* is now postgres_*).
    let err = match run("small", &["-e", "matrix_postgres_connection_password=x"]) {
        Ok(_) => panic!("MDAD accepted a refused variable"),
        Err(text) => text,
    };
    assert!(
        err.contains("matrix_postgres_connection_password"),
        "MDAD's message names the variable:\n{err}"
    );
}
