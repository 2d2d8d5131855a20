//! playbooks/site.yml with the dynamic inventory of the example small site: our plays in order
//! on the inventory's groups, then MDAD's setup.yml when a checkout is there, or a play that says
//! how to add it.
//!
//! The MDAD part runs the checkout [`mdad_dir`] finds (MATRIX_HA_MDAD_DIR, `mdad/`, or the pinned
//! copy beside the repository) and fails when there is none.

use std::path::Path;

use matrix_ha_tests::{mdad_dir, root, site_certificate, Ansible, VAULT_SECRETS};

/// The plays of site.yml, in order, from `--list-tasks`.
fn plays(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("play #"))
        .map(|l| l.split_once(": ").map(|(_, name)| name).unwrap_or(l))
        .map(|l| l.split('\t').next().unwrap_or(l).trim().to_string())
        .collect()
}

/// `ansible-playbook -i bin/matrix_inventory playbooks/site.yml` for the example small site.
fn site_yml(ansible: &Ansible) -> std::process::Command {
    let mut command = ansible.command("ansible-playbook");
    command
        .arg("-i")
        .arg(root().join("bin/matrix_inventory"))
        .env(
            "MATRIX_HA_SITE",
            root().join("examples/sites/small/chat.z3r0d3v.com.matrix_ha.yml"),
        )
        .arg(root().join("playbooks/site.yml"));
    command
}

fn list_tasks(mdad: Option<&Path>) -> String {
    let ansible = Ansible::new();
    let run = |check: &str| {
        let out = site_yml(&ansible)
            .args(
                mdad.map(|m| {
                    vec![
                        "-e".to_string(),
                        format!("matrix_ha_mdad_dir={}", m.display()),
                    ]
                })
                .unwrap_or_default(),
            )
            .arg(check)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{check}: {text}");
        text
    };
    run("--syntax-check");
    run("--list-tasks")
}

const OUR_PLAYS: [&str; 11] = [
    "Check the site before any host changes",
    "Intranet host map",
    "The etcd cluster Patroni keeps its leader lock in",
    "PostgreSQL under Patroni, and the Synapse database",
    "PgBouncer in front of the primary",
    "HAProxy behind the VIP",
    "The VIP, under keepalived",
    "MinIO, the media store",
    "Docker and the image registry MDAD's containers come from",
    "TURN for calls, coturn (Synapse gets these servers through MDAD's external-TURN variables)",
    "LiveKit for calls, meshed through one Redis (MDAD's LiveKit JWT service is pointed at it)",
];

/// site.yml's last play, after MDAD's.
const BACKUP_PLAY: &str =
    "Backups, pgBackRest's repository on the backup host, Synapse's files and media pulled there";

#[test]
fn without_mdad_our_plays_run_and_the_last_says_how_to_add_it() {
    assert!(
        !root().join("mdad/setup.yml").exists(),
        "this test needs a checkout without mdad/"
    );
    let listing = list_tasks(None);
    let plays = plays(&listing);
    assert_eq!(&plays[..11], &OUR_PLAYS, "{listing}");
    assert_eq!(
        plays[11], "Matrix, by matrix-docker-ansible-deploy (not found)",
        "{listing}"
    );
    assert_eq!(plays[12], BACKUP_PLAY, "{listing}");
    assert_eq!(plays.len(), 13);
    // Each play lists its role's tasks for the inventory's groups.
    for task in [
        "z3r0d3v.matrix_ha.etcd : Wait until this member is healthy",
        "z3r0d3v.matrix_ha.patroni : Wait for the cluster; on the leader, the Synapse database and role",
        "z3r0d3v.matrix_ha.pgbouncer : Size and write PgBouncer's configuration",
        "z3r0d3v.matrix_ha.haproxy : Write HAProxy's configuration (checked with haproxy -c first)",
        "z3r0d3v.matrix_ha.keepalived : Write keepalived's configuration",
        "z3r0d3v.matrix_ha.livekit_sfu : Write livekit.yaml",
        "Say how to add matrix-docker-ansible-deploy",
        "z3r0d3v.matrix_ha.backup : Report the backups and check the newest is recent",
    ] {
        assert!(listing.contains(task), "{task}:\n{listing}");
    }
}

