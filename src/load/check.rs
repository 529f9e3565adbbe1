//! What the types cannot check, all before anything is touched: names, `needs` (unknown, self,
//! cycles), sources (exact versions, OCI references without a tag, local paths that exist), and
//! bounds on every count and size with the limit named, so that nothing later allocates or waits
//! in proportion to an unchecked number. Each error points at the file's line and column (or the
//! `--set` that made the value). It reads only the local paths that sources name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::profile::kind::GpuLayout;
use crate::profile::rke2::Role;
use crate::profile::spans::Spans;
use crate::profile::{Profile, ProfileError, Provider, Source, is_dns_label};

/// Limits, each named in its error. Generous for real use, far below what would exhaust memory.
pub const MAX_CONCURRENCY: usize = 64;
pub const MAX_KIND_WORKERS: u32 = 32;
pub const MAX_GPUS: u32 = 64;
pub const MAX_SIM_NODES: usize = 1000;
pub const MAX_SIM_CPU: u32 = 4096;
pub const MAX_HOSTS: usize = 1000;
/// Pods sharing one GPU by time-slicing: each gets a slice of its time and nothing isolates
/// their memory, so past a few dozen a slice is useless.
pub const MAX_TIME_SLICES: u32 = 64;

pub struct Input<'a> {
    pub profile: &'a Profile,
    pub file: &'a str,
    pub spans: &'a Spans,
    pub sets: &'a [String],
    pub base_dir: &'a Path,
}

impl Input<'_> {
    /// An error about the value at `path`: the `--set` that made it, else its place in the file.
    fn at(&self, path: &str, message: String, fix: impl Into<String>) -> ProfileError {
        self.located(path, false, message, fix.into())
    }

    /// As [`Input::at`], pointing at the key that names `path` (a component's name).
    fn at_key(&self, path: &str, message: String, fix: impl Into<String>) -> ProfileError {
        self.located(path, true, message, fix.into())
    }

    fn located(&self, path: &str, key: bool, message: String, fix: String) -> ProfileError {
        let touches = |expr: &&String| {
            let set = expr.split_once('=').map(|(p, _)| p).unwrap_or(expr);
            path == set
                || path.starts_with(&format!("{set}."))
                || set.starts_with(&format!("{path}."))
        };
        if let Some(expr) = self.sets.iter().rev().find(touches) {
            return ProfileError::Set {
                expr: expr.clone(),
                message,
                fix: Some(fix),
            };
        }
        let at = if key {
            self.spans.key(path)
        } else {
            self.spans.value(path)
        };
        match at.filter(|_| !path.is_empty()) {
            Some((line, column)) => ProfileError::Invalid {
                file: self.file.to_string(),
                line,
                column,
                message,
                fix: Some(fix),
            },
            None => ProfileError::Semantic {
                file: self.file.to_string(),
                message,
                fix: Some(fix),
            },
        }
    }
}

