//! Property test: any marker, address or name either fails naming the option, or gives a hosts
//! file whose block, read as the resolver reads /etc/hosts (fields split on blanks, `#` starts
//! a comment, the first field the address), maps exactly the names given to their addresses.
//! The module runs in-process; bounded case count.

use std::collections::{BTreeMap, BTreeSet};

use matrix_ha_runtime::{execute, Overrides};
use matrix_ha_testkit::word_or_tricky;
use proptest::prelude::*;
use serde_json::json;

const IPS: &[&str] = &["10.20.0.10", "10.20.0.31", "fd00::1", "192.168.1.2"];
const NAMES: &[&str] = &[
    "chat.z3r0d3v.com",
    "patroni-1",
    "patroni-1.chat.z3r0d3v.com",
    "minio-2",
    "db",
];

/// address → names, of the lines between the block's BEGIN and END lines, as a resolver
/// reads them.
fn resolver_view(text: &str, marker: &str) -> BTreeMap<String, BTreeSet<String>> {
    let begin = format!("# BEGIN z3r0d3v.matrix_ha.etc_hosts {marker}");
    let end = format!("# END z3r0d3v.matrix_ha.etc_hosts {marker}");
    let mut inside = false;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line == begin {
            inside = true;
            continue;
        }
        if line == end {
            break;
        }
        if !inside {
            continue;
        }
        let data = line.split('#').next().unwrap_or_default();
        let mut fields = data.split_whitespace();
        if let Some(ip) = fields.next() {
            out.entry(ip.to_string())
                .or_default()
                .extend(fields.map(str::to_string));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_entries_fail_named_or_resolve_exactly(
        marker in word_or_tricky(&["intranet", "site one", "b-2"]),
        entries in prop::collection::vec(
            (word_or_tricky(IPS), prop::collection::vec(word_or_tricky(NAMES), 1..3)),
            0..4,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1\tlocalhost\n").unwrap();
        let given: Vec<_> = entries
            .iter()
            .map(|(ip, names)| json!({"ip": ip, "names": names}))
            .collect();
        let args = json!({"path": hosts, "marker": marker, "entries": given});
        let raw = serde_json::to_vec(&args).unwrap();
        let (result, failed) =
            execute(&etc_hosts::SPEC, etc_hosts::run, &raw, "the test", Overrides::default());
        let text = std::fs::read_to_string(&hosts).unwrap();
        if failed {
            let msg = result["msg"].as_str().unwrap_or_default();
            prop_assert!(
                msg.contains("option 'marker'") || msg.contains("option 'entries[")
                    || msg.contains("is given two"),
                "a failure must name the option: {}", msg
            );
            prop_assert_eq!(text, "127.0.0.1\tlocalhost\n");
        } else {
            let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (ip, names) in &entries {
                want.entry(ip.clone()).or_default().extend(names.iter().cloned());
            }
            prop_assert_eq!(resolver_view(&text, &marker), want);
            prop_assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        }
    }
}
