//! Step ids of the rke2 provider, made only here.

use super::Role;
use crate::step::StepId;

pub fn facts() -> StepId {
    StepId::new("rke2", "facts")
}
pub fn host(role: Role, address: &str) -> StepId {
    StepId::new(&format!("rke2/{}", role.as_str()), address)
}
pub fn kubeconfig() -> StepId {
    StepId::new("rke2", "kubeconfig")
}
pub fn nodes() -> StepId {
    StepId::new("rke2", "nodes")
}
