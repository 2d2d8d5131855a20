//! z3r0d3v.matrix_ha.etc_hosts through real ansible-playbook, ansible and ansible-doc.

use std::fs;
use std::time::SystemTime;

use matrix_ha_tests::{root, Ansible};
use serde_json::Value;

const STOCK: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1\n\n::1     localhost ip6-localhost ip6-loopback\n";

const PLAY: &str = r#"
- name: Intranet host map
  hosts: localhost
  gather_facts: false
  vars:
    map:
      - ip: 10.20.0.10
        names: [chat.z3r0d3v.com, matrix.chat.z3r0d3v.com]
      - ip: 10.20.0.31
        names: [patroni-1.chat.z3r0d3v.com, patroni-1]
  tasks:
    - name: Map the cluster
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_path }}"
        entries: "{{ map }}"
"#;

fn stamp(path: &std::path::Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[test]
fn first_run_changes_second_run_changes_nothing() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let var = format!("hosts_path={}", hosts.display());

    let first = a.playbook(PLAY, &["-e", &var]).ok();
    assert_eq!(first.recap("localhost", "changed"), 1);
    let content = fs::read_to_string(&hosts).unwrap();
    assert!(content.contains("# BEGIN z3r0d3v.matrix_ha.etc_hosts intranet\n10.20.0.10\tchat.z3r0d3v.com matrix.chat.z3r0d3v.com\n10.20.0.31\tpatroni-1.chat.z3r0d3v.com patroni-1\n# END"), "{content}");
    assert!(content.contains("\n# disabled by z3r0d3v.matrix_ha.etc_hosts intranet: 127.0.1.1\t"));

    let second = a.playbook(PLAY, &["-e", &var]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
    assert_eq!(second.recap("localhost", "ok"), 1);
    assert_eq!(fs::read_to_string(&hosts).unwrap(), content);
}

#[test]
fn check_mode_reports_the_change_and_leaves_the_file_identical() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let before = stamp(&hosts);
    let var = format!("hosts_path={}", hosts.display());

    let check = a.playbook(PLAY, &["-e", &var, "--check"]).ok();
    assert_eq!(check.recap("localhost", "changed"), 1);
    assert_eq!(stamp(&hosts), before, "check mode must not touch the file");

    a.playbook(PLAY, &["-e", &var]).ok();
    let converged = stamp(&hosts);
    let check_again = a.playbook(PLAY, &["-e", &var, "--check"]).ok();
    assert_eq!(check_again.recap("localhost", "changed"), 0);
    assert_eq!(stamp(&hosts), converged);
}

#[test]
fn diff_mode_shows_the_change() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let var = format!("hosts_path={}", hosts.display());
    let run = a.playbook(PLAY, &["-e", &var, "--check", "--diff"]).ok();
    let out = &run.stdout;
    assert!(
        out.contains(&format!("--- before: {}", hosts.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("+++ after: {}", hosts.display())),
        "{out}"
    );
    assert!(
        out.contains("-127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1"),
        "{out}"
    );
    assert!(
        out.contains("+10.20.0.31\tpatroni-1.chat.z3r0d3v.com patroni-1"),
        "{out}"
    );
    assert_eq!(fs::read_to_string(&hosts).unwrap(), STOCK);
}

#[test]
fn no_target_syslog_keeps_the_diff() {
    // Ansible sets _ansible_no_log for no_target_syslog too; that must not hide the diff.
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let book = a.path("play.yml");
    fs::write(&book, PLAY).unwrap();
    let out = a
        .command("ansible-playbook")
        .env("ANSIBLE_NO_TARGET_SYSLOG", "true")
        .arg(&book)
        .args(["--check", "--diff", "-e"])
        .arg(format!("hosts_path={}", hosts.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("+10.20.0.31\tpatroni-1.chat.z3r0d3v.com patroni-1"),
        "{stdout}"
    );
}

#[test]
fn ad_hoc_with_string_arguments() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let args = format!(
        r#"path={} backup=yes entries='[{{"ip": "10.20.0.41", "names": ["minio-1.chat.z3r0d3v.com", "minio-1"]}}]'"#,
        hosts.display()
    );
    let run = a.adhoc("z3r0d3v.matrix_ha.etc_hosts", &args, &[]).ok();
    assert!(run.stdout.contains("localhost | CHANGED"), "{}", run.stdout);
    assert!(run.stdout.contains("\"backup_file\":"), "{}", run.stdout);
    assert!(fs::read_to_string(&hosts)
        .unwrap()
        .contains("10.20.0.41\tminio-1.chat.z3r0d3v.com minio-1\n"));

    let again = a
        .adhoc(
            "z3r0d3v.matrix_ha.etc_hosts",
            &args.replace("backup=yes", "backup=no"),
            &[],
        )
        .ok();
    assert!(
        again.stdout.contains("localhost | SUCCESS"),
        "{}",
        again.stdout
    );

    let removed = a
        .adhoc(
            "z3r0d3v.matrix_ha.etc_hosts",
            &format!("path={} state=absent backup=off", hosts.display()),
            &[],
        )
        .ok();
    assert!(removed.stdout.contains("CHANGED"), "{}", removed.stdout);
    assert_eq!(fs::read_to_string(&hosts).unwrap(), STOCK);

    let bad = a.adhoc(
        "z3r0d3v.matrix_ha.etc_hosts",
        &format!("path={} entries=[] state=gone", hosts.display()),
        &[],
    );
    assert!(!bad.success);
    assert!(
        bad.stdout
            .contains("option 'state': value \\\"gone\\\" is not one of: present, absent"),
        "{}",
        bad.stdout
    );
}

