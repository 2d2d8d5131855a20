//! The livekit_sfu role refuses bad input before it touches the host: a missing or short LiveKit
//! secret names the vault variable, two binary sources name both options. Runs the real role
//! with ansible-playbook on localhost; the checks are its first tasks, so nothing is installed.

use matrix_ha_tests::Ansible;

fn play(vars: &str) -> String {
    format!(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n    \
         livekit_sfu_node_ip: 10.20.0.61\n    livekit_sfu_redis_host: 10.20.0.61\n{vars}\n  \
         roles:\n    - role: z3r0d3v.matrix_ha.livekit_sfu\n"
    )
}

/// A vault file of this run (never on the command line) with `vars` set.
fn vault(ansible: &Ansible, body: &str) -> String {
    let path = ansible.path("vault.yml");
    std::fs::write(&path, body).unwrap();
    format!("@{}", path.display())
}

const GOOD: &str = "vault_livekit_api_key: for-this-test-only\n\
                    vault_livekit_api_secret: for-this-test-only-for-this-test-only\n\
                    vault_livekit_redis_password: for-this-test-only\n";

#[test]
fn missing_or_short_livekit_secrets_fail_naming_the_vault_variable() {
    for (body, needle) in [
        (
            GOOD.replace("vault_livekit_api_key: for-this-test-only\n", ""),
            "set vault_livekit_api_key in the vault",
        ),
        (
            GOOD.replace(
                "vault_livekit_api_secret: for-this-test-only-for-this-test-only",
                "vault_livekit_api_secret: too-short",
            ),
            "livekit_sfu_api_secret has 9 characters: set vault_livekit_api_secret",
        ),
        (
            GOOD.replace("vault_livekit_redis_password: for-this-test-only\n", ""),
            "set vault_livekit_redis_password in the vault",
        ),
    ] {
        let ansible = Ansible::new();
        let run = ansible.playbook(&play(""), &["-e", &vault(&ansible, &body)]);
        assert!(!run.success, "{}", run.stdout);
        assert!(run.stdout.contains(needle), "{needle}\n{}", run.stdout);
        assert!(!run.stdout.contains("Install Redis"), "{}", run.stdout);
    }
}

#[test]
fn two_binary_sources_fail_naming_both_options() {
    let ansible = Ansible::new();
    let vars = "    livekit_sfu_binary_src: /nonexistent/livekit-server\n    \
                livekit_sfu_binary_url: https://example.invalid/livekit-server";
    let run = ansible.playbook(&play(vars), &["-e", &vault(&ansible, GOOD)]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Give at most one of livekit_sfu_binary_src and livekit_sfu_binary_url"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Install Redis"), "{}", run.stdout);
}
