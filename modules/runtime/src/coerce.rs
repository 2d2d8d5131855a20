//! Ansible's type coercion for scalar and collection values.
//!
//! Ad-hoc runs (`ansible -m … -a 'k=v'`) and `key=value` task arguments send every value as
//! text, so a module must turn `"yes"` into `true` and `"3"` into `3` exactly as Ansible's
//! `AnsibleModule` does. Where Ansible is loose in a way that hides mistakes, we are stricter,
//! and say so here:
//! - a boolean is refused where text is expected (YAML turns an unquoted `yes` into `true`;
//!   Ansible would silently pass the text `"True"`), and where a number is expected;
//! - `"a, b"` becomes `["a", "b"]` (Ansible keeps the space: `" b"`), and text that starts with
//!   `[` is read as a JSON list.
//!
//! Each function returns the coerced value or a [`Mismatch`] saying what was expected; the
//! caller names the option and the value.

use serde_json::{Map, Number, Value};

/// Why a value could not be converted: the expected type and, when useful, a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub expected: &'static str,
    pub hint: Option<String>,
}

impl Mismatch {
    fn new(expected: &'static str) -> Self {
        Mismatch {
            expected,
            hint: None,
        }
    }
    fn hint(expected: &'static str, hint: impl Into<String>) -> Self {
        Mismatch {
            expected,
            hint: Some(hint.into()),
        }
    }
}

/// The words Ansible's `boolean()` accepts, compared case-insensitively.
const TRUE_WORDS: &[&str] = &["y", "yes", "on", "1", "true", "t"];
const FALSE_WORDS: &[&str] = &["n", "no", "off", "0", "false", "f"];

pub fn to_bool(value: &Value) -> Result<bool, Mismatch> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            let word = s.trim().to_ascii_lowercase();
            if TRUE_WORDS.contains(&word.as_str()) {
                Ok(true)
            } else if FALSE_WORDS.contains(&word.as_str()) {
                Ok(false)
            } else {
                Err(Mismatch::hint(
                    "bool",
                    "use one of yes/no, true/false, on/off, 1/0",
                ))
            }
        }
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        _ => Err(Mismatch::new("bool")),
    }
}

pub fn to_int(value: &Value) -> Result<i64, Mismatch> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
                    _ => Err(Mismatch::new("int")),
                }
            }
        }
        Value::String(s) => parse_python_int(s).ok_or_else(|| Mismatch::new("int")),
        Value::Bool(_) => Err(Mismatch::hint(
            "int",
            "a boolean is not a number; quote the value if you meant text",
        )),
        _ => Err(Mismatch::new("int")),
    }
}

/// Python's `int(text)`: surrounding space, an optional sign, digits with single `_` between.
fn parse_python_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !well_formed {
        return None;
    }
    t.replace('_', "").parse().ok()
}

pub fn to_float(value: &Value) -> Result<f64, Mismatch> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| Mismatch::new("float")),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| Mismatch::new("float")),
        _ => Err(Mismatch::new("float")),
    }
}

pub fn to_str(value: &Value) -> Result<String, Mismatch> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Err(Mismatch::hint(
            "str",
            format!("YAML read an unquoted word as the boolean {b}; quote it to pass text"),
        )),
        _ => Err(Mismatch::new("str")),
    }
}

/// Ansible's `path` type: text with `~` and `$VAR`/`${VAR}` expanded; never empty.
pub fn to_path(value: &Value) -> Result<String, Mismatch> {
    let text = to_str(value).map_err(|m| Mismatch {
        expected: "path",
        ..m
    })?;
    if text.trim().is_empty() {
        return Err(Mismatch::hint("path", "a path must not be empty"));
    }
    Ok(expand_user(&expand_vars(&text)))
}

fn expand_user(path: &str) -> String {
    match (path.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => path.to_string(),
    }
}

