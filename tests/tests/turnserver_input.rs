//! The turnserver role refuses bad input before it touches the host: a missing TURN secret names
//! the vault variable, a bad relay range names the variables and their values. Runs the real role
//! with ansible-playbook on localhost; the checks are its first tasks, so nothing is installed.

use matrix_ha_tests::Ansible;

fn play(vars: &str) -> String {
    format!(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n{vars}\n  \
         roles:\n    - role: z3r0d3v.matrix_ha.turnserver\n"
    )
}

#[test]
fn a_missing_turn_secret_fails_naming_the_vault_variable() {
    let run = Ansible::new().playbook(&play("    vault_turn_shared_secret: ''"), &[]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("set vault_turn_shared_secret in the vault"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Install coturn"), "{}", run.stdout);
}

#[test]
fn a_relay_range_holding_the_tls_port_fails_naming_variables_and_values() {
    let ansible = Ansible::new();
    // The secret comes from a file of this run, never from the command line.
    let secret = ansible.path("secret.yml");
    std::fs::write(&secret, "vault_turn_shared_secret: for-this-test-only\n").unwrap();
    let vars = "    turnserver_relay_min_port: 5000\n    turnserver_relay_max_port: 6000";
    let run = ansible.playbook(&play(vars), &["-e", &format!("@{}", secret.display())]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("turnserver_relay_min_port/turnserver_relay_max_port 5000-6000")
            && run.stdout.contains("turnserver_tls_port 5349"),
        "{}",
        run.stdout
    );
}
