//! Text that goes into a configuration file: one check, by the syntax of the file it lands in.
//!
//! Every module renders its files from options, and a value that holds the file's line break
//! or separators would write more than one value: an item `"x\nauth_type = trust"` of a
//! comma-separated pgbouncer.ini list is two directives. So every scalar an option puts into a
//! file goes through [`check`] with the [`Syntax`] of the place it lands in, before anything is
//! rendered. Control characters (NUL, CR, LF, tab, DEL, the C1 range) and the Unicode line and
//! paragraph separators are refused everywhere; each syntax adds its own separators. Values are
//! refused, never escaped or trimmed: what is written reads back as exactly what was given.
//!
//! Names have their own grammars: [`is_parameter_name`] is PostgreSQL's and PgBouncer's.

use thiserror::Error;

/// Where a value is written, which decides what it may not contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A value on a line of its own that the reader takes whole (a PostgreSQL parameter value,
    /// which Patroni writes quoted into postgresql.conf; a string of our YAML, which is
    /// quoted). Only control characters and line separators are refused.
    Line,
    /// The value of a `key = value` line of an ini file (PgBouncer's reader): the line's end
    /// ends it, and the reader strips blanks around it, so it may not start or end with one.
    IniValue,
    /// One item of a comma-separated ini list (`admin_users`, `ignore_startup_parameters`):
    /// also no comma and no blank, which PgBouncer splits and trims on.
    IniListItem,
    /// A word of keepalived.conf: keepalived splits on blanks, `"` quotes, `{` `}` delimit
    /// blocks, `#` and `!` start comments and `\` escapes.
    KeepalivedWord,
    /// A double-quoted value of a systemd `EnvironmentFile`: no `"` and no `\` (quoting and
    /// escapes), no `$` or `` ` `` (expanded by shells that source the file).
    EnvValue,
    /// A field of /etc/hosts: fields are split on blanks and `#` starts a comment.
    HostsField,
}

impl Syntax {
    /// The characters, besides control characters and line separators, the syntax refuses.
    fn separators(self) -> &'static [char] {
        match self {
            Syntax::Line | Syntax::IniValue => &[],
            Syntax::IniListItem => &[','],
            Syntax::KeepalivedWord => &['"', '{', '}', '#', '!', '\\'],
            Syntax::EnvValue => &['"', '\\', '$', '`'],
            Syntax::HostsField => &['#'],
        }
    }

    /// Whether blanks separate values in this syntax (so a value may hold none).
    fn splits_on_blanks(self) -> bool {
        matches!(
            self,
            Syntax::IniListItem | Syntax::KeepalivedWord | Syntax::HostsField
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Syntax::Line => "a line of a configuration file",
            Syntax::IniValue => "a value of an ini file",
            Syntax::IniListItem => "an item of a comma-separated ini list",
            Syntax::KeepalivedWord => "a word of keepalived.conf",
            Syntax::EnvValue => "a double-quoted value of an env file",
            Syntax::HostsField => "a field of a hosts file",
        }
    }
}

/// A value the file it is meant for cannot carry as it is.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("option '{option}': {shown} {reason}")]
pub struct TextError {
    pub option: String,
    /// `value "..."` (escaped, cut at 80 characters), or a placeholder for a secret.
    pub shown: String,
    pub reason: String,
}

/// Whether `c` breaks a line or is a control character, for any reader.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// How a value is shown in an error: escaped (`\0`, `\n`, `\u{7f}`), cut at 80 characters.
pub fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    let more = if cut.len() < value.len() { "…" } else { "" };
    format!("value {cut:?}{more}")
}

/// Why `value` cannot be written where `syntax` says, or `None` when it can.
pub fn problem(value: &str, syntax: Syntax) -> Option<String> {
    if let Some(c) = value.chars().find(|c| is_forbidden_char(*c)) {
        return Some(format!(
            "contains the control character {:?}, which {} cannot hold",
            c,
            syntax.describe()
        ));
    }
    if syntax.splits_on_blanks() && value.chars().any(char::is_whitespace) {
        return Some(format!(
            "contains a blank, which separates values in {}",
            syntax.describe()
        ));
    }
    if let Some(c) = value.chars().find(|c| syntax.separators().contains(c)) {
        return Some(format!(
            "contains {c:?}, which has a meaning in {}",
            syntax.describe()
        ));
    }
    if syntax == Syntax::IniValue && value.trim() != value {
        return Some(
            "starts or ends with a blank, which the ini reader strips (the value would not \
             read back as given)"
                .to_string(),
        );
    }
    None
}

/// Checks that option `option`'s value can be written where `syntax` says; the error shows the
/// value, escaped.
pub fn check(option: &str, value: &str, syntax: Syntax) -> Result<(), TextError> {
    match problem(value, syntax) {
        None => Ok(()),
        Some(reason) => Err(TextError {
            option: option.to_string(),
            shown: shown(value),
            reason,
        }),
    }
}

/// [`check`] for a secret: the error never shows the value.
pub fn check_secret(option: &str, value: &str, syntax: Syntax) -> Result<(), TextError> {
    match problem(value, syntax) {
        None => Ok(()),
        Some(reason) => Err(TextError {
            option: option.to_string(),
            shown: "the value (hidden: no_log)".to_string(),
            reason,
        }),
    }
}

/// Checks that `value` has 1 to `max` characters.
pub fn check_len(option: &str, value: &str, max: usize) -> Result<(), TextError> {
    let n = value.chars().count();
    if n == 0 {
        return Err(TextError {
            option: option.to_string(),
            shown: shown(value),
            reason: "is empty".to_string(),
        });
    }
    if n > max {
        return Err(TextError {
            option: option.to_string(),
            shown: shown(value),
            reason: format!("has {n} characters; at most {max} are allowed"),
        });
    }
    Ok(())
}

