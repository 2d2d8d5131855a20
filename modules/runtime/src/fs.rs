//! Safe file writes: a reader never sees a half-written file, a crash never leaves one.
//!
//! [`write`] puts the new content in a temporary file in the target's directory, fsyncs it,
//! gives it the right owner, group and mode, renames it over the target and fsyncs the
//! directory. Owner, group and mode of an existing file are kept unless others are asked for.
//!
//! A file that is a mount point cannot be replaced by rename (`EBUSY`): `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf` are bind mounts in every Docker container. Then the
//! content is written into the existing file instead, in an order that can never leave it
//! empty or short: space is reserved first (`posix_fallocate`, so a full disk fails before
//! anything is touched), the new bytes are written from offset 0 over the old ones, and only
//! then is the file cut to the new length. The fsynced temporary file stays next to the target
//! until the rewrite is complete, so a crash mid-way leaves a full copy of the new content
//! (until the next run, which rewrites the file and removes the copy with a warning);
//! a failed write puts the old content back. The result says the file was written in place.
//!
//! Every write happens under [`lock`]: an exclusive `flock` on `.NAME.matrix-ha.lock` beside
//! the target, held from before the file is read until after it is replaced, so two runs
//! against one file (several plays, `delegate_to` tasks) never lose each other's update: the
//! second reads what the first wrote. [`write`] takes the lock, so no write can happen without
//! it. Taking it also removes temporary files an earlier run left when it was killed
//! (`.NAME.matrix-ha.PID.N.tmp`, with the PID of a process that no longer runs): under the
//! lock no other run of ours is writing them.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

/// An I/O failure, naming what was being done and to which path.
#[derive(Debug, Error)]
#[error("{action} '{}': {source}", path.display())]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
    fn other(action: &'static str, path: &Path, why: &str) -> Self {
        FsError::new(action, path, io::Error::other(why.to_string()))
    }
}

/// A requested owner/group that does not exist on the host.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttrError {
    #[error("option 'owner': no user named '{0}' on this host")]
    NoSuchUser(String),
    #[error("option 'group': no group named '{0}' on this host")]
    NoSuchGroup(String),
}

/// Owner, group and mode asked for by the module's options; `None` keeps what the file has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

impl Attrs {
    /// Resolves `owner`/`group` names (or numeric ids) on this host.
    pub fn resolve(
        owner: Option<&str>,
        group: Option<&str>,
        mode: Option<u32>,
    ) -> Result<Self, AttrError> {
        let uid = match owner {
            None => None,
            Some(name) => Some(match name.parse::<u32>() {
                Ok(id) => id,
                Err(_) => nix::unistd::User::from_name(name)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw())
                    .ok_or_else(|| AttrError::NoSuchUser(name.to_string()))?,
            }),
        };
        let gid = match group {
            None => None,
            Some(name) => Some(match name.parse::<u32>() {
                Ok(id) => id,
                Err(_) => nix::unistd::Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
                    .ok_or_else(|| AttrError::NoSuchGroup(name.to_string()))?,
            }),
        };
        Ok(Attrs { uid, gid, mode })
    }

    /// What would change on an existing file, in words (`mode 0600 -> 0644`); empty if nothing.
    pub fn changes(&self, meta: &fs::Metadata) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(uid) = self.uid.filter(|u| *u != meta.uid()) {
            out.push(format!("owner {} -> {uid}", meta.uid()));
        }
        if let Some(gid) = self.gid.filter(|g| *g != meta.gid()) {
            out.push(format!("group {} -> {gid}", meta.gid()));
        }
        if let Some(mode) = self.mode.filter(|m| *m != meta.mode() & 0o7777) {
            out.push(format!("mode {:04o} -> {mode:04o}", meta.mode() & 0o7777));
        }
        out
    }

    /// Applies owner, group and mode to an open file (owner first: chown clears set-id bits).
    fn apply(&self, file: &File, meta: Option<&fs::Metadata>, default_mode: u32) -> io::Result<()> {
        let uid = self.uid.or(meta.map(|m| m.uid()));
        let gid = self.gid.or(meta.map(|m| m.gid()));
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(file, uid, gid)?;
        }
        let mode = self
            .mode
            .or(meta.map(|m| m.mode() & 0o7777))
            .unwrap_or(default_mode);
        file.set_permissions(Permissions::from_mode(mode))
    }
}

