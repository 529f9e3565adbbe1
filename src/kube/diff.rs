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
    crate::diff::differences(&strip(live), &strip(after))
        .into_iter()
        .map(|d| {
            let hidden = secret && is_secret_data(&d.path);
            let show = |v: Option<serde_json::Value>| match v {
                None | Some(serde_json::Value::Null) => "(none)".to_string(),
                Some(_) if hidden => "<redacted>".to_string(),
                Some(v) => crate::diff::shown(&v, 120),
            };
            format!("{}: {} → {}", d.path, show(d.old), show(d.new))
        })
        .collect()
}

/// A Secret's values: its `data` and `stringData` keys, and those maps whole (a Secret that gains
/// its first key differs at `data` itself).
fn is_secret_data(path: &str) -> bool {
    ["data", "stringData"].iter().any(|top| {
        path == *top
            || path
                .strip_prefix(top)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    })
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

    #[test]
    fn a_secret_that_gains_its_first_key_shows_no_value() {
        let empty = serde_json::json!({"metadata": {"name": "s"}});
        let filled = serde_json::json!({"metadata": {"name": "s"}, "data": {"password": "c2VjcmV0"},
                                        "stringData": {"token": "plain"}});
        let lines = object_diff(&empty, &filled, true);
        assert_eq!(
            lines,
            [
                "data: (none) → <redacted>",
                "stringData: (none) → <redacted>"
            ]
        );
        // A ConfigMap's data is not secret.
        let shown = object_diff(&empty, &filled, false);
        assert!(shown[0].contains("c2VjcmV0"), "{shown:?}");
    }

    #[test]
    fn a_changed_item_of_a_list_is_named_by_its_index() {
        let pod = |image: &str| serde_json::json!({"spec": {"containers": [{"name": "a", "image": image}]}});
        assert_eq!(
            object_diff(&pod("i:1"), &pod("i:2"), false),
            ["spec.containers[0].image: \"i:1\" → \"i:2\""]
        );
    }
}
