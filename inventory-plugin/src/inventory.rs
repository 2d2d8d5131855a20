//! Ansible's script-inventory JSON (`--list`, `--host`) for one or many planned sites.
//!
//! Group layout, for a site named `S`:
//! - `S_<group>` holds the site's hosts of that group and our roles' variables for it;
//! - the shared `<group>` (`matrix_servers`, `patroni`, …) has every site's `S_<group>` as a child;
//! - `S` has every `S_<group>` as a child and holds the `site_*` facts;
//! - `scale_<scale>` has every site of that scale as a child;
//! - `all` lists the top-level groups only: the shared role groups and the scale groups.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::error::SiteError;
use crate::ipplan::PlannedHost;
use crate::planned::PlannedSite;
use crate::topology::GROUPS;

/// Builds the `--list` document as a JSON value (for callers that want to inspect it).
pub fn list(sites: &[PlannedSite]) -> Value {
    serde_json::to_value(List { sites }).unwrap_or(Value::Null)
}

/// Writes the `--list` document. It is serialized while it is walked, never built in memory:
/// a provider's 10,000 hosts would otherwise cost a tree of several hundred thousand values.
///
/// Key order: `_meta`, the site parent groups, `all`, then the other groups by name. For many
/// sites the first part (host variables and site facts) and the second (groups) are serialized
/// on two threads, each about half the work; the bytes are the same as the one-thread form.
pub fn write_list<W: std::io::Write>(
    sites: &[PlannedSite],
    mut out: W,
    pretty: bool,
) -> serde_json::Result<()> {
    if pretty {
        return List { sites }.serialize(&mut serde_json::Serializer::pretty(out));
    }
    if sites.len() < PARALLEL_SITES {
        return List { sites }.serialize(&mut serde_json::Serializer::new(out));
    }
    // The head goes straight to `out` while another thread buffers the tail (about 5 kB of
    // JSON per site): `{HEAD}` and `{TAIL}` become `{HEAD,TAIL}`.
    let estimate = sites.len() * 5 * 1024;
    std::thread::scope(|scope| {
        let tail = scope.spawn(|| {
            let mut buf = Vec::with_capacity(estimate);
            serde_json::to_writer(&mut buf, &Tail { sites }).map(|()| buf)
        });
        let mut head = StripLastByte::new(&mut out);
        serde_json::to_writer(&mut head, &Head { sites })?;
        let tail = tail
            .join()
            .map_err(|_| serde::ser::Error::custom("the serializer thread panicked"))??;
        out.write_all(b",").map_err(serde_json::Error::io)?;
        out.write_all(tail.strip_prefix(b"{").unwrap_or(&tail))
            .map_err(serde_json::Error::io)
    })
}

/// Passes bytes through, holding back the last one written: the closing brace of the head.
struct StripLastByte<W> {
    out: W,
    held: Option<u8>,
}

impl<W: std::io::Write> StripLastByte<W> {
    fn new(out: W) -> Self {
        StripLastByte { out, held: None }
    }
}

impl<W: std::io::Write> std::io::Write for StripLastByte<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((&last, body)) = buf.split_last() {
            if let Some(byte) = self.held.take() {
                self.out.write_all(&[byte])?;
            }
            self.out.write_all(body)?;
            self.held = Some(last);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// From this many sites on, `write_list` uses two threads.
const PARALLEL_SITES: usize = 16;

/// The `--list` document.
struct List<'a> {
    sites: &'a [PlannedSite],
}

/// Its first part: `_meta` and the site parent groups.
struct Head<'a> {
    sites: &'a [PlannedSite],
}

/// Its second part: `all` and every other group.
struct Tail<'a> {
    sites: &'a [PlannedSite],
}

/// What a group holds; its JSON is produced on demand.
enum Group<'a> {
    /// A shared role group or a scale group: only children.
    Parent(Vec<String>),
    /// A site's parent group: its role groups and the `site_*` facts.
    Site(&'a PlannedSite),
    /// A site's role group `S_<group>`: hosts and our role's variables.
    SiteRole(&'a PlannedSite, &'static str),
}

/// The site parent groups, by name.
fn site_groups(sites: &[PlannedSite]) -> BTreeMap<&str, Group<'_>> {
    sites
        .iter()
        .map(|s| (s.topology.name.as_str(), Group::Site(s)))
        .collect()
}