/// Like Python's `os.path.expandvars`: unknown variables are left as they are.
fn expand_vars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name) {
            Ok(value) if !name.is_empty() => {
                out.push_str(&value);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A file mode: permission bits as an integer (`420` is `0o644`, as YAML reads `0644`) or an
/// octal string (`"0644"`, `"644"`, `"0o644"`). Symbolic modes (`u=rw`) are not supported.
pub fn to_mode(value: &Value) -> Result<u32, Mismatch> {
    let hint = "give an octal string such as \"0640\"";
    let bits = match value {
        Value::Number(_) => to_int(value)
            .ok()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Mismatch::hint("mode", hint))?,
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix("0o").unwrap_or(t);
            if digits.is_empty() || digits.len() > 5 {
                return Err(Mismatch::hint("mode", hint));
            }
            u32::from_str_radix(digits, 8).map_err(|_| Mismatch::hint("mode", hint))?
        }
        _ => return Err(Mismatch::hint("mode", hint)),
    };
    if bits > 0o7777 {
        return Err(Mismatch::hint("mode", "permission bits go up to 07777"));
    }
    Ok(bits)
}

/// A list: a JSON list, text split on commas (each item trimmed), text that is a JSON list,
/// or a single number (which becomes a one-item list, as in Ansible).
pub fn to_list(value: &Value) -> Result<Vec<Value>, Mismatch> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        Value::String(s) if s.trim_start().starts_with('[') => match serde_json::from_str(s) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(Mismatch::hint(
                "list",
                "text starting with '[' must be a JSON list",
            )),
        },
        Value::String(s) if s.trim().is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(s.split(',').map(|item| Value::from(item.trim())).collect()),
        Value::Number(n) => Ok(vec![Value::from(n.to_string())]),
        _ => Err(Mismatch::new("list")),
    }
}

/// A mapping: a JSON object, text holding a JSON object, or `k=v` pairs separated by spaces
/// or commas with quotes and backslash escapes honoured (Ansible's `check_type_dict`).
pub fn to_dict(value: &Value) -> Result<Map<String, Value>, Mismatch> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        Value::String(s) if s.trim_start().starts_with('{') => match serde_json::from_str(s) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Mismatch::hint(
                "dict",
                "text starting with '{' must be a JSON object",
            )),
        },
        Value::String(s) => parse_key_values(s).ok_or_else(|| {
            Mismatch::hint(
                "dict",
                "write key=value pairs separated by spaces or commas",
            )
        }),
        _ => Err(Mismatch::new("dict")),
    }
}

fn parse_key_values(text: &str) -> Option<Map<String, Value>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.trim().chars() {
        if escaped {
            field.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if quote.is_none() && (c == '\'' || c == '"') {
            quote = Some(c);
        } else if quote == Some(c) {
            quote = None;
        } else if quote.is_none() && (c == ',' || c == ' ') {
            if !field.is_empty() {
                fields.push(std::mem::take(&mut field));
            }
        } else {
            field.push(c);
        }
    }
    if !field.is_empty() {
        fields.push(field);
    }
    fields
        .into_iter()
        .map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k.to_string(), Value::from(v)))
        })
        .collect()
}

