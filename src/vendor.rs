//! `kgf-up vendor`: a self-contained copy of every enabled component's source, for an
//! air-gapped install. Helm charts become `.tgz` files (`helm pull`, or `helm package` of a chart
//! directory); each kustomization is rendered with `kustomize build` on this connected machine, so
//! its remote bases (Kubeflow Pipelines pulls Argo Workflows' from GitHub) are resolved here once
//! and the copy is a local kustomization of plain YAML.
//!
//! It writes only under its output directory and never talks to a cluster. Container images are
//! not copied: an air-gapped cluster needs them in its own registry mirror.

use std::path::{Path, PathBuf};

use crate::components::{self, Component, chart_source, local_path};
use crate::exec::{Exec, ExecError};
use crate::fix::Fix;
use crate::helm::{self, ChartSource};
use crate::kustomize::{Kustomize, KustomizeError, Target};
use crate::profile::{Loaded, Source};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The sources are boxed: they carry commands and outputs, large beside the other variants.
    #[error("fetching the chart of {component} ({chart})")]
    Fetch {
        component: String,
        chart: String,
        #[source]
        source: Box<ExecError>,
    },
    #[error("{component}: `{command}` wrote no chart archive into {}", dir.display())]
    NoArchive {
        component: String,
        command: String,
        dir: PathBuf,
    },
    #[error("rendering the kustomization {target} of {component}")]
    Render {
        component: String,
        target: String,
        #[source]
        source: Box<KustomizeError>,
    },
    #[error(transparent)]
    Component(#[from] components::ComponentError),
}

impl Fix for VendorError {
    fn fix(&self) -> Option<String> {
        match self {
            VendorError::Write { .. } => Some(
                "choose an output directory you can write to: kgf-up vendor --out DIR".into(),
            ),
            VendorError::Fetch { .. } | VendorError::NoArchive { .. } => Some(
                "run vendor on a machine that reaches the chart's repository or registry, and check \
                 the component's source and version in the profile"
                    .into(),
            ),
            VendorError::Render { source, .. } => source.fix(),
            VendorError::Component(e) => e.fix(),
        }
    }
}

/// One component's copy.
#[derive(Clone, Debug)]
pub struct Vendored {
    pub component: String,
    /// Where it came from, as the profile said.
    pub from: String,
    /// The profile source that points at the copy (absolute paths).
    pub source: Source,
}

/// Copies the source of every enabled component of `loaded` into `out` (created if missing;
/// files of an earlier vendor run are replaced) and writes `out/sources.yaml`.
pub async fn vendor(
    loaded: &Loaded,
    out: &Path,
    exec: &Exec,
) -> Result<Vec<Vendored>, VendorError> {
    let out = absolute(out);
    create_dir(&out)?;
    let tools = &loaded.profile.tools;
    let mut copies = Vec::new();
    for c in components::resolve(&loaded.profile)? {
        let source = match chart_source(&c.source, &loaded.base_dir) {
            Some(chart) => vendor_chart(&c, &chart, &tools.helm, &out, exec).await?,
            None => {
                let kustomize =
                    Kustomize::with_programs(exec.clone(), &tools.kustomize, &tools.kubectl);
                vendor_kustomize(&c, &loaded.base_dir, &kustomize, &out).await?
            }
        };
        copies.push(Vendored {
            component: c.name.clone(),
            from: c.source.describe(),
            source,
        });
    }
    let sources = out.join("sources.yaml");
    write(&sources, &sources_yaml(&copies, &loaded.origin))?;
    Ok(copies)
}

async fn vendor_chart(
    c: &Component,
    chart: &ChartSource,
    helm_program: &str,
    out: &Path,
    exec: &Exec,
) -> Result<Source, VendorError> {
    let charts = out.join("charts");
    create_dir(&charts)?;
    if let ChartSource::Local { path } = chart
        && !path.is_dir()
    {
        let file = path.file_name().unwrap_or_default();
        let to = charts.join(file);
        std::fs::copy(path, &to).map_err(|source| VendorError::Write {
            path: to.clone(),
            source,
        })?;
        return Ok(Source::Chart { path: to });
    }
    // helm names the archive after the chart: fetch into a directory of its own to find it.
    let partial = out.join(format!(".partial-{}", c.name));
    let _ = std::fs::remove_dir_all(&partial);
    create_dir(&partial)?;
    let cmd = helm::fetch_cmd(helm_program, chart, &partial).expect("not a packaged chart");
    let command = cmd.display();
    exec.run_async(cmd)
        .await
        .map_err(|source| VendorError::Fetch {
            component: c.name.clone(),
            chart: chart.to_string(),
            source: Box::new(source),
        })?;
    let archive = std::fs::read_dir(&partial)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| VendorError::NoArchive {
            component: c.name.clone(),
            command,
            dir: partial.clone(),
        })?;
    let to = charts.join(archive.file_name().unwrap_or_default());
    std::fs::rename(&archive, &to).map_err(|source| VendorError::Write {
        path: to.clone(),
        source,
    })?;
    let _ = std::fs::remove_dir_all(&partial);
    Ok(Source::Chart { path: to })
}

