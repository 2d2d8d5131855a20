//! The native modules' fast path (plugins/action/native.py) over a real SSH connection to an
//! sshd the test starts on 127.0.0.1: one round trip per cached task, verified uploads, and
//! results identical to the plain binary-module path.

use std::fs;
use std::path::{Path, PathBuf};

use matrix_ha_tests::{collection, Ansible, Run, Sshd};
use serde_json::Value;

const STOCK: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tpatroni-1.chat.z3r0d3v.com\tpatroni-1\n";

const THREE_TASKS: &str = r#"
- name: Fast path
  hosts: target
  gather_facts: false
  tasks:
    - name: first
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: one
        entries: [{ip: 10.20.0.31, names: [patroni-1.chat.z3r0d3v.com, patroni-1]}]
    - name: second
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: two
        entries: [{ip: 10.20.0.32, names: [patroni-2.chat.z3r0d3v.com, patroni-2]}]
    - name: third
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: three
        entries: [{ip: 10.20.0.33, names: [patroni-3.chat.z3r0d3v.com, patroni-3]}]
"#;

struct Bed {
    // Dropped in this order: the SSH masters stop, then the server.
    ansible: Ansible,
    _sshd: Sshd,
    inventory: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let ansible = Ansible::new();
        let sshd = Sshd::start();
        let inventory = sshd.inventory();
        let bed = Bed {
            ansible,
            _sshd: sshd,
            inventory,
        };
        fs::write(bed.hosts_file(), STOCK).unwrap();
        bed
    }
    fn hosts_file(&self) -> PathBuf {
        self.ansible.path("hosts")
    }
    fn cache(&self) -> PathBuf {
        self.ansible.path("cache")
    }
    fn cached_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.cache())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
    fn play(&self, yaml: &str, extra: &[&str]) -> Run {
        let book = self.ansible.path("play.yml");
        fs::write(&book, yaml).unwrap();
        let mut args: Vec<String> = vec![
            "-i".into(),
            self.inventory.display().to_string(),
            "-e".into(),
            format!("hosts_file={}", self.hosts_file().display()),
            "-e".into(),
            format!("matrix_ha_remote_cache={}", self.cache().display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ansible.run_playbook(&book, &refs)
    }
}

/// SSH round trips per task, counted from -vvv output: every `ssh` command and every file
/// transfer (`sftp`/`scp`) is one.
fn round_trips(run: &Run) -> Vec<(String, usize, usize)> {
    let mut tasks: Vec<(String, usize, usize)> = Vec::new();
    for line in run.stdout.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            tasks.push((rest.split(']').next().unwrap_or_default().to_string(), 0, 0));
        } else if let Some(task) = tasks.last_mut() {
            if line.contains("SSH: EXEC ssh ") {
                task.1 += 1;
            } else if line.contains("SSH: EXEC sftp ") || line.contains("SSH: EXEC scp ") {
                task.1 += 1;
                task.2 += 1;
            }
        }
    }
    tasks
}

#[test]
fn first_task_uploads_once_then_every_task_is_one_round_trip() {
    let bed = Bed::new();
    let first = bed.play(THREE_TASKS, &["-vvv"]).ok();
    let trips = round_trips(&first);
    assert_eq!(trips.len(), 3, "{trips:?}");
    let (_, uploads_first, transfers) = &trips[0];
    assert_eq!(*transfers, 1, "one upload: {trips:?}");
    assert!(*uploads_first <= 6, "first task: {trips:?}");
    for (name, execs, transfers) in &trips[1..] {
        assert_eq!((*execs, *transfers), (1, 0), "task {name}: {trips:?}");
    }
    assert_eq!(first.recap("target", "changed"), 3);
    let cached = bed.cached_files();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with("etc_hosts-"));

    let second = bed.play(THREE_TASKS, &["-vvv"]).ok();
    for (name, execs, transfers) in round_trips(&second) {
        assert_eq!((execs, transfers), (1, 0), "task {name} on a warm cache");
    }
    assert_eq!(second.recap("target", "changed"), 0);
    let content = fs::read_to_string(bed.hosts_file()).unwrap();
    assert!(
        content.contains("10.20.0.33\tpatroni-3.chat.z3r0d3v.com patroni-3\n"),
        "{content}"
    );
}

