//! The one JSON diff: where two values differ, key by key, and a value cut short for a message.
//! Both adapters that compare what is on the cluster with what kgf-up wants use it: `kube` (a live
//! object against its server-side dry run) and `helm` (deployed values against kgf-up's). It knows
//! nothing of either; each renders the differences its own way.

use serde_json::Value;

/// One place where the two sides differ: its path (`a.b[2].c`, empty at the top level) and the
/// value on each side, `None` where that side has no such key.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Every leaf where `old` and `new` differ, in key order. Mappings are compared key by key and
/// lists of the same length item by item (a list that grew or shrank is one difference); numbers
/// compare by value, so `1` and `1.0` are the same (helm stores every number as a float).
pub fn differences(old: &Value, new: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Difference>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&at, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (Some(Value::Number(a)), Some(Value::Number(b))) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            path: path.to_string(),
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

/// A value for a message: compact JSON, cut after `max` characters with `…`.
pub fn shown(v: &Value, max: usize) -> String {
    let text = v.to_string();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(old: Value, new: Value) -> Vec<String> {
        differences(&old, &new)
            .into_iter()
            .map(|d| d.path)
            .collect()
    }

    #[test]
    fn mappings_and_same_length_lists_are_compared_leaf_by_leaf() {
        assert_eq!(
            paths(
                json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"}),
                json!({"a": {"b": 2, "c": [1, 3]}, "e": "y"})
            ),
            ["a.b", "a.c[1]", "d", "e"]
        );
        // A list that changed length is one difference, shown whole.
        let d = differences(&json!({"t": ["a"]}), &json!({"t": ["a", "b"]}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].new, Some(json!(["a", "b"])));
        assert!(differences(&json!({"x": [1]}), &json!({"x": [1]})).is_empty());
    }

    #[test]
    fn a_missing_key_is_none_and_not_null() {
        let d = differences(&json!({}), &json!({"k": null}));
        assert_eq!(
            d,
            [Difference {
                path: "k".into(),
                old: None,
                new: Some(Value::Null)
            }]
        );
        let top = differences(&json!(1), &json!("1"));
        assert_eq!(top[0].path, "", "a difference at the top level has no path");
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(differences(&json!({"n": 1}), &json!({"n": 1.0})).is_empty());
        assert!(differences(&json!({"n": 1e6}), &json!({"n": 1000000})).is_empty());
        assert_eq!(paths(json!({"n": "1"}), json!({"n": 1})), ["n"]);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(shown(&json!("ab"), 10), "\"ab\"");
        let cut = shown(&json!("é".repeat(100)), 10);
        assert_eq!(cut.chars().count(), 11, "{cut}");
        assert!(cut.ends_with('…'));
    }
}
