//! The site file: what an operator writes once per customer.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::SiteError;

/// One customer's site file, exactly as written. Unknown keys are refused so a typo never goes
/// unnoticed. See the inventory README for the reference of every key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The inventory plugin's own key in the plugin form (`plugin: z3r0d3v.matrix_ha.scale`).
    pub plugin: Option<String>,
    /// The Matrix domain (`matrix_domain`), e.g. `chat.z3r0d3v.com`.
    pub domain: Option<String>,
    /// Group-name prefix of this site; defaults to the domain with `.` and `-` as `_`.
    pub name: Option<String>,
    /// `small`, `medium` or `large`.
    pub scale: Option<String>,
    /// Expected concurrent users; picks the scale when `scale` is absent.
    pub expected_ccu: Option<u64>,
    /// The customer's private IPv4 range, e.g. `10.20.0.0/24`.
    pub network: Option<String>,
    /// The default gateway; defaults to the first usable address of `network`.
    pub gateway: Option<String>,
    /// The HAProxy/keepalived virtual IP.
    pub vip: Option<String>,
    /// Addresses the customer already has: short host name → address.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// Host naming pattern with `{role}` and `{index}`; default `{role}-{index}`.
    pub name_pattern: Option<String>,
    /// Layout of the address plan.
    #[serde(default)]
    pub ip_plan: IpPlanOptions,
    /// Per-role overrides of the count and sizes of the scale.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleOverride>,
    /// Overrides of the scale's Synapse worker counts.
    #[serde(default)]
    pub workers: WorkerOverride,
    /// Matrix federation (`matrix_homeserver_federation_enabled`); default true.
    pub federation: Option<bool>,
    /// Whether the site's HAProxy answers `https://<domain>/.well-known/matrix/{server,client}`
    /// (the base domain points at the VIP); default true. False when the operator's web site
    /// lives on the base domain elsewhere: `plan` then prints what that web server must serve.
    pub serve_base_domain: Option<bool>,
    /// MDAD's Matrix RTC stack (`matrix_rtc_enabled`, what Element Call needs): its LiveKit JWT
    /// service, pointed at the site's LiveKit nodes; default false.
    pub matrix_rtc: Option<bool>,
    /// The MinIO bucket Synapse stores media in; default `synapse-media`.
    pub media_bucket: Option<String>,
    /// The registry the Synapse host's Docker pulls MDAD's Synapse image from, `host:port`;
    /// default `127.0.0.1:5000` (the registry the `image_registry` role runs on that host).
    pub image_registry: Option<String>,
    /// keepalived virtual router id (1-255, unique on the L2 segment).
    pub keepalived_vrid: Option<u32>,
    /// Networks (CIDR) the site's administrators work from: the only sources HAProxy lets reach
    /// Synapse's admin API (`/_synapse/admin`). Empty (the default): nobody through HAProxy.
    #[serde(default)]
    pub admin_networks: Vec<String>,
    /// Accept admin networks outside the private ranges (default false: refused).
    pub admin_networks_public: Option<bool>,
    /// Extra names the intranet /etc/hosts maps to the VIP.
    #[serde(default)]
    pub vip_names: Vec<String>,
}

/// `ip_plan:` — where each role's block of addresses starts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpPlanOptions {
    /// Addresses per role block (default 10: role k starts at offset 10·(k+1)).
    pub block_size: Option<u32>,
    /// Offset of a role's block inside the network, overriding the default.
    #[serde(default)]
    pub offsets: BTreeMap<String, u32>,
}

/// `roles.<role>:` — overrides of the scale's table for one role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOverride {
    pub count: Option<u32>,
    pub vcpu: Option<u32>,
    pub ram_gb: Option<u32>,
    pub disk_gb: Option<u32>,
    pub bandwidth_gbps: Option<u32>,
}

