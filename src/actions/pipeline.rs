//! `pipeline spec|build|push`: the spec and the step image, no cluster needed.

use super::{Failure, out, say};
use crate::cli::PipelineAction;
use crate::exec::Exec;
use crate::profile::PipelineSpec;

/// `pipeline spec|build|push`: the spec and the step image, no cluster needed.
pub(super) fn local(p: &PipelineSpec, action: PipelineAction, exec: &Exec) -> Result<(), Failure> {
    use crate::pipeline::{build, image::Engine};
    let image = build::image(p)?;
    let reference = p
        .image
        .clone()
        .or_else(|| image.as_ref().map(|i| i.reference.clone()))
        .expect("an image is given or built");
    if let PipelineAction::Spec = action {
        return Ok(out(&build::rendered_spec(p, &reference)?.yaml)?);
    }
    let Some(image) = image else {
        return Err(Failure::new(
            format!("pipeline.image is set ({reference}): there is nothing to build"),
            2,
        ));
    };
    let engine = Engine::detect().map_err(|e| Failure::of(e, 3))?;
    let failed = |e: crate::pipeline::image::ImageError| Failure::of(e, 1);
    if let PipelineAction::Build = action {
        let built = image.build(exec, &engine).map_err(failed)?;
        say(&format!(
            "{} {}",
            if built { "built" } else { "already built:" },
            image.reference
        ));
    } else {
        image.push(exec, &engine).map_err(failed)?;
        say(&format!("pushed {}", image.reference));
    }
    Ok(())
}
