//! The images MDAD runs on the Synapse host (scripts/build-mdad-images), built from Debian
//! packages and PyPI when missing, run under the flags MDAD's units and tasks use: an arbitrary
//! `--user uid:gid`, `--cap-drop=ALL`, `--read-only` with a `/tmp` tmpfs.
//!
//! Synapse: `generate` exactly as MDAD's install task runs it, then the main process from that
//! configuration (SQLite), healthy by the image's own HEALTHCHECK, a user registered with
//! `register_new_matrix_user` and logged in over HTTP. Valkey: `valkey-server` with a
//! configuration like MDAD's, answering PING on its Unix socket in a mounted directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use matrix_ha_tests::root;

const SERVER_NAME: &str = "matrix.example.test";

struct Images {
    synapse: String,
    valkey: String,
}

/// Builds the images (or finds them), once per test process.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(root().join("scripts/build-mdad-images"))
            .output()
            .expect("scripts/build-mdad-images runs");
        assert!(
            out.status.success(),
            "scripts/build-mdad-images failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "build-mdad-images took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let tags: Vec<&str> = stdout.lines().collect();
        assert_eq!(tags.len(), 2, "two tags, one a line: {stdout:?}");
        assert!(
            tags[0].starts_with("matrix-ha/synapse:1.159.0-"),
            "{}",
            tags[0]
        );
        assert!(tags[1].starts_with("matrix-ha/valkey:"), "{}", tags[1]);
        Images {
            synapse: tags[0].to_string(),
            valkey: tags[1].to_string(),
        }
    })
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker is installed")
}

/// Runs docker and fails the test with its stderr unless it succeeds; returns trimmed stdout.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}{}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the container (by its name) when the test ends, however it ends.
struct Container(String);

impl Container {
    fn named(role: &str) -> Container {
        // Unique within the process: tests run in parallel and may share a role.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("matrix-ha-mdad-test-{}-{n}-{role}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        Container(name)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom is readable");
    buf
}

/// A uid:gid no account on this machine is likely to have (MDAD picks random system ids).
fn random_ids() -> (u32, u32) {
    let b = random_bytes(4);
    let uid = 20_000 + u32::from(u16::from_le_bytes([b[0], b[1]])) % 40_000;
    let gid = 20_000 + u32::from(u16::from_le_bytes([b[2], b[3]])) % 40_000;
    (uid, gid)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory owned by uid:gid (for a bind mount the container writes to).
fn owned_dir(parent: &Path, name: &str, (uid, gid): (u32, u32)) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, Some(uid), Some(gid)).unwrap();
    dir
}

/// POSTs a JSON body over plain HTTP/1.0 and returns (status, body).
fn http_post_json(addr: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {SERVER_NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

fn login(addr: &str, user: &str, password: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_post_json(
        addr,
        "/_matrix/client/v3/login",
        &serde_json::json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        }),
    );
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("login answer is not JSON ({e}): {body:?}"));
    (status, json)
}

/// Runs MDAD's install task's `generate` (roles/custom/matrix-synapse/tasks/synapse/
/// setup_install.yml), flag for flag, into `config`; checks the files it must make.
fn generate(image: &str, (uid, gid): (u32, u32), config: &Path) {
    let generator = Container::named("config");
    let mount = format!("type=bind,src={},dst=/data", config.display());
    let started = Instant::now();
    docker_ok(&[
        "run",
        "--rm",
        &format!("--name={}", generator.0),
        &format!("--user={uid}:{gid}"),
        "--cap-drop=ALL",
        "--mount",
        &mount,
        "-e",
        "SYNAPSE_CONFIG_PATH=/data/homeserver.yaml",
        "-e",
        &format!("SYNAPSE_SERVER_NAME={SERVER_NAME}"),
        "-e",
        "SYNAPSE_REPORT_STATS=no",
        image,
        "generate",
    ]);
    println!("generate took {:.1} s", started.elapsed().as_secs_f64());
    let key = config.join(format!("{SERVER_NAME}.signing.key"));
    for file in [config.join("homeserver.yaml"), key.clone()] {
        let meta = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("generate made no {}: {e}", file.display()));
        assert!(meta.len() > 0, "{} is empty", file.display());
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{} is readable by others",
            file.display()
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            uid,
            "{} belongs to the container's user",
            file.display()
        );
    }
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("ed25519 "),
        "the signing key is an ed25519 key"
    );
}

