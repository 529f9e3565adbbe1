//! One `up` at a time per cluster: a Lease `kgf-up-lock` in kgf-up's namespace, taken only when a
//! step is about to change something (so a converged run stays read-only), renewed while the run
//! lasts, released at its end, and taken over when its holder stopped renewing it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::kube::Kube;
use crate::step::StepError;

pub const LEASE: &str = "kgf-up-lock";
/// A holder that has not renewed for this long is taken to be gone (killed, lost its network).
pub const STALE: Duration = Duration::from_secs(60);
const RENEW: Duration = Duration::from_secs(15);

/// A held lock; renewal stops when it is dropped, and [`Held::release`] gives it back.
pub struct Held {
    api: Api<Lease>,
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

/// Takes the lock, or says who holds it and how to proceed.
pub async fn acquire(kube: &Kube, namespace: &str) -> Result<Held, StepError> {
    crate::inventory::ensure_namespace(kube, namespace)
        .await
        .map_err(|e| StepError::context("creating kgf-up's namespace", e))?;
    let api: Api<Lease> = Api::namespaced(kube.client(), namespace);
    let me = holder();
    let err = |e: kube::Error| StepError::context("taking kgf-up's lock", e);
    match api.create(&PostParams::default(), &lease(&me)).await {
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
                return Err(StepError::new(format!(
                    "another kgf-up ({other}) is changing this cluster (lock renewed {}s ago)",
                    age.as_secs()
                ))
                .with_fix(format!(
                    "wait for it to finish; if it is gone, its lock expires {}s after its last renewal",
                    STALE.as_secs()
                )));
            }
            tracing::warn!(target: "lock", %other, "taking over a stale lock");
            // Replace only the version we read: two takers cannot both win.
            let mut taken = lease(&me);
            taken.metadata.resource_version = current.metadata.resource_version;
            api.replace(LEASE, &PostParams::default(), &taken)
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let renewal = {
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                let patch = serde_json::json!({"spec": {"renewTime": now()}});
                if let Err(e) = api
                    .patch(LEASE, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(target: "lock", error = %e, "could not renew the lock");
                }
            }
        })
    };
    Ok(Held {
        api,
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
            let _ = self.api.delete(LEASE, &DeleteParams::default()).await;
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
