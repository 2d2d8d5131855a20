//! The contract between the dynamic inventory and our roles, at every example scale.
//!
//! For each example site (small, medium, large) the inventory's `--list` is merged per host as
//! Ansible merges it (the groups' variables from the outermost group in, then the host's own), and:
//!
//! - every option a role's `meta/argument_specs.yml` marks `required: true` is given to every host
//!   of the groups `playbooks/site.yml` runs that role on, with the required keys of its list
//!   elements; a value that is a `vault_*` reference counts as given when the vault variable is an
//!   operator-provided one ([`VAULT_SECRETS`]) named in the inventory README's vault section;
//! - every variable the inventory emits with one of our roles' prefixes is an option of some role
//!   or is read somewhere in `roles/` or `playbooks/`;
//! - no role option is both required and defaulted (`defaults/main.yml` or a `default:` in the
//!   spec), which would satisfy `required` silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use matrix_ha_tests::{matrix_inventory, root, VAULT_SECRETS};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

const SCALES: [&str; 3] = ["small", "medium", "large"];

/// Which role runs on which hosts: the plays of `playbooks/site.yml` (checked against that file
/// by `the_role_table_matches_site_yml`).
const PLAYS: [(&str, &str); 11] = [
    ("etc_hosts", "all"),
    ("etcd", "etcd"),
    ("patroni", "patroni"),
    ("pgbouncer", "pgbouncer"),
    ("haproxy", "haproxy"),
    ("keepalived", "keepalived"),
    ("minio", "minio"),
    ("container_host", "matrix_servers"),
    ("turnserver", "coturn"),
    ("livekit_sfu", "livekit"),
    ("backup", "backup:patroni:matrix_servers"),
];

/// Prefixes of our roles' variables besides `<role>_`.
const EXTRA_PREFIXES: [&str; 2] = ["intranet_", "turn_"];

const COLLECTION: &str = "z3r0d3v.matrix_ha.";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Yaml {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key(v: &Yaml, name: &str) -> Option<Yaml> {
    v.as_mapping()?.get(name).cloned()
}

/// One role's argument spec (every entry point's options) and the names its defaults set.
struct Role {
    name: String,
    options: BTreeMap<String, Yaml>,
    defaults: BTreeSet<String>,
}

impl Role {
    fn required(&self) -> impl Iterator<Item = (&String, &Yaml)> {
        self.options
            .iter()
            .filter(|(_, spec)| key(spec, "required").and_then(|r| r.as_bool()) == Some(true))
    }
}

fn roles() -> Vec<Role> {
    let dir = root().join("roles");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("meta/argument_specs.yml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "roles with argument specs: {names:?}");
    names
        .into_iter()
        .map(|name| {
            let base = dir.join(&name);
            let specs = key(
                &yaml(&base.join("meta/argument_specs.yml")),
                "argument_specs",
            )
            .unwrap_or_else(|| panic!("role {name}: no argument_specs"));
            let mut options = BTreeMap::new();
            for (_, entry) in specs.as_mapping().expect("entry points").iter() {
                if let Some(Yaml::Mapping(opts)) = key(entry, "options") {
                    for (k, v) in opts {
                        options.insert(k.as_str().expect("option name").to_string(), v);
                    }
                }
            }
            let defaults_file = base.join("defaults/main.yml");
            let defaults = if defaults_file.is_file() {
                match yaml(&defaults_file) {
                    Yaml::Mapping(m) => m
                        .keys()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect(),
                    _ => BTreeSet::new(),
                }
            } else {
                BTreeSet::new()
            };
            Role {
                name,
                options,
                defaults,
            }
        })
        .collect()
}

/// The text of every file under `roles/` and `playbooks/`, argument specs excepted (an option
/// named only in its own spec is not read by anything).
fn readers_text() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if !path.ends_with("meta/argument_specs.yml") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    out.push_str(&text);
                    out.push('\n');
                }
            }
        }
    }
    let mut text = String::new();
    walk(&root().join("roles"), &mut text);
    walk(&root().join("playbooks"), &mut text);
    text
}