/// An `i64` as a JSON number.
pub(crate) fn int_value(i: i64) -> Value {
    Value::Number(Number::from(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bool_words_follow_ansible_in_any_case() {
        for word in ["yes", "YES", "On", "true", "True", "1", "y", "T", " yes "] {
            assert_eq!(to_bool(&json!(word)), Ok(true), "{word}");
        }
        for word in ["no", "NO", "Off", "false", "FALSE", "0", "n", "f"] {
            assert_eq!(to_bool(&json!(word)), Ok(false), "{word}");
        }
        assert_eq!(to_bool(&json!(true)), Ok(true));
        assert_eq!(to_bool(&json!(1)), Ok(true));
        assert_eq!(to_bool(&json!(0.0)), Ok(false));
        for bad in [json!("maybe"), json!(""), json!(2), json!(null), json!([])] {
            assert!(to_bool(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ints_from_text_like_python() {
        let table = [
            (json!("3"), Some(3)),
            (json!(" -42 "), Some(-42)),
            (json!("+7"), Some(7)),
            (json!("1_000"), Some(1000)),
            (json!(5), Some(5)),
            (json!(5.0), Some(5)),
            (json!("5.0"), None),
            (json!(5.5), None),
            (json!("0x10"), None),
            (json!("1__0"), None),
            (json!("_1"), None),
            (json!(""), None),
            (json!(true), None),
            (json!("99999999999999999999"), None),
        ];
        for (value, want) in table {
            assert_eq!(to_int(&value).ok(), want, "{value}");
        }
    }

    #[test]
    fn floats_and_strings() {
        assert_eq!(to_float(&json!("0.5")), Ok(0.5));
        assert_eq!(to_float(&json!(2)), Ok(2.0));
        assert!(to_float(&json!("nan")).is_err());
        assert!(to_float(&json!("abc")).is_err());
        assert_eq!(to_str(&json!(3)).as_deref(), Ok("3"));
        assert_eq!(to_str(&json!(1.5)).as_deref(), Ok("1.5"));
        let refused = to_str(&json!(true)).unwrap_err();
        assert!(refused.hint.unwrap().contains("quote"));
        assert!(to_str(&json!({"a": 1})).is_err());
    }

    #[test]
    fn lists_from_text() {
        assert_eq!(to_list(&json!("a,b")), Ok(vec![json!("a"), json!("b")]));
        assert_eq!(
            to_list(&json!("a, b ,c")),
            Ok(vec![json!("a"), json!("b"), json!("c")])
        );
        assert_eq!(to_list(&json!("")), Ok(vec![]));
        assert_eq!(to_list(&json!(3)), Ok(vec![json!("3")]));
        assert_eq!(
            to_list(&json!("[1, \"x\"]")),
            Ok(vec![json!(1), json!("x")])
        );
        assert!(to_list(&json!("[1, ")).is_err());
        assert!(to_list(&json!({"a": 1})).is_err());
        assert!(to_list(&json!(true)).is_err());
    }

    #[test]
    fn dicts_from_text() {
        let kv = to_dict(&json!("ip=10.0.0.1 names='a b',x=1")).unwrap();
        assert_eq!(kv["ip"], json!("10.0.0.1"));
        assert_eq!(kv["names"], json!("a b"));
        assert_eq!(kv["x"], json!("1"));
        let js = to_dict(&json!("{\"ip\": \"::1\"}")).unwrap();
        assert_eq!(js["ip"], json!("::1"));
        assert!(to_dict(&json!("novalue")).is_err());
        assert!(to_dict(&json!("{broken")).is_err());
        assert!(to_dict(&json!([1])).is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(to_mode(&json!("0644")), Ok(0o644));
        assert_eq!(to_mode(&json!("640")), Ok(0o640));
        assert_eq!(to_mode(&json!("0o600")), Ok(0o600));
        assert_eq!(to_mode(&json!(420)), Ok(0o644));
        for bad in [
            json!("u=rw"),
            json!("0999"),
            json!(""),
            json!(99999),
            json!(-1),
            json!(true),
        ] {
            assert!(to_mode(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_expand_home_and_variables() {
        std::env::set_var("MATRIX_HA_TEST_DIR", "/srv/x");
        assert_eq!(
            to_path(&json!("$MATRIX_HA_TEST_DIR/a")).unwrap(),
            "/srv/x/a"
        );
        assert_eq!(
            to_path(&json!("${MATRIX_HA_TEST_DIR}b")).unwrap(),
            "/srv/xb"
        );
        assert_eq!(
            to_path(&json!("$NOT_SET_ANYWHERE_42/a")).unwrap(),
            "$NOT_SET_ANYWHERE_42/a"
        );
        assert_eq!(to_path(&json!("/etc/hosts")).unwrap(), "/etc/hosts");
        if let Ok(home) = std::env::var("HOME") {
            assert_eq!(to_path(&json!("~/x")).unwrap(), format!("{home}/x"));
        }
        assert_eq!(to_path(&json!("~user/x")).unwrap(), "~user/x");
        assert!(to_path(&json!("  ")).is_err());
    }
}
