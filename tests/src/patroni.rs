//! A real Patroni cluster for tests: one etcd and three Patroni members (Debian's etcd-server,
//! patroni and postgresql-15), on loopback ports chosen free at run time.
//!
//! - Everything runs as the unprivileged `postgres` user (`runuser -u postgres --`), with its
//!   data in a temporary directory owned by `postgres`; nothing outside it is touched.
//! - Members listen on 127.0.0.2 (Patroni refuses 127.0.0.1 as a connect address, and the
//!   whole of 127.0.0.0/8 is loopback), etcd on 127.0.0.1.
//! - Credentials are random per run (hex of 16 random bytes) and reach the module through its
//!   0600 args file, never a command line.
//! - [`Cluster::drop`] stops what it started, by PID: each Patroni (SIGTERM to its `runuser`,
//!   which forwards it; SIGKILL after 20 s), any PostgreSQL left behind (the PID in its
//!   `postmaster.pid`), then etcd. Every wait is bounded.
//!
//! The configuration is written by the module itself (`plugins/modules/patroni_bootstrap`,
//! built by [`crate::collection`]); [`Cluster::module`] runs it for one member.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The address members listen and are reached on.
pub const MEMBER_HOST: &str = "127.0.0.2";

/// A port nobody listens on at `host` right now.
pub fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Random hex of `bytes` bytes, from the kernel.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user exists (Debian's postgresql-common creates it)")
    };
    (id("-u"), id("-g"))
}

fn chown_postgres(path: &Path) {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
}

fn wait_port(host: &str, port: u16, what: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on {host}:{port} within {limit:?}");
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

/// Stops `child` with SIGTERM, then SIGKILL after `grace`; bounded.
fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The postmaster PID recorded in a data directory, if it still runs.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    signal(pid, nix::sys::signal::Signal::SIGCONT).then_some(pid)
}

/// One Patroni member.
pub struct Member {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Member {
    pub fn config(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }
}

/// etcd plus three Patroni members, and the credentials of the run.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub scope: String,
    pub etcd_port: u16,
    etcd: Option<Child>,
    pub members: Vec<Member>,
    pub superuser_password: String,
    pub replication_password: String,
    pub restapi_password: String,
    pub synapse_password: String,
    pub pgbouncer_password: String,
}

impl Cluster {
    /// Starts etcd and prepares three members (their configuration is not written yet).
    pub fn new(size: usize) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("matrix-ha-patroni.")
            .tempdir()
            .expect("a temporary directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        chown_postgres(dir.path());
        let etcd_port = free_port("127.0.0.1");
        let peer_port = free_port("127.0.0.1");
        let etcd_dir = dir.path().join("etcd");
        fs::create_dir(&etcd_dir).unwrap();
        chown_postgres(&etcd_dir);
        let log = fs::File::create(dir.path().join("etcd.log")).unwrap();
        let client = format!("http://127.0.0.1:{etcd_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "etcd",
                "--name",
                "etcd-1",
                "--data-dir",
            ])
            .arg(etcd_dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg("--initial-cluster")
            .arg(format!("etcd-1={peer}"))
            .args([
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (etcd-server) is installed; run scripts/setup");
        let mut cluster = Cluster {
            scope: format!("test-{}", random_hex(3)),
            etcd_port,
            etcd: Some(etcd),
            members: Vec::new(),
            superuser_password: random_hex(16),
            replication_password: random_hex(16),
            restapi_password: random_hex(16),
            synapse_password: random_hex(16),
            pgbouncer_password: random_hex(16),
            dir,
        };
        wait_port("127.0.0.1", etcd_port, "etcd", Duration::from_secs(20));
        for i in 1..=size {
            let mdir = cluster.dir.path().join(format!("patroni-{i}"));
            fs::create_dir(&mdir).unwrap();
            fs::set_permissions(&mdir, fs::Permissions::from_mode(0o700)).unwrap();
            chown_postgres(&mdir);
            cluster.members.push(Member {
                name: format!("patroni-{i}"),
                pg_port: free_port(MEMBER_HOST),
                api_port: free_port(MEMBER_HOST),
                dir: mdir,
                child: None,
            });
        }
        cluster
    }

    /// The module's options for member `i` (0-based), before `extra` is merged in.
    pub fn args(&self, i: usize, extra: &Value) -> Value {
        let m = &self.members[i];
        let mut args = json!({
            "config_path": m.config(),
            "scope": self.scope,
            "name": m.name,
            "etcd_hosts": [format!("127.0.0.1:{}", self.etcd_port)],
            "listen": format!("{MEMBER_HOST}:{}", m.pg_port),
            "connect_address": format!("{MEMBER_HOST}:{}", m.pg_port),
            "restapi_listen": format!("{MEMBER_HOST}:{}", m.api_port),
            "data_dir": m.data_dir(),
            "pg_hba_networks": ["127.0.0.0/8"],
            "superuser_password": self.superuser_password,
            "replication_password": self.replication_password,
            "restapi_password": self.restapi_password,
            // Small and fast for tests: 1 GB of RAM, short timings (still within the rule).
            "memory_mb": 1024,
            "cpus": 2,
            "max_connections": 50,
            "ttl": 20,
            "loop_wait": 2,
            "retry_timeout": 9,
            "parameters": {"unix_socket_directories": m.dir, "huge_pages": "off",
                           "wal_keep_size": "64MB"},
            "cluster_size": self.members.len(),
            "wait_timeout": 180,
            "users": [{"name": "synapse", "password": self.synapse_password,
                       "settings": {"default_transaction_isolation": null,
                                    "statement_timeout": "10min"}}],
            "databases": [{"name": "synapse", "owner": "synapse"}],
            "pgbouncer_auth_password": self.pgbouncer_password,
        });
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                a.insert(k.clone(), v.clone());
            }
        }
        args
    }

