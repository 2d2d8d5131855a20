//! Helpers for the integration tests that drive the built collection through real Ansible.
//!
//! The tests run the binaries users run: [`collection`] builds them once per test process with
//! `scripts/build` (release, laid out under `plugins/modules/`), and [`Ansible`] runs the tools
//! of the project venv (`.venv`, made by `scripts/setup`) with the checkout's `ansible.cfg`
//! and a private `ANSIBLE_HOME`, so nothing outside a temporary directory is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
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
            .env("ANSIBLE_COLLECTIONS_PATH", root().join(".collections"));
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
