//! z3r0d3v.matrix_ha.keepalived_vip through real ansible-playbook on localhost.
//!
//! The playbooks run inside a network namespace the test creates (unique name, deleted at the
//! end) holding a veth interface `mh0` with 198.51.100.11/24, so the module reads a known
//! interface and the host's interfaces and sysctls are never touched. Needs root.

use std::fs;
use std::process::Command;

use matrix_ha_tests::{Ansible, Run};

const PLAY: &str = r#"
- name: The VIP of chat.z3r0d3v.com
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Configure keepalived
      z3r0d3v.matrix_ha.keepalived_vip:
        path: "{{ conf }}"
        interface: mh0
        vip: 198.51.100.10/24
        priority: 150
        peers: [198.51.100.12]
        auth_pass: "{{ pass }}"
        nopreempt: true
        script_user: root
        check_script: /bin/true
        nonlocal_bind: true
        sysctl_path: "{{ sysctl }}"
        pid_file: "{{ pidfile }}"
      register: vip
    - name: Show what the module found
      ansible.builtin.debug:
        msg: "vrid={{ vip.virtual_router_id }} src={{ vip.unicast_src_ip }} present={{ vip.vip_present }}"
"#;

/// A network namespace of this test (unique name) with a veth interface `mh0`; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        let ns = Netns(format!("mhka{}{}", std::process::id(), &uuid[..6]));
        let run = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["netns", "add", &ns.0]);
        run(&[
            "-n", &ns.0, "link", "add", "mh0", "type", "veth", "peer", "name", "mh1",
        ]);
        run(&["-n", &ns.0, "addr", "add", "198.51.100.11/24", "dev", "mh0"]);
        run(&["-n", &ns.0, "link", "set", "mh0", "up"]);
        ns
    }

    /// Runs `ansible-playbook` with `extra` inside the namespace.
    fn playbook(&self, a: &Ansible, extra: &[&str]) -> Run {
        let file = a.path("playbook.yml");
        fs::write(&file, PLAY).unwrap();
        let inner = a.command("ansible-playbook");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0])
            .arg(inner.get_program())
            .arg(&file)
            .args(extra);
        if let Some(dir) = inner.get_current_dir() {
            cmd.current_dir(dir);
        }
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        Run::from(cmd.output().expect("ansible-playbook runs"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn renders_checks_diffs_and_converges() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: needs root (ip netns)");
        return;
    }
    let a = Ansible::new();
    let ns = Netns::new();
    let conf = a.path("keepalived.conf");
    let sysctl = a.path("sysctl.conf");
    // A password made for this run, passed in a vars file (never on a command line).
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    let pass: String = uuid.replace('-', "")[..8].to_string();
    let vars = a.path("vars.yml");
    fs::write(
        &vars,
        format!(
            "conf: {}\nsysctl: {}\npidfile: {}\npass: \"{pass}\"\n",
            conf.display(),
            sysctl.display(),
            a.path("keepalived.pid").display()
        ),
    )
    .unwrap();
    let vars_arg = format!("@{}", vars.display());

    // Check mode with diff: the change is shown, the password is not, nothing is written.
    let check = ns
        .playbook(&a, &["-e", &vars_arg, "--check", "--diff"])
        .ok();
    assert_eq!(check.recap("localhost", "changed"), 1);
    assert!(
        check.stdout.contains("+    virtual_router_id 10"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("auth_pass ********"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains(&pass) && !check.stderr.contains(&pass));
    assert!(!conf.exists() && !sysctl.exists());

    // The real run writes the file, the sysctl.d file; the second run changes nothing.
    let first = ns.playbook(&a, &["-e", &vars_arg]).ok();
    assert_eq!(first.recap("localhost", "changed"), 1);
    assert!(
        first
            .stdout
            .contains("vrid=10 src=198.51.100.11 present=False"),
        "{}",
        first.stdout
    );
    let content = fs::read_to_string(&conf).unwrap();
    assert!(content.contains("    unicast_peer {\n        198.51.100.12\n    }\n"));
    assert!(content.contains(&format!("auth_pass {pass}\n")));
    assert!(fs::read_to_string(&sysctl)
        .unwrap()
        .contains("net.ipv4.ip_nonlocal_bind = 1\n"));
    assert!(!first.stdout.contains(&pass));

    let second = ns.playbook(&a, &["-e", &vars_arg]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
    assert_eq!(fs::read_to_string(&conf).unwrap(), content);
    let check_again = ns
        .playbook(&a, &["-e", &vars_arg, "--check", "--diff"])
        .ok();
    assert_eq!(check_again.recap("localhost", "changed"), 0);

    // A bad option fails the task with the option named, and the file stays as it was.
    let bad = ns.playbook(&a, &["-e", &vars_arg, "-e", "pass=123456789"]);
    assert!(!bad.success);
    assert!(bad.stdout.contains("option 'auth_pass'"), "{}", bad.stdout);
    assert_eq!(fs::read_to_string(&conf).unwrap(), content);
}
