//! The object store the platform uses, and Kubeflow Pipelines 2.17 wired to it.
//!
//! Kubeflow Pipelines reads its store in four places (design §5, pipelines#10651): the API
//! server's `OBJECTSTORECONFIG_*` environment, `artifactRepository.s3` in Argo's
//! `workflow-controller-configmap`, the `mlpipeline-minio-artifact` Secret in every namespace that
//! runs pipelines, and the `kfp-launcher` ConfigMap there (`defaultPipelineRoot`, `providers`).
//! [`Wiring::wire`] rewrites exactly those objects in the rendered Kubeflow Pipelines manifests (and
//! `pipeline-install-config`'s `bucketName`, which the API server also reads), drops the bundled
//! SeaweedFS when another store is chosen, and adds the per-namespace objects for extra
//! namespaces. Because the component applies the result, a changed setting is a changed content
//! hash (drift fixed by the next `up`) and `down` removes what was applied. This module decides
//! *what* the objects say; it applies nothing itself.

pub mod buckets;
pub mod s3;
pub use crate::profile::object_store as spec;

use serde_json::{Value, json};

use crate::components::Component;
use crate::kube::Kube;
use crate::profile::Profile;
use crate::secret::Secret;
use crate::step::StepError;
pub use spec::{BucketName, Buckets, Credentials, Endpoint, ObjectStoreSpec, S3Store, Store};

/// The credentials Secret every piece of Kubeflow Pipelines reads (name and keys are upstream's).
pub const ARTIFACT_SECRET: &str = "mlpipeline-minio-artifact";
pub const ACCESS_KEY: &str = "accesskey";
pub const SECRET_KEY: &str = "secretkey";
pub const LAUNCHER_CONFIGMAP: &str = "kfp-launcher";
/// The bucket of the bundled store (upstream's `pipeline-install-config` `bucketName`).
pub const BUNDLED_BUCKET: &str = "mlpipeline";
const MINIO_PORT: u16 = 9000;

/// The object store of one profile, every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Wiring {
    pub store: Store,
    /// Kubeflow Pipelines' namespace.
    pub kfp_namespace: String,
    /// Other namespaces that run pipelines.
    pub namespaces: Vec<String>,
    /// Where pods reach the store.
    pub endpoint: Endpoint,
    pub region: String,
    pub path_style: bool,
    pub buckets: Buckets,
    /// For kgf-up's MinIO: its namespace and Service (the root Secret and the service proxy).
    pub minio: Option<(String, String)>,
}

/// A key pair, never printed.
#[derive(Clone, Debug)]
pub struct Keys {
    pub access: Secret,
    pub secret: Secret,
}

impl Wiring {
    /// The store of `profile` once `components` are resolved; `None` without Kubeflow Pipelines
    /// (nothing reads a store then).
    pub fn new(profile: &Profile, components: &[Component]) -> Result<Option<Wiring>, StepError> {
        let Some(kfp) = components.iter().find(|c| c.name == "kubeflow-pipelines") else {
            return Ok(None);
        };
        let minio = components.iter().find(|c| c.name == "minio");
        let spec = profile
            .object_store
            .clone()
            .unwrap_or_else(|| ObjectStoreSpec {
                store: if minio.is_some() {
                    Store::Minio(Buckets::default())
                } else {
                    Store::Bundled
                },
                namespaces: Vec::new(),
            });
        let mut namespaces = spec.namespaces.clone();
        namespaces.retain(|n| n != &kfp.namespace);
        let in_cluster = |host: String| Endpoint {
            secure: false,
            host,
            port: MINIO_PORT,
        };
        let wiring = match &spec.store {
            Store::Minio(buckets) => {
                let Some(minio) = minio else {
                    return Err(StepError::new(
                        "object_store is `minio`, but the minio component is not enabled",
                    )
                    .with_fix(
                        "enable it (components: {minio: {}}), or choose another store: \
                         object_store: {bundled: {}} or object_store: {s3: {endpoint, credentials}}",
                    )
                    .input());
                };
                let service = crate::components::health::fullname(&minio.release, "minio", 63);
                Wiring {
                    endpoint: in_cluster(format!(
                        "{service}.{}.svc.cluster.local",
                        minio.namespace
                    )),
                    region: "us-east-1".into(),
                    path_style: true,
                    buckets: buckets.clone(),
                    minio: Some((minio.namespace.clone(), service)),
                    store: spec.store.clone(),
                    kfp_namespace: kfp.namespace.clone(),
                    namespaces,
                }
            }
            Store::Bundled => {
                let bucket = BucketName::try_from(BUNDLED_BUCKET.to_string())
                    .expect("upstream's bucket name is valid");
                Wiring {
                    endpoint: in_cluster(format!("seaweedfs.{}.svc.cluster.local", kfp.namespace)),
                    region: "us-east-1".into(),
                    path_style: true,
                    buckets: Buckets {
                        pipelines: bucket.clone(),
                        datasets: bucket.clone(),
                        models: bucket,
                    },
                    minio: None,
                    store: spec.store.clone(),
                    kfp_namespace: kfp.namespace.clone(),
                    namespaces,
                }
            }
            Store::S3(s3) => Wiring {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                path_style: s3.path_style,
                buckets: s3.buckets.clone(),
                minio: None,
                store: spec.store.clone(),
                kfp_namespace: kfp.namespace.clone(),
                namespaces,
            },
        };
        Ok(Some(wiring))
    }