/// How to write: the attributes, the mode of a new file, and whether to keep a backup.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub attrs: Attrs,
    /// Mode of a file that does not exist yet, when `attrs.mode` is unset.
    pub default_mode: u32,
    pub backup: bool,
}

/// How the content reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Temporary file renamed over the target: atomic.
    Renamed,
    /// Rename was refused with EBUSY (a mount point): rewritten in place, never short.
    InPlace,
}

/// What [`write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub method: Method,
    pub backup_file: Option<PathBuf>,
}

impl Written {
    /// `"renamed"` or `"in_place"`, for the module result.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Renamed => "renamed",
            Method::InPlace => "in_place",
        }
    }

    /// A warning to show the user when the write was not atomic.
    pub fn note(&self, path: &Path) -> Option<String> {
        (self.method == Method::InPlace).then(|| {
            format!(
                "'{}' is a mount point (rename refused with EBUSY, as for /etc/hosts in a \
                 container): it was rewritten in place, complete, but not atomically",
                path.display()
            )
        })
    }
}

/// An exclusive lock on one target file, held until dropped (see the module docs).
#[derive(Debug)]
pub struct Locked {
    target: PathBuf,
    _lock: nix::fcntl::Flock<File>,
    /// Stale temporary files removed when the lock was taken.
    pub removed: Vec<PathBuf>,
}

impl Locked {
    /// The locked target.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Warnings to show for the stale temporary files this lock removed.
    pub fn notes(&self) -> Vec<String> {
        self.removed
            .iter()
            .map(|p| {
                format!(
                    "removed '{}', a temporary file left by an interrupted earlier run",
                    p.display()
                )
            })
            .collect()
    }
}

/// The lock file of `target`: `.NAME.matrix-ha.lock` in the same directory.
pub fn lock_path(target: &Path) -> PathBuf {
    parent_dir(target).join(format!(".{}.matrix-ha.lock", file_name(target)))
}

fn file_name(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Takes the exclusive lock of `target` (waiting for another run to finish with it), then
/// removes stale temporary files of the target. `target` should come from [`resolve`].
///
/// The lock file is created 0600 (never through a symbolic link) and kept: removing it would
/// let a waiting run and a new one lock two different files.
pub fn lock(target: &Path) -> Result<Locked, FsError> {
    inspect(target)?; // a target that cannot be written gets no lock file either
    let path = lock_path(target);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| FsError::new("cannot open the lock file", &path, e))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| FsError::new("cannot lock", &path, io::Error::from(errno)))?;
    let removed = remove_stale_temps(target);
    Ok(Locked {
        target: target.to_path_buf(),
        _lock: lock,
        removed,
    })
}

/// The PID in the name of one of `target`'s temporary files (its own, or its backup's), or
/// `None` when `name` is not one.
fn temp_pid(target_name: &str, name: &str) -> Option<i32> {
    let rest = name.strip_suffix(".tmp")?;
    let (rest, counter) = rest.rsplit_once('.')?;
    let (rest, pid) = rest.rsplit_once('.')?;
    let stem = rest.strip_suffix(".matrix-ha")?;
    let own = format!(".{target_name}");
    let ours = stem == own || (stem.starts_with(&format!("{own}.")) && stem.ends_with('~'));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    (ours && digits(counter) && digits(pid))
        .then(|| pid.parse().ok())
        .flatten()
}

fn process_runs(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno != nix::errno::Errno::ESRCH,
    }
}