#[test]
fn with_an_mdad_checkout_its_setup_follows_our_plays() {
    let mdad = mdad_dir();
    let listing = list_tasks(Some(&mdad));
    let plays = plays(&listing);
    assert_eq!(&plays[..11], &OUR_PLAYS, "{listing}");
    assert!(
        plays[11..].iter().any(|p| p == "Set up a Matrix server"),
        "{plays:?}"
    );
    assert!(listing.contains("play #12 (matrix_servers)"), "{listing}");
    // The backup tier comes last: it pulls the files MDAD has written.
    assert_eq!(
        plays.last().map(String::as_str),
        Some(BACKUP_PLAY),
        "{plays:?}"
    );
}

#[test]
fn a_wrong_mdad_dir_fails_with_the_path_it_tried() {
    let wrong = root().join("target/no-mdad-here");
    let run = Ansible::new().run_playbook(
        &root().join("playbooks/mdad_missing.yml"),
        &["-e", &format!("matrix_ha_mdad_dir={}", wrong.display())],
    );
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(!run.success, "{text}");
    let expected = format!("{}/setup.yml does not exist", wrong.display());
    assert!(text.contains(&expected), "{text}");
}

/// Runs only site.yml's first play (and what is tagged `always`) with the example small site,
/// every host local, the vault values of `vault` (a variables file of this run) and `extra`.
fn preflight(vault: &Path, extra: &[String]) -> (bool, String) {
    let out = site_yml(&Ansible::new())
        .args([
            "--tags",
            "matrix-ha-no-such-tag",
            "-e",
            "ansible_connection=local",
        ])
        .args([
            "-e",
            "ansible_python_interpreter={{ ansible_playbook_python }}",
        ])
        .arg("-e")
        .arg(format!("@{}", vault.display()))
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A vault of random values for every secret the inventory refers to, except `without`.
fn vault_file(dir: &Path, without: &[&str]) -> std::path::PathBuf {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let names = VAULT_SECRETS;
    let path = dir.join("vault.json");
    let mut random = [0u8; 16];
    let mut body = serde_json::Map::new();
    for name in names.iter().filter(|n| !without.contains(n)) {
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
            .unwrap();
        let value: String = random.iter().map(|b| format!("{:02x}", b)).collect();
        body.insert(
            name.to_string(),
            serde_json::Value::String(value[..8].into()),
        );
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap()
        .write_all(serde_json::Value::Object(body).to_string().as_bytes())
        .unwrap();
    path
}

#[test]
fn a_missing_secret_stops_the_run_before_any_host_changes_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_file(dir.path(), &["vault_turn_shared_secret"]);
    let (ok, text) = preflight(&vault, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the site's vault lacks vault_turn_shared_secret"),
        "{text}"
    );
    assert!(!text.contains("PLAY [Intranet host map]"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.contains(" : ok=") && !l.contains("changed=0")),
        "{text}"
    );
}

#[test]
fn a_certificate_without_the_base_domain_stops_the_run_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_file(dir.path(), &[]);
    let cert = site_certificate(dir.path(), "DNS:matrix.chat.z3r0d3v.com");
    let cert_var = format!("haproxy_tls_certificate={}", cert.display());
    let (ok, text) = preflight(&vault, &["-e".into(), cert_var.clone()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("{}", cert.display()))
            && text
                .contains("it does not name chat.z3r0d3v.com (it names matrix.chat.z3r0d3v.com)"),
        "{text}"
    );
    assert!(!text.contains("PLAY [Intranet host map]"), "{text}");

    // A wildcard for matrix.<domain> and the base domain itself: the run goes on.
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_file(dir.path(), &[]);
    let cert = site_certificate(dir.path(), "DNS:chat.z3r0d3v.com,DNS:*.chat.z3r0d3v.com");
    let cert_var = format!("haproxy_tls_certificate={}", cert.display());
    let (_, text) = preflight(&vault, &["-e".into(), cert_var]);
    // The roles' argument checks (tagged `always`) come after; only the first play matters here.
    let check = text
        .split("TASK [Check the certificate covers every name HAProxy answers discovery on]")
        .nth(1)
        .and_then(|rest| rest.split("TASK [").next())
        .unwrap_or_else(|| panic!("the certificate check did not run:\n{text}"));
    for host in ["haproxy-1", "haproxy-2"] {
        assert!(
            check.contains(&format!("ok: [{host}.chat.z3r0d3v.com]")),
            "{check}"
        );
    }
    assert!(!check.contains("fatal"), "{check}");
}