/// Whether `name` is a configuration parameter name as postgresql.conf's grammar has it (and
/// PgBouncer's ini reader takes): an identifier (a letter or `_`, then letters, digits or
/// `_`), or an extension's custom parameter `identifier.identifier`; at most 63 bytes
/// (PostgreSQL's NAMEDATALEN). Letters are ASCII; both read names case-insensitively.
pub fn is_parameter_name(name: &str) -> bool {
    fn identifier(part: &str) -> bool {
        let mut bytes = part.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
    name.len() <= 63 && name.split('.').count() <= 2 && name.split('.').all(identifier)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_reported_injection_is_refused_and_named() {
        let item = "extra_float_digits\nauth_type = trust\n[databases]\n* = host=10.66.66.66";
        let err = check("ignore_startup_parameters[0]", item, Syntax::IniListItem).unwrap_err();
        assert_eq!(
            err.to_string(),
            "option 'ignore_startup_parameters[0]': value \"extra_float_digits\\nauth_type = \
             trust\\n[databases]\\n* = host=10.66.66.66\" contains the control character '\\n', \
             which an item of a comma-separated ini list cannot hold"
        );
    }

    #[test]
    fn every_syntax_refuses_control_characters() {
        for syntax in [
            Syntax::Line,
            Syntax::IniValue,
            Syntax::IniListItem,
            Syntax::KeepalivedWord,
            Syntax::EnvValue,
            Syntax::HostsField,
        ] {
            for bad in [
                "a\0b", "a\rb", "a\nb", "a\tb", "a\u{7f}", "a\u{85}", "\u{2028}",
            ] {
                assert!(problem(bad, syntax).is_some(), "{bad:?} in {syntax:?}");
            }
            assert!(problem("plain-value_1.2", syntax).is_none(), "{syntax:?}");
        }
        let err = check("settings.x", "a\0b", Syntax::IniValue).unwrap_err();
        assert!(err.to_string().contains("value \"a\\0b\""), "{err}");
    }

    #[test]
    fn separators_by_syntax() {
        assert!(problem("a,b", Syntax::IniListItem).is_some());
        assert!(problem("a b", Syntax::IniListItem).is_some());
        assert!(problem("a,b c", Syntax::IniValue).is_none());
        assert!(problem(" a", Syntax::IniValue).is_some());
        assert!(problem("a ", Syntax::IniValue).is_some());
        for c in ["\"", "{", "}", "#", "!", "\\", " "] {
            assert!(
                problem(&format!("a{c}b"), Syntax::KeepalivedWord).is_some(),
                "{c}"
            );
        }
        for c in ["\"", "\\", "$", "`"] {
            assert!(
                problem(&format!("a{c}b"), Syntax::EnvValue).is_some(),
                "{c}"
            );
        }
        assert!(problem("a b", Syntax::EnvValue).is_none());
        assert!(problem("a#b", Syntax::HostsField).is_some());
        assert!(problem("190:20:30 on yes", Syntax::Line).is_none());
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "x".repeat(10_000_000);
        let err = check_len("root_user", &long, 128).unwrap_err().to_string();
        assert!(err.len() < 200, "{}", err.len());
        assert!(err.contains("has 10000000 characters; at most 128 are allowed"));
        assert!(check_len("x", "", 3).is_err());
        assert!(check_len("x", "abc", 3).is_ok());
    }

    #[test]
    fn secrets_are_not_shown() {
        let err = check_secret("auth_pass", "se cret", Syntax::KeepalivedWord).unwrap_err();
        assert!(!err.to_string().contains("se cret"));
        assert!(err.to_string().contains("hidden: no_log"));
    }

    #[test]
    fn parameter_names() {
        for good in [
            "extra_float_digits",
            "application_name",
            "search_path",
            "pg_stat_statements.max",
            "auto_explain.log_min_duration",
            "DateStyle",
            "_x",
        ] {
            assert!(is_parameter_name(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a b",
            "a,b",
            "a\nb",
            "a=b",
            ".a",
            "a.",
            "a..b",
            "a.b.c",
            "a$b",
            "a-b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_parameter_name(bad), "{bad:?}");
        }
    }

    /// Characters that matter to some syntax, plus ordinary ones.
    pub(crate) fn tricky_text() -> impl proptest::strategy::Strategy<Value = String> {
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
            'é',
            '\u{85}',
            '\u{2028}',
            '\u{7f}',
            '\u{feff}',
            '\u{1f600}',
        ]);
        prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever the value, a value the check lets through holds nothing its syntax splits
        /// on, and a refusal names the option and shows the value escaped on one line.
        #[test]
        fn a_value_passes_only_without_its_syntaxs_separators(value in tricky_text()) {
            for syntax in [Syntax::Line, Syntax::IniValue, Syntax::IniListItem,
                           Syntax::KeepalivedWord, Syntax::EnvValue, Syntax::HostsField] {
                match check("opt", &value, syntax) {
                    Ok(()) => {
                        proptest::prop_assert!(!value.chars().any(is_forbidden_char));
                        proptest::prop_assert!(!value.chars().any(|c| syntax.separators().contains(&c)));
                        if syntax.splits_on_blanks() {
                            proptest::prop_assert!(!value.chars().any(char::is_whitespace));
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        proptest::prop_assert!(text.starts_with("option 'opt': value \""), "{}", text);
                        proptest::prop_assert!(!text.contains('\n') && !text.contains('\0'), "{}", text);
                    }
                }
            }
        }
    }
}