    /// Where runs put their artifacts: Kubeflow's `minio://` scheme for its bundled store (the
    /// launcher's built-in defaults), `s3://` with the `providers` entry otherwise.
    pub fn pipeline_root(&self) -> String {
        match self.store {
            Store::Bundled => format!("minio://{BUNDLED_BUCKET}/v2/artifacts"),
            _ => format!("s3://{}/v2/artifacts", self.buckets.pipelines),
        }
    }

    /// One line for `plan` and the step's source.
    pub fn describe(&self) -> String {
        match &self.store {
            Store::Minio(_) => format!(
                "kgf-up's MinIO at {} (buckets {}, {}, {})",
                self.endpoint.url(),
                self.buckets.pipelines,
                self.buckets.datasets,
                self.buckets.models
            ),
            Store::Bundled => {
                format!("Kubeflow Pipelines' bundled SeaweedFS (bucket {BUNDLED_BUCKET})")
            }
            Store::S3(_) => format!(
                "S3 {} region {} (buckets {}, {}, {})",
                self.endpoint.url(),
                self.region,
                self.buckets.pipelines,
                self.buckets.datasets,
                self.buckets.models
            ),
        }
    }

    /// The key pair the pipeline uses: MinIO's root Secret, the profile's Secret, or the keys
    /// from this machine. `None` for the bundled store (upstream's Secret stays as it is).
    pub async fn keys(&self, kube: &Kube) -> Result<Option<Keys>, StepError> {
        match &self.store {
            Store::Bundled => Ok(None),
            Store::Minio(_) => {
                let (ns, _) = self
                    .minio
                    .as_ref()
                    .expect("a MinIO store knows its namespace");
                let secret = crate::components::builtin::minio::MINIO_ROOT_SECRET;
                if kube.gate().recording() && !secret_exists(kube, ns, secret).await? {
                    // `plan` on a cluster without MinIO yet: the minio step would generate them.
                    let later = "generated by component/minio";
                    return Ok(Some(Keys {
                        access: Secret::new(format!("<{later}: rootUser>")),
                        secret: Secret::new(format!("<{later}: rootPassword>")),
                    }));
                }
                read_secret_keys(kube, ns, secret, "rootUser", "rootPassword")
                    .await
                    .map(Some)
            }
            Store::S3(s3) => match &s3.credentials {
                Credentials::Secret(r) => {
                    read_secret_keys(kube, &r.namespace, &r.name, &r.access_key, &r.secret_key)
                        .await
                        .map(Some)
                }
                Credentials::Keys {
                    access_key,
                    secret_key,
                } => Ok(Some(Keys {
                    access: resolve_ref(access_key, "access key")?,
                    secret: resolve_ref(secret_key, "secret key")?,
                })),
            },
        }
    }

