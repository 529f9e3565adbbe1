//! What can go wrong with the rke2 provider, each with its fix.

use std::path::PathBuf;

use super::{config, facts, kubeconfig};
use crate::fix::Fix;
use crate::ssh::SshError;
use crate::step::StepError;

impl From<crate::profile::SpecError> for Rke2Error {
    fn from(e: crate::profile::SpecError) -> Self {
        Rke2Error::Spec(e.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Rke2Error {
    #[error("invalid cluster.rke2: {0}")]
    Spec(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: {problem}")]
    Host { host: String, problem: String },
    #[error("{host}: being changed by another kgf-up run ({owner})")]
    Locked { host: String, owner: String },
    #[error("could not get the install script from {from}: {detail}")]
    Script { from: String, detail: String },
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error("could not write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster's API server: {0}")]
    Api(String),
}

impl Rke2Error {
    pub(super) fn step(self, context: &str) -> StepError {
        let fix = self.fix();
        let err = StepError::new(format!("{context}: {self}"));
        let err = if matches!(self, Rke2Error::Spec(_)) {
            err.input()
        } else {
            err
        };
        match fix {
            Some(f) => err.with_fix(f),
            None => err,
        }
    }
}

impl Fix for Rke2Error {
    fn fix(&self) -> Option<String> {
        match self {
            Rke2Error::Spec(_) => Some("correct cluster.rke2 in the profile".into()),
            Rke2Error::Ssh(e) => e.fix(),
            Rke2Error::Host { .. } => None,
            Rke2Error::Locked { host, .. } => Some(format!(
                "wait for the other run to finish; if none is running (it crashed), remove the lock: \
                 ssh {host} sudo rm -r {}",
                facts::LOCK_DIR
            )),
            Rke2Error::Script { .. } => Some(
                "check this machine's internet access, or set cluster.rke2.install_script to a \
                 downloaded copy, or use artifact_dir for an air-gapped install"
                    .into(),
            ),
            Rke2Error::Kubeconfig(_) => Some(format!(
                "check {} on the first server; rke2 writes it when rke2-server starts",
                config::KUBECONFIG_PATH
            )),
            Rke2Error::Io { .. } => Some("make the kubeconfig's directory writable".into()),
            Rke2Error::Api(_) => Some(
                "check that port 6443 of the first server is reachable from this machine".into(),
            ),
        }
    }
}