/// Edits the generated homeserver.yaml as little as the test needs. It already listens on 8008
/// with x_forwarded and uses SQLite; mounted read-only at /data as MDAD does, the database and
/// media move to the storage mount; no key server (the test reaches no host outside this
/// machine). `listener` is added to the listeners, `tail` appended.
fn edit_config(config: &Path, listener: &str, tail: &str) {
    let generated = std::fs::read_to_string(config.join("homeserver.yaml")).unwrap();
    let replacements = [
        (
            "    database: /data/homeserver.db\n",
            "    database: /matrix-media-store-parent/homeserver.db\n",
        ),
        (
            "media_store_path: /data/media_store\n",
            "media_store_path: /matrix-media-store-parent/media-store\n",
        ),
        (
            "trusted_key_servers:\n  - server_name: \"matrix.org\"\n",
            "trusted_key_servers: []\n",
        ),
        ("database:\n", &format!("{listener}database:\n")),
    ];
    for expected in [
        "listeners:\n  - port: 8008\n",
        "    x_forwarded: true\n",
        "  name: sqlite3\n",
    ] {
        assert!(
            generated.contains(expected),
            "generated homeserver.yaml lacks {expected:?}"
        );
    }
    let mut edited = generated.clone();
    for (from, to) in replacements {
        assert!(
            edited.contains(from),
            "generated homeserver.yaml lacks {from:?}"
        );
        edited = edited.replacen(from, to, 1);
    }
    // The generated file ends in a comment without a line end.
    if !edited.ends_with('\n') {
        edited.push('\n');
    }
    edited.push_str(tail);
    std::fs::write(config.join("homeserver.yaml"), edited).unwrap();
}

/// Starts a Synapse process under MDAD's unit flags (matrix-synapse.service.j2 and
/// matrix-synapse-worker.service.j2): any user, no capabilities, read-only with a /tmp tmpfs,
/// the config read-only at /data, the storage mount, and `extra` (network, health, mounts).
fn start_synapse(
    name: &str,
    image: &str,
    (uid, gid): (u32, u32),
    config: &Path,
    storage: &Path,
    extra: &[&str],
    command: &[&str],
) {
    let config_mount = format!("type=bind,src={},dst=/data,ro", config.display());
    // MDAD adds bind-propagation=slave here, which needs a shared mount above the source (as
    // systemd makes /); the test machine's / may be private, so the test leaves it out.
    let storage_mount = format!(
        "type=bind,src={},dst=/matrix-media-store-parent",
        storage.display()
    );
    let user = format!("--user={uid}:{gid}");
    let name = format!("--name={name}");
    let mut args = vec![
        "run",
        "-d",
        &name,
        &user,
        "--cap-drop=ALL",
        "--read-only",
        "--tmpfs=/tmp:rw,noexec,nosuid,size=50m",
        "--mount",
        &config_mount,
        "--mount",
        &storage_mount,
    ];
    args.extend_from_slice(extra);
    args.push(image);
    args.extend_from_slice(command);
    docker_ok(&args);
}

