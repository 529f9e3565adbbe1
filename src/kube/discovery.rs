//! Discovery: kinds resolved to their API (cached per connection; a miss asks the server again),
//! so an object's scope is known and an unknown kind is an error that names it.

use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::discovery::{ApiCapabilities, Scope};

use super::object::written_ref;
use super::{Kube, KubeError, ObjectRef};

impl Kube {
    /// Resolves a kind through discovery (cached; a miss asks the server again, so kinds of CRDs
    /// applied earlier in this run are found).
    pub(super) async fn resolve(
        &self,
        r: &ObjectRef,
    ) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let gvk = r.gvk();
        if let Some(hit) = self.kinds.lock().await.get(&gvk) {
            return Ok(hit.clone());
        }
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => {
                self.kinds.lock().await.insert(gvk, found.clone());
                Ok(found)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Err(KubeError::UnknownKind {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            }),
            Err(kube::Error::Discovery(_)) => Err(KubeError::UnknownKind {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            }),
            Err(source) => Err(KubeError::Api {
                action: "discovering",
                object: format!("{} {}", r.api_version, r.kind),
                source,
            }),
        }
    }

    pub(super) async fn api_for(
        &self,
        r: &ObjectRef,
    ) -> Result<(Api<DynamicObject>, Option<String>), KubeError> {
        let (ar, caps) = self.resolve(r).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
                (
                    Api::namespaced_with(self.client.clone(), &ns, &ar),
                    Some(ns),
                )
            }
            Scope::Cluster => (Api::all_with(self.client.clone(), &ar), None),
        })
    }

    /// The reference an object will have once applied (namespace defaulted for namespaced kinds).
    pub async fn reference(
        &self,
        obj: &DynamicObject,
        default_namespace: &str,
    ) -> Result<ObjectRef, KubeError> {
        let mut r = written_ref(obj, default_namespace);
        let (_, caps) = self.resolve(&r).await?;
        if caps.scope == Scope::Cluster {
            r.namespace = None;
        }
        Ok(r)
    }

    /// Whether the object exists (a read).
    pub async fn exists(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        api.get_opt(&r.name)
            .await
            .map(|o| o.is_some())
            .map_err(|source| KubeError::Api {
                action: "reading",
                object: r.to_string(),
                source,
            })
    }
}
