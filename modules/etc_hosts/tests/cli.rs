//! The etc_hosts binary as Ansible runs it: an args file in, one JSON result out.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use matrix_ha_testkit as testkit;
use serde_json::{json, Value};

const STOCK: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1\n\n::1     localhost ip6-localhost ip6-loopback\n";

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hosts"), STOCK).unwrap();
        Scratch { dir }
    }
    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }
    fn args(&self, value: &Value) -> PathBuf {
        let path = self.dir.path().join("args.json");
        fs::write(&path, value.to_string()).unwrap();
        path
    }
    /// Names in the directory, to prove no temporary or backup file was left.
    fn listing(&self) -> Vec<String> {
        testkit::listing(self.dir.path())
    }
}

fn run(args_file: &Path, flags: &[&str]) -> (Value, bool) {
    let ran = testkit::run("etc_hosts", args_file, flags);
    (ran.value, ran.ok)
}

fn entries() -> Value {
    json!([
        {"ip": "10.20.0.10", "names": ["chat.z3r0d3v.com"]},
        {"ip": "10.20.0.31", "names": ["patroni-1.chat.z3r0d3v.com", "patroni-1"]},
    ])
}

#[test]
fn good_args_change_once_then_nothing() {
    let s = Scratch::new();
    let args = s.args(&json!({"path": s.hosts(), "entries": entries(), "_ansible_diff": true}));
    let (first, ok) = run(&args, &[]);
    assert!(ok, "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["failed"], json!(false));
    assert_eq!(first["write_method"], json!("renamed"));
    assert_eq!(first["disabled_lines"], json!([2]));
    assert!(first["diff"]["after"]
        .as_str()
        .unwrap()
        .contains("10.20.0.31\tpatroni-1.chat.z3r0d3v.com patroni-1\n"));
    let content = fs::read_to_string(s.hosts()).unwrap();
    assert!(content.starts_with(
        "127.0.0.1\tlocalhost\n# disabled by z3r0d3v.matrix_ha.etc_hosts intranet: 127.0.1.1\t"
    ));

    let (second, ok) = run(&args, &[]);
    assert!(ok);
    assert_eq!(second["changed"], json!(false));
    assert!(second.get("diff").is_none(), "no diff when nothing changes");
    assert_eq!(fs::read_to_string(s.hosts()).unwrap(), content);
    assert_eq!(s.listing(), vec!["args.json", "hosts"]);
}

#[test]
fn check_flag_and_check_mode_write_nothing() {
    let s = Scratch::new();
    for (args, flags) in [
        (
            json!({"path": s.hosts(), "entries": entries()}),
            vec!["--check"],
        ),
        (
            json!({"path": s.hosts(), "entries": entries(), "_ansible_check_mode": true}),
            vec![],
        ),
    ] {
        let (v, ok) = run(&s.args(&args), &flags);
        assert!(ok);
        assert_eq!(v["changed"], json!(true));
        assert_eq!(fs::read_to_string(s.hosts()).unwrap(), STOCK);
        assert_eq!(s.listing(), vec!["args.json", "hosts"]);
    }
}

#[test]
fn stdin_args_and_string_coercion() {
    let s = Scratch::new();
    let args = json!({"path": s.hosts().to_string_lossy(), "backup": "yes", "mode": "0640",
                      "entries": "[{\"ip\": \"10.20.0.10\", \"names\": \"chat.z3r0d3v.com,matrix.chat.z3r0d3v.com\"}]"});
    let out = Command::cargo_bin("etc_hosts")
        .unwrap()
        .arg("-")
        .write_stdin(args.to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changed"], json!(true), "{v}");
    let backup = v["backup_file"].as_str().unwrap();
    assert_eq!(fs::read_to_string(backup).unwrap(), STOCK);
    let content = fs::read_to_string(s.hosts()).unwrap();
    assert!(content.contains("10.20.0.10\tchat.z3r0d3v.com matrix.chat.z3r0d3v.com\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(s.hosts()).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn docs_and_help_come_from_the_spec() {
    let docs = Command::cargo_bin("etc_hosts")
        .unwrap()
        .arg("--docs")
        .output()
        .unwrap();
    assert!(docs.status.success());
    let text = String::from_utf8(docs.stdout).unwrap();
    for option in etc_hosts::SPEC.options {
        assert!(
            text.contains(&format!("\n    {}:\n", option.name)),
            "{} missing from docs",
            option.name
        );
    }
    let help = Command::cargo_bin("etc_hosts")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8(help.stdout)
        .unwrap()
        .contains("state (str, default: \"present\", choices: present|absent)"));
}

/// Bad input: (what it is, options given, text the message must contain).
fn bad_inputs(hosts: &Path) -> Vec<(&'static str, Value, &'static str)> {
    let p = hosts.to_string_lossy().into_owned();
    let one = |ip: Value, names: Value| json!({"path": p, "entries": [{"ip": ip, "names": names}]});
    vec![
        ("IPv4 octet over 255", one(json!("10.0.0.256"), json!(["a"])), "option 'entries[0].ip': value \"10.0.0.256\" is not an IPv4 or IPv6 address"),
        ("not an address", one(json!("db-host"), json!(["a"])), "option 'entries[0].ip'"),
        ("empty address", one(json!(""), json!(["a"])), "option 'entries[0].ip'"),
        ("IPv6 zone index", one(json!("fe80::1%eth0"), json!(["a"])), "option 'entries[0].ip': value \"fe80::1%eth0\" has a zone index"),
        ("number as address", one(json!(167772161), json!(["a"])), "option 'entries[0].ip'"),
        ("truncated IPv6", one(json!("fd00::1::2"), json!(["a"])), "option 'entries[0].ip'"),
        ("missing ip", json!({"path": p, "entries": [{"names": ["a"]}]}), "missing required option 'entries[0].ip'"),
        ("empty names", one(json!("10.0.0.1"), json!([])), "option 'entries[0].names': the list is empty"),
        ("missing names", json!({"path": p, "entries": [{"ip": "10.0.0.1"}]}), "missing required option 'entries[0].names'"),
        ("empty name", one(json!("10.0.0.1"), json!([""])), "option 'entries[0].names[0]': value \"\" is not a valid host name: it is empty"),
        ("underscore", one(json!("10.0.0.1"), json!(["ok", "bad_name"])), "option 'entries[0].names[1]': value \"bad_name\""),
        ("leading hyphen", one(json!("10.0.0.1"), json!(["-db"])), "option 'entries[0].names[0]'"),
        ("empty label", one(json!("10.0.0.1"), json!(["a..b"])), "empty label"),
        ("label over 63", one(json!("10.0.0.1"), json!(["a".repeat(64)])), "longer than 63"),
        ("name over 253", one(json!("10.0.0.1"), json!([format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62))])), "longer than 253"),
        ("address as name", one(json!("10.0.0.1"), json!(["10.0.0.2"])), "it is an address, not a name"),
        ("trailing dot", one(json!("10.0.0.1"), json!(["chat.z3r0d3v.com."])), "ends with a dot"),
        ("numeric last label", one(json!("10.0.0.1"), json!(["host.123"])), "all digits"),
        ("name with space", one(json!("10.0.0.1"), json!(["a b"])), "option 'entries[0].names[0]'"),
        ("boolean names", one(json!("10.0.0.1"), json!(true)), "option 'entries[0].names': value true is not a valid list"),
        ("one name two IPv4", json!({"path": p, "entries": [{"ip": "10.0.0.1", "names": ["db"]}, {"ip": "10.0.0.2", "names": ["db"]}]}), "option 'entries': name \"db\" is given two IPv4 addresses"),
        ("entries not dicts", json!({"path": p, "entries": ["just-text"]}), "option 'entries[0]': value \"just-text\" is not a valid dict"),
        ("entries a dict", json!({"path": p, "entries": {"ip": "10.0.0.1"}}), "option 'entries': value {\"ip\":\"10.0.0.1\"} is not a valid list"),
        ("unknown entry key", json!({"path": p, "entries": [{"ip": "10.0.0.1", "names": ["a"], "hostnames": ["b"]}]}), "unsupported option 'entries[0].hostnames'; valid options are: ip, names"),
        ("bad state", json!({"path": p, "entries": [], "state": "presnt"}), "option 'state': value \"presnt\" is not one of: present, absent"),
        ("bad bool", json!({"path": p, "entries": [], "backup": "maybe"}), "option 'backup': value \"maybe\" is not a valid bool"),
        ("unknown option", json!({"pth": p, "entries": []}), "unsupported option 'pth'; valid options are: backup, entries, group, marker, mode, owner, path, state"),
        ("empty object", json!({}), "missing option 'entries', required when state=present"),
        ("marker with #", json!({"path": p, "entries": [], "marker": "a#b"}), "option 'marker': value \"a#b\""),
        ("empty marker", json!({"path": p, "entries": [], "marker": ""}), "option 'marker'"),
        ("symbolic mode", json!({"path": p, "entries": [], "mode": "u=rw"}), "option 'mode': value \"u=rw\" is not a valid mode"),
        ("unknown owner", json!({"path": p, "entries": [], "owner": "no-such-user-matrix-ha"}), "option 'owner': no user named 'no-such-user-matrix-ha'"),
        ("unknown group", json!({"path": p, "entries": [], "group": "no-such-group-matrix-ha"}), "option 'group': no group named 'no-such-group-matrix-ha'"),
        ("boolean path", json!({"path": true, "entries": []}), "option 'path': value true is not a valid path"),
        ("bad check flag", json!({"path": p, "entries": [], "_ansible_check_mode": "perhaps"}), "option '_ansible_check_mode'"),
    ]
}

#[test]
fn every_bad_input_fails_names_the_option_and_leaves_the_file_alone() {
    let s = Scratch::new();
    let cases = bad_inputs(&s.hosts());
    assert!(cases.len() >= 25);
    for (what, args, needle) in cases {
        let (v, ok) = run(&s.args(&args), &[]);
        assert!(!ok, "{what}: exit code must be non-zero");
        assert_eq!(v["failed"], json!(true), "{what}: {v}");
        assert_eq!(v["changed"], json!(false), "{what}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        assert_eq!(
            fs::read_to_string(s.hosts()).unwrap(),
            STOCK,
            "{what}: file changed"
        );
        assert_eq!(
            s.listing(),
            vec!["args.json", "hosts"],
            "{what}: stray file"
        );
    }
}

#[test]
fn bad_paths_name_the_option() {
    let s = Scratch::new();
    let dir = s.dir.path().join("a-directory");
    fs::create_dir(&dir).unwrap();
    for (path, needle) in [
        (dir.clone(), "option 'path': cannot use"),
        (
            s.dir.path().join("missing/hosts"),
            "its parent directory does not exist",
        ),
    ] {
        let (v, ok) = run(&s.args(&json!({"path": path, "entries": entries()})), &[]);
        assert!(!ok);
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
        assert!(msg.contains(&path.to_string_lossy().into_owned()), "{msg}");
    }
    let (v, _) = run(&s.args(&json!({"path": dir, "entries": entries()})), &[]);
    assert!(v["msg"].as_str().unwrap().ends_with("it is a directory"));
}

#[test]
fn broken_block_is_refused_with_line_numbers() {
    let s = Scratch::new();
    let broken = format!("{STOCK}# BEGIN z3r0d3v.matrix_ha.etc_hosts intranet\n10.0.0.1 a\n");
    fs::write(s.hosts(), &broken).unwrap();
    let (v, ok) = run(
        &s.args(&json!({"path": s.hosts(), "entries": entries()})),
        &[],
    );
    assert!(!ok);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("line 5: '# BEGIN z3r0d3v.matrix_ha.etc_hosts intranet' has no matching"),
        "{v}"
    );
    assert_eq!(fs::read_to_string(s.hosts()).unwrap(), broken);
}

