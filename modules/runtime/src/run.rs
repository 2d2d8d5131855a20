//! The module entry point: command line, arguments, the run itself, one JSON result.
//!
//! Ansible runs a binary module as `MODULE ARGS_FILE`. Whatever happens after that (a bad
//! command line, an unreadable or malformed args file, invalid options, an error, a panic),
//! the process prints exactly one JSON object on stdout and exits 0 on success, 1 on failure.
//! Anything else written to stdout or stderr while the module runs is captured, scrubbed of
//! the secrets and written to stderr after the result (see [`Streams`]), so a stray print can
//! neither corrupt the result Ansible parses nor leak a secret.

use std::fs::File;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::docs;
use crate::params::{self, AnsibleFlags};
use crate::result::{Failure, Outcome, Report};
use crate::spec::ModuleSpec;

/// What a module's run sees besides its typed arguments.
#[derive(Debug, Default)]
pub struct Context {
    /// Check mode: report what would change, change nothing.
    pub check_mode: bool,
    /// Diff mode: return a `diff` of what changes.
    pub diff: bool,
    /// `_ansible_no_log`: set by a task's `no_log` and by `no_target_syslog`. As in
    /// ansible-core's `AnsibleModule` it only means "do not log on the target" (these modules
    /// never do); hiding a `no_log` task's result is the controller's job.
    pub no_log: bool,
    pub verbosity: u8,
    warnings: Vec<String>,
}

impl Context {
    pub fn new(flags: AnsibleFlags) -> Self {
        Context {
            check_mode: flags.check_mode,
            diff: flags.diff,
            no_log: flags.no_log,
            verbosity: flags.verbosity,
            warnings: Vec::new(),
        }
    }

    /// Adds a warning to the result (Ansible prints it in the task output).
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// A module's run: typed arguments in, an outcome or a failure out.
pub type RunFn<A> = fn(A, &mut Context) -> Result<Outcome, Failure>;

/// Where the args JSON comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--check` on the command line.
    pub check: bool,
    /// `--diff` on the command line.
    pub diff: bool,
}

/// The last panic's message and place, recorded by the hook installed by [`main`].
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Runs a module against raw args JSON and returns the result object and whether it failed.
///
/// This is the whole module minus the process around it, so tests can drive it in-process.
pub fn execute<A: DeserializeOwned>(
    spec: &ModuleSpec,
    run: RunFn<A>,
    raw: &[u8],
    source: &str,
    overrides: Overrides,
) -> (Value, bool) {
    let (result, failed, _) = execute_with_secrets(spec, run, raw, source, overrides);
    (result, failed)
}

/// [`execute`], also returning the secrets, to scrub the process's other output.
fn execute_with_secrets<A: DeserializeOwned>(
    spec: &ModuleSpec,
    run: RunFn<A>,
    raw: &[u8],
    source: &str,
    overrides: Overrides,
) -> (Value, bool, Vec<String>) {
    let no_secrets = |(result, failed): (Value, bool)| (result, failed, Vec::new());
    let object = match parse_object(raw, source) {
        Ok(o) => o,
        Err(msg) => return no_secrets(failure(msg)),
    };
    let (options, mut flags) = match params::split_flags(&object) {
        Ok(split) => split,
        Err(e) => return no_secrets(failure(e.to_string())),
    };
    flags.check_mode |= overrides.check;
    flags.diff |= overrides.diff;

    let parsed = params::parse(spec.options, spec.required_if, &options);
    let (values, secrets) = match &parsed {
        Ok(p) => (p.values.clone(), p.secrets.clone()),
        // Echo what was given, minus unknown options and no_log values.
        Err(_) => (options.clone(), Vec::new()),
    };
    let invocation = params::masked(spec.options, &values);
    let mut ctx = Context::new(flags);

    let outcome = match parsed {
        Err(e) => Err(Failure::new(e.to_string())),
        Ok(p) => guarded(spec, &mut ctx, move |ctx| {
            let args: A = serde_json::from_value(Value::Object(p.values)).map_err(|e| {
                Failure::new(format!(
                    "internal error: the options of {} do not match its typed arguments: {e}",
                    spec.name
                ))
            })?;
            run(args, ctx)
        }),
    };
    let (result, failed) = Report {
        outcome,
        warnings: std::mem::take(&mut ctx.warnings),
        invocation: Some(invocation),
        secrets: &secrets,
        show_diff: ctx.diff,
    }
    .into_json();
    (result, failed, secrets)
}

