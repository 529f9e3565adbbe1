//! Manifest parsing: multi-document YAML into objects, ordered for applying.

use kube::api::DynamicObject;

use super::KubeError;

/// Parses multi-document YAML into objects, ordered for applying: CRDs, namespaces, the rest
/// (declared order kept within each group). Empty documents and `List` wrappers are handled.
pub fn parse_manifests(yaml: &str, what: &str) -> Result<Vec<DynamicObject>, KubeError> {
    let docs = yaml_documents(yaml).map_err(|e| KubeError::Manifest {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    let mut objects = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let items = if doc.get("kind").and_then(|k| k.as_str()) == Some("List") {
            doc.get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default()
        } else {
            vec![doc]
        };
        for item in items {
            let obj: DynamicObject =
                serde_json::from_value(item).map_err(|e| KubeError::Manifest {
                    what: what.to_string(),
                    message: format!("not a Kubernetes object: {e}"),
                })?;
            if obj.types.is_none() || obj.metadata.name.is_none() {
                return Err(KubeError::Manifest {
                    what: what.to_string(),
                    message: "an object lacks apiVersion, kind or metadata.name".into(),
                });
            }
            objects.push(obj);
        }
    }
    objects.sort_by_key(|o| match kind_of(o) {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        _ => 2,
    });
    Ok(objects)
}

/// The documents of multi-document YAML that a chart or kustomization rendered. The parser's
/// default limits are meant for small untrusted files; real CRDs (kube-prometheus-stack's, Argo's)
/// run to megabytes of schema, so the node and event limits are raised, the depth limit kept.
pub fn yaml_documents(yaml: &str) -> Result<Vec<serde_json::Value>, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 64_000_000;
    budget.max_events = 256_000_000;
    budget.max_documents = 1_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_multiple_with_options(yaml, options)
}

fn kind_of(obj: &DynamicObject) -> &str {
    obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kube-prometheus-stack's and Argo's CRDs run to megabytes of schema: far more nodes than a
    /// YAML parser's default budget for untrusted input allows.
    #[test]
    fn megabytes_of_crd_schema_parse() {
        let mut yaml = [
            "apiVersion: apiextensions.k8s.io/v1",
            "kind: CustomResourceDefinition",
            "metadata: {name: bigs.example.com}",
            "spec:",
            "  group: example.com",
            "  versions:",
            "  - name: v1",
            "    schema:",
            "      openAPIV3Schema:",
            "        type: object",
            "        properties:\n",
        ]
        .join("\n");
        for i in 0..60_000 {
            yaml.push_str(&format!(
                "          field{i}:\n            description: field {i} of a large schema\n            type: string\n"
            ));
        }
        let objects = parse_manifests(&yaml, "big").unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn manifests_are_ordered_crds_then_namespaces_then_the_rest() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n\
                    ---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ws.t.io}\n";
        let objs = parse_manifests(yaml, "test").unwrap();
        let kinds: Vec<&str> = objs.iter().map(kind_of).collect();
        assert_eq!(
            kinds,
            ["CustomResourceDefinition", "Namespace", "ConfigMap"]
        );
    }

    #[test]
    fn a_document_without_a_name_is_an_error_naming_the_source() {
        let err = parse_manifests("apiVersion: v1\nkind: ConfigMap\n", "kustomize x").unwrap_err();
        assert!(err.to_string().starts_with("kustomize x: "), "{err}");
    }
}
