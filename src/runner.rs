//! The runner: drives a plan's steps through observe → apply → wait, starting each step as soon as
//! everything it needs is done (bounded concurrency), and skipping the dependants of a failed step.
//! It decides nothing about what a step does; it reports every outcome to the UI.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;

use crate::plan::Plan;
use crate::step::{Ctx, DynStep, Observation, StepError, StepId};
use crate::ui::Ui;

/// How a step ended.
#[derive(Debug)]
pub enum Outcome {
    /// Observe found it converged: nothing was changed.
    Converged(String),
    /// It was applied and is ready.
    Applied(String),
    Failed(StepError),
    /// Not attempted because a step it needs failed.
    Skipped(String),
}

impl Outcome {
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Converged(_) => "converged",
            Outcome::Applied(_) => "applied",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Converged(m) | Outcome::Applied(m) | Outcome::Skipped(m) => m.clone(),
            Outcome::Failed(e) => e.message.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Finished {
    pub id: StepId,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// One phase of one step, as the UI reports it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Observe,
    Apply,
    Wait,
    Done,
}

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
