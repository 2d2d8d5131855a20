//! Validating a module's arguments against its [`OptionSpec`]s.
//!
//! Input is the flat JSON object Ansible writes to the args file: the module's options plus
//! `_ansible_*` keys. [`parse`] splits off the keys the runtime honours, rejects unknown
//! options (listing the valid ones), fills defaults, coerces every value to its declared type,
//! checks choices and ranges, and collects the values of `no_log` options so that every output
//! can be scrubbed of them. All problems are reported together, each naming the option and the
//! value (a secret's value is never shown).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::coerce::{self, Mismatch};
use crate::spec::{sorted_names, Kind, OptionSpec, RequiredIf};

/// What Ansible put in the `invocation.module_args` place of a `no_log` option.
pub const NO_LOG_MARKER: &str = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER";

/// The `_ansible_*` settings the runtime honours; the others are accepted and ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnsibleFlags {
    pub check_mode: bool,
    pub diff: bool,
    pub no_log: bool,
    pub verbosity: u8,
}

/// Validated options: every declared option present (defaults filled, `null` when unset and
/// without default), every value of its declared type.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub values: Map<String, Value>,
    /// Values of `no_log` options, to scrub from every output.
    pub secrets: Vec<String>,
}

/// One problem with one option.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("unsupported option '{option}'; valid options are: {valid}")]
    Unknown { option: String, valid: String },
    #[error("missing required option '{option}'")]
    Missing { option: String },
    #[error("missing option '{option}', required when {when}")]
    MissingIf { option: String, when: String },
    #[error("option '{option}': {shown} is not a valid {expected}{hint}")]
    Type {
        option: String,
        shown: String,
        expected: &'static str,
        hint: String,
    },
    #[error("option '{option}': {shown} is not one of: {choices}")]
    Choice {
        option: String,
        shown: String,
        choices: String,
    },
    #[error("option '{option}': {shown} is outside the range {min} to {max}")]
    Range {
        option: String,
        shown: String,
        min: i64,
        max: i64,
    },
    #[error("option '{option}': {message}")]
    Internal { option: String, message: String },
    #[error(
        "option '{option}': the value (hidden: no_log) is shorter than {min} characters; \
         secrets must have at least {min} (a shorter one could not be masked in the result \
         without masking unrelated text)"
    )]
    ShortSecret { option: String, min: usize },
}

/// All the problems found, in option order; shown joined with `"; "`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ParamErrors(pub Vec<ParamError>);

/// Splits `_ansible_*` keys off the raw arguments.
///
/// A `_ansible_*` flag that is not a boolean is reported as an error rather than guessed.
pub fn split_flags(
    raw: &Map<String, Value>,
) -> Result<(Map<String, Value>, AnsibleFlags), ParamErrors> {
    let mut options = Map::new();
    let mut flags = AnsibleFlags::default();
    let mut errors = Vec::new();
    for (key, value) in raw {
        let slot = match key.as_str() {
            "_ansible_check_mode" => &mut flags.check_mode,
            "_ansible_diff" => &mut flags.diff,
            "_ansible_no_log" => &mut flags.no_log,
            "_ansible_verbosity" => {
                flags.verbosity = coerce::to_int(value)
                    .ok()
                    .and_then(|v| u8::try_from(v.clamp(0, 255)).ok())
                    .unwrap_or(0);
                continue;
            }
            k if k.starts_with("_ansible_") => continue,
            _ => {
                options.insert(key.clone(), value.clone());
                continue;
            }
        };
        match value {
            Value::Null => {}
            v => match coerce::to_bool(v) {
                Ok(b) => *slot = b,
                Err(m) => errors.push(type_error(key, v, false, m)),
            },
        }
    }
    if errors.is_empty() {
        Ok((options, flags))
    } else {
        Err(ParamErrors(errors))
    }
}