    /// The `kfp-launcher` `providers` entry: the store's endpoint and the Secret to sign with.
    fn providers(&self) -> String {
        json!({"s3": {"default": {
            "endpoint": self.endpoint.authority(),
            "region": self.region,
            "disableSSL": !self.endpoint.secure,
            "forcePathStyle": self.path_style,
            "credentials": {"fromEnv": false, "secretRef": {
                "secretName": ARTIFACT_SECRET,
                "accessKeyKey": ACCESS_KEY,
                "secretKeyKey": SECRET_KEY,
            }},
        }}})
        .to_string()
    }

    /// Where the key pair comes from, for `plan` (the keys themselves are never shown).
    fn keys_from(&self) -> String {
        match &self.store {
            Store::Bundled => "upstream's Secret".into(),
            Store::Minio(_) => {
                let (ns, _) = self
                    .minio
                    .as_ref()
                    .expect("a MinIO store knows its namespace");
                format!(
                    "MinIO's root Secret {ns}/{} (rootUser, rootPassword)",
                    crate::components::builtin::minio::MINIO_ROOT_SECRET
                )
            }
            Store::S3(s3) => match &s3.credentials {
                Credentials::Secret(r) => format!(
                    "Secret {}/{} ({}, {})",
                    r.namespace, r.name, r.access_key, r.secret_key
                ),
                Credentials::Keys { .. } => "object_store.s3.credentials of the profile".into(),
            },
        }
    }

    /// What [`Wiring::wire`] does to the rendered manifests, one line per object, for `plan`
    /// (offline too: it needs neither the manifests nor the keys). Built from the same values
    /// `wire` writes.
    pub fn changes(&self) -> Vec<String> {
        let kv = |pairs: Vec<(String, String)>| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let launcher = |ns: &str| {
            let data = self.launcher(ns)["data"].clone();
            let pairs = data
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            format!(
                "ConfigMap {ns}/{LAUNCHER_CONFIGMAP} (kgf-up's, replacing any other): {}",
                kv(pairs)
            )
        };
        let secret = |ns: &str| {
            format!(
                "Secret {ns}/{ARTIFACT_SECRET} (kgf-up's, replacing any other): {ACCESS_KEY} and {SECRET_KEY} from {}",
                self.keys_from()
            )
        };
        let mut lines = Vec::new();
        if self.store == Store::Bundled {
            lines.push(format!(
                "the Kubeflow Pipelines manifests as upstream renders them: {}, pipeline root {}",
                self.describe(),
                self.pipeline_root()
            ));
            for ns in &self.namespaces {
                lines.push(format!(
                    "Secret {ns}/{ARTIFACT_SECRET}: a copy of upstream's in {}",
                    self.kfp_namespace
                ));
                lines.push(launcher(ns));
            }
            return lines;
        }
        let kfp = &self.kfp_namespace;
        let env = self
            .api_server_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        lines.push(format!(
            "Deployment {kfp}/ml-pipeline, env set: {}; OBJECTSTORECONFIG_ACCESSKEY and \
             OBJECTSTORECONFIG_SECRETACCESSKEY from Secret {ARTIFACT_SECRET}",
            kv(env)
        ));
        lines.push(format!(
            "ConfigMap {kfp}/pipeline-install-config, set: {}",
            kv(vec![
                ("bucketName".into(), self.buckets.pipelines.to_string()),
                ("defaultPipelineRoot".into(), self.pipeline_root()),
            ])
        ));
        let s3 = self
            .argo_s3()
            .into_iter()
            .map(|(k, v)| (format!("artifactRepository.s3.{k}"), v.to_string()))
            .collect();
        lines.push(format!(
            "ConfigMap {kfp}/workflow-controller-configmap, set: {}",
            kv(s3)
        ));
        for ns in std::iter::once(kfp).chain(&self.namespaces) {
            lines.push(secret(ns));
            lines.push(launcher(ns));
        }
        lines.push(format!(
            "no bundled SeaweedFS (its Deployment, Service, claim and jobs are left out): the store is {}",
            self.describe()
        ));
        lines
    }

