//! `doctor`: the host checks with the exact fix for each failure (kind), or whether the cluster
//! answers (every other provider).

use super::{Failure, outln};
use crate::exec::Exec;
use crate::plan::Plan;
use crate::preflight;
use crate::step::Ctx;
use crate::ui::Ui;

/// `doctor`: the host checks with the exact fix for each failure; `--fix` applies the fixes
/// (asking first when interactive), then checks again.
pub(super) async fn doctor(
    exec: &Exec,
    report: preflight::Report,
    options: &preflight::Options,
    fix: bool,
    interactive: bool,
    yes: bool,
    json: bool,
) -> Result<(), Failure> {
    use preflight::{self, Status};
    let print = |r: &preflight::Report| {
        if json {
            outln(&serde_json::to_string(r).expect("a report serializes"))
        } else {
            outln(&r.render())
        }
    };
    print(&report)?;
    // Warnings have fixes too (inotify, the toolkit's environment setting).
    let report = if fix && report.auto_fixable() {
        // Without a terminal, `consent` let this through only with --yes.
        preflight::apply_fixes(exec, &report, options.root, &mut |check| {
            if !interactive || yes {
                return true;
            }
            let shown = check
                .fix
                .as_ref()
                .map(|f| f.shown.clone())
                .unwrap_or_default();
            dialoguer::Confirm::new()
                .with_prompt(format!("{}: run `{shown}`?", check.name))
                .default(true)
                .interact()
                .unwrap_or(false)
        })
        .await
        .map_err(|e| Failure::caused(&e, 3))?;
        let again = preflight::run(exec, options).await;
        print(&again)?;
        again
    } else {
        report
    };
    match report.status() {
        Status::Fail => {
            let failed: Vec<String> = report.failed().map(|c| c.name.to_string()).collect();
            let failure = Failure::new(format!("preflight failed: {}", failed.join(", ")), 3);
            Err(if fix {
                failure
            } else {
                failure.with_fix("run the fix commands above, or `kgf-up doctor --fix`")
            })
        }
        _ => Ok(()),
    }
}

/// `doctor` off kind: there is no host to check, so it checks that the cluster answers.
pub(super) async fn cluster_answers(plan: &Plan, ctx: &Ctx, ui: &Ui) -> Result<(), Failure> {
    let seen = plan.steps[0].observe(ctx).await?;
    ui.note(&format!(
        "{}: {} ({})",
        plan.steps[0].id(),
        seen.state,
        seen.reason
    ));
    Ok(())
}
