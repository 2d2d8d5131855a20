//! VIP failover between two real keepalived peers, each in its own network namespace.
//!
//! The test creates two namespaces joined by a veth pair (names unique to the run), addresses
//! from TEST-NET-2 inside them only, renders each node's configuration with the module run
//! inside its namespace, and starts Debian's keepalived in each (unicast peers, a check script
//! that tests a flag file). It asserts what an operator cares about: the VIP is on exactly one
//! node, moves when the holder's check fails, stays put after recovery (nopreempt), and
//! survives a reload (SIGHUP) of the holder. Every wait is bounded; namespaces and processes
//! are removed in Drop. Needs root, `ip` and keepalived; without them it says so and returns.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const VIP: &str = "198.51.100.100";

struct Node {
    ns: String,
    veth: String,
    addr: String,
    dir: PathBuf,
    keepalived: Option<Child>,
}

struct Pair {
    nodes: [Node; 2],
    _scratch: tempfile::TempDir,
}

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn ok(program: &str, args: &[&str]) {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn available() -> bool {
    let root = String::from_utf8_lossy(&sh("id", &["-u"]).stdout).trim() == "0";
    let keepalived = Path::new("/usr/sbin/keepalived").exists();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && keepalived && ip) {
        eprintln!("skipped: needs root ({root}), keepalived ({keepalived}) and ip ({ip})");
    }
    root && keepalived && ip
}

/// An 8-character password made for this run (never printed).
fn password() -> String {
    let bytes = fs::read("/proc/sys/kernel/random/uuid").unwrap();
    String::from_utf8_lossy(&bytes).replace('-', "")[..8].to_string()
}

