//! HAProxy's Synapse routing from the inventory, end to end:
//! - the role's real template, rendered by Ansible with the role's real defaults and the
//!   variables the `z3r0d3v.matrix_ha.scale` inventory gives the haproxy group of each example
//!   site, passes Debian's `haproxy -c`;
//! - the Synapse processes the inventory lists are exactly those MDAD's own
//!   `roles/custom/matrix-synapse/tasks/synapse/workers/init.yml` computes from the inventory's
//!   worker counts (names, types, ports);
//! - a private HAProxy on loopback with the rendered configuration sends requests to the right
//!   worker, falls back to the main process when a type's workers are down, answers the
//!   well-known documents itself, and replaces a client's X-Forwarded-For.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use matrix_ha_tests::{mdad_dir, root, site_certificate, Ansible};
use serde_json::Value;

const SCALES: [&str; 3] = ["small", "medium", "large"];

fn site(scale: &str) -> String {
    root()
        .join(format!(
            "examples/sites/{scale}/chat.z3r0d3v.com.matrix_ha.yml"
        ))
        .display()
        .to_string()
}

fn haproxy_binary() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v haproxy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "haproxy is not installed (Debian package haproxy, in scripts/apt-packages.txt)"
    );
    "haproxy"
}

/// A role of the test that renders the haproxy role's real template with its real defaults
/// (symlinked), so the inventory's group variables outrank the defaults as in a real run.
fn render_role(a: &Ansible) -> PathBuf {
    let roles = a.path("roles");
    let role = roles.join("render_haproxy");
    if role.exists() {
        return roles;
    }
    for d in ["defaults", "templates", "tasks"] {
        fs::create_dir_all(role.join(d)).unwrap();
    }
    let real = root().join("roles/haproxy");
    std::os::unix::fs::symlink(
        real.join("defaults/main.yml"),
        role.join("defaults/main.yml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        real.join("templates/haproxy.cfg.j2"),
        role.join("templates/haproxy.cfg.j2"),
    )
    .unwrap();
    fs::write(
        role.join("tasks/main.yml"),
        r#"
- name: Render HAProxy's configuration
  ansible.builtin.template:
    src: haproxy.cfg.j2
    dest: "{{ out }}"
    mode: "0600"
    validate: haproxy -c -f %s
"#,
    )
    .unwrap();
    roles
}

/// Renders the configuration of the first haproxy node of `scale` with `extra` variables.
fn render(a: &Ansible, scale: &str, extra: &[(&str, String)]) -> String {
    let roles = render_role(a);
    let out = a.path(&format!("haproxy-{scale}.cfg"));
    let play = a.path("render.yml");
    fs::write(
        &play,
        "- name: Render\n  hosts: haproxy[0]\n  gather_facts: false\n  roles: [render_haproxy]\n",
    )
    .unwrap();
    let mut vars = serde_json::Map::new();
    vars.insert("out".into(), out.display().to_string().into());
    vars.insert("ansible_connection".into(), "local".into());
    vars.insert(
        "ansible_python_interpreter".into(),
        "/usr/bin/python3".into(),
    );
    for (k, v) in extra {
        vars.insert(
            (*k).into(),
            serde_json::from_str(v).unwrap_or(Value::String(v.clone())),
        );
    }
    let vars_file = a.path("extra.json");
    fs::write(&vars_file, Value::Object(vars).to_string()).unwrap();
    let run = a
        .command("ansible-playbook")
        .env("ANSIBLE_ROLES_PATH", &roles)
        .arg(&play)
        .args(["-i", &site(scale)])
        .arg("-e")
        .arg(format!("@{}", vars_file.display()))
        .output()
        .expect("ansible-playbook runs");
    assert!(
        run.status.success(),
        "rendering for {scale} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    fs::read_to_string(&out).expect("rendered configuration")
}

/// A self-signed certificate and key for the public names, made for the run (mode 0600).
fn inventory_group_vars(a: &Ansible, scale: &str) -> Value {
    let out = a
        .command("ansible-inventory")
        .args(["-i", &site(scale), "--host"])
        .arg(first_haproxy(a, scale))
        .output()
        .expect("ansible-inventory runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn first_haproxy(a: &Ansible, scale: &str) -> String {
    let out = a
        .command("ansible")
        .args(["-i", &site(scale), "haproxy[0]", "--list-hosts"])
        .output()
        .expect("ansible runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no haproxy host in {scale}: {text}"))
}

#[test]
fn rendered_configuration_passes_haproxy_check_at_every_scale() {
    haproxy_binary();
    let a = Ansible::new();
    let pem = site_certificate(a.dir.path(), "DNS:matrix.chat.z3r0d3v.com");
    for scale in SCALES {
        let cfg = render(
            &a,
            scale,
            &[("haproxy_tls_certificate", pem.display().to_string())],
        );
        let vars = inventory_group_vars(&a, scale);
        let backends = vars["haproxy_synapse_backends"]
            .as_array()
            .expect("backends");
        let routes = vars["haproxy_synapse_routes"].as_array().expect("routes");
        // One back-end section per emitted back-end plus the two main ones, each with a health
        // check, and every worker server and one backup per worker back-end.
        assert_eq!(
            cfg.matches("\nbackend synapse_").count(),
            backends.len() + 2,
            "{scale}:\n{cfg}"
        );
        let servers: usize = backends
            .iter()
            .map(|b| b["servers"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            cfg.matches("\n    server matrix-synapse-worker-").count(),
            servers,
            "{scale}"
        );
        assert_eq!(cfg.matches(" backup\n").count(), backends.len(), "{scale}");
        assert_eq!(
            cfg.matches("option httpchk GET /health").count(),
            backends.len() + 2
        );
        assert_eq!(cfg.matches("use_backend synapse_").count(), routes.len());
        assert!(cfg.contains("http-request set-header X-Forwarded-For %[src]"));
        assert!(!cfg.contains("option forwardfor"));
        assert!(cfg.contains(r#"string '{"m.server":"matrix.chat.z3r0d3v.com:8448"}'"#));
        assert!(cfg.contains("-m str chat.z3r0d3v.com matrix.chat.z3r0d3v.com"));
        // The PostgreSQL and MinIO parts stay.
        assert!(cfg.contains("listen postgres") && cfg.contains("listen minio"));
        let check = Command::new(haproxy_binary())
            .args(["-c", "-f"])
            .arg(a.path(&format!("haproxy-{scale}.cfg")))
            .output()
            .expect("haproxy runs");
        assert!(
            check.status.success(),
            "{scale}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// `(name, type, port)` of MDAD's worker list as MDAD's own tasks compute it.
fn mdad_workers(a: &Ansible, scale: &str, mdad: &Path) -> Vec<(String, String, Option<u64>)> {
    let inv = a.path(&format!("mdad-inventory-{scale}"));
    fs::create_dir_all(inv.join("group_vars")).unwrap();
    std::os::unix::fs::symlink(
        mdad.join("group_vars/matrix_servers"),
        inv.join("group_vars/matrix_servers"),
    )
    .unwrap();
    std::os::unix::fs::symlink(site(scale), inv.join("site.matrix_ha.yml")).unwrap();
    let play = a.path(&format!("mdad-workers-{scale}.yml"));
    fs::write(
        &play,
        r#"
- name: MDAD's worker list for the inventory's counts
  hosts: matrix_servers
  gather_facts: false
  tasks:
    - name: Build the list with MDAD's own tasks
      ansible.builtin.include_role:
        name: matrix-synapse
        tasks_from: synapse/workers/init
    - name: Show it
      ansible.builtin.debug:
        var: matrix_synapse_workers_enabled_list
"#,
    )
    .unwrap();
    let out = a
        .command("ansible-playbook")
        .env(
            "ANSIBLE_ROLES_PATH",
            format!(
                "{}:{}",
                mdad.join("roles/custom").display(),
                mdad.join("roles/galaxy").display()
            ),
        )
        .env("ANSIBLE_STDOUT_CALLBACK", "json")
        .arg(&play)
        .arg("-i")
        .arg(&inv)
        .args(["-e", "ansible_connection=local"])
        .args(["-e", "ansible_python_interpreter=/usr/bin/python3"])
        .output()
        .expect("ansible-playbook runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "MDAD's init.yml failed for {scale}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("JSON callback output");
    let tasks = doc["plays"][0]["tasks"].as_array().expect("tasks");
    let shown = tasks.last().expect("the debug task");
    let hosts = shown["hosts"].as_object().expect("hosts");
    assert_eq!(hosts.len(), 1, "one Synapse host");
    let list = hosts.values().next().unwrap()["matrix_synapse_workers_enabled_list"]
        .as_array()
        .unwrap_or_else(|| panic!("no worker list for {scale}: {shown}"))
        .clone();
    list.iter()
        .map(|w| {
            let webserving = w["webserving"].as_bool().unwrap_or_else(|| {
                w["webserving"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("true"))
            });
            let port = w["port"]
                .as_u64()
                .or_else(|| w["port"].as_str().and_then(|s| s.parse().ok()));
            (
                w["name"].as_str().expect("name").to_owned(),
                w["type"].as_str().expect("type").to_owned(),
                if webserving { port } else { None },
            )
        })
        .collect()
}

#[test]
fn process_list_matches_what_mdad_computes_at_every_scale() {
    let mdad = mdad_dir();
    let a = Ansible::new();
    for scale in SCALES {
        let vars = inventory_group_vars(&a, scale);
        let ours: Vec<(String, String, Option<u64>)> = vars["haproxy_synapse_processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|p| p["type"] != "main")
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["type"].as_str().unwrap().to_owned(),
                    p["port"].as_u64(),
                )
            })
            .collect();
        let theirs = mdad_workers(&a, scale, &mdad);
        assert!(ours.len() > 20, "{scale}: {ours:?}");
        assert_eq!(
            ours, theirs,
            "{scale}: the inventory's list differs from MDAD's"
        );
        eprintln!("{scale}: {} workers, as MDAD lists them", theirs.len());
    }
}

// ---------------------------------------------------------------------------------------------
// A live HAProxy on loopback.

/// A Synapse stand-in on one port: answers /health with 200 (unless marked down) and every
/// other request with its name and the X-Forwarded-For it received. Stops when dropped.
struct Stub {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start(addr: &str, port: u16, name: String, down: Arc<AtomicBool>) -> Stub {
        let listener = TcpListener::bind((addr, port))
            .unwrap_or_else(|e| panic!("bind {addr}:{port} for {name}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let name = name.clone();
                        let down = down.clone();
                        std::thread::spawn(move || serve(stream, &name, &down));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Stub {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, name: &str, down: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    // Keep-alive: serve requests until the peer closes (bounded).
    for _ in 0..1000 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut xff = String::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("x-forwarded-for") {
                    xff = v.trim().to_owned();
                }
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let (status, text) = if path == "/health" {
            if down.load(Ordering::Relaxed) {
                ("503 Service Unavailable", "down".to_owned())
            } else {
                ("200 OK", "OK".to_owned())
            }
        } else {
            ("200 OK", format!("{name} xff={xff}"))
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A private HAProxy process of the test, stopped by its PID when dropped.
struct HaproxyProcess(Child);

impl Drop for HaproxyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET over TLS through `openssl s_client` is heavy; HAProxy's frontends are TLS-only, so the
/// test speaks HTTP/1.1 through curl, which Debian ships with the test image's tools.
fn get(port: u16, host: &str, path: &str, headers: &[&str]) -> (u16, String, String) {
    get_from("127.0.0.1", port, host, path, headers)
}

/// [`get`] from the loopback address `source`.
fn get_from(
    source: &str,
    port: u16,
    host: &str,
    path: &str,
    headers: &[&str],
) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-D", "-", "-o", "-"])
        .args(["--interface", source])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.2"))
        .arg(format!("https://{host}:{port}{path}"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn live_haproxy_routes_to_workers_and_falls_back_to_main() {
    haproxy_binary();
    let a = Ansible::new();
    let pem = site_certificate(a.dir.path(), "DNS:matrix.chat.z3r0d3v.com");
    // Synapse's processes on 127.0.0.3, HAProxy on 127.0.0.2: loopback addresses of this test.
    let cfg = render(
        &a,
        "small",
        &[
            ("haproxy_tls_certificate", pem.display().to_string()),
            ("haproxy_bind_address", "127.0.0.2".into()),
            ("haproxy_synapse_address", "127.0.0.3".into()),
            ("haproxy_postgres_backends", "[]".into()),
            ("haproxy_minio_backends", "[]".into()),
            ("haproxy_public_ports", "[443, 8448]".into()),
            ("haproxy_synapse_check_inter", "200ms".into()),
            ("haproxy_maxconn", "4096".into()),
            ("haproxy_admin_networks", r#"["127.0.0.1/32"]"#.into()),
        ],
    );
    // A private instance: no chroot, no privilege drop, no shared admin socket.
    let private: String = cfg
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("chroot ")
                || t.starts_with("stats socket")
                || t.starts_with("user ")
                || t.starts_with("group ")
                || t.starts_with("log "))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg_path = a.path("live.cfg");
    fs::write(&cfg_path, &private).unwrap();

    let vars = inventory_group_vars(&a, "small");
    let mut downs: BTreeMap<String, Arc<AtomicBool>> = BTreeMap::new();
    let mut stubs = Vec::new();
    let mut start = |name: &str, port: u16| {
        let down = Arc::new(AtomicBool::new(false));
        downs.insert(format!("{name}:{port}"), down.clone());
        stubs.push(Stub::start("127.0.0.3", port, name.to_owned(), down));
    };
    start("main", 8008);
    start("main-federation", 8048);
    for p in vars["haproxy_synapse_processes"].as_array().unwrap() {
        if let (Some(port), Some(name)) = (p["port"].as_u64(), p["name"].as_str()) {
            if p["type"] != "main" {
                start(name, port as u16);
            }
        }
    }
    let child = Command::new(haproxy_binary())
        .args(["-db", "-f"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(fs::File::create(a.path("haproxy.log")).unwrap())
        .spawn()
        .expect("haproxy starts");
    let mut haproxy = HaproxyProcess(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, head, body) = get(
            443,
            "matrix.chat.z3r0d3v.com",
            "/_matrix/client/v3/sync",
            &[],
        );
        if status == 200 {
            break;
        }
        let exited = haproxy.0.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "HAProxy does not answer ({status} {head} {body}; exit {exited:?}):\n{}\n{private}",
                fs::read_to_string(a.path("haproxy.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let host = "matrix.chat.z3r0d3v.com";
    let token = "Authorization: Bearer syt_YWxpY2U_abcdefghij_0a1b2c";
    let cases: &[(u16, &str, &[&str], &str)] = &[
        (
            443,
            "/_matrix/client/v3/sync",
            &[token],
            "matrix-synapse-worker-sync-",
        ),
        (
            443,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/1",
            &[token],
            "matrix-synapse-worker-room-0",
        ),
        (
            443,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/typing/%40a%3Ab",
            &[token],
            "matrix-synapse-worker-stream-writer-1-typing",
        ),
        (
            443,
            "/_matrix/client/v3/keys/upload",
            &[token],
            "matrix-synapse-worker-stream-writer-7-device-lists",
        ),
        (
            443,
            "/_matrix/client/versions",
            &[],
            "matrix-synapse-worker-client-reader-0",
        ),
        (
            443,
            "/_matrix/client/v1/media/download/a/b",
            &[token],
            "matrix-synapse-worker-media-repository-0",
        ),
        (
            443,
            "/_matrix/client/v3/user_directory/search",
            &[token],
            "matrix-synapse-worker-user-dir-0",
        ),
        (443, "/_synapse/admin/v1/server_version", &[], "main "),
        (
            443,
            "/_matrix/client/v3/rooms/%21abc%3Aexample.org/upgrade",
            &[token],
            "main ",
        ),
        (
            8448,
            "/_matrix/federation/v1/send/1",
            &[],
            "matrix-synapse-worker-federation-reader-0",
        ),
        (
            8448,
            "/_matrix/federation/v1/version",
            &[],
            "matrix-synapse-worker-federation-reader-0",
        ),
        (
            8448,
            "/_matrix/federation/v1/state_ids/%21abc%3Aexample.org",
            &[],
            "matrix-synapse-worker-room-0",
        ),
        (8448, "/_matrix/key/v2/server", &[], "main-federation "),
    ];
    for (port, path, headers, expected) in cases {
        let (status, _, body) = get(*port, host, path, headers);
        assert_eq!(status, 200, "{port} {path}: {body}");
        assert!(
            body.starts_with(expected),
            "{port} {path} reached {body}, not {expected}"
        );
    }

    // Synapse's admin API: from the admin network only, however the path is spelt.
    for path in [
        "/_synapse/admin/v1/server_version",
        "/_synapse/admin/v1/media/example.org/abc",
        "//_synapse/%61dmin/v1/server_version",
        "/_SYNAPSE/admin/v1/server_version",
    ] {
        let (status, _, body) = get_from("127.0.0.7", 443, host, path, &[]);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("M_FORBIDDEN"), "{path}: {body}");
    }
    let (status, _, body) = get_from(
        "127.0.0.1",
        443,
        host,
        "/_synapse/admin/v1/server_version",
        &[],
    );
    assert_eq!((status, body.starts_with("main ")), (200, true), "{body}");

    // Sync is sticky per user: the same user (two tokens) always reaches the same worker.
    let first = get(443, host, "/_matrix/client/v3/sync", &[token]).2;
    let other_device = "Authorization: Bearer syt_YWxpY2U_zyxwvutsrq_9z8y7x";
    for _ in 0..8 {
        assert_eq!(
            get(443, host, "/_matrix/client/v3/sync", &[other_device]).2,
            first
        );
    }

    // X-Forwarded-For is the connection's address, whatever the client sent.
    let (_, _, body) = get(
        443,
        host,
        "/_matrix/client/versions",
        &["X-Forwarded-For: 203.0.113.9"],
    );
    assert!(body.ends_with("xff=127.0.0.1"), "{body}");

    // The well-known documents, for the base domain and matrix.<domain>, never the workers.
    for h in ["chat.z3r0d3v.com", host] {
        let (status, head, body) = get(443, h, "/.well-known/matrix/client", &[]);
        assert_eq!(status, 200);
        assert_eq!(
            body,
            r#"{"m.homeserver":{"base_url":"https://matrix.chat.z3r0d3v.com"}}"#
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let (_, _, body) = get(443, h, "/.well-known/matrix/server", &[]);
        assert_eq!(body, r#"{"m.server":"matrix.chat.z3r0d3v.com:8448"}"#);
    }

    // Sync workers all down: sync falls back to main.
    for (k, down) in &downs {
        if k.starts_with("matrix-synapse-worker-sync-") {
            down.store(true, Ordering::Relaxed);
        }
    }
    wait_for("sync to fall back to main", || {
        get(443, host, "/_matrix/client/v3/sync", &[token])
            .2
            .starts_with("main ")
    });
    // Main down as well: a JSON 503 at once.
    for down in downs.values() {
        down.store(true, Ordering::Relaxed);
    }
    wait_for("a 503 from HAProxy", || {
        get(443, host, "/_matrix/client/v3/sync", &[token]).0 == 503
    });
    let started = Instant::now();
    let (status, _, body) = get(443, host, "/_matrix/client/versions", &[]);
    assert_eq!(status, 503);
    assert!(body.contains("\"errcode\""), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(stubs);
}
