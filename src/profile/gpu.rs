//! The `gpu` section of a profile: how the GPU operator's device plugin advertises the GPUs
//! (whole, shared by time-slicing, or partitioned by MIG), and so how many GPU resources each GPU
//! node must show. Pure data and arithmetic; the operator values it implies are made by the
//! gpu-operator component, the checks by `validate`.

use serde::{Deserialize, Serialize};

/// The resource a whole GPU (or a time-slice of one, or a MIG device under the single strategy)
/// is advertised as.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The prefix of MIG devices' resources under the mixed strategy (`nvidia.com/mig-1g.10gb`, ...).
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";

/// `gpu` in a profile. Empty: each GPU is one `nvidia.com/gpu`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSharing {
    /// Each GPU advertised as `replicas` `nvidia.com/gpu`, so that pods (training and serving,
    /// say) share it by time; nothing isolates their memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slicing: Option<TimeSlicing>,
    /// MIG is on for the GPUs (partitioned by the operator's MIG manager or by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<Mig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSlicing {
    pub replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mig {
    pub strategy: MigStrategy,
}

/// The device plugin's MIG strategies (its `migStrategy`, the operator's `mig.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigStrategy {
    /// Every MIG device is an `nvidia.com/gpu` (all GPUs of a node partitioned alike).
    Single,
    /// Each MIG profile is its own resource, `nvidia.com/mig-<profile>`; GPUs without MIG stay
    /// `nvidia.com/gpu`.
    Mixed,
}

impl MigStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            MigStrategy::Single => "single",
            MigStrategy::Mixed => "mixed",
        }
    }
}

/// What a GPU node must show: the sum of its allocatable GPU resources ([`GpuSharing::counts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The GPUs the profile gave the node, times the time-slicing replicas.
    Exactly(i64),
    /// A floor: with MIG a GPU yields one or more devices (its partition decides how many), and
    /// a node whose GPU count the profile does not say must show at least one.
    AtLeast(i64),
}

impl Expected {
    pub fn met_by(self, shown: i64) -> bool {
        match self {
            Expected::Exactly(n) => shown == n,
            Expected::AtLeast(n) => shown >= n,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Exactly(n) => write!(f, "{n}"),
            Expected::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

impl GpuSharing {
    /// Time-slicing replicas per GPU (1 without time-slicing).
    pub fn replicas(&self) -> u32 {
        self.time_slicing.as_ref().map_or(1, |t| t.replicas)
    }

    /// What a node given `gpus` GPUs (`None`: the profile does not say how many) must show.
    pub fn expected(&self, gpus: Option<u32>) -> Expected {
        let replicas = i64::from(self.replicas());
        match (gpus, &self.mig) {
            (Some(n), None) => Expected::Exactly(i64::from(n) * replicas),
            (Some(n), Some(_)) => Expected::AtLeast(i64::from(n.max(1)) * replicas),
            (None, _) => Expected::AtLeast(1),
        }
    }

    /// Whether an allocatable resource of a node counts as GPUs: `nvidia.com/gpu` always, the
    /// `nvidia.com/mig-*` resources when MIG is on.
    pub fn counts(&self, resource: &str) -> bool {
        resource == GPU_RESOURCE
            || (self.mig.is_some() && resource.starts_with(MIG_RESOURCE_PREFIX))
    }

    pub fn is_default(&self) -> bool {
        *self == GpuSharing::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<GpuSharing, serde_saphyr::Error> {
        serde_saphyr::from_str(yaml)
    }

    #[test]
    fn whole_gpus_are_counted_exactly() {
        let plain = GpuSharing::default();
        assert_eq!(plain.expected(Some(2)), Expected::Exactly(2));
        assert!(plain.expected(Some(2)).met_by(2));
        assert!(
            !plain.expected(Some(2)).met_by(3),
            "a node shows more GPUs than it was given"
        );
        assert_eq!(plain.expected(None), Expected::AtLeast(1));
        assert!(plain.counts("nvidia.com/gpu"));
        assert!(!plain.counts("nvidia.com/mig-1g.10gb"), "MIG is off");
    }

    #[test]
    fn time_slicing_multiplies_and_mig_counts_its_devices_as_a_floor() {
        let shared = parse("time_slicing: {replicas: 4}").unwrap();
        assert_eq!(shared.expected(Some(2)), Expected::Exactly(8));
        let mixed = parse("mig: {strategy: mixed}").unwrap();
        assert_eq!(mixed.expected(Some(2)), Expected::AtLeast(2));
        assert_eq!(mixed.expected(Some(2)).to_string(), "at least 2");
        assert!(mixed.counts("nvidia.com/mig-3g.40gb") && mixed.counts("nvidia.com/gpu"));
        assert!(!mixed.counts("nvidia.com/gpu.shared"));
        let single = parse("mig: {strategy: single}\ntime_slicing: {replicas: 2}").unwrap();
        assert_eq!(single.expected(Some(1)), Expected::AtLeast(2));
    }

    #[test]
    fn unknown_keys_and_strategies_are_rejected() {
        assert!(parse("time_slicing: {replica: 4}").is_err());
        assert!(parse("mig: {strategy: none}").is_err());
        assert!(parse("mps: {}").is_err());
        assert!(parse("{}").unwrap().is_default());
    }
}
