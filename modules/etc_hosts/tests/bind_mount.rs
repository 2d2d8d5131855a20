//! A bind-mounted target, as /etc/hosts is in every Docker container: rename over it fails
//! with EBUSY, so the module must rewrite it in place, completely.
//!
//! Each run happens in a private mount namespace (`unshare --mount`), so the bind mount is seen
//! by that one process tree only and vanishes with it. Without root, a user namespace maps the
//! caller to root inside it.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

const STOCK: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tminio-1.chat.z3r0d3v.com\tminio-1\n";

fn unshare_prefix() -> Vec<&'static str> {
    let uid = Command::new("id").arg("-u").output().expect("id runs");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        vec!["--mount", "--propagation", "private"]
    } else {
        vec![
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ]
    }
}

/// Bind-mounts `source` over `target` in a fresh mount namespace and runs the module there.
fn run_bound(source: &Path, target: &Path, args: &Value, dir: &Path) -> Value {
    let args_file = dir.join("args.json");
    fs::write(&args_file, args.to_string()).unwrap();
    let module = assert_cmd::cargo::cargo_bin("etc_hosts");
    let out = Command::new("unshare")
        .args(unshare_prefix())
        .args([
            "--",
            "sh",
            "-c",
            r#"mount --bind "$1" "$2" && exec "$3" "$4""#,
            "sh",
        ])
        .arg(source)
        .arg(target)
        .arg(&module)
        .arg(&args_file)
        .output()
        .expect("unshare (util-linux) is installed");
    assert!(
        out.status.success(),
        "module in a private mount namespace failed: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON result")
}

#[test]
fn bind_mounted_file_is_rewritten_in_place_complete_and_never_short() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("container-hosts");
    let target = dir.path().join("hosts");
    fs::write(&source, STOCK).unwrap();
    fs::write(&target, "placeholder under the mount\n").unwrap();
    let entries = json!([
        {"ip": "10.20.0.10", "names": ["chat.z3r0d3v.com", "matrix.chat.z3r0d3v.com"]},
        {"ip": "10.20.0.41", "names": ["minio-1.chat.z3r0d3v.com", "minio-1"]},
        {"ip": "fd00:20::41", "names": ["minio-1.chat.z3r0d3v.com"]},
    ]);

    // Grow: the file gets the block, written through the mount.
    let grown = run_bound(
        &source,
        &target,
        &json!({"path": target, "entries": entries}),
        dir.path(),
    );
    assert_eq!(grown["changed"], json!(true), "{grown}");
    assert_eq!(grown["write_method"], json!("in_place"), "{grown}");
    let warning = grown["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("is a mount point") && warning.contains("rewritten in place"),
        "{warning}"
    );
    let expected = etc_hosts::hosts::plan(
        STOCK.as_bytes(),
        &etc_hosts::hosts::Request {
            marker: "intranet".into(),
            entries: Some(
                serde_json::from_value::<Vec<Value>>(entries.clone())
                    .unwrap()
                    .iter()
                    .map(|e| etc_hosts::hosts::Entry {
                        ip: e["ip"].as_str().unwrap().into(),
                        names: serde_json::from_value(e["names"].clone()).unwrap(),
                    })
                    .collect(),
            ),
        },
    )
    .unwrap()
    .content;
    assert_eq!(
        fs::read(&source).unwrap(),
        expected,
        "complete content through the mount"
    );

    // Idempotent through the mount as well.
    let again = run_bound(
        &source,
        &target,
        &json!({"path": target, "entries": entries}),
        dir.path(),
    );
    assert_eq!(again["changed"], json!(false), "{again}");

    // Shrink: removing the block must cut the file to exactly the original, no old tail left.
    let shrunk = run_bound(
        &source,
        &target,
        &json!({"path": target, "state": "absent"}),
        dir.path(),
    );
    assert_eq!(shrunk["write_method"], json!("in_place"), "{shrunk}");
    assert_eq!(fs::read_to_string(&source).unwrap(), STOCK);

    // The mount was private to the child: the file under it is untouched, no temporary is left.
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "placeholder under the mount\n"
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ".hosts.matrix-ha.lock",
            "args.json",
            "container-hosts",
            "hosts"
        ]
    );
}