#[test]
fn a_bad_task_fails_naming_the_option_and_changes_nothing() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let play = PLAY.replace("ip: 10.20.0.31", "ip: 10.20.0.310");
    let run = a.playbook(&play, &["-e", &format!("hosts_path={}", hosts.display())]);
    assert!(!run.success);
    assert!(
        run.stdout.contains(
            "option 'entries[1].ip': value \\\"10.20.0.310\\\" is not an IPv4 or IPv6 address"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.recap("localhost", "failed"), 1);
    assert_eq!(fs::read_to_string(&hosts).unwrap(), STOCK);
}

#[test]
fn task_level_no_log_hides_the_result() {
    let a = Ansible::new();
    let hosts = a.path("hosts");
    let play = PLAY.replace(
        "      z3r0d3v.matrix_ha.etc_hosts:",
        "      no_log: true\n      z3r0d3v.matrix_ha.etc_hosts:",
    );
    let run = a
        .playbook(
            &play,
            &["-e", &format!("hosts_path={}", hosts.display()), "-v"],
        )
        .ok();
    assert!(
        run.stdout.contains("the output has been hidden"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("10.20.0.31"), "{}", run.stdout);
}

#[test]
fn ansible_doc_renders_the_generated_docs() {
    let a = Ansible::new();
    let text = a
        .command("ansible-doc")
        .arg("z3r0d3v.matrix_ha.etc_hosts")
        .output()
        .unwrap();
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    // ansible-doc wraps to the terminal width: compare with white space folded.
    let text = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("Keeps one marked block of a hosts file equal to `entries'"),
        "{text}"
    );
    assert!(text.contains("Required when `state=present'"), "{text}");

    let json = a
        .command("ansible-doc")
        .args(["--json", "z3r0d3v.matrix_ha.etc_hosts"])
        .output()
        .unwrap();
    assert!(json.status.success());
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    let module = &doc["z3r0d3v.matrix_ha.etc_hosts"];
    let mut documented: Vec<&str> = module["doc"]["options"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut declared: Vec<&str> = etc_hosts::SPEC.options.iter().map(|o| o.name).collect();
    documented.sort_unstable();
    declared.sort_unstable();
    assert_eq!(
        documented, declared,
        "ansible-doc shows exactly the options of the spec"
    );
    assert_eq!(module["doc"]["options"]["path"]["default"], "/etc/hosts");
    assert!(module["return"]["write_method"].is_object());
    assert!(module["examples"]
        .as_str()
        .unwrap()
        .contains("z3r0d3v.matrix_ha.etc_hosts:"));
}

#[test]
fn the_example_playbook_writes_the_map_once() {
    let a = Ansible::new();
    let hosts = a.path("work/.cache/demo/hosts");
    let var = format!("intranet_hosts_path={}", hosts.display());
    let playbook = root().join("playbooks/intranet_hosts.yml");
    let first = a.run_playbook(&playbook, &["-e", &var]).ok();
    assert_eq!(first.recap("localhost", "changed"), 3);
    let content = fs::read_to_string(&hosts).unwrap();
    assert!(content.contains(
        "10.20.0.10\tchat.z3r0d3v.com matrix.chat.z3r0d3v.com element.chat.z3r0d3v.com\n"
    ));
    assert!(content.contains("# disabled by z3r0d3v.matrix_ha.etc_hosts intranet: 127.0.1.1"));
    let second = a.run_playbook(&playbook, &["-e", &var]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
}
