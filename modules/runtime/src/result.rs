//! The module's result: what a module returns, and the one JSON object printed for Ansible.

use serde_json::{Map, Value};

/// What Ansible replaces an echoed secret with (as `AnsibleModule`'s `remove_values` does).
pub const SCRUBBED: &str = "********";

/// Before/after text shown by `ansible-playbook --diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub before: String,
    pub after: String,
    pub before_header: String,
    pub after_header: String,
}

impl Diff {
    /// A diff of one file's content, both headers naming the file.
    pub fn file(path: &str, before: impl Into<String>, after: impl Into<String>) -> Self {
        Diff {
            before: before.into(),
            after: after.into(),
            before_header: path.to_string(),
            after_header: path.to_string(),
        }
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "before": self.before,
            "after": self.after,
            "before_header": self.before_header,
            "after_header": self.after_header,
        })
    }
}

/// A successful run: whether anything changed, a message, an optional diff and extra keys.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub changed: bool,
    pub msg: String,
    pub diff: Option<Diff>,
    pub data: Map<String, Value>,
}

impl Outcome {
    pub fn new(changed: bool, msg: impl Into<String>) -> Self {
        Outcome {
            changed,
            msg: msg.into(),
            ..Outcome::default()
        }
    }

    /// Adds a result key (for example `backup_file`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }

    pub fn with_diff(mut self, diff: Diff) -> Self {
        self.diff = Some(diff);
        self
    }
}

/// A failed run: the message Ansible shows, and optional extra keys (computed figures, …).
///
/// Any error type converts into it with `?`, its `Display` text becoming the message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub msg: String,
    pub data: Map<String, Value>,
}

impl Failure {
    pub fn new(msg: impl Into<String>) -> Self {
        Failure {
            msg: msg.into(),
            data: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), value.into());
        self
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::new(err.to_string())
    }
}

/// Everything needed to print the final result.
pub(crate) struct Report<'a> {
    pub outcome: Result<Outcome, Failure>,
    pub warnings: Vec<String>,
    pub invocation: Option<Map<String, Value>>,
    pub secrets: &'a [String],
    pub show_diff: bool,
}

impl Report<'_> {
    /// The result object, scrubbed of every secret; and whether it is a failure.
    pub fn into_json(self) -> (Value, bool) {
        let mut out = Map::new();
        let failed = self.outcome.is_err();
        match self.outcome {
            Ok(outcome) => {
                out.insert("changed".into(), Value::Bool(outcome.changed));
                out.insert("failed".into(), Value::Bool(false));
                out.insert("msg".into(), Value::from(outcome.msg));
                if let (true, Some(diff)) = (self.show_diff, outcome.diff) {
                    out.insert("diff".into(), diff.to_json());
                }
                merge_extra(&mut out, outcome.data);
            }
            Err(failure) => {
                out.insert("changed".into(), Value::Bool(false));
                out.insert("failed".into(), Value::Bool(true));
                out.insert("msg".into(), Value::from(failure.msg));
                merge_extra(&mut out, failure.data);
            }
        }
        if !self.warnings.is_empty() {
            out.insert("warnings".into(), Value::from(self.warnings));
        }
        let mut result = Value::Object(out);
        scrub(&mut result, self.secrets);
        if let (Some(args), Value::Object(map)) = (self.invocation, &mut result) {
            map.insert(
                "invocation".into(),
                serde_json::json!({ "module_args": Value::Object(args) }),
            );
        }
        (result, failed)
    }
}

/// Extra keys never override the ones the runtime owns.
fn merge_extra(out: &mut Map<String, Value>, data: Map<String, Value>) {
    for (key, value) in data {
        if !matches!(
            key.as_str(),
            "changed" | "failed" | "msg" | "diff" | "warnings" | "invocation"
        ) {
            out.insert(key, value);
        }
    }
}

/// Replaces every occurrence of every secret in every string value of `value`.
///
/// Keys are never touched: they are the result's structure (`changed`, `failed`) and the
/// module's own names, never a secret. Secrets shorter than
/// [`MIN_SECRET_LEN`](crate::params::MIN_SECRET_LEN) are skipped (the runtime refuses them as
/// options): masking a short one would mask unrelated text and show where it occurs.
pub fn scrub(value: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match value {
        Value::String(s) => scrub_str(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub(v, secrets)),
        _ => {}
    }
}

