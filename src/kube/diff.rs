//! What a dry run would change in a live object, field by field.

/// The fields that differ between the live object and the dry run's result, one line each as
/// `path: old → new`, leaving out what the server keeps for itself (resourceVersion, managed
/// fields, status). A Secret's values are never shown, only which keys change.
pub fn object_diff(
    live: &serde_json::Value,
    after: &serde_json::Value,
    secret: bool,
) -> Vec<String> {
    fn strip(v: &serde_json::Value) -> serde_json::Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for k in [
                    "managedFields",
                    "resourceVersion",
                    "generation",
                    "uid",
                    "creationTimestamp",
                ] {
                    m.remove(k);
                }
            }
        }
        v
    }
    let mut lines = Vec::new();
    diff_into("", &strip(live), &strip(after), secret, &mut lines);
    lines
}

fn diff_into(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    secret: bool,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            diff_into(
                &at,
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
                secret,
                out,
            );
        }
        return;
    }
    let hidden = secret && (path.starts_with("data.") || path.starts_with("stringData."));
    let show = |v: &Value| match v {
        Value::Null => "(none)".to_string(),
        _ if hidden => "<redacted>".to_string(),
        v => {
            let text = v.to_string();
            if text.chars().count() > 120 {
                format!("{}…", text.chars().take(117).collect::<String>())
            } else {
                text
            }
        }
    };
    out.push(format!("{path}: {} → {}", show(old), show(new)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_diff_names_each_changed_field_and_hides_what_the_server_keeps() {
        let live = serde_json::json!({
            "metadata": {"name": "x", "resourceVersion": "1", "managedFields": [1],
                         "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"image": "i:1"}},
            "status": {"ready": 1},
        });
        let after = serde_json::json!({
            "metadata": {"name": "x", "resourceVersion": "2", "managedFields": [2],
                         "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 3, "template": {"image": "i:1"}},
            "status": {"ready": 0},
        });
        assert_eq!(
            object_diff(&live, &after, false),
            ["metadata.labels.b: (none) → \"2\"", "spec.replicas: 2 → 3"]
        );
        assert!(object_diff(&live, &live, false).is_empty());
        let secret = |v: &str| serde_json::json!({"data": {"password": v}});
        assert_eq!(
            object_diff(&secret("b2xk"), &secret("bmV3"), true),
            ["data.password: <redacted> → <redacted>"]
        );
    }
}
