//! z3r0d3v.matrix_ha.patroni_bootstrap through real ansible-playbook on localhost, against a
//! real etcd + three-member Patroni cluster (see `matrix_ha_tests::patroni`).

use std::os::unix::fs::OpenOptionsExt;

use matrix_ha_tests::patroni::Cluster;
use matrix_ha_tests::Ansible;
use serde_json::{json, Value};

const PLAY: &str = r#"
- name: Patroni members
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Configure each member, and once they run wait for the cluster
      z3r0d3v.matrix_ha.patroni_bootstrap:
        config_path: "{{ item.config_path }}"
        scope: "{{ patroni_scope }}"
        name: "{{ item.name }}"
        etcd_hosts: "{{ patroni_etcd_hosts }}"
        listen: "{{ item.listen }}"
        connect_address: "{{ item.connect_address }}"
        restapi_listen: "{{ item.restapi_listen }}"
        data_dir: "{{ item.data_dir }}"
        pg_hba_networks: "{{ item.pg_hba_networks }}"
        superuser_password: "{{ patroni_superuser_password }}"
        replication_password: "{{ patroni_replication_password }}"
        restapi_password: "{{ patroni_restapi_password }}"
        max_connections: "{{ item.max_connections }}"
        memory_mb: "{{ item.memory_mb }}"
        cpus: "{{ item.cpus }}"
        ttl: "{{ item.ttl }}"
        loop_wait: "{{ item.loop_wait }}"
        retry_timeout: "{{ item.retry_timeout }}"
        parameters: "{{ item.parameters }}"
        cluster_size: "{{ item.cluster_size }}"
        wait_timeout: "{{ item.wait_timeout }}"
        wait_for_cluster: "{{ phase == 'ensure' }}"
        users:
          - name: synapse
            password: "{{ patroni_synapse_password }}"
        databases:
          - name: synapse
            owner: synapse
        pgbouncer_auth_password: "{{ patroni_pgbouncer_password }}"
      loop: "{{ patroni_members }}"
      loop_control:
        label: "{{ item.name }}"
"#;

const SECRETS: [&str; 5] = [
    "superuser_password",
    "replication_password",
    "restapi_password",
    "synapse_password",
    "pgbouncer_password",
];

#[test]
fn playbook_configures_waits_ensures_and_then_changes_nothing() {
    let mut c = Cluster::new(3);
    let a = Ansible::new();
    let members: Vec<Value> = (0..c.members.len())
        .map(|i| {
            let mut args = c.args(i, &json!({}));
            let obj = args.as_object_mut().unwrap();
            for key in [
                "superuser_password",
                "replication_password",
                "restapi_password",
                "users",
                "databases",
                "pgbouncer_auth_password",
                "scope",
                "etcd_hosts",
            ] {
                obj.remove(key);
            }
            args
        })
        .collect();
    let secrets = [
        c.superuser_password.clone(),
        c.replication_password.clone(),
        c.restapi_password.clone(),
        c.synapse_password.clone(),
        c.pgbouncer_password.clone(),
    ];
    let mut vars = json!({
        "patroni_scope": c.scope,
        "patroni_etcd_hosts": [format!("127.0.0.1:{}", c.etcd_port)],
        "patroni_members": members,
    });
    for (name, value) in SECRETS.iter().zip(&secrets) {
        vars[format!("patroni_{name}")] = json!(value);
    }
    // Secrets reach Ansible through a 0600 vars file, never the command line.
    let vars_file = a.path("vars.json");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&vars_file)
            .unwrap();
        f.write_all(vars.to_string().as_bytes()).unwrap();
    }
    let at_vars = format!("@{}", vars_file.display());
    let run = |phase: &str, extra: &[&str]| {
        let mut args = vec!["-e", &at_vars, "-e"];
        let phase_var = format!("phase={phase}");
        args.push(&phase_var);
        args.extend_from_slice(extra);
        let r = a.playbook(PLAY, &args);
        for s in &secrets {
            assert!(
                !r.stdout.contains(s.as_str()),
                "a secret in Ansible's output"
            );
            assert!(
                !r.stderr.contains(s.as_str()),
                "a secret in Ansible's errors"
            );
        }
        r
    };

    let render = run("render", &[]);
    assert!(
        render.success,
        "{}\n{}\n{}",
        render.stdout,
        render.stderr,
        c.logs()
    );
    assert_eq!(render.recap("localhost", "changed"), 1);
    let again = run("render", &[]).ok();
    assert_eq!(again.recap("localhost", "changed"), 0);

    for i in 0..c.members.len() {
        c.start(i);
    }
    let check = run("ensure", &["--check", "--diff"]);
    assert!(check.success, "{}", check.stdout);

    let ensure = run("ensure", &["-v"]);
    assert!(
        ensure.success,
        "{}\n{}\n{}",
        ensure.stdout,
        ensure.stderr,
        c.logs()
    );
    assert_eq!(ensure.recap("localhost", "changed"), 1);
    assert!(
        ensure.stdout.contains("create database synapse"),
        "{}",
        ensure.stdout
    );

    let quiet = run("ensure", &[]).ok();
    assert_eq!(quiet.recap("localhost", "changed"), 0);
    assert_eq!(quiet.recap("localhost", "failed"), 0);

    let bad = a.playbook(
        &PLAY.replace(
            "retry_timeout: \"{{ item.retry_timeout }}\"",
            "retry_timeout: 10",
        ),
        &["-e", &at_vars, "-e", "phase=render"],
    );
    assert!(!bad.success);
    assert!(
        bad.stdout
            .contains("option 'ttl': value 20 breaks Patroni's timing rule"),
        "{}",
        bad.stdout
    );

    for i in 0..c.members.len() {
        c.stop(i);
    }
}
