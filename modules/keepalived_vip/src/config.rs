//! The pure part: validated settings in, keepalived.conf bytes out. No I/O.
//!
//! [`validate`] checks every option against the others and against the interface's
//! addresses (read by the caller), and [`render`] writes the whole file.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use matrix_ha_runtime::text::{self, Syntax};
use thiserror::Error;

/// The first line of every file this module writes.
pub const HEADER: &str = "# Managed by z3r0d3v.matrix_ha.keepalived_vip: this whole file is rewritten on every change.\n";

/// Name of the vrrp_script block.
pub const CHECK_NAME: &str = "chk_haproxy";

/// What the user asked for, still unchecked (options as given).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Request {
    pub interface: String,
    pub vip: String,
    pub virtual_router_id: Option<i64>,
    pub priority: i64,
    pub peers: Vec<String>,
    pub unicast_src_ip: Option<String>,
    pub auth_pass: Option<String>,
    pub advert_int: i64,
    pub nopreempt: bool,
    pub check_script: String,
    pub check_interval: i64,
    pub check_fall: i64,
    pub check_rise: i64,
    pub script_user: String,
    pub instance_name: String,
    pub notify_script: Option<String>,
}

/// The settings after validation: what [`render`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub interface: String,
    pub vip: Ipv4Net,
    pub virtual_router_id: u8,
    pub priority: u8,
    pub peers: Vec<Ipv4Addr>,
    pub unicast_src_ip: Ipv4Addr,
    pub auth_pass: Option<String>,
    pub advert_int: u32,
    pub nopreempt: bool,
    pub check_script: String,
    pub check_interval: u32,
    pub check_fall: u32,
    pub check_rise: u32,
    pub script_user: String,
    pub instance_name: String,
    pub notify_script: Option<String>,
}

/// One invalid option: its name, the value as shown, and why.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("option '{option}': value {shown} {reason}")]
pub struct Invalid {
    pub option: String,
    pub shown: String,
    pub reason: String,
}

/// Every problem found, joined with `"; "`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct Invalids(pub Vec<Invalid>);

fn invalid(option: &str, shown: impl std::fmt::Display, reason: impl Into<String>) -> Invalid {
    Invalid {
        option: option.to_string(),
        shown: format!("\"{shown}\""),
        reason: reason.into(),
    }
}

/// The VRID used when `virtual_router_id` is not given: the VIP's last octet (0 → 1), the rules
/// crate's default, which the inventory's `keepalived_vrid` uses too.
pub use matrix_ha_rules::vrid::default_vrid;

/// Characters keepalived's parser treats specially, or that would break a line.
fn config_unsafe(c: char) -> bool {
    text::is_forbidden_char(c) || matches!(c, '"' | '{' | '}' | '#' | '!' | '\\')
}

/// The longest instance name (keepalived shows it in logs, SNMP and D-Bus object paths).
pub const MAX_INSTANCE_NAME: usize = 64;
/// The longest script command line (keepalived reads configuration lines into a 1024-byte
/// buffer; the rest of the line needs room).
pub const MAX_COMMAND: usize = 512;

fn check_word(errs: &mut Vec<Invalid>, option: &str, value: &str, what: &str, max: usize) {
    if value.is_empty() {
        errs.push(invalid(option, value, format!("is empty; give {what}")));
    } else if let Some(reason) = text::problem(value, Syntax::KeepalivedWord) {
        errs.push(invalid(
            option,
            value.escape_debug(),
            format!("is not {what}: it {reason}"),
        ));
    } else if value.chars().count() > max {
        errs.push(Invalid {
            option: option.to_string(),
            shown: text::shown(value).trim_start_matches("value ").to_string(),
            reason: format!(
                "has {} characters; {what} has at most {max}",
                value.chars().count()
            ),
        });
    }
}

/// A command line for keepalived's `script`/`notify`: absolute program, no quoting tricks.
fn check_command(errs: &mut Vec<Invalid>, option: &str, value: &str) {
    if !value.starts_with('/') {
        errs.push(invalid(
            option,
            value.escape_debug(),
            "must start with the absolute path of a program (keepalived runs it without a shell)",
        ));
    } else if value.chars().any(|c| config_unsafe(c) || c == '\'') {
        // keepalived splits a script's command line itself, with single quotes grouping.
        errs.push(invalid(
            option,
            value.escape_debug(),
            "contains a character keepalived's parser treats specially (quote, single quote, \
             brace, '#', '!', backslash or a control character)",
        ));
    } else if value.len() > MAX_COMMAND {
        errs.push(Invalid {
            option: option.to_string(),
            shown: text::shown(value).trim_start_matches("value ").to_string(),
            reason: format!(
                "has {} bytes; at most {MAX_COMMAND} fit on a keepalived.conf line",
                value.len()
            ),
        });
    }
}