/// Seconds between checks: 1 here; the benchmark (bench/keepalived_failover.py) also runs
/// the module's default, 2, through `MATRIX_HA_BENCH_CHECK_INTERVAL`.
fn check_interval() -> u32 {
    std::env::var("MATRIX_HA_BENCH_CHECK_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

impl Pair {
    fn new() -> Pair {
        let scratch = tempfile::tempdir().unwrap();
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            &password()[..3] // random suffix
        );
        let mk = |i: usize| {
            let dir = scratch.path().join(format!("node{i}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            // The notify hook's state directory: written by the script user (nobody).
            let state = dir.join("state");
            fs::create_dir(&state).unwrap();
            ok("chown", &["nobody", state.to_str().unwrap()]);
            fs::write(dir.join("healthy"), "").unwrap();
            let notify = dir.join("notify.sh");
            fs::write(
                &notify,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$3\" > {}/vrrp_state\n",
                    state.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&notify, fs::Permissions::from_mode(0o755)).unwrap();
            Node {
                ns: format!("mhk{tag}{i}"),
                veth: format!("vk{tag}{i}"),
                addr: format!("198.51.100.{}", i + 1),
                dir,
                keepalived: None,
            }
        };
        let pair = Pair {
            nodes: [mk(0), mk(1)],
            _scratch: scratch,
        };
        let [a, b] = &pair.nodes;
        ok("ip", &["netns", "add", &a.ns]);
        ok("ip", &["netns", "add", &b.ns]);
        ok(
            "ip",
            &[
                "link", "add", &a.veth, "netns", &a.ns, "type", "veth", "peer", "name", &b.veth,
                "netns", &b.ns,
            ],
        );
        for n in &pair.nodes {
            ok("ip", &["-n", &n.ns, "link", "set", "lo", "up"]);
            ok(
                "ip",
                &[
                    "-n",
                    &n.ns,
                    "addr",
                    "add",
                    &format!("{}/24", n.addr),
                    "dev",
                    &n.veth,
                ],
            );
            ok("ip", &["-n", &n.ns, "link", "set", &n.veth, "up"]);
        }
        pair
    }

    fn peer(&self, i: usize) -> &Node {
        &self.nodes[1 - i]
    }

    /// Runs the module inside node `i`'s namespace.
    fn module(&self, i: usize, args: &Value) -> Value {
        let n = &self.nodes[i];
        let args_file = n.dir.join("args.json");
        fs::write(&args_file, args.to_string()).unwrap();
        fs::set_permissions(&args_file, fs::Permissions::from_mode(0o600)).unwrap();
        let module = assert_cmd::cargo::cargo_bin("keepalived_vip");
        let out = sh(
            "ip",
            &[
                "netns",
                "exec",
                &n.ns,
                module.to_str().unwrap(),
                args_file.to_str().unwrap(),
            ],
        );
        fs::remove_file(&args_file).unwrap();
        serde_json::from_slice(&out.stdout).expect("one JSON result")
    }

    fn args(&self, i: usize, priority: u32, pass: &str) -> Value {
        let n = &self.nodes[i];
        json!({
            "path": n.dir.join("keepalived.conf"),
            "interface": n.veth,
            "vip": format!("{VIP}/24"),
            "priority": priority,
            "peers": [self.peer(i).addr],
            "auth_pass": pass,
            "nopreempt": true,
            "advert_int": 1,
            "check_script": format!("/usr/bin/test -e {}/healthy", n.dir.display()),
            "check_interval": check_interval(),
            "check_fall": 2,
            "check_rise": 2,
            "script_user": "nobody",
            "notify_script": n.dir.join("notify.sh"),
            "state_file": n.dir.join("state/vrrp_state"),
            "nonlocal_bind": true,
            "sysctl_path": n.dir.join("sysctl.conf"),
            "pid_file": n.dir.join("keepalived.pid"),
        })
    }

    fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = fs::File::create(n.dir.join("keepalived.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &n.ns,
                "keepalived",
                "--dont-fork",
                "--log-console",
            ])
            .args(["--vrrp", "--use-file"])
            .arg(n.dir.join("keepalived.conf"))
            .arg("--pid")
            .arg(n.dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(n.dir.join("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        n.keepalived = Some(child);
    }

    /// Which nodes carry the VIP now.
    fn holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&i| {
                let n = &self.nodes[i];
                let out = sh(
                    "ip",
                    &["-n", &n.ns, "-4", "-o", "addr", "show", "dev", &n.veth],
                );
                String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/24 "))
            })
            .collect()
    }

    /// Waits (bounded) until exactly `want` holds the VIP; returns the seconds it took.
    fn wait_holder(&self, want: Option<usize>, limit: Duration) -> f64 {
        let start = Instant::now();
        for _ in 0..10_000 {
            let h = self.holders();
            let done = match want {
                Some(i) => h == vec![i],
                None => h.len() == 1,
            };
            if done {
                return start.elapsed().as_secs_f64();
            }
            if start.elapsed() > limit {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "VIP holders {:?} after {limit:?}, wanted {want:?}; logs:\n{}\n{}",
            self.holders(),
            self.log(0),
            self.log(1)
        );
    }

    /// Asserts the VIP stays on `i` alone for `span`, sampled every 50 ms.
    fn stays(&self, i: usize, span: Duration, what: &str) {
        let start = Instant::now();
        while start.elapsed() < span {
            assert_eq!(self.holders(), vec![i], "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("keepalived.log")).unwrap_or_default()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.keepalived.take() {
                // `ip netns exec` execs keepalived, so the child's pid is keepalived's.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &n.ns]).status();
        }
    }
}

#[test]
fn vip_moves_on_failure_stays_with_nopreempt_and_survives_reload() {
    if !available() {
        return;
    }
    let pass = password();
    let mut pair = Pair::new();

    // Render both nodes' configuration with the module, inside each namespace.
    for (i, prio) in [(0, 150), (1, 100)] {
        let r = pair.module(i, &pair.args(i, prio, &pass));
        assert_eq!(r["failed"], json!(false), "{r}");
        assert_eq!(r["changed"], json!(true));
        assert_eq!(r["config_test"], json!("passed"), "{r}");
        assert_eq!(r["virtual_router_id"], json!(100), "last octet of the VIP");
        assert_eq!(r["vip_present"], json!(false));
        assert_eq!(r["nonlocal_bind"], json!(true));
        assert!(!r.to_string().contains(&pass), "the password never shows");
        let conf = pair.nodes[i].dir.join("keepalived.conf");
        assert_eq!(
            fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
    // ip_nonlocal_bind is per namespace: set in the test's namespaces only.
    let live = sh(
        "ip",
        &[
            "netns",
            "exec",
            &pair.nodes[0].ns,
            "cat",
            "/proc/sys/net/ipv4/ip_nonlocal_bind",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), "1");

    pair.start(0);
    pair.start(1);
    let first = pair.wait_holder(None, Duration::from_secs(20));
    let holder = pair.holders()[0];
    let other = 1 - holder;
    println!("keepalived_failover initial_election_seconds={first:.2}");
    pair.stays(
        holder,
        Duration::from_secs(2),
        "the VIP is on exactly one node",
    );

    // The module reports where the VIP is, and the state the notify hook wrote.
    let prio = |i: usize| if i == 0 { 150 } else { 100 };
    let r = pair.module(holder, &pair.args(holder, prio(holder), &pass));
    assert_eq!(r["changed"], json!(false), "{r}");
    assert_eq!(r["vip_present"], json!(true));
    assert_eq!(r["vrrp_state"], json!("MASTER"), "{r}");
    let r = pair.module(other, &pair.args(other, prio(other), &pass));
    assert_eq!(r["vip_present"], json!(false));
    assert_eq!(r["vrrp_state"], json!("BACKUP"), "{r}");

    // The holder's check fails: the VIP moves.
    fs::remove_file(pair.nodes[holder].dir.join("healthy")).unwrap();
    let moved = pair.wait_holder(Some(other), Duration::from_secs(30));
    println!("keepalived_failover check_failure_to_move_seconds={moved:.2}");
    pair.stays(
        other,
        Duration::from_secs(1),
        "the failed node does not hold the VIP",
    );

    // Recovery: with nopreempt the VIP stays where it is, even with a higher priority back.
    fs::write(pair.nodes[holder].dir.join("healthy"), "").unwrap();
    pair.stays(
        other,
        Duration::from_secs(6),
        "nopreempt keeps the VIP after recovery",
    );
    let r = pair.module(holder, &pair.args(holder, prio(holder), &pass));
    assert_eq!(
        r["vrrp_state"],
        json!("BACKUP"),
        "recovered, not preempting: {r}"
    );

    // A configuration change on the holder reloads keepalived by SIGHUP: the VIP stays.
    let new_holder = other;
    let r = pair.module(new_holder, &pair.args(new_holder, 120, &pass));
    assert_eq!(r["changed"], json!(true), "{r}");
    assert_eq!(r["reloaded"], json!(true), "{r}");
    assert_eq!(r["vip_present"], json!(true));
    pair.stays(new_holder, Duration::from_secs(5), "a reload keeps the VIP");
    assert!(
        pair.log(new_holder).contains("Reloading"),
        "keepalived reloaded:\n{}",
        pair.log(new_holder)
    );
}
