//! The minio_pool binary as Ansible runs it: an args file in, one JSON result out.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use assert_cmd::Command;
use matrix_ha_testkit::{self as testkit, per_run};
use serde_json::{json, Value};

static PASS: LazyLock<String> = LazyLock::new(|| per_run("cli-", 12));

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn env(&self) -> PathBuf {
        self.dir.path().join("minio")
    }
    /// The directory's names, without the args file this test writes there.
    fn listing(&self) -> Vec<String> {
        let mut names = testkit::listing(self.dir.path());
        names.retain(|n| n != "args.json");
        names
    }
}

fn pool(first: u32, last: u32, drives: u32) -> Value {
    json!({
        "hosts": (first..=last).map(|i| format!("minio-{i}.chat.z3r0d3v.com")).collect::<Vec<_>>(),
        "drives": (1..=drives).map(|i| format!("/mnt/disk{i}/minio")).collect::<Vec<_>>(),
        "drive_size": "4TiB",
    })
}

fn args(env: &Path, pools: Value) -> Value {
    json!({"env_path": env, "pools": pools, "root_user": "matrix-admin", "root_password": &*PASS})
}

fn run(dir: &Path, args: &Value, flags: &[&str]) -> (Value, bool) {
    let file = dir.join("args.json");
    fs::write(&file, args.to_string()).unwrap();
    let ran = testkit::run("minio_pool", &file, flags);
    (ran.value, ran.ok)
}

