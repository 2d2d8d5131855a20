//! z3r0d3v.matrix_ha.minio_pool through real ansible-playbook on localhost: check and diff
//! mode, idempotence, an appended pool, and the refusal to change an existing one.

use std::fs;

use matrix_ha_tests::Ansible;

const PLAY: &str = r#"
- name: The media store of chat.z3r0d3v.com
  hosts: localhost
  gather_facts: false
  vars:
    first_pool:
      hosts: [minio-1.chat.z3r0d3v.com, minio-2.chat.z3r0d3v.com,
              minio-3.chat.z3r0d3v.com, minio-4.chat.z3r0d3v.com]
      drives: [/mnt/disk1/minio, /mnt/disk2/minio, /mnt/disk3/minio, /mnt/disk4/minio]
      drive_size: 4TiB
    second_pool:
      hosts: [minio-5.chat.z3r0d3v.com, minio-6.chat.z3r0d3v.com,
              minio-7.chat.z3r0d3v.com, minio-8.chat.z3r0d3v.com]
      drives: [/mnt/disk1/minio, /mnt/disk2/minio, /mnt/disk3/minio, /mnt/disk4/minio]
      drive_size: 4TiB
  tasks:
    - name: Write the MinIO env file
      z3r0d3v.matrix_ha.minio_pool:
        env_path: "{{ env_path }}"
        pools: "{{ [first_pool, second_pool] if two_pools | default(false) | bool else [first_pool] }}"
        root_user: matrix-admin
        root_password: "{{ password }}"
      register: minio
    - name: Show the layout
      ansible.builtin.debug:
        msg: "set={{ minio.set_size }} parity={{ minio.parity }} usable={{ minio.pools[0].usable }} added={{ minio.pools_added }}"
"#;

#[test]
fn check_diff_converge_append_and_refuse() {
    let a = Ansible::new();
    let env = a.path("minio");
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    let password = uuid.trim().to_string();
    let vars = a.path("vars.yml");
    fs::write(
        &vars,
        format!("env_path: {}\npassword: \"{password}\"\n", env.display()),
    )
    .unwrap();
    let vars_arg = format!("@{}", vars.display());

    let check = a
        .playbook(PLAY, &["-e", &vars_arg, "--check", "--diff"])
        .ok();
    assert_eq!(check.recap("localhost", "changed"), 1);
    assert!(check.stdout.contains(
        "+MINIO_VOLUMES=\"http://minio-{1...4}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio\""
    ));
    assert!(check.stdout.contains("+MINIO_ROOT_PASSWORD=\"********\""));
    assert!(!check.stdout.contains(&password) && !check.stderr.contains(&password));
    assert!(!env.exists());

    let first = a.playbook(PLAY, &["-e", &vars_arg]).ok();
    assert_eq!(first.recap("localhost", "changed"), 1);
    assert!(
        first
            .stdout
            .contains("set=16 parity=4 usable=48.0 TiB added=1"),
        "{}",
        first.stdout
    );
    let content = fs::read_to_string(&env).unwrap();
    let second = a.playbook(PLAY, &["-e", &vars_arg]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
    assert_eq!(fs::read_to_string(&env).unwrap(), content);

    // Appending the second pool: accepted, with the restart-together warning.
    let append = a
        .playbook(PLAY, &["-e", &vars_arg, "-e", "two_pools=true"])
        .ok();
    assert_eq!(append.recap("localhost", "changed"), 1);
    assert!(
        append.stderr.contains("restart every MinIO node together")
            || append.stdout.contains("restart every MinIO node together")
    );
    let appended = fs::read_to_string(&env).unwrap();
    assert!(
        appended.contains(" http://minio-{5...8}.chat.z3r0d3v.com:9000/mnt/disk{1...4}/minio\"")
    );

    // Going back to one pool would remove one: refused, the file unchanged.
    let refused = a.playbook(PLAY, &["-e", &vars_arg]);
    assert!(!refused.success);
    assert!(
        refused.stdout.contains("would strand their data"),
        "{}",
        refused.stdout
    );
    assert_eq!(fs::read_to_string(&env).unwrap(), appended);
}
