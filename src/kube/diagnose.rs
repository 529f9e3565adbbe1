//! The diagnosis printed when a wait fails: the unready pods, their events and log tails.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::Kube;
use super::ready::pod_ready;

impl Kube {
    /// What a user needs when a wait fails: every pod in `namespace` that is not ready, with its
    /// phase and reason, the last events about it, and its containers' last log lines where the
    /// API can give them.
    pub async fn diagnose(&self, namespace: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return format!("(could not list pods in {namespace})");
        };
        let mut all_events = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        all_events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
        let mut out = String::new();
        for pod in list.items.iter().filter(|p| !pod_ready(p)) {
            let name = pod.name_any();
            let status = pod.status.clone().unwrap_or_default();
            let waiting: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| {
                    let w = c.state.as_ref()?.waiting.as_ref()?;
                    Some(format!(
                        "{}: {} {}",
                        c.name,
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    ))
                })
                .collect();
            let conditions: Vec<String> = status
                .conditions
                .iter()
                .flatten()
                .filter(|c| c.status != "True")
                .map(|c| {
                    format!(
                        "{}={} {} {}",
                        c.type_,
                        c.status,
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )
                    .trim_end()
                    .to_string()
                })
                .collect();
            out.push_str(&format!(
                "pod {namespace}/{name}: phase {}",
                status.phase.clone().unwrap_or_else(|| "Unknown".into())
            ));
            for line in conditions.iter().chain(waiting.iter()) {
                out.push_str(&format!("\n    {line}"));
            }
            let mine: Vec<&Event> = all_events
                .iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
                .collect();
            for e in mine.iter().rev().take(5).rev() {
                out.push_str(&format!(
                    "\n    event {} {}: {}",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim()
                ));
            }
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let params = LogParams {
                    container: Some(c.name.clone()),
                    tail_lines: Some(10),
                    ..Default::default()
                };
                match tokio::time::timeout(Duration::from_secs(5), pods.logs(&name, &params)).await
                {
                    Ok(Ok(log)) if !log.trim().is_empty() => {
                        out.push_str(&format!("\n    log {}:", c.name));
                        for l in log.lines() {
                            out.push_str(&format!("\n      {l}"));
                        }
                    }
                    _ => out.push_str(&format!("\n    log {}: not available from the API", c.name)),
                }
            }
            out.push('\n');
        }
        if list.items.is_empty() {
            // Nothing made a pod yet: the reason is on the owners (a ReplicaSet's FailedCreate, a
            // Job's quota), so the namespace's latest events say it.
            out = format!("no pod in {namespace} yet: its controller has made none");
            for e in all_events.iter().rev().take(5).rev() {
                out.push_str(&format!(
                    "\n    event {} {}/{} {}: {}",
                    e.type_.clone().unwrap_or_default(),
                    e.involved_object.kind.clone().unwrap_or_default(),
                    e.involved_object.name.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim()
                ));
            }
        } else if out.is_empty() {
            out = format!("every pod in {namespace} is ready");
        }
        out.trim_end().to_string()
    }
}
