//! The keepalived_vip binary as Ansible runs it: an args file in, one JSON result out.
//!
//! Each run happens in a fresh, private network namespace (`unshare --net`, with a user
//! namespace when not root) holding a veth interface `mh0` (its peer `mh1` in the same namespace) with 198.51.100.11/24, so the
//! tests see a known interface and never touch the host's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use matrix_ha_testkit::{self as testkit, per_run};
use serde_json::{json, Value};

const OLD: &str = "# an operator's keepalived.conf\n";
static PASS: LazyLock<String> = LazyLock::new(|| per_run("", 4));
static BASE_PASS: LazyLock<String> = LazyLock::new(|| per_run("", 4));

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keepalived.conf"), OLD).unwrap();
        Scratch { dir }
    }
    fn conf(&self) -> PathBuf {
        self.dir.path().join("keepalived.conf")
    }
    fn listing(&self) -> Vec<String> {
        testkit::listing(self.dir.path())
    }
    fn base(&self) -> Value {
        json!({
            "path": self.conf(),
            "interface": "mh0",
            "vip": "198.51.100.10/24",
            "peers": ["198.51.100.12"],
            "priority": 150,
            "auth_pass": &*BASE_PASS,
            "script_user": "root",
            "check_script": "/bin/true",
            "pid_file": self.dir.path().join("keepalived.pid"),
            "sysctl_path": self.dir.path().join("sysctl.conf"),
        })
    }
    fn with(&self, changes: Value) -> Value {
        let mut v = self.base();
        for (k, val) in changes.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        v
    }
}

