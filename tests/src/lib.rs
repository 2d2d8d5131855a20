//! Helpers for the integration tests that drive the built collection through real Ansible.
//!
//! The tests run the binaries users run: [`collection`] builds them once per test process with
//! `scripts/build` (release, laid out under `plugins/modules/`), and [`Ansible`] runs the tools
//! of the project venv (`.venv`, made by `scripts/setup`) with the checkout's `ansible.cfg`
//! and a private `ANSIBLE_HOME`, so nothing outside a temporary directory is touched.
//! [`pg`] starts private PostgreSQL and PgBouncer instances for tests of the database modules.

pub mod pg;

pub mod patroni;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The secrets an operator's vault gives the site (the inventory only refers to them as
/// `{{ vault_... }}`; the inventory README's "Vault variables" names each).
pub const VAULT_SECRETS: [&str; 15] = [
    "vault_matrix_homeserver_generic_secret_key",
    "vault_synapse_db_password",
    "vault_patroni_superuser_password",
    "vault_patroni_replication_password",
    "vault_patroni_restapi_password",
    "vault_turn_shared_secret",
    "vault_minio_root_user",
    "vault_minio_root_password",
    "vault_minio_synapse_access_key",
    "vault_minio_synapse_secret_key",
    "vault_keepalived_auth_pass",
    "vault_pgbouncer_admin_password",
    "vault_livekit_api_key",
    "vault_livekit_api_secret",
    "vault_livekit_redis_password",
];

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The collection's inventory binary on a site file, with `args` (`--list`, `--host H`, ...),
/// its output as JSON; the run fails the test with the binary's message. `MATRIX_HA_SITE` is
/// left out, so only `site` counts.
pub fn matrix_inventory(site: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(collection().join("bin/matrix_inventory"))
        .env_remove("MATRIX_HA_SITE")
        .arg("--site")
        .arg(site)
        .args(args)
        .output()
        .expect("the inventory runs");
    assert!(
        out.status.success(),
        "{}: {}",
        site.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the inventory prints JSON")
}

/// Builds the collection (once per test process) and returns the repository root.
pub fn collection() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        let out = Command::new(root.join("scripts/build"))
            .current_dir(&root)
            .output()
            .expect("scripts/build runs");
        assert!(
            out.status.success(),
            "scripts/build failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        root
    })
}

/// The MDAD checkout the tests run: `MATRIX_HA_MDAD_DIR` when set, else `mdad/` in the
/// repository, else the pinned copy in `shared/mdad` beside the repository (its `VERSION` names
/// the commit). It must hold `setup.yml` and its external roles in `roles/galaxy/`; without one
/// the test fails and says where to put it (it never passes by skipping).
pub fn mdad_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("MATRIX_HA_MDAD_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![root().join("mdad"), root().join("../shared/mdad")],
    };
    for dir in &candidates {
        if dir.join("setup.yml").is_file() && dir.join("roles/galaxy").is_dir() {
            return dir.canonicalize().unwrap_or_else(|_| dir.clone());
        }
    }
    panic!(
        "no matrix-docker-ansible-deploy checkout with its roles (setup.yml and roles/galaxy/) \
         at {}: clone it there and run `just roles` (or `ansible-galaxy install -r \
         requirements.yml -p roles/galaxy/`) in it, or set MATRIX_HA_MDAD_DIR to one",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    );
}

/// A tool of the project venv; fails the test with a clear message if the venv is missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let tool = root().join(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run scripts/setup first (it creates the .venv with the pinned Ansible)",
        tool.display()
    );
    tool
}

/// Real Ansible with the checkout's collection, isolated in a temporary directory.
pub struct Ansible {
    pub dir: tempfile::TempDir,
}

impl Default for Ansible {
    fn default() -> Self {
        Self::new()
    }
}

