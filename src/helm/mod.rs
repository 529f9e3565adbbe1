//! The helm adapter: install or upgrade a release at a pinned chart version with kgf-up's values,
//! say whether a deployed release is what the profile wants, recover releases an interrupted or
//! failed helm left behind, and uninstall.
//!
//! It drives the `helm` binary (3.13+ or 4.x, detected once: the two spell `--wait` and
//! `--atomic` differently) through [`crate::exec`] and nothing else, and keeps no state of its
//! own: no `helm repo add` (repository charts are fetched with `--repo`), no files but the values
//! file the caller names. It must not decide what to install: components do that.
//!
//! **Is a release converged?** Observe reads the release's record through the API ([`records`]:
//! status, chart name and version, user-supplied values; no helm process) and compares it with what
//! the profile wants. The values are compared, not a hash of them stored beside the release, because the
//! comparison needs no extra state, catches a hand-made `helm upgrade --set` (a stored hash would
//! still match), and names the key that differs. Upgrades always pass `--reset-values`, so the
//! deployed values are exactly kgf-up's file and the comparison is exact. Values are written as JSON
//! (valid YAML) so that helm's YAML 1.1 parser and kgf-up read the same types.
//!
//! **Recovery.** A helm client killed mid-operation leaves the latest revision in `pending-install`,
//! `pending-upgrade` or `pending-rollback`, and every later upgrade fails with "another operation
//! (install/upgrade/rollback) is in progress". kgf-up takes one lock per cluster, so a pending
//! release it owns is one an earlier kgf-up left behind; [`Helm::install`] recovers it before
//! upgrading: a release that was never deployed is uninstalled (its objects removed, its CRDs kept,
//! as helm always does), one with an earlier deployed revision is rolled back to it. An interrupted
//! uninstall (`uninstalling`) is finished. A `failed` release needs no recovery: `helm upgrade`
//! upgrades a failed revision in place.
//!
//! One concept a file, each using only those listed before it: [`version`] (detection, cached per
//! process), [`failure`] (what helm's messages mean), [`status`] (what helm records of a
//! revision), [`recovery`] (what to do with a stuck release), [`error`], [`source`] (chart sources), [`release`], [`values`] (the values file and
//! its diff), [`records`] (release records read from the API), [`client`] (the commands, install,
//! recovery, uninstall), [`crds`] and [`observe`].

pub mod client;
pub mod crds;
pub mod error;
pub mod failure;
pub mod observe;
pub mod records;
pub mod recovery;
pub mod release;
pub mod source;
pub mod status;
pub mod values;
pub mod version;

pub use client::Helm;
pub use error::HelmError;
pub use failure::InstallFailure;
pub use observe::{Found, Observed};
pub use recovery::{Recovery, recovery_for};
pub use release::{Installed, Release};
pub use source::{ChartSource, fetch_cmd};
pub use status::{LatestRevision, ReleaseStatus, Revision};
pub use values::{first_difference, value_changes};
pub use version::HelmVersion;
