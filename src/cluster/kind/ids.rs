//! Step ids of the kind provider, made only here.

use crate::step::StepId;

pub fn cluster() -> StepId {
    StepId::new("kind", "cluster")
}
pub fn context() -> StepId {
    StepId::new("kind", "context")
}
pub fn registry() -> StepId {
    StepId::new("kind", "registry")
}
pub fn registry_hosts(node: &str) -> StepId {
    StepId::new("kind/registry-hosts", node)
}
pub fn registry_hosting() -> StepId {
    StepId::new("kind", "registry-hosting")
}
/// `task` is the part's slug ([`super::NodeTask::slug`]).
pub fn gpu_node(node: &str, task: &str) -> StepId {
    StepId::new("kind/gpu", &format!("{node}/{task}"))
}
pub fn runtime_class() -> StepId {
    StepId::new("kind", "runtime-class")
}