    /// Rewrites the rendered Kubeflow Pipelines objects for this store (see the module docs).
    /// For the bundled store upstream's objects stay as they are; extra namespaces still get the
    /// Secret and `kfp-launcher`.
    pub fn wire(&self, objects: Vec<Value>, keys: Option<&Keys>) -> Vec<Value> {
        let bundled = self.store == Store::Bundled;
        let mut out: Vec<Value> = Vec::with_capacity(objects.len() + 2);
        for mut obj in objects {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if bundled {
                out.push(obj);
                continue;
            }
            if is_bundled_store(&obj) {
                continue;
            }
            match (kind.as_str(), name.as_str()) {
                ("Deployment", "ml-pipeline") => self.wire_api_server(&mut obj),
                ("ConfigMap", "pipeline-install-config") => {
                    obj["data"]["bucketName"] = json!(self.buckets.pipelines.as_str());
                    obj["data"]["defaultPipelineRoot"] = json!(self.pipeline_root());
                }
                ("ConfigMap", "workflow-controller-configmap") => self.wire_argo(&mut obj),
                ("Secret", ARTIFACT_SECRET) | ("ConfigMap", LAUNCHER_CONFIGMAP) => continue,
                _ => {}
            }
            out.push(obj);
        }
        if !bundled {
            let keys = keys.expect("a store other than the bundled one has keys");
            out.push(self.secret(&self.kfp_namespace, keys));
            out.push(self.launcher(&self.kfp_namespace));
        }
        for ns in &self.namespaces {
            match keys {
                Some(keys) => out.push(self.secret(ns, keys)),
                None => {
                    if let Some(upstream) = find(&out, "Secret", ARTIFACT_SECRET) {
                        out.push(copy_into(upstream, ns));
                    }
                }
            }
            out.push(self.launcher(ns));
        }
        out
    }

