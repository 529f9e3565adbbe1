//! What a component is once every default is resolved, and what the steps, health checks and
//! built-in definitions share about it: its values merged, its chart source, its local paths.
//! It must not know any particular component.

use std::path::Path;
use std::time::Duration;

use crate::fix::Fix;
use crate::helm::ChartSource;
use crate::profile::{Provider, Source};

/// A component with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub name: String,
    pub source: Source,
    pub namespace: String,
    pub release: String,
    pub needs: Vec<String>,
    pub values: serde_json::Value,
    pub timeout: Duration,
    /// kgf-up's own manifests (`manifests/`, built into the binary), server-side applied into
    /// the component's namespace once its release is installed.
    pub manifests: Vec<Manifest>,
}

/// One of kgf-up's own manifests, by its path in the repository and its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub path: &'static str,
    pub yaml: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("component `{name}`: {message}")]
pub struct ComponentError {
    pub name: String,
    pub message: String,
    pub fix: String,
}

impl Fix for ComponentError {
    fn fix(&self) -> Option<String> {
        Some(self.fix.clone())
    }
}

/// Merges `over` into `base`: mappings key by key, everything else replaced.
pub fn deep_merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (_, serde_json::Value::Null) => {}
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The chart of a helm source (`None` for kustomizations); local paths are relative to `base_dir`.
pub fn chart_source(source: &Source, base_dir: &Path) -> Option<ChartSource> {
    Some(match source {
        Source::Helm {
            repo,
            chart,
            version,
        } => ChartSource::Repo {
            url: repo.clone(),
            chart: chart.clone(),
            version: version.clone(),
        },
        Source::Oci { reference, version } => ChartSource::Oci {
            reference: reference.clone(),
            version: version.clone(),
            // A registry on this machine (kind's localhost:5001 mirror) serves plain HTTP.
            plain_http: reference.starts_with("oci://localhost:")
                || reference.starts_with("oci://127.0.0.1:"),
        },
        Source::Chart { path } => ChartSource::Local {
            path: base_dir.join(path),
        },
        Source::Kustomize { .. } => return None,
    })
}

/// Where a local source path points (relative paths are relative to the profile file).
pub fn local_path(base_dir: &Path, path: &str) -> String {
    if path.contains("://") || path.starts_with("github.com/") || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        base_dir.join(path).display().to_string()
    }
}

/// Whether the provider runs pods for real (the `sim` provider's pods never run a container).
pub fn pods_run(provider: Provider) -> bool {
    provider != Provider::Sim
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_merges_mappings_and_replaces_the_rest() {
        let mut base = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        deep_merge(&mut base, &json!({"a": {"c": [3], "e": true}, "d": null}));
        assert_eq!(base, json!({"a": {"b": 1, "c": [3], "e": true}, "d": "x"}));
    }
}
