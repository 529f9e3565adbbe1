//! What can go wrong with the kind provider.

use std::path::PathBuf;

use crate::exec::ExecError;

impl From<crate::profile::SpecError> for KindError {
    fn from(e: crate::profile::SpecError) -> Self {
        KindError::Spec(e.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("invalid cluster.kind: {0}")]
    Spec(String),
    #[error("{what}")]
    Exec {
        what: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("could not understand {what}: {detail}")]
    Parse { what: String, detail: String },
    /// `docker exec` found no container of the node's name: the cluster has no such node (yet).
    #[error("node {node} does not exist in the kind cluster")]
    NoNode { node: String },
    #[error("could not write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