    fn secret(&self, namespace: &str, keys: &Keys) -> Value {
        let b64 = |s: &Secret| {
            serde_json::to_value(k8s_openapi::ByteString(s.expose().as_bytes().to_vec()))
                .expect("bytes serialize as base64")
        };
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": ARTIFACT_SECRET,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "kgf-up"},
                "annotations": {crate::components::TAKE_OVER: "true"},
            },
            "type": "Opaque",
            "data": {ACCESS_KEY: b64(&keys.access), SECRET_KEY: b64(&keys.secret)},
        })
    }

    fn launcher(&self, namespace: &str) -> Value {
        let mut data = json!({"defaultPipelineRoot": self.pipeline_root()});
        if self.store != Store::Bundled {
            data["providers"] = json!(self.providers());
        }
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": LAUNCHER_CONFIGMAP,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "kgf-up"},
                "annotations": {crate::components::TAKE_OVER: "true"},
            },
            "data": data,
        })
    }

    /// The API server's `OBJECTSTORECONFIG_*` values; its keys stay references to the Secret.
    fn api_server_env(&self) -> [(&'static str, String); 5] {
        [
            ("OBJECTSTORECONFIG_HOST", self.endpoint.host.clone()),
            ("OBJECTSTORECONFIG_PORT", self.endpoint.port.to_string()),
            ("OBJECTSTORECONFIG_SECURE", self.endpoint.secure.to_string()),
            ("OBJECTSTORECONFIG_REGION", self.region.clone()),
            (
                "OBJECTSTORECONFIG_BUCKETNAME",
                self.buckets.pipelines.to_string(),
            ),
        ]
    }

    /// The API server's `OBJECTSTORECONFIG_*` variables (credentials stay references to the
    /// Secret, as upstream has them).
    fn wire_api_server(&self, deployment: &mut Value) {
        let wanted = self.api_server_env();
        let Some(containers) = deployment
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let Some(container) = containers.first_mut() else {
            return;
        };
        if !container["env"].is_array() {
            container["env"] = json!([]);
        }
        let env = container["env"]
            .as_array_mut()
            .expect("made an array above");
        for (name, value) in wanted {
            let entry = json!({"name": name, "value": value});
            match env.iter_mut().find(|e| e["name"] == name) {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
        }
        for (name, key) in [
            ("OBJECTSTORECONFIG_ACCESSKEY", ACCESS_KEY),
            ("OBJECTSTORECONFIG_SECRETACCESSKEY", SECRET_KEY),
        ] {
            let entry = json!({"name": name, "valueFrom": {"secretKeyRef": {"name": ARTIFACT_SECRET, "key": key}}});
            match env.iter_mut().find(|e| e["name"] == name) {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
        }
    }

    /// The fields of Argo's `artifactRepository.s3` that the store decides.
    fn argo_s3(&self) -> [(&'static str, Value); 6] {
        [
            ("endpoint", json!(self.endpoint.authority())),
            ("bucket", json!(self.buckets.pipelines.as_str())),
            ("insecure", json!(!self.endpoint.secure)),
            ("region", json!(self.region)),
            (
                "accessKeySecret",
                json!({"name": ARTIFACT_SECRET, "key": ACCESS_KEY}),
            ),
            (
                "secretKeySecret",
                json!({"name": ARTIFACT_SECRET, "key": SECRET_KEY}),
            ),
        ]
    }

    /// Argo's artifact repository: upstream's settings (key format, log archiving) kept, the
    /// store's endpoint, bucket, TLS and region put in.
    fn wire_argo(&self, configmap: &mut Value) {
        let current = configmap["data"]["artifactRepository"]
            .as_str()
            .and_then(|text| serde_saphyr::from_str::<Value>(text).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"archiveLogs": true}));
        let mut repo = current;
        if !repo["s3"].is_object() {
            repo["s3"] = json!({});
        }
        let s3 = &mut repo["s3"];
        for (k, v) in self.argo_s3() {
            s3[k] = v;
        }
        if s3.get("keyFormat").is_none() {
            s3["keyFormat"] = json!("artifacts/{{workflow.name}}/{{pod.name}}");
        }
        configmap["data"]["artifactRepository"] = json!(repo.to_string());
    }
}

/// The bundled SeaweedFS: its Deployment, Service, volume claim, network policy, account and jobs.
pub fn is_bundled_store(obj: &Value) -> bool {
    obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n == "seaweedfs" || n.starts_with("seaweedfs-"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn copy_into(obj: &Value, namespace: &str) -> Value {
    let mut copy = obj.clone();
    copy["metadata"]["namespace"] = json!(namespace);
    copy["metadata"]["annotations"][crate::components::TAKE_OVER] = json!("true");
    copy
}

async fn secret_exists(kube: &Kube, namespace: &str, name: &str) -> Result<bool, StepError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.client(), namespace);
    api.get_opt(name)
        .await
        .map(|s| s.is_some())
        .map_err(|e| StepError::context(format!("reading Secret {namespace}/{name}"), e))
}

/// Two keys of a Secret in the cluster.
async fn read_secret_keys(
    kube: &Kube,
    namespace: &str,
    name: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<Keys, StepError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.client(), namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| StepError::context(format!("reading Secret {namespace}/{name}"), e))?
        .ok_or_else(|| {
            StepError::new(format!(
                "the object store's credentials Secret {namespace}/{name} does not exist"
            ))
            .with_fix(format!(
                "create it with the keys `{access_key}` and `{secret_key}`, or fix \
                 object_store.s3.credentials.secret in the profile (kgf-up's MinIO makes its own \
                 once installed: run `kgf-up up`)"
            ))
        })?;
    let data = found.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .filter(|v| !v.0.is_empty())
            .map(|v| Secret::new(String::from_utf8_lossy(&v.0).into_owned()))
            .ok_or_else(|| {
                StepError::new(format!("Secret {namespace}/{name} has no key `{key}`"))
                    .with_fix(format!("add it: kubectl -n {namespace} edit secret {name}"))
            })
    };
    Ok(Keys {
        access: value(access_key)?,
        secret: value(secret_key)?,
    })
}

fn resolve_ref(r: &crate::cluster::rke2::SecretRef, what: &str) -> Result<Secret, StepError> {
    use crate::cluster::rke2::SecretRef;
    match r {
        SecretRef::Env(name) => std::env::var(name).map(Secret::new).map_err(|_| {
            StepError::new(format!(
                "the object store's {what} variable {name} is not set"
            ))
            .with_fix(format!("export {name} before running kgf-up"))
            .input()
        }),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| {
                StepError::new(format!(
                    "cannot read the object store's {what} file {}: {e}",
                    path.display()
                ))
                .with_fix("check object_store.s3.credentials in the profile")
                .input()
            }),
    }
}