/// Polls `docker inspect` as MDAD's ExecStartPost does: up to 180 times, 1 s apart.
fn wait_healthy(name: &str) {
    let started = Instant::now();
    let mut status = String::new();
    for _ in 0..180 {
        status = docker_ok(&[
            "inspect",
            "--format={{.State.Status}} {{.State.Health.Status}}",
            name,
        ]);
        if status == "running healthy" || !status.starts_with("running") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if status != "running healthy" {
        let logs = docker(&["logs", "--tail", "40", name]);
        panic!(
            "{name} is not healthy after {:.0} s ({status}):\n{}",
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
    println!(
        "{name} healthy after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// register_new_matrix_user in the container, the password on its stdin (never an argument).
fn register(container: &str, user: &str, password: &str) {
    let mut register = Command::new("docker")
        .args([
            "exec",
            "-i",
            container,
            "register_new_matrix_user",
            "-c",
            "/data/homeserver.yaml",
            "-u",
            user,
            "--password-file",
            "/dev/stdin",
            "--no-admin",
            "http://localhost:8008",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    register
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = register.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "register_new_matrix_user failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The container's address (on whichever network it is on).
fn address(container: &str) -> String {
    let ip = docker_ok(&[
        "inspect",
        "--format={{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ]);
    assert!(!ip.is_empty(), "{container} has an address");
    ip
}

#[test]
fn synapse_generates_as_mdad_does_then_serves_registers_and_logs_in() {
    let image = &images().synapse;
    let ids = random_ids();
    let tmp = tempfile::tempdir().unwrap();
    let config = owned_dir(tmp.path(), "config", ids);
    let storage = owned_dir(tmp.path(), "storage", ids);
    generate(image, ids, &config);
    edit_config(&config, "", "");

    // The main process; no --health-cmd: the image's HEALTHCHECK decides, as for MDAD's unit.
    let synapse = Container::named("synapse");
    start_synapse(
        &synapse.0,
        image,
        ids,
        &config,
        &storage,
        &["--health-interval=15s"],
        &[
            "run",
            "-m",
            "synapse.app.homeserver",
            "-c",
            "/data/homeserver.yaml",
        ],
    );
    wait_healthy(&synapse.0);
    let pid1 = docker_ok(&["exec", &synapse.0, "cat", "/proc/1/cmdline"]);
    assert!(
        pid1.contains("synapse.app.homeserver"),
        "Synapse is PID 1: {pid1:?}"
    );

    let password = hex(&random_bytes(18));
    register(&synapse.0, "alice", &password);
    // Log in from here, over the docker bridge.
    let addr = format!("{}:8008", address(&synapse.0));
    let (status, json) = login(&addr, "alice", &password);
    assert_eq!(status, 200, "login: {}", json["errcode"]);
    assert_eq!(json["user_id"], format!("@alice:{SERVER_NAME}"));
    assert!(
        json["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "login returns an access token"
    );
    let (status, json) = login(&addr, "alice", &format!("{password}x"));
    assert_eq!(status, 403, "a wrong password is refused");
    assert_eq!(json["errcode"], "M_FORBIDDEN");

    // MDAD's ExecReload; Synapse stays up.
    docker_ok(&["exec", &synapse.0, "/bin/sh", "-c", "kill -HUP 1"]);
    std::thread::sleep(Duration::from_secs(1));
    let (status, _) = login(&addr, "alice", &password);
    assert_eq!(status, 200, "login after SIGHUP");

    // The S3 migrate timer's tool, and the workers' health command.
    let help = docker_ok(&["exec", &synapse.0, "s3_media_upload", "--help"]);
    assert!(help.contains("upload"), "s3_media_upload --help: {help}");
    docker_ok(&[
        "exec",
        &synapse.0,
        "/bin/bash",
        "-c",
        "curl -fSs http://localhost:8008/health",
    ]);
}

/// Removes the docker network (by its name) when the test ends; declared before the
/// containers on it, so it is dropped after them.
struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

/// INFO's connected_clients, asked over the Unix socket.
fn valkey_clients(socket: &Path) -> u32 {
    let mut stream =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"INFO clients\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let info = String::from_utf8_lossy(&buf[..n]).to_string();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connected_clients in {info:?}"))
}

#[test]
fn synapse_worker_joins_main_over_valkey_socket() {
    let images = images();
    let ids = random_ids();
    let tmp = tempfile::tempdir().unwrap();
    let config = owned_dir(tmp.path(), "config", ids);
    let storage = owned_dir(tmp.path(), "storage", ids);
    let valkey_data = owned_dir(tmp.path(), "valkey-data", ids);
    let valkey_run = owned_dir(tmp.path(), "valkey-run", ids);

    let network = Network(format!("matrix-ha-mdad-test-{}-net", std::process::id()));
    let _ = docker(&["network", "rm", &network.0]);
    docker_ok(&["network", "create", &network.0]);
    let on_network = format!("--network={}", network.0);

    let conf = tmp.path().join("valkey.conf");
    std::fs::write(
        &conf,
        "unixsocket /run/valkey/valkey.sock\nunixsocketperm 777\nsave \"\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let valkey = Container::named("worker-valkey");
    docker_ok(&[
        "run",
        "-d",
        &format!("--name={}", valkey.0),
        &on_network,
        &format!("--user={}:{}", ids.0, ids.1),
        "--cap-drop=ALL",
        "--read-only",
        "--mount",
        &format!(
            "type=bind,src={},dst=/usr/local/etc/valkey/valkey.conf,ro",
            conf.display()
        ),
        "--mount",
        &format!("type=bind,src={},dst=/data", valkey_data.display()),
        "--mount",
        &format!("type=bind,src={},dst=/run/valkey", valkey_run.display()),
        &images.valkey,
        "valkey-server",
        "/usr/local/etc/valkey/valkey.conf",
    ]);

    let main = Container::named("worker-main");
    generate(&images.synapse, ids, &config);
    // As MDAD's configuration: a replication listener on 9093, the main process in the
    // instance map by container name, Redis over the socket mounted at /run-valkey.
    edit_config(
        &config,
        "  - port: 9093\n    type: http\n    resources:\n      - names: [replication]\n",
        &format!(
            "instance_map:\n  main:\n    host: {}\n    port: 9093\nredis:\n  enabled: true\n  \
             path: /run-valkey/valkey.sock\n",
            main.0
        ),
    );
    let worker_config = config.join("worker.generic_worker1.yaml");
    std::fs::write(
        &worker_config,
        "worker_app: synapse.app.generic_worker\nworker_name: generic_worker1\n\
         worker_listeners:\n  - type: http\n    port: 8083\n    x_forwarded: true\n\
         \x20   resources:\n      - names: [client]\n",
    )
    .unwrap();
    std::fs::set_permissions(&worker_config, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&worker_config, Some(ids.0), Some(ids.1)).unwrap();

    let valkey_mount = format!("type=bind,src={},dst=/run-valkey", valkey_run.display());
    start_synapse(
        &main.0,
        &images.synapse,
        ids,
        &config,
        &storage,
        &[&on_network, "--mount", &valkey_mount],
        &[
            "run",
            "-m",
            "synapse.app.homeserver",
            "-c",
            "/data/homeserver.yaml",
        ],
    );
    wait_healthy(&main.0);
    let socket = valkey_run.join("valkey.sock");
    let before = valkey_clients(&socket);
    let worker = Container::named("worker-generic");
    start_synapse(
        &worker.0,
        &images.synapse,
        ids,
        &config,
        &storage,
        &[
            &on_network,
            "--mount",
            &valkey_mount,
            "--health-cmd",
            "curl -fSs http://localhost:8083/health || exit 1",
            "--health-interval=2s",
        ],
        &[
            "run",
            "-m",
            "synapse.app.generic_worker",
            "-c",
            "/data/homeserver.yaml",
            "-c",
            "/data/worker.generic_worker1.yaml",
        ],
    );
    wait_healthy(&worker.0);

    // The worker holds its own connections to valkey (replication goes through it), and a
    // login served by the worker works.
    let after = valkey_clients(&socket);
    println!("valkey clients: {before} with the main process, {after} with the worker too");
    assert!(
        before > 1 && after > before,
        "valkey clients: {before} before the worker, {after} after"
    );
    let password = hex(&random_bytes(18));
    register(&main.0, "bob", &password);
    let (status, json) = login(&format!("{}:8083", address(&worker.0)), "bob", &password);
    assert_eq!(status, 200, "login on the worker: {}", json["errcode"]);
    assert_eq!(json["user_id"], format!("@bob:{SERVER_NAME}"));
}
#[test]
fn synapse_generate_names_a_bad_variable() {
    let image = &images().synapse;
    let generator = Container::named("bad-generate");
    let out = docker(&[
        "run",
        "--rm",
        &format!("--name={}", generator.0),
        "--user=20001:20001",
        "--cap-drop=ALL",
        "--read-only",
        "-e",
        &format!("SYNAPSE_SERVER_NAME={SERVER_NAME}"),
        "-e",
        "SYNAPSE_REPORT_STATS=maybe",
        image,
        "generate",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SYNAPSE_REPORT_STATS must be yes or no, got: 'maybe'"),
        "{stderr}"
    );
}

#[test]
fn synapse_entrypoint_runs_every_module_mdad_names() {
    // MDAD's worker units run `run -m synapse.app.{generic_worker|media_repository} -c … -c …`;
    // each module answers --help under the unit's flags (the full worker test is above).
    let image = &images().synapse;
    for module in [
        "synapse.app.homeserver",
        "synapse.app.generic_worker",
        "synapse.app.media_repository",
    ] {
        let container = Container::named("help");
        let out = docker(&[
            "run",
            "--rm",
            &format!("--name={}", container.0),
            "--user=20002:20002",
            "--cap-drop=ALL",
            "--read-only",
            "--tmpfs=/tmp",
            image,
            "run",
            "-m",
            module,
            "--help",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("-c CONFIG_FILE"),
            "run -m {module} --help:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn valkey_answers_ping_on_its_socket_read_only_as_any_user() {
    let image = &images().valkey;
    let ids = random_ids();
    let tmp = tempfile::tempdir().unwrap();
    let data = owned_dir(tmp.path(), "data", ids);
    let run = owned_dir(tmp.path(), "run", ids);
    // The shape of MDAD's valkey.conf (roles/galaxy/valkey/templates/valkey.conf.j2), with a
    // password generated for this run.
    let password = hex(&random_bytes(18));
    let conf = tmp.path().join("valkey.conf");
    std::fs::write(
        &conf,
        format!(
            "requirepass {password}\nunixsocket /run/valkey/valkey.sock\nunixsocketperm 777\nsave \"\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&conf, Some(ids.0), Some(ids.1)).unwrap();

    let valkey = Container::named("valkey");
    docker_ok(&[
        "run",
        "-d",
        &format!("--name={}", valkey.0),
        &format!("--user={}:{}", ids.0, ids.1),
        "--cap-drop=ALL",
        "--read-only",
        "--tmpfs=/tmp:rw,noexec,nosuid,size=10m",
        "--mount",
        &format!(
            "type=bind,src={},dst=/usr/local/etc/valkey/valkey.conf,ro",
            conf.display()
        ),
        "--mount",
        &format!("type=bind,src={},dst=/data", data.display()),
        "--mount",
        &format!("type=bind,src={},dst=/run/valkey", run.display()),
        image,
        "valkey-server",
        "/usr/local/etc/valkey/valkey.conf",
    ]);
    let socket = run.join("valkey.sock");
    let mut stream = None;
    for _ in 0..50 {
        if let Ok(s) = UnixStream::connect(&socket) {
            stream = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let Some(mut stream) = stream else {
        let logs = docker(&["logs", &valkey.0]);
        panic!(
            "no socket at {} after 10 s:\n{}",
            socket.display(),
            String::from_utf8_lossy(&logs.stdout)
        );
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut ask = |command: &str| -> String {
        stream.write_all(command.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(
        ask("PING\r\n").starts_with("-NOAUTH"),
        "a password is required"
    );
    assert_eq!(ask(&format!("AUTH {password}\r\n")), "+OK\r\n");
    assert_eq!(ask("PING\r\n"), "+PONG\r\n");
    // Its working directory is the data mount (the image's WORKDIR), as upstream's.
    assert_eq!(
        ask("CONFIG GET dir\r\n"),
        "*2\r\n$3\r\ndir\r\n$5\r\n/data\r\n"
    );
    let pid1 = docker_ok(&["exec", &valkey.0, "cat", "/proc/1/cmdline"]);
    assert!(pid1.starts_with("valkey-server"), "{pid1:?}");
}

#[test]
fn save_writes_both_images_in_one_tarball_sharing_one_layer() {
    let images = images();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mdad-images.tar");
    let started = Instant::now();
    let out = Command::new(root().join("scripts/build-mdad-images"))
        .arg("--save")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--save took {:.1} s", started.elapsed().as_secs_f64());
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&file)
        .arg("manifest.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "the tarball has a manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = manifest.as_array().expect("manifest is a list");
    let mut tags: Vec<String> = Vec::new();
    let mut diff_ids: Vec<serde_json::Value> = Vec::new();
    for entry in entries {
        for tag in entry["RepoTags"].as_array().unwrap() {
            tags.push(tag.as_str().unwrap().to_string());
        }
        let config = entry["Config"].as_str().unwrap();
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(&file)
            .arg(config)
            .output()
            .unwrap();
        assert!(out.status.success(), "the tarball has {config}");
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        diff_ids.push(config["rootfs"]["diff_ids"].clone());
    }
    tags.sort();
    let mut expected = vec![images.synapse.clone(), images.valkey.clone()];
    expected.sort();
    assert_eq!(tags, expected);
    assert_eq!(diff_ids.len(), 2);
    assert_eq!(diff_ids[0].as_array().unwrap().len(), 1, "one layer");
    assert_eq!(diff_ids[0], diff_ids[1], "both images are the same layer");
    // The layer's content is in the tarball once (the other image's entry links to it).
    let layer_bytes = std::fs::metadata(&file).unwrap().len();
    let out = docker_ok(&["image", "inspect", "--format={{.Size}}", &images.synapse]);
    let image_bytes: u64 = out.parse().unwrap();
    assert!(
        layer_bytes < image_bytes + image_bytes / 10,
        "tarball {layer_bytes} bytes, image {image_bytes} bytes"
    );
    println!("tarball {} MB", layer_bytes / 1_000_000);
}
