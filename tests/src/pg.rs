//! Private PostgreSQL and PgBouncer instances for tests, from Debian's packages.
//!
//! [`Postgres::start`] runs `initdb` and the server as the unprivileged `postgres` system user
//! (the packages create it; the test process must be root to switch to it), in a fresh
//! temporary directory, on a free loopback port, with SCRAM-SHA-256 for every TCP login and
//! `peer` on its private Unix socket for the `postgres` superuser. [`PgBouncer::start`] runs
//! PgBouncer the same way on a configuration file a test wrote. Both are stopped by their PID
//! when dropped (fast shutdown, then SIGKILL after a bounded wait), and their directories
//! removed.
//!
//! Secrets: a test's passwords are generated per run ([`password`]) and only SCRAM verifiers
//! (computed here) reach PostgreSQL, through `psql`'s standard input, never its command line.
//! [`query`] logs in with a password inside the SCRAM exchange of tokio-postgres.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's PostgreSQL programs, newest installed major version first.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (Debian package postgresql; run scripts/setup)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
}

/// The `postgres` system user and group ids.
pub fn postgres_ids() -> (u32, u32) {
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgres system user exists (Debian package postgresql)");
    (user.uid.as_raw(), user.gid.as_raw())
}

/// pgbouncer_tune arguments for one PgBouncer process in `dir` (its ini, auth file, socket and
/// pidfile there), listening on 127.0.0.1:`port`, pooling Synapse's database on the PostgreSQL
/// at 127.0.0.1:`server_port` with the server's own SCRAM `verifier` (PgBouncer passes SCRAM
/// through with it) and an admin console password.
pub fn synapse_bouncer_args(
    dir: &Path,
    port: u16,
    server_port: u16,
    verifier: &str,
    admin_password: &str,
) -> serde_json::Value {
    serde_json::json!({
        "path": dir.join("pgbouncer.ini"),
        "auth_file": dir.join("userlist.txt"),
        "app_processes": 2,
        "app_pool_max": 2,
        "reserved_connections": 5,
        "max_connections": 60,
        "listen_addr": ["127.0.0.1"],
        "listen_port": port,
        "unix_socket_dir": dir,
        "pidfile": dir.join("pgbouncer.pid"),
        "databases": [{"name": "synapse", "host": "127.0.0.1", "port": server_port, "users": ["synapse"]}],
        "auth_users": [{"name": "synapse", "verifier": verifier}],
        "admin_password": admin_password,
    })
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A random hex password of 32 characters, made for one run.
pub fn password() -> String {
    let mut bytes = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut f, &mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SCRAM-SHA-256 verifier of `password`, as PostgreSQL stores it.
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// A temporary directory the postgres user owns (mode 0750).
fn postgres_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("matrix-ha-pg.")
        .tempdir()
        .expect("a temporary directory");
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
        .expect("chown to postgres (the PostgreSQL tests need root)");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    dir
}

/// A command that runs as the postgres user.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let (uid, gid) = postgres_ids();
    let mut cmd = Command::new(program);
    cmd.uid(uid)
        .gid(gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C");
    cmd
}

/// Stops `child` with `signal`, waits up to 10 s, then SIGKILL.
/// Sends `signal` to `child` and waits (10 s at most) for it to exit, then kills it.
pub fn stop(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private PostgreSQL server.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Its Unix socket directory.
    pub socket_dir: PathBuf,
    /// The password of the `postgres` superuser for TCP logins.
    pub superuser_password: String,
    pub version: String,
    child: Child,
}

impl Postgres {
    /// initdb (UTF8, C locale, SCRAM) and start, with `max_connections`.
    pub fn start(max_connections: u32) -> Postgres {
        let dir = postgres_dir();
        let data = dir.path().join("data");
        let socket_dir = dir.path().to_path_buf();
        let bin = bin_dir();
        let out = as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let child = as_postgres(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-c")
            .arg(format!("port={port}"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .arg("-c")
            .arg(format!("max_connections={max_connections}"))
            .args(["-c", "password_encryption=scram-sha-256", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let version = String::from_utf8_lossy(
            &Command::new(bin.join("postgres"))
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
        )
        .trim()
        .to_string();
        let mut pg = Postgres {
            dir,
            port,
            socket_dir,
            superuser_password: password(),
            version,
            child,
        };
        // Bounded wait: 100 tries, 100 ms apart.
        let mut ready = false;
        for _ in 0..100 {
            if pg.try_psql("postgres", "SELECT 1").is_ok() {
                ready = true;
                break;
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited ({status}): {}", pg.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ready, "PostgreSQL not ready within 10 s: {}", pg.log());
        let v = verifier(&pg.superuser_password);
        pg.psql("postgres", &format!("ALTER ROLE postgres PASSWORD '{v}'"));
        pg
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut child = as_postgres(bin_dir().join("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` (from standard input) as the superuser over the Unix socket; its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql failed: {e}"))
    }

    /// Creates a login role with a SCRAM password and a database it owns (UTF8, C locale,
    /// from template0, as Synapse needs).
    pub fn create_role_and_db(&self, role: &str, password: &str, db: &str) {
        let v = verifier(password);
        self.psql(
            "postgres",
            &format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '{v}'"),
        );
        self.psql(
            "postgres",
            &format!(
                "CREATE DATABASE \"{db}\" OWNER \"{role}\" TEMPLATE template0 ENCODING 'UTF8' \
                 LC_COLLATE 'C' LC_CTYPE 'C'"
            ),
        );
    }

    /// Puts `hba` lines before the others in pg_hba.conf, `ident` lines into pg_ident.conf,
    /// and reloads the server.
    pub fn prepend_hba(&self, hba: &[&str], ident: &[&str]) {
        let data = self.dir.path().join("data");
        let hba_path = data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba_path).expect("pg_hba.conf");
        std::fs::write(&hba_path, format!("{}\n{old}", hba.join("\n"))).unwrap();
        let ident_path = data.join("pg_ident.conf");
        let mut text = std::fs::read_to_string(&ident_path).unwrap_or_default();
        for line in ident {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&ident_path, text).unwrap();
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// The SCRAM verifier PostgreSQL stores for `role`.
    pub fn stored_verifier(&self, role: &str) -> String {
        self.psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.child, nix::sys::signal::Signal::SIGINT);
    }
}

/// A PgBouncer process on a configuration file, run as the postgres user in the foreground.
pub struct PgBouncer {
    pub ini: PathBuf,
    pub log: PathBuf,
    pub version: String,
    child: Child,
}

impl PgBouncer {
    /// Starts `pgbouncer INI` and waits (bounded) until `port` on 127.0.0.1 accepts.
    pub fn start(ini: &Path, port: u16) -> PgBouncer {
        let log = ini.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let version = String::from_utf8_lossy(
            &Command::new("/usr/sbin/pgbouncer")
                .arg("--version")
                .output()
                .expect("pgbouncer is installed (Debian package pgbouncer; run scripts/setup)")
                .stdout,
        )
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
        let mut child = as_postgres("/usr/sbin/pgbouncer")
            .arg(ini)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("pgbouncer starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return PgBouncer {
                    ini: ini.to_path_buf(),
                    log,
                    version,
                    child,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "pgbouncer exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop(&mut child, nix::sys::signal::Signal::SIGINT);
        panic!("pgbouncer did not listen on 127.0.0.1:{port} within 10 s");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        stop(&mut self.child, nix::sys::signal::Signal::SIGINT);
    }
}

/// Runs `sql` with the simple query protocol, logging in with SCRAM; each row's columns.
pub fn query(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<Vec<Vec<(String, String)>>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let work = async {
            let (client, conn) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(port)
                .user(user)
                .password(password)
                .dbname(db)
                .connect_timeout(Duration::from_secs(10))
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{e}: {:?}", e.as_db_error().map(|d| d.message())))?;
            let driver = tokio::spawn(conn);
            let messages = client
                .simple_query(sql)
                .await
                .map_err(|e| format!("{e}: {:?}", e.as_db_error().map(|d| d.message())))?;
            drop(client);
            let _ = driver.await;
            Ok(messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        row.columns()
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                (
                                    c.name().to_string(),
                                    row.get(i).unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .unwrap_or_else(|_| Err("no answer within 30 s".to_string()))
    })
}

/// The value of `key` in PgBouncer's `SHOW CONFIG`.
pub fn show_config(port: u16, admin: &str, password: &str, key: &str) -> Option<String> {
    let rows = query(port, admin, password, "pgbouncer", "SHOW CONFIG").ok()?;
    rows.into_iter().find_map(|row| {
        let k = row.iter().find(|(c, _)| c == "key")?.1.clone();
        (k == key).then(|| {
            row.iter()
                .find(|(c, _)| c == "value")
                .map(|(_, v)| v.clone())
        })?
    })
}
