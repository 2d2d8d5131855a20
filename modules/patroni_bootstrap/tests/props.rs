//! Property test: any passwords and `parameters` values either fail naming the option, or give
//! a patroni.yml that PyYAML (YAML 1.1, what Patroni reads it with) reads back to exactly the
//! values and types given. The module runs in-process; each case renders several files and one
//! Debian python3 reads them all. Bounded case count.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use matrix_ha_runtime::{execute, Overrides};
use matrix_ha_testkit::{per_run, tricky_text};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Values YAML 1.1 reads as another type when written plain, and ordinary ones.
const YAML_WORDS: &[&str] = &[
    "on",
    "off",
    "yes",
    "no",
    "y",
    "n",
    "true",
    "False",
    "~",
    "null",
    "190:20:30",
    "0x_1F",
    "1_000",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    ".inf",
    "-.NaN",
    "0o17",
    "012",
    "1e3",
    "+1",
    "16MB",
    "",
    "a: b",
    "- x",
    "{x}",
    "&a",
    "*a",
    "!!str",
    "%YAML",
    "@x",
    "'q'",
];

const PARAMETERS: &[&str] = &[
    "work_mem",
    "jit",
    "log_line_prefix",
    "search_path",
    "application_name",
    "track_io_timing",
    "log_min_duration_statement",
    "pg_stat_statements.track",
];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(YAML_WORDS).prop_map(Value::from),
        tricky_text().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        // Quarters: exact in binary and in decimal, so serde_json reads them back exactly.
        (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
    ]
}

fn password() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(YAML_WORDS).prop_map(|w| format!("{w}{}", per_run("", 4))),
        (tricky_text(), tricky_text()).prop_map(|(a, b)| format!("{a}{}{b}", per_run("", 4))),
        prop::sample::select(&["190:20:30", "0x_1234_5678", "1_000_000", "2001-12-14"][..])
            .prop_map(str::to_string),
    ]
}

/// One rendering: the options given, and where the file went (None: the module failed).
struct Case {
    passwords: [String; 3],
    parameters: Map<String, Value>,
    file: Option<PathBuf>,
}

/// PyYAML's reading of every file, in order, by one Debian python3 reading the paths on stdin.
fn pyyaml(files: &[PathBuf]) -> Vec<Value> {
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import json, sys, yaml\n\
             print(json.dumps([yaml.safe_load(open(p)) for p in json.load(sys.stdin)]))",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("Debian's python3 runs");
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&paths).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML failed to read a file");
    serde_json::from_slice(&out.stdout).unwrap()
}

proptest! {
    // Bounded, and nothing written into the source tree on a failure (the input is printed).
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_passwords_and_parameters_fail_named_or_read_back_with_their_types(
        inputs in prop::collection::vec(
            (
                [password(), password(), password()],
                prop::collection::btree_map(prop::sample::select(PARAMETERS).prop_map(str::to_string), value(), 0..5),
            ),
            12,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = Vec::new();
        for (i, (passwords, parameters)) in inputs.into_iter().enumerate() {
            let config = dir.path().join(format!("patroni-{i}.yml"));
            let parameters: Map<String, Value> = parameters.into_iter().collect();
            let args = json!({
                "config_path": config,
                "owner": "root",
                "group": "root",
                "scope": "chat",
                "name": "patroni-1",
                "etcd_hosts": ["10.20.0.31:2379"],
                "connect_address": "10.20.0.31:5432",
                "pg_hba_networks": ["10.20.0.0/24"],
                "superuser_password": passwords[0],
                "replication_password": passwords[1],
                "restapi_password": passwords[2],
                "max_connections": 330,
                "memory_mb": 32768,
                "cpus": 8,
                "validate": false,
                "wait_for_cluster": false,
                "parameters": parameters,
            });
            let raw = serde_json::to_vec(&args).unwrap();
            let (result, failed) = execute(
                &patroni_bootstrap::SPEC, patroni_bootstrap::run, &raw, "the test",
                Overrides::default(),
            );
            if failed {
                let msg = result["msg"].as_str().unwrap_or_default();
                prop_assert!(
                    ["option 'parameters.", "option 'superuser_password'",
                     "option 'replication_password'", "option 'restapi_password'"]
                        .iter().any(|o| msg.contains(o)),
                    "a failure must name the option: {}", msg
                );
                prop_assert!(!config.exists());
            }
            cases.push(Case { passwords, parameters, file: (!failed).then_some(config) });
        }
        let files: Vec<PathBuf> = cases.iter().filter_map(|c| c.file.clone()).collect();
        let docs = pyyaml(&files);
        let written = cases.iter().filter(|c| c.file.is_some());
        for (case, doc) in written.zip(&docs) {
            let pg = &doc["postgresql"];
            prop_assert!(pg["authentication"]["superuser"]["password"] == json!(case.passwords[0]), "superuser password retyped");
            prop_assert!(pg["authentication"]["replication"]["password"] == json!(case.passwords[1]), "replication password retyped");
            prop_assert!(doc["restapi"]["authentication"]["password"] == json!(case.passwords[2]), "REST password retyped");
            for (key, given) in &case.parameters {
                let local = &pg["parameters"][key];
                let read = if local.is_null() {
                    &doc["bootstrap"]["dcs"]["postgresql"]["parameters"][key]
                } else {
                    local
                };
                prop_assert_eq!(read, given, "parameters.{}", key);
            }
        }
    }
}
