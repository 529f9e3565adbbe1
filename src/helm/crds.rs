//! A chart's CRDs: those of its `crds/` directory (`helm show crds`), which helm installs once and
//! never upgrades, and those a release templated (`helm get manifest`).

use std::time::Duration;

use serde_json::Value;

use super::failure::TRANSIENT;
use super::{ChartSource, Helm, HelmError};
use crate::exec::Cmd;

/// helm 3's `show crds` prints the chart's CRD files one after another without a `---` between
/// them (helm 4 adds it), so a file that does not start with one runs into the previous file's
/// last document. A CRD file holds plain YAML documents, so a top-level key seen twice marks
/// where the next one starts; a separator is put there.
fn separate_documents(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut keys: Vec<&str> = Vec::new();
    for line in yaml.lines() {
        if line.starts_with("---") {
            keys.clear();
        } else if let Some((key, _)) = line
            .split_once(':')
            .filter(|(k, _)| !k.is_empty() && !k.starts_with([' ', '\t', '#', '-', '{', '[']))
        {
            if keys.contains(&key) {
                out.push_str("---\n");
                keys.clear();
            }
            keys.push(key);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The names of the CRDs in multi-document YAML that `command` printed.
fn crd_names(yaml: &str, command: &str) -> Result<Vec<String>, HelmError> {
    let docs = crate::kube::yaml_documents(yaml).map_err(|e| HelmError::Output {
        command: command.to_string(),
        detail: e.to_string(),
    })?;
    Ok(docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

impl Helm {
    /// The chart's `crds/` directory as YAML (`helm show crds`). helm installs those CRDs once and
    /// never upgrades or removes them, so kgf-up server-side applies them itself before each
    /// install or upgrade (with `--skip-crds`) and records the ones it created for `down`.
    pub async fn chart_crds(&self, chart: &ChartSource) -> Result<String, HelmError> {
        let out = self
            .exec
            .run_async(self.show_crds_cmd(chart))
            .await
            .map_err(|source| HelmError::Crds {
                chart: chart.to_string(),
                source: Box::new(source),
            })?;
        Ok(separate_documents(&out.stdout))
    }

    pub fn show_crds_cmd(&self, chart: &ChartSource) -> Cmd {
        Cmd::new(&self.program)
            .args(["show", "crds"])
            .args(chart.args())
            .timeout(Duration::from_secs(120))
            .retry_on(TRANSIENT, 3, Duration::from_secs(1))
    }

    /// The CRDs among the release's rendered objects (`helm get manifest`). Charts that template
    /// their CRDs usually mark them `helm.sh/resource-policy: keep`, so uninstall leaves them too.
    pub async fn manifest_crds(
        &self,
        name: &str,
        namespace: &str,
    ) -> Result<Vec<String>, HelmError> {
        let cmd = self.read(&["get", "manifest", name], namespace);
        let Some(stdout) = self.read_release(cmd, name, namespace).await? else {
            return Ok(Vec::new());
        };
        crd_names(&stdout, "helm get manifest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_files_that_helm_3_printed_back_to_back_are_separated() {
        let glued = "# a comment\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata:\n  name: as.t.io\nspec: {}\n\
                     apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata: {name: bs.t.io}\n---\n\
                     apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                     metadata: {name: cs.t.io}\n\
                     kind: CustomResourceDefinition\napiVersion: apiextensions.k8s.io/v1\n\
                     metadata: {name: ds.t.io}\n";
        assert!(
            crate::kube::yaml_documents(glued).is_err(),
            "as helm 3 prints it"
        );
        assert_eq!(
            crd_names(&separate_documents(glued), "helm show crds").unwrap(),
            ["as.t.io", "bs.t.io", "cs.t.io", "ds.t.io"]
        );
        let separated = "---\napiVersion: v1\nkind: A\n---\napiVersion: v1\nkind: B\n";
        assert_eq!(
            separate_documents(separated),
            separated,
            "helm 4's output is kept"
        );
    }
}
