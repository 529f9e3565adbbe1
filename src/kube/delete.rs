//! Deletes that wait until the object is gone.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject};
use kube::runtime::wait::{await_condition, conditions};

use super::{Kube, KubeError, ObjectRef};
use crate::gate::Change;

impl Kube {
    /// Deletes the object (foreground) and waits until it is gone; absent is fine.
    pub async fn delete(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let uid = match api.get_opt(&r.name).await {
            Ok(Some(obj)) => obj.metadata.uid.unwrap_or_default(),
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "reading",
                    object: r.to_string(),
                    source,
                });
            }
        };
        let deleted = self
            .gate
            .change(
                Change::new(format!("delete {r}")),
                api.delete(&r.name, &DeleteParams::foreground()),
            )
            .await;
        match deleted {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "deleting",
                    object: r.to_string(),
                    source,
                });
            }
        }
        Self::gone(api, r, &uid, deadline).await
    }

    /// Waits until an object being deleted (a namespace still terminating) is gone; absent is
    /// fine. Sends no delete of its own.
    pub async fn wait_deleted(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match api.get_opt(&r.name).await {
            Ok(Some(obj)) => {
                let uid = obj.metadata.uid.unwrap_or_default();
                Self::gone(api, r, &uid, deadline).await
            }
            Ok(None) => Ok(()),
            Err(source) => Err(KubeError::Api {
                action: "reading",
                object: r.to_string(),
                source,
            }),
        }
    }

    async fn gone(
        api: Api<DynamicObject>,
        r: &ObjectRef,
        uid: &str,
        deadline: Duration,
    ) -> Result<(), KubeError> {
        let gone = await_condition(api, &r.name, conditions::is_deleted(uid));
        match tokio::time::timeout(deadline, gone).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(KubeError::Api {
                action: "waiting for deletion of",
                object: r.to_string(),
                source: kube::Error::Service(Box::new(e)),
            }),
            Err(_) => Err(KubeError::Timeout {
                object: r.to_string(),
                condition: "deleted".into(),
                waited: deadline,
                last: "still present (finalizers?)".into(),
            }),
        }
    }
}
