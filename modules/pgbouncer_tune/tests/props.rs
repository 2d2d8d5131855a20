//! Property test: any `ignore_startup_parameters` and `settings` either fail naming the option,
//! or give a pgbouncer.ini that PgBouncer's reader (libusual's `parse_ini_file`, ported below)
//! reads back to exactly the values given. Runs the module in-process, bounded case count.

use std::os::unix::fs::MetadataExt;

use matrix_ha_runtime::{execute, Overrides};
use matrix_ha_testkit::{per_run, word_or_tricky};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// libusual's `parse_ini_file`, which PgBouncer reads its configuration with: per line, blanks
/// skipped, `#`/`;` lines skipped, `[section]`, else a key of `[A-Za-z0-9_.*-]`, blanks, `=`,
/// blanks, the value to the line's end with trailing white space cut. The file is read as a C
/// string: a NUL ends it. Returns (section, key, value), or the byte offset of a syntax error.
fn pgbouncer_read(text: &[u8]) -> Result<Vec<(String, String, String)>, usize> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let b = &text[..end];
    let (mut p, mut section, mut out) = (0, String::new(), Vec::new());
    let s = |from: usize, to: usize| String::from_utf8_lossy(&b[from..to]).into_owned();
    while p < b.len() {
        while p < b.len() && b[p].is_ascii_whitespace() || p < b.len() && b[p] == 0x0b {
            p += 1;
        }
        if p >= b.len() {
            break;
        }
        if b[p] == b'#' || b[p] == b';' {
            while p < b.len() && b[p] != b'\n' {
                p += 1;
            }
            continue;
        }
        if b[p] == b'[' {
            let start = p + 1;
            p = start;
            while p < b.len() && b[p] != b']' && b[p] != b'\n' {
                p += 1;
            }
            if p >= b.len() || b[p] != b']' {
                return Err(p);
            }
            section = s(start, p);
            p += 1;
            continue;
        }
        let key_start = p;
        while p < b.len() && (b[p].is_ascii_alphanumeric() || b"_.-*".contains(&b[p])) {
            p += 1;
        }
        let key = s(key_start, p);
        while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
            p += 1;
        }
        if p >= b.len() || b[p] != b'=' {
            return Err(p);
        }
        p += 1;
        while p < b.len() && (b[p] == b' ' || b[p] == b'\t') {
            p += 1;
        }
        let val_start = p;
        while p < b.len() && b[p] != b'\n' {
            p += 1;
        }
        let mut val_end = p;
        while val_end > val_start
            && (b[val_end - 1].is_ascii_whitespace() || b[val_end - 1] == 0x0b)
        {
            val_end -= 1;
        }
        out.push((section.clone(), key, s(val_start, val_end)));
    }
    Ok(out)
}

const STARTUP_WORDS: &[&str] = &[
    "extra_float_digits",
    "options",
    "search_path",
    "application_name",
    "pg_stat_statements.track",
    "1st",
];
const SETTING_WORDS: &[&str] = &[
    "server_lifetime",
    "server_reset_query",
    "application_name_add_host",
    "tcp_keepalive",
    "log_connections",
    "auth_type",
];

fn setting_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        matrix_ha_testkit::tricky_text().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ]
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    }
}

proptest! {
    // Bounded, and nothing written into the source tree on a failure (the input is printed).
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_startup_parameters_and_settings_fail_named_or_read_back_exactly(
        ignore in prop::collection::vec(word_or_tricky(STARTUP_WORDS), 0..4),
        settings in prop::collection::btree_map(word_or_tricky(SETTING_WORDS), setting_value(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let settings: Map<String, Value> = settings.into_iter().collect();
        let args = json!({
            "path": dir.path().join("pgbouncer.ini"),
            "auth_file": dir.path().join("userlist.txt"),
            "app_processes": 24,
            "max_connections": 330,
            "databases": [{"name": "synapse", "host": "10.20.0.10"}],
            "auth_users": [{"name": "synapse", "password": per_run("p-", 8)}],
            "owner": meta.uid().to_string(),
            "group": meta.gid().to_string(),
            "pgbouncer_binary": "/nonexistent/pgbouncer",
            "ignore_startup_parameters": ignore,
            "settings": settings,
        });
        let raw = serde_json::to_vec(&args).unwrap();
        let (result, failed) = execute(
            &pgbouncer_tune::SPEC, pgbouncer_tune::run, &raw, "the test", Overrides::default(),
        );
        if failed {
            let msg = result["msg"].as_str().unwrap_or_default();
            prop_assert!(
                msg.contains("option 'ignore_startup_parameters[") || msg.contains("option 'settings"),
                "a failure must name the option: {}", msg
            );
            prop_assert_eq!(&result["changed"], &json!(false));
            prop_assert!(!dir.path().join("pgbouncer.ini").exists());
        } else {
            let text = std::fs::read(dir.path().join("pgbouncer.ini")).unwrap();
            let entries = pgbouncer_read(&text).map_err(|at| {
                TestCaseError::fail(format!("PgBouncer's reader stops at byte {at}"))
            })?;
            let pgbouncer: Vec<(&str, &str)> = entries
                .iter()
                .filter(|(section, _, _)| section == "pgbouncer")
                .map(|(_, k, v)| (k.as_str(), v.as_str()))
                .collect();
            let sections: Vec<&str> = entries.iter().map(|(s, _, _)| s.as_str()).collect();
            prop_assert!(sections.iter().all(|s| ["databases", "pgbouncer"].contains(s)));
            let got_ignore = pgbouncer.iter().find(|(k, _)| *k == "ignore_startup_parameters");
            match got_ignore {
                None => prop_assert!(ignore.is_empty()),
                Some((_, v)) => {
                    let items: Vec<&str> = v.split(',').map(str::trim).collect();
                    prop_assert_eq!(items, ignore.iter().map(String::as_str).collect::<Vec<_>>());
                }
            }
            for (k, v) in &settings {
                let found: Vec<String> = pgbouncer
                    .iter()
                    .filter(|(key, _)| key == k)
                    .map(|(_, v)| v.to_string())
                    .collect();
                prop_assert_eq!(found, vec![text_of(v)], "settings.{}", k);
            }
            prop_assert_eq!(entries.iter().filter(|(_, k, _)| k == "auth_type").count(), 1);
        }
    }
}