impl Ansible {
    pub fn new() -> Self {
        collection();
        Ansible {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// A scratch path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command for venv tool `tool`, set up for this checkout.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(venv_tool(tool));
        cmd.current_dir(self.dir.path())
            .env("ANSIBLE_CONFIG", root().join("ansible.cfg"))
            .env("ANSIBLE_HOME", self.path(".ansible"))
            .env("ANSIBLE_LOCAL_TEMP", self.path(".ansible/tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
            .env("ANSIBLE_COLLECTIONS_PATH", root().join(".collections"))
            .env("ANSIBLE_REMOTE_TEMP", self.path("remote-tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", self.path("cp"));
        cmd
    }

    /// Writes `yaml` as a playbook and runs it with `extra` arguments.
    pub fn playbook(&self, yaml: &str, extra: &[&str]) -> Run {
        let file = self.path("playbook.yml");
        std::fs::write(&file, yaml).expect("playbook written");
        self.run_playbook(&file, extra)
    }

    pub fn run_playbook(&self, file: &Path, extra: &[&str]) -> Run {
        let out = self
            .command("ansible-playbook")
            .arg(file)
            .args(extra)
            .output()
            .expect("ansible-playbook runs");
        Run::from(out)
    }

    /// `ansible localhost -m MODULE -a ARGS` with `extra` arguments.
    pub fn adhoc(&self, module: &str, args: &str, extra: &[&str]) -> Run {
        let out = self
            .command("ansible")
            .args(["localhost", "-m", module, "-a", args])
            .args(extra)
            .output()
            .expect("ansible runs");
        Run::from(out)
    }
}

impl Drop for Ansible {
    /// Stops the SSH ControlPersist masters this test's runs left (they would linger 60 s).
    fn drop(&mut self) {
        let Ok(sockets) = std::fs::read_dir(self.path("cp")) else {
            return;
        };
        for socket in sockets.flatten() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", socket.path().display()))
                .args(["-O", "exit", "matrix-ha-test"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A finished Ansible run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and returns self, showing the output when it failed.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "Ansible failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// A counter of the PLAY RECAP line for `host` (`ok`, `changed`, `failed`, …).
    pub fn recap(&self, host: &str, counter: &str) -> u32 {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with(host) && l.contains(" : ok="))
            .unwrap_or_else(|| panic!("no PLAY RECAP line for {host}:\n{}", self.stdout));
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(&format!("{counter}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {counter}= in {line}"))
    }
}

/// An OpenSSH server on 127.0.0.1 for one test: host and client keys made for the run,
/// root login by key only, stopped (by its PID) when dropped.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: std::process::Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = dir.path();
        for key in ["host_ed25519", "client_ed25519"] {
            let out = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "matrix-ha-test",
                    "-f",
                ])
                .arg(d.join(key))
                .output()
                .expect("ssh-keygen (openssh-client) is installed");
            assert!(out.status.success(), "ssh-keygen failed");
        }
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        // Privilege separation needs this directory (no init system creates it here).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                 PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\n",
                d = d.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd (openssh-server) is installed; run scripts/setup");
        let sshd = Sshd { dir, port, child };
        // Bounded wait for the port: 50 tries, 100 ms apart.
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sshd;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("sshd did not listen on 127.0.0.1:{port} within 5 s (the test needs root)");
    }

    /// An inventory with one host, `target`, reached over this server as root.
    pub fn inventory(&self) -> PathBuf {
        let d = self.dir.path();
        let path = d.join("inventory.ini");
        std::fs::write(
            &path,
            format!(
                "target ansible_host=127.0.0.1 ansible_port={port} ansible_user=root \
                 ansible_connection=ssh ansible_ssh_private_key_file={d}/client_ed25519 \
                 ansible_python_interpreter=/usr/bin/python3 \
                 ansible_ssh_common_args='-o StrictHostKeyChecking=no \
                 -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n",
                port = self.port,
                d = d.display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `names` (a subjectAltName value, e.g.
/// `DNS:chat.z3r0d3v.com,DNS:*.chat.z3r0d3v.com`) and its key in one PEM file, `site.pem` in
/// `dir`, mode 0600: what HAProxy's `crt` takes.
pub fn site_certificate(dir: &Path, names: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let pem = dir.join("site.pem");
    let key = dir.join("site.key");
    let crt = dir.join("site.crt");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=test", "-addext"])
        .arg(format!("subjectAltName={names}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut both = std::fs::read(&crt).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&crt).unwrap();
    pem
}