/// Runs `body`, turning a panic into a failure that names the module.
fn guarded(
    spec: &ModuleSpec,
    ctx: &mut Context,
    body: impl FnOnce(&mut Context) -> Result<Outcome, Failure>,
) -> Result<Outcome, Failure> {
    match panic::catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Ok(result) => result,
        Err(payload) => {
            let recorded = LAST_PANIC.lock().ok().and_then(|mut p| p.take());
            let text = recorded.unwrap_or_else(|| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string())
            });
            Err(Failure::new(format!(
                "internal error in module {} (a bug: please report it); nothing further was \
                 changed: {text}",
                spec.name
            )))
        }
    }
}

fn parse_object(raw: &[u8], source: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "the arguments in {source} must be a JSON object of options, not {}",
            json_kind(&other)
        )),
        // serde_json's message gives line and column, never the content.
        Err(e) => Err(format!("the arguments in {source} are not valid JSON: {e}")),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn failure(msg: String) -> (Value, bool) {
    Report {
        outcome: Err(Failure::new(msg)),
        warnings: Vec::new(),
        invocation: None,
        secrets: &[],
        show_diff: false,
    }
    .into_json()
}

fn command(spec: &ModuleSpec) -> Command {
    Command::new(spec.name)
        .version(docs::VERSION)
        .about(format!(
            "{} ({}): an Ansible module; also runs by hand",
            spec.short_description,
            spec.fqcn()
        ))
        .arg(
            Arg::new("args").value_name("ARGS").help(
                "JSON file of module options (as Ansible writes it), or - for standard input",
            ),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .action(ArgAction::SetTrue)
                .help("Check mode: report what would change, change nothing"),
        )
        .arg(
            Arg::new("diff")
                .long("diff")
                .action(ArgAction::SetTrue)
                .help("Return the before/after difference"),
        )
        .arg(
            Arg::new("docs")
                .long("docs")
                .action(ArgAction::SetTrue)
                .help("Print the ansible-doc sidecar YAML of this module and exit"),
        )
        .after_help(docs::help_options(spec))
}