#[test]
fn writes_the_design_pool_once_then_nothing() {
    let s = Scratch::new();
    let a = {
        let mut a = args(&s.env(), json!([pool(1, 4, 4)]));
        a["_ansible_diff"] = json!(true);
        a
    };
    let (v, ok) = run(s.dir.path(), &a, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["changed"], json!(true));
    assert_eq!(
        v["minio_volumes"],
        json!("http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio")
    );
    assert_eq!(v["set_size"], json!(16));
    assert_eq!(v["parity"], json!(4));
    assert_eq!(v["pools"][0]["sets"], json!(1));
    assert_eq!(v["pools"][0]["usable"], json!("48.0 TiB"));
    assert_eq!(v["usable_bytes"], json!(48u64 << 40));
    assert!(
        !v.to_string().contains(PASS.as_str()),
        "the password never shows"
    );
    assert!(v["diff"]["after"]
        .as_str()
        .unwrap()
        .contains("MINIO_ROOT_PASSWORD=\"********\""));
    let text = fs::read_to_string(s.env()).unwrap();
    assert!(text.contains(&format!("MINIO_ROOT_PASSWORD=\"{}\"\n", *PASS)));
    assert_eq!(
        fs::metadata(s.env()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (again, ok) = run(s.dir.path(), &a, &[]);
    assert!(ok);
    assert_eq!(again["changed"], json!(false), "{again}");
    assert_eq!(fs::read_to_string(s.env()).unwrap(), text);
    assert_eq!(s.listing(), vec!["minio"]);
}

#[test]
fn appending_a_pool_is_accepted_with_a_warning() {
    let s = Scratch::new();
    let (v, ok) = run(s.dir.path(), &args(&s.env(), json!([pool(1, 4, 4)])), &[]);
    assert!(ok, "{v}");
    let two = args(&s.env(), json!([pool(1, 4, 4), pool(5, 8, 4)]));
    let (check, ok) = run(s.dir.path(), &two, &["--check"]);
    assert!(ok);
    assert_eq!(check["changed"], json!(true));
    assert_eq!(check["pools_added"], json!(1));
    assert!(!fs::read_to_string(s.env())
        .unwrap()
        .contains("minio-{5...8}"));

    let (v, ok) = run(s.dir.path(), &two, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["pools_added"], json!(1));
    assert_eq!(v["msg"], json!("appended 1 pool(s)"));
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("restart every MinIO node together"));
    assert_eq!(
        v["minio_volumes"],
        json!("http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio http://minio-{5...8}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio")
    );
    assert_eq!(v["usable_bytes"], json!(96u64 << 40));
}

#[test]
fn changing_or_removing_a_pool_is_refused_and_nothing_is_written() {
    let s = Scratch::new();
    let (v, ok) = run(
        s.dir.path(),
        &args(&s.env(), json!([pool(1, 4, 4), pool(5, 8, 4)])),
        &[],
    );
    assert!(ok, "{v}");
    let before = fs::read(s.env()).unwrap();
    for (what, pools, expected) in [
        (
            "drives changed",
            json!([pool(1, 4, 8), pool(5, 8, 4)]),
            "option 'pools[0]': the env file already has pool 0",
        ),
        (
            "hosts changed",
            json!([pool(1, 4, 4), pool(5, 9, 4)]),
            "strands the data already on it",
        ),
        (
            "pools reordered",
            json!([pool(5, 8, 4), pool(1, 4, 4)]),
            "option 'pools[0]'",
        ),
        (
            "pool removed",
            json!([pool(1, 4, 4)]),
            "removing pool(s) [\"http://minio-{5...8}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio\"] would strand their data",
        ),
    ] {
        let (v, ok) = run(s.dir.path(), &args(&s.env(), pools), &[]);
        assert!(!ok, "{what}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(expected), "{what}: {expected:?} in {msg:?}");
        assert_eq!(fs::read(s.env()).unwrap(), before, "{what}");
        assert_eq!(s.listing(), vec!["minio"], "{what}");
    }
}

#[test]
fn docs_come_from_the_spec() {
    let out = Command::cargo_bin("minio_pool")
        .unwrap()
        .arg("--docs")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("module: minio_pool"));
    assert!(text.contains("storage_class_parity"));
}

fn bad_inputs(env: &Path) -> Vec<(&'static str, Value, &'static str)> {
    let with = |changes: Value| {
        let mut a = args(env, json!([pool(1, 4, 4)]));
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                a.as_object_mut().unwrap().remove(k);
            } else {
                a[k] = v.clone();
            }
        }
        a
    };
    let one = |p: Value| with(json!({"pools": [p]}));
    let hosts =
        |h: Value| one(json!({"hosts": h, "drives": ["/mnt/disk1/minio", "/mnt/disk2/minio"]}));
    let drives = |d: Value| one(json!({"hosts": ["minio-1", "minio-2"], "drives": d}));
    vec![
        ("hosts with a gap", hosts(json!(["minio-1", "minio-3"])), "option 'pools[0].hosts': cannot be written in MinIO's ellipsis notation"),
        ("hosts out of order", hosts(json!(["minio-2", "minio-1"])), "option 'pools[0].hosts': cannot be written"),
        ("hosts without numbers", hosts(json!(["alpha", "beta"])), "option 'pools[0].hosts': cannot be written"),
        ("hosts with mixed padding", hosts(json!(["minio-1", "minio-02"])), "option 'pools[0].hosts': cannot be written"),
        ("host listed twice", hosts(json!(["minio-1", "minio-1"])), "option 'pools[0].hosts': value \"minio-1\" is listed twice"),
        ("host with braces", hosts(json!(["minio-{1...2}"])), "option 'pools[0].hosts[0]'"),
        ("host with underscore", hosts(json!(["minio_1", "minio_2"])), "option 'pools[0].hosts[0]': value \"minio_1\" is not a host name"),
        ("no hosts", hosts(json!([])), "option 'pools[0].hosts': is empty"),
        ("drives with a gap", drives(json!(["/mnt/disk1", "/mnt/disk3"])), "option 'pools[0].drives': cannot be written"),
        ("relative drive", drives(json!(["mnt/disk1", "mnt/disk2"])), "option 'pools[0].drives[0]': value \"mnt/disk1\" is not an absolute drive path"),
        ("drive with ..", drives(json!(["/mnt/../disk1", "/mnt/../disk2"])), "option 'pools[0].drives[0]'"),
        ("drive with a quote", drives(json!(["/mnt/d\"1", "/mnt/d\"2"])), "option 'pools[0].drives[0]'"),
        ("one host one drive", one(json!({"hosts": ["minio-1"], "drives": ["/mnt/disk1"]})), "option 'pools[0]': has 1 drive(s) in all: MinIO's erasure coding needs at least 2"),
        ("17 drives", one(json!({"hosts": (1..=17).map(|i| format!("minio-{i}")).collect::<Vec<_>>(), "drives": ["/data"]})), "option 'pools[0]': has 17 drives, which no erasure-set size from 2 to 16 divides"),
        ("17 hosts x 2", one(json!({"hosts": (1..=17).map(|i| format!("minio-{i}")).collect::<Vec<_>>(), "drives": ["/d1", "/d2"]})), "spreads symmetrically over the hosts"),
        ("port 0", one(json!({"hosts": ["minio-1", "minio-2"], "drives": ["/d1"], "port": 0})), "option 'pools[0].port': value 0 is outside 1 to 65535"),
        ("bad scheme", one(json!({"hosts": ["minio-1", "minio-2"], "drives": ["/d1"], "scheme": "ftp"})), "option 'pools[0].scheme': value \"ftp\" is not one of: http, https"),
        ("bad drive size", one(json!({"hosts": ["minio-1", "minio-2"], "drives": ["/d1"], "drive_size": "4 tebibytes"})), "option 'pools[0].drive_size': value \"4 tebibytes\" is not a size"),
        ("same drive in two pools", with(json!({"pools": [pool(1, 4, 4), pool(4, 7, 4)]})), "option 'pools[1].hosts': value \"minio-4.chat.z3r0d3v.com\" has a drive of pools[0] too"),
        ("no pools", with(json!({"pools": []})), "option 'pools': value [] is empty"),
        ("pools missing", with(json!({"pools": null})), "missing required option 'pools'"),
        ("parity over half", with(json!({"storage_class_parity": 8, "pools": [{"hosts": ["minio-1", "minio-2", "minio-3", "minio-4"], "drives": ["/d1"]}]})), "option 'storage_class_parity': value 8 is more than half of pools[0]'s erasure set of 4 drives"),
        ("parity out of range", with(json!({"storage_class_parity": 9})), "option 'storage_class_parity': value 9 is outside the range 0 to 8"),
        ("short password", with(json!({"root_password": "x7q"})), "option 'root_password': the value (hidden: no_log) is shorter than 8 characters"),
        ("root_user of 10 MB", with(json!({"root_user": "u".repeat(10 << 20)})), "option 'root_user': value \"uuuuuuuu"),
        ("root_user with a newline", with(json!({"root_user": "admin\nMINIO_ROOT_PASSWORD=x"})), "option 'root_user': value \"admin\\nMINIO_ROOT_PASSWORD=x\" holds whitespace"),
        ("password with a quote", with(json!({"root_password": "pass\"word-long"})), "option 'root_password': the value holds"),
        ("short user", with(json!({"root_user": "ab"})), "option 'root_user': value \"ab\" is shorter than 3 characters"),
        ("user with a space", with(json!({"root_user": "matrix admin"})), "option 'root_user': value \"matrix admin\" holds whitespace"),
        ("bucket name upper case", with(json!({"buckets": ["Media"], "s3_endpoint": "http://127.0.0.1:9000"})), "option 'buckets[0]': value \"Media\" may hold only lowercase"),
        ("bucket name too short", with(json!({"buckets": ["ab"], "s3_endpoint": "http://127.0.0.1:9000"})), "option 'buckets[0]': value \"ab\" must be 3 to 63"),
        ("bucket as IP", with(json!({"buckets": ["10.20.0.1"], "s3_endpoint": "http://127.0.0.1:9000"})), "option 'buckets[0]': value \"10.20.0.1\" must not be formatted as an IP address"),
        ("buckets without endpoint", with(json!({"buckets": ["synapse-media"]})), "missing option 's3_endpoint', required when buckets is not empty"),
        ("https endpoint", with(json!({"buckets": ["synapse-media"], "s3_endpoint": "https://s3.chat.z3r0d3v.com"})), "option 's3_endpoint': value \"https://s3.chat.z3r0d3v.com\" is not an http:// URL"),
        ("endpoint not a URL", with(json!({"buckets": ["synapse-media"], "s3_endpoint": "minio-1:9000"})), "option 's3_endpoint'"),
        ("bad region", with(json!({"s3_region": "us east"})), "option 's3_region': value \"us east\""),
        ("extra_env managed variable", with(json!({"extra_env": {"MINIO_VOLUMES": "/data"}})), "option 'extra_env.MINIO_VOLUMES': the module computes this variable"),
        ("extra_env not MINIO_", with(json!({"extra_env": {"PATH": "/bin"}})), "option 'extra_env.PATH': the name is not a MINIO_* variable"),
        ("extra_env with $", with(json!({"extra_env": {"MINIO_OPTS": "$HOME"}})), "option 'extra_env.MINIO_OPTS'"),
        ("unknown pool key", one(json!({"hosts": ["minio-1", "minio-2"], "drives": ["/d1"], "disks": ["/d1"]})), "unsupported option 'pools[0].disks'"),
        ("unknown option", with(json!({"volumes": "x"})), "unsupported option 'volumes'"),
    ]
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let s = Scratch::new();
    let old = "# an operator's env file\nMINIO_VOLUMES=\"http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio\"\n";
    fs::write(s.env(), old).unwrap();
    let cases = bad_inputs(&s.env());
    assert!(cases.len() >= 25);
    for (what, a, expected) in cases {
        let (v, ok) = run(s.dir.path(), &a, &[]);
        assert!(!ok, "{what}: {v}");
        assert_eq!(v["failed"], json!(true), "{what}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(expected), "{what}: {expected:?} in {msg:?}");
        assert!(
            !v.to_string().contains(PASS.as_str()),
            "{what}: secret shown"
        );
        assert_eq!(fs::read_to_string(s.env()).unwrap(), old, "{what}");
        assert_eq!(s.listing(), vec!["minio"], "{what}");
    }
}