/// Checks `req` against itself and the addresses of its interface (`iface_addrs`: every IPv4
/// address with prefix the interface carries now; `None` when the interface does not exist).
pub fn validate(req: &Request, iface_addrs: Option<&[Ipv4Net]>) -> Result<Settings, Invalids> {
    let mut errs = Vec::new();

    if req.interface.len() > 15 {
        errs.push(invalid(
            "interface",
            &req.interface,
            "is longer than 15 characters (Linux's limit for interface names)",
        ));
    } else if req.interface.contains('/') {
        errs.push(invalid("interface", &req.interface, "contains '/'"));
    } else {
        check_word(
            &mut errs,
            "interface",
            &req.interface,
            "an interface name",
            15,
        );
    }

    let vip = match req.vip.trim().parse::<Ipv4Net>() {
        Ok(net) if net.prefix_len() == 0 => {
            errs.push(invalid("vip", &req.vip, "has prefix /0"));
            None
        }
        Ok(net) => {
            let a = net.addr();
            if net.prefix_len() < 31 && (a == net.network() || a == net.broadcast()) {
                errs.push(invalid(
                    "vip",
                    &req.vip,
                    "is the network or broadcast address of its prefix",
                ));
                None
            } else if a.is_loopback() || a.is_multicast() || a.is_unspecified() {
                errs.push(invalid(
                    "vip",
                    &req.vip,
                    "is not a unicast address usable as a VIP",
                ));
                None
            } else {
                Some(net)
            }
        }
        Err(_) => {
            let reason = if req.vip.trim().parse::<Ipv4Addr>().is_ok() {
                "has no prefix: give ADDRESS/PREFIX, e.g. 10.20.0.10/24"
            } else if req.vip.contains(':') {
                "is IPv6: this module manages an IPv4 VIP (VRRPv2)"
            } else {
                "is not an IPv4 ADDRESS/PREFIX such as 10.20.0.10/24"
            };
            errs.push(invalid("vip", &req.vip, reason));
            None
        }
    };

    let vrid = match req.virtual_router_id {
        Some(v) if matrix_ha_rules::vrid::is_vrid(v) => Some(v as u8),
        Some(v) => {
            errs.push(Invalid {
                option: "virtual_router_id".into(),
                shown: v.to_string(),
                reason: "is outside 1 to 255 (VRRP router ids)".into(),
            });
            None
        }
        None => vip.map(|n| default_vrid(n.addr())),
    };

    if !(1..=254).contains(&req.priority) {
        errs.push(Invalid {
            option: "priority".into(),
            shown: req.priority.to_string(),
            reason: "is outside 1 to 254 (255 is reserved for the address owner)".into(),
        });
    }
    if !(1..=255).contains(&req.advert_int) {
        errs.push(Invalid {
            option: "advert_int".into(),
            shown: req.advert_int.to_string(),
            reason: "is outside 1 to 255 seconds".into(),
        });
    }
    for (name, value, max) in [
        ("check_interval", req.check_interval, 3600),
        ("check_fall", req.check_fall, 100),
        ("check_rise", req.check_rise, 100),
    ] {
        if !(1..=max).contains(&value) {
            errs.push(Invalid {
                option: name.into(),
                shown: value.to_string(),
                reason: format!("is outside 1 to {max}"),
            });
        }
    }

    if let Some(pass) = &req.auth_pass {
        // Never show the value: it is a secret. keepalived takes 1 to 8 characters and uses
        // only the first 8 of a longer one; shorter than 8 is refused here because every secret
        // must have 8 characters to be masked safely in the result (see the runtime), and
        // because VRRP PASS is a shared word on the wire: its full length is the least it has.
        let n = pass.chars().count();
        let reason = if pass.is_empty() {
            Some("is empty".to_string())
        } else if n > 8 {
            Some(format!(
                "has {n} characters: keepalived uses only the first 8 (VRRP PASS authentication), \
                 so peers configured with different long passwords would still agree"
            ))
        } else if n < 8 {
            Some(format!("has {n} characters; give exactly 8"))
        } else if !pass.chars().all(|c| c.is_ascii_graphic())
            || text::problem(pass, Syntax::KeepalivedWord).is_some()
        {
            Some("must be printable ASCII without spaces, quotes, braces, '#', '!' or '\\'".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            errs.push(Invalid {
                option: "auth_pass".into(),
                shown: "(hidden)".into(),
                reason,
            });
        }
    }

    check_command(&mut errs, "check_script", &req.check_script);
    if let Some(n) = &req.notify_script {
        check_command(&mut errs, "notify_script", n);
    }
    if req.script_user.len() > 32
        || req.script_user.starts_with('-')
        || req.script_user.contains(':')
    {
        errs.push(invalid(
            "script_user",
            &req.script_user,
            "is not a valid user name",
        ));
    } else {
        check_word(
            &mut errs,
            "script_user",
            &req.script_user,
            "a user name",
            32,
        );
    }
    check_word(
        &mut errs,
        "instance_name",
        &req.instance_name,
        "an instance name",
        MAX_INSTANCE_NAME,
    );

    // The interface and its network.
    let iface_v4: Vec<Ipv4Net> = iface_addrs.map(|a| a.to_vec()).unwrap_or_default();
    if iface_addrs.is_none() && !req.interface.is_empty() {
        errs.push(invalid(
            "interface",
            &req.interface,
            "does not exist on this host",
        ));
    }
    // Addresses of the interface other than the VIP itself (it is there on the holder).
    let own: Vec<Ipv4Net> = iface_v4
        .iter()
        .copied()
        .filter(|n| Some(n.addr()) != vip.map(|v| v.addr()))
        .collect();
    if let (Some(vip), Some(_)) = (vip, iface_addrs) {
        let inside = own
            .iter()
            .any(|n| n.contains(&vip.addr()) && n.prefix_len() == vip.prefix_len());
        if !inside {
            let nets: Vec<String> = own.iter().map(|n| n.trunc().to_string()).collect();
            errs.push(invalid(
                "vip",
                vip,
                format!(
                    "is not inside a network of interface '{}' (it has {}): the VIP must be on \
                     the interface's own subnet, with the same prefix",
                    req.interface,
                    if nets.is_empty() {
                        "no IPv4 address".to_string()
                    } else {
                        nets.join(", ")
                    }
                ),
            ));
        }
    }

    let src = match &req.unicast_src_ip {
        Some(s) => match s.parse::<Ipv4Addr>() {
            Ok(a) => {
                if iface_addrs.is_some() && !own.iter().any(|n| n.addr() == a) {
                    errs.push(invalid(
                        "unicast_src_ip",
                        s,
                        format!("is not an address of interface '{}'", req.interface),
                    ));
                }
                Some(a)
            }
            Err(_) => {
                errs.push(invalid("unicast_src_ip", s, "is not an IPv4 address"));
                None
            }
        },
        // The interface's first address in the VIP's network.
        None => match vip {
            Some(v) => {
                let found = own.iter().find(|n| n.contains(&v.addr())).map(|n| n.addr());
                if found.is_none() && iface_addrs.is_some() {
                    errs.push(invalid(
                        "unicast_src_ip",
                        "",
                        "is not given and the interface has no address in the VIP's network",
                    ));
                }
                found
            }
            None => None,
        },
    };
    if let (Some(s), Some(v)) = (src, vip) {
        if s == v.addr() {
            errs.push(invalid(
                "unicast_src_ip",
                s,
                "is the VIP itself; give the node's own address",
            ));
        }
    }

    let mut peers = Vec::new();
    if req.peers.is_empty() {
        errs.push(Invalid {
            option: "peers".into(),
            shown: "[]".into(),
            reason: "is empty: give the other keepalived nodes' addresses (unicast VRRP)".into(),
        });
    }
    for (i, p) in req.peers.iter().enumerate() {
        let option = format!("peers[{i}]");
        match p.trim().parse::<Ipv4Addr>() {
            Err(_) => errs.push(invalid(&option, p, "is not an IPv4 address")),
            Ok(a) if Some(a) == src || own.iter().any(|n| n.addr() == a) => errs.push(invalid(
                &option,
                p,
                "is this node's own address: peers are the other nodes",
            )),
            Ok(a) if Some(a) == vip.map(|v| v.addr()) => {
                errs.push(invalid(&option, p, "is the VIP, not a node"))
            }
            Ok(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                errs.push(invalid(&option, p, "is not a unicast node address"))
            }
            Ok(a) if peers.contains(&a) => errs.push(invalid(&option, p, "is listed twice")),
            Ok(a) => peers.push(a),
        }
    }

    if !errs.is_empty() {
        return Err(Invalids(errs));
    }
    match (vip, vrid, src) {
        (Some(vip), Some(vrid), Some(src)) => Ok(Settings {
            interface: req.interface.clone(),
            vip,
            virtual_router_id: vrid,
            priority: req.priority as u8,
            peers,
            unicast_src_ip: src,
            auth_pass: req.auth_pass.clone(),
            advert_int: req.advert_int as u32,
            nopreempt: req.nopreempt,
            check_script: req.check_script.clone(),
            check_interval: req.check_interval as u32,
            check_fall: req.check_fall as u32,
            check_rise: req.check_rise as u32,
            script_user: req.script_user.clone(),
            instance_name: req.instance_name.clone(),
            notify_script: req.notify_script.clone(),
        }),
        _ => Err(Invalids(vec![invalid(
            "vip",
            &req.vip,
            "could not be checked",
        )])),
    }
}

/// The whole keepalived.conf for `s`.
pub fn render(s: &Settings) -> String {
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "\nglobal_defs {{\n    enable_script_security\n    script_user {}\n}}\n",
        s.script_user
    ));
    out.push_str(&format!(
        "\nvrrp_script {CHECK_NAME} {{\n    script \"{}\"\n    interval {}\n    timeout {}\n    fall {}\n    rise {}\n}}\n",
        s.check_script, s.check_interval, s.check_interval, s.check_fall, s.check_rise
    ));
    out.push_str(&format!(
        "\nvrrp_instance {} {{\n    state BACKUP\n    interface {}\n    virtual_router_id {}\n    priority {}\n    advert_int {}\n",
        s.instance_name, s.interface, s.virtual_router_id, s.priority, s.advert_int
    ));
    if s.nopreempt {
        out.push_str("    nopreempt\n");
    }
    out.push_str(&format!(
        "    unicast_src_ip {}\n    unicast_peer {{\n",
        s.unicast_src_ip
    ));
    for p in &s.peers {
        out.push_str(&format!("        {p}\n"));
    }
    out.push_str("    }\n");
    if let Some(pass) = &s.auth_pass {
        out.push_str(&format!(
            "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}\n"
        ));
    }
    out.push_str(&format!(
        "    virtual_ipaddress {{\n        {} dev {}\n    }}\n    track_script {{\n        {CHECK_NAME}\n    }}\n",
        s.vip, s.interface
    ));
    if let Some(n) = &s.notify_script {
        out.push_str(&format!("    notify \"{n}\"\n"));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            interface: "eth0".into(),
            vip: "10.20.0.10/24".into(),
            virtual_router_id: None,
            priority: 150,
            peers: vec!["10.20.0.12".into()],
            unicast_src_ip: None,
            auth_pass: Some("s3cret-8".into()),
            advert_int: 1,
            nopreempt: true,
            check_script: "/usr/bin/pgrep -x haproxy".into(),
            check_interval: 2,
            check_fall: 2,
            check_rise: 2,
            script_user: "keepalived_script".into(),
            instance_name: "matrix_ha_vip".into(),
            notify_script: None,
        }
    }

    fn eth0() -> Vec<Ipv4Net> {
        vec!["10.20.0.11/24".parse().unwrap()]
    }

    fn reasons(req: &Request, addrs: Option<&[Ipv4Net]>) -> String {
        validate(req, addrs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_vip_and_the_interface() {
        let s = validate(&request(), Some(&eth0())).unwrap();
        assert_eq!(s.virtual_router_id, 10);
        assert_eq!(s.unicast_src_ip, "10.20.0.11".parse::<Ipv4Addr>().unwrap());
        assert_eq!(default_vrid("10.20.0.0".parse().unwrap()), 1);
        assert_eq!(default_vrid("10.20.1.255".parse().unwrap()), 255);
    }

    #[test]
    fn renders_the_whole_file() {
        let text = render(&validate(&request(), Some(&eth0())).unwrap());
        assert!(text.starts_with(HEADER));
        for needle in [
            "    enable_script_security\n    script_user keepalived_script\n",
            "    script \"/usr/bin/pgrep -x haproxy\"\n",
            "    state BACKUP\n    interface eth0\n    virtual_router_id 10\n    priority 150\n",
            "    nopreempt\n    unicast_src_ip 10.20.0.11\n    unicast_peer {\n        10.20.0.12\n    }\n",
            "        auth_type PASS\n        auth_pass s3cret-8\n",
            "        10.20.0.10/24 dev eth0\n",
            "    track_script {\n        chk_haproxy\n    }\n",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn no_auth_no_nopreempt_no_notify_lines() {
        let mut r = request();
        r.auth_pass = None;
        r.nopreempt = false;
        let text = render(&validate(&r, Some(&eth0())).unwrap());
        assert!(!text.contains("authentication"));
        assert!(!text.contains("nopreempt"));
        assert!(!text.contains("notify"));
        r.notify_script = Some("/usr/local/bin/vip-notify".into());
        let text = render(&validate(&r, Some(&eth0())).unwrap());
        assert!(text.contains("    notify \"/usr/local/bin/vip-notify\"\n"));
    }

    #[test]
    fn vip_held_now_is_not_its_own_network() {
        // On the holder the interface carries the VIP too; the node address still decides.
        let addrs: Vec<Ipv4Net> = vec!["10.20.0.10/24".parse().unwrap()];
        assert!(reasons(&request(), Some(&addrs)).contains("option 'vip'"));
        let mut both = eth0();
        both.push("10.20.0.10/24".parse().unwrap());
        assert!(validate(&request(), Some(&both)).is_ok());
    }

    #[test]
    fn refusals_name_the_option() {
        type Change = Box<dyn Fn(&mut Request)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.vip = "10.30.0.10/24".into()), "option 'vip': value \"10.30.0.10/24\" is not inside a network of interface 'eth0' (it has 10.20.0.0/24)"),
            (Box::new(|r| r.vip = "10.20.0.10/16".into()), "same prefix"),
            (Box::new(|r| r.vip = "10.20.0.10".into()), "has no prefix"),
            (Box::new(|r| r.vip = "10.20.0.0/24".into()), "network or broadcast"),
            (Box::new(|r| r.vip = "fd00::10/64".into()), "is IPv6"),
            (Box::new(|r| r.virtual_router_id = Some(0)), "option 'virtual_router_id': value 0 is outside 1 to 255"),
            (Box::new(|r| r.virtual_router_id = Some(256)), "option 'virtual_router_id': value 256"),
            (Box::new(|r| r.priority = 255), "option 'priority': value 255 is outside 1 to 254"),
            (Box::new(|r| r.auth_pass = Some("123456789".into())), "option 'auth_pass': value (hidden) has 9 characters"),
            (Box::new(|r| r.peers = vec![]), "option 'peers': value [] is empty"),
            (Box::new(|r| r.peers = vec!["10.20.0.11".into()]), "option 'peers[0]': value \"10.20.0.11\" is this node's own address"),
            (Box::new(|r| r.peers = vec!["10.20.0.12".into(), "10.20.0.12".into()]), "option 'peers[1]': value \"10.20.0.12\" is listed twice"),
            (Box::new(|r| r.peers = vec!["10.20.0.10".into()]), "is the VIP"),
            (Box::new(|r| r.unicast_src_ip = Some("10.20.0.99".into())), "option 'unicast_src_ip': value \"10.20.0.99\" is not an address of interface 'eth0'"),
            (Box::new(|r| r.check_script = "pgrep haproxy".into()), "option 'check_script'"),
            (Box::new(|r| r.check_script = "/bin/true\" }".into()), "option 'check_script'"),
            (Box::new(|r| r.check_script = "/usr/bin/pgrep 'a".into()), "option 'check_script': value \"/usr/bin/pgrep \\'a\" contains a character keepalived's parser treats specially"),
        ];
        for (change, expected) in cases {
            let mut r = request();
            change(&mut r);
            let msg = reasons(&r, Some(&eth0()));
            assert!(msg.contains(expected), "{expected:?} in {msg:?}");
            assert!(!msg.contains("s3cret"));
        }
    }

    #[test]
    fn missing_interface_is_reported() {
        assert!(reasons(&request(), None)
            .contains("option 'interface': value \"eth0\" does not exist on this host"));
    }
}