/// The rewrite the Kubeflow Pipelines component applies to its rendered manifests.
pub fn kfp_transform(wiring: Wiring) -> crate::components::Transform {
    // Passing the closure through a bound gives it the higher-ranked signature `Transform` needs.
    fn transform<F>(f: F) -> crate::components::Rewrite
    where
        F: for<'a> Fn(
                &'a crate::step::Ctx,
                Vec<kube::api::DynamicObject>,
            ) -> futures::future::BoxFuture<
                'a,
                crate::step::StepResult<Vec<kube::api::DynamicObject>>,
            > + Send
            + Sync
            + 'static,
    {
        std::sync::Arc::new(f)
    }
    let changes = wiring.changes();
    let wiring = std::sync::Arc::new(wiring);
    let rewrite = transform(move |ctx, objects| {
        let wiring = wiring.clone();
        Box::pin(async move {
            let keys = wiring.keys(ctx.kube().await?).await?;
            let values = objects
                .into_iter()
                .map(|o| serde_json::to_value(o).expect("objects serialize"))
                .collect();
            wiring
                .wire(values, keys.as_ref())
                .into_iter()
                .map(|v| {
                    serde_json::from_value(v).map_err(|e| {
                        StepError::new(format!("the object store wiring made a bad object: {e}"))
                    })
                })
                .collect()
        })
    });
    crate::components::Transform { rewrite, changes }
}