/// The top-level groups (children of `all`) and every group but the site parents, by name.
fn layout(sites: &[PlannedSite]) -> (Vec<String>, BTreeMap<String, Group<'_>>) {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut shared: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut scales: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for site in sites {
        for g in GROUPS {
            let name = site.group(g);
            shared.entry(g).or_default().push(name.clone());
            groups.insert(name, Group::SiteRole(site, g));
        }
        scales
            .entry(format!("scale_{}", site.topology.scale.name()))
            .or_default()
            .push(site.topology.name.clone());
    }
    let mut top: Vec<String> = Vec::with_capacity(shared.len() + scales.len());
    for (g, children) in shared {
        top.push(g.to_string());
        groups.insert(g.to_string(), Group::Parent(children));
    }
    for (g, children) in scales {
        top.push(g.clone());
        groups.insert(g, Group::Parent(children));
    }
    (top, groups)
}

fn head_entries<M: SerializeMap>(map: &mut M, sites: &[PlannedSite]) -> Result<(), M::Error> {
    map.serialize_entry("_meta", &Meta { sites })?;
    for (name, group) in &site_groups(sites) {
        map.serialize_entry(name, group)?;
    }
    Ok(())
}

fn tail_entries<M: SerializeMap>(map: &mut M, sites: &[PlannedSite]) -> Result<(), M::Error> {
    let (top, groups) = layout(sites);
    map.serialize_entry("all", &Children(&top))?;
    for (name, group) in &groups {
        map.serialize_entry(name, group)?;
    }
    Ok(())
}

impl Serialize for List<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        head_entries(&mut map, self.sites)?;
        tail_entries(&mut map, self.sites)?;
        map.end()
    }
}

impl Serialize for Head<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        head_entries(&mut map, self.sites)?;
        map.end()
    }
}

impl Serialize for Tail<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        tail_entries(&mut map, self.sites)?;
        map.end()
    }
}

struct Children<'a>(&'a [String]);

impl Serialize for Children<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("children", self.0)?;
        map.end()
    }
}

impl Serialize for Group<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Group::Parent(children) => Children(children).serialize(serializer),
            Group::Site(site) => {
                let children: Vec<String> = GROUPS.iter().map(|g| site.group(g)).collect();
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("children", &children)?;
                map.serialize_entry("vars", &site.site_vars())?;
                map.end()
            }
            Group::SiteRole(site, group) => {
                let vars = site.group_vars(group);
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("hosts", &Members { site, group })?;
                if !vars.is_empty() {
                    map.serialize_entry("vars", &vars)?;
                }
                map.end()
            }
        }
    }
}

/// The full names of a site's hosts in one group.
struct Members<'a> {
    site: &'a PlannedSite,
    group: &'static str,
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for h in &self.site.ip.hosts {
            if h.role.groups().contains(&self.group) {
                seq.serialize_element(&h.fqdn)?;
            }
        }
        seq.end()
    }
}

/// `_meta.hostvars`: every host's variables, by full name.
struct Meta<'a> {
    sites: &'a [PlannedSite],
}

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Site by site, in plan order (role, then index).
        let hosts: Vec<(&PlannedSite, &PlannedHost)> = self
            .sites
            .iter()
            .flat_map(|site| site.ip.hosts.iter().map(move |h| (site, h)))
            .collect();
        let mut outer = serializer.serialize_map(Some(1))?;
        outer.serialize_entry("hostvars", &HostVars(&hosts))?;
        outer.end()
    }
}

struct HostVars<'a>(&'a [(&'a PlannedSite, &'a PlannedHost)]);

impl Serialize for HostVars<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (site, host) in self.0 {
            map.serialize_entry(&host.fqdn, &site.host_vars(host))?;
        }
        map.end()
    }
}

/// Builds the `--host NAME` document: that host's variables.
pub fn host(sites: &[PlannedSite], name: &str) -> Result<Value, SiteError> {
    for site in sites {
        for h in &site.ip.hosts {
            if h.fqdn == name {
                return Ok(serde_json::to_value(site.host_vars(h)).unwrap_or(Value::Null));
            }
        }
    }
    Err(SiteError::UnknownHost(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::SiteFile;
    use serde_json::{json, Map};

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
    fn two_threads_write_the_same_bytes_as_one() {
        let sites: Vec<PlannedSite> = (0..PARALLEL_SITES + 3)
            .map(|i| planned(&format!("c{i}.example.org"), "medium"))
            .collect();
        let mut parallel = Vec::new();
        write_list(&sites, &mut parallel, false).expect("writes");
        let sequential = serde_json::to_vec(&List { sites: &sites }).expect("serializes");
        assert!(parallel == sequential, "the two-thread output differs");
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
