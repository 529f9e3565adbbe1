//! One `up` at a time per cluster: a Lease `kgf-up-lock` in kgf-up's namespace, taken only when a
//! step is about to change something (so a converged run stays read-only), renewed while the run
//! lasts, released at its end, and taken over when its holder stopped renewing it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::fix::Fix;
use crate::gate::{Change, Gate};
use crate::kube::{Kube, KubeError};

pub const LEASE: &str = "kgf-up-lock";
/// A holder that has not renewed for this long is taken to be gone (killed, lost its network).
pub const STALE: Duration = Duration::from_secs(60);
const RENEW: Duration = Duration::from_secs(15);

/// A held lock; renewal stops when it is dropped, and [`Held::release`] gives it back.
pub struct Held {
    api: Api<Lease>,
    gate: Gate,
    holder: String,
    renewal: tokio::task::JoinHandle<()>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn holder() -> String {
    format!("{}@{} pid {}", whoami(), hostname(), std::process::id())
}

/// Whether `holder` is a kgf-up of this machine that is no longer running (killed, crashed):
/// its lock is taken over at once instead of after [`STALE`], so an interrupted `up` can be
/// finished straight away.
fn holder_is_gone(holder: &str) -> bool {
    let Some((who, pid)) = holder.split_once(" pid ") else {
        return false;
    };
    let on_this_host = who
        .rsplit_once('@')
        .is_some_and(|(_, host)| host == hostname());
    on_this_host
        && pid
            .parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease(holder: &str) -> Lease {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "labels": {"app.kubernetes.io/managed-by": "kgf-up"}},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": STALE.as_secs(),
            "acquireTime": now(),
            "renewTime": now(),
        }
    }))
    .expect("a lease")
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kgf-up ({holder}) is changing this cluster (lock renewed {}s ago)", renewed.as_secs())]
    Held { holder: String, renewed: Duration },
    #[error("creating kgf-up's namespace: {0}")]
    Namespace(#[source] KubeError),
    #[error("taking kgf-up's lock: {0}")]
    Api(#[source] kube::Error),
}

impl Fix for LockError {
    fn fix(&self) -> Option<String> {
        match self {
            LockError::Held { .. } => Some(format!(
                "wait for it to finish; if it is gone, its lock expires {}s after its last renewal",
                STALE.as_secs()
            )),
            LockError::Namespace(_) | LockError::Api(_) => None,
        }
    }
}

/// Takes the lock, or says who holds it and how to proceed.
pub async fn acquire(kube: &Kube, namespace: &str) -> Result<Held, LockError> {
    crate::inventory::ensure_namespace(kube, namespace)
        .await
        .map_err(LockError::Namespace)?;
    let api: Api<Lease> = Api::namespaced(kube.client(), namespace);
    let me = holder();
    let err = LockError::Api;
    let gate = kube.gate();
    let created = gate
        .change(
            Change::bookkeeping(format!("take kgf-up's lock {namespace}/{LEASE}")),
            api.create(&PostParams::default(), &lease(&me)),
        )
        .await;
    match created {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let current = api.get(LEASE).await.map_err(err)?;
            let spec = current.spec.unwrap_or_default();
            let other = spec.holder_identity.unwrap_or_default();
            let renewed = spec.renew_time.map(|t| t.0);
            let age = renewed
                .map(|t| Timestamp::now().duration_since(t).unsigned_abs())
                .unwrap_or(STALE);
            if age < STALE && !holder_is_gone(&other) {
                return Err(LockError::Held {
                    holder: other,
                    renewed: age,
                });
            }
            tracing::warn!(target: "lock", %other, "taking over a stale lock");
            // Replace only the version we read: two takers cannot both win.
            let mut taken = lease(&me);
            taken.metadata.resource_version = current.metadata.resource_version;
            gate.change(
                Change::bookkeeping(format!("take over the stale lock of {other}")),
                api.replace(LEASE, &PostParams::default(), &taken),
            )
            .await
            .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let renewal = {
        let api = api.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                let patch = serde_json::json!({"spec": {"renewTime": now()}});
                let renewed = gate
                    .change(
                        Change::bookkeeping("renew kgf-up's lock"),
                        api.patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch)),
                    )
                    .await;
                if let Err(e) = renewed {
                    tracing::warn!(target: "lock", error = %e, "could not renew the lock");
                }
            }
        })
    };
    Ok(Held {
        api,
        gate: gate.clone(),
        holder: me,
        renewal,
    })
}

impl Held {
    /// Gives the lock back (only if it is still ours).
    pub async fn release(self) {
        self.renewal.abort();
        if let Ok(current) = self.api.get(LEASE).await
            && current.spec.and_then(|s| s.holder_identity).as_deref() == Some(self.holder.as_str())
        {
            let _ = self
                .gate
                .change(
                    Change::bookkeeping("release kgf-up's lock"),
                    self.api.delete(LEASE, &DeleteParams::default()),
                )
                .await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_on_this_host_whose_process_is_gone_is_stale_at_once() {
        let me = holder();
        assert!(!holder_is_gone(&me), "this process runs");
        let dead = format!("{}@{} pid {}", whoami(), hostname(), u32::MAX);
        assert!(holder_is_gone(&dead));
        let elsewhere = format!("{}@another-host pid {}", whoami(), u32::MAX);
        assert!(
            !holder_is_gone(&elsewhere),
            "another machine's process cannot be checked"
        );
    }
}
