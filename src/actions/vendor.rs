//! `vendor`: copies of every component's source for an air-gapped install.

use super::{Failure, outln};
use crate::exec::Exec;
use crate::profile::Loaded;
use crate::step::StepError;

/// `vendor`: every component's source copied for an air-gapped install, and the profile lines
/// that point at the copy.
pub(super) async fn vendor(
    loaded: &Loaded,
    out: &std::path::Path,
    json: bool,
) -> Result<(), Failure> {
    let copies = crate::vendor::vendor(loaded, out, &Exec::new())
        .await
        .map_err(|e| StepError::caused("vendor", e))?;
    let sources = crate::vendor::sources_yaml(&copies, &loaded.origin);
    if json {
        for c in &copies {
            outln(
                &serde_json::json!({"component": c.component, "from": c.from, "source": c.source})
                    .to_string(),
            )?;
        }
    } else {
        for c in &copies {
            outln(&format!(
                "vendored {:<20} {} → {}",
                c.component,
                c.from,
                c.source.describe()
            ))?;
        }
        outln(&format!("\n{sources}"))?;
    }
    Ok(())
}
