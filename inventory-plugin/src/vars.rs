//! Variables as the inventory writes them: flat lists of names and values that borrow from the
//! plan, serialized straight to JSON.

use std::borrow::Cow;

use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::Value;

use crate::ipplan::PlannedHost;
use crate::planned::PlannedSite;

/// Variables of a host or group: a flat list serialized as a JSON object in insertion order.
/// Names are mostly `'static` and values borrow from the plan, so the thousands of hosts of a
/// provider's inventory cost few allocations.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a>(pub Vec<(Cow<'static, str>, Val<'a>)>);

impl<'a> Vars<'a> {
    pub fn with_capacity(n: usize) -> Vars<'a> {
        Vars(Vec::with_capacity(n))
    }

    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Val<'a>>) {
        self.0.push((name.into(), value.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// The variables as a JSON object (sorted by name), for inspection.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Checks, in debug builds, that no name is set twice (a bug in this crate). The order
    /// stays the insertion order: deterministic, and cheaper than sorting every host's names.
    pub(crate) fn checked(self) -> Vars<'a> {
        debug_assert!(
            self.0
                .iter()
                .enumerate()
                .all(|(i, (k, _))| self.0[..i].iter().all(|(other, _)| other != k)),
            "a variable is set twice"
        );
        self
    }
}

impl serde::Serialize for Vars<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

/// One variable's value. Structured values the inventory repeats for every site (peers,
/// backends, the /etc/hosts map) are written straight from the plan.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Str(&'a str),
    String(String),
    Int(u64),
    Bool(bool),
    Strs(Vec<&'a str>),
    Strings(Vec<String>),
    Json(Value),
    /// `[{address, fqdn, name}]` of hosts.
    Peers(Vec<&'a PlannedHost>),
    /// `[{address, check_port?, name, port}]` of HAProxy backends.
    Backends {
        hosts: Vec<&'a PlannedHost>,
        port: u16,
        check_port: Option<u16>,
    },
    /// The site's intranet /etc/hosts entries (see [`PlannedSite::etc_hosts`]).
    EtcHosts(&'a PlannedSite),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Val<'a> {
        Val::Str(s)
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::String(s)
    }
}

impl From<u64> for Val<'_> {
    fn from(n: u64) -> Self {
        Val::Int(n)
    }
}

impl From<u32> for Val<'_> {
    fn from(n: u32) -> Self {
        Val::Int(u64::from(n))
    }
}

impl From<bool> for Val<'_> {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl From<Value> for Val<'_> {
    fn from(v: Value) -> Self {
        Val::Json(v)
    }
}

impl serde::Serialize for Val<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Str(s) => serializer.serialize_str(s),
            Val::String(s) => serializer.serialize_str(s),
            Val::Int(n) => serializer.serialize_u64(*n),
            Val::Bool(b) => serializer.serialize_bool(*b),
            Val::Strs(list) => list.serialize(serializer),
            Val::Strings(list) => list.serialize(serializer),
            Val::Json(v) => v.serialize(serializer),
            Val::Peers(hosts) => {
                let mut seq = serializer.serialize_seq(Some(hosts.len()))?;
                for h in hosts {
                    seq.serialize_element(&Peer(h))?;
                }
                seq.end()
            }
            Val::Backends {
                hosts,
                port,
                check_port,
            } => {
                let mut seq = serializer.serialize_seq(Some(hosts.len()))?;
                for h in hosts {
                    seq.serialize_element(&Backend(h, *port, *check_port))?;
                }
                seq.end()
            }
            Val::EtcHosts(site) => {
                let mut seq = serializer.serialize_seq(Some(site.ip.hosts.len() + 1))?;
                seq.serialize_element(&HostsEntry(
                    &site.ip.vip.to_string(),
                    &site
                        .vip_names
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                ))?;
                for h in &site.ip.hosts {
                    seq.serialize_element(&HostsEntry(&h.address_text, &[&h.fqdn, &h.name]))?;
                }
                seq.end()
            }
        }
    }
}

struct Peer<'a>(&'a PlannedHost);

impl serde::Serialize for Peer<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("address", &self.0.address_text)?;
        map.serialize_entry("fqdn", &self.0.fqdn)?;
        map.serialize_entry("name", &self.0.name)?;
        map.end()
    }
}

struct Backend<'a>(&'a PlannedHost, u16, Option<u16>);

impl serde::Serialize for Backend<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("address", &self.0.address_text)?;
        if let Some(check) = self.2 {
            map.serialize_entry("check_port", &check)?;
        }
        map.serialize_entry("name", &self.0.name)?;
        map.serialize_entry("port", &self.1)?;
        map.end()
    }
}

struct HostsEntry<'a>(&'a str, &'a [&'a str]);

impl serde::Serialize for HostsEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("ip", self.0)?;
        map.serialize_entry("names", self.1)?;
        map.end()
    }
}
