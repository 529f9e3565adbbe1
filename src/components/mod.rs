//! Components: what a profile installs onto the cluster. A component is a helm release (repo,
//! OCI or local chart) or a set of kustomizations applied with kgf-up's server-side apply, with a
//! namespace, the components it needs first, and values.
//!
//! Built-in components (`builtin`, one file each) carry pinned sources, per-provider values and
//! their health check; a profile entry overrides any field, and entries with other names are
//! custom components that bring their own source. This module turns entries into components
//! ([`resolve`]) and components into steps ([`step`]); it must not run programs except through
//! `exec`. Its files use each other downward only: the steps and the built-ins stand on
//! [`component`] and [`health`], never on this face.

pub mod builtin;
pub mod component;
pub mod health;
mod helm_step;
mod kustomize_step;
mod step;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use crate::profile::{ComponentSpec, Profile, Source};
use crate::step::DynStep;

pub use builtin::is_built_in;
pub use component::{
    Component, ComponentError, Manifest, chart_source, deep_merge, local_path, pods_run,
};
pub use step::{Common, DetectValues, Rewrite, TAKE_OVER, Transform};
pub use verify::verify;

/// The step that installs `common`'s component: a helm release, or a kustomization.
/// `detected` (values found during the run) applies to charts, `transform` to kustomizations.
pub fn step(
    common: Common,
    detected: Option<DetectValues>,
    transform: Option<Transform>,
) -> DynStep {
    match common.component.source {
        Source::Kustomize { .. } => Arc::new(kustomize_step::KustomizeStep::new(common, transform)),
        _ => Arc::new(helm_step::HelmStep::new(common, detected)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
