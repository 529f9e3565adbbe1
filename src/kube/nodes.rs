//! Nodes and what they can allocate.

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{Kube, KubeError};

impl Kube {
    /// Nodes and their allocatable amount of `resource` (e.g. `nvidia.com/gpu`).
    pub async fn allocatable(&self, resource: &str) -> Result<Vec<(String, i64, bool)>, KubeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|source| KubeError::Api {
                action: "listing",
                object: "nodes".into(),
                source,
            })?;
        Ok(list
            .items
            .iter()
            .map(|n| {
                let amount = n
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref())
                    .and_then(|a| a.get(resource))
                    .and_then(|q| q.0.parse::<i64>().ok())
                    .unwrap_or(0);
                let gpu_node =
                    n.labels().get("nvidia.com/gpu.present").map(String::as_str) == Some("true");
                (n.name_any(), amount, gpu_node)
            })
            .collect())
    }
}
