//! The runtime as a real process: panic hook, stdout guard and exit code.
//!
//! This test binary is its own module. Started normally it runs the checks below, each of
//! which starts this same executable again with `MATRIX_HA_PROCESS_TEST=module`; that child
//! calls `matrix_ha_runtime::main` with a module that prints stray text and then panics or
//! fails while holding a secret, as a buggy module might.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use matrix_ha_runtime::{Context, DefaultValue, Failure, Kind, ModuleSpec, OptionSpec, Outcome};
use serde::Deserialize;

const SECRET: &str = "s3cret-token-4242";

#[derive(Deserialize)]
struct Args {
    action: String,
    token: Option<String>,
}

static SPEC: ModuleSpec = ModuleSpec {
    name: "process_probe",
    short_description: "Process test module",
    description: &[],
    options: &[
        OptionSpec::new("action", Kind::Str)
            .choices(&["panic", "fail", "ok", "flood"])
            .default(DefaultValue::Str("ok")),
        OptionSpec::new("token", Kind::Str).no_log(),
    ],
    required_if: &[],
    notes: &[],
    examples: "",
    returns: &[],
};

fn probe(args: Args, ctx: &mut Context) -> Result<Outcome, Failure> {
    let token = args.token.unwrap_or_default();
    println!("stray print from a module holding {token}");
    match args.action.as_str() {
        "panic" => panic!("index out of range while holding {token}"),
        "fail" => Err(Failure::new(format!("refused {token}"))),
        "flood" => {
            let line = "x".repeat(1023);
            for _ in 0..2048 {
                eprintln!("{line}");
            }
            Ok(Outcome::new(true, "flooded"))
        }
        _ => Ok(Outcome::new(!ctx.check_mode, "fine")),
    }
}

struct Child {
    code: i32,
    stdout: String,
    stderr: String,
}

fn child(args: &str) -> Child {
    let exe = std::env::current_exe().expect("own path");
    let mut proc = Command::new(exe)
        .arg("-")
        .env("MATRIX_HA_PROCESS_TEST", "module")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-run self");
    proc.stdin
        .take()
        .unwrap()
        .write_all(args.as_bytes())
        .unwrap();
    let out = proc.wait_with_output().unwrap();
    Child {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn only_json(c: &Child) -> serde_json::Value {
    assert_eq!(
        c.stdout.lines().count(),
        1,
        "stdout is one line: {:?}",
        c.stdout
    );
    serde_json::from_str(&c.stdout).expect("stdout is JSON")
}

fn panic_becomes_failed_json() {
    let c = child(&format!(r#"{{"action": "panic", "token": "{SECRET}"}}"#));
    assert_eq!(c.code, 1);
    let v = only_json(&c);
    assert_eq!(v["failed"], true);
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("internal error in module process_probe"),
        "{msg}"
    );
    assert!(
        msg.contains("index out of range while holding ********"),
        "{msg}"
    );
    assert!(
        !c.stdout.contains(SECRET) && !c.stderr.contains(SECRET),
        "{c:?}",
        c = (&c.stdout, &c.stderr)
    );
    assert!(
        !c.stderr.contains("panicked at"),
        "the hook prints nothing: {}",
        c.stderr
    );
}

fn stray_prints_go_to_stderr_after_the_result() {
    let c = child(r#"{"action": "ok", "token": "not-so-secret"}"#);
    assert_eq!(c.code, 0);
    let v = only_json(&c);
    assert_eq!(v["changed"], true);
    assert!(
        c.stderr.contains("stray print from a module"),
        "{}",
        c.stderr
    );
}

fn failure_exits_one_and_hides_the_secret() {
    let c = child(&format!(r#"{{"action": "fail", "token": "{SECRET}"}}"#));
    assert_eq!(c.code, 1);
    let v = only_json(&c);
    assert_eq!(v["msg"], "refused ********");
    assert_eq!(
        v["invocation"]["module_args"]["token"],
        "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    );
    assert!(!c.stdout.contains(SECRET));
}

/// More stray output than a pipe holds (64 KiB) must not block the module.
fn large_stray_output_does_not_block() {
    let c = child(r#"{"action": "flood"}"#);
    assert_eq!(c.code, 0, "{}", c.stdout);
    assert_eq!(only_json(&c)["changed"], true);
    assert!(c.stderr.len() > 1 << 20, "{} bytes kept", c.stderr.len());
    assert!(c.stderr.contains("more bytes of output dropped"));
}

fn main() -> ExitCode {
    if std::env::var("MATRIX_HA_PROCESS_TEST").as_deref() == Ok("module") {
        return matrix_ha_runtime::main(&SPEC, probe);
    }
    let checks: [(&str, fn()); 4] = [
        ("panic_becomes_failed_json", panic_becomes_failed_json),
        (
            "stray_prints_go_to_stderr_after_the_result",
            stray_prints_go_to_stderr_after_the_result,
        ),
        (
            "failure_exits_one_and_hides_the_secret",
            failure_exits_one_and_hides_the_secret,
        ),
        (
            "large_stray_output_does_not_block",
            large_stray_output_does_not_block,
        ),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match std::panic::catch_unwind(check) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
