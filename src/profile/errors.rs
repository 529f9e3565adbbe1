//! The parser's and serde's complaints as sentences a user can act on: what was expected here,
//! in the profile's words ("a whole number from 0 to 4294967295", "a mapping of keys to values"),
//! never the library's ("invalid u32", "expected mapping start", "set DuplicateKeyPolicy").
//! It only rewrites text; where the error is belongs to the caller. Also the error of a section
//! whose value parses but cannot be used ([`SpecError`]), which the sections' own checks return.

use serde_saphyr::Error;

/// A profile section's value that is well-formed but not usable (a GPU layout that does not
/// fit, a host list without a server): the message says what and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// The message and, where there is one beyond [`super::hint`]'s nearest key, a fix.
pub fn sentence(e: &Error) -> (String, Option<String>) {
    let (message, fix) = sentence_of(e);
    let fix = fix.or_else(|| fallback_fix(&message));
    (message, fix)
}

/// A fix for "expected X, found Y": write X; for durations, their forms.
fn fallback_fix(message: &str) -> Option<String> {
    let duration = ["a duration", "is zero: a wait", "longer than the limit of"];
    if duration.iter().any(|d| message.contains(d)) {
        return Some("write it like 90s, 10m, 1h30m or 600 (seconds), from 1s to 24h".into());
    }
    if message.contains(" must be ") {
        return Some("write one of the values named".into());
    }
    let expected = message.strip_prefix("expected ")?;
    let expected = expected.split(", found").next().unwrap_or(expected);
    Some(format!("write {} here", expected.trim_end_matches(" here")))
}

fn sentence_of(e: &Error) -> (String, Option<String>) {
    let fix = |s: &str| Some(s.to_string());
    let mut e = e;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = e {
        e = error;
    }
    match e {
        Error::Message { msg, .. } => (words(msg), None),
        Error::SerdeUnknownField {
            field, expected, ..
        } => (
            format!(
                "unknown field `{field}`, expected one of {}",
                expected.join(", ")
            ),
            None,
        ),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            format!(
                "unknown variant `{variant}`, expected one of {}",
                expected.join(", ")
            ),
            None,
        ),
        Error::SerdeMissingField { field, .. } => (
            format!("missing field `{field}`: this mapping needs it"),
            Some(format!("add `{field}: ...` to this mapping")),
        ),
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            format!("expected {}, found {}", words(expected), words(unexpected)),
            None,
        ),
        Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            format!("expected {}, found {}", words(expected), words(unexpected)),
            None,
        ),
        Error::SerdeInvalidLength { len, expected, .. } => (
            format!("expected {}, found {len} items", words(expected)),
            None,
        ),
        Error::InvalidScalar { ty, .. } => (
            format!("expected {} here", type_words(ty)),
            fix("write the value without quotes or units, e.g. 4"),
        ),
        Error::Unexpected { expected, .. } => (
            format!("expected {} here", words(expected)),
            fix("check the indentation and the `key: value` shape at this position"),
        ),
        Error::ExpectedMappingEndAfterEnumVariantValue { .. } => (
            "only one kind may be given here, e.g. `helm:` or `oci:`, not two".into(),
            fix("keep one of the keys of this mapping"),
        ),
        Error::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | Error::ExpectedStringKeyForExternallyTaggedEnum { .. } => (
            "expected a mapping with one key that names the kind of value here".into(),
            fix(
                "see docs/profiles.md for the keys this field takes, e.g. `env: NAME` or `helm: {...}`",
            ),
        ),
        Error::DuplicateMappingKey { key, .. } => (
            match key {
                Some(k) => format!("the key `{k}` appears twice in this mapping"),
                None => "a key appears twice in this mapping".into(),
            },
            fix("keep one of them"),
        ),
        Error::Budget { breach, .. } => (
            format!(
                "the file is too large or too deeply nested for a profile ({})",
                breach_words(breach)
            ),
            fix("a profile is a few hundred lines: check that --profile names the file you meant"),
        ),
        Error::MultipleDocuments { .. } => (
            "the file holds more than one YAML document (`---`)".into(),
            fix("keep one profile per file"),
        ),
        Error::Eof { .. } => (
            "the file ends where a value was expected".into(),
            fix("check for an unclosed bracket or quote"),
        ),
        Error::NullIntoString { .. } => (
            "expected a string, found nothing".into(),
            fix("write the value after the colon (quote it if it is `~` or `null`)"),
        ),
        Error::UnknownAnchor { .. } => (
            "this alias names no anchor defined before it".into(),
            fix("define the anchor (`&name`) before its alias (`*name`)"),
        ),
        Error::MergeKeyNotAllowed { .. } | Error::MergeValueNotMapOrSeqOfMaps { .. } => (
            "a merge key (`<<`) is not allowed here".into(),
            fix("write the keys out"),
        ),
        Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. } => (
            "aliases expand to more than a profile can hold".into(),
            fix("write the values out instead of nesting aliases"),
        ),
        other => {
            let text = first_line_without_position(&other.to_string());
            if text.contains("budget breached") || text.contains("recursion limit") {
                return (
                    "the file is too large or too deeply nested for a profile".into(),
                    fix(
                        "a profile is a few hundred lines: check that --profile names the file you meant",
                    ),
                );
            }
            (
                format!("not valid YAML: {}", words(&text)),
                fix("check the brackets, quotes and indentation at this position"),
            )
        }
    }
}

