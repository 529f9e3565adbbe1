//! The step image with the real docker of the real-node bed (scripts/nodebed): built when its tag
//! is missing and only then, pushed to a real registry (CNCF distribution in the bed's `registry:3`
//! image), a push to a registry that is not there named in the error with its fix. The build of
//! the real pipeline/Dockerfile.cpu and a pod running it: tests/kind_real.rs.

mod support;

use std::path::Path;

use kgf_up::exec::Exec;
use kgf_up::fix::Fix;
use kgf_up::pipeline::image::{Engine, EngineKind, ImageError, StepImage, Variant};
use kgf_up::pipeline::spec;
use support::{NodeBed, node_bed};

/// A registry container of this test's own on 127.0.0.1:5002 (kind's, on 5001, belongs to
/// tests/kind_real.rs), removed with its volume on drop.
struct Registry<'a> {
    node: &'a NodeBed,
    name: &'static str,
}

impl<'a> Registry<'a> {
    fn start(node: &'a NodeBed) -> Registry<'a> {
        let name = "kgf-images-test-registry";
        let _ = node.docker(&["rm", "-f", "-v", name]);
        node.docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "-p",
            "127.0.0.1:5002:5000",
            "registry:3",
        ]);
        Registry { node, name }
    }
}

impl Drop for Registry<'_> {
    fn drop(&mut self) {
        let _ = self.node.docker(&["rm", "-f", "-v", self.name]);
    }
}

/// A source tree shaped like the checkout's, with a small Dockerfile of the bed's base image.
fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("pipeline/src")).unwrap();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(root.join("Cargo.lock"), "# lock\n").unwrap();
    std::fs::write(
        root.join("pipeline/Dockerfile"),
        "FROM debian:trixie-slim\nCOPY pipeline/src/main.rs /main.rs\n",
    )
    .unwrap();
    std::fs::write(root.join("pipeline/src/main.rs"), "fn main() {}\n").unwrap();
}

fn image_id(node: &NodeBed, reference: &str) -> String {
    node.docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_string()
}

#[test]
fn the_step_image_is_built_once_per_source_hash_and_pushed() {
    let node = node_bed();
    let _registry = Registry::start(&node);
    let tree = tempfile::tempdir().unwrap();
    source_tree(tree.path());
    let exec = Exec::new();
    let engine = Engine::at(EngineKind::Docker, "docker");

    let image = StepImage::new(tree.path(), "localhost:5002", "0.1.0", Variant::Cuda).unwrap();
    assert!(image.build(&exec, &engine).unwrap(), "first build runs");
    let built = image_id(&node, &image.reference);
    assert!(
        !image.build(&exec, &engine).unwrap(),
        "same sources: no rebuild"
    );
    assert_eq!(image_id(&node, &image.reference), built);
    image.push(&exec, &engine).unwrap();
    // What the registry holds is the image: gone locally, it comes back by pull.
    node.docker_ok(&["rmi", &image.reference]);
    node.docker_ok(&["pull", &image.reference]);
    assert_eq!(image_id(&node, &image.reference), built);
    let content = node.docker_ok(&["run", "--rm", &image.reference, "cat", "/main.rs"]);
    assert_eq!(content, "fn main() {}\n");

    // A changed source is a new tag, built anew; the spec takes whichever tag is current.
    std::fs::write(tree.path().join("pipeline/src/main.rs"), "fn main() { }\n").unwrap();
    let next = StepImage::new(tree.path(), "localhost:5002", "0.1.0", Variant::Cuda).unwrap();
    assert_ne!(next.reference, image.reference);
    assert!(next.build(&exec, &engine).unwrap());
    assert_ne!(image_id(&node, &next.reference), built);
    let rendered = spec::with_image(kgf_up::pipeline::build::SPEC, &next.reference).unwrap();
    assert!(rendered.yaml.contains(&next.reference));

    // A registry that is not there: the error names the image and the registry to check.
    let nowhere = StepImage::new(tree.path(), "localhost:5999", "0.1.0", Variant::Cuda).unwrap();
    let err = nowhere.push(&exec, &engine).unwrap_err();
    assert!(matches!(err, ImageError::Push { .. }), "{err:?}");
    assert!(err.to_string().contains(&nowhere.reference), "{err}");
    assert!(
        err.fix()
            .unwrap_or_default()
            .contains("registry localhost:5999"),
        "{}",
        err.fix().unwrap_or_default()
    );
    for reference in [&image.reference, &next.reference, &nowhere.reference] {
        let _ = node.docker(&["rmi", reference]);
    }
}
