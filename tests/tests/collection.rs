//! The collection as users install it: `ansible-galaxy collection build`, then install the
//! tarball elsewhere and run a module from it, away from this checkout.

use std::fs;
use std::process::Command;

use matrix_ha_tests::{collection, Ansible};

#[test]
fn galaxy_tarball_holds_the_binaries_and_installs() {
    let a = Ansible::new();
    let build = a
        .command("ansible-galaxy")
        .current_dir(collection())
        .args(["collection", "build", "--force", "--output-path"])
        .arg(a.path("dist"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let tarball = a.path("dist/z3r0d3v-matrix_ha-0.1.0.tar.gz");
    assert!(tarball.exists());

    let listing = Command::new("tar")
        .arg("-tzvf")
        .arg(&tarball)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let module = listing
        .lines()
        .find(|l| l.ends_with(" plugins/modules/etc_hosts"))
        .unwrap_or_else(|| panic!("no module binary in the tarball:\n{listing}"));
    assert!(
        module.starts_with("-rwx"),
        "the module is executable: {module}"
    );
    for wanted in [
        "plugins/modules/etc_hosts.yml",
        "meta/runtime.yml",
        "MANIFEST.json",
        "playbooks/intranet_hosts.yml",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(wanted)),
            "{wanted} missing:\n{listing}"
        );
    }
    for unwanted in [
        " modules/",
        " target/",
        " .venv/",
        " .collections/",
        " tests/",
        "Cargo.toml",
        " .git/",
    ] {
        assert!(
            !listing.lines().any(|l| l.contains(unwanted)),
            "{unwanted} shipped:\n{listing}"
        );
    }

    // From here on only the installed copy is visible: no checkout ansible.cfg, no .collections
    // link (the installer would otherwise see the checkout as installed already and skip).
    let empty_cfg = a.path("ansible.cfg");
    fs::write(&empty_cfg, "[defaults]\n").unwrap();
    let installed = a.path("installed");
    let install = a
        .command("ansible-galaxy")
        .env("ANSIBLE_CONFIG", &empty_cfg)
        .env("ANSIBLE_COLLECTIONS_PATH", &installed)
        .args(["collection", "install", "--offline", "-p"])
        .arg(&installed)
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );

    assert!(installed
        .join("ansible_collections/z3r0d3v/matrix_ha/plugins/modules/etc_hosts")
        .exists());
    let hosts = a.path("hosts");
    let out = a
        .command("ansible")
        .env("ANSIBLE_CONFIG", &empty_cfg)
        .env("ANSIBLE_COLLECTIONS_PATH", &installed)
        .args(["localhost", "-m", "z3r0d3v.matrix_ha.etc_hosts", "-a"])
        .arg(format!(
            "path={} entries='[{{\"ip\": \"10.20.0.10\", \"names\": [\"chat.z3r0d3v.com\"]}}]'",
            hosts.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHANGED"), "{stdout}");
    assert!(fs::read_to_string(&hosts)
        .unwrap()
        .contains("10.20.0.10\tchat.z3r0d3v.com\n"));
}
