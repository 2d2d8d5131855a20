//! The molecule scenarios, in containers of the project's own image (scripts/build-image):
//! create → converge → idempotence → check mode → verify → destroy. Molecule's idempotence step
//! fails on any change by itself; its check step does not, so this test reads the recap of the
//! check phase and requires changed=0 on every host.

use std::process::Command;
use std::sync::Mutex;

use matrix_ha_tests::{collection, mdad_dir, root, venv_tool};

/// One scenario with a PostgreSQL cluster at a time (site, database): two would share two cores
/// with six PostgreSQL servers. The small scenarios (hosts, minio, calls) run one at a time beside
/// it: they finish while the site converges, which is mostly waiting on its containers.
static CLUSTER_SCENARIO: Mutex<()> = Mutex::new(());
static SMALL_SCENARIO: Mutex<()> = Mutex::new(());

/// The lock `scenario` runs under.
fn scenario_lock(scenario: &str) -> std::sync::MutexGuard<'static, ()> {
    let lock = match scenario {
        "site" | "database" => &CLUSTER_SCENARIO,
        _ => &SMALL_SCENARIO,
    };
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `molecule test -s SCENARIO` and returns its output (colour off). Passwords the scenario
/// generates go to a directory of this run (MATRIX_HA_TEST_SECRETS), removed afterwards.
fn molecule_test(scenario: &str) -> String {
    molecule_test_with(scenario, &[])
}

/// [`molecule_test`] with more environment variables for the scenario.
fn molecule_test_with(scenario: &str, env: &[(&str, String)]) -> String {
    let _one = scenario_lock(scenario);
    let molecule = Molecule::new(env);
    let (ok, text) = molecule.run(&["test", "-s", scenario], &[]);
    assert!(ok, "molecule test -s {scenario} failed:\n{text}");
    text
}

/// Molecule with the project's image and this run's secrets directory (removed afterwards).
struct Molecule {
    secrets: tempfile::TempDir,
    image: String,
    env: Vec<(String, String)>,
}

