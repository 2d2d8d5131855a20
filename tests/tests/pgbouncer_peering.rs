//! PgBouncer peering (`peer_id`, `[peers]`; PgBouncer 1.19 or later). Debian 12 ships 1.18, so
//! this test runs Debian 13's PgBouncer (1.24) from a trixie root file system under chroot
//! (debootstrap, cached in `.cache/rootfs/`), against the host's PostgreSQL 15. Two processes
//! share one port (so_reuseport), configured by pgbouncer_tune run inside the same root. A cancel
//! request lands on either process (the kernel picks by connection): with peering every one
//! reaches the process that runs the query; without it some are lost, which the test also shows.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use matrix_ha_tests::pg::{self, Postgres};
use matrix_ha_tests::{collection, root};
use serde_json::{json, Value};

/// Debian 13's PgBouncer in a root file system of its own, built once.
fn rootfs() -> PathBuf {
    let dir = root().join(".cache/rootfs/trixie-pgbouncer");
    if dir.join(".complete").exists() {
        return dir;
    }
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&partial).unwrap();
    let mirror =
        std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=pgbouncer", "trixie"])
        .arg(&partial)
        .arg(mirror)
        .output()
        .expect("debootstrap runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "debootstrap trixie: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(partial.join(".complete"), "").unwrap();
    fs::rename(&partial, &dir).unwrap();
    dir
}

/// uid and gid of `postgres` inside the root.
fn postgres_ids(rootfs: &Path) -> (u32, u32) {
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the pgbouncer package creates postgres");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// A directory of this run inside the root, removed afterwards.
struct Scratch {
    host: PathBuf,
    inside: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.host);
    }
}

/// A PgBouncer process in the root.
struct Bouncer {
    child: Child,
    log: PathBuf,
}

impl Bouncer {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        pg::stop(&mut self.child, nix::sys::signal::Signal::SIGINT);
    }
}

struct Group {
    rootfs: PathBuf,
    scratch: Scratch,
    ids: (u32, u32),
    port: u16,
}

impl Group {
    /// Runs pgbouncer_tune in the root for process `n` (1 or 2); `peering` adds peer_id/[peers].
    fn configure(&self, n: u32, peering: bool, server: &Postgres, verifier: &str, admin: &str) {
        let inside = self.scratch.inside.join(format!("p{n}"));
        let host = self.scratch.host.join(format!("p{n}"));
        fs::create_dir_all(&host).unwrap();
        nix::unistd::chown(
            &host,
            Some(nix::unistd::Uid::from_raw(self.ids.0)),
            Some(nix::unistd::Gid::from_raw(self.ids.1)),
        )
        .unwrap();
        let mut args = pg::synapse_bouncer_args(&inside, self.port, server.port, verifier, admin);
        args["so_reuseport"] = json!(true);
        if peering {
            args["peer_id"] = json!(n);
            args["peers"] = json!([1, 2].map(|id| json!({
                "id": id,
                "host": self.scratch.inside.join(format!("p{id}")),
                "port": self.port,
            })));
        }
        let file = host.join("args.json");
        fs::write(&file, args.to_string()).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("chroot")
            .arg(&self.rootfs)
            .arg(self.scratch.inside.join("pgbouncer_tune"))
            .arg(inside.join("args.json"))
            .output()
            .unwrap();
        let _ = fs::remove_file(&file);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(out.status.success(), "{v}");
        assert!(
            v["pgbouncer_version"].as_str().unwrap().starts_with("1.2"),
            "{v}"
        );
        let ini = fs::read_to_string(host.join("pgbouncer.ini")).unwrap();
        assert_eq!(ini.contains(&format!("peer_id = {n}")), peering, "{ini}");
        assert_eq!(ini.contains("[peers]"), peering, "{ini}");
    }

    fn start(&self, n: u32) -> Bouncer {
        let host = self.scratch.host.join(format!("p{n}"));
        let log = host.join("pgbouncer.log");
        let child = Command::new("chroot")
            .arg(format!("--userspec={}:{}", self.ids.0, self.ids.1))
            .arg(&self.rootfs)
            .arg("/usr/sbin/pgbouncer")
            .arg(self.scratch.inside.join(format!("p{n}/pgbouncer.ini")))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let bouncer = Bouncer { child, log };
        let socket = host.join(format!(".s.PGSQL.{}", self.port));
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "PgBouncer {n} did not start: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bouncer
    }
}

/// Starts `SELECT pg_sleep(8)` through the shared port, sends a cancel request half a second
/// later (a new connection, which either process may accept) and says whether the query was
/// cancelled within 3 s.
async fn cancel_arrives(port: u16, password: &str) -> bool {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("synapse")
        .password(password)
        .dbname("synapse")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("login through PgBouncer");
    tokio::spawn(connection);
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(8)").await.err() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    match tokio::time::timeout(Duration::from_secs(3), query).await {
        Ok(Ok(Some(e))) => e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        _ => false,
    }
}

fn cancels(port: u16, password: &str, tries: usize) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (0..tries)
        .filter(|_| runtime.block_on(cancel_arrives(port, password)))
        .count()
}

#[test]
fn peering_forwards_cancel_requests_between_processes_on_one_port() {
    let rootfs = rootfs();
    let server = Postgres::start(60);
    let synapse_pw = pg::password();
    let admin_pw = pg::password();
    server.create_role_and_db("synapse", &synapse_pw, "synapse");
    let verifier = server.stored_verifier("synapse");

    let name = format!("matrix-ha-peering-{}", std::process::id());
    let scratch = Scratch {
        host: rootfs.join(&name),
        inside: Path::new("/").join(&name),
    };
    fs::create_dir_all(&scratch.host).unwrap();
    fs::copy(
        collection().join("plugins/modules/pgbouncer_tune"),
        scratch.host.join("pgbouncer_tune"),
    )
    .unwrap();
    let group = Group {
        ids: postgres_ids(&rootfs),
        rootfs,
        scratch,
        port: pg::free_port(),
    };

    // Peering: every cancel request reaches the process running the query.
    for n in [1, 2] {
        group.configure(n, true, &server, &verifier, &admin_pw);
    }
    let bouncers = [group.start(1), group.start(2)];
    let tries = 12;
    let with_peering = cancels(group.port, &synapse_pw, tries);
    assert_eq!(
        with_peering,
        tries,
        "with peering every cancel arrives:\n{}\n{}",
        bouncers[0].log(),
        bouncers[1].log()
    );
    drop(bouncers);

    // The same group without peering loses the cancel requests the other process accepts.
    for n in [1, 2] {
        group.configure(n, false, &server, &verifier, &admin_pw);
    }
    let bouncers = [group.start(1), group.start(2)];
    let without = cancels(group.port, &synapse_pw, tries);
    assert!(
        without < tries,
        "without peering some cancel requests should miss ({without} of {tries} arrived)"
    );
    drop(bouncers);
    eprintln!(
        "cancel requests that arrived: {with_peering}/{tries} with peering, {without}/{tries} without"
    );
}