/// `workers:` — overrides of the design's worker counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerOverride {
    pub sync: Option<u32>,
    pub generic: Option<u32>,
    pub federation_sender: Option<u32>,
    pub event_persister: Option<u32>,
    /// The single-instance workers and the non-`events` stream writers (default true); false
    /// leaves their work to the main process (a small site, a test machine).
    pub auxiliary: Option<bool>,
}

impl SiteFile {
    /// Parses a site file. YAML errors carry the line and column.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<SiteFile, SiteError> {
        // An empty document is a site file with no keys, reported as missing options later.
        if text.trim().is_empty() {
            return Ok(SiteFile::default());
        }
        if text.len() as u64 > MAX_SITE_FILE_BYTES {
            return Err(SiteError::TooLarge {
                path: path.to_path_buf(),
                size: text.len() as u64,
                limit: MAX_SITE_FILE_BYTES,
            });
        }
        // The YAML parser takes time quadratic in the nesting depth: refuse deep files before.
        if let Some(line) = deeper_than(text, MAX_SITE_FILE_DEPTH) {
            return Err(SiteError::TooDeep {
                path: path.to_path_buf(),
                line,
                limit: MAX_SITE_FILE_DEPTH,
            });
        }
        serde_yaml_ng::from_str(text).map_err(|e| SiteError::Yaml {
            path: path.to_path_buf(),
            message: yaml_message(&e),
        })
    }
}

/// The largest site file read (1 MiB); a site file is a few kilobytes.
pub const MAX_SITE_FILE_BYTES: u64 = 1 << 20;

/// The deepest nesting of a site file (block and flow levels together); a site file needs
/// about 5.
pub const MAX_SITE_FILE_DEPTH: usize = 32;

/// The first line (1-based) at which `text` nests deeper than `limit`, by a scan that never
/// under-counts: each deeper indentation of a block line is a level, each leading `- ` of a
/// line is a level, each `[` or `{` outside quotes and comments is a level until it closes.
/// `None` when it never does.
pub fn deeper_than(text: &str, limit: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut in_double = false;
    let mut in_single = false;
    for (number, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        let quoted = in_double || in_single;
        if flow == 0 && !quoted {
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&i| i < indent) {
                indents.push(indent);
            }
        }
        let mut depth = indents.len();
        let mut rest = body;
        if flow == 0 && !quoted {
            while rest == "-" || rest.starts_with("- ") {
                depth += 1;
                rest = rest[1..].trim_start_matches(' ');
            }
        }
        let mut previous = ' ';
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_double => {
                    chars.next();
                }
                '"' if !in_single => in_double = !in_double,
                '\'' if !in_double => in_single = !in_single,
                '#' if !in_double && !in_single && previous.is_whitespace() => break,
                '[' | '{' if !in_double && !in_single => flow += 1,
                ']' | '}' if !in_double && !in_single => flow = flow.saturating_sub(1),
                _ => {}
            }
            if depth + flow > limit {
                return Some(number + 1);
            }
            previous = c;
        }
        if depth + flow > limit {
            return Some(number + 1);
        }
    }
    None
}

fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(loc) if !text.contains("line ") => {
            format!("line {} column {}: {text}", loc.line(), loc.column())
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn minimal_site_parses() {
        let site = SiteFile::parse(
            "domain: chat.z3r0d3v.com\nscale: large\nnetwork: 10.20.0.0/24\nvip: 10.20.0.10\nhosts:\n  patroni-1: 10.20.0.31\n",
            Path::new("x.yml"),
        )
        .expect("parses");
        assert_eq!(site.domain.as_deref(), Some("chat.z3r0d3v.com"));
        assert_eq!(
            site.hosts.get("patroni-1").map(String::as_str),
            Some("10.20.0.31")
        );
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let err = SiteFile::parse("domain: a.b\nsclae: large\n", Path::new("x.yml"))
            .expect_err("typo refused");
        let msg = err.to_string();
        assert!(msg.contains("sclae"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }
}