#[test]
fn cache_is_private_and_named_by_sha256() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new();
    bed.play(THREE_TASKS, &[]).ok();
    let mode = fs::metadata(bed.cache()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let file = bed.cache().join(&bed.cached_files()[0]);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let binary = collection().join("plugins/modules/etc_hosts");
    let digest = sha256(&binary);
    assert_eq!(bed.cached_files(), vec![format!("etc_hosts-{digest}")]);
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn a_tampered_cached_file_is_never_run_and_is_replaced() {
    let bed = Bed::new();
    bed.play(THREE_TASKS, &[]).ok();
    let cached = bed.cache().join(&bed.cached_files()[0]);
    let witness = bed.ansible.path("tampered-binary-ran");
    fs::write(
        &cached,
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"changed\": false}}'\n",
            witness.display()
        ),
    )
    .unwrap();
    let run = bed.play(THREE_TASKS, &["-vvv"]).ok();
    assert!(!witness.exists(), "the tampered file was executed");
    let trips = round_trips(&run);
    assert_eq!(trips[0].2, 1, "re-uploaded: {trips:?}");
    assert_eq!(
        sha256(&cached),
        sha256(&collection().join("plugins/modules/etc_hosts"))
    );
}

#[test]
fn a_new_binary_is_uploaded_and_the_old_one_removed() {
    let bed = Bed::new();
    bed.play(THREE_TASKS, &[]).ok();
    let old = bed.cached_files();

    // A copy of the collection whose binary differs by a few trailing bytes (it still runs).
    let copy = bed
        .ansible
        .path("other/ansible_collections/z3r0d3v/matrix_ha");
    for dir in ["plugins/modules", "plugins/action", "meta"] {
        fs::create_dir_all(copy.join(dir)).unwrap();
    }
    for file in [
        "plugins/modules/etc_hosts",
        "plugins/modules/etc_hosts.yml",
        "plugins/action/native.py",
        "meta/runtime.yml",
        "galaxy.yml",
    ] {
        fs::copy(collection().join(file), copy.join(file)).unwrap();
    }
    let mut bytes = fs::read(copy.join("plugins/modules/etc_hosts")).unwrap();
    bytes.extend_from_slice(b"matrix-ha new version");
    fs::write(copy.join("plugins/modules/etc_hosts"), bytes).unwrap();

    let book = bed.ansible.path("play.yml");
    fs::write(&book, THREE_TASKS).unwrap();
    let out = bed
        .ansible
        .command("ansible-playbook")
        .env("ANSIBLE_COLLECTIONS_PATH", bed.ansible.path("other"))
        .arg(&book)
        .args(["-vvv", "-i"])
        .arg(&bed.inventory)
        .arg("-e")
        .arg(format!("hosts_file={}", bed.hosts_file().display()))
        .arg("-e")
        .arg(format!("matrix_ha_remote_cache={}", bed.cache().display()))
        .output()
        .unwrap();
    let run = Run::from(out).ok();
    assert_eq!(round_trips(&run)[0].2, 1, "the new version was uploaded");
    let now = bed.cached_files();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, old, "the old version was removed");
    assert_eq!(
        now[0],
        format!(
            "etc_hosts-{}",
            sha256(&copy.join("plugins/modules/etc_hosts"))
        )
    );
}

/// The task results of a run, from the JSON callback.
fn results(run: &Run) -> Vec<Value> {
    let start = run.stdout.find('{').expect("JSON callback output");
    let doc: Value = serde_json::from_str(&run.stdout[start..]).expect("one JSON document");
    doc["plays"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let mut r = t["hosts"]["target"].clone();
            if let Some(map) = r.as_object_mut() {
                map.remove("backup_file"); // holds a process id and a time
            }
            r
        })
        .collect()
}

