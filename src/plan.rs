//! The plan: a profile turned into steps (cluster → components by their `needs` → validation) and
//! their order as levels of a DAG. Building a plan does no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::cluster;
use crate::components::{self, ComponentStep};
use crate::objectstore;
use crate::profile::Loaded;
use crate::step::{Description, DynStep, StepId};
use crate::validate;

pub struct Plan {
    pub steps: Vec<DynStep>,
    /// The helm program, for removing releases of steps no longer in the profile.
    pub helm: String,
    /// The rke2 plan (hosts, SSH), for `down` and for closing its connections.
    pub rke2: Option<std::sync::Arc<cluster::rke2::Rke2Plan>>,
    /// Step ids by level: every step's needs are in earlier levels.
    pub levels: Vec<Vec<StepId>>,
    /// The nodes meant to have GPUs, for the GPU checks `verify` runs on their own.
    pub gpu_nodes: cluster::GpuNodes,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Component(#[from] components::ComponentError),
    #[error(
        "the components' needs form a cycle: {0}\n  fix: remove one of these needs in the profile"
    )]
    Cycle(String),
    #[error("the pipeline: {}{}", .0.message, .0.fix.as_ref().map(|f| format!("\n  fix: {f}")).unwrap_or_default())]
    Pipeline(#[from] crate::step::StepError),
    #[error("{}{}", .0.message, .0.fix.as_ref().map(|f| format!("\n  fix: {f}")).unwrap_or_default())]
    ObjectStore(crate::step::StepError),
    #[error("{0}\n  fix: correct the cluster section of the profile")]
    Cluster(#[from] cluster::ProviderError),
    #[error(
        "step {step} needs {need}, which is not in the plan\n  fix: enable {need} or remove it from {step}'s needs"
    )]
    Missing { step: StepId, need: StepId },
}

pub fn build(
    loaded: &Loaded,
    overrides: &cluster::Overrides,
    facts: &cluster::Facts,
    exec: &crate::exec::Exec,
) -> Result<Plan, PlanError> {
    let profile = &loaded.profile;
    let cluster::Steps {
        mut steps,
        ready,
        rke2,
        gpu_nodes,
    } = cluster::steps(profile, overrides, facts, exec)?;
    let mut resolved = components::resolve(profile)?;
    let store = objectstore::Wiring::new(profile, &resolved).map_err(PlanError::ObjectStore)?;
    if let Some(store) = &store {
        objectstore::adjust(&mut resolved, store, profile);
        if matches!(store.store, objectstore::Store::S3(_)) {
            steps.push(Arc::new(objectstore::buckets::BucketsStep {
                wiring: store.clone(),
                needs: ready.clone(),
            }));
        }
    }
    let names: Vec<String> = resolved.iter().map(|c| c.name.clone()).collect();
    for component in resolved {
        let gpu_operator = component.name == "gpu-operator";
        let kfp = component.name == "kubeflow-pipelines";
        let mut needs = ready.clone();
        if kfp
            && steps
                .iter()
                .any(|s| s.id() == objectstore::buckets::BucketsStep::id())
        {
            needs.push(objectstore::buckets::BucketsStep::id());
        }
        let mut step = ComponentStep::new(
            component,
            profile.tools.clone(),
            loaded.base_dir.clone(),
            needs,
        );
        step.pods_run = components::pods_run(profile.cluster.provider);
        if let Some(rke2) = rke2.clone().filter(|_| gpu_operator) {
            step = step.with_detected_values(Arc::new(move || rke2.gpu_operator_values()));
        }
        if let Some(store) = store.clone().filter(|_| kfp) {
            step = step.with_transform(objectstore::kfp_transform(store));
        }
        steps.push(Arc::new(step));
    }
    let after: Vec<StepId> = names.iter().map(|n| StepId::new("component", n)).collect();
    steps.extend(validate::steps(profile, &gpu_nodes, &ready, &after));
    if profile.pipeline.enabled {
        let kfp: Vec<StepId> = after
            .iter()
            .filter(|id| id.as_str() == "component/kubeflow-pipelines")
            .cloned()
            .collect();
        steps.extend(crate::pipeline::build::steps(
            &profile.pipeline,
            &ready,
            &kfp,
        )?);
    }
    let levels = levels(&steps)?;
    Ok(Plan {
        steps,
        levels,
        helm: profile.tools.helm.clone(),
        rke2,
        gpu_nodes,
    })
}

