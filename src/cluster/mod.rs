//! Cluster providers: create, observe and delete a cluster, and hand back its kubeconfig.

pub mod kind;
pub mod rke2;
