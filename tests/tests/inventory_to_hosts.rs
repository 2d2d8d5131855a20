//! The inventory feeds the module: a site file, read through the `z3r0d3v.matrix_ha.scale`
//! inventory plugin, gives every host `etc_hosts_entries`, which etc_hosts writes as is.

use std::fs;

use matrix_ha_tests::{root, Ansible};

const PLAY: &str = r#"
- name: Intranet map from the inventory
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the site's map
      z3r0d3v.matrix_ha.etc_hosts:
        path: "{{ hosts_path }}"
        entries: "{{ hostvars[groups['synapse'][0]]['etc_hosts_entries'] }}"
"#;

#[test]
fn the_site_map_from_the_inventory_is_written_once() {
    let a = Ansible::new();
    let site = root().join("examples/sites/large/chat.z3r0d3v.com.matrix_ha.yml");
    let hosts = a.path("hosts");
    let var = format!("hosts_path={}", hosts.display());
    let site_arg = site.display().to_string();

    let first = a.playbook(PLAY, &["-i", &site_arg, "-e", &var]).ok();
    assert_eq!(first.recap("localhost", "changed"), 1);
    let content = fs::read_to_string(&hosts).unwrap();
    let block: Vec<&str> = content
        .lines()
        .skip_while(|l| !l.starts_with("# BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("# END"))
        .collect();
    // The VIP's names first, then the 19 servers of the large scale.
    assert!(
        block[0].starts_with(
            "10.20.0.10\tchat.z3r0d3v.com matrix.chat.z3r0d3v.com element.chat.z3r0d3v.com"
        ),
        "{content}"
    );
    assert_eq!(block.len(), 20, "{content}");
    assert!(
        block
            .iter()
            .any(|l| l.contains("patroni-3.chat.z3r0d3v.com patroni-3")),
        "{content}"
    );

    let second = a.playbook(PLAY, &["-i", &site_arg, "-e", &var]).ok();
    assert_eq!(second.recap("localhost", "changed"), 0);
}