/// Whether `name` occurs in `text` as a whole identifier.
fn mentions(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident)
            && !text[i + name.len()..].chars().next().is_some_and(ident)
    })
}

/// The inventory's `--list` for the example site of `scale`, as the collection's binary gives it.
fn inventory(scale: &str) -> Value {
    let site = root()
        .join("examples/sites")
        .join(scale)
        .join("chat.z3r0d3v.com.matrix_ha.yml");
    matrix_inventory(&site, &["--list"])
}

/// An inventory's groups, hosts and the variables each host ends up with.
struct Inventory {
    doc: Value,
    /// host → its variables, merged as Ansible does.
    vars: BTreeMap<String, serde_json::Map<String, Value>>,
}

impl Inventory {
    fn new(doc: Value) -> Self {
        let groups = doc.as_object().expect("an object").clone();
        // Depth of each group below `all` (the longest path, as Ansible orders them).
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        let mut frontier = vec![("all".to_string(), 0usize)];
        while let Some((g, d)) = frontier.pop() {
            if depth.get(&g).is_some_and(|&old| old >= d) {
                continue;
            }
            depth.insert(g.clone(), d);
            for child in children(&groups, &g) {
                frontier.push((child, d + 1));
            }
        }
        let hostvars = doc["_meta"]["hostvars"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut vars = BTreeMap::new();
        for host in hostvars.keys() {
            let mut mine: Vec<(&usize, &String)> = depth
                .iter()
                .filter(|(g, _)| Self::hosts_of(&groups, &hostvars, g).contains(host))
                .map(|(g, d)| (d, g))
                .collect();
            mine.sort();
            let mut merged = serde_json::Map::new();
            for (_, g) in mine {
                if let Some(v) = groups.get(g).and_then(|g| g["vars"].as_object()) {
                    merged.extend(v.clone());
                }
            }
            merged.extend(hostvars[host].as_object().cloned().unwrap_or_default());
            vars.insert(host.clone(), merged);
        }
        Inventory { doc, vars }
    }

    fn hosts_of(
        groups: &serde_json::Map<String, Value>,
        hostvars: &serde_json::Map<String, Value>,
        group: &str,
    ) -> BTreeSet<String> {
        if group == "all" {
            return hostvars.keys().cloned().collect();
        }
        let mut out: BTreeSet<String> = groups
            .get(group)
            .and_then(|g| g["hosts"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect();
        for child in children(groups, group) {
            out.extend(Self::hosts_of(groups, hostvars, &child));
        }
        out
    }

    /// The hosts a play's `hosts:` pattern (`a:b:c`) selects.
    fn hosts(&self, pattern: &str) -> BTreeSet<String> {
        let groups = self.doc.as_object().expect("an object");
        let hostvars = self.doc["_meta"]["hostvars"].as_object().expect("hostvars");
        pattern
            .split(':')
            .flat_map(|g| Self::hosts_of(groups, hostvars, g))
            .collect()
    }

    /// Every (variable, where) the inventory emits: `where` is a group or `host <name>`.
    fn emitted(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (g, body) in self.doc.as_object().expect("an object") {
            if g == "_meta" {
                continue;
            }
            for name in body["vars"].as_object().into_iter().flat_map(|v| v.keys()) {
                out.push((name.clone(), format!("group {g}")));
            }
        }
        for (h, body) in self.doc["_meta"]["hostvars"].as_object().expect("hostvars") {
            for name in body.as_object().into_iter().flat_map(|v| v.keys()) {
                out.push((name.clone(), format!("host {h}")));
            }
        }
        out
    }
}

fn children(groups: &serde_json::Map<String, Value>, group: &str) -> Vec<String> {
    groups
        .get(group)
        .and_then(|g| g["children"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

/// The `vault_*` names a value refers to.
fn vault_refs(value: &Value) -> BTreeSet<String> {
    let text = value.to_string();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("vault_") {
        if text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// The inventory README's "Vault variables" section.
fn vault_section() -> String {
    let readme = read(&root().join("inventory-plugin/README.md"));
    let start = readme
        .find("## Vault variables")
        .expect("inventory-plugin/README.md has a \"## Vault variables\" section");
    let rest = &readme[start + 2..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

#[test]
fn the_role_table_matches_site_yml() {
    let plays = yaml(&root().join("playbooks/site.yml"));
    let mut found = Vec::new();
    for play in plays.as_sequence().expect("site.yml is a list of plays") {
        let Some(Yaml::Sequence(roles)) = key(play, "roles") else {
            continue;
        };
        let hosts = key(play, "hosts")
            .and_then(|h| h.as_str().map(str::to_string))
            .expect("a play with roles names its hosts");
        for role in roles {
            let name = match &role {
                Yaml::String(s) => s.clone(),
                other => key(other, "role")
                    .and_then(|r| r.as_str().map(str::to_string))
                    .expect("role: NAME"),
            };
            let short = name.strip_prefix(COLLECTION).unwrap_or(&name).to_string();
            found.push((short, hosts.clone()));
        }
    }
    let table: Vec<(String, String)> = PLAYS
        .iter()
        .map(|(r, h)| (r.to_string(), h.to_string()))
        .collect();
    assert_eq!(
        found, table,
        "playbooks/site.yml's roles and hosts differ from this test's PLAYS table: update the table"
    );
    let with_specs: BTreeSet<String> = roles().into_iter().map(|r| r.name).collect();
    let played: BTreeSet<String> = PLAYS.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(
        with_specs, played,
        "every role with an argument spec is run by site.yml and vice versa"
    );
}

#[test]
fn no_option_is_both_required_and_defaulted() {
    let mut failures = Vec::new();
    for role in roles() {
        for (option, spec) in role.required() {
            if role.defaults.contains(option) {
                failures.push(format!(
                    "role {}: option {option} is required in meta/argument_specs.yml and \
                     defaulted in defaults/main.yml, which satisfies `required` silently",
                    role.name
                ));
            }
            if key(spec, "default").is_some() {
                failures.push(format!(
                    "role {}: option {option} is required and has a default in \
                     meta/argument_specs.yml",
                    role.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn operator_provided_secrets_are_documented() {
    let section = vault_section();
    let missing: Vec<&str> = VAULT_SECRETS
        .iter()
        .copied()
        .filter(|v| !section.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "operator-provided vault variables not named in inventory-plugin/README.md's \
         \"Vault variables\" section: {missing:?}"
    );
}

#[test]
fn the_inventory_gives_every_required_option_of_every_role_at_every_scale() {
    let roles = roles();
    let operator: BTreeSet<&str> = VAULT_SECRETS.into_iter().collect();
    let mut failures = Vec::new();
    for scale in SCALES {
        let inv = Inventory::new(inventory(scale));

        // Every vault reference the inventory makes is an operator-provided secret, and the
        // inventory's own list of them (site_vault_variables) names each.
        let refs = vault_refs(&inv.doc);
        for name in &refs {
            if !operator.contains(name.as_str()) {
                failures.push(format!(
                    "scale {scale}: the inventory refers to {name}, which is not an \
                     operator-provided vault variable (VAULT_SECRETS)"
                ));
            }
        }
        for (host, vars) in &inv.vars {
            let listed: BTreeSet<String> = vars
                .get("site_vault_variables")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            for name in vault_refs(&Value::Object(vars.clone())) {
                if !listed.contains(&name) {
                    failures.push(format!(
                        "scale {scale}: host {host} gets a reference to {name}, which its \
                         site_vault_variables does not list (site.yml's vault check would miss it)"
                    ));
                }
            }
        }

        for (role_name, pattern) in PLAYS {
            let role = roles
                .iter()
                .find(|r| r.name == role_name)
                .unwrap_or_else(|| panic!("role {role_name} of site.yml has no argument spec"));
            let hosts = inv.hosts(pattern);
            assert!(
                !hosts.is_empty(),
                "scale {scale}: group {pattern} has no host"
            );
            for (option, spec) in role.required() {
                for host in &hosts {
                    let Some(value) = inv.vars[host].get(option) else {
                        failures.push(format!(
                            "scale {scale}: role {role_name} requires option {option}, which the \
                             inventory does not give host {host} of group {pattern}"
                        ));
                        continue;
                    };
                    for name in vault_refs(value) {
                        if !operator.contains(name.as_str()) {
                            failures.push(format!(
                                "scale {scale}: role {role_name}'s required option {option} on \
                                 group {pattern} comes from {name}, which is not an \
                                 operator-provided vault variable"
                            ));
                        }
                    }
                    failures.extend(missing_suboptions(value, spec).into_iter().map(|sub| {
                        format!(
                            "scale {scale}: role {role_name}'s option {option} on host {host} of \
                             group {pattern}: an element lacks the required key {sub}"
                        )
                    }));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The required keys of a list-of-dicts option that some element of `value` lacks.
fn missing_suboptions(value: &Value, spec: &Yaml) -> BTreeSet<String> {
    let Some(Yaml::Mapping(subs)) = key(spec, "options") else {
        return BTreeSet::new();
    };
    let required: Vec<String> = subs
        .iter()
        .filter(|(_, s)| key(s, "required").and_then(|r| r.as_bool()) == Some(true))
        .filter_map(|(k, _)| k.as_str().map(str::to_string))
        .collect();
    let elements: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    };
    let mut out = BTreeSet::new();
    for element in elements {
        for k in &required {
            if element.get(k).is_none() {
                out.insert(k.clone());
            }
        }
    }
    out
}

#[test]
fn every_variable_the_inventory_emits_for_our_roles_is_read() {
    let roles = roles();
    let options: BTreeMap<&str, &str> = roles
        .iter()
        .flat_map(|r| r.options.keys().map(|o| (o.as_str(), r.name.as_str())))
        .collect();
    let prefixes: Vec<String> = roles
        .iter()
        .map(|r| format!("{}_", r.name))
        .chain(EXTRA_PREFIXES.iter().map(|p| p.to_string()))
        .collect();
    let text = readers_text();
    let mut failures = BTreeSet::new();
    for scale in SCALES {
        let inv = Inventory::new(inventory(scale));
        for (name, place) in inv.emitted() {
            if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                continue;
            }
            if options.contains_key(name.as_str()) || mentions(&text, &name) {
                continue;
            }
            failures.insert(format!(
                "scale {scale}: the inventory emits {name} on {place}, which is no role's option \
                 and which nothing in roles/ or playbooks/ reads"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "\n{}",
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_checks_see_what_they_should() {
    // The helpers of the checks above, on known cases, so a broken helper cannot pass them.
    assert!(mentions("x: {{ etcd_peers }}", "etcd_peers"));
    assert!(!mentions("x: {{ etcd_peers_extra }}", "etcd_peers"));
    assert!(!mentions("x: {{ my_etcd_peers }}", "etcd_peers"));
    let v: Value =
        serde_json::json!({"a": "{{ vault_x_y }}", "b": ["{{vault_z}}"], "c": "novault_q"});
    assert_eq!(
        vault_refs(&v),
        ["vault_x_y", "vault_z"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let inv = Inventory::new(serde_json::json!({
        "all": {"children": ["g", "s"], "vars": {"v": 0}},
        "s": {"children": ["s_g"], "vars": {"v": 1, "w": 1}},
        "g": {"children": ["s_g"]},
        "s_g": {"hosts": ["h"], "vars": {"v": 2}},
        "_meta": {"hostvars": {"h": {"x": 3}, "k": {}}}
    }));
    assert_eq!(inv.vars["h"]["v"], 2);
    assert_eq!(inv.vars["h"]["w"], 1);
    assert_eq!(inv.vars["h"]["x"], 3);
    assert_eq!(inv.vars["k"]["v"], 0);
    assert_eq!(inv.hosts("g").len(), 1);
    assert_eq!(inv.hosts("all").len(), 2);
}