#[test]
fn unusable_args_files_fail_as_json() {
    let s = Scratch::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![s.dir.path().join("nope.json").to_string_lossy().into()],
            "cannot read the arguments file",
        ),
        (
            vec![s.dir.path().to_string_lossy().into()],
            "cannot read the arguments file",
        ),
        (vec![], "no arguments given"),
        (
            vec!["--no-such-flag".into()],
            "command line: error: unexpected argument '--no-such-flag'",
        ),
    ];
    for (argv, needle) in cases {
        let out = Command::cargo_bin("etc_hosts")
            .unwrap()
            .args(&argv)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["msg"].as_str().unwrap().contains(needle), "{argv:?}: {v}");
    }
    for (content, needle) in [
        ("", "are not valid JSON"),
        ("{\"path\": ", "are not valid JSON: EOF while parsing"),
        ("path=/etc/hosts", "are not valid JSON"),
        ("[]", "must be a JSON object of options, not a list"),
        ("null", "not null"),
    ] {
        let file = s.dir.path().join("raw.json");
        fs::write(&file, content).unwrap();
        let (v, ok) = run(&file, &[]);
        assert!(!ok);
        assert!(
            v["msg"].as_str().unwrap().contains(needle),
            "{content:?}: {v}"
        );
    }
    assert_eq!(fs::read_to_string(s.hosts()).unwrap(), STOCK);
}

