//! The plan: a profile turned into steps (cluster → components by their `needs` → validation) and
//! their order as levels of a DAG (building one does no I/O), and the `plan` verb's report of
//! what [`crate::runner::preview`] found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cluster;
use crate::components;
use crate::fix::Fix;
use crate::objectstore;
use crate::profile::Loaded;
use crate::step::{Description, DynStep, Observation, StepError, StepId};
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
    #[error("the components' needs form a cycle: {0}")]
    Cycle(String),
    #[error("the pipeline: {}", .0.message)]
    Pipeline(#[from] crate::step::StepError),
    #[error("{}", .0.message)]
    ObjectStore(crate::step::StepError),
    #[error(transparent)]
    Cluster(#[from] cluster::ProviderError),
    #[error("step {step} needs {need}, which is not in the plan")]
    Missing { step: StepId, need: StepId },
}

impl Fix for PlanError {
    fn fix(&self) -> Option<String> {
        match self {
            PlanError::Component(e) => e.fix(),
            PlanError::Cycle(_) => Some("remove one of these needs in the profile".into()),
            PlanError::Pipeline(e) | PlanError::ObjectStore(e) => e.fix(),
            PlanError::Cluster(_) => Some("correct the cluster section of the profile".into()),
            PlanError::Missing { step, need } => {
                Some(format!("enable {need} or remove it from {step}'s needs"))
            }
        }
    }
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
        let common = components::Common::new(
            component,
            profile.tools.clone(),
            loaded.base_dir.clone(),
            needs,
            components::pods_run(profile.cluster.provider),
        );
        let detected: Option<components::DetectValues> = rke2
            .clone()
            .filter(|_| gpu_operator)
            .map(|rke2| Arc::new(move || rke2.gpu_operator_values()) as components::DetectValues);
        let transform = store
            .clone()
            .filter(|_| kfp)
            .map(objectstore::kfp_transform);
        steps.push(components::step(common, detected, transform));
    }
    let after: Vec<StepId> = names.iter().map(|n| StepId::new("component", n)).collect();
    steps.extend(validate::steps(
        profile,
        &gpu_nodes,
        &ready,
        &after,
        validate::Smoke::PastPassCounts,
    ));
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

/// What `plan` found for one step.
#[derive(Debug)]
pub enum Preview {
    /// Observed converged: `up` changes nothing here.
    NoChange(String),
    /// Not converged; apply, run with the gate recording, would make these changes.
    Changes {
        seen: Observation,
        changes: Vec<crate::gate::Change>,
    },
    /// Cannot be observed (no cluster yet, hosts unreachable): what `up` would do from scratch,
    /// and why it could not look.
    Offline {
        description: Description,
        why: Option<String>,
    },
    /// Observing or previewing failed on a cluster that answers.
    Failed(StepError),
}

impl Preview {
    /// Whether `up` would change something for this step (offline: it would create it).
    pub fn pending(&self) -> bool {
        !matches!(self, Preview::NoChange(_))
    }
}

/// The profile as `plan` shows it: only the cluster section of its provider, and only enabled
/// components.
pub fn used_sections(loaded: &Loaded) -> serde_json::Value {
    let mut v = serde_json::to_value(&loaded.profile).expect("a profile serializes");
    let provider = loaded.profile.cluster.provider.to_string();
    if let Some(cluster) = v.get_mut("cluster").and_then(|c| c.as_object_mut()) {
        cluster.retain(|k, _| k == "provider" || *k == provider);
    }
    if let Some(components) = v.get_mut("components").and_then(|c| c.as_object_mut()) {
        components.retain(|_, c| c.get("enabled") != Some(&serde_json::Value::Bool(false)));
    }
    if !loaded.profile.pipeline.enabled
        && let Some(o) = v.as_object_mut()
    {
        o.remove("pipeline");
    }
    v
}

/// Whether the preview has anything `up` would change.
pub fn pending(previews: &[(StepId, Preview)]) -> bool {
    previews.iter().any(|(_, p)| p.pending())
}

/// The preview as JSON lines: one object per step, then one summary object.
pub fn render_json(plan: &Plan, loaded: &Loaded, previews: &[(StepId, Preview)]) -> String {
    let level_of = |id: &StepId| plan.levels.iter().position(|l| l.contains(id)).unwrap_or(0) + 1;
    let needs: BTreeMap<StepId, Vec<StepId>> =
        plan.steps.iter().map(|s| (s.id(), s.needs())).collect();
    let mut lines = vec![
        serde_json::json!({"profile": loaded.origin, "resolved": used_sections(loaded)})
            .to_string(),
    ];
    for (id, p) in previews {
        let mut line = serde_json::json!({"step": id, "level": level_of(id), "needs": needs[id]});
        let o = line.as_object_mut().expect("an object");
        match p {
            Preview::NoChange(reason) => {
                o.insert("status".into(), "no-change".into());
                o.insert("reason".into(), reason.clone().into());
            }
            Preview::Changes { seen, changes } => {
                o.insert("status".into(), "changes".into());
                o.insert("state".into(), seen.state.to_string().into());
                o.insert("reason".into(), seen.reason.clone().into());
                o.insert(
                    "changes".into(),
                    serde_json::to_value(changes).expect("changes serialize"),
                );
            }
            Preview::Offline { description, why } => {
                o.insert("status".into(), "offline".into());
                if let Some(why) = why {
                    o.insert("reason".into(), why.clone().into());
                }
                o.insert(
                    "description".into(),
                    serde_json::to_value(description).expect("serializes"),
                );
            }
            Preview::Failed(e) => {
                o.insert("status".into(), "failed".into());
                o.insert("reason".into(), e.message.clone().into());
                if let Some(fix) = &e.fix {
                    o.insert("fix".into(), fix.clone().into());
                }
            }
        }
        lines.push(line.to_string());
    }
    let changing = previews.iter().filter(|(_, p)| p.pending()).count();
    lines.push(serde_json::json!({"summary": {"changes_pending": changing > 0, "steps_changing": changing}}).to_string());
    lines.join("\n")
}

/// The preview for people: per step, no change and why, or each change `up` would make; steps
/// that could not be observed as the offline plan, with the files they would write.
pub fn render_text(plan: &Plan, loaded: &Loaded, previews: &[(StepId, Preview)]) -> String {
    let needs: BTreeMap<StepId, Vec<StepId>> =
        plan.steps.iter().map(|s| (s.id(), s.needs())).collect();
    let mut out = format!("Plan for profile {}:\n", loaded.origin);
    let mut offline_said = false;
    for (id, p) in previews {
        match p {
            Preview::NoChange(reason) => {
                out.push_str(&format!("  {:<34} no change: {reason}\n", id.to_string()));
            }
            Preview::Changes { seen, changes } => {
                out.push_str(&format!(
                    "  {:<34} {}: {}\n",
                    id.to_string(),
                    seen.state,
                    seen.reason
                ));
                let shown: Vec<_> = changes.iter().filter(|c| !c.bookkeeping).collect();
                for c in &shown {
                    out.push_str(&format!("      {}\n", c.summary));
                    for d in &c.detail {
                        out.push_str(&format!("          {d}\n"));
                    }
                }
                let kept = changes.len() - shown.len();
                match (shown.is_empty(), kept) {
                    (false, _) => {}
                    (true, 0) => out.push_str("      nothing to apply: `up` only waits for it\n"),
                    (true, n) => out.push_str(&format!(
                        "      only kgf-up's own records would be written ({n})\n"
                    )),
                }
            }
            Preview::Offline { description, why } => {
                if !offline_said {
                    offline_said = true;
                    out.push_str(&format!(
                        "\n  Offline from here: {} — what `up` would do on a new cluster:\n",
                        why.as_deref()
                            .unwrap_or("there is no cluster to compare with yet")
                    ));
                }
                out.push_str(&format!(
                    "  {:<34} [{}]\n",
                    id.to_string(),
                    description.source
                ));
                if !needs[id].is_empty() {
                    let n: Vec<String> = needs[id].iter().map(|n| n.to_string()).collect();
                    out.push_str(&format!("      needs: {}\n", n.join(", ")));
                }
                for c in &description.commands {
                    out.push_str(&format!("      $ {c}\n"));
                }
                for o in &description.objects {
                    out.push_str(&format!("      applies {o}\n"));
                }
                for f in &description.files {
                    out.push_str(&format!("      writes {}:\n", f.path));
                    for line in f.content.lines() {
                        out.push_str(&format!("          {line}\n"));
                    }
                }
            }
            Preview::Failed(e) => {
                out.push_str(&format!(
                    "  {:<34} would fail: {}\n",
                    id.to_string(),
                    e.message
                ));
                if let Some(fix) = &e.fix {
                    out.push_str(&format!("{}\n", crate::fix::line(6, fix)));
                }
            }
        }
    }
    let changing: Vec<String> = previews
        .iter()
        .filter(|(_, p)| p.pending())
        .map(|(id, _)| id.to_string())
        .collect();
    if changing.is_empty() {
        out.push_str("\nNo changes: the cluster is as the profile wants.\n");
    } else {
        out.push_str(&format!(
            "\n{} of {} steps would change ({}); `kgf-up up` makes these changes.\n",
            changing.len(),
            previews.len(),
            changing.join(", ")
        ));
    }
    out
}