    /// Runs the built module with `args` (through a 0600 file); returns its result.
    pub fn module(&self, args: &Value) -> Value {
        let root = crate::collection();
        let file = self.dir.path().join(format!("args-{}.json", random_hex(4)));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .unwrap();
            f.write_all(args.to_string().as_bytes()).unwrap();
        }
        let out = Command::new(root.join("plugins/modules/patroni_bootstrap"))
            .arg(&file)
            .output()
            .expect("the module runs");
        let _ = fs::remove_file(&file);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not one JSON result ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Starts Patroni for member `i`, as postgres.
    pub fn start(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.log())
            .unwrap();
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--", "patroni"])
            .arg(m.config())
            .current_dir(&m.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("patroni is installed; run scripts/setup");
        m.child = Some(child);
    }

    /// Stops member `i`'s Patroni (which stops its PostgreSQL), by PID; bounded.
    pub fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut child) = m.child.take() {
            stop_child(&mut child, Duration::from_secs(20));
        }
        if let Some(pid) = postmaster_pid(&m.data_dir()) {
            // Patroni is gone but its PostgreSQL is not: immediate shutdown.
            signal(pid, nix::sys::signal::Signal::SIGQUIT);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10)
                && postmaster_pid(&m.data_dir()).is_some()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(pid) = postmaster_pid(&m.data_dir()) {
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// The PID of member `i`'s Patroni: the child of its `runuser`, read from /proc.
    pub fn patroni_pid(&self, i: usize) -> Option<i32> {
        let parent = self.members[i].child.as_ref()?.id() as i32;
        children(parent).into_iter().next()
    }

    /// kill -9 member `i`'s Patroni and PostgreSQL (a crashed server); returns whether both
    /// were found.
    pub fn crash(&mut self, i: usize) -> bool {
        let patroni = self.patroni_pid(i);
        let postmaster = postmaster_pid(&self.members[i].data_dir());
        // The postmaster's children too (backends, walsenders): a crashed server keeps none.
        let backends = postmaster.map(children).unwrap_or_default();
        for pid in patroni
            .iter()
            .chain(postmaster.iter())
            .chain(backends.iter())
        {
            signal(*pid, nix::sys::signal::Signal::SIGKILL);
        }
        patroni.is_some() && postmaster.is_some()
    }

    /// Index of the member `/cluster` reports as leader, asking every member (but `exclude`,
    /// whose answer and leadership do not count); bounded.
    pub fn leader(&self, limit: Duration, exclude: Option<usize>) -> Option<usize> {
        let start = Instant::now();
        while start.elapsed() < limit {
            for (k, m) in self.members.iter().enumerate() {
                if Some(k) == exclude {
                    continue;
                }
                let url = format!("{MEMBER_HOST}:{}", m.api_port);
                if let Some(name) = http_get_json(&url, "/cluster").and_then(|v| {
                    v["members"].as_array()?.iter().find_map(|x| {
                        (x["role"] == "leader" && x["state"] == "running")
                            .then(|| x["name"].as_str().map(str::to_string))
                            .flatten()
                    })
                }) {
                    let found = self.members.iter().position(|x| x.name == name);
                    if found.is_some() && found != exclude {
                        return found;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    }

    /// Fails the test with the module's result and the logs' tails unless `result` succeeded.
    pub fn assert_ok(&self, result: &Value, what: &str) {
        assert_eq!(
            result["failed"],
            json!(false),
            "{what}: {result}\n{}",
            self.logs()
        );
    }

    /// The last lines of every log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.dir.path().join("etcd.log")];
        files.extend(self.members.iter().map(Member::log));
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            out.push_str(&format!("==> {}\n", f.display()));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Runs `sql` (simple query protocol) on member `i` as `user` in `dbname`; every value as text.
    pub fn query(
        &self,
        i: usize,
        user: &str,
        password: &str,
        dbname: &str,
        sql: &str,
    ) -> Result<Vec<Vec<String>>, String> {
        let m = &self.members[i];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut c = tokio_postgres::Config::new();
            c.host(MEMBER_HOST)
                .port(m.pg_port)
                .user(user)
                .password(password)
                .dbname(dbname)
                .connect_timeout(Duration::from_secs(5));
            let (client, conn) = c
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| text(&e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let msgs = client.simple_query(sql).await.map_err(|e| text(&e))?;
            Ok(msgs
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|k| r.get(k).unwrap_or("").to_string())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }
}

/// PIDs of the processes whose parent is `parent`, read from /proc.
pub fn children(parent: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<i32>()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// GET `path` from `host:port` over plain HTTP/1.0 (Patroni's REST API on loopback).
fn http_get_json(addr: &str, path: &str) -> Option<Value> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.take(1 << 20).read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// A client error with the server's message (tokio-postgres keeps it in the source).
fn text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
        if let Some(mut etcd) = self.etcd.take() {
            stop_child(&mut etcd, Duration::from_secs(10));
        }
    }
}