fn breach_words(b: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match b {
        B::Events { events } => format!("{events} parser events"),
        B::Aliases { aliases } => format!("{aliases} aliases"),
        B::Anchors { anchors } => format!("{anchors} anchors"),
        B::Depth { depth } => format!("nested {depth} deep"),
        B::Documents { documents } => format!("{documents} documents"),
        B::Nodes { nodes } => format!("{nodes} values"),
        B::ScalarBytes { total_scalar_bytes } => format!("{total_scalar_bytes} bytes of text"),
        B::MergeKeys { merge_keys } => format!("{merge_keys} merge keys"),
        B::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases of {anchors} anchors")
        }
        _ => "over the parser's limits".into(),
    }
}

/// serde_json's errors (after `--set`, the profile is type-checked as a JSON tree).
pub fn json_sentence(e: &serde_json::Error) -> (String, Option<String>) {
    let text = e.to_string();
    let text = text
        .split_once(" at line ")
        .map(|(t, _)| t)
        .unwrap_or(&text);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let message = format!("expected {}, found {}", words(expected), words(found));
            let fix = fallback_fix(&message);
            return (message, fix);
        }
    }
    if let Some(field) = text.strip_prefix("missing field ") {
        return (
            format!("missing field {field}"),
            Some(format!("also set {}", field.trim_matches('`'))),
        );
    }
    let message = words(text);
    let fix = fallback_fix(&message);
    (message, fix)
}

/// serde-saphyr's rendering starts with "error: line L column C: "; the position is ours to print.
pub fn first_line_without_position(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match first.find(": ") {
        Some(i) if first.starts_with("line ") => first[i + 2..].to_string(),
        _ => first.to_string(),
    }
}

/// Rust and serde type names in a message, as the profile's words.
fn words(text: &str) -> String {
    let mut out = text.to_string();
    for (ty, _) in TYPES {
        for form in [format!("invalid {ty}"), format!("expected {ty}")] {
            if out.contains(&form) {
                out = out.replace(&form, &format!("expected {}", type_words(ty)));
            }
        }
    }
    let replacements: &[(&str, &str)] = &[
        ("mapping start", "a mapping of keys to values"),
        ("string scalar", "a string"),
        ("sequence start", "a list"),
        ("a sequence", "a list"),
        ("sequence", "list"),
        ("a map", "a mapping of keys to values"),
        ("unit value", "nothing"),
        ("unit", "nothing"),
    ];
    if TYPES.iter().any(|(t, _)| *t == out) {
        return type_words(&out);
    }
    if let Some(name) = out.strip_prefix("struct ") {
        return format!(
            "a mapping of keys to values (the {} section)",
            name.to_lowercase()
        );
    }
    if let Some(name) = out.strip_prefix("enum ") {
        return format!("a single key naming the {} kind", name.to_lowercase());
    }
    for (from, to) in replacements {
        if out == *from {
            return to.to_string();
        }
    }
    out
}

const TYPES: &[(&str, &str)] = &[
    ("u8", "a whole number from 0 to 255"),
    ("u16", "a whole number from 0 to 65535"),
    ("u32", "a whole number from 0 to 4294967295"),
    ("u64", "a whole number from 0 to 18446744073709551615"),
    ("usize", "a whole number from 0 to 18446744073709551615"),
    ("i32", "a whole number"),
    ("i64", "a whole number"),
    ("f64", "a number"),
    ("bool", "true or false"),
    ("boolean", "true or false"),
    ("a boolean", "true or false"),
    ("a string", "a string"),
];

fn type_words(ty: &str) -> String {
    TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, w)| w.to_string())
        .unwrap_or_else(|| format!("a value of type {ty}"))
}

/// A value's kind in the profile's words, for messages.
pub fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "mapping",
    }
}
