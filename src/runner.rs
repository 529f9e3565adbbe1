//! The runner: drives a plan's steps through observe → apply → wait, starting each step as soon as
//! everything it needs is done (bounded concurrency), and skipping the dependants of a failed step.
//! It decides nothing about what a step does; it reports every outcome to the UI.
//!
//! [`preview`] is `plan`: the same observe and apply, with the gate recording instead of changing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::plan::{Plan, Preview};
use crate::step::{Ctx, DynStep, Finished, Observation, Outcome, Phase, StepError, StepId};
use crate::ui::Ui;

async fn run_step(step: DynStep, ctx: Arc<Ctx>, ui: Ui) -> Finished {
    let id = step.id();
    let started = Instant::now();
    ui.phase(&id, Phase::Observe, "");
    let outcome = async {
        let seen: Observation = step.observe(&ctx).await?;
        if seen.is_converged() {
            return Ok(Outcome::Converged(seen.reason));
        }
        ui.phase(
            &id,
            Phase::Apply,
            &format!("{}: {}", seen.state, seen.reason),
        );
        // One `up` changes a cluster at a time; a run that changes nothing never takes the lock.
        ctx.lock_for_change().await?;
        step.apply(&ctx, &seen).await?;
        ui.phase(&id, Phase::Wait, "");
        step.wait(&ctx).await?;
        Ok::<_, StepError>(Outcome::Applied(seen.reason))
    }
    .await
    .unwrap_or_else(Outcome::Failed);
    Finished {
        id,
        outcome,
        elapsed: started.elapsed(),
    }
}

/// Runs the plan; returns every step's outcome in the order they finished.
pub async fn up(plan: &Plan, ctx: Arc<Ctx>, ui: &Ui, concurrency: usize) -> Vec<Finished> {
    let steps: BTreeMap<StepId, DynStep> = plan.steps.iter().map(|s| (s.id(), s.clone())).collect();
    let order: Vec<StepId> = plan.levels.iter().flatten().cloned().collect();
    let mut done: BTreeMap<StepId, bool> = BTreeMap::new();
    let mut started: BTreeSet<StepId> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    let mut finished = Vec::new();
    tracing::info!(concurrency, "running {} steps", order.len());
    loop {
        // Skip what can no longer run; start what is ready, in plan order, up to the limit.
        for id in &order {
            if started.contains(id) {
                continue;
            }
            let needs = steps[id].needs();
            if let Some(failed) = needs.iter().find(|n| done.get(*n) == Some(&false)) {
                started.insert(id.clone());
                done.insert(id.clone(), false);
                let f = Finished {
                    id: id.clone(),
                    outcome: Outcome::Skipped(format!(
                        "not attempted: it needs {failed}, which did not finish"
                    )),
                    elapsed: Duration::ZERO,
                };
                ui.finished(&f);
                finished.push(f);
                continue;
            }
            if running.len() < concurrency && needs.iter().all(|n| done.get(n) == Some(&true)) {
                started.insert(id.clone());
                running.push(tokio::spawn(run_step(
                    steps[id].clone(),
                    ctx.clone(),
                    ui.clone(),
                )));
            }
        }
        let Some(result) = running.next().await else {
            break;
        };
        let f = result.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        done.insert(f.id.clone(), !matches!(f.outcome, Outcome::Failed(_)));
        ui.finished(&f);
        finished.push(f);
    }
    finished
}

/// Observes every step without changing anything. Steps whose needs are not converged are
/// observed too (a read cannot hurt), but only while the cluster is known: once a level ends
/// without a kubeconfig, there is nothing to observe on.
pub async fn status(plan: &Plan, ctx: Arc<Ctx>) -> Vec<(StepId, Result<Observation, StepError>)> {
    let mut out = Vec::new();
    for level in &plan.levels {
        let futures = level.iter().map(|id| {
            let step = plan
                .steps
                .iter()
                .find(|s| &s.id() == id)
                .expect("plan step")
                .clone();
            let ctx = ctx.clone();
            async move { (step.id(), step.observe(&ctx).await) }
        });
        let results = futures::future::join_all(futures).await;
        let all_converged = results
            .iter()
            .all(|(_, r)| matches!(r, Ok(o) if o.is_converged()));
        out.extend(results);
        if !all_converged && ctx.kubeconfig.get().is_none() {
            break;
        }
    }
    out
}

/// `plan`: each step observed, in plan order, one at a time (so every recorded change belongs to
/// its step); a step that is not converged is applied with the gate recording. Once a level ends
/// without a known cluster, the steps after it are described offline. `ctx`'s gate must record.
pub async fn preview(plan: &Plan, ctx: &Ctx) -> Vec<(StepId, Preview)> {
    assert!(
        ctx.gate().recording(),
        "plan previews through a recording gate"
    );
    let steps: BTreeMap<StepId, DynStep> = plan.steps.iter().map(|s| (s.id(), s.clone())).collect();
    let mut out = Vec::new();
    let mut offline = false;
    // Said once, on the first step described offline.
    let mut offline_why: Option<String> = None;
    for level in &plan.levels {
        for id in level {
            let step = &steps[id];
            if offline {
                out.push((
                    id.clone(),
                    Preview::Offline {
                        description: step.describe(),
                        why: offline_why.take(),
                    },
                ));
                continue;
            }
            let previewed = match step.observe(ctx).await {
                Ok(seen) if seen.is_converged() => Preview::NoChange(seen.reason),
                Ok(seen) => {
                    ctx.gate().take();
                    match step.apply(ctx, &seen).await {
                        Ok(()) => Preview::Changes {
                            seen,
                            changes: ctx.gate().take(),
                        },
                        Err(e) => Preview::Failed(e),
                    }
                }
                Err(e) if ctx.kubeconfig.get().is_none() => Preview::Offline {
                    description: step.describe(),
                    why: Some(format_error(&e)),
                },
                Err(e) => Preview::Failed(e),
            };
            out.push((id.clone(), previewed));
        }
        // Without a cluster after a level that would change something (create it), nothing
        // after it can be observed; nor after a level that would re-create it (what is in the
        // old cluster says nothing of the new one).
        let changing = out.iter().rev().take(level.len()).any(|(_, p)| p.pending());
        if changing && !offline && ctx.cluster_was_replaced() {
            offline = true;
            offline_why =
                Some("the cluster would be deleted and created again (recreate)".to_string());
        }
        offline |= changing && ctx.kubeconfig.get().is_none();
    }
    out
}

/// `plan --offline`: every step described, nothing looked at.
pub fn offline(plan: &Plan) -> Vec<(StepId, Preview)> {
    plan.levels
        .iter()
        .flatten()
        .map(|id| {
            let step = plan
                .steps
                .iter()
                .find(|s| &s.id() == id)
                .expect("plan step");
            let why = (Some(id) == plan.levels.first().and_then(|l| l.first()))
                .then(|| "--offline: nothing was looked at".to_string());
            (
                id.clone(),
                Preview::Offline {
                    description: step.describe(),
                    why,
                },
            )
        })
        .collect()
}

fn format_error(e: &StepError) -> String {
    match &e.fix {
        Some(fix) => format!("{} (fix: {fix})", e.message),
        None => e.message.clone(),
    }
}
