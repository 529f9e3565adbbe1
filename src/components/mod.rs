//! Components: what a profile installs onto the cluster. A component is a helm release (repo,
//! OCI or local chart) or a set of kustomizations applied with kgf-up's server-side apply, with a
//! namespace, the components it needs first, and values.
//!
//! Built-in components (`builtin`, one file each) carry pinned sources, per-provider values and
//! their health check; a profile entry overrides any field, and entries with other names are
//! custom components that bring their own source. This module turns entries into steps; it must
//! not run programs except through `exec`.

pub mod builtin;
pub mod health;
mod helm_step;
mod kustomize_step;
mod step;

use std::path::Path;
use std::time::Duration;

use crate::fix::Fix;
use crate::helm::ChartSource;
use crate::profile::{ComponentSpec, Profile, Provider, Source};

pub use builtin::is_built_in;
pub use step::{Common, DetectValues, TAKE_OVER, Transform, step};

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

/// The enabled components of a profile, defaults resolved, in the profile's order.
pub fn resolve(profile: &Profile) -> Result<Vec<Component>, ComponentError> {
    let provider = profile.cluster.provider;
    let mut out = Vec::new();
    for (name, spec) in &profile.components {
        let mut base = builtin::find(name).map(|b| (b.defaults)(provider));
        // The profile's `gpu` section is the operator's device plugin configuration: under the
        // component's own values, which still win.
        if let Some(base) = base
            .as_mut()
            .filter(|_| name == builtin::gpu_operator::NAME)
        {
            deep_merge(
                &mut base.values,
                &builtin::gpu_operator::sharing_values(&profile.gpu),
            );
        }
        if !spec
            .enabled
            .or(base.as_ref().and_then(|b| b.enabled))
            .unwrap_or(true)
        {
            continue;
        }
        out.push(merge(name, base, spec, profile.settings.timeout)?);
    }
    // A need on a disabled component is dropped: the user turned it off on purpose.
    let enabled: Vec<String> = out.iter().map(|c| c.name.clone()).collect();
    for c in &mut out {
        c.needs.retain(|n| enabled.contains(n));
    }
    Ok(out)
}

fn merge(
    name: &str,
    base: Option<ComponentSpec>,
    spec: &ComponentSpec,
    default_timeout: Duration,
) -> Result<Component, ComponentError> {
    let base = base.unwrap_or_default();
    let source = spec
        .source
        .clone()
        .or(base.source)
        .ok_or_else(|| ComponentError {
            name: name.to_string(),
            message: "has no source and is not a built-in component".into(),
            fix: format!(
                "add components.{name}.source (helm, oci, chart or kustomize), or use a built-in name: {}",
                builtin::names().join(", ")
            ),
        })?;
    let mut values = base.values;
    deep_merge(&mut values, &spec.values);
    Ok(Component {
        name: name.to_string(),
        namespace: spec
            .namespace
            .clone()
            .or(base.namespace)
            .unwrap_or_else(|| name.to_string()),
        release: spec
            .release
            .clone()
            .or(base.release)
            .unwrap_or_else(|| name.to_string()),
        needs: spec.needs.clone().or(base.needs).unwrap_or_default(),
        values,
        timeout: spec.timeout.or(base.timeout).unwrap_or(default_timeout),
        manifests: builtin::find(name)
            .map(|b| b.manifests.to_vec())
            .unwrap_or_default(),
        source,
    })
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

    #[test]
    fn a_custom_component_needs_a_source() {
        let profile = crate::profile::parse(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  mine: {namespace: x}\n",
            "p.yaml",
        )
        .unwrap();
        let err = resolve(&profile)
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(err.contains("component `mine`: has no source"), "{err}");
        assert!(err.contains("fix: add components.mine.source"), "{err}");
    }

    #[test]
    fn disabled_components_and_needs_on_them_are_dropped() {
        let profile = crate::profile::parse(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  \
             a: {source: {chart: {path: a}}}\n  \
             b: {source: {chart: {path: b}}, needs: [a]}\n",
            "p.yaml",
        )
        .unwrap();
        let profile =
            crate::profile::apply_sets(profile, &["components.a.enabled=false".into()]).unwrap();
        let resolved = resolve(&profile).unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].name, "b");
        assert!(resolved[0].needs.is_empty());
        assert_eq!(resolved[0].namespace, "b");
    }
}