fn root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs the module in a private network namespace with the veth interface `mh0`.
fn run(dir: &Path, args: &Value, flags: &[&str]) -> (Value, bool) {
    let args_file = dir.join("..").join(format!(
        "args-{}.json",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&args_file, args.to_string()).unwrap();
    fs::set_permissions(&args_file, fs::Permissions::from_mode(0o600)).unwrap();
    let module = assert_cmd::cargo::cargo_bin("keepalived_vip");
    let mut cmd = Command::new("unshare");
    if !root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    let script = "ip link add mh0 type veth peer name mh1 && ip addr add 198.51.100.11/24 dev mh0 \
                  && ip link set mh0 up && exec \"$@\"";
    let out = cmd
        .args(["--net", "--", "sh", "-c", script, "sh"])
        .arg(&module)
        .args(flags)
        .arg(&args_file)
        .output()
        .unwrap();
    fs::remove_file(&args_file).unwrap();
    let ran = testkit::result(out);
    (ran.value, ran.ok)
}

#[test]
fn good_args_write_once_then_nothing_and_hide_the_password() {
    let s = Scratch::new();
    let args = s.with(json!({"auth_pass": &*PASS, "_ansible_diff": true}));
    let (first, ok) = run(s.dir.path(), &args, &[]);
    assert!(ok, "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["virtual_router_id"], json!(10));
    assert_eq!(first["unicast_src_ip"], json!("198.51.100.11"));
    assert_eq!(first["vip_present"], json!(false));
    assert_eq!(first["reloaded"], json!(false));
    let after = first["diff"]["after"].as_str().unwrap();
    assert!(after.contains("auth_pass ********"), "{after}");
    assert_eq!(first["diff"]["before"], json!(OLD));
    assert!(!first.to_string().contains(PASS.as_str()));
    let content = fs::read_to_string(s.conf()).unwrap();
    assert!(content.contains(&format!("auth_pass {}\n", *PASS)));
    assert!(content.contains("unicast_src_ip 198.51.100.11\n"));
    assert_eq!(
        fs::metadata(s.conf()).unwrap().permissions().mode() & 0o777,
        0o640
    );

    let (second, ok) = run(s.dir.path(), &args, &[]);
    assert!(ok);
    assert_eq!(second["changed"], json!(false), "{second}");
    assert_eq!(second["config_test"], json!("not needed"));
    assert!(second.get("diff").is_none());
    assert_eq!(fs::read_to_string(s.conf()).unwrap(), content);
    assert_eq!(s.listing(), vec!["keepalived.conf"]);
}

#[test]
fn check_mode_writes_nothing() {
    let s = Scratch::new();
    let (v, ok) = run(
        s.dir.path(),
        &s.with(json!({"nonlocal_bind": true})),
        &["--check"],
    );
    assert!(ok, "{v}");
    assert_eq!(v["changed"], json!(true));
    assert_eq!(fs::read_to_string(s.conf()).unwrap(), OLD);
    assert_eq!(s.listing(), vec!["keepalived.conf"]);
}

#[test]
fn docs_and_help_come_from_the_spec() {
    let out = assert_cmd::Command::cargo_bin("keepalived_vip")
        .unwrap()
        .arg("--docs")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("module: keepalived_vip"), "{text}");
    assert!(text.contains("no_log: true"));
    assert!(text.contains("virtual_router_id"));
}

fn bad_inputs(s: &Scratch) -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("VIP without prefix", s.with(json!({"vip": "198.51.100.10"})), "option 'vip': value \"198.51.100.10\" has no prefix"),
        ("IPv6 VIP", s.with(json!({"vip": "fd00::10/64"})), "option 'vip': value \"fd00::10/64\" is IPv6"),
        ("VIP not an address", s.with(json!({"vip": "vip.chat.z3r0d3v.com/24"})), "option 'vip': value \"vip.chat.z3r0d3v.com/24\" is not an IPv4"),
        ("VIP outside the interface's network", s.with(json!({"vip": "10.20.0.10/24"})), "option 'vip': value \"10.20.0.10/24\" is not inside a network of interface 'mh0' (it has 198.51.100.0/24)"),
        ("VIP with another prefix", s.with(json!({"vip": "198.51.100.10/16"})), "option 'vip': value \"198.51.100.10/16\" is not inside a network"),
        ("VIP is the network address", s.with(json!({"vip": "198.51.100.0/24"})), "network or broadcast"),
        ("VIP is the broadcast address", s.with(json!({"vip": "198.51.100.255/24"})), "network or broadcast"),
        ("VRID 0", s.with(json!({"virtual_router_id": 0})), "option 'virtual_router_id': value 0 is outside 1 to 255"),
        ("VRID 256", s.with(json!({"virtual_router_id": 256})), "option 'virtual_router_id': value 256 is outside 1 to 255"),
        ("VRID text", s.with(json!({"virtual_router_id": "ten"})), "option 'virtual_router_id': value \"ten\" is not a valid int"),
        ("priority 0", s.with(json!({"priority": 0})), "option 'priority': value 0 is outside 1 to 254"),
        ("priority 255", s.with(json!({"priority": 255})), "option 'priority': value 255 is outside 1 to 254"),
        ("auth_pass over 8", s.with(json!({"auth_pass": "123456789"})), "option 'auth_pass': value (hidden) has 9 characters: keepalived uses only the first 8"),
        ("auth_pass with a space", s.with(json!({"auth_pass": "abcd efg"})), "option 'auth_pass': value (hidden) must be printable ASCII"),
        ("auth_pass of one character", s.with(json!({"auth_pass": "a"})), "option 'auth_pass': the value (hidden: no_log) is shorter than 8 characters"),
        ("instance_name of 10 MB", s.with(json!({"instance_name": "v".repeat(10 << 20)})), "option 'instance_name': value \"vvvvvvvv"),
        ("instance_name with a newline", s.with(json!({"instance_name": "vip\n}\nglobal_defs {"})), "option 'instance_name': value \"vip\\n}\\nglobal_defs {\" is not an instance name: it contains the control character '\\n'"),
        ("auth_pass empty", s.with(json!({"auth_pass": ""})), "option 'auth_pass': value (hidden) is empty"),
        ("peers empty", s.with(json!({"peers": []})), "option 'peers': value [] is empty"),
        ("peers missing", s.with(json!({"peers": null})), "missing required option 'peers'"),
        ("peer is this node", s.with(json!({"peers": ["198.51.100.11"]})), "option 'peers[0]': value \"198.51.100.11\" is this node's own address"),
        ("peer listed twice", s.with(json!({"peers": ["198.51.100.12", "198.51.100.12"]})), "option 'peers[1]': value \"198.51.100.12\" is listed twice"),
        ("peer not an address", s.with(json!({"peers": ["haproxy-2"]})), "option 'peers[0]': value \"haproxy-2\" is not an IPv4 address"),
        ("peer is the VIP", s.with(json!({"peers": ["198.51.100.10"]})), "option 'peers[0]': value \"198.51.100.10\" is the VIP"),
        ("source not on the interface", s.with(json!({"unicast_src_ip": "198.51.100.99"})), "option 'unicast_src_ip': value \"198.51.100.99\" is not an address of interface 'mh0'"),
        ("source not an address", s.with(json!({"unicast_src_ip": "me"})), "option 'unicast_src_ip': value \"me\" is not an IPv4 address"),
        ("interface missing", s.with(json!({"interface": "nosuch0"})), "option 'interface': value \"nosuch0\" does not exist on this host"),
        ("interface name too long", s.with(json!({"interface": "a-very-long-interface"})), "option 'interface': value \"a-very-long-interface\" is longer than 15 characters"),
        ("relative check script", s.with(json!({"check_script": "pgrep haproxy"})), "option 'check_script': value \"pgrep haproxy\" must start with the absolute path"),
        ("check script with a quote", s.with(json!({"check_script": "/bin/true\" x"})), "option 'check_script'"),
        ("notify script with a brace", s.with(json!({"notify_script": "/bin/true }"})), "option 'notify_script'"),
        ("advert_int 0", s.with(json!({"advert_int": 0})), "option 'advert_int': value 0 is outside 1 to 255"),
        ("check_fall 0", s.with(json!({"check_fall": 0})), "option 'check_fall': value 0 is outside 1 to 100"),
        ("instance name with a space", s.with(json!({"instance_name": "vi 1"})), "option 'instance_name'"),
        ("script user missing", s.with(json!({"script_user": "no-such-user-mhk"})), "option 'script_user': value \"no-such-user-mhk\" is not a user on this host"),
        ("bad bool", s.with(json!({"nopreempt": "maybe"})), "option 'nopreempt': value \"maybe\" is not a valid bool"),
        ("unknown option", s.with(json!({"vrid": 10})), "unsupported option 'vrid'"),
        ("missing vip", s.with(json!({"vip": null})), "missing required option 'vip'"),
        ("keepalived rejects the file", s.with(json!({"keepalived_bin": "/bin/false"})), "keepalived rejected the rendered configuration"),
    ]
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let s = Scratch::new();
    let cases = bad_inputs(&s);
    assert!(cases.len() >= 25);
    for (what, args, expected) in cases {
        let (v, ok) = run(s.dir.path(), &args, &[]);
        assert!(!ok, "{what}: exit code 1");
        assert_eq!(v["failed"], json!(true), "{what}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(expected), "{what}: {expected:?} in {msg:?}");
        assert!(
            !v.to_string().contains(BASE_PASS.as_str()),
            "{what}: secret shown"
        );
        assert_eq!(fs::read_to_string(s.conf()).unwrap(), OLD, "{what}");
        assert_eq!(s.listing(), vec!["keepalived.conf"], "{what}");
    }
}

/// Deletes the user the test created.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

#[test]
fn a_missing_script_user_is_created_when_asked() {
    if !root() {
        eprintln!("skipped: useradd needs root");
        return;
    }
    let s = Scratch::new();
    let user = format!("mhk{}", std::process::id());
    let _guard = UserGuard(user.clone());
    let args = s.with(json!({"script_user": user, "create_script_user": true}));
    let exists = |u: &str| Command::new("id").arg(u).output().unwrap().status.success();

    let (v, ok) = run(s.dir.path(), &args, &["--check"]);
    assert!(ok, "{v}");
    assert_eq!(v["config_test"], json!("skipped"));
    assert!(v["msg"]
        .as_str()
        .unwrap()
        .contains(&format!("created user {user}")));
    assert!(!exists(&user), "check mode creates no user");
    assert_eq!(fs::read_to_string(s.conf()).unwrap(), OLD);

    let (v, ok) = run(s.dir.path(), &args, &[]);
    assert!(ok, "{v}");
    assert!(exists(&user));
    assert_eq!(v["config_test"], json!("passed"), "{v}");
    assert!(fs::read_to_string(s.conf())
        .unwrap()
        .contains(&format!("script_user {user}\n")));
}
