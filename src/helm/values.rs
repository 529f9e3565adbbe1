//! kgf-up's values: written for helm as a private JSON file, and compared with the deployed ones
//! key by key.

use std::path::Path;

use serde_json::Value;

use super::HelmError;
use crate::diff::{Difference, differences, shown};

pub(super) fn empty_if_null(v: Value) -> Value {
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    }
}

/// Writes `values` as JSON (which helm reads as YAML), readable only by the user.
pub(super) fn write_values(path: &Path, values: &Value) -> Result<(), HelmError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| HelmError::ValuesFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = serde_json::to_string_pretty(&empty_if_null(values.clone()))
        .expect("a JSON value always serializes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)
}

/// The first place where the deployed values differ from the wanted ones, as a sentence, or
/// `None` when they are the same. Numbers compare by value: helm stores them as floats.
pub fn first_difference(deployed: &Value, wanted: &Value) -> Option<String> {
    let Difference { path, old, new } = differences(deployed, wanted).into_iter().next()?;
    let here = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path
    };
    Some(match (old, new) {
        (Some(d), None) => format!(
            "`{here}` is {} on the cluster but not set by kgf-up",
            show(&d)
        ),
        (None, Some(w)) => format!(
            "`{here}` is not set on the cluster, kgf-up wants {}",
            show(&w)
        ),
        (d, w) => format!(
            "`{here}` is {} on the cluster, kgf-up wants {}",
            show(&d.unwrap_or_default()),
            show(&w.unwrap_or_default())
        ),
    })
}

/// Every values key that differs, as `key: deployed → wanted` (`(unset)` where one side has
/// none), for `plan` to list.
pub fn value_changes(deployed: &Value, wanted: &Value) -> Vec<String> {
    let side = |v: &Option<Value>| v.as_ref().map(show).unwrap_or_else(|| "(unset)".into());
    differences(deployed, wanted)
        .iter()
        .map(|d| format!("{}: {} → {}", d.path, side(&d.old), side(&d.new)))
        .collect()
}

/// A value for a message: compact JSON, cut at 60 characters.
fn show(v: &Value) -> String {
    shown(v, 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_differences_name_the_key() {
        let deployed = json!({"operator": {"replicas": 2, "logLevel": "info"}, "tags": ["a", "b"]});
        assert_eq!(first_difference(&deployed, &deployed.clone()), None);
        let d = first_difference(
            &deployed,
            &json!({"operator": {"replicas": 3, "logLevel": "info"}, "tags": ["a", "b"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`operator.replicas` is 2 on the cluster, kgf-up wants 3"
        );
        let d = first_difference(
            &deployed,
            &json!({"operator": {"replicas": 2}, "tags": ["a", "b"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`operator.logLevel` is \"info\" on the cluster but not set by kgf-up"
        );
        let d = first_difference(
            &deployed,
            &json!({"operator": {"replicas": 2, "logLevel": "info"}, "tags": ["a", "c"]}),
        );
        assert_eq!(
            d.unwrap(),
            "`tags[1]` is \"b\" on the cluster, kgf-up wants \"c\""
        );
        let d = first_difference(&json!({}), &json!({"agent": {"enabled": false}}));
        assert_eq!(
            d.unwrap(),
            "`agent` is not set on the cluster, kgf-up wants {\"enabled\":false}"
        );
        let d = first_difference(&json!({"tags": ["a"]}), &json!({"tags": ["a", "b"]}));
        assert!(d.unwrap().starts_with("`tags` is [\"a\"]"));
    }

    #[test]
    fn numbers_compare_by_value_as_helm_stores_floats() {
        assert_eq!(first_difference(&json!({"n": 1}), &json!({"n": 1.0})), None);
        assert_eq!(
            first_difference(&json!({"n": 1e6}), &json!({"n": 1000000})),
            None
        );
        assert!(first_difference(&json!({"n": "1"}), &json!({"n": 1})).is_some());
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(200);
        let d = first_difference(&json!({"k": long}), &json!({"k": "y"})).unwrap();
        assert!(d.len() < 150 && d.contains('…'), "{d}");
    }

    #[test]
    fn values_file_is_json_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/values.json");
        write_values(&path, &json!({"enabled": true, "name": "on"})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json!({"enabled": true, "name": "on"}));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_values(&path, &Value::Null).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
    }
}
