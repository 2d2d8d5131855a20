//! Property test: any root user, root password or extra variable either fails naming the
//! option, or gives an env file whose lines systemd's `EnvironmentFile` reader takes as exactly
//! the values given (`KEY="value"`: the text between the quotes, verbatim, when it holds no
//! `"` or `\`). The module runs in-process; bounded case count.

use std::collections::BTreeMap;

use matrix_ha_runtime::{execute, Overrides};
use matrix_ha_testkit::{per_run, tricky_text, word_or_tricky};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The variables of an env file as systemd reads double-quoted assignments; a line of any
/// other shape (or a quote or backslash inside the value) is an error naming the line.
fn systemd_env(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line.split_once('=').ok_or(line.to_string())?;
        let value = rest
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|v| !v.contains(['"', '\\']))
            .ok_or(line.to_string())?;
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            return Err(line.to_string());
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

fn password() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(()).prop_map(|_| per_run("pw-", 6)),
        2 => tricky_text().prop_map(|t| format!("{t}{}", per_run("", 4))),
        1 => tricky_text(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_credentials_and_variables_fail_named_or_read_back_exactly(
        root_user in word_or_tricky(&["matrix-admin", "matrix-admin", "ab", "admin user"]),
        root_password in password(),
        extra in prop::collection::btree_map(
            word_or_tricky(&["MINIO_BROWSER", "MINIO_OPTS", "MINIO_API_CORS_ALLOW_ORIGIN", "MINIO_ROOT_USER", "minio_x"]),
            word_or_tricky(&["off", "--console-address :9001", ""]).prop_map(Value::from),
            0..3,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("minio");
        let args = json!({
            "env_path": env,
            "pools": [{
                "hosts": (1..=4).map(|i| format!("minio-{i}.chat.z3r0d3v.com")).collect::<Vec<_>>(),
                "drives": (1..=4).map(|i| format!("/mnt/disk{i}/minio")).collect::<Vec<_>>(),
            }],
            "root_user": root_user,
            "root_password": root_password,
            "extra_env": extra,
        });
        let raw = serde_json::to_vec(&args).unwrap();
        let (result, failed) =
            execute(&minio_pool::SPEC, minio_pool::run, &raw, "the test", Overrides::default());
        if failed {
            let msg = result["msg"].as_str().unwrap_or_default();
            prop_assert!(
                ["option 'root_user'", "option 'root_password'", "option 'extra_env"]
                    .iter().any(|o| msg.contains(o)),
                "a failure must name the option: {}", msg
            );
            prop_assert!(!env.exists());
        } else {
            let vars = systemd_env(&std::fs::read_to_string(&env).unwrap())
                .map_err(|line| TestCaseError::fail(format!("systemd cannot read {line:?}")))?;
            prop_assert_eq!(&vars["MINIO_ROOT_USER"], &root_user);
            prop_assert!(vars["MINIO_ROOT_PASSWORD"] == root_password, "password changed");
            for (k, v) in &extra {
                prop_assert_eq!(&vars[k], v.as_str().unwrap_or_default());
            }
            let _: &Value = &result;
        }
    }
}