#[test]
fn results_are_the_plain_modules_in_every_mode() {
    let play = r#"
- name: Modes
  hosts: target
  gather_facts: false
  tasks:
    - name: change with a diff and a backup
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        backup: true
        entries: [{ip: 10.20.0.10, names: [chat.z3r0d3v.com]}]
    - name: nothing to do
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        entries: [{ip: 10.20.0.10, names: [chat.z3r0d3v.com]}]
    - name: check mode
      check_mode: true
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        state: absent
    - name: hidden
      no_log: true
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        entries: [{ip: 10.20.0.11, names: [chat.z3r0d3v.com]}]
    - name: bad input
      ignore_errors: true
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        entries: [{ip: 10.20.0.300, names: [chat.z3r0d3v.com]}]
    - name: become
      become: true
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: become
        entries: [{ip: 10.20.0.12, names: [become.chat.z3r0d3v.com]}]
"#;
    let bed = Bed::new();
    let json = ["--diff"];
    let run_with = |fast: bool| {
        fs::write(bed.hosts_file(), STOCK).unwrap();
        let out = bed
            .ansible
            .command("ansible-playbook")
            .env("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
            .arg({
                let book = bed.ansible.path("modes.yml");
                fs::write(&book, play).unwrap();
                book
            })
            .args(json)
            .arg("-i")
            .arg(&bed.inventory)
            .arg("-e")
            .arg(format!("hosts_file={}", bed.hosts_file().display()))
            .arg("-e")
            .arg(format!("matrix_ha_remote_cache={}", bed.cache().display()))
            .arg("-e")
            .arg(format!("matrix_ha_fast_path={fast}"))
            .output()
            .unwrap();
        let run = Run::from(out).ok();
        (results(&run), fs::read_to_string(bed.hosts_file()).unwrap())
    };
    let (plain, plain_file) = run_with(false);
    let (fast, fast_file) = run_with(true);
    assert_eq!(plain.len(), 6);
    for (i, (p, f)) in plain.iter().zip(&fast).enumerate() {
        assert_eq!(p, f, "task {i} differs between the plain and the fast path");
    }
    assert_eq!(plain_file, fast_file);
    assert_eq!(fast[0]["changed"], true);
    let diff = &fast[0]["diff"];
    let after = diff["after"].as_str().or(diff[0]["after"].as_str());
    assert!(
        after.unwrap().contains("10.20.0.10\tchat.z3r0d3v.com"),
        "{diff}"
    );
    assert_eq!(fast[1]["changed"], false);
    assert_eq!(fast[2]["changed"], true);
    assert!(fast[3]["censored"].as_str().unwrap().contains("no_log"));
    assert_eq!(fast[4]["failed"], true);
    assert!(fast[4]["msg"]
        .as_str()
        .unwrap()
        .contains("option 'entries[0].ip'"));
    assert_eq!(fast[5]["changed"], true);
    assert!(!bed.cached_files().is_empty(), "the fast path ran");
}

#[test]
fn async_and_delegation_work() {
    let play = r#"
- name: Async and delegation
  hosts: target
  gather_facts: false
  tasks:
    - name: async
      async: 30
      poll: 1
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: async
        entries: [{ip: 10.20.0.41, names: [minio-1.chat.z3r0d3v.com]}]
    - name: delegated to the controller
      delegate_to: localhost
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_file }}"
        marker: delegated
        entries: [{ip: 10.20.0.42, names: [minio-2.chat.z3r0d3v.com]}]
"#;
    let bed = Bed::new();
    let run = bed.play(play, &["-vvv"]).ok();
    assert!(
        run.stdout.contains(
            "matrix_ha: running z3r0d3v.matrix_ha.etc_hosts as a plain binary module: async task"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.recap("target", "changed"), 2);
    let content = fs::read_to_string(bed.hosts_file()).unwrap();
    assert!(content.contains("10.20.0.41\tminio-1.chat.z3r0d3v.com\n"));
    assert!(content.contains("10.20.0.42\tminio-2.chat.z3r0d3v.com\n"));
}

