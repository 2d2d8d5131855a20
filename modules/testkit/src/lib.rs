//! Test support for the module crates: running a module binary as Ansible does and reading its
//! one JSON result, listing a scratch directory, and making credentials for one run.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// A finished module process.
pub struct Ran {
    /// The one JSON object it printed on stdout.
    pub value: Value,
    /// Whether it exited 0.
    pub ok: bool,
    pub stderr: String,
}

/// Reads a module process's output, asserting it printed exactly one JSON line on stdout.
pub fn result(out: Output) -> Ran {
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one line on stdout: {stdout} / stderr: {stderr}"
    );
    let value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    Ran {
        value,
        ok: out.status.success(),
        stderr,
    }
}

/// Runs the module binary `name` (built by the calling crate) with `flags` and `args_file`.
pub fn run(name: &str, args_file: &Path, flags: &[&str]) -> Ran {
    let out = Command::new(assert_cmd::cargo::cargo_bin(name))
        .args(flags)
        .arg(args_file)
        .output()
        .expect("the module binary runs");
    result(out)
}

/// The names in `dir`, sorted: to prove no temporary or backup file was left. The runtime's
/// lock files (`.NAME.matrix-ha.lock`, kept on purpose beside every file a module wrote or
/// tried to write) are left out.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !name.ends_with(".matrix-ha.lock"))
        .collect();
    names.sort();
    names
}

/// A credential made for this run: `prefix` and `bytes` random bytes from /dev/urandom, in hex.
pub fn per_run(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut buf,
    )
    .expect("random bytes");
    format!(
        "{prefix}{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Property-test text: short strings of the characters some configuration syntax gives a
/// meaning to (line breaks, NUL, separators, quotes, comment starts, Unicode line separators)
/// mixed with ordinary ones.
pub fn tricky_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let chars = prop::sample::select(vec![
        'a',
        'Z',
        '_',
        '1',
        '.',
        ',',
        ' ',
        '\t',
        '\n',
        '\r',
        '\0',
        '=',
        '[',
        ']',
        '#',
        ';',
        '"',
        '\'',
        '\\',
        '$',
        '`',
        '{',
        '}',
        '!',
        ':',
        '-',
        '/',
        '%',
        'é',
        '\u{85}',
        '\u{2028}',
        '\u{7f}',
        '\u{feff}',
        '\u{1f600}',
    ]);
    prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
}

/// Property-test text that is mostly ordinary: three times in four a word from `words`, else
/// [`tricky_text`] (so that both the refusals and the files written are exercised).
pub fn word_or_tricky(
    words: &'static [&'static str],
) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        3 => prop::sample::select(words).prop_map(str::to_string),
        1 => tricky_text(),
    ]
}