/// What the store asks of the other components: kgf-up's MinIO makes the profile's buckets (its
/// chart's `buckets`, unless the profile sets them) and is installed before Kubeflow Pipelines,
/// whose Secret holds its keys.
pub fn adjust(components: &mut [Component], wiring: &Wiring, profile: &Profile) {
    let Store::Minio(buckets) = &wiring.store else {
        return;
    };
    let own_buckets = profile
        .components
        .get("minio")
        .is_some_and(|c| !c.values["buckets"].is_null());
    for c in components.iter_mut() {
        if c.name == "minio" && !own_buckets {
            let mut names: Vec<&BucketName> = buckets.all().to_vec();
            names.dedup();
            c.values["buckets"] = Value::Array(
                names
                    .iter()
                    .map(|b| json!({"name": b.as_str(), "policy": "none", "purge": false}))
                    .collect(),
            );
        }
        if c.name == "kubeflow-pipelines" && !c.needs.iter().any(|n| n == "minio") {
            c.needs.push("minio".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(object_store: &str, components: &str) -> Profile {
        crate::profile::parse(
            &format!(
                "name: t\ncluster: {{provider: existing}}\ncomponents: {components}\n{object_store}"
            ),
            "p.yaml",
        )
        .unwrap()
    }

    fn wiring(p: &Profile) -> Wiring {
        Wiring::new(p, &crate::components::resolve(p).unwrap())
            .unwrap()
            .unwrap()
    }

    fn upstream() -> Vec<Value> {
        vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ml-pipeline"},
                   "spec": {"template": {"spec": {"containers": [{"name": "ml-pipeline-api-server", "env": [
                       {"name": "OBJECTSTORECONFIG_HOST", "value": "seaweedfs.kubeflow"},
                       {"name": "OBJECTSTORECONFIG_BUCKETNAME", "valueFrom": {"configMapKeyRef": {"name": "pipeline-install-config", "key": "bucketName"}}},
                       {"name": "LOG_LEVEL", "value": "info"}]}]}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap"},
                   "data": {"artifactRepository": "archiveLogs: true\ns3:\n  endpoint: \"seaweedfs.kubeflow.svc:9000\"\n  keyFormat: \"private-artifacts/{{workflow.name}}\"\n  insecure: true\n"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": ARTIFACT_SECRET}, "stringData": {"accesskey": "minio", "secretkey": "minio123"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": LAUNCHER_CONFIGMAP}, "data": {"defaultPipelineRoot": ""}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "seaweedfs"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "seaweedfs-pvc"}}),
        ]
    }

    fn keys() -> Keys {
        Keys {
            access: Secret::new("AKIAEXAMPLE"),
            secret: Secret::new("wiring-test-secret-key-0123"),
        }
    }

    fn find<'a>(objects: &'a [Value], kind: &str, name: &str, ns: Option<&str>) -> &'a Value {
        objects
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"].as_str() == ns
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in {ns:?}"))
    }

    #[test]
    fn an_s3_store_is_written_into_every_place_kubeflow_reads_it() {
        let p = profile(
            "object_store:\n  s3:\n    endpoint: https://s3.example.com\n    region: eu-west-1\n    \
             buckets: {pipelines: kfp-art}\n    credentials: {access_key: {env: A}, secret_key: {env: B}}\n  \
             namespaces: [team-a]\n",
            "{kubeflow-pipelines: {}}",
        );
        let w = wiring(&p);
        assert_eq!(w.pipeline_root(), "s3://kfp-art/v2/artifacts");
        let out = w.wire(upstream(), Some(&keys()));
        assert!(
            out.iter().all(|o| !is_bundled_store(o)),
            "SeaweedFS is dropped"
        );
        let env =
            find(&out, "Deployment", "ml-pipeline", None)["spec"]["template"]["spec"]["containers"]
                [0]["env"]
                .clone();
        let var = |n: &str| {
            env.as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .cloned()
                .unwrap()
        };
        assert_eq!(var("OBJECTSTORECONFIG_HOST")["value"], "s3.example.com");
        assert_eq!(var("OBJECTSTORECONFIG_PORT")["value"], "443");
        assert_eq!(var("OBJECTSTORECONFIG_SECURE")["value"], "true");
        assert_eq!(var("OBJECTSTORECONFIG_REGION")["value"], "eu-west-1");
        assert_eq!(
            var("OBJECTSTORECONFIG_BUCKETNAME"),
            json!({"name": "OBJECTSTORECONFIG_BUCKETNAME", "value": "kfp-art"})
        );
        assert_eq!(var("LOG_LEVEL")["value"], "info", "other variables stay");
        let repo: Value = serde_json::from_str(
            find(&out, "ConfigMap", "workflow-controller-configmap", None)["data"]["artifactRepository"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(repo["s3"]["endpoint"], "s3.example.com:443");
        assert_eq!(repo["s3"]["bucket"], "kfp-art");
        assert_eq!(repo["s3"]["insecure"], false);
        assert_eq!(
            repo["s3"]["keyFormat"],
            "private-artifacts/{{workflow.name}}"
        );
        assert_eq!(repo["archiveLogs"], true);
        for ns in ["kubeflow", "team-a"] {
            let secret = find(&out, "Secret", ARTIFACT_SECRET, Some(ns));
            assert!(secret.get("stringData").is_none());
            assert_eq!(secret["data"]["accesskey"], "QUtJQUVYQU1QTEU=");
            let launcher = find(&out, "ConfigMap", LAUNCHER_CONFIGMAP, Some(ns));
            assert_eq!(
                launcher["data"]["defaultPipelineRoot"],
                "s3://kfp-art/v2/artifacts"
            );
            let providers: Value =
                serde_json::from_str(launcher["data"]["providers"].as_str().unwrap()).unwrap();
            assert_eq!(providers["s3"]["default"]["endpoint"], "s3.example.com:443");
            assert_eq!(providers["s3"]["default"]["disableSSL"], false);
            assert_eq!(providers["s3"]["default"]["region"], "eu-west-1");
        }
        assert!(
            !serde_json::to_string(&out)
                .unwrap()
                .contains("wiring-test-secret-key-0123"),
            "keys are only there base64-encoded"
        );
    }

    #[test]
    fn the_bundled_store_keeps_upstreams_objects_and_copies_them_to_extra_namespaces() {
        let p = profile(
            "object_store: {bundled: {}, namespaces: [team-a]}\n",
            "{kubeflow-pipelines: {}, minio: {}}",
        );
        let w = wiring(&p);
        assert_eq!(w.pipeline_root(), "minio://mlpipeline/v2/artifacts");
        let out = w.wire(upstream(), None);
        assert_eq!(&out[..upstream().len()], &upstream()[..]);
        assert_eq!(
            find(&out, "Secret", ARTIFACT_SECRET, Some("team-a"))["stringData"]["accesskey"],
            "minio"
        );
        let launcher = find(&out, "ConfigMap", LAUNCHER_CONFIGMAP, Some("team-a"));
        assert_eq!(
            launcher["data"]["defaultPipelineRoot"],
            "minio://mlpipeline/v2/artifacts"
        );
        assert!(launcher["data"].get("providers").is_none());
    }

    #[test]
    fn the_default_store_is_kgf_ups_minio_when_installed_else_the_bundled_one() {
        let with_minio = profile("", "{kubeflow-pipelines: {}, minio: {}}");
        let w = wiring(&with_minio);
        assert_eq!(w.store, Store::Minio(Buckets::default()));
        assert_eq!(
            w.endpoint.url(),
            "http://minio.minio.svc.cluster.local:9000"
        );
        assert_eq!(w.pipeline_root(), "s3://pipelines/v2/artifacts");
        let mut resolved = crate::components::resolve(&with_minio).unwrap();
        adjust(&mut resolved, &w, &with_minio);
        let kfp = resolved
            .iter()
            .find(|c| c.name == "kubeflow-pipelines")
            .unwrap();
        assert_eq!(kfp.needs, ["minio"]);
        let minio = resolved.iter().find(|c| c.name == "minio").unwrap();
        assert_eq!(minio.values["buckets"][0]["name"], "pipelines");
        assert_eq!(minio.values["buckets"].as_array().unwrap().len(), 3);

        assert_eq!(
            wiring(&profile("", "{kubeflow-pipelines: {}}")).store,
            Store::Bundled
        );
        let none = profile("", "{minio: {}}");
        assert_eq!(
            Wiring::new(&none, &crate::components::resolve(&none).unwrap()).unwrap(),
            None
        );

        let explicit = profile("object_store: {minio: {}}\n", "{kubeflow-pipelines: {}}");
        let err =
            Wiring::new(&explicit, &crate::components::resolve(&explicit).unwrap()).unwrap_err();
        assert!(
            err.message.contains("the minio component is not enabled"),
            "{}",
            err.message
        );
        assert!(err.fix.unwrap().contains("object_store: {bundled: {}}"));
    }

    #[test]
    fn schema_errors_name_the_file_line_and_column() {
        let parse = |text: &str| {
            crate::profile::parse(
                &format!("name: t\ncluster: {{provider: existing}}\n{text}"),
                "p.yaml",
            )
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err()
        };
        let err = parse(
            "object_store:\n  s3:\n    endpoint: https://x\n    regoin: a\n    credentials: {access_key: {env: A}, secret_key: {env: B}}\n",
        );
        assert!(
            err.starts_with("p.yaml:6:5: unknown field `regoin`"),
            "{err}"
        );
        assert!(err.contains("did you mean the key `region`?"), "{err}");
        let err = parse(
            "object_store:\n  s3:\n    endpoint: s3.example.com\n    credentials: {access_key: {env: A}, secret_key: {env: B}}\n",
        );
        assert!(err.starts_with("p.yaml:5:"), "{err}");
        assert!(err.contains("needs http:// or https://"), "{err}");
        let err = parse("object_store:\n  minio: {buckets: {models: Models_1}}\n");
        assert!(err.starts_with("p.yaml:4:"), "{err}");
        assert!(
            err.contains("`Models_1` is not a valid bucket name"),
            "{err}"
        );
        let err = parse(
            "object_store:\n  s3:\n    endpoint: https://x\n    credentials: {access_key: \"AKIA\", secret_key: {env: B}}\n",
        );
        assert!(err.starts_with("p.yaml:"), "inline keys are refused: {err}");
        let err = parse("object_store: {minio: {}, bundled: {}}\n");
        assert!(err.contains("more than one store"), "{err}");
    }

    #[test]
    fn endpoints_take_a_scheme_a_host_and_a_port_only() {
        let e = Endpoint::try_from("http://127.0.0.1:39000".to_string()).unwrap();
        assert_eq!(
            (e.secure, e.host.as_str(), e.port),
            (false, "127.0.0.1", 39000)
        );
        assert_eq!(e.authority(), "127.0.0.1:39000");
        let e = Endpoint::try_from("https://s3.eu-west-1.amazonaws.com/".to_string()).unwrap();
        assert_eq!((e.secure, e.port), (true, 443));
        for bad in [
            "ftp://x",
            "https://x/bucket",
            "https://u@x",
            "http://x:port",
            "https://",
        ] {
            assert!(Endpoint::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
