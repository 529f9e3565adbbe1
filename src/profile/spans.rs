//! Where each value of a profile sits in its file (`cluster.sim.nodes.1.gpus` → line 7, column 15),
//! and which values sit under secret-like keys (`password`, `token`, `accessKey`, ...).
//!
//! Read from the YAML parser's events, so it works on any text up to its first syntax error,
//! before serde has seen it: the secrets are known before any message can quote them. It must not
//! interpret the schema; aliases are not expanded (their location is the alias's).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Positions are 1-based line and column, as editors and serde-saphyr's errors count them.
pub type Position = (u64, u64);

#[derive(Debug, Default)]
pub struct Spans {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
    secrets: Vec<String>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
        secret_key: bool,
    },
}

/// Deeper nesting than this is not a profile; the walk stops (serde-saphyr's budget reports it).
const MAX_DEPTH: usize = 256;

impl Spans {
    /// Walks a profile's text.
    pub fn new(text: &str) -> Spans {
        Spans::walk(text, "", None)
    }

    /// The secret-like values in a `--set` value that is assigned to `path`.
    pub fn set_value(path: &str, raw: &str) -> Vec<String> {
        let last = path.rsplit('.').next().unwrap_or(path);
        let mut secrets = Spans::walk(raw, path, Some(last)).secrets;
        // Text the parser rejects is still the value the user typed.
        if is_secret_key(last) && is_secret_value(raw) && !secrets.iter().any(|s| s == raw) {
            secrets.push(raw.to_string());
        }
        secrets
    }

    /// `outer_key` is the key the whole text sits under (for a `--set` value).
    fn walk(text: &str, root: &str, outer_key: Option<&str>) -> Spans {
        let mut spans = Spans::default();
        let mut stack: Vec<Frame> = Vec::new();
        let outer_secret = outer_key.is_some_and(is_secret_key);
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let at = (span.start.line() as u64, span.start.col() as u64 + 1);
            let is_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
                    | Event::Alias(_)
            );
            if is_node {
                // A key of a mapping, or a value (of a mapping entry, a list item or the root).
                let (path, secret) = match stack.last_mut() {
                    Some(Frame::Map { path, key, .. }) if key.is_none() => {
                        let name = match &event {
                            Event::Scalar(text, ..) => text.to_string(),
                            _ => "?".to_string(),
                        };
                        let child = join(path, &name);
                        spans.keys.entry(child).or_insert(at);
                        *key = Some(name);
                        // A complex key's content is not walked for paths.
                        if matches!(event, Event::MappingStart(..) | Event::SequenceStart(..)) {
                            stack.push(Frame::Seq {
                                path: "?".into(),
                                index: 0,
                                secret_key: false,
                            });
                        }
                        continue;
                    }
                    Some(Frame::Map { path, key, .. }) => {
                        let name = key.take().expect("checked above");
                        let secret = is_secret_key(&name);
                        (join(path, &name), secret)
                    }
                    Some(Frame::Seq {
                        path,
                        index,
                        secret_key,
                    }) => {
                        let child = join(path, &index.to_string());
                        *index += 1;
                        (child, *secret_key)
                    }
                    None => (root.to_string(), outer_secret),
                };
                spans.values.entry(path.clone()).or_insert(at);
                match event {
                    Event::Scalar(text, ..) if secret && is_secret_value(&text) => {
                        spans.secrets.push(text.to_string())
                    }
                    Event::MappingStart(..) if stack.len() < MAX_DEPTH => {
                        stack.push(Frame::Map { path, key: None })
                    }
                    Event::SequenceStart(..) if stack.len() < MAX_DEPTH => stack.push(Frame::Seq {
                        path,
                        index: 0,
                        secret_key: secret,
                    }),
                    Event::MappingStart(..) | Event::SequenceStart(..) => break,
                    _ => {}
                }
            } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
            }
        }
        spans
    }

    /// Where the value at `path` is, or else the nearest enclosing value that the file has.
    pub fn value(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(at) = self.values.get(path) {
                return Some(*at);
            }
            path = path.rsplit_once('.')?.0;
        }
    }

    /// Where the key that names `path` is (e.g. a component's name), else as [`Spans::value`].
    pub fn key(&self, path: &str) -> Option<Position> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    /// Whether the file itself sets `path` (and not a default).
    pub fn has(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    /// The values found under secret-like keys.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Keys whose values are credentials. Names and paths *of* secrets (`existingSecret`,
/// `secretName`, `tokenFile`) are not: redacting them would hide where to look.
pub fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if k.starts_with("existing")
        || ["name", "ref", "file", "path", "enabled", "create", "keys"]
            .iter()
            .any(|s| k.ends_with(s))
    {
        return false;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "credential",
        "apikey",
        "accesskey",
        "privatekey",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("key")
}

/// Booleans and nulls under a secret-like key (`secret: false`) are switches, not credentials.
fn is_secret_value(v: &str) -> bool {
    !matches!(
        v.trim(),
        "" | "~" | "null" | "true" | "false" | "True" | "False" | "yes" | "no"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: t\ncluster:\n  provider: sim\n  sim:\n    nodes:\n      - {name: a, gpus: 1}\n      - name: b\n        gpus: 2\ncomponents:\n  minio:\n    values: {auth: {rootPassword: hunter2-inline}, existingSecret: minio-root}\n";

    #[test]
    fn values_and_keys_are_located_one_based() {
        let s = Spans::new(TEXT);
        assert_eq!(s.value("name"), Some((1, 7)));
        assert_eq!(s.value("cluster.sim.nodes.0.gpus"), Some((6, 25)));
        assert_eq!(s.value("cluster.sim.nodes.1.gpus"), Some((8, 15)));
        assert_eq!(s.key("components.minio"), Some((10, 3)));
        // Not in the file: the nearest enclosing value.
        assert_eq!(
            s.value("cluster.sim.nodes.1.cpu"),
            s.value("cluster.sim.nodes.1")
        );
        assert!(!s.has("settings"));
    }

    #[test]
    fn secret_like_keys_are_collected_and_secret_names_are_not() {
        let s = Spans::new(TEXT);
        assert_eq!(s.secrets(), ["hunter2-inline"]);
        assert!(is_secret_key("accessKey") && is_secret_key("rootPassword"));
        assert!(is_secret_key("token") && is_secret_key("key"));
        assert!(!is_secret_key("existingSecret") && !is_secret_key("secretName"));
        assert!(!is_secret_key("tokenFile") && !is_secret_key("name"));
        let s = Spans::new("password: {env: KGF_PW}\ntokens: [tok-one-1, tok-two-2]\n");
        assert_eq!(s.secrets(), ["tok-one-1", "tok-two-2"]);
    }

    #[test]
    fn set_values_are_checked_under_their_key() {
        assert_eq!(
            Spans::set_value("components.minio.values.rootPassword", "pw-set-1"),
            ["pw-set-1"]
        );
        assert_eq!(
            Spans::set_value("components.minio.values", "{secretKey: sk-set-2}"),
            ["sk-set-2"]
        );
        assert!(Spans::set_value("settings.concurrency", "4").is_empty());
    }
}