#[test]
fn an_architecture_we_do_not_ship_fails_clearly() {
    // The local connection runs commands with the controller's PATH: put a uname first on it
    // that reports another machine.
    let a = Ansible::new();
    let fake = a.path("fakebin");
    fs::create_dir_all(&fake).unwrap();
    let uname = fake.join("uname");
    fs::write(&uname, "#!/bin/sh\necho aarch64\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&uname, fs::Permissions::from_mode(0o755)).unwrap();
    let hosts = a.path("hosts");
    fs::write(&hosts, STOCK).unwrap();
    let out = a
        .command("ansible")
        .env(
            "PATH",
            format!(
                "{}:{}",
                fake.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args(["localhost", "-m", "z3r0d3v.matrix_ha.etc_hosts", "-a"])
        .arg(format!(
            "path={} entries=[] matrix_ha_remote_cache={}",
            hosts.display(),
            a.path("cache").display()
        ))
        .output()
        .unwrap();
    let run = Run::from(out);
    assert!(!run.success);
    assert!(
        run.stdout
            .contains("z3r0d3v.matrix_ha ships binaries for x86_64; the target is aarch64"),
        "{}",
        run.stdout
    );
    assert_eq!(fs::read_to_string(&hosts).unwrap(), STOCK);
}

/// A cache directory that another user could change (a component writable by others without
/// the sticky bit, or owned by another user) is refused before anything is copied into it or
/// run from it: the task runs on the plain path, with a warning naming the component. The
/// test bed itself lives under /tmp (sticky, root's), which is accepted.
#[test]
fn a_cache_directory_another_user_could_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let bed = Bed::new();
    let nobody = 65534; // Debian's nobody
    for (what, mode, owner) in [
        ("world-writable", 0o777, None),
        ("group-writable", 0o770, None),
        ("owned by nobody", 0o755, Some(nobody)),
    ] {
        let shared = bed.ansible.path(&what.replace(' ', "-"));
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&shared, Some(uid), Some(uid)).unwrap();
        }
        let cache = shared.join("cache");
        let cache_var = format!("matrix_ha_remote_cache={}", cache.display());
        fs::write(bed.hosts_file(), STOCK).unwrap();
        let run = bed.play(THREE_TASKS, &["-e", &cache_var]).ok();
        let output = format!("{}{}", run.stdout, run.stderr);
        // Ansible wraps warnings: compare without white space.
        let flat: String = output.split_whitespace().collect();
        assert!(
            flat.contains("theremotecachedirectoryisnotprivate")
                && flat.contains(&shared.display().to_string()),
            "{what}: no warning naming {}:\n{output}",
            shared.display()
        );
        let hosts = fs::read_to_string(bed.hosts_file()).unwrap();
        for marker in ["one", "two", "three"] {
            assert!(
                hosts.contains(&format!("# BEGIN z3r0d3v.matrix_ha.etc_hosts {marker}\n")),
                "{what}: the plain path did not run the task:\n{hosts}"
            );
        }
        let cached: Vec<_> = fs::read_dir(&cache)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            cached.is_empty(),
            "{what}: something was cached: {cached:?}"
        );
    }
}

/// A second user on the target, made for one test: a home of its own, passwordless sudo, the
/// test server's key; removed (user and sudoers file) when dropped.
struct SecondUser {
    name: String,
    _dir: tempfile::TempDir,
    home: PathBuf,
    sudoers: PathBuf,
}