/// The `main` of every module binary.
pub fn main<A: DeserializeOwned>(spec: &'static ModuleSpec, run: RunFn<A>) -> ExitCode {
    let mut streams = Streams::open();
    panic::set_hook(Box::new(|info| {
        if let Ok(mut slot) = LAST_PANIC.lock() {
            *slot = Some(info.to_string());
        }
    }));
    let (result, secrets) = run_main(spec, run);
    match result {
        Printed::Text(text) => {
            let _ = streams.result.write_all(text.as_bytes());
            streams.finish(&secrets);
            ExitCode::SUCCESS
        }
        Printed::Json(value, failed) => {
            let text = serde_json::to_string(&value).unwrap_or_else(|_| {
                r#"{"failed": true, "changed": false, "msg": "cannot encode the result"}"#
                    .to_string()
            });
            let _ = writeln!(streams.result, "{text}");
            let _ = streams.result.flush();
            streams.finish(&secrets);
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// What the process prints on its real stdout.
enum Printed {
    /// `--help`, `--version`, `--docs`.
    Text(String),
    /// The module result, and whether it failed.
    Json(Value, bool),
}

fn run_main<A: DeserializeOwned>(
    spec: &'static ModuleSpec,
    run: RunFn<A>,
) -> (Printed, Vec<String>) {
    let fail = |msg: String| {
        let (value, failed) = failure(msg);
        (Printed::Json(value, failed), Vec::new())
    };
    let matches = match command(spec).try_get_matches() {
        Ok(m) => m,
        Err(e)
            if e.kind() == clap::error::ErrorKind::DisplayHelp
                || e.kind() == clap::error::ErrorKind::DisplayVersion =>
        {
            return (Printed::Text(e.render().to_string()), Vec::new());
        }
        Err(e) => {
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            return fail(format!("command line: {first} (see --help)"));
        }
    };
    if matches.get_flag("docs") {
        return (Printed::Text(docs::sidecar_yaml(spec)), Vec::new());
    }
    let overrides = Overrides {
        check: matches.get_flag("check"),
        diff: matches.get_flag("diff"),
    };
    let (raw, source) = match matches.get_one::<String>("args").map(String::as_str) {
        None => {
            return fail(
                "no arguments given: pass the path of a JSON args file, or - to read it from \
                 standard input (see --help)"
                    .to_string(),
            )
        }
        Some("-") => match read_stdin() {
            Ok(buf) => (buf, "standard input".to_string()),
            Err(e) => return fail(format!("cannot read standard input: {e}")),
        },
        Some(path) => match std::fs::read(path) {
            Ok(buf) => (buf, format!("'{path}'")),
            Err(e) => return fail(format!("cannot read the arguments file '{path}': {e}")),
        },
    };
    let (value, failed, secrets) = execute_with_secrets(spec, run, &raw, &source, overrides);
    (Printed::Json(value, failed), secrets)
}

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf)?;
    Ok(buf)
}

/// At most this much of a module's stray output is kept (the rest is counted and dropped).
const CAPTURE_LIMIT: usize = 1 << 20;

/// How long the end of the run waits for the capture to drain once the pipe is closed (a
/// daemon started by a module could hold it open forever).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The process's streams while a module runs.
///
/// The real stdout is kept for the result alone. File descriptors 1 and 2 are pointed at a
/// pipe that a thread drains: anything else the module (or a library, or a child process)
/// writes is collected, scrubbed of the secrets once they are known, and written to the real
/// stderr after the result. So stray output can neither corrupt the JSON nor leak a secret.
struct Streams {
    result: Box<dyn Write>,
    capture: Option<Capture>,
}

struct Capture {
    stderr: File,
    collected: Arc<Mutex<(Vec<u8>, usize)>>,
    done: mpsc::Receiver<()>,
}

impl Streams {
    fn open() -> Streams {
        let stdout = std::io::stdout();
        let Ok(saved) = nix::unistd::dup(&stdout) else {
            return Streams {
                result: Box::new(stdout),
                capture: None,
            };
        };
        let capture = Capture::start().ok();
        if capture.is_none() {
            // No pipe: at least keep stray output off the result's stream.
            let _ = nix::unistd::dup2_stdout(std::io::stderr());
        }
        Streams {
            result: Box::new(File::from(saved)),
            capture,
        }
    }

    /// Closes the capture and writes what it collected, scrubbed, to the real stderr.
    fn finish(&mut self, secrets: &[String]) {
        let _ = self.result.flush();
        let Some(mut capture) = self.capture.take() else {
            return;
        };
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(&null);
        }
        let _ = capture.done.recv_timeout(DRAIN_WAIT);
        let (bytes, dropped) = match capture.collected.lock() {
            Ok(mut c) => (std::mem::take(&mut c.0), c.1),
            Err(_) => return,
        };
        if bytes.is_empty() {
            return;
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        crate::result::scrub_str(&mut text, secrets);
        if dropped > 0 {
            text.push_str(&format!("\n[{dropped} more bytes of output dropped]\n"));
        }
        let _ = capture.stderr.write_all(text.as_bytes());
    }
}

impl Capture {
    fn start() -> nix::Result<Capture> {
        let stderr = File::from(nix::unistd::dup(std::io::stderr())?);
        let (read, write) = nix::unistd::pipe()?;
        let collected = Arc::new(Mutex::new((Vec::new(), 0usize)));
        let (tx, done) = mpsc::channel();
        let sink = Arc::clone(&collected);
        std::thread::spawn(move || {
            let mut pipe = File::from(read);
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut c) = sink.lock() {
                    let room = CAPTURE_LIMIT.saturating_sub(c.0.len()).min(n);
                    c.0.extend_from_slice(&chunk[..room]);
                    c.1 += n - room;
                }
            }
            let _ = tx.send(());
        });
        nix::unistd::dup2_stdout(&write)?;
        nix::unistd::dup2_stderr(&write)?;
        Ok(Capture {
            stderr,
            collected,
            done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DefaultValue, Kind, OptionSpec};
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Args {
        mode: String,
        token: Option<String>,
    }

    static SPEC: ModuleSpec = ModuleSpec {
        name: "probe",
        short_description: "Test module",
        description: &[],
        options: &[
            OptionSpec::new("mode", Kind::Str)
                .choices(&["ok", "fail", "panic", "warn"])
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
        match args.mode.as_str() {
            "fail" => Err(Failure::new(format!("refused token {token}"))),
            "panic" => panic!("exploded while holding {token}"),
            "warn" => {
                ctx.warn(format!("token {token} looks weak"));
                Ok(Outcome::new(false, "ok"))
            }
            _ => Ok(Outcome::new(!ctx.check_mode, format!("ran with {token}"))),
        }
    }

    fn run_json(args: Value) -> (Value, bool) {
        execute(
            &SPEC,
            probe,
            args.to_string().as_bytes(),
            "test",
            Overrides::default(),
        )
    }

    #[test]
    fn success_echoes_masked_invocation() {
        let (v, failed) = run_json(json!({"token": "tk-123456", "_ansible_check_mode": false}));
        assert!(!failed);
        assert_eq!(v["changed"], json!(true));
        assert_eq!(v["msg"], json!("ran with ********"));
        assert_eq!(
            v["invocation"]["module_args"],
            json!({"mode": "ok", "token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"})
        );
        assert!(!v.to_string().contains("tk-123456"));
    }

    #[test]
    fn panic_becomes_failed_json_without_the_secret() {
        let (v, failed) = run_json(json!({"mode": "panic", "token": "tk-123456"}));
        assert!(failed);
        assert_eq!(v["failed"], json!(true));
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains("internal error in module probe"), "{msg}");
        assert!(msg.contains("exploded while holding ********"), "{msg}");
        assert!(!v.to_string().contains("tk-123456"));
    }

    #[test]
    fn failures_and_warnings_are_scrubbed() {
        let (v, failed) = run_json(json!({"mode": "fail", "token": "tk-123456"}));
        assert!(failed);
        assert_eq!(v["msg"], json!("refused token ********"));
        let (v, _) = run_json(json!({"mode": "warn", "token": "tk-123456"}));
        assert_eq!(v["warnings"], json!(["token ******** looks weak"]));
    }

    #[test]
    fn check_mode_flag_and_override() {
        let (v, _) = run_json(json!({"_ansible_check_mode": "yes"}));
        assert_eq!(v["changed"], json!(false));
        let (v, _) = execute(
            &SPEC,
            probe,
            b"{}",
            "test",
            Overrides {
                check: true,
                diff: false,
            },
        );
        assert_eq!(v["changed"], json!(false));
    }

    #[test]
    fn malformed_input_is_a_clear_failure() {
        for (raw, needle) in [
            (&b"{not json"[..], "are not valid JSON"),
            (b"[1,2]", "must be a JSON object of options, not a list"),
            (b"", "are not valid JSON"),
            (
                b"{\"mode\": \"nope\"}",
                "option 'mode': value \"nope\" is not one of",
            ),
            (
                b"{\"nope\": 1}",
                "unsupported option 'nope'; valid options are: mode, token",
            ),
        ] {
            let (v, failed) = execute(&SPEC, probe, raw, "'args.json'", Overrides::default());
            assert!(failed);
            assert!(v["msg"].as_str().unwrap().contains(needle), "{v}");
        }
    }

    #[test]
    fn invalid_options_still_hide_secrets() {
        let (v, failed) = run_json(json!({"mode": "nope", "token": "tk-123456", "extra": "x"}));
        assert!(failed);
        assert!(!v.to_string().contains("tk-123456"), "{v}");
        assert_eq!(
            v["invocation"]["module_args"]["token"],
            json!(params::NO_LOG_MARKER)
        );
        assert!(v["invocation"]["module_args"].get("extra").is_none());
    }
}