impl Molecule {
    /// Builds the image when missing.
    fn new(env: &[(&str, String)]) -> Self {
        let secrets = tempfile::Builder::new()
            .prefix("matrix-ha-secrets")
            .tempdir()
            .unwrap();
        let image = Command::new(collection().join("scripts/build-image"))
            .output()
            .unwrap();
        assert!(
            image.status.success(),
            "{}",
            String::from_utf8_lossy(&image.stderr)
        );
        Molecule {
            secrets,
            image: String::from_utf8(image.stdout).unwrap().trim().to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Runs `molecule ARGS` with `extra` in the environment: (succeeded, output without colour).
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (bool, String) {
        let root = collection();
        let venv_bin = venv_tool("molecule").parent().unwrap().to_path_buf();
        // One stream, in order: molecule logs its steps on stderr, Ansible's recaps go to stdout.
        let out = Command::new("sh")
            .args(["-c", r#"exec "$0" "$@" 2>&1"#])
            .arg(venv_bin.join("molecule"))
            .args(args)
            .current_dir(root)
            .env("MATRIX_HA_TEST_IMAGE", &self.image)
            .env("MATRIX_HA_TEST_SECRETS", self.secrets.path())
            .env("ANSIBLE_CONFIG", root.join("ansible.cfg"))
            .env("ANSIBLE_COLLECTIONS_PATH", root.join(".collections"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    venv_bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied())
            .env("NO_COLOR", "1")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .output()
            .expect("molecule runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), plain(&text))
    }

    /// Runs `molecule STEP -s SCENARIO`, failing the test with its output when it fails.
    fn step(&self, step: &str, scenario: &str, extra: &[(&str, &str)]) -> String {
        let (ok, text) = self.run(&[step, "-s", scenario], extra);
        assert!(
            ok,
            "molecule {step} -s {scenario} failed:\n{}\n---- what failed ----\n{}",
            without_retries(&text),
            what_failed(&text)
        );
        text
    }
}

/// Destroys a scenario's containers when dropped, whether the test passed or not.
struct Destroy<'a>(&'a Molecule, &'a str);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let (ok, text) = self.0.run(&["destroy", "-s", self.1], &[]);
        if !ok {
            eprintln!("molecule destroy -s {} failed:\n{text}", self.1);
        }
    }
}

/// `text` with each run of Ansible's "FAILED - RETRYING" lines of one task folded into its first
/// line and a count, so that a long wait does not push the failure out of a truncated log.
fn without_retries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut folded = 0usize;
    for line in text.lines() {
        if line.starts_with("FAILED - RETRYING") {
            if folded == 0 {
                out.push_str(line);
                out.push('\n');
            }
            folded += 1;
            continue;
        }
        if folded > 1 {
            out.push_str(&format!("(retried {folded} times in all)\n"));
        }
        folded = 0;
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Each failed Ansible task of `text`: its TASK line and the lines of its failure, so that the
/// end of a failed step's message names what failed.
fn what_failed(text: &str) -> String {
    let mut out = String::new();
    let mut task = "";
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("TASK [") {
            task = line;
        } else if line.starts_with("fatal:") || line.starts_with("failed:") {
            out.push_str(task);
            out.push('\n');
            out.push_str(line);
            out.push('\n');
            // A failure's message may run over several lines until the next blank line.
            while let Some(next) = lines.next_if(|l| !l.trim().is_empty()) {
                out.push_str(next);
                out.push('\n');
            }
        } else if line.starts_with("ERROR") || line.starts_with("CRITICAL") {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        "(no failed task in the output)".to_string()
    } else {
        out
    }
}

/// Text without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `line` is molecule's log line for `step` in `state` ("Executing", "Executed").
/// Molecule writes `[scenario > step] Executing`, or `scenario ➜ step: Executing` in colour.
fn is_step(line: &str, step: &str, state: &str) -> bool {
    line.contains(state)
        && (line.contains(&format!("> {step}]")) || line.contains(&format!("➜ {step}:")))
}

/// The PLAY RECAP lines printed during one molecule step.
fn recap_of(output: &str, step: &str) -> Vec<String> {
    output
        .lines()
        .skip_while(|l| !is_step(l, step, "Executing"))
        .take_while(|l| !is_step(l, step, "Executed"))
        .filter(|l| l.contains(" : ok="))
        .map(|l| {
            l.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

/// Asserts every step in `steps` ran successfully in `output`.
fn assert_steps_succeeded(output: &str, steps: &[&str]) {
    for step in steps {
        assert!(
            output
                .lines()
                .any(|l| is_step(l, step, "Executed: Successful")),
            "{step} did not run:\n{output}"
        );
    }
}

/// Asserts the check step's recap has `hosts` lines, all with changed=0.
fn assert_check_quiet(output: &str, hosts: usize) {
    let check = recap_of(output, "check");
    assert_eq!(check.len(), hosts, "{check:?}");
    assert!(
        check.iter().all(|l| l.contains("changed=0")),
        "check mode on converged hosts: {check:?}"
    );
}

#[test]
fn hosts_scenario_names_resolve_between_containers() {
    assert!(root().join("molecule/hosts/molecule.yml").exists());
    let output = plain(&molecule_test("hosts"));
    assert_steps_succeeded(&output, &["converge", "idempotence", "check", "verify"]);
    let converge = recap_of(&output, "converge");
    assert_eq!(converge.len(), 3, "{converge:?}");
    assert!(
        converge.iter().all(|l| l.contains("changed=1")),
        "{converge:?}"
    );
    assert_check_quiet(&output, 3);
    assert!(
        output.contains("is a mount point"),
        "/etc/hosts was written in place through Docker's bind mount"
    );
}

#[test]
fn minio_scenario_lays_out_one_pool_on_four_containers() {
    assert!(root().join("molecule/minio/molecule.yml").exists());
    let output = plain(&molecule_test("minio"));
    assert_steps_succeeded(&output, &["converge", "idempotence", "check", "verify"]);
    // A fresh node: the host map, the group, the user, the drive directory, the env file, the unit.
    let converge = recap_of(&output, "converge");
    assert_eq!(converge.len(), 4, "{converge:?}");
    assert!(
        converge.iter().all(|l| l.contains("changed=6")),
        "{converge:?}"
    );
    assert_check_quiet(&output, 4);
    assert!(
        output.contains("MINIO_VOLUMES=http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk1/minio"),
        "the role shows the one pool of the four nodes"
    );
    assert!(
        output.contains("The MinIO binary was not given"),
        "the role says why the service is not started"
    );
}

#[test]
#[ignore = "the site scenario covers it in the test command: the same plays on the same six-container topology, this scenario's verify.yml imported, and its drill (primary killed, VIP holder's HAProxy stopped, old primary back, an etcd member away) with the real Synapse; both would take the suite past its 45 minutes on 2 cores. Run it with --ignored"]
fn database_scenario_reaches_the_primary_through_the_vip_and_survives_the_ha_drill() {
    assert!(root().join("molecule/database/molecule.yml").exists());
    let output = plain(&molecule_test("database"));
    assert_steps_succeeded(
        &output,
        &[
            "prepare",
            "converge",
            "idempotence",
            "check",
            "verify",
            "side_effect",
        ],
    );
    // Six containers and the controller (the MDAD play says MDAD is missing).
    let converge = recap_of(&output, "converge");
    assert_eq!(converge.len(), 7, "{converge:?}");
    assert!(
        converge
            .iter()
            .filter(|l| l.starts_with("mh-db-"))
            .all(|l| !l.contains("changed=0") && l.contains("failed=0")),
        "{converge:?}"
    );
    assert_check_quiet(&output, 7);
    assert!(
        output.contains("matrix-docker-ansible-deploy was not found"),
        "site.yml says how to add MDAD"
    );
    // The HA drill (side_effect.yml) ran its bounded steps and asserted them; its figures.
    let drill = output
        .lines()
        .find_map(|l| l.split_once("\"msg\": \"HA drill: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no HA drill figures:\n{output}"));
    eprintln!("HA drill: {}", drill.trim_end_matches('"'));
    assert!(drill.contains(", rows lost 0;"), "{drill}");
    // After the drill: converge (Docker rewrote the restarted container's /etc/hosts), then an
    // idempotent run and verify again.
    let after = output
        .lines()
        .skip_while(|l| !is_step(l, "side_effect", "Executed"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_steps_succeeded(&after, &["converge", "idempotence", "verify"]);
}

/// The project's images for MDAD (scripts/build-mdad-images, built when missing) saved into one
/// archive: (archive, Synapse tag, Valkey tag). The archive is the script's cache.
fn mdad_images(dir: &std::path::Path) -> (String, String, String) {
    let archive = dir.join("mdad-images.tar");
    let out = Command::new(root().join("scripts/build-mdad-images"))
        .arg("--save")
        .arg(&archive)
        .output()
        .expect("scripts/build-mdad-images runs");
    assert!(
        out.status.success(),
        "scripts/build-mdad-images failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let find = |prefix: &str| {
        tags.iter()
            .find(|t| t.starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no {prefix} tag in {tags:?}"))
    };
    (
        archive.display().to_string(),
        find("matrix-ha/synapse:"),
        find("matrix-ha/valkey:"),
    )
}

#[test]
fn site_scenario_runs_our_plays_and_mdad_and_users_chat_through_the_vip() {
    let _one = scenario_lock("site");
    let mdad = mdad_dir();
    let dir = tempfile::tempdir().unwrap();
    let (archive, synapse, valkey) = mdad_images(dir.path());
    let molecule = Molecule::new(&[
        ("MATRIX_HA_MDAD_DIR", mdad.display().to_string()),
        ("MATRIX_HA_MDAD_IMAGES", archive),
        ("MATRIX_HA_SYNAPSE_IMAGE", synapse),
        ("MATRIX_HA_VALKEY_IMAGE", valkey),
    ]);
    let _destroy = Destroy(&molecule, "site");
    let ours = [("MATRIX_HA_SITE_TAGS", "matrix-ha")];
    molecule.step("destroy", "site", &[]);
    molecule.step("create", "site", &[]);
    molecule.step("prepare", "site", &[]);
    let started = std::time::Instant::now();
    let first = molecule.step("converge", "site", &[]);
    let first_s = started.elapsed().as_secs();
    let recap = recap_of(&first, "converge");
    assert_eq!(recap.len(), 7, "{recap:?}");
    assert!(recap.iter().all(|l| l.contains("failed=0")), "{recap:?}");

    // What the users see (verify.yml asserts it), then the figures.
    let verify = molecule.step("verify", "site", &[]);
    let users = verify
        .lines()
        .find_map(|l| l.split("MATRIX USERS ").nth(1))
        .expect("verify prints what the users saw")
        .trim_end_matches('"')
        .to_string();

    // A second run of our plays changes nothing, in check mode too.
    let started = std::time::Instant::now();
    let again = molecule.step("converge", "site", &ours);
    let again_s = started.elapsed().as_secs();
    let recap = recap_of(&again, "converge");
    assert_eq!(recap.len(), 7, "{recap:?}");
    assert!(
        recap.iter().all(|l| l.contains("changed=0")),
        "a second run of our plays: {recap:?}"
    );
    let check = molecule.step("check", "site", &ours);
    let recap = recap_of(&check, "check");
    assert!(
        recap.iter().all(|l| l.contains("changed=0")),
        "check mode on the converged site: {recap:?}"
    );

    // A second whole run (ours and MDAD's): the hosts MDAD does not touch change nothing; MDAD's
    // own count on the Synapse host is reported. About 380 s on 2 cores, so the test command
    // leaves it out (our plays' second run above is the idempotence check); set
    // MATRIX_HA_SITE_WHOLE_RUN_AGAIN=1 to run it.
    let whole_again = std::env::var("MATRIX_HA_SITE_WHOLE_RUN_AGAIN").is_ok_and(|v| v == "1");
    let whole = if whole_again {
        let started = std::time::Instant::now();
        let output = molecule.step("converge", "site", &[]);
        let whole_s = started.elapsed().as_secs();
        let recap = recap_of(&output, "converge");
        let (synapse_host, others): (Vec<_>, Vec<_>) = recap
            .iter()
            .partition(|l| l.starts_with("mh-site-synapse-1"));
        assert!(
            others.iter().all(|l| l.contains("changed=0")),
            "a second whole run: {recap:?}"
        );
        format!("whole run again {whole_s} s, Synapse host {synapse_host:?}")
    } else {
        "whole run again not asked for (MATRIX_HA_SITE_WHOLE_RUN_AGAIN=1)".to_string()
    };

    // The HA drill with the real Synapse (side_effect.yml asserts it).
    let drill = molecule.step("side-effect", "site", &[]);
    let figures = drill
        .lines()
        .find_map(|l| {
            l.split_once("\"msg\": \"SITE DRILL: ")
                .map(|(_, rest)| rest)
        })
        .unwrap_or_else(|| panic!("no drill figures:\n{drill}"))
        .trim_end_matches('"')
        .to_string();
    // The restore drill that follows it in side_effect.yml (restore_drill.yml asserts it).
    let restore = drill
        .lines()
        .find_map(|l| {
            l.split_once("\"msg\": \"SITE RESTORE: ")
                .map(|(_, rest)| rest)
        })
        .unwrap_or_else(|| panic!("no restore figures:\n{drill}"))
        .trim_end_matches('"')
        .to_string();
    eprintln!(
        "site scenario: first converge {first_s} s; our plays again {again_s} s (changed=0); \
         {whole}\nusers: {users}\ndrill: {figures}\nrestore: {restore}"
    );
}

#[test]
fn calls_scenario_relays_with_secret_derived_credentials_only_to_allowed_peers() {
    assert!(root().join("molecule/calls/molecule.yml").exists());
    let output = plain(&molecule_test("calls"));
    assert_steps_succeeded(&output, &["converge", "idempotence", "check", "verify"]);
    // Converge: the two TURN nodes and the two LiveKit nodes (the first also the TURN checks'
    // client and peer).
    let converge = recap_of(&output, "converge");
    assert_eq!(converge.len(), 4, "{converge:?}");
    assert_check_quiet(&output, 4);
    // Two nodes × (UDP, TLS) relays, two refused allocations, two refused peers; then Redis and
    // the rendered LiveKit configuration from both LiveKit nodes.
    let verify = recap_of(&output, "verify");
    assert_eq!(verify.len(), 2, "{verify:?}");
    assert!(verify.iter().all(|l| l.contains("failed=0")), "{verify:?}");
    assert!(
        output.contains("Relay to the allowed peer through each node, over UDP and over TLS"),
        "the relay checks ran"
    );
    // Molecule wraps long lines: compare the words.
    let words: String = output
        .lines()
        .map(|l| l.trim_start_matches(|c: char| c.is_whitespace() || c == '│'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        words.contains("Redis answers an authenticated PING from every LiveKit node")
            && words.contains("livekit.yaml of each node has the documented keys and values"),
        "the LiveKit checks ran"
    );
    // Without a LiveKit binary the run says so, naming the options that give one.
    assert!(
        words.contains(
            "The LiveKit server binary was not given (livekit_sfu_binary_src or livekit_sfu_binary_url)"
        ),
        "the converge said that no LiveKit binary was given"
    );
}

#[test]
fn a_failed_steps_message_ends_with_the_failed_task_and_folds_retries() {
    let log = "TASK [Wait]\nFAILED - RETRYING: a (3 retries left).\nFAILED - RETRYING: a (2 retries left).\n\
               FAILED - RETRYING: a (1 retries left).\nfatal: [h]: FAILED! => {\"msg\": \"x\"}\n  more\n\n\
               PLAY RECAP\nERROR    Ansible return code was 2\n";
    let folded = without_retries(log);
    assert_eq!(folded.matches("FAILED - RETRYING").count(), 1, "{folded}");
    assert!(folded.contains("(retried 3 times in all)"), "{folded}");
    assert_eq!(
        what_failed(log),
        "TASK [Wait]\nfatal: [h]: FAILED! => {\"msg\": \"x\"}\n  more\nERROR    Ansible return code was 2\n"
    );
}
