//! Buckets through the S3 API against a real S3-compatible server: moto's server (pinned in
//! requirements.txt, installed in the project venv by scripts/setup), started by the test on
//! 127.0.0.1 with a port the kernel picks (port 0) and stopped by its PID.
//!
//! The MinIO server itself cannot be installed (its downloads are gone), so this is the real
//! S3 endpoint the tests can run.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
        if !server.exists() {
            eprintln!(
                "skipped: {} is missing (run scripts/setup)",
                server.display()
            );
            return None;
        }
        let mut child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        // Werkzeug prints "Running on http://127.0.0.1:PORT" on stderr once it listens.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let url: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(url);
                }
            }
        });
        let mut moto = Moto {
            child,
            endpoint: String::new(),
        };
        moto.endpoint = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server listens within 60 s");
        Some(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A secret made for this run.
fn secret() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string()
}

fn run(dir: &Path, args: &Value, flags: &[&str]) -> Value {
    let file: PathBuf = dir.join("args.json");
    fs::write(&file, args.to_string()).unwrap();
    let out = assert_cmd::Command::cargo_bin("minio_pool")
        .unwrap()
        .args(flags)
        .arg(&file)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).expect("one JSON result")
}

#[test]
fn buckets_are_created_once_and_checked_in_check_mode() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pass = secret();
    let args = |buckets: Value| {
        json!({
            "env_path": dir.path().join("minio"),
            "pools": [{"hosts": ["minio-1", "minio-2", "minio-3", "minio-4"], "drives": ["/data"]}],
            "root_user": "matrix-admin",
            "root_password": pass,
            "buckets": buckets,
            "s3_endpoint": moto.endpoint,
        })
    };
    let wanted = json!(["synapse-media", "synapse-backup"]);

    // Check mode looks the buckets up and creates nothing.
    let check = run(dir.path(), &args(wanted.clone()), &["--check"]);
    assert_eq!(check["failed"], json!(false), "{check}");
    assert_eq!(check["buckets_created"], wanted);
    let again = run(dir.path(), &args(wanted.clone()), &["--check"]);
    assert_eq!(
        again["buckets_created"], wanted,
        "check mode created nothing"
    );

    let first = run(dir.path(), &args(wanted.clone()), &[]);
    assert_eq!(first["failed"], json!(false), "{first}");
    assert_eq!(first["changed"], json!(true));
    assert_eq!(first["buckets_created"], wanted);
    assert!(!first.to_string().contains(&pass));

    let second = run(dir.path(), &args(wanted.clone()), &[]);
    assert_eq!(second["changed"], json!(false), "{second}");
    assert_eq!(second["buckets_created"], json!([]));

    // One more bucket: only it is created.
    let more = json!(["synapse-media", "synapse-backup", "synapse-thumbnails"]);
    let third = run(dir.path(), &args(more), &[]);
    assert_eq!(third["buckets_created"], json!(["synapse-thumbnails"]));

    // The server holds it: a look-up in check mode finds it.
    let listing = run(
        dir.path(),
        &args(json!(["synapse-thumbnails"])),
        &["--check"],
    );
    assert_eq!(listing["buckets_created"], json!([]), "{listing}");
}

#[test]
fn an_endpoint_that_does_not_answer_fails_naming_the_option() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let v = run(
        dir.path(),
        &json!({
            "env_path": dir.path().join("minio"),
            "pools": [{"hosts": ["minio-1", "minio-2"], "drives": ["/data"]}],
            "root_user": "matrix-admin",
            "root_password": secret(),
            "buckets": ["synapse-media"],
            "s3_endpoint": format!("http://127.0.0.1:{port}"),
        }),
        &["--check"],
    );
    assert_eq!(v["failed"], json!(true));
    assert!(
        v["msg"].as_str().unwrap().starts_with(&format!(
            "option 's3_endpoint': http://127.0.0.1:{port} did not answer"
        )),
        "{v}"
    );
}