impl SecondUser {
    fn create() -> SecondUser {
        use std::os::unix::fs::PermissionsExt;
        let name = format!("mxha{}", matrix_ha_tests::patroni::random_hex(3));
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        let out = std::process::Command::new("useradd")
            // "*": no password, but not locked (sshd refuses key logins to a locked account).
            .args(["-M", "-p", "*", "-s", "/bin/sh", "-d"])
            .arg(&home)
            .arg(&name)
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/{name}"));
        let user = SecondUser {
            name,
            _dir: dir,
            home,
            sudoers,
        };
        fs::create_dir(&user.home).unwrap();
        let status = std::process::Command::new("chown")
            .arg(format!("{0}:{0}", user.name))
            .arg(&user.home)
            .status()
            .unwrap();
        assert!(status.success());
        fs::write(
            &user.sudoers,
            format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.name),
        )
        .unwrap();
        fs::set_permissions(&user.sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        user
    }
}

impl Drop for SecondUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}

/// The case the issue names: become root while the cache is in the login user's home (as with
/// a sudo that keeps the login user's HOME). The login user could rename a component between
/// the check and the run, so the cache is refused and the task runs on the plain path; the
/// same cache is used, and verified, when the tasks run as that user.
#[test]
fn become_root_never_runs_from_the_login_users_cache() {
    // Made before the bed, so dropped after it: its SSH masters stop first.
    let user = SecondUser::create();
    let bed = Bed::new();
    let inventory = fs::read_to_string(&bed.inventory)
        .unwrap()
        .replace("ansible_user=root", &format!("ansible_user={}", user.name));
    let inventory_file = bed.ansible.path("second-user.ini");
    fs::write(&inventory_file, inventory).unwrap();
    let cache = user.home.join(".cache/z3r0d3v.matrix_ha");
    let hosts = user.home.join("hosts");
    fs::write(&hosts, STOCK).unwrap();
    std::process::Command::new("chown")
        .arg(format!("{0}:{0}", user.name))
        .arg(&hosts)
        .status()
        .unwrap();
    let play = |become_root: bool| {
        let book = bed.ansible.path("second-user.yml");
        fs::write(
            &book,
            THREE_TASKS.replace(
                "gather_facts: false",
                &format!("gather_facts: false\n  become: {become_root}"),
            ),
        )
        .unwrap();
        let out = bed
            .ansible
            .command("ansible-playbook")
            // The bed's remote tmp is root's; the login user uploads into its own.
            .env("ANSIBLE_REMOTE_TEMP", user.home.join(".ansible/tmp"))
            .arg("-i")
            .arg(&inventory_file)
            .arg("-e")
            .arg(format!("hosts_file={}", hosts.display()))
            .arg("-e")
            .arg(format!("matrix_ha_remote_cache={}", cache.display()))
            .arg(&book)
            .output()
            .expect("ansible-playbook runs");
        Run::from(out).ok()
    };

    // As the login user: its own cache, accepted and filled.
    let own = play(false);
    let flat: String = format!("{}{}", own.stdout, own.stderr)
        .split_whitespace()
        .collect();
    assert!(!flat.contains("notprivate"), "{}", own.stdout);
    let cached: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with("etc_hosts-"), "{cached:?}");

    // As root through sudo with the login user's cache: refused, run on the plain path.
    fs::write(&hosts, STOCK).unwrap();
    let witness = bed.ansible.path("login-users-binary-ran-as-root");
    fs::write(
        cache.join(&cached[0]),
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"changed\": false}}'\n",
            witness.display()
        ),
    )
    .unwrap();
    let as_root = play(true);
    let flat: String = format!("{}{}", as_root.stdout, as_root.stderr)
        .split_whitespace()
        .collect();
    assert!(
        flat.contains("theremotecachedirectoryisnotprivate")
            && flat.contains(&user.home.display().to_string()),
        "no warning naming {}: {}",
        user.home.display(),
        as_root.stdout
    );
    assert!(
        !witness.exists(),
        "root ran a file from the login user's cache"
    );
    let text = fs::read_to_string(&hosts).unwrap();
    assert!(
        text.contains("# BEGIN z3r0d3v.matrix_ha.etc_hosts three\n"),
        "{text}"
    );
}