/// Removes `target`'s temporary files whose process no longer runs; returns what it removed.
fn remove_stale_temps(target: &Path) -> Vec<PathBuf> {
    let name = file_name(target);
    let own = std::process::id() as i32;
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_pid(&name, &file_name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if pid > 0 && pid != own && is_file && !process_runs(pid) {
            let path = entry.path();
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed.sort();
    removed
}

/// The path to act on: `path` itself, or where it points when it is a symbolic link
/// (a link is followed, never replaced by a file).
pub fn resolve(path: &Path) -> Result<PathBuf, FsError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)
            .map_err(|e| FsError::new("cannot follow the symbolic link", path, e)),
        _ => Ok(path.to_path_buf()),
    }
}

/// The current content of a regular file, or `None` when it does not exist.
///
/// A directory, a device or a socket is an error; so is a missing parent directory.
pub fn read(path: &Path) -> Result<Option<(Vec<u8>, fs::Metadata)>, FsError> {
    match inspect(path)? {
        None => Ok(None),
        Some(meta) => fs::read(path)
            .map(|bytes| Some((bytes, meta)))
            .map_err(|e| FsError::new("cannot read", path, e)),
    }
}

/// The metadata of a regular file, `None` when it does not exist but could be created, or why
/// it cannot be used.
fn inspect(path: &Path) -> Result<Option<fs::Metadata>, FsError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(FsError::other("cannot use", path, "it is a directory")),
        Ok(meta) if !meta.is_file() => Err(FsError::other(
            "cannot use",
            path,
            "it is not a regular file",
        )),
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let parent = parent_dir(path);
            match fs::metadata(parent) {
                Ok(m) if m.is_dir() => Ok(None),
                Ok(_) => Err(FsError::other(
                    "cannot create",
                    path,
                    "its parent is not a directory",
                )),
                Err(_) => Err(FsError::other(
                    "cannot create",
                    path,
                    "its parent directory does not exist",
                )),
            }
        }
        Err(e) => Err(FsError::new("cannot inspect", path, e)),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file next to the target, removed on drop unless kept.
struct Temp {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl Temp {
    fn create(target: &Path) -> Result<Temp, FsError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = file_name(target);
        let path = parent_dir(target).join(format!(
            ".{name}.matrix-ha.{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| FsError::new("cannot create a temporary file next to", target, e))?;
        Ok(Temp {
            path,
            file,
            keep: false,
        })
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `content` to the locked target safely (see the module docs); `current` is what
/// [`read`] returned for it under the same lock.
pub fn write(
    lock: &Locked,
    content: &[u8],
    current: Option<&(Vec<u8>, fs::Metadata)>,
    opts: &WriteOptions,
) -> Result<Written, FsError> {
    let path = lock.path();
    let meta = current.map(|(_, m)| m);
    let backup_file = match (opts.backup, current) {
        (true, Some((old, old_meta))) => Some(backup(path, old, old_meta)?),
        _ => None,
    };

    let mut temp = Temp::create(path)?;
    temp.file
        .write_all(content)
        .and_then(|_| opts.attrs.apply(&temp.file, meta, opts.default_mode))
        .and_then(|_| temp.file.sync_all())
        .map_err(|e| FsError::new("cannot write a temporary file next to", path, e))?;

    match fs::rename(&temp.path, path) {
        Ok(()) => {
            temp.keep = true; // it is the target now
            sync_dir(path)?;
            Ok(Written {
                method: Method::Renamed,
                backup_file,
            })
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
            let old = current
                .map(|(bytes, _)| bytes.as_slice())
                .unwrap_or_default();
            temp.keep = true; // the full new content survives a crash during the rewrite
            rewrite_in_place(path, content, old, opts, meta)?;
            temp.keep = false;
            Ok(Written {
                method: Method::InPlace,
                backup_file,
            })
        }
        Err(e) => Err(FsError::new(
            "cannot rename the temporary file over",
            path,
            e,
        )),
    }
}

fn rewrite_in_place(
    path: &Path,
    content: &[u8],
    old: &[u8],
    opts: &WriteOptions,
    meta: Option<&fs::Metadata>,
) -> Result<(), FsError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| FsError::new("cannot open for an in-place rewrite", path, e))?;
    if content.len() > old.len() {
        let len = i64::try_from(content.len()).unwrap_or(i64::MAX);
        match nix::fcntl::posix_fallocate(&file, 0, len) {
            Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => {}
            Err(errno) => {
                return Err(FsError::new(
                    "cannot reserve space (nothing was changed) in",
                    path,
                    io::Error::from(errno),
                ))
            }
        }
    }
    let written = file
        .write_all_at(content, 0)
        .and_then(|_| file.set_len(content.len() as u64))
        .and_then(|_| opts.attrs.apply(&file, meta, opts.default_mode))
        .and_then(|_| file.sync_all());
    if let Err(e) = written {
        let restored = file
            .write_all_at(old, 0)
            .and_then(|_| file.set_len(old.len() as u64))
            .and_then(|_| file.sync_all());
        let action = if restored.is_ok() {
            "cannot rewrite in place (the old content was put back)"
        } else {
            "cannot rewrite in place, nor put the old content back, in"
        };
        return Err(FsError::new(action, path, e));
    }
    Ok(())
}

fn sync_dir(path: &Path) -> Result<(), FsError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("cannot fsync the directory", dir, e))
}

