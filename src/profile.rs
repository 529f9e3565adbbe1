//! Profiles: the typed schema of what to stand up, the built-in profiles embedded from `profiles/`,
//! loading from a path, and `--set key.path=value` overrides.
//!
//! Parsing does no I/O beyond reading the file: every error names the file, line and column, what
//! was expected and (for an unknown key) the nearest valid key. This module must not touch a
//! cluster or run a program.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fix::Fix;

mod errors;
pub mod gpu;
pub mod kind;
pub mod object_store;
pub mod rke2;
pub mod spans;

pub use errors::{SpecError, kind_of};

/// The built-in profiles, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("kind-gpu", include_str!("../profiles/kind-gpu.yaml")),
    ("kind", include_str!("../profiles/kind.yaml")),
    ("rke2", include_str!("../profiles/rke2.yaml")),
    ("sim", include_str!("../profiles/sim.yaml")),
];

/// A profile file larger than this is not a profile (and is not read into memory whole).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// The most values (scalars, mappings, lists, aliases expanded) a profile may hold.
pub const MAX_PROFILE_NODES: usize = 20_000;

/// A resolved profile: what `up` stands up.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The platform's name: the sim cluster's name and kgf-up's state directory
    /// (`~/.local/state/kgf-up/<name>`). kind and rke2 clusters take `cluster.kind.name` and
    /// `cluster.rke2.name`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub cluster: Cluster,
    #[serde(default)]
    pub tools: Tools,
    #[serde(default)]
    pub settings: Settings,
    /// Components by name. Built-in names get built-in defaults; other names are custom components
    /// and need a `source`.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentSpec>,
    /// How the GPUs are shared (time-slicing) or partitioned (MIG).
    #[serde(default, skip_serializing_if = "gpu::GpuSharing::is_default")]
    pub gpu: gpu::GpuSharing,
    #[serde(default)]
    pub validation: Validation,
    #[serde(default)]
    pub pipeline: PipelineSpec,
    /// Where Kubeflow Pipelines and the pipeline keep data and models; without it, kgf-up's
    /// MinIO when `components.minio` is enabled, else Kubeflow Pipelines' bundled store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<object_store::ObjectStoreSpec>,
}

/// The gene-fusion pipeline: its step image built and pushed, the spec uploaded to Kubeflow
/// Pipelines at the end of `up`, and (with `run`, or `up --run`) a run started and followed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Where the step image is pushed (kind-gpu's local registry: `localhost:5001`).
    #[serde(default = "PipelineSpec::registry")]
    pub registry: String,
    /// Use this image instead of building one (e.g. from a CI registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Run the model steps on the CPU: the CPU image, and no step requests `nvidia.com/gpu`.
    #[serde(default)]
    pub cpu: bool,
    /// The Kubeflow Pipelines API URL; default: the cluster's service proxy to kubeflow/ml-pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kfp_url: Option<String>,
    /// Start a run after the upload and follow it.
    #[serde(default)]
    pub run: bool,
    #[serde(default = "PipelineSpec::experiment")]
    pub experiment: String,
    /// Pipeline parameters for the run (e.g. `preset: tiny`, `seed: 7`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

impl PipelineSpec {
    fn registry() -> String {
        "localhost:5001".into()
    }
    fn experiment() -> String {
        "gene-fusion".into()
    }
}

