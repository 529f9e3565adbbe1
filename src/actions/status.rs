//! `status`: every step observed, and where things are.

use std::sync::Arc;

use super::{Failure, outln};
use crate::plan::Plan;
use crate::profile::Profile;
use crate::runner;
use crate::step::Ctx;
use crate::ui::Ui;

pub(super) async fn status(
    plan: &Plan,
    profile: &Profile,
    ctx: Arc<Ctx>,
    ui: &Ui,
) -> Result<(), Failure> {
    let observed = runner::status(plan, ctx).await;
    let mut all_converged = true;
    for (id, result) in &observed {
        let (state, reason) = match result {
            Ok(o) => (o.state.to_string(), o.reason.clone()),
            Err(e) => ("failed".to_string(), e.message.clone()),
        };
        all_converged &= state == "converged";
        if ui.is_json() {
            outln(
                &serde_json::json!({"step": id.as_str(), "phase": "observe", "status": state, "elapsed": 0.0, "message": reason})
                    .to_string(),
            )?;
        } else {
            outln(&format!("  {:<36} {:<10} {reason}", id.to_string(), state))?;
        }
    }
    let unobserved = plan.steps.len() - observed.len();
    if unobserved > 0 && !ui.is_json() {
        outln(&format!(
            "  ({unobserved} steps not observed: the cluster is not there)"
        ))?;
    }
    let access = crate::proof::access(profile);
    if !ui.is_json() && !access.is_empty() {
        outln("\nWhere things are:")?;
        for a in access {
            outln(&format!(
                "  {:<34} {}\n  {:<34} $ {}",
                a.what, a.at, "", a.command
            ))?;
        }
    }
    if all_converged && unobserved == 0 {
        Ok(())
    } else {
        Err(Failure::new(
            "not every step is converged; `kgf-up up` converges them",
            1,
        ))
    }
}
