//! z3r0d3v.matrix_ha.pgbouncer_tune through real ansible-playbook and ansible-doc on
//! localhost, reading max_connections from a real PostgreSQL the test starts.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::SystemTime;

use matrix_ha_tests::pg::{self, Postgres};
use matrix_ha_tests::Ansible;

const PLAY: &str = r#"
- name: PgBouncer for Synapse
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Size and write PgBouncer
      z3r0d3v.matrix_ha.pgbouncer_tune:
        path: "{{ dir }}/pgbouncer.ini"
        auth_file: "{{ dir }}/userlist.txt"
        app_processes: 24
        app_pool_max: 10
        listen_addr: [10.20.0.21]
        databases:
          - name: synapse
            host: 10.20.0.10
            users: [synapse]
        auth_users:
          - name: synapse
            password: "{{ synapse_password }}"
        admin_password: "{{ admin_password }}"
        login_host: 127.0.0.1
        login_port: "{{ pg_port }}"
        login_user: postgres
        login_password: "{{ pg_password }}"
      register: pgb

    - name: Show the figures
      ansible.builtin.debug:
        msg: "pool {{ pgb.sizing.default_pool_size }} of max_connections {{ pgb.sizing.max_connections }} ({{ pgb.sizing.utilisation_percent }} %), alert at {{ pgb.sizing.alert_threshold }}"
"#;

fn stamp(path: &std::path::Path) -> Option<(Vec<u8>, SystemTime)> {
    Some((
        fs::read(path).ok()?,
        fs::metadata(path).ok()?.modified().ok()?,
    ))
}

struct Setup {
    a: Ansible,
    _server: Postgres,
    synapse_password: String,
    admin_password: String,
    vars: String,
}

fn setup(max_connections: u32) -> Setup {
    let server = Postgres::start(max_connections);
    let a = Ansible::new();
    let synapse_password = pg::password();
    let admin_password = pg::password();
    // Secrets reach Ansible in a 0600 vars file, never on a command line.
    let vars = a.path("vars.json");
    fs::write(
        &vars,
        serde_json::json!({
            "dir": a.dir.path(),
            "pg_port": server.port,
            "pg_password": server.superuser_password,
            "synapse_password": synapse_password,
            "admin_password": admin_password,
        })
        .to_string(),
    )
    .unwrap();
    fs::set_permissions(&vars, fs::Permissions::from_mode(0o600)).unwrap();
    Setup {
        vars: format!("@{}", vars.display()),
        a,
        _server: server,
        synapse_password,
        admin_password,
    }
}

#[test]
fn first_run_changes_second_changes_nothing_check_writes_nothing() {
    let s = setup(330);
    let ini = s.a.path("pgbouncer.ini");
    let users = s.a.path("userlist.txt");

    let check =
        s.a.playbook(PLAY, &["-e", &s.vars, "--check", "--diff"])
            .ok();
    assert_eq!(check.recap("localhost", "changed"), 1);
    assert!(
        check.stdout.contains("+default_pool_size = 240"),
        "{}",
        check.stdout
    );
    assert!(
        stamp(&ini).is_none() && stamp(&users).is_none(),
        "check mode wrote a file"
    );

    let first = s.a.playbook(PLAY, &["-e", &s.vars]).ok();
    assert_eq!(first.recap("localhost", "changed"), 1);
    assert!(
        first
            .stdout
            .contains("pool 240 of max_connections 330 (72.7 %), alert at 212"),
        "{}",
        first.stdout
    );
    let text = fs::read_to_string(&ini).unwrap();
    assert!(text.contains("max_client_conn = 480\n"), "{text}");
    for file in [&ini, &users] {
        let meta = fs::metadata(file).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        let (_, gid) = pg::postgres_ids();
        assert_eq!(meta.gid(), gid, "group postgres");
    }
    let all = format!(
        "{}{}{}{text}",
        first.stdout,
        first.stderr,
        fs::read_to_string(&users).unwrap()
    );
    assert!(!all.contains(&s.synapse_password) && !all.contains(&s.admin_password));

    let converged = (stamp(&ini), stamp(&users));
    let second = s.a.playbook(PLAY, &["-e", &s.vars]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
    let check_again = s.a.playbook(PLAY, &["-e", &s.vars, "--check"]).ok();
    assert_eq!(check_again.recap("localhost", "changed"), 0);
    assert_eq!((stamp(&ini), stamp(&users)), converged);
}

#[test]
fn a_pool_that_cannot_fit_fails_the_play_with_the_fix() {
    let s = setup(200);
    let run = s.a.playbook(PLAY, &["-e", &s.vars]);
    assert!(!run.success);
    assert_eq!(run.recap("localhost", "failed"), 1);
    assert!(
        run.stdout
            .contains("option 'max_connections': value 200 is too small"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("raise max_connections to 274 at least"));
    assert!(!s.a.path("pgbouncer.ini").exists());
}

#[test]
fn ansible_doc_shows_the_formula() {
    let a = Ansible::new();
    let out = a
        .command("ansible-doc")
        .arg("z3r0d3v.matrix_ha.pgbouncer_tune")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("app_processes"));
    assert!(text.contains("max_db_connections"));
    assert!(text.contains("on_new_connection"));
}
