//! Ansible's script-inventory JSON (`--list`, `--host`) for one or many planned sites.
//!
//! Group layout, for a site named `S`:
//! - `S_<group>` holds the site's hosts of that group and our roles' variables for it;
//! - the shared `<group>` (`matrix_servers`, `patroni`, …) has every site's `S_<group>` as a child;
//! - `S` has every `S_<group>` as a child and holds the `site_*` facts;
//! - `scale_<scale>` has every site of that scale as a child;
//! - `all` lists the top-level groups only: the shared role groups and the scale groups.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::error::SiteError;
use crate::planned::PlannedSite;
use crate::topology::GROUPS;

/// Builds the `--list` document.
pub fn list(sites: &[PlannedSite]) -> Value {
    let mut hostvars = Map::new();
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut shared_children: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut scale_children: BTreeMap<String, Vec<Value>> = BTreeMap::new();

    for site in sites {
        let mut site_children = Vec::with_capacity(GROUPS.len());
        let mut members: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for h in &site.ip.hosts {
            let fqdn = site.fqdn(&h.name);
            for g in h.role.groups() {
                members
                    .entry(g)
                    .or_default()
                    .push(Value::String(fqdn.clone()));
            }
            hostvars.insert(fqdn, Value::Object(site.host_vars(h)));
        }
        for g in GROUPS {
            let name = site.group(g);
            let mut group = Map::new();
            group.insert(
                "hosts".into(),
                Value::Array(members.remove(g).unwrap_or_default()),
            );
            let vars = site.group_vars(g);
            if !vars.is_empty() {
                group.insert("vars".into(), Value::Object(vars));
            }
            shared_children
                .entry(g)
                .or_default()
                .push(Value::String(name.clone()));
            site_children.push(Value::String(name.clone()));
            groups.insert(name, group);
        }
        let mut parent = Map::new();
        parent.insert("children".into(), Value::Array(site_children));
        parent.insert("vars".into(), Value::Object(site.site_vars()));
        groups.insert(site.topology.name.clone(), parent);
        scale_children
            .entry(format!("scale_{}", site.topology.scale.name()))
            .or_default()
            .push(Value::String(site.topology.name.clone()));
    }

    let mut all_children: Vec<Value> = Vec::new();
    for (g, children) in shared_children {
        all_children.push(Value::String(g.to_string()));
        groups.insert(g.to_string(), single("children", children));
    }
    for (g, children) in scale_children {
        all_children.push(Value::String(g.clone()));
        groups.insert(g, single("children", children));
    }

    let mut doc = Map::new();
    doc.insert("_meta".into(), json!({ "hostvars": hostvars }));
    doc.insert(
        "all".into(),
        Value::Object(single("children", all_children)),
    );
    for (name, group) in groups {
        doc.insert(name, Value::Object(group));
    }
    Value::Object(doc)
}

/// Builds the `--host NAME` document: that host's variables.
pub fn host(sites: &[PlannedSite], name: &str) -> Result<Value, SiteError> {
    for site in sites {
        for h in &site.ip.hosts {
            if site.fqdn(&h.name) == name {
                return Ok(Value::Object(site.host_vars(h)));
            }
        }
    }
    Err(SiteError::UnknownHost(name.to_string()))
}

fn single(key: &str, value: Vec<Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), Value::Array(value));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::SiteFile;

    fn planned(domain: &str, scale: &str) -> PlannedSite {
        let text =
            format!("domain: {domain}\nscale: {scale}\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\n");
        let site = SiteFile::parse(&text, std::path::Path::new("t.yml")).expect("parses");
        PlannedSite::plan(&site).expect("plans")
    }

    #[test]
    fn groups_nest_per_site() {
        let doc = list(&[planned("chat.z3r0d3v.com", "large")]);
        assert_eq!(
            doc["patroni"]["children"],
            json!(["chat_z3r0d3v_com_patroni"])
        );
        assert_eq!(
            doc["chat_z3r0d3v_com_patroni"]["hosts"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(
            doc["chat_z3r0d3v_com_etcd"]["hosts"],
            doc["chat_z3r0d3v_com_patroni"]["hosts"]
        );
        assert_eq!(
            doc["chat_z3r0d3v_com_matrix_servers"]["hosts"],
            json!(["synapse-1.chat.z3r0d3v.com"])
        );
        assert_eq!(doc["scale_large"]["children"], json!(["chat_z3r0d3v_com"]));
        assert_eq!(doc["_meta"]["hostvars"].as_object().map(Map::len), Some(19));
    }

    #[test]
    fn many_sites_share_role_groups() {
        let doc = list(&[
            planned("a.example.org", "small"),
            planned("b.example.org", "large"),
        ]);
        assert_eq!(
            doc["matrix_servers"]["children"],
            json!([
                "a_example_org_matrix_servers",
                "b_example_org_matrix_servers"
            ])
        );
        assert_eq!(doc["scale_small"]["children"], json!(["a_example_org"]));
        assert_eq!(doc["_meta"]["hostvars"].as_object().map(Map::len), Some(35));
        let sites = [planned("a.example.org", "small")];
        assert!(host(&sites, "patroni-1.a.example.org").is_ok());
        assert!(host(&sites, "patroni-9.a.example.org").is_err());
    }
}