/// Validates `raw` (options only, `_ansible_*` already split off) against `spec` and the
/// `required_if` rules.
pub fn parse(
    spec: &[OptionSpec],
    required_if: &[RequiredIf],
    raw: &Map<String, Value>,
) -> Result<Params, ParamErrors> {
    let mut errors = Vec::new();
    let values = check_map(spec, raw, "", &mut errors);
    for rule in required_if {
        let text = match values.get(rule.option) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        if text != rule.value {
            continue;
        }
        for needed in rule.requires {
            if raw.get(*needed).is_none_or(Value::is_null) {
                errors.push(ParamError::MissingIf {
                    option: needed.to_string(),
                    when: format!("{}={}", rule.option, rule.value),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ParamErrors(errors));
    }
    let mut found = Vec::new();
    collect_secrets(spec, &values, false, "", &mut found);
    let short: Vec<ParamError> = found
        .iter()
        .filter(|(_, s)| s.chars().count() < MIN_SECRET_LEN)
        .map(|(option, _)| ParamError::ShortSecret {
            option: option.clone(),
            min: MIN_SECRET_LEN,
        })
        .collect();
    if !short.is_empty() {
        return Err(ParamErrors(short));
    }
    let mut secrets: Vec<String> = found.into_iter().map(|(_, s)| s).collect();
    secrets.sort_unstable();
    secrets.dedup();
    Ok(Params { values, secrets })
}

fn check_map(
    spec: &[OptionSpec],
    raw: &Map<String, Value>,
    prefix: &str,
    errors: &mut Vec<ParamError>,
) -> Map<String, Value> {
    let mut unknown: Vec<&str> = raw
        .keys()
        .filter(|k| !spec.iter().any(|o| o.name == k.as_str()))
        .map(String::as_str)
        .collect();
    unknown.sort_unstable();
    for option in unknown {
        errors.push(ParamError::Unknown {
            option: format!("{prefix}{option}"),
            valid: sorted_names(spec).join(", "),
        });
    }

    let mut out = Map::new();
    for opt in spec {
        let name = format!("{prefix}{}", opt.name);
        let given = raw.get(opt.name).filter(|v| !v.is_null());
        let value = match (given, opt.default) {
            (Some(v), _) => check_value(opt, opt.kind, v, &name, errors),
            (None, Some(default)) => check_value(opt, opt.kind, &default.to_json(), &name, errors),
            (None, None) if opt.required => {
                errors.push(ParamError::Missing { option: name });
                Value::Null
            }
            (None, None) => Value::Null,
        };
        out.insert(opt.name.to_string(), value);
    }
    out
}

fn check_value(
    opt: &OptionSpec,
    kind: Kind,
    value: &Value,
    name: &str,
    errors: &mut Vec<ParamError>,
) -> Value {
    let before = errors.len();
    let coerced = match kind {
        Kind::Str => coerce::to_str(value).map(Value::from),
        Kind::Path => coerce::to_path(value).map(Value::from),
        Kind::Bool => coerce::to_bool(value).map(Value::from),
        Kind::Int => coerce::to_int(value).map(coerce::int_value),
        Kind::Float => coerce::to_float(value).map(Value::from),
        Kind::Mode => coerce::to_mode(value).map(Value::from),
        Kind::Raw => Ok(value.clone()),
        Kind::Dict => coerce::to_dict(value).map(|map| {
            if opt.suboptions.is_empty() {
                Value::Object(map)
            } else {
                Value::Object(check_map(opt.suboptions, &map, &format!("{name}."), errors))
            }
        }),
        Kind::List => coerce::to_list(value).map(|items| {
            let element = opt.elements.unwrap_or(Kind::Raw);
            let checked = items
                .iter()
                .enumerate()
                .map(|(i, item)| check_value(opt, element, item, &format!("{name}[{i}]"), errors))
                .collect();
            Value::Array(checked)
        }),
    };
    let coerced = match coerced {
        Ok(v) => v,
        Err(mismatch) => {
            errors.push(type_error(name, value, opt.no_log, mismatch));
            return Value::Null;
        }
    };
    if errors.len() > before {
        return coerced;
    }
    if kind != Kind::List && !opt.choices.is_empty() {
        let text = match &coerced {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !opt.choices.contains(&text.as_str()) {
            errors.push(ParamError::Choice {
                option: name.to_string(),
                shown: shown(value, opt.no_log),
                choices: opt.choices.join(", "),
            });
        }
    }
    if let (Kind::Int, Some((min, max)), Some(i)) = (kind, opt.range, coerced.as_i64()) {
        if i < min || i > max {
            errors.push(ParamError::Range {
                option: name.to_string(),
                shown: shown(value, opt.no_log),
                min,
                max,
            });
        }
    }
    coerced
}

fn type_error(option: &str, value: &Value, secret: bool, mismatch: Mismatch) -> ParamError {
    ParamError::Type {
        option: option.to_string(),
        shown: shown(value, secret),
        expected: mismatch.expected,
        hint: mismatch.hint.map(|h| format!(" ({h})")).unwrap_or_default(),
    }
}

/// How a value appears in an error message: JSON, cut short, or hidden when secret.
pub fn shown(value: &Value, secret: bool) -> String {
    if secret {
        return "the value (hidden: no_log)".to_string();
    }
    let text = value.to_string();
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("value {cut}…")
    } else {
        format!("value {cut}")
    }
}

/// The shortest secret a `no_log` option takes. The result is scrubbed of every secret's
/// text; a one-character secret would mask that character in every word of the result (and
/// the asterisks' places would show it), so shorter secrets are refused, not masked.
pub const MIN_SECRET_LEN: usize = 8;

/// Every non-empty `no_log` value with the option it came from (`users[1].password`).
fn collect_secrets(
    spec: &[OptionSpec],
    values: &Map<String, Value>,
    secret: bool,
    prefix: &str,
    out: &mut Vec<(String, String)>,
) {
    for opt in spec {
        if let Some(value) = values.get(opt.name) {
            let name = format!("{prefix}{}", opt.name);
            collect_value(opt, value, secret || opt.no_log, &name, out);
        }
    }
}

fn collect_value(
    opt: &OptionSpec,
    value: &Value,
    secret: bool,
    name: &str,
    out: &mut Vec<(String, String)>,
) {
    match value {
        Value::Object(map) if !opt.suboptions.is_empty() => {
            collect_secrets(opt.suboptions, map, secret, &format!("{name}."), out)
        }
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| collect_value(opt, v, secret, &format!("{name}.{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| collect_value(opt, v, secret, &format!("{name}[{i}]"), out)),
        Value::String(s) if secret && !s.is_empty() => out.push((name.to_string(), s.clone())),
        Value::Number(n) if secret => out.push((name.to_string(), n.to_string())),
        _ => {}
    }
}

/// The arguments as they may appear in `invocation.module_args`: options the spec does not
/// know are left out, and every `no_log` value (at any depth) is replaced by [`NO_LOG_MARKER`].
pub fn masked(spec: &[OptionSpec], values: &Map<String, Value>) -> Map<String, Value> {
    spec.iter()
        .filter_map(|opt| {
            let value = values.get(opt.name)?;
            Some((opt.name.to_string(), mask_value(opt, value)))
        })
        .collect()
}

fn mask_value(opt: &OptionSpec, value: &Value) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    if opt.no_log {
        return Value::from(NO_LOG_MARKER);
    }
    match value {
        Value::Object(map) if !opt.suboptions.is_empty() => {
            Value::Object(masked(opt.suboptions, map))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| mask_value(opt, v)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DefaultValue;
    use serde_json::json;

    static ENTRY: [OptionSpec; 2] = [
        OptionSpec::new("ip", Kind::Str).required(),
        OptionSpec::new("names", Kind::List)
            .elements(Kind::Str)
            .required(),
    ];
    static SPEC: [OptionSpec; 7] = [
        OptionSpec::new("path", Kind::Path).default(DefaultValue::Str("/etc/hosts")),
        OptionSpec::new("state", Kind::Str)
            .choices(&["present", "absent"])
            .default(DefaultValue::Str("present")),
        OptionSpec::new("backup", Kind::Bool).default(DefaultValue::Bool(false)),
        OptionSpec::new("port", Kind::Int).range(1, 65535),
        OptionSpec::new("password", Kind::Str).no_log(),
        OptionSpec::new("entries", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&ENTRY),
        OptionSpec::new("users", Kind::List)
            .elements(Kind::Dict)
            .suboptions(&USER),
    ];
    static USER: [OptionSpec; 2] = [
        OptionSpec::new("name", Kind::Str).required(),
        OptionSpec::new("secret", Kind::Str).no_log(),
    ];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn defaults_and_coercion() {
        let p = parse(&SPEC, &[], &obj(json!({"backup": "yes", "port": "5432"}))).unwrap();
        assert_eq!(p.values["path"], json!("/etc/hosts"));
        assert_eq!(p.values["state"], json!("present"));
        assert_eq!(p.values["backup"], json!(true));
        assert_eq!(p.values["port"], json!(5432));
        assert_eq!(p.values["password"], Value::Null);
        assert!(p.secrets.is_empty());
    }

    #[test]
    fn required_if_needs_the_option_to_be_given() {
        let rules = [RequiredIf {
            option: "state",
            value: "present",
            requires: &["entries"],
        }];
        let err = parse(&SPEC, &rules, &obj(json!({}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing option 'entries', required when state=present"
        );
        assert!(parse(&SPEC, &rules, &obj(json!({"entries": []}))).is_ok());
        assert!(parse(&SPEC, &rules, &obj(json!({"state": "absent"}))).is_ok());
    }

    #[test]
    fn explicit_null_means_unset() {
        let p = parse(&SPEC, &[], &obj(json!({"state": null}))).unwrap();
        assert_eq!(p.values["state"], json!("present"));
    }

    #[test]
    fn nested_dicts_from_key_value_text() {
        let p = parse(
            &SPEC,
            &[],
            &obj(json!({"entries": ["ip=10.0.0.1 names=a,b"]})),
        );
        // "names=a,b" splits on the comma as Ansible's k=v parser does: names=a and a bare "b".
        assert!(p.is_err());
        let p = parse(
            &SPEC,
            &[],
            &obj(json!({"entries": ["ip=10.0.0.1 names='a,b'"]})),
        )
        .unwrap();
        assert_eq!(
            p.values["entries"],
            json!([{"ip": "10.0.0.1", "names": ["a", "b"]}])
        );
    }

    #[test]
    fn every_problem_is_reported_with_option_and_value() {
        let err = parse(
            &SPEC,
            &[],
            &obj(
                json!({"state": "presnt", "port": 70000, "bogus": 1, "backup": "maybe",
                        "entries": [{"ip": "x"}, {"names": "a", "extra": true}]}),
            ),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "unsupported option 'bogus'; valid options are: backup, entries, password, path, port, state, users",
            "option 'state': value \"presnt\" is not one of: present, absent",
            "option 'port': value 70000 is outside the range 1 to 65535",
            "option 'backup': value \"maybe\" is not a valid bool",
            "missing required option 'entries[0].names'",
            "unsupported option 'entries[1].extra'",
            "missing required option 'entries[1].ip'",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn secrets_are_collected_masked_and_never_shown() {
        let raw = obj(
            json!({"password": "hunter2-x", "users": [{"name": "u", "secret": "s3cr3t!-long"}]}),
        );
        let p = parse(&SPEC, &[], &raw).unwrap();
        assert_eq!(
            p.secrets,
            vec!["hunter2-x".to_string(), "s3cr3t!-long".to_string()]
        );
        let m = masked(&SPEC, &p.values);
        assert_eq!(m["password"], json!(NO_LOG_MARKER));
        assert_eq!(m["users"], json!([{"name": "u", "secret": NO_LOG_MARKER}]));
        assert_eq!(m["state"], json!("present"));

        let short = parse(
            &SPEC,
            &[],
            &obj(json!({"password": "a", "users": [{"name": "u", "secret": "1234567"}]})),
        )
        .unwrap_err()
        .to_string();
        assert!(
            short.contains(
                "option 'password': the value (hidden: no_log) is shorter than 8 characters"
            ),
            "{short}"
        );
        assert!(
            short
                .contains("option 'users[0].secret': the value (hidden: no_log) is shorter than 8"),
            "{short}"
        );
        assert!(!short.contains("1234567"), "{short}");

        let bad = parse(&SPEC, &[], &obj(json!({"password": {"not": "text"}}))).unwrap_err();
        assert!(bad.to_string().contains("hidden: no_log"));
        assert!(!bad.to_string().contains("\"text\""));
    }

    #[test]
    fn flags_are_split_and_coerced() {
        let raw = obj(json!({"_ansible_check_mode": "True", "_ansible_diff": true,
                             "_ansible_no_log": false, "_ansible_verbosity": 3,
                             "_ansible_tmpdir": "/x", "path": "/p"}));
        let (options, flags) = split_flags(&raw).unwrap();
        assert_eq!(options.len(), 1);
        assert_eq!(
            flags,
            AnsibleFlags {
                check_mode: true,
                diff: true,
                no_log: false,
                verbosity: 3
            }
        );
        assert!(split_flags(&obj(json!({"_ansible_diff": "perhaps"}))).is_err());
    }
}
