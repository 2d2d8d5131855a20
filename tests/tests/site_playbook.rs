//! playbooks/site.yml with the dynamic inventory of the example small site: our plays in order
//! on the inventory's groups, then MDAD's setup.yml when a checkout is there, or a play that says
//! how to add it.
//!
//! The MDAD part runs the checkout [`mdad_dir`] finds (MATRIX_HA_MDAD_DIR, `mdad/`, or the pinned
//! copy beside the repository) and fails when there is none.

use std::path::Path;

use matrix_ha_tests::{mdad_dir, root, Ansible};

/// The plays of site.yml, in order, from `--list-tasks`.
fn plays(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("play #"))
        .map(|l| l.split_once(": ").map(|(_, name)| name).unwrap_or(l))
        .map(|l| l.split('\t').next().unwrap_or(l).trim().to_string())
        .collect()
}

fn list_tasks(mdad: Option<&Path>) -> String {
    let ansible = Ansible::new();
    let run = |check: &str| {
        let out = ansible
            .command("ansible-playbook")
            .arg("-i")
            .arg(root().join("bin/matrix_inventory"))
            .env(
                "MATRIX_HA_SITE",
                root().join("examples/sites/small/chat.z3r0d3v.com.matrix_ha.yml"),
            )
            .arg(root().join("playbooks/site.yml"))
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

const OUR_PLAYS: [&str; 8] = [
    "Intranet host map",
    "The etcd cluster Patroni keeps its leader lock in",
    "PostgreSQL under Patroni, and the Synapse database",
    "PgBouncer in front of the primary",
    "HAProxy behind the VIP",
    "The VIP, under keepalived",
    "MinIO, the media store",
    "Docker and the image registry MDAD's containers come from",
];

#[test]
fn without_mdad_our_plays_run_and_the_last_says_how_to_add_it() {
    assert!(
        !root().join("mdad/setup.yml").exists(),
        "this test needs a checkout without mdad/"
    );
    let listing = list_tasks(None);
    let plays = plays(&listing);
    assert_eq!(&plays[..8], &OUR_PLAYS, "{listing}");
    assert_eq!(
        plays[8], "Matrix, by matrix-docker-ansible-deploy (not found)",
        "{listing}"
    );
    assert_eq!(plays.len(), 9);
    // Each play lists its role's tasks for the inventory's groups.
    for task in [
        "z3r0d3v.matrix_ha.etcd : Wait until this member is healthy",
        "z3r0d3v.matrix_ha.patroni : Wait for the cluster; on the leader, the Synapse database and role",
        "z3r0d3v.matrix_ha.pgbouncer : Size and write PgBouncer's configuration",
        "z3r0d3v.matrix_ha.haproxy : Write HAProxy's configuration (checked with haproxy -c first)",
        "z3r0d3v.matrix_ha.keepalived : Write keepalived's configuration",
        "Say how to add matrix-docker-ansible-deploy",
    ] {
        assert!(listing.contains(task), "{task}:\n{listing}");
    }
}

#[test]
fn with_an_mdad_checkout_its_setup_follows_our_plays() {
    let mdad = mdad_dir();
    let listing = list_tasks(Some(&mdad));
    let plays = plays(&listing);
    assert_eq!(&plays[..8], &OUR_PLAYS, "{listing}");
    assert!(
        plays[8..].iter().any(|p| p == "Set up a Matrix server"),
        "{plays:?}"
    );
    assert!(listing.contains("play #9 (matrix_servers)"), "{listing}");
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