async fn vendor_kustomize(
    c: &Component,
    base_dir: &Path,
    kustomize: &Kustomize,
    out: &Path,
) -> Result<Source, VendorError> {
    let Source::Kustomize { paths } = &c.source else {
        unreachable!("only kustomize sources have no chart")
    };
    let mut copies = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let target = local_path(base_dir, path);
        let yaml = kustomize
            .build(&Target::parse(&target))
            .await
            .map_err(|source| VendorError::Render {
                component: c.name.clone(),
                target: target.clone(),
                source: Box::new(source),
            })?;
        let dir = out
            .join("kustomize")
            .join(&c.name)
            .join(format!("{i}-{}", slug(path)));
        create_dir(&dir)?;
        write(&dir.join("resources.yaml"), &yaml)?;
        write(
            &dir.join("kustomization.yaml"),
            &format!(
                "# Written by `kgf-up vendor`: `kustomize build {path}`, remote bases included.\n\
                 apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n- resources.yaml\n"
            ),
        )?;
        copies.push(dir.display().to_string());
    }
    Ok(Source::Kustomize { paths: copies })
}

/// The last path segment of a kustomization source, without its query (`platform-agnostic`).
fn slug(source: &str) -> String {
    let path = source.split('?').next().unwrap_or(source);
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("kustomization");
    let slug: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if slug.is_empty() {
        "kustomization".into()
    } else {
        slug
    }
}

/// The profile lines that point every component at its copy.
pub fn sources_yaml(copies: &[Vendored], origin: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut text = format!(
        "# Written by `kgf-up vendor` from {origin}: every component's source as a local copy.\n\
         # Put these under `components:` in your profile; `up` then fetches nothing for them.\n\
         components:\n"
    );
    for v in copies {
        text.push_str(&format!("  {}:\n", v.component));
        match &v.source {
            Source::Chart { path } => text.push_str(&format!(
                "    source: {{chart: {{path: {}}}}}\n",
                quote(&path.display().to_string())
            )),
            Source::Kustomize { paths } => {
                text.push_str("    source:\n      kustomize:\n        paths:\n");
                for p in paths {
                    text.push_str(&format!("          - {}\n", quote(p)));
                }
            }
            Source::Helm { .. } | Source::Oci { .. } => unreachable!("copies are local"),
        }
    }
    text
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    }
}

fn create_dir(path: &Path) -> Result<(), VendorError> {
    std::fs::create_dir_all(path).map_err(|source| VendorError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), VendorError> {
    std::fs::write(path, text).map_err(|source| VendorError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kustomization_copies_are_named_after_their_last_segment() {
        assert_eq!(
            slug(
                "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.1"
            ),
            "platform-agnostic"
        );
        assert_eq!(
            slug("../components/kfp/cluster-scoped-resources/"),
            "cluster-scoped-resources"
        );
        assert_eq!(slug("file:///tmp/repo//base?ref=v1"), "base");
    }

    #[test]
    fn the_sources_file_parses_as_a_profile_components_section() {
        let copies = vec![
            Vendored {
                component: "kuberay".into(),
                from: "helm".into(),
                source: Source::Chart {
                    path: "/v/charts/kuberay-operator-1.7.1.tgz".into(),
                },
            },
            Vendored {
                component: "kubeflow-pipelines".into(),
                from: "kustomize".into(),
                source: Source::Kustomize {
                    paths: vec!["/v/kustomize/kfp/0-a".into(), "/v/kustomize/kfp/1-b".into()],
                },
            },
        ];
        let text = sources_yaml(&copies, "kind-gpu (built-in)");
        #[derive(serde::Deserialize)]
        struct Section {
            components: std::collections::BTreeMap<String, crate::profile::ComponentSpec>,
        }
        let parsed: Section = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            parsed.components["kuberay"].source,
            Some(Source::Chart {
                path: "/v/charts/kuberay-operator-1.7.1.tgz".into()
            })
        );
        assert_eq!(
            parsed.components["kubeflow-pipelines"].source,
            Some(Source::Kustomize {
                paths: vec!["/v/kustomize/kfp/0-a".into(), "/v/kustomize/kfp/1-b".into()]
            })
        );
    }
}