/// Orders steps into levels (Kahn's algorithm), keeping declared order within a level.
pub fn levels(steps: &[DynStep]) -> Result<Vec<Vec<StepId>>, PlanError> {
    let ids: Vec<StepId> = steps.iter().map(|s| s.id()).collect();
    let mut needs: BTreeMap<StepId, BTreeSet<StepId>> = BTreeMap::new();
    for s in steps {
        for need in s.needs() {
            if !ids.contains(&need) {
                return Err(PlanError::Missing { step: s.id(), need });
            }
        }
        needs.insert(s.id(), s.needs().into_iter().collect());
    }
    let mut placed: BTreeSet<StepId> = BTreeSet::new();
    let mut levels = Vec::new();
    while placed.len() < ids.len() {
        let level: Vec<StepId> = ids
            .iter()
            .filter(|id| !placed.contains(*id) && needs[*id].iter().all(|n| placed.contains(n)))
            .cloned()
            .collect();
        if level.is_empty() {
            return Err(PlanError::Cycle(cycle(&ids, &needs, &placed)));
        }
        placed.extend(level.iter().cloned());
        levels.push(level);
    }
    Ok(levels)
}

/// One cycle among the steps not placed, as `a → b → a`: only the steps in it, not every step
/// that waits behind it.
fn cycle(
    ids: &[StepId],
    needs: &BTreeMap<StepId, BTreeSet<StepId>>,
    placed: &BTreeSet<StepId>,
) -> String {
    // Every unplaced step has an unplaced need; following first needs must come back round.
    let mut walk: Vec<&StepId> = Vec::new();
    let mut at = ids.iter().find(|id| !placed.contains(*id));
    while let Some(id) = at {
        if let Some(i) = walk.iter().position(|w| *w == id) {
            let mut shown: Vec<String> = walk[i..].iter().map(|s| s.to_string()).collect();
            shown.push(id.to_string());
            return shown.join(" → ");
        }
        walk.push(id);
        at = needs[id].iter().find(|n| !placed.contains(*n));
    }
    walk.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(" → ")
}

#[derive(Serialize)]
struct PlannedStep<'a> {
    level: usize,
    step: &'a StepId,
    needs: Vec<StepId>,
    #[serde(flatten)]
    description: Description,
}

/// The plan as text (for people) or as one JSON document (for machines).
pub fn render(plan: &Plan, loaded: &Loaded, json: bool) -> String {
    let by_id: BTreeMap<StepId, &DynStep> = plan.steps.iter().map(|s| (s.id(), s)).collect();
    let planned: Vec<PlannedStep> = plan
        .levels
        .iter()
        .enumerate()
        .flat_map(|(i, level)| {
            let by_id = &by_id;
            level.iter().map(move |id| PlannedStep {
                level: i + 1,
                step: id,
                needs: by_id[id].needs(),
                description: by_id[id].describe(),
            })
        })
        .collect();
    if json {
        return serde_json::to_string_pretty(&serde_json::json!({
            "profile": loaded.origin,
            "resolved": loaded.profile,
            "steps": planned,
        }))
        .expect("the plan serializes");
    }
    let mut out = format!("Profile {}:\n", loaded.origin);
    let resolved = serde_saphyr::to_string(&loaded.profile).unwrap_or_default();
    for line in resolved.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("\nSteps (each level runs after the previous one; steps within a level run concurrently):\n");
    let mut level = 0;
    for p in &planned {
        if p.level != level {
            level = p.level;
            out.push_str(&format!("\n level {level}\n"));
        }
        out.push_str(&format!("  {}  [{}]\n", p.step, p.description.source));
        if !p.needs.is_empty() {
            let needs: Vec<String> = p.needs.iter().map(|n| n.to_string()).collect();
            out.push_str(&format!("      needs: {}\n", needs.join(", ")));
        }
        for c in &p.description.commands {
            out.push_str(&format!("      $ {c}\n"));
        }
        for o in &p.description.objects {
            out.push_str(&format!("      applies {o}\n"));
        }
    }
    out
}
