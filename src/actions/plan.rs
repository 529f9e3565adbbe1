//! `plan`: what `up` would change.

use super::{Failure, outln};
use crate::plan::{self, Plan, Preview};
use crate::profile::Loaded;
use crate::runner;
use crate::secret::redact;
use crate::step::{Ctx, StepId};

/// `plan`: observe every step and record what apply would change (the gate records, so nothing
/// is changed), or with `offline` only describe the steps; exit 4 with `--exit-code` when
/// something would change.
pub(super) async fn plan(
    plan: &Plan,
    loaded: &Loaded,
    ctx: &Ctx,
    offline: bool,
    json: bool,
    exit_code: bool,
) -> Result<(), Failure> {
    let previews = if offline {
        runner::offline(plan)
    } else {
        runner::preview(plan, ctx).await
    };
    show(plan, loaded, previews, json, exit_code)
}

fn show(
    plan: &Plan,
    loaded: &Loaded,
    previews: Vec<(StepId, Preview)>,
    json: bool,
    exit_code: bool,
) -> Result<(), Failure> {
    let text = if json {
        plan::render_json(plan, loaded, &previews)
    } else {
        plan::render_text(plan, loaded, &previews)
    };
    outln(&redact(&text))?;
    if previews
        .iter()
        .any(|(_, p)| matches!(p, Preview::Failed(_)))
    {
        return Err(Failure::new(
            "`up` would fail at the steps marked \"would fail\" (above)",
            1,
        ));
    }
    if exit_code && plan::pending(&previews) {
        return Err(Failure::new(String::new(), 4));
    }
    Ok(())
}