pub(crate) fn scrub_str(text: &mut String, secrets: &[String]) {
    // Each secret as given and as it is written inside a quoted YAML/JSON string (a diff of a
    // file shows `pa\"ss` for `pa"ss`); longest first, so a secret that contains another is
    // replaced whole.
    let mut ordered: Vec<String> = secrets
        .iter()
        .filter(|s| s.chars().count() >= crate::params::MIN_SECRET_LEN)
        .flat_map(|s| {
            let json = serde_json::to_string(s).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            [s.clone(), crate::yaml::escaped(s), json]
        })
        .collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ordered.dedup();
    for secret in ordered {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), SCRUBBED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(outcome: Result<Outcome, Failure>, secrets: &[String]) -> Report<'_> {
        Report {
            outcome,
            warnings: vec![],
            invocation: None,
            secrets,
            show_diff: true,
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_msg_diff_warnings_and_data() {
        let secrets = vec!["pa55word".to_string(), "pa55word-2".to_string()];
        let outcome = Outcome::new(true, "set pa55word")
            .with_diff(Diff::file("/f", "old pa55word-2", "new pa55word"))
            .with("detail", json!({"nested": ["x pa55word y"]}));
        let mut r = report(Ok(outcome), &secrets);
        r.warnings = vec!["careful with pa55word".into()];
        let (value, failed) = r.into_json();
        assert!(!failed);
        let text = value.to_string();
        assert!(!text.contains("pa55"), "{text}");
        assert_eq!(value["msg"], json!("set ********"));
        assert_eq!(value["diff"]["after"], json!("new ********"));
        assert_eq!(value["diff"]["before_header"], json!("/f"));
    }

    #[test]
    fn keys_are_never_masked_and_short_secrets_are_skipped() {
        let secrets = vec!["a".to_string(), "changed1".to_string()];
        let outcome = Outcome::new(true, "value changed1 and a").with("changed1", "changed1");
        let (value, _) = report(Ok(outcome), &secrets).into_json();
        assert_eq!(value["changed"], json!(true));
        assert_eq!(value["failed"], json!(false));
        assert_eq!(value["msg"], json!("value ******** and a"));
        assert_eq!(
            value["changed1"],
            json!("********"),
            "the key stays, the value is masked"
        );
    }

    #[test]
    fn secrets_are_scrubbed_in_their_quoted_form_too() {
        let secrets = vec!["pa\"ss\\wo\u{7f}rd".to_string()];
        let file = crate::yaml::emit(&json!({"password": secrets[0]}));
        let outcome = Outcome::new(true, "x").with_diff(Diff::file("/f", "", file));
        let (value, _) = report(Ok(outcome), &secrets).into_json();
        let after = value["diff"]["after"].as_str().unwrap();
        assert!(after.contains("\"password\": \"********\""), "{after}");
    }

    #[test]
    fn failure_shape() {
        let (value, failed) = report(Err(Failure::new("boom").with("needed", 30)), &[]).into_json();
        assert!(failed);
        assert_eq!(
            value,
            json!({"changed": false, "failed": true, "msg": "boom", "needed": 30})
        );
    }

    #[test]
    fn diff_only_when_asked() {
        let outcome = || Ok(Outcome::new(true, "x").with_diff(Diff::file("/f", "a", "b")));
        let mut r = report(outcome(), &[]);
        r.show_diff = false;
        assert!(r.into_json().0.get("diff").is_none());
        let r = report(outcome(), &[]);
        assert_eq!(r.into_json().0["diff"]["after"], json!("b"));
    }

    #[test]
    fn runtime_keys_cannot_be_overridden() {
        let outcome = Outcome::new(false, "ok")
            .with("failed", true)
            .with("changed", true);
        let (value, _) = report(Ok(outcome), &[]).into_json();
        assert_eq!(value["failed"], json!(false));
        assert_eq!(value["changed"], json!(false));
    }
}