impl Default for PipelineSpec {
    fn default() -> Self {
        PipelineSpec {
            enabled: false,
            registry: PipelineSpec::registry(),
            image: None,
            cpu: false,
            kfp_url: None,
            run: false,
            experiment: PipelineSpec::experiment(),
            parameters: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// kind on this workstation (Docker or Podman), GPUs handed to nodes.
    Kind,
    /// rke2 servers and agents on hosts reached over SSH.
    Rke2,
    /// A kwokctl control plane with simulated nodes: pods do not run.
    Sim,
    /// A cluster that already exists, reached through a kubeconfig context.
    Existing,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Kind => "kind",
            Provider::Rke2 => "rke2",
            Provider::Sim => "sim",
            Provider::Existing => "existing",
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub provider: Provider,
    #[serde(default)]
    pub kind: kind::KindSpec,
    #[serde(default)]
    pub rke2: rke2::Rke2Spec,
    #[serde(default)]
    pub sim: SimSpec,
    #[serde(default)]
    pub existing: ExistingSpec,
}

/// The `sim` provider: a kwokctl cluster with simulated nodes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    #[serde(default = "SimSpec::default_nodes")]
    pub nodes: Vec<SimNode>,
}

impl SimSpec {
    fn default_nodes() -> Vec<SimNode> {
        vec![
            SimNode {
                name: "sim-gpu-0".into(),
                gpus: 1,
                cpu: 16,
                memory: "64Gi".into(),
            },
            SimNode {
                name: "sim-cpu-0".into(),
                gpus: 0,
                cpu: 16,
                memory: "64Gi".into(),
            },
        ]
    }
}

impl Default for SimSpec {
    fn default() -> Self {
        SimSpec {
            nodes: SimSpec::default_nodes(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimNode {
    pub name: String,
    /// `nvidia.com/gpu` in capacity and allocatable.
    #[serde(default)]
    pub gpus: u32,
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    #[serde(default = "default_memory")]
    pub memory: String,
}

fn default_cpu() -> u32 {
    16
}

fn default_memory() -> String {
    "64Gi".into()
}

/// The `existing` provider: kgf-up installs onto this context and creates nothing cluster-level.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingSpec {
    /// Kubeconfig file; default: `--kubeconfig`, then `KUBECONFIG`, then `~/.kube/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Context in it; default: its current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// External programs kgf-up drives, by name or path.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    #[serde(default = "Tools::helm")]
    pub helm: String,
    #[serde(default = "Tools::kustomize")]
    pub kustomize: String,
    #[serde(default = "Tools::kubectl")]
    pub kubectl: String,
    #[serde(default = "Tools::kwokctl")]
    pub kwokctl: String,
}

impl Tools {
    fn helm() -> String {
        "helm".into()
    }
    fn kustomize() -> String {
        "kustomize".into()
    }
    fn kubectl() -> String {
        "kubectl".into()
    }
    fn kwokctl() -> String {
        "kwokctl".into()
    }
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            helm: Tools::helm(),
            kustomize: Tools::kustomize(),
            kubectl: Tools::kubectl(),
            kwokctl: Tools::kwokctl(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How many independent steps run at once.
    #[serde(default = "Settings::concurrency")]
    pub concurrency: usize,
    /// A step's default wait deadline (e.g. `90s`, `10m`); a component's `timeout` overrides it.
    #[serde(default = "Settings::timeout", with = "duration")]
    pub timeout: Duration,
    /// Namespace of kgf-up's own objects (the inventory).
    #[serde(default = "Settings::namespace")]
    pub namespace: String,
}

impl Settings {
    fn concurrency() -> usize {
        4
    }
    fn timeout() -> Duration {
        Duration::from_secs(600)
    }
    fn namespace() -> String {
        "kgf-system".into()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: Settings::concurrency(),
            timeout: Settings::timeout(),
            namespace: Settings::namespace(),
        }
    }
}

/// One component: where it comes from, where it goes, what it needs first.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Helm release name; default: the component's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Components that must be ready first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
    /// Helm values, deep-merged over the component's built-in values.
    #[serde(default, skip_serializing_if = "is_null")]
    pub values: serde_json::Value,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

fn is_null(v: &serde_json::Value) -> bool {
    v.is_null()
}

/// Where a component's manifests come from.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A chart from a helm repository, pinned.
    Helm {
        repo: String,
        chart: String,
        version: String,
    },
    /// A chart in an OCI registry (`oci://...`), pinned.
    Oci { reference: String, version: String },
    /// A local chart directory or `.tgz`, relative to the profile file.
    Chart { path: PathBuf },
    /// Kustomizations (paths relative to the profile file, or remote URLs with `?ref=`), rendered in
    /// order and applied together: CRDs first, then namespaces, then the rest.
    Kustomize { paths: Vec<String> },
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Helm {
                repo,
                chart,
                version,
            } => format!("helm {repo} {chart} {version}"),
            Source::Oci { reference, version } => format!("helm {reference} {version}"),
            Source::Chart { path } => format!("helm chart {}", path.display()),
            Source::Kustomize { paths } => format!("kustomize {}", paths.join(" + ")),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// At least this many nodes must show allocatable `nvidia.com/gpu`, and every node meant to
    /// have GPUs must (see [`crate::cluster::GpuNodes`]).
    #[serde(default = "Validation::min_gpu_nodes")]
    pub min_gpu_nodes: u32,
    /// The nodes that must show allocatable GPUs, by name. Without it the provider decides:
    /// kind's GPU workers, rke2's GPU hosts, sim's GPU nodes; on an existing cluster any node.
    #[serde(default)]
    pub gpu_nodes: Option<Vec<String>>,
    /// Run a CUDA sample pod that requests one GPU and must log `Test PASSED`.
    #[serde(default = "yes")]
    pub cuda_smoke: bool,
    #[serde(default = "Validation::cuda_image")]
    pub cuda_image: String,
}

impl Validation {
    fn min_gpu_nodes() -> u32 {
        1
    }
    fn cuda_image() -> String {
        "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04".into()
    }
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            min_gpu_nodes: Validation::min_gpu_nodes(),
            gpu_nodes: None,
            cuda_smoke: true,
            cuda_image: Validation::cuda_image(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The longest wait kgf-up accepts for a step; longer is a typo (and would wrap in arithmetic).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses `90s`, `10m`, `1h`, `1h30m` or a bare number of seconds, from 1s up to [`MAX_TIMEOUT`].
/// The same forms are accepted in a profile, in `--set` and in `--timeout`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let shape = || format!("`{text}` is not a duration like 90s, 10m, 1h30m or 600 (seconds)");
    let too_long = || {
        format!(
            "`{text}` is longer than the limit of {}",
            format_duration(MAX_TIMEOUT)
        )
    };
    if text.is_empty() {
        return Err(shape());
    }
    let mut total = 0u64;
    let mut number = String::new();
    let mut bare = true;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        bare = false;
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(shape()),
        };
        if number.is_empty() {
            return Err(shape());
        }
        // Digits beyond u64 are too long, not malformed.
        let n: u64 = number.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
        number.clear();
    }
    if bare {
        total = number.parse().map_err(|_| too_long())?;
    } else if !number.is_empty() {
        return Err(shape());
    }
    if total == 0 {
        return Err(format!("`{text}` is zero: a wait needs at least 1s"));
    }
    if total > MAX_TIMEOUT.as_secs() {
        return Err(too_long());
    }
    Ok(Duration::from_secs(total))
}

/// A duration written as a string (`90s`) or a bare integer (`600`, as YAML and `--set` read it).
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration like 90s, 10m or 600 (seconds)")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
        parse_duration(&v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
        parse_duration(&v.to_string()).map_err(E::custom)
    }
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

mod duration {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

mod opt_duration {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(DurationVisitor).map(Some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{0}`")]
    UnknownName(String),
    #[error("cannot read profile {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: u64,
        column: u64,
        message: String,
        fix: Option<String>,
    },
    #[error("{file}: {message}")]
    Semantic {
        file: String,
        message: String,
        fix: Option<String>,
    },
    #[error("--set {expr}: {message}")]
    Set {
        expr: String,
        message: String,
        fix: Option<String>,
    },
}

impl Fix for ProfileError {
    fn fix(&self) -> Option<String> {
        match self {
            ProfileError::UnknownName(_) => Some(
                "use a built-in profile (kind-gpu, kind, rke2, sim) or the path of a YAML file"
                    .into(),
            ),
            ProfileError::Read { .. } => {
                Some("check the path; built-in profiles are kind-gpu, kind, rke2, sim".into())
            }
            ProfileError::Invalid { fix, .. }
            | ProfileError::Semantic { fix, .. }
            | ProfileError::Set { fix, .. } => fix.clone(),
        }
    }
}

/// A profile together with where it came from (for messages and relative paths).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub profile: Profile,
    /// `kind-gpu (built-in)` or the file's path.
    pub origin: String,
    /// Directory relative source paths are resolved against.
    pub base_dir: PathBuf,
}

/// Parses profile YAML; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ProfileError::Invalid {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: "the profile is empty".into(),
            fix: Some(
                "start from a built-in profile: `kgf-up plan --profile sim` prints one".into(),
            ),
        });
    }
    // A profile is a few thousand values at most; aliases expanding past that are refused early.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_PROFILE_NODES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options::<Profile>(text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let (message, fix) = errors::sentence(&e);
        let fix = hint(&message).or(fix);
        if line == 0 {
            return ProfileError::Semantic {
                file: file.to_string(),
                message,
                fix,
            };
        }
        ProfileError::Invalid {
            file: file.to_string(),
            line,
            column,
            message,
            fix,
        }
    })
}

/// For "unknown field `x`, expected one of a, b" (or "unknown variant"), the nearest valid name.
fn hint(message: &str) -> Option<String> {
    let (what, rest) = if let Some(r) = message.strip_prefix("unknown field `") {
        ("key", r)
    } else if let Some(r) = message.strip_prefix("unknown variant `") {
        ("value", r)
    } else {
        return None;
    };
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest
        .split_once("expected ")
        .map(|(_, e)| e)?
        .trim_start_matches("one of ")
        .split([',', ' '])
        .map(|s| s.trim_matches('`'))
        .filter(|s| !s.is_empty() && *s != "or")
        .collect();
    let nearest = expected
        .iter()
        .map(|e| (levenshtein(unknown, e), *e))
        .min()?;
    if nearest.0 <= unknown.len().max(3) / 2 + 1 {
        Some(format!("did you mean the {what} `{}`?", nearest.1))
    } else {
        Some(format!("valid {what}s here: {}", expected.join(", ")))
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Applies `key.path=value` overrides. The value is read as YAML (so `true`, `3`, `[a, b]` keep
/// their types; a number indexes a list: `cluster.sim.nodes.0.gpus=2`) and the whole profile is
/// type-checked again. An error quotes only the `--set` that caused it.
pub fn apply_sets(profile: Profile, sets: &[String]) -> Result<Profile, ProfileError> {
    if sets.is_empty() {
        return Ok(profile);
    }
    let base = serde_json::to_value(&profile).expect("a profile serializes");
    let mut tree = base.clone();
    let mut values = Vec::with_capacity(sets.len());
    for expr in sets {
        let (keys, value) = parse_set(expr)?;
        set_path(&mut tree, &keys, value.clone()).map_err(|message| ProfileError::Set {
            expr: expr.clone(),
            message,
            fix: Some(
                "--set paths follow the resolved profile that `kgf-up plan -o json` shows".into(),
            ),
        })?;
        values.push((keys, value));
    }
    let typed = |tree: serde_json::Value| serde_json::from_value::<Profile>(tree);
    let full_error = match typed(tree) {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    let with = |keep: &dyn Fn(usize) -> bool| {
        let mut t = base.clone();
        for (i, (keys, value)) in values.iter().enumerate() {
            if keep(i) {
                let _ = set_path(&mut t, keys, value.clone());
            }
        }
        typed(t)
    };
    // The culprit is the one `--set` without which the rest type-check (sets that only make
    // sense together, like a source's three keys, pass this way); else the first whose addition
    // breaks the type check, with that check's error.
    let (culprit, error) = match (0..sets.len()).find(|skip| with(&|i| i != *skip).is_ok()) {
        Some(i) => (i, full_error),
        None => (0..sets.len())
            .find_map(|n| with(&|i| i <= n).err().map(|e| (n, e)))
            .unwrap_or((sets.len() - 1, full_error)),
    };
    let (message, fix) = errors::json_sentence(&error);
    let fix = hint(&message).or(fix);
    Err(ProfileError::Set {
        expr: sets[culprit].clone(),
        message,
        fix,
    })
}

/// `a.b.c=value` → the keys and the value read as YAML.
fn parse_set(expr: &str) -> Result<(Vec<String>, serde_json::Value), ProfileError> {
    let set_err = |message: String, fix: &str| ProfileError::Set {
        expr: expr.to_string(),
        message,
        fix: Some(fix.to_string()),
    };
    let (path, raw) = expr.split_once('=').ok_or_else(|| {
        set_err(
            "expected key.path=value".into(),
            "for example --set components.minio.enabled=false",
        )
    })?;
    let keys: Vec<String> = path.split('.').map(str::to_string).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(set_err(
            format!("`{path}` has an empty key"),
            "keys are separated by single dots: components.minio.enabled",
        ));
    }
    if keys.len() > 32 {
        return Err(set_err(
            format!("`{path}` is deeper than 32 keys"),
            "no profile value is that deep: check the path",
        ));
    }
    let value = if raw.is_empty() {
        serde_json::Value::String(String::new())
    } else {
        serde_saphyr::from_str(raw).map_err(|e| {
            let (why, _) = errors::sentence(&e);
            set_err(
                format!("the value is not valid YAML: {why}"),
                "quote strings that contain YAML syntax: --set 'key=\"a: b\"'",
            )
        })?
    };
    Ok((keys, value))
}

fn set_path(
    tree: &mut serde_json::Value,
    keys: &[String],
    value: serde_json::Value,
) -> Result<(), String> {
    let mut node = tree;
    for (i, key) in keys.iter().enumerate() {
        if node.is_null() {
            *node = serde_json::Value::Object(Default::default());
        }
        node = match node {
            serde_json::Value::Object(map) => {
                map.entry(key.clone()).or_insert(serde_json::Value::Null)
            }
            serde_json::Value::Array(list) => {
                let len = list.len();
                match key.parse::<usize>().ok().and_then(|n| list.get_mut(n)) {
                    Some(item) => item,
                    None => {
                        return Err(format!(
                            "`{}` is a list of {len}: `{key}` is not an index in it (0 to {})",
                            keys[..i].join("."),
                            len.saturating_sub(1)
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "`{}` is a {}, not a mapping",
                    keys[..i].join("."),
                    kind_of(other)
                ));
            }
        };
    }
    *node = value;
    Ok(())
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;

    const MINIMAL: &str = "name: t\ncluster:\n  provider: existing\n";

    #[test]
    fn built_in_profiles_parse() {
        for (name, _) in BUILT_IN.iter().filter(|(n, _)| *n != "rke2") {
            load(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // The built-in rke2 profile is a template: it lists no hosts, and says where.
        let err = load("rke2", &[])
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(err.contains("cluster.rke2.hosts is empty"), "{err}");
    }

    #[test]
    fn the_kind_profile_has_no_gpu_and_takes_another_image_and_subnets() {
        let p = load(
            "kind",
            &[
                "cluster.kind.node_image=kgf-bed/node:v1.36.3".into(),
                "cluster.kind.networking.pod_subnet=198.18.0.0/16".into(),
                "cluster.kind.networking.service_subnet=198.19.0.0/16".into(),
            ],
        )
        .unwrap()
        .profile;
        assert_eq!(p.cluster.provider, Provider::Kind);
        let kind = &p.cluster.kind;
        assert_eq!(kind.gpus.count, Some(0));
        // Even on a host with GPUs: no GPU worker.
        assert!(
            kind.nodes(kind.gpu_count(4))
                .unwrap()
                .iter()
                .all(|n| !n.has_gpus())
        );
        assert_eq!(kind.node_image, "kgf-bed/node:v1.36.3");
        assert_eq!(kind.networking.pod_subnet.as_deref(), Some("198.18.0.0/16"));
        assert_eq!(p.validation.min_gpu_nodes, 0);
        assert!(p.pipeline.enabled && p.pipeline.cpu);
        assert!(!p.components.contains_key("gpu-operator"));
        // Every other component of kind-gpu is there.
        let gpu = load("kind-gpu", &[]).unwrap().profile;
        let mut wanted: Vec<&String> = gpu
            .components
            .keys()
            .filter(|k| *k != "gpu-operator")
            .collect();
        wanted.sort();
        assert_eq!(p.components.keys().collect::<Vec<_>>(), wanted);
    }

    #[test]
    fn unknown_key_names_position_and_nearest_key() {
        let err = parse(
            "name: t\ncluster:\n  provider: existing\nsettings:\n  concurency: 2\n",
            "p.yaml",
        )
        .map_err(|e| crate::fix::shown(&e))
        .unwrap_err();
        assert!(
            err.starts_with("p.yaml:5:3: unknown field `concurency`"),
            "{err}"
        );
        assert!(
            err.contains("fix: did you mean the key `concurrency`?"),
            "{err}"
        );
    }

    #[test]
    fn unknown_provider_suggests_the_nearest() {
        let err = parse("name: t\ncluster:\n  provider: kinf\n", "p.yaml")
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(
            err.starts_with("p.yaml:3:13: unknown variant `kinf`"),
            "{err}"
        );
        assert!(err.contains("did you mean the value `kind`?"), "{err}");
    }

    #[test]
    fn set_overrides_with_types() {
        let p = apply_sets(
            parse(MINIMAL, "p").unwrap(),
            &[
                "settings.concurrency=2".into(),
                "components.minio.enabled=false".into(),
                "components.minio.values.mode=standalone".into(),
                "settings.timeout=90s".into(),
            ],
        )
        .unwrap();
        assert_eq!(p.settings.concurrency, 2);
        assert_eq!(p.settings.timeout, Duration::from_secs(90));
        assert_eq!(p.components["minio"].enabled, Some(false));
        assert_eq!(p.components["minio"].values["mode"], "standalone");
    }

    #[test]
    fn set_with_wrong_type_or_key_is_an_error_with_a_fix() {
        let base = || parse(MINIMAL, "p").unwrap();
        let err = apply_sets(base(), &["settings.concurrency=many".into()])
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(err.starts_with("--set settings.concurrency=many:"), "{err}");
        let err = apply_sets(base(), &["settings.concurency=2".into()])
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(err.contains("did you mean the key `concurrency`?"), "{err}");
        let err = apply_sets(base(), &["name".into()])
            .map_err(|e| crate::fix::shown(&e))
            .unwrap_err();
        assert!(err.contains("expected key.path=value"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("10x").is_err());
        // Zero is no deadline at all, in either spelling; a product past u64 is too long, not
        // a wrapped small number.
        assert!(parse_duration("0").unwrap_err().contains("is zero"));
        assert!(parse_duration("0s").unwrap_err().contains("is zero"));
        let wrapped = parse_duration("5124095576030432h").unwrap_err();
        assert!(
            wrapped.contains("longer than the limit of 24h"),
            "{wrapped}"
        );
        assert!(parse_duration("25h").is_err() && parse_duration("24h").is_ok());
    }

    #[test]
    fn durations_take_the_same_forms_in_a_file_and_in_set() {
        let from_file = parse(&format!("{MINIMAL}settings: {{timeout: 600}}\n"), "p").unwrap();
        assert_eq!(from_file.settings.timeout, Duration::from_secs(600));
        for set in [
            "settings.timeout=600",
            "settings.timeout=10m",
            "settings.timeout='600'",
        ] {
            let p = apply_sets(parse(MINIMAL, "p").unwrap(), &[set.into()]).unwrap();
            assert_eq!(p.settings.timeout, Duration::from_secs(600), "{set}");
        }
    }

    #[test]
    fn a_set_error_quotes_only_its_own_set() {
        let err = apply_sets(
            parse(MINIMAL, "p").unwrap(),
            &[
                "components.minio.values.rootPassword=unrelated-value-1".into(),
                "settings.concurrency=abc".into(),
                "components.x.source.helm.repo=https://r".into(),
            ],
        )
        .map_err(|e| crate::fix::shown(&e))
        .unwrap_err();
        assert!(err.starts_with("--set settings.concurrency=abc: "), "{err}");
        assert!(
            !err.contains("unrelated-value-1") && !err.contains("helm.repo"),
            "{err}"
        );
    }

    proptest::proptest! {
        // PROPTEST_CASES raises the count for a longer fuzzing run (the closing note says how long).
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text, "fuzz.yaml");
        }

        #[test]
        fn parsing_profile_shaped_yaml_never_panics(
            text in "(name|cluster|provider|sim|nodes|gpus|settings|components|source|helm|values|needs|timeout|[a-z]{1,6})(: |:\n  |: \\{|: \\[|- )[a-z0-9 :{}\\[\\],.\n-]{0,60}"
        ) {
            let _ = parse(&text, "fuzz.yaml");
        }

        #[test]
        fn arbitrary_set_expressions_never_panic(expr in "[a-z_.]{0,24}(=[a-z0-9 \\[\\]{}:,.-]{0,16})?") {
            let _ = apply_sets(parse(MINIMAL, "p").unwrap(), &[expr]);
        }
    }

    #[test]
    fn nearest_key_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ab"), 2);
    }
}
