//! What a built-in component is made of: its defaults per provider, its own manifests, its health
//! check and what it makes before its release; and the shorthands the definitions are written in.

use futures::future::BoxFuture;

use crate::components::component::{Component, Manifest};
use crate::kube::{Kube, ObjectRef};
use crate::profile::{ComponentSpec, Provider, Source};
use crate::step::StepError;

/// A component's own definition of working: a "healthy because…" line, or the error with the
/// fix. The flag is false where pods never run (`sim`): probes that need a serving pod are skipped.
pub type Verify =
    for<'a> fn(&'a Kube, &'a Component, bool) -> BoxFuture<'a, Result<String, StepError>>;

/// Makes objects before the release is installed; returns them so they are recorded as the
/// component's and `down` removes them.
pub type BeforeInstall =
    for<'a> fn(&'a Kube, &'a Component) -> BoxFuture<'a, Result<Vec<ObjectRef>, StepError>>;

/// What kgf-up knows about one built-in component.
pub struct BuiltIn {
    pub name: &'static str,
    /// Its defaults on a provider; a profile entry overrides any field.
    pub defaults: fn(Provider) -> ComponentSpec,
    /// kgf-up's own manifests, applied into the component's namespace after its release.
    pub manifests: &'static [Manifest],
    pub verify: Verify,
    /// MinIO's root Secret.
    pub before_install: Option<BeforeInstall>,
}

pub fn helm(repo: &str, chart: &str, version: &str) -> Option<Source> {
    Some(Source::Helm {
        repo: repo.into(),
        chart: chart.into(),
        version: version.into(),
    })
}

pub fn oci(reference: &str, version: &str) -> Option<Source> {
    Some(Source::Oci {
        reference: reference.into(),
        version: version.into(),
    })
}

pub fn needs(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}