/// Sets owner, group and mode on an existing file whose content is already right.
pub fn set_attrs(path: &Path, attrs: &Attrs) -> Result<(), FsError> {
    let file = File::open(path).map_err(|e| FsError::new("cannot open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FsError::new("cannot inspect", path, e))?;
    attrs
        .apply(&file, Some(&meta), meta.mode() & 0o7777)
        .map_err(|e| FsError::new("cannot set owner, group or mode of", path, e))
}

/// Copies the current content to `PATH.PID.YYYY-MM-DD@HH:MM:SS~` (UTC), as Ansible names
/// backups, with the original's owner, group and mode.
fn backup(path: &Path, old: &[u8], meta: &fs::Metadata) -> Result<PathBuf, FsError> {
    let stamp = utc_stamp(std::time::SystemTime::now());
    let target = PathBuf::from(format!(
        "{}.{}.{stamp}~",
        path.display(),
        std::process::id()
    ));
    let mut temp = Temp::create(&target)?;
    let same = Attrs {
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        mode: Some(meta.mode() & 0o7777),
    };
    temp.file
        .write_all(old)
        .and_then(|_| same.apply(&temp.file, Some(meta), 0o600))
        .and_then(|_| temp.file.sync_all())
        .and_then(|_| fs::rename(&temp.path, &target))
        .map_err(|e| FsError::new("cannot write the backup", &target, e))?;
    temp.keep = true;
    Ok(target)
}

/// `YYYY-MM-DD@HH:MM:SS` in UTC.
fn utc_stamp(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}@{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn opts() -> WriteOptions {
        WriteOptions {
            attrs: Attrs::default(),
            default_mode: 0o644,
            backup: false,
        }
    }

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01@00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(utc_stamp(t), "2026-11-18@11:06:40");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(leap), "2000-02-29@00:00:00");
    }

    #[test]
    fn new_file_gets_default_mode_and_no_temp_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let w = write(&lock(&path).unwrap(), b"a\n", None, &opts()).unwrap();
        assert_eq!(w.method, Method::Renamed);
        assert_eq!(fs::read(&path).unwrap(), b"a\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&".hosts.matrix-ha.lock".to_string()));
        let lock_mode = fs::metadata(dir.path().join(".hosts.matrix-ha.lock"))
            .unwrap()
            .mode();
        assert_eq!(lock_mode & 0o777, 0o600);
    }

    #[test]
    fn existing_mode_is_kept_unless_asked_and_backup_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        fs::write(&path, b"old\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        let current = read(&path).unwrap();
        let mut o = opts();
        o.backup = true;
        let w = write(&lock(&path).unwrap(), b"new\n", current.as_ref(), &o).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        let backup = w.backup_file.unwrap();
        assert_eq!(fs::read(&backup).unwrap(), b"old\n");
        assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o7777, 0o640);
        assert!(backup.to_string_lossy().ends_with('~'));

        let current = read(&path).unwrap();
        o.backup = false;
        o.attrs.mode = Some(0o600);
        write(&lock(&path).unwrap(), b"newer\n", current.as_ref(), &o).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn read_refuses_directories_and_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("it is a directory"), "{err}");
        let err = read(&dir.path().join("nope/hosts"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("parent directory does not exist"), "{err}");
        assert!(read(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn symlinks_are_followed_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        fs::write(&real, b"x").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let target = resolve(&link).unwrap();
        let current = read(&target).unwrap();
        write(&lock(&target).unwrap(), b"y", current.as_ref(), &opts()).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"y");
    }

    #[test]
    fn concurrent_read_modify_writes_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list");
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let held = lock(&path).unwrap();
                    let current = read(&path).unwrap();
                    let mut text = current.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    text.extend_from_slice(format!("line {i}\n").as_bytes());
                    write(&held, &text, current.as_ref(), &opts()).unwrap();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = fs::read_to_string(&path).unwrap();
        for i in 0..20 {
            assert!(
                text.contains(&format!("line {i}\n")),
                "line {i} lost:\n{text}"
            );
        }
        assert_eq!(text.lines().count(), 20);
    }

    #[test]
    fn stale_temporary_files_are_removed_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        fs::write(&path, b"x\n").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = [
            format!(".hosts.matrix-ha.{dead}.0.tmp"),
            format!(".hosts.{dead}.2026-11-24@10:00:00~.matrix-ha.{dead}.3.tmp"),
        ];
        let kept = [
            ".hosts.matrix-ha.1.0.tmp".to_string(), // pid 1 runs
            format!(".other.matrix-ha.{dead}.0.tmp"),
            format!(".hosts.matrix-ha.{dead}.x.tmp"),
            format!("hosts.matrix-ha.{dead}.0.tmp"),
        ];
        for name in stale.iter().chain(&kept) {
            fs::write(dir.path().join(name), b"new content\n").unwrap();
        }
        let held = lock(&path).unwrap();
        let mut removed: Vec<String> = held
            .removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        let mut want = stale.to_vec();
        want.sort();
        assert_eq!(removed, want);
        for name in &stale {
            assert!(!dir.path().join(name).exists(), "{name}");
        }
        for name in &kept {
            assert!(dir.path().join(name).exists(), "{name}");
        }
        assert!(held.notes()[0].contains("left by an interrupted earlier run"));
    }

    #[test]
    fn in_place_rewrite_shrinks_and_grows_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"0123456789\n").unwrap();
        rewrite_in_place(&path, b"ab\n", b"0123456789\n", &opts(), None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ab\n");
        rewrite_in_place(&path, b"a much longer line\n", b"ab\n", &opts(), None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a much longer line\n");
    }

    #[test]
    fn unknown_owner_and_group_are_named() {
        assert_eq!(
            Attrs::resolve(Some("no-such-user-xyz"), None, None),
            Err(AttrError::NoSuchUser("no-such-user-xyz".into()))
        );
        assert_eq!(
            Attrs::resolve(None, Some("no-such-group-xyz"), None),
            Err(AttrError::NoSuchGroup("no-such-group-xyz".into()))
        );
        assert_eq!(
            Attrs::resolve(Some("0"), Some("0"), None).unwrap().uid,
            Some(0)
        );
    }
}