/// Twenty runs at once against one file, each with its own marker: the lock in the runtime's
/// write path makes each read what the others wrote, so every block survives.
#[test]
fn concurrent_runs_with_different_markers_lose_no_block() {
    let s = Scratch::new();
    let runs: Vec<std::process::Child> = (0..20)
        .map(|i| {
            let args = s.dir.path().join(format!("args-{i}.json"));
            let value = json!({"path": s.hosts(), "marker": format!("block-{i}"),
                               "entries": [{"ip": format!("10.20.1.{}", i + 1),
                                            "names": [format!("host-{i}.chat.z3r0d3v.com")]}]});
            fs::write(&args, value.to_string()).unwrap();
            std::process::Command::new(assert_cmd::cargo::cargo_bin("etc_hosts"))
                .arg(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in runs {
        let ran = testkit::result(child.wait_with_output().unwrap());
        assert!(ran.ok, "{}", ran.value);
        assert_eq!(ran.value["changed"], json!(true));
    }
    let text = fs::read_to_string(s.hosts()).unwrap();
    let survived = (0..20)
        .filter(|i| {
            text.contains(&format!(
                "# BEGIN z3r0d3v.matrix_ha.etc_hosts block-{i}\n10.20.1.{}\thost-{i}.chat.z3r0d3v.com\n",
                i + 1
            ))
        })
        .count();
    assert_eq!(survived, 20, "{survived}/20 blocks survived:\n{text}");
    assert!(text.starts_with(STOCK), "{text}");
    let temps: Vec<String> = s
        .listing()
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// A temporary file left by a killed run (its PID no longer runs) is removed by the next
/// run, which says so; one of a process that still runs is left alone.
#[test]
fn a_killed_runs_temporary_file_is_cleaned_by_the_next_run() {
    let s = Scratch::new();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!(".hosts.matrix-ha.{dead}.0.tmp");
    let live = ".hosts.matrix-ha.1.0.tmp";
    fs::write(s.dir.path().join(&stale), "the full new content\n").unwrap();
    fs::write(s.dir.path().join(live), "another process's\n").unwrap();
    let args = s.args(&json!({"path": s.hosts(), "entries": entries()}));
    let (result, ok) = run(&args, &[]);
    assert!(ok, "{result}");
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains(&stale) && warnings.contains("interrupted earlier run"),
        "{warnings}"
    );
    let names = s.listing();
    assert!(!names.contains(&stale), "{names:?}");
    assert!(names.contains(&live.to_string()), "{names:?}");
}
