//! The step image: its tag (version plus a hash of the sources it is built from) and the
//! docker or podman commands that build and push it, run through [`crate::exec`].
//!
//! The tag changes whenever a source of the image changes, so a rebuilt image is a new tag and a
//! cluster never runs a stale image under an old name. This module builds commands and decides
//! whether a build is needed; it never talks to a registry itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::kfp::hex;
use crate::exec::{Cmd, Exec, ExecError};
use crate::fix::Fix;

/// The image's repository name under the registry.
pub const REPOSITORY: &str = "kgf-step";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("neither docker nor podman is on PATH, and building the step image needs one")]
    NoEngine,
    #[error("could not read the image sources under {path}: {source}")]
    Sources {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the step image {image} failed: {source}")]
    Build {
        image: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("pushing the step image {image} failed: {source}")]
    Push {
        image: String,
        #[source]
        source: Box<ExecError>,
    },
}

impl Fix for ImageError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            ImageError::NoEngine => "install Docker (https://docs.docker.com/engine/install/) or \
                 Podman, or build and push the image elsewhere and name it with \
                 `--set pipeline.image=REGISTRY/IMAGE:TAG`"
                .into(),
            ImageError::Sources { .. } => {
                "check that the file is readable in kgf-up's checkout, or set pipeline.image to an \
                 image built elsewhere"
                    .into()
            }
            ImageError::Build { .. } => "see the build output above; `kgf-up pipeline build` \
                 retries the build alone"
                .into(),
            ImageError::Push { image, .. } => {
                let registry = image.split('/').next().unwrap_or_default();
                format!(
                    "check that the registry {registry} is running and reachable \
                     (kind-gpu: `docker ps --filter name=kind-registry`), then `kgf-up pipeline push`"
                )
            }
        })
    }
}

/// Which container engine builds and pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// A container engine and the program that runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    pub kind: EngineKind,
    pub program: String,
}

impl Engine {
    /// Docker when it is on PATH, else Podman.
    pub fn detect() -> Result<Engine, ImageError> {
        if which::which("docker").is_ok() {
            Ok(Engine::at(EngineKind::Docker, "docker"))
        } else if which::which("podman").is_ok() {
            Ok(Engine::at(EngineKind::Podman, "podman"))
        } else {
            Err(ImageError::NoEngine)
        }
    }

    /// An engine at a given program (a path, or a name looked up on PATH).
    pub fn at(kind: EngineKind, program: impl Into<String>) -> Engine {
        Engine {
            kind,
            program: program.into(),
        }
    }
}

/// Which image: CUDA runtime (pipeline/Dockerfile) or CPU only (pipeline/Dockerfile.cpu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Cuda,
    Cpu,
}

impl Variant {
    fn dockerfile(self) -> &'static str {
        match self {
            Variant::Cuda => "pipeline/Dockerfile",
            Variant::Cpu => "pipeline/Dockerfile.cpu",
        }
    }
}

/// The step image of one source tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepImage {
    /// `<registry>/kgf-step:<version>-<hash12>`, with `-cpu` for the CPU variant.
    pub reference: String,
    pub variant: Variant,
    /// The workspace root: the build context.
    pub root: PathBuf,
}

impl StepImage {
    pub fn new(
        root: &Path,
        registry: &str,
        version: &str,
        variant: Variant,
    ) -> Result<Self, ImageError> {
        let hash = source_hash(root)?;
        let suffix = match variant {
            Variant::Cuda => "",
            Variant::Cpu => "-cpu",
        };
        Ok(StepImage {
            reference: format!(
                "{}/{REPOSITORY}:{version}-{}{suffix}",
                registry.trim_end_matches('/'),
                &hash[..12]
            ),
            variant,
            root: root.to_path_buf(),
        })
    }

    /// `build -f pipeline/Dockerfile[.cpu] -t <reference> <root>`. Docker gets `DOCKER_BUILDKIT=1`:
    /// the Dockerfiles' cache mounts need BuildKit, which Docker 20.10 uses only when asked (23
    /// and later by default, and then the variable changes nothing).
    pub fn build_cmd(&self, engine: &Engine) -> Cmd {
        let cmd = match engine.kind {
            EngineKind::Docker => Cmd::new(&engine.program).env("DOCKER_BUILDKIT", "1"),
            EngineKind::Podman => Cmd::new(&engine.program),
        };
        cmd.args(["build", "-f"])
            .arg(
                self.root
                    .join(self.variant.dockerfile())
                    .display()
                    .to_string(),
            )
            .arg("-t")
            .arg(&self.reference)
            .arg(self.root.display().to_string())
            .timeout(Duration::from_secs(3600))
            .changes()
    }

    /// Whether the engine has the image locally: `image inspect` fails when it does not.
    pub fn exists_cmd(&self, engine: &Engine) -> Cmd {
        Cmd::new(&engine.program)
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(&self.reference)
    }

    /// `push <reference>`. Podman checks TLS even for a registry on localhost, which kind's
    /// local registry does not serve, so it is told not to there (and only there).
    pub fn push_cmd(&self, engine: &Engine) -> Cmd {
        let mut cmd = Cmd::new(&engine.program).arg("push");
        let host = self.reference.split('/').next().unwrap_or_default();
        let host = host.split(':').next().unwrap_or_default();
        if engine.kind == EngineKind::Podman && matches!(host, "localhost" | "127.0.0.1") {
            cmd = cmd.arg("--tls-verify=false");
        }
        cmd.arg(&self.reference)
            .timeout(Duration::from_secs(1800))
            .retry_on(
                &["connection refused", "i/o timeout", "TLS handshake timeout"],
                3,
                Duration::from_secs(2),
            )
            .changes()
    }

