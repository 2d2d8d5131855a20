//! The side-effecting helpers of the apply step: interface addresses, the script user,
//! keepalived's config test, the sysctl and the reload signal.

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use ipnet::Ipv4Net;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;

/// An apply-step problem, naming the option it concerns.
#[derive(Debug, Error)]
pub enum SystemError {
    #[error("cannot read the interfaces' addresses: {0}")]
    Interfaces(nix::Error),
    #[error("option 'script_user': value \"{0}\" is not a user on this host; create it (or set create_script_user: true) — keepalived refuses to run scripts as root with enable_script_security")]
    NoScriptUser(String),
    #[error("option 'script_user': could not create user \"{user}\" with useradd: {detail}")]
    CreateUser { user: String, detail: String },
    #[error("keepalived rejected the rendered configuration (keepalived -t, nothing was installed): {0}")]
    ConfigTest(String),
    #[error("could not run keepalived's config test '{program}': {source}")]
    ConfigTestRun { program: String, source: io::Error },
    #[error("option 'sysctl_path': cannot set the live value of net.ipv4.ip_nonlocal_bind: {0}")]
    Sysctl(io::Error),
    #[error("option 'pid_file': cannot signal keepalived (pid {pid}) to reload: {source}")]
    Reload { pid: i32, source: nix::Error },
}

/// IPv4 addresses (with prefix) of every interface, by interface name.
pub fn interface_addresses() -> Result<BTreeMap<String, Vec<Ipv4Net>>, SystemError> {
    let mut out: BTreeMap<String, Vec<Ipv4Net>> = BTreeMap::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(SystemError::Interfaces)? {
        let entry = out.entry(ifa.interface_name.clone()).or_default();
        let addr = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|s| s.ip());
        let mask = ifa
            .netmask
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|s| s.ip());
        if let (Some(addr), Some(mask)) = (addr, mask) {
            let prefix = u32::from(mask).leading_ones() as u8;
            if let Ok(net) = Ipv4Net::new(addr, prefix) {
                entry.push(net);
            }
        }
    }
    Ok(out)
}

/// Whether `user` exists in the user database.
pub fn user_exists(user: &str) -> bool {
    matches!(nix::unistd::User::from_name(user), Ok(Some(_)))
}

/// Creates a system user without home or login shell, for keepalived's scripts.
pub fn create_user(user: &str) -> Result<(), SystemError> {
    let out = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--",
            user,
        ])
        .output()
        .map_err(|e| SystemError::CreateUser {
            user: user.to_string(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SystemError::CreateUser {
            user: user.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Finds `program` as given (absolute) or in the usual system directories.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Runs `keepalived -t -l -f FILE`. keepalived 2.2.7 ends a config test by SIGTERM even when
/// the file is fine, and exits 143 after some errors, so the verdict is its messages: any
/// message (it prints none for a clean file), or an exit code other than 0, fails.
pub fn config_test(keepalived: &Path, file: &Path) -> Result<(), SystemError> {
    let out = Command::new(keepalived)
        .arg("-t")
        .arg("-l")
        .arg("-f")
        .arg(file)
        .output()
        .map_err(|source| SystemError::ConfigTestRun {
            program: keepalived.display().to_string(),
            source,
        })?;
    let shown = file.display().to_string();
    let messages: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .map(|l| l.replace(&shown, "keepalived.conf").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let bad_code = matches!(out.status.code(), Some(c) if c != 0);
    if messages.is_empty() && !bad_code {
        Ok(())
    } else if messages.is_empty() {
        Err(SystemError::ConfigTest(format!(
            "exit code {}",
            out.status.code().unwrap_or(-1)
        )))
    } else {
        Err(SystemError::ConfigTest(messages.join(" | ")))
    }
}

/// The live value of `net.ipv4.ip_nonlocal_bind` in this network namespace.
pub fn nonlocal_bind_live(proc_path: &Path) -> Option<bool> {
    std::fs::read_to_string(proc_path)
        .ok()
        .map(|v| v.trim() == "1")
}

/// Sets the live value to 1.
pub fn set_nonlocal_bind_live(proc_path: &Path) -> Result<(), SystemError> {
    std::fs::write(proc_path, b"1\n").map_err(SystemError::Sysctl)
}

/// The pid of a running keepalived from `pid_file`, if the file names a live keepalived.
pub fn running_keepalived(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (pid > 1 && comm.trim() == "keepalived").then_some(pid)
}

/// Sends SIGHUP: keepalived re-reads its configuration and keeps the VIP it holds.
pub fn reload(pid: i32) -> Result<(), SystemError> {
    kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|source| SystemError::Reload { pid, source })
}

/// Whether `vip` is one of `addrs` (the interface holds the VIP now).
pub fn holds(addrs: &[Ipv4Net], vip: Ipv4Addr) -> bool {
    addrs.iter().any(|n| n.addr() == vip)
}
