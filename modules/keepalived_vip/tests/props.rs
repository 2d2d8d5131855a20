//! Property test: any instance name, password, script command or script user either fails
//! naming the option, or gives a keepalived.conf whose tokens (as keepalived's parser splits
//! them: blanks separate, `"..."` is one token, `{` `}` are tokens, `#` and `!` start comments)
//! are exactly the values given, with balanced blocks. Pure layer, bounded case count.

use ipnet::Ipv4Net;
use keepalived_vip::config::{render, validate, Request};
use matrix_ha_testkit::{tricky_text, word_or_tricky};
use proptest::prelude::*;

/// keepalived.conf's tokens, the way keepalived's reader splits a line.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    let mut quoted = String::new();
                    for q in chars.by_ref() {
                        if q == '"' {
                            break;
                        }
                        quoted.push(q);
                    }
                    out.push(quoted);
                }
                '#' | '!' => break,
                '{' | '}' => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    out.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

fn after<'a>(tokens: &'a [String], keyword: &str) -> Vec<&'a str> {
    tokens
        .windows(2)
        .filter(|w| w[0] == keyword)
        .map(|w| w[1].as_str())
        .collect()
}

fn eight_chars() -> impl Strategy<Value = String> {
    prop_oneof![
        (tricky_text(), tricky_text())
            .prop_map(|(a, b)| format!("{a}{b}xxxxxxxx").chars().take(8).collect()),
        Just("s3cret-8".to_string()),
        tricky_text(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_options_fail_named_or_tokenize_back_exactly(
        instance_name in word_or_tricky(&["matrix_ha_vip", "vip-1", "VI_1"]),
        auth_pass in eight_chars(),
        script_arg in word_or_tricky(&["-x haproxy", "haproxy", "-e /run/x"]),
        notify in proptest::option::of(word_or_tricky(&["/usr/local/bin/vip-notify"])),
        script_user in word_or_tricky(&["keepalived_script", "root"]),
    ) {
        let req = Request {
            interface: "eth0".into(),
            vip: "10.20.0.10/24".into(),
            priority: 150,
            peers: vec!["10.20.0.12".into()],
            auth_pass: Some(auth_pass.clone()),
            advert_int: 1,
            nopreempt: true,
            check_script: format!("/usr/bin/pgrep {script_arg}"),
            check_interval: 2,
            check_fall: 2,
            check_rise: 2,
            script_user: script_user.clone(),
            instance_name: instance_name.clone(),
            notify_script: notify.clone(),
            ..Request::default()
        };
        let eth0: Vec<Ipv4Net> = vec!["10.20.0.11/24".parse().unwrap()];
        match validate(&req, Some(&eth0)) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    ["instance_name", "auth_pass", "check_script", "notify_script", "script_user"]
                        .iter().any(|o| msg.contains(&format!("option '{o}'"))),
                    "a failure must name the option: {}", msg
                );
                // A short text occurs in any message by chance (" a " in "contains a
                // character"); an accepted-length secret must never appear.
                prop_assert!(!msg.contains(&auth_pass) || auth_pass.chars().count() != 8, "{}", msg);
            }
            Ok(settings) => {
                let t = tokens(&render(&settings));
                prop_assert_eq!(t.iter().filter(|x| *x == "{").count(), t.iter().filter(|x| *x == "}").count());
                prop_assert_eq!(after(&t, "vrrp_instance"), vec![instance_name.as_str()]);
                prop_assert_eq!(after(&t, "auth_pass"), vec![auth_pass.as_str()]);
                prop_assert_eq!(after(&t, "script_user"), vec![script_user.as_str()]);
                prop_assert_eq!(after(&t, "script"), vec![req.check_script.as_str()]);
                match &notify {
                    Some(n) => prop_assert_eq!(after(&t, "notify"), vec![n.as_str()]),
                    None => prop_assert!(after(&t, "notify").is_empty()),
                }
            }
        }
    }
}

/// A `keepalived` that runs in a network namespace of its own with the veth interface `mh0`
/// (10.20.0.11/24), for config tests of files that name it. Needs root (unshare).
fn keepalived_in_netns(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = keepalived_vip::system::find_program("keepalived")
        .expect("keepalived is installed (scripts/setup)");
    let wrapper = dir.join("keepalived");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare -n sh -c 'ip link add mh0 type veth peer name mh1 && ip link set mh0 up \
             && ip addr add 10.20.0.11/24 dev mh0 && exec \"$0\" \"$@\"' {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// Printable text keepalived's word syntax lets through: odd, but never a separator.
fn odd_word() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a',
        '_',
        '1',
        '.',
        ',',
        ':',
        ';',
        '-',
        '/',
        '=',
        '[',
        ']',
        '$',
        '`',
        '\'',
        '%',
        '@',
        '~',
        '^',
        '&',
        '*',
        '(',
        ')',
        '+',
        '|',
        '<',
        '>',
        '?',
        'é',
        '\u{1f600}',
    ]);
    prop::collection::vec(chars, 1..12).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the module accepts, keepalived's own config test (`keepalived -t`) accepts
    /// without a message.
    #[test]
    fn keepalived_accepts_every_file_the_module_writes(
        instance_name in prop_oneof![odd_word(), word_or_tricky(&["matrix_ha_vip", "VI_1"])],
        auth_pass in prop_oneof![
            odd_word().prop_map(|w| format!("{w}xxxxxxxx").chars().take(8).collect()),
            eight_chars(),
        ],
        script_arg in prop_oneof![odd_word(), word_or_tricky(&["-x haproxy", "-e /run/x"])],
        notify in proptest::option::of(prop_oneof![
            odd_word().prop_map(|w| format!("/usr/local/bin/{w}")),
            word_or_tricky(&["/usr/local/bin/vip-notify"]),
        ]),
    ) {
        let req = Request {
            interface: "mh0".into(),
            vip: "10.20.0.10/24".into(),
            priority: 150,
            peers: vec!["10.20.0.12".into()],
            auth_pass: Some(auth_pass),
            advert_int: 1,
            nopreempt: true,
            check_script: format!("/usr/bin/pgrep {script_arg}"),
            check_interval: 2,
            check_fall: 2,
            check_rise: 2,
            script_user: "root".into(),
            instance_name,
            notify_script: notify,
            ..Request::default()
        };
        let mh0: Vec<Ipv4Net> = vec!["10.20.0.11/24".parse().unwrap()];
        if let Ok(settings) = validate(&req, Some(&mh0)) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("keepalived.conf");
            std::fs::write(&file, render(&settings)).unwrap();
            let keepalived = keepalived_in_netns(dir.path());
            let verdict = keepalived_vip::system::config_test(&keepalived, &file);
            prop_assert!(verdict.is_ok(), "keepalived -t refused {:?}: {}", req, verdict.unwrap_err());
        }
    }
}
