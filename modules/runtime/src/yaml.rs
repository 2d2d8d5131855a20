//! YAML that every YAML reader reads back with the types it was written with.
//!
//! YAML 1.1 readers (PyYAML, which Patroni uses) turn plain scalars into other types: the
//! password `190:20:30` becomes the integer 685230 (sexagesimal), `0x_1234_5678` and
//! `1_000_000` integers, `2001-12-14` a date, `on`/`off`/`yes`/`no` booleans. [`emit`] writes
//! no plain scalar at all: the document is JSON (every string double-quoted, every key too),
//! which YAML 1.1 and 1.2 read as JSON does, formatted one item a line so diffs stay readable.
//! Within quotes, every character a YAML reader would refuse or fold (control characters,
//! DEL, the C1 range, U+2028/U+2029, U+FEFF, U+FFFE/U+FFFF) is escaped as `\uXXXX`; floats
//! always have a dot and a signed exponent, the only float form YAML 1.1 reads as a float.

use std::fmt::Write as _;

use serde_json::Value;

/// The YAML text of `value` (a document without a header), ending with a newline.
pub fn emit(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out.push('\n');
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_value(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => quoted(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, level + 1);
                write_value(out, item, level + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (i, (key, item)) in map.iter().enumerate() {
                indent(out, level + 1);
                quoted(out, key);
                out.push_str(": ");
                write_value(out, item, level + 1);
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// A number as YAML 1.1 reads it back: integers as they are; floats with a dot and, when
/// there is an exponent, a sign on it (`1e300` would be read as text).
fn number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_i64() || n.is_u64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (text, None),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa
    } else {
        format!("{mantissa}.0")
    };
    match exponent {
        None => mantissa,
        Some(e) if e.starts_with(['-', '+']) => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
    }
}

/// Whether a YAML reader takes `c` as it is inside a double-quoted scalar.
fn plain_in_quotes(c: char) -> bool {
    match c {
        '"' | '\\' => false,
        ' '..='~' => true,
        '\u{a0}'..='\u{d7ff}' => !matches!(c, '\u{2028}' | '\u{2029}'),
        '\u{e000}'..='\u{fffd}' => c != '\u{feff}',
        '\u{10000}'..='\u{10ffff}' => true,
        _ => false,
    }
}

/// `s` as it appears between the quotes of [`emit`]'s output.
pub fn escaped(s: &str) -> String {
    let mut out = String::new();
    quoted(&mut out, s);
    out[1..out.len() - 1].to_string()
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if plain_in_quotes(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_string_is_quoted_and_the_document_is_json() {
        let v = json!({"b": ["190:20:30", "on", "0x_1234_5678", "2001-12-14", ""],
                       "a": {"n": 1, "f": 1.5, "t": true, "z": null, "e": {}, "l": []}});
        let text = emit(&v);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert!(text.contains("\"190:20:30\""), "{text}");
        assert!(text.contains("\"on\""), "{text}");
    }

    #[test]
    fn characters_a_yaml_reader_refuses_or_folds_are_escaped() {
        let s = "a\u{0}b\rc\u{7f}d\u{85}e\u{2028}f\u{feff}g\u{ffff}h\"i\\j\u{1f600}é";
        let text = emit(&json!(s));
        assert_eq!(
            text,
            "\"a\\u0000b\\u000dc\\u007fd\\u0085e\\u2028f\\ufeffg\\uffffh\\\"i\\\\j\u{1f600}é\"\n"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!(s));
    }

    #[test]
    fn floats_keep_a_form_yaml_1_1_reads_as_a_float() {
        let n = |f: f64| number(&serde_json::Number::from_f64(f).unwrap());
        assert_eq!(n(1.5), "1.5");
        assert_eq!(n(1e300), "1.0e+300");
        assert_eq!(n(1.5e-7), "1.5e-7");
        assert_eq!(n(-2.0), "-2.0");
        assert_eq!(number(&serde_json::Number::from(-7)), "-7");
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // serde_json's reader (without its float_roundtrip feature) is exact only for
            // some floats: test those; number()'s own text is compared with str::parse below.
            any::<f64>()
                .prop_filter("finite, read back by serde_json", |f| {
                    f.is_finite()
                        && serde_json::from_str::<f64>(&Value::from(*f).to_string()).ok()
                            == Some(*f)
                })
                .prop_map(Value::from),
            crate::text::tests::tricky_text().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(crate::text::tests::tricky_text(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        /// Every finite float is written in YAML 1.1's float form and reads back exactly.
        #[test]
        fn any_float_keeps_its_value_and_form(f in proptest::prelude::any::<f64>()) {
            proptest::prop_assume!(f.is_finite());
            let Some(n) = serde_json::Number::from_f64(f) else { return Ok(()) };
            let text = number(&n);
            proptest::prop_assert_eq!(text.parse::<f64>().unwrap(), f);
            proptest::prop_assert!(text.contains('.'), "{}", text);
            if let Some((_, e)) = text.split_once('e') {
                proptest::prop_assert!(e.starts_with(['+', '-']), "{}", text);
            }
        }

        /// Any JSON value is emitted as JSON that reads back equal, with no character a YAML
        /// reader refuses left raw (PyYAML's own reading is tested by patroni_bootstrap).
        #[test]
        fn any_value_round_trips(value in any_json()) {
            let text = emit(&value);
            let back: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(back, value);
            proptest::prop_assert!(text.chars().all(|c| c == '\n' || plain_in_quotes(c) || c == '"' || c == '\\'));
        }
    }
}