pub fn check(input: &Input<'_>) -> Result<(), ProfileError> {
    let p = input.profile;
    if !is_dns_label(&p.name) {
        return Err(input.at(
            "name",
            format!("name `{}` is not a valid cluster name", p.name),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    if !is_dns_label(&p.settings.namespace) {
        return Err(input.at(
            "settings.namespace",
            format!(
                "namespace `{}` is not a valid namespace name",
                p.settings.namespace
            ),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    let concurrency = p.settings.concurrency;
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(input.at(
            "settings.concurrency",
            format!(
                "settings.concurrency is {concurrency}; it must be from 1 to {MAX_CONCURRENCY}"
            ),
            "set it to 1 or more (4 is the default)",
        ));
    }
    components(input)?;
    gpu(input)?;
    match p.cluster.provider {
        Provider::Kind => kind(input)?,
        Provider::Sim => sim(input)?,
        Provider::Rke2 => rke2(input)?,
        Provider::Existing => {}
    }
    if p.validation.min_gpu_nodes as usize > MAX_SIM_NODES {
        return Err(input.at(
            "validation.min_gpu_nodes",
            format!(
                "validation.min_gpu_nodes is {}; the limit is {MAX_SIM_NODES}",
                p.validation.min_gpu_nodes
            ),
            "set it to the number of GPU nodes the cluster has",
        ));
    }
    Ok(())
}

fn components(input: &Input<'_>) -> Result<(), ProfileError> {
    let p = input.profile;
    for (name, spec) in &p.components {
        let path = format!("components.{name}");
        if !is_dns_label(name) {
            return Err(input.at_key(
                &path,
                format!("component name `{name}` is not valid"),
                "use lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        for (i, need) in spec.needs.iter().flatten().enumerate() {
            let at = format!("{path}.needs.{i}");
            if need == name {
                return Err(input.at(
                    &at,
                    format!("component `{name}` needs itself"),
                    format!("remove `{need}` from components.{name}.needs"),
                ));
            }
            if !p.components.contains_key(need) && !crate::components::is_built_in(need) {
                return Err(input.at(
                    &at,
                    format!(
                        "component `{name}` needs `{need}`, which no profile entry or built-in component defines"
                    ),
                    "fix the name in `needs`, or add the component",
                ));
            }
        }
        if let Some(ns) = &spec.namespace
            && !is_dns_label(ns)
        {
            return Err(input.at(
                &format!("{path}.namespace"),
                format!("namespace `{ns}` of component `{name}` is not a valid namespace name"),
                "use lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        if let Some(release) = &spec.release
            && (!is_dns_label(release) || release.len() > 53)
        {
            return Err(input.at(
                &format!("{path}.release"),
                format!("release name `{release}` of component `{name}` is not valid for helm"),
                "use lowercase letters, digits and '-', at most 53 characters",
            ));
        }
        if !(spec.values.is_null() || spec.values.is_object()) {
            return Err(input.at(
                &format!("{path}.values"),
                format!(
                    "values of component `{name}` must be a mapping (helm values), not a {}",
                    crate::profile::kind_of(&spec.values)
                ),
                "write them as keys under values:, e.g. values: {mode: standalone}",
            ));
        }
        if spec.enabled == Some(false) {
            continue;
        }
        if spec.source.is_none() && !crate::components::is_built_in(name) {
            return Err(input.at_key(
                &path,
                format!("component `{name}` has no source and is not a built-in component"),
                format!(
                    "add components.{name}.source (helm, oci, chart or kustomize), or use a built-in name"
                ),
            ));
        }
        if let Some(source) = &spec.source {
            self::source(input, &format!("{path}.source"), source)?;
        }
    }
    needs_cycle(input)
}

fn source(input: &Input<'_>, path: &str, source: &Source) -> Result<(), ProfileError> {
    match source {
        Source::Helm {
            repo,
            chart,
            version,
        } => {
            if repo.is_empty() || repo.contains(char::is_whitespace) {
                return Err(input.at(
                    &format!("{path}.helm.repo"),
                    format!("helm repo `{repo}` is not a repository URL"),
                    "use the chart repository's https:// URL (a local chart: source: {chart: {path: DIR}})",
                ));
            }
            if chart.is_empty() || chart.contains(char::is_whitespace) {
                return Err(input.at(
                    &format!("{path}.helm.chart"),
                    format!("helm chart name `{chart}` is not valid"),
                    "use the chart's name as the repository lists it",
                ));
            }
            exact_version(input, &format!("{path}.helm.version"), version)
        }
        Source::Oci { reference, version } => {
            let Some(rest) = reference.strip_prefix("oci://") else {
                return Err(input.at(
                    &format!("{path}.oci.reference"),
                    format!("OCI reference `{reference}` does not start with oci://"),
                    "write it as oci://registry/path/chart",
                ));
            };
            let last = rest.rsplit('/').next().unwrap_or(rest);
            if rest.is_empty() || !rest.contains('/') || last.contains([':', '@']) {
                return Err(input.at(
                    &format!("{path}.oci.reference"),
                    format!(
                        "OCI reference `{reference}` must name a chart without a tag or digest"
                    ),
                    "remove the `:tag` (or `@digest`) and put the version in `version`",
                ));
            }
            exact_version(input, &format!("{path}.oci.version"), version)
        }
        Source::Chart { path: chart } => {
            let at = format!("{path}.chart.path");
            local_path_exists(input, &at, &chart.display().to_string(), "chart")
        }
        Source::Kustomize { paths } => {
            if paths.is_empty() {
                return Err(input.at(
                    &format!("{path}.kustomize.paths"),
                    "kustomize.paths is empty".into(),
                    "list at least one kustomization directory or URL",
                ));
            }
            for (i, p) in paths.iter().enumerate() {
                let remote = p.contains("://") || p.starts_with("github.com/");
                if !remote {
                    let at = format!("{path}.kustomize.paths.{i}");
                    local_path_exists(input, &at, p, "kustomization")?;
                }
            }
            Ok(())
        }
    }
}

fn local_path_exists(
    input: &Input<'_>,
    at: &str,
    path: &str,
    what: &str,
) -> Result<(), ProfileError> {
    let full = crate::components::local_path(input.base_dir, path);
    if Path::new(&full).exists() {
        return Ok(());
    }
    Err(input.at(
        at,
        format!("the {what} path `{path}` does not exist (looked for {full})"),
        "relative paths are relative to the profile file; check the path",
    ))
}

/// Helm pins exact chart versions (SemVer, optionally with a leading `v`): no ranges, no `latest`.
fn exact_version(input: &Input<'_>, at: &str, version: &str) -> Result<(), ProfileError> {
    let core = version.strip_prefix('v').unwrap_or(version);
    let (core, suffix) = match core.find(['-', '+']) {
        Some(i) => (&core[..i], &core[i + 1..]),
        None => (core, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = suffix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+');
    if numeric && suffix_ok && version.len() <= 64 {
        return Ok(());
    }
    Err(input.at(
        at,
        format!("version `{version}` is not an exact chart version"),
        "pin an exact version like 1.2.3 or v1.2.3 (`helm search repo CHART --versions` lists them); ranges and `latest` are not accepted",
    ))
}

/// A cycle in the components' needs (built-in needs included), pointed at the profile's `needs`
/// entry that closes it.
fn needs_cycle(input: &Input<'_>) -> Result<(), ProfileError> {
    let Ok(resolved) = crate::components::resolve(input.profile) else {
        return Ok(()); // a missing source was reported above; resolve's own error stays
    };
    let graph: BTreeMap<&str, Vec<&str>> = resolved
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.needs.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in graph.keys() {
        let mut path: Vec<&str> = Vec::new();
        if let Some(cycle) = visit(start, &graph, &mut path, &mut done) {
            let shown = cycle.join(" → ");
            // The profile's entry for an edge of the cycle, else the first component's needs.
            let edge = cycle.windows(2).find_map(|w| {
                let needs = input.profile.components.get(w[0])?.needs.as_ref()?;
                let i = needs.iter().position(|n| n == w[1])?;
                Some((w[0], w[1], format!("components.{}.needs.{i}", w[0])))
            });
            let (from, to, at) =
                edge.unwrap_or((cycle[0], cycle[1], format!("components.{}.needs", cycle[0])));
            return Err(input.at(
                &at,
                format!("the components' needs form a cycle: {shown}"),
                format!("remove `{to}` from components.{from}.needs, or another need of the cycle"),
            ));
        }
    }
    Ok(())
}

fn visit<'a>(
    node: &'a str,
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    path: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(i) = path.iter().position(|n| *n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node);
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = visit(next, graph, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node);
    None
}

fn kind(input: &Input<'_>) -> Result<(), ProfileError> {
    let k = &input.profile.cluster.kind;
    if k.workers > MAX_KIND_WORKERS {
        return Err(input.at(
            "cluster.kind.workers",
            format!(
                "cluster.kind.workers is {}; the limit is {MAX_KIND_WORKERS}",
                k.workers
            ),
            "a kind cluster shares one machine: use a few workers",
        ));
    }
    if let Some(count) = k.gpus.count
        && count > MAX_GPUS
    {
        return Err(input.at(
            "cluster.kind.gpus.count",
            format!("cluster.kind.gpus.count is {count}; the limit is {MAX_GPUS}"),
            "set it to the number of GPUs `nvidia-smi -L` lists, or remove it",
        ));
    }
    if let GpuLayout::Explicit(lists) = &k.gpus.layout {
        let at = "cluster.kind.gpus.layout.explicit";
        if lists.len() > MAX_GPUS as usize {
            return Err(input.at(
                at,
                format!(
                    "gpus.layout.explicit lists {} workers; the limit is {MAX_GPUS}",
                    lists.len()
                ),
                "give each worker a list of the GPU indices it gets",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, list) in lists.iter().enumerate() {
            if list.is_empty() {
                return Err(input.at(
                    &format!("{at}.{i}"),
                    format!("gpus.layout.explicit worker {i} has no GPUs"),
                    "remove it and raise `workers` for a CPU-only worker",
                ));
            }
            for (j, gpu) in list.iter().enumerate() {
                let here = format!("{at}.{i}.{j}");
                if *gpu >= MAX_GPUS {
                    return Err(input.at(
                        &here,
                        format!("GPU index {gpu} is above the limit of {}", MAX_GPUS - 1),
                        "use the indices `nvidia-smi -L` lists",
                    ));
                }
                if !seen.insert(*gpu) {
                    return Err(input.at(
                        &here,
                        format!(
                            "GPU {gpu} is given to more than one worker in gpus.layout.explicit"
                        ),
                        "a GPU can belong to one worker only: remove it from one of the lists",
                    ));
                }
            }
        }
    }
    let kind_name_ok = !k.name.is_empty()
        && k.name.len() <= 63
        && k.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if !kind_name_ok {
        return Err(input.at(
            "cluster.kind.name",
            format!("cluster name `{}` is not valid for kind", k.name),
            "use lowercase letters, digits, '.' and '-', at most 63 characters",
        ));
    }
    if k.node_image.trim().is_empty() {
        return Err(input.at(
            "cluster.kind.node_image",
            "cluster.kind.node_image is empty".into(),
            "set it to a kindest/node image pinned by digest, or remove it for the default",
        ));
    }
    if k.registry.enabled && k.registry.host_port == 0 {
        return Err(input.at(
            "cluster.kind.registry.host_port",
            "cluster.kind.registry.host_port is 0; the registry needs a host_port above 0".into(),
            "set a free port such as 5001, or registry: {enabled: false}",
        ));
    }
    // The fewest nodes the profile can give (GPU workers depend on the host, and are checked
    // again once preflight has counted the GPUs).
    let explicit_workers = match &k.gpus.layout {
        GpuLayout::Explicit(lists) => lists.len(),
        _ => 0,
    };
    k.check_keys(1 + k.workers as usize + explicit_workers)
        .map_err(|e| input.at(&format!("cluster.kind.{}", e.key), e.message, e.fix))?;
    k.validate().map_err(|e| {
        input.at(
            "cluster.kind",
            e.to_string(),
            "correct the cluster.kind section",
        )
    })
}

/// `gpu`: time-slicing replicas the device plugin accepts (2 or more), within a bound, and not
/// together with MIG's mixed strategy (kgf-up time-slices `nvidia.com/gpu` only, which that
/// strategy leaves to the GPUs without MIG).
fn gpu(input: &Input<'_>) -> Result<(), ProfileError> {
    let g = &input.profile.gpu;
    if let Some(t) = &g.time_slicing {
        let at = "gpu.time_slicing.replicas";
        if t.replicas < 2 {
            return Err(input.at(
                at,
                format!(
                    "gpu.time_slicing.replicas is {}; time-slicing shares a GPU among 2 or more pods",
                    t.replicas
                ),
                "set replicas to 2 or more, or remove gpu.time_slicing for whole GPUs",
            ));
        }
        if t.replicas > MAX_TIME_SLICES {
            return Err(input.at(
                at,
                format!(
                    "gpu.time_slicing.replicas is {}; the limit is {MAX_TIME_SLICES}",
                    t.replicas
                ),
                "share a GPU among a few pods (the slices split its time and its memory)",
            ));
        }
        if g.mig.as_ref().map(|m| m.strategy) == Some(crate::profile::gpu::MigStrategy::Mixed) {
            return Err(input.at(
                "gpu.time_slicing",
                "gpu.time_slicing with gpu.mig.strategy mixed: kgf-up time-slices nvidia.com/gpu, which the mixed strategy leaves only to GPUs without MIG".into(),
                "use gpu.mig.strategy: single (MIG devices are then nvidia.com/gpu and are time-sliced), or remove gpu.time_slicing",
            ));
        }
    }
    Ok(())
}

fn sim(input: &Input<'_>) -> Result<(), ProfileError> {
    let p = input.profile;
    let nodes = &p.cluster.sim.nodes;
    let at = "cluster.sim.nodes";
    if nodes.len() > MAX_SIM_NODES {
        return Err(input.at(
            at,
            format!(
                "cluster.sim.nodes lists {} nodes; the limit is {MAX_SIM_NODES}",
                nodes.len()
            ),
            "simulate fewer nodes",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let here = format!("{at}.{i}");
        if !is_dns_label(&n.name) {
            return Err(input.at(
                &format!("{here}.name"),
                format!("sim node name `{}` is not a valid node name", n.name),
                "use lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        if !names.insert(n.name.as_str()) {
            return Err(input.at(
                &format!("{here}.name"),
                format!("sim node `{}` is listed twice", n.name),
                "give every node its own name",
            ));
        }
        if n.gpus > MAX_GPUS {
            return Err(input.at(
                &format!("{here}.gpus"),
                format!(
                    "sim node `{}` has {} GPUs; the limit is {MAX_GPUS} per node",
                    n.name, n.gpus
                ),
                "a node holds at most a few GPUs: add nodes instead",
            ));
        }
        if n.cpu == 0 || n.cpu > MAX_SIM_CPU {
            return Err(input.at(
                &format!("{here}.cpu"),
                format!(
                    "sim node `{}` has cpu {}; it must be from 1 to {MAX_SIM_CPU}",
                    n.name, n.cpu
                ),
                "set cpu to the cores the node should advertise, e.g. 16",
            ));
        }
        if !is_quantity(&n.memory) {
            return Err(input.at(
                &format!("{here}.memory"),
                format!(
                    "sim node `{}` has memory `{}`, which is not a quantity",
                    n.name, n.memory
                ),
                "write it like 64Gi or 512Mi",
            ));
        }
    }
    let gpu_nodes = nodes.iter().filter(|n| n.gpus > 0).count();
    let wanted = p.validation.min_gpu_nodes as usize;
    if gpu_nodes < wanted {
        let path = if input.spans.has("validation.min_gpu_nodes") {
            "validation.min_gpu_nodes"
        } else {
            at
        };
        return Err(input.at(
            path,
            format!(
                "validation.min_gpu_nodes is {wanted}, but {gpu_nodes} of the {} sim nodes have GPUs",
                nodes.len()
            ),
            "give a sim node `gpus: 1`, or set validation.min_gpu_nodes: 0",
        ));
    }
    Ok(())
}

/// A Kubernetes quantity as a node's memory is written: digits and a binary or decimal suffix.
fn is_quantity(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = &s[digits..];
    digits > 0
        && digits <= 15
        && ["", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi"].contains(&suffix)
}

fn rke2(input: &Input<'_>) -> Result<(), ProfileError> {
    let r = &input.profile.cluster.rke2;
    let at = "cluster.rke2.hosts";
    if r.hosts.is_empty() {
        return Err(input.at(
            at,
            "cluster.rke2.hosts is empty: rke2 needs at least one host with role: server".into(),
            "list your machines under cluster.rke2.hosts (docs/rke2.md)",
        ));
    }
    if r.hosts.len() > MAX_HOSTS {
        return Err(input.at(
            at,
            format!(
                "cluster.rke2.hosts lists {} hosts; the limit is {MAX_HOSTS}",
                r.hosts.len()
            ),
            "split the machines into several clusters",
        ));
    }
    if !r.hosts.iter().any(|h| h.role == Role::Server) {
        return Err(input.at(
            at,
            "no host has role: server; the first server is where rke2 starts".into(),
            "give one host `role: server`",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, h) in r.hosts.iter().enumerate() {
        if !seen.insert(h.address.as_str()) {
            return Err(input.at(
                &format!("{at}.{i}.address"),
                format!("host {} is listed twice", h.address),
                "list every machine once",
            ));
        }
    }
    if r.install_script.starts_with("http://") {
        return Err(input.at(
            "cluster.rke2.install_script",
            format!(
                "install_script `{}` comes over plain http://",
                r.install_script
            ),
            "a script run as root must come over https:// (or from a local file)",
        ));
    }
    if r.parallelism == 0 || r.parallelism > MAX_CONCURRENCY {
        return Err(input.at(
            "cluster.rke2.parallelism",
            format!(
                "cluster.rke2.parallelism is {}; it must be from 1 to {MAX_CONCURRENCY}",
                r.parallelism
            ),
            "set it to 1 or more (4 is the default)",
        ));
    }
    r.validate().map_err(|e| {
        input.at(
            "cluster.rke2",
            e.to_string(),
            "correct the cluster.rke2 section",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_versions_and_quantities() {
        let spans = Spans::default();
        let profile =
            crate::profile::parse("name: t\ncluster: {provider: existing}\n", "p").unwrap();
        let input = Input {
            profile: &profile,
            file: "p",
            spans: &spans,
            sets: &[],
            base_dir: Path::new("."),
        };
        for ok in ["1.2.3", "v1.21.2", "0.20.0-rc.1", "88.5.3"] {
            assert!(exact_version(&input, "v", ok).is_ok(), "{ok}");
        }
        for bad in [
            "^1.2",
            "latest",
            "1.2",
            "~1.2.3",
            ">=1.0.0",
            "1.x.0",
            "1.2.3 || 2.0.0",
            "",
        ] {
            assert!(exact_version(&input, "v", bad).is_err(), "{bad}");
        }
        assert!(is_quantity("64Gi") && is_quantity("512Mi") && is_quantity("1000"));
        assert!(!is_quantity("lots") && !is_quantity("Gi") && !is_quantity("1.5Gi"));
    }
}
