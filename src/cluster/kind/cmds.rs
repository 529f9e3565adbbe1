//! The commands the kind steps run, built in one place so that `plan` and the steps agree.
//!
//! Only builds [`Cmd`]s and reads their outputs; running them is [`Exec`]'s job.

use std::time::Duration;

use serde_json::Value;

use super::KindError;
use crate::exec::{Cmd, Exec, ExecError};
use crate::kube::Kubeconfig;

/// `kubectl` for the kind cluster: always with its own kubeconfig file and context, so no other
/// context is ever read or changed.
pub fn kubectl(kc: &Kubeconfig) -> Cmd {
    let mut cmd = Cmd::new("kubectl").arg(format!("--kubeconfig={}", kc.path.display()));
    if let Some(context) = &kc.context {
        cmd = cmd.arg(format!("--context={context}"));
    }
    cmd
}

/// A program run inside a node container.
pub fn node_exec(node: &str) -> Cmd {
    Cmd::new("docker").args(["exec", node])
}

/// A shell script run inside a node container with bash.
pub fn node_script(node: &str, script: &str) -> Cmd {
    node_exec(node).args(["bash", "-c", script])
}

/// Runs `cmd`, mapping a failure to [`KindError::Exec`] with `what` as context.
pub async fn run(exec: &Exec, cmd: Cmd, what: &str) -> Result<String, KindError> {
    exec.run_async(cmd)
        .await
        .map(|o| o.stdout)
        .map_err(|source| KindError::Exec {
            what: what.to_string(),
            source: Box::new(source),
        })
}

/// `kubectl get KIND NAME -o json`, or `None` when the object does not exist.
pub async fn get_object(
    exec: &Exec,
    kc: &Kubeconfig,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, KindError> {
    let mut cmd = kubectl(kc).args(["get", kind, name, "-o", "json", "--ignore-not-found"]);
    if let Some(ns) = namespace {
        cmd = cmd.arg(format!("--namespace={ns}"));
    }
    let what = format!("reading {kind} {name}");
    let out = run(exec, cmd, &what).await?;
    if out.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| KindError::Parse {
            what,
            detail: e.to_string(),
        })
}

/// Server-side applies one object with kgf-up's field manager. kind's steps reach their cluster
/// through kubectl (the kind tests' stand-in cluster is a kubectl); the command passes the gate.
pub fn apply_object(kc: &Kubeconfig, object: &Value) -> Cmd {
    kubectl(kc)
        .args([
            "apply",
            "--server-side",
            "--field-manager=kgf-up",
            "--force-conflicts",
            "-f",
            "-",
        ])
        .stdin(object.to_string())
        .changes()
}

/// Whether a failed `docker exec` means the node container is not there (Docker's "Error
/// response from daemon: No such container: NAME"), as in a cluster that has fewer nodes than
/// the profile asks for.
fn no_such_container(e: &ExecError) -> bool {
    e.stderr().is_some_and(|s| s.contains("No such container"))
}

/// Reads a file in a node; `None` when it does not exist (cat's own message, passed on by
/// `docker exec` with cat's exit status), [`KindError::NoNode`] when the node does not.
pub async fn read_node_file(
    exec: &Exec,
    node: &str,
    path: &str,
) -> Result<Option<String>, KindError> {
    match exec.run_async(node_exec(node).args(["cat", path])).await {
        Ok(out) => Ok(Some(out.stdout)),
        Err(ExecError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(None)
        }
        Err(e) if no_such_container(&e) => Err(KindError::NoNode {
            node: node.to_string(),
        }),
        Err(source) => Err(KindError::Exec {
            what: format!("reading {path} in node {node}"),
            source: Box::new(source),
        }),
    }
}

/// Whether a path exists in a node (`ls -d`, whose "No such file or directory" docker passes on);
/// [`KindError::NoNode`] when the node does not.
pub async fn node_path_exists(exec: &Exec, node: &str, path: &str) -> Result<bool, KindError> {
    match exec
        .run_async(node_exec(node).args(["ls", "-d", path]))
        .await
    {
        Ok(_) => Ok(true),
        Err(ExecError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(false)
        }
        Err(e) if no_such_container(&e) => Err(KindError::NoNode {
            node: node.to_string(),
        }),
        Err(source) => Err(KindError::Exec {
            what: format!("looking for {path} in node {node}"),
            source: Box::new(source),
        }),
    }
}

/// Generous: a first `kind create cluster` pulls the node image (about 1 GB).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(900);
/// Installing the toolkit in a node runs apt (network) or dpkg.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