    /// Builds the image unless the engine already has this tag. Returns whether it built.
    pub fn build(&self, exec: &Exec, engine: &Engine) -> Result<bool, ImageError> {
        if exec.run(&self.exists_cmd(engine)).is_ok() {
            return Ok(false);
        }
        exec.run(&self.build_cmd(engine))
            .map_err(|source| ImageError::Build {
                image: self.reference.clone(),
                source: Box::new(source),
            })?;
        Ok(true)
    }

    /// Builds if needed, then pushes.
    pub fn push(&self, exec: &Exec, engine: &Engine) -> Result<(), ImageError> {
        self.build(exec, engine)?;
        exec.run(&self.push_cmd(engine))
            .map_err(|source| ImageError::Push {
                image: self.reference.clone(),
                source: Box::new(source),
            })?;
        Ok(())
    }
}

/// SHA-256 over what the image is built from: the workspace manifest and lock file, and every
/// file under pipeline/ except the pipeline spec (not in the image) and build output. Each file
/// enters as its path, its length and its bytes, in path order, so a rename changes the hash.
pub fn source_hash(root: &Path) -> Result<String, ImageError> {
    let mut files = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    collect(&root.join("pipeline"), root, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|source| ImageError::Sources {
            path: file.clone(),
            source,
        })?;
        let rel = file.strip_prefix(root).unwrap_or(file);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex(&hasher.finalize()))
}

fn collect(dir: &Path, root: &Path, files: &mut Vec<PathBuf>) -> Result<(), ImageError> {
    let err = |source| ImageError::Sources {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if rel == Path::new("pipeline/spec") || entry.file_name() == "target" {
            continue;
        }
        if entry.file_type().map_err(err)?.is_dir() {
            collect(&path, root, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pipeline/src")).unwrap();
        std::fs::create_dir_all(root.join("pipeline/spec")).unwrap();
        std::fs::create_dir_all(root.join("pipeline/target/debug")).unwrap();
        for (path, text) in [
            ("Cargo.toml", "[workspace]\n"),
            ("Cargo.lock", "# lock\n"),
            ("pipeline/Cargo.toml", "[package]\n"),
            ("pipeline/Dockerfile", "FROM scratch AS cpu\n"),
            ("pipeline/src/main.rs", "fn main() {}\n"),
            ("pipeline/spec/gene-fusion.yaml", "pipelineInfo: {}\n"),
            ("pipeline/target/debug/kgf-step", "binary"),
        ] {
            std::fs::write(root.join(path), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_tag_follows_the_sources_but_not_the_spec_or_build_output() {
        let dir = tree();
        let root = dir.path();
        let first = StepImage::new(root, "localhost:5001", "0.1.0", Variant::Cuda).unwrap();
        assert!(
            first
                .reference
                .starts_with("localhost:5001/kgf-step:0.1.0-"),
            "{}",
            first.reference
        );
        assert_eq!(
            first.reference.len(),
            "localhost:5001/kgf-step:0.1.0-".len() + 12
        );

        std::fs::write(root.join("pipeline/spec/gene-fusion.yaml"), "changed").unwrap();
        std::fs::write(root.join("pipeline/target/debug/kgf-step"), "rebuilt").unwrap();
        let same = StepImage::new(root, "localhost:5001", "0.1.0", Variant::Cuda).unwrap();
        assert_eq!(first, same);

        std::fs::write(root.join("pipeline/src/main.rs"), "fn main() { }\n").unwrap();
        let changed = StepImage::new(root, "localhost:5001", "0.1.0", Variant::Cuda).unwrap();
        assert_ne!(first.reference, changed.reference);

        std::fs::write(root.join("Cargo.lock"), "# other lock\n").unwrap();
        let relocked = StepImage::new(root, "localhost:5001", "0.1.0", Variant::Cuda).unwrap();
        assert_ne!(changed.reference, relocked.reference);

        let cpu = StepImage::new(root, "localhost:5001/", "0.1.0", Variant::Cpu).unwrap();
        assert_eq!(cpu.reference, format!("{}-cpu", relocked.reference));
    }

    #[test]
    fn commands_name_the_dockerfile_target_tag_and_context() {
        let dir = tree();
        let root = dir.path();
        let image = StepImage::new(root, "localhost:5001", "0.1.0", Variant::Cpu).unwrap();
        let build = image.build_cmd(&Engine::at(EngineKind::Podman, "podman"));
        assert_eq!(build.program(), "podman");
        let r = root.display().to_string();
        assert_eq!(
            build.get_args(),
            [
                "build".to_string(),
                "-f".into(),
                format!("{r}/pipeline/Dockerfile.cpu"),
                "-t".into(),
                image.reference.clone(),
                r.clone(),
            ]
        );
        assert!(build.is_change());
        let docker = image.build_cmd(&Engine::at(EngineKind::Docker, "docker"));
        assert!(
            docker
                .display()
                .starts_with("DOCKER_BUILDKIT=1 docker build -f "),
            "{}",
            docker.display()
        );
        assert!(!build.display().contains("DOCKER_BUILDKIT"));
        assert_eq!(
            image
                .push_cmd(&Engine::at(EngineKind::Podman, "podman"))
                .get_args(),
            ["push", "--tls-verify=false", image.reference.as_str()]
        );
        assert_eq!(
            image
                .push_cmd(&Engine::at(EngineKind::Docker, "docker"))
                .get_args(),
            ["push", image.reference.as_str()]
        );
        let remote =
            StepImage::new(root, "registry.example.com:443/ml", "0.1.0", Variant::Cuda).unwrap();
        assert_eq!(
            remote
                .push_cmd(&Engine::at(EngineKind::Podman, "podman"))
                .get_args(),
            ["push", remote.reference.as_str()]
        );
    }
}
