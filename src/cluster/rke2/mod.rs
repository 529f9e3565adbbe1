//! rke2 servers and agents over SSH: the cluster on the user's machines, GPU-ready and re-runnable.
//!
//! [`Rke2Plan`] turns the profile's `cluster.rke2` section into [`Step`](crate::step::Step)s: facts
//! from every host first (nothing changes while any host is unfit), the first server, the other
//! servers one by one, the agents in parallel (bounded by `parallelism`), the kubeconfig, and every
//! node Ready through the API. [`Rke2Plan::down`] uninstalls agents first, then servers.
//!
//! Every remote command goes through [`crate::ssh`]. The join token travels from the first
//! server's node-token file to the others' config.yaml only on stdin ([`crate::secret::Secret`]):
//! never in a command line or a log. A host running another rke2 version is reported, not
//! upgraded, unless `upgrade` is set. While a step changes a host it holds that host's lock
//! ([`facts::LOCK_DIR`]), so two kgf-up runs never install on one host at once.
//!
//! The real rke2 installer cannot run on kgf-up's CI (no internet, no systemd in a network
//! namespace): the integration test drives real sshd hosts with a named stand-in installer
//! (`tests/support/rke2_standin/`).

pub mod config;
mod error;
pub mod facts;
pub mod gpu;
mod hosts;
pub mod ids;
pub mod kubeconfig;
mod nodes;
mod plan;
pub use crate::profile::rke2 as spec;

use std::sync::Arc;

pub use error::Rke2Error;
pub use gpu::{GpuError, GpuHosts};
pub use plan::{DownOutcome, Rke2Plan, down_error};
pub use spec::{
    AuthSpec, DEFAULT_INSTALL_SCRIPT, DEFAULT_VERSION, Gpu, HostSpec, MirrorSpec, ProxySpec,
    Rke2Spec, Role, SecretRef, SshSpec,
};

use crate::step::{DynStep, StepId};

impl Rke2Plan {
    /// The steps, in order: facts, first server, other servers (one after another), agents,
    /// kubeconfig, nodes Ready. `after` are the steps the facts step needs (e.g. preflight).
    pub fn steps(self: &Arc<Self>, after: &[StepId]) -> Vec<DynStep> {
        let mut steps: Vec<DynStep> = vec![Arc::new(hosts::FactsStep {
            plan: self.clone(),
            needs: after.to_vec(),
        })];
        let mut previous_server = ids::facts();
        let mut host_ids = Vec::new();
        for host in self.spec.hosts.iter().filter(|h| h.role == Role::Server) {
            steps.push(Arc::new(hosts::HostStep {
                plan: self.clone(),
                host: host.clone(),
                needs: vec![previous_server.clone()],
            }));
            previous_server = ids::host(Role::Server, &host.address);
            host_ids.push(previous_server.clone());
        }
        for host in self.spec.hosts.iter().filter(|h| h.role == Role::Agent) {
            steps.push(Arc::new(hosts::HostStep {
                plan: self.clone(),
                host: host.clone(),
                needs: vec![previous_server.clone()],
            }));
            host_ids.push(ids::host(Role::Agent, &host.address));
        }
        let first = self.first_server();
        steps.push(Arc::new(nodes::KubeconfigStep {
            plan: self.clone(),
            needs: vec![ids::host(Role::Server, &first.address)],
        }));
        host_ids.push(ids::kubeconfig());
        steps.push(Arc::new(nodes::NodesStep {
            plan: self.clone(),
            needs: host_ids,
        }));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Exec;
    use crate::ssh::SshError;

    fn plan(yaml: &str) -> Arc<Rke2Plan> {
        Rke2Plan::new(serde_saphyr::from_str(yaml).unwrap(), &Exec::new()).unwrap()
    }

    #[test]
    fn servers_join_one_by_one_and_agents_after_the_last_server() {
        let plan = plan(
            "hosts:
  - {address: s1, role: server}
  - {address: a1, role: agent}
  - {address: s2, role: server}
  - {address: a2, role: agent}
",
        );
        let steps = plan.steps(&[StepId::new("preflight", "")]);
        let ids: Vec<String> = steps.iter().map(|s| s.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "rke2/facts",
                "rke2/server/s1",
                "rke2/server/s2",
                "rke2/agent/a1",
                "rke2/agent/a2",
                "rke2/kubeconfig",
                "rke2/nodes"
            ]
        );
        let needs =
            |i: usize| -> Vec<String> { steps[i].needs().iter().map(|s| s.to_string()).collect() };
        assert_eq!(needs(0), ["preflight"]);
        assert_eq!(needs(1), ["rke2/facts"]);
        assert_eq!(needs(2), ["rke2/server/s1"]);
        assert_eq!(needs(3), ["rke2/server/s2"]);
        assert_eq!(needs(4), ["rke2/server/s2"]);
        assert_eq!(needs(5), ["rke2/server/s1"]);
        assert_eq!(steps[6].needs().len(), 5);
    }

    #[test]
    fn a_missing_registry_password_stops_the_plan_as_an_input_error() {
        let err = Rke2Plan::new(
            serde_saphyr::from_str(
                "hosts: [{address: s1, role: server}]
registries:
  - registry: docker.io
    endpoints: [https://m.example]
    auth: {username: u, password: {env: KGF_RKE2_UNSET_PASSWORD_VAR}}
",
            )
            .unwrap(),
            &Exec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("KGF_RKE2_UNSET_PASSWORD_VAR"));
        assert_eq!(err.step("planning").kind, crate::step::ErrorKind::Input);
    }

    #[test]
    fn down_error_names_the_failed_host_and_reports_the_others() {
        let outcomes = vec![
            DownOutcome {
                address: "a1".into(),
                role: Role::Agent,
                result: Err(SshError::Unreachable {
                    host: "a1".into(),
                    detail: "No route to host".into(),
                }),
            },
            DownOutcome {
                address: "s1".into(),
                role: Role::Server,
                result: Ok("removed"),
            },
        ];
        let err = down_error(&outcomes).unwrap();
        assert!(err.message.contains("1 of 2 hosts"), "{}", err.message);
        assert!(err.message.contains("a1 (agent): FAILED: a1: cannot reach"));
        assert!(err.message.contains("s1 (server): removed"));
        assert!(err.fix.unwrap().contains("a1"));
        assert!(down_error(&outcomes[1..]).is_none());
    }
}
