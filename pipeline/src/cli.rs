//! Command line of `kgf-step`: one subcommand per pipeline step plus `all`. Turns flags into the
//! preset's configuration with overrides, runs the step, writes its reports. The only module
//! that knows clap's argument structs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::classify;
use crate::config::{Preset, PresetName, preset};
use crate::dataset::{self, DataOut};
use crate::deploy;
use crate::ensembl;
use crate::error::{StepError, model};
use crate::evaluate;
use crate::metrics::Metrics;
use crate::model::{DeviceChoice, select_device};
use crate::report;
use crate::serve::{self, ModelSource};
use crate::store::S3Uri;
use crate::train::{Caps, History};
use crate::{fc, gc};

#[derive(Parser, Debug)]
#[command(
    name = "kgf-step",
    version,
    about = "The gene-fusion pipeline's steps: dataset, train/test of the gene classifier (GC) and the fusion classifier (FC)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Simulate transcripts, fusions and reads; tokenize; split once; write the split and label artifacts.
    Dataset {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataFlags,
        #[command(flatten)]
        out: DataOutFlags,
    },
    /// Fetch the panel genes' transcripts (cDNA) from Ensembl's REST API into a FASTA for `dataset --transcripts`.
    Transcripts {
        /// The FASTA to write (`>GENE|TRANSCRIPT_ID NAME BIOTYPE` records).
        #[arg(long)]
        out: PathBuf,
        /// Ensembl REST server; https://grch37.rest.ensembl.org for GRCh37/hg19 as the original work used.
        #[arg(long, default_value = ensembl::DEFAULT_URL)]
        ensembl_url: String,
        #[arg(long, default_value = "homo_sapiens")]
        species: String,
        /// Gene symbols, comma-separated (default: the 17-gene panel, in label order).
        #[arg(long, value_delimiter = ',')]
        genes: Option<Vec<String>>,
        /// Keep transcripts of this biotype only; `any` keeps every transcript.
        #[arg(long, default_value = "protein_coding")]
        biotype: String,
        /// Seconds to wait for one answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Train the gene classifier on the train split, early-stopping on the val split.
    TrainGc {
        #[command(flatten)]
        common: Common,
        /// The train split artifact (a directory written by `dataset`).
        #[arg(long)]
        train: PathBuf,
        /// The validation split artifact (early stopping).
        #[arg(long)]
        val: PathBuf,
        /// The label-map artifact.
        #[arg(long)]
        labels: PathBuf,
        /// Directory for the trained model.
        #[arg(long)]
        model_out: PathBuf,
        /// Directory for the loss history (a KFP system.Metrics artifact).
        #[arg(long)]
        metrics_out: Option<PathBuf>,
        #[command(flatten)]
        arch: GcFlags,
        #[command(flatten)]
        train_flags: TrainFlags,
    },
    /// Test the gene classifier per sentence on the test split.
    TestGc {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        test: TestFlags,
    },
    /// Train the fusion classifier over the frozen gene classifier.
    TrainFc {
        #[command(flatten)]
        common: Common,
        /// The train split artifact (a directory written by `dataset`).
        #[arg(long)]
        train: PathBuf,
        /// The validation split artifact (early stopping).
        #[arg(long)]
        val: PathBuf,
        /// The label-map artifact.
        #[arg(long)]
        labels: PathBuf,
        /// Directory of the trained gene classifier.
        #[arg(long)]
        gc_model: PathBuf,
        /// Directory for the trained model.
        #[arg(long)]
        model_out: PathBuf,
        /// Directory for the loss history (a KFP system.Metrics artifact).
        #[arg(long)]
        metrics_out: Option<PathBuf>,
        #[command(flatten)]
        arch: FcFlags,
        #[command(flatten)]
        train_flags: TrainFlags,
    },
    /// Test the fusion classifier per read on the test split.
    TestFc {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        test: TestFlags,
        /// Directory of the trained gene classifier.
        #[arg(long)]
        gc_model: PathBuf,
        /// File for the event-level F1 at the headline support alone (a KFP output parameter:
        /// the deploy condition).
        #[arg(long)]
        event_f1_out: Option<PathBuf>,
    },
    /// Score another caller's per-read calls on a test split with test-fc's (or test-gc's) own
    /// scoring: how the aligners are compared with the model (pipeline/bench/baselines.sh).
    Score {
        /// The test split artifact the calls are about.
        #[arg(long)]
        test: PathBuf,
        /// The label-map artifact.
        #[arg(long)]
        labels: PathBuf,
        /// `fc`: a calls file of the FC test reads (`read chimeric score gene_a gene_b`,
        /// tab-separated, with that header); `gc`: one of the GC test reads (`read gene`).
        #[arg(long, value_enum)]
        task: TaskArg,
        /// The calls file.
        #[arg(long)]
        calls: PathBuf,
        /// Directory for metrics.json.
        #[arg(long)]
        metrics_out: PathBuf,
    },
    /// Serve the fusion model over KServe's v2 Open Inference Protocol (HTTP) with Prometheus
    /// metrics on /metrics.
    Serve {
        #[command(flatten)]
        serve: ServeFlags,
    },
    /// Copy the model into the object store and create or update the InferenceService
    /// `gene-fusion` and its PodMonitor (the pipeline's last step).
    Deploy {
        #[command(flatten)]
        deploy: DeployFlags,
    },
    /// Run the five steps in order on this machine and write OUT/metrics.json.
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        data: DataFlags,
        #[command(flatten)]
        gc_arch: GcFlags,
        #[command(flatten)]
        fc_arch: FcFlags,
        #[command(flatten)]
        train_flags: TrainFlags,
        /// Directory for every step's outputs and metrics.json.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PresetArg {
    Tiny,
    Default,
}

impl From<PresetArg> for PresetName {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Tiny => PresetName::Tiny,
            PresetArg::Default => PresetName::Default,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TaskArg {
    Gc,
    Fc,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
        }
    }
}

#[derive(Args, Debug)]
pub struct Common {
    /// Defaults for every setting: `default` is the original's configuration, `tiny` runs in seconds.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: PresetArg,
    /// Everything (data, splits, initialisation, shuffling, dropout) follows from this seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `auto`: CUDA when built with the `cuda` feature and a GPU is present, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// KFP executor input (the `{{$}}` placeholder): write metrics metadata for the KFP UI.
    #[arg(long)]
    pub executor_input: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeFlags {
    /// A model directory (what `all --out DIR` writes, or the deploy step's copy) or the
    /// s3://BUCKET/PREFIX of one (credentials and endpoint from the AWS_* environment).
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// `auto`: CUDA when built with the `cuda` feature and a GPU is present, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Most reads per forward pass, across concurrent requests.
    #[arg(long, default_value_t = 256)]
    pub max_batch: usize,
    /// Milliseconds the model worker waits for more requests to fill a batch.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Most reads in one request.
    #[arg(long, default_value_t = 1024)]
    pub max_reads: usize,
    /// Most bytes in one request body.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body: usize,
    /// Where an s3:// model is downloaded to (default: a directory under the system's temp dir).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DeployFlags {
    /// Directory of the trained gene classifier.
    #[arg(long)]
    pub gc_model: PathBuf,
    /// Directory of the trained fusion classifier.
    #[arg(long)]
    pub fc_model: PathBuf,
    /// The label-map artifact.
    #[arg(long)]
    pub labels: PathBuf,
    /// The test split artifact (the probe reads for `kgf-up verify` come from it).
    #[arg(long)]
    pub test: PathBuf,
    /// Where models go; this run's copy is STORE/RUN.
    #[arg(long, default_value = "s3://models/gene-fusion")]
    pub store: String,
    /// The pipeline run (names the copy and the model's version).
    #[arg(long)]
    pub run: String,
    /// A read is called chimeric when P(chimeric) exceeds this.
    #[arg(long, default_value_t = classify::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Namespace of the InferenceService (default: this pod's).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Image of the predictor (default: this pod's own, the kgf-step image).
    #[arg(long)]
    pub image: Option<String>,
    /// nvidia.com/gpu the predictor asks for.
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
    /// The object store's endpoint, as the predictor reaches it.
    #[arg(long, default_value = "http://minio.minio.svc:9000")]
    pub s3_endpoint: String,
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,
    /// Secret with the store's credentials (keys accesskey, secretkey).
    #[arg(long, default_value = "mlpipeline-minio-artifact")]
    pub s3_secret: String,
    /// ServiceAccount of the predictor pods.
    #[arg(long, default_value = "gene-fusion")]
    pub service_account: String,
    /// API server URL (default: the in-cluster one).
    #[arg(long)]
    pub api_server: Option<String>,
    /// Bearer token file (default: the pod's ServiceAccount token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// CA bundle of the API server (default: the pod's ServiceAccount ca.crt).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DataFlags {
    /// Use the transcripts of this FASTA (`>GENE|TRANSCRIPT`) instead of synthetic ones: a path,
    /// or s3://BUCKET/KEY (credentials and endpoint from the AWS_* environment, as for
    /// `serve --model s3://…`).
    #[arg(long, value_name = "PATH|s3://BUCKET/KEY")]
    pub transcripts: Option<String>,
    /// Number of panel genes (synthetic reference).
    #[arg(long)]
    pub genes: Option<usize>,
    #[arg(long)]
    pub fusions_per_gene: Option<usize>,
    #[arg(long)]
    pub read_length: Option<usize>,
    #[arg(long)]
    pub coverage: Option<f64>,
    /// Per-base substitution probability of the FC reads.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Per-base probability of a 1-3 base insertion or deletion in the FC reads.
    #[arg(long)]
    pub indel_rate: Option<f64>,
    /// Bases a read needs on each fusion partner to be labelled chimeric (shorter overlaps are dropped).
    #[arg(long)]
    pub min_anchor: Option<usize>,
    /// Split FC fusions by gene pair: no partner pair in two splits (default: by fusion event).
    #[arg(long)]
    pub hold_out_pairs: bool,
    /// Length of the synthetic genes relative to the real transcripts' (1.0 = real size).
    #[arg(long)]
    pub length_scale: Option<f64>,
    /// Offset between consecutive GC training fragments of a transcript (the whole panel is
    /// in training; at most read length - sentence length + 1).
    #[arg(long)]
    pub gc_stride: Option<usize>,
    /// GC validation reads per gene (drawn from the panel with sequencer errors).
    #[arg(long)]
    pub gc_val_reads: Option<usize>,
    /// GC test reads per gene (drawn from the panel with sequencer errors, from their own stream).
    #[arg(long)]
    pub gc_test_reads: Option<usize>,
    #[arg(long)]
    pub k: Option<usize>,
    /// k-mers per sentence.
    #[arg(long)]
    pub words: Option<usize>,
    /// Also write each split as CSV.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Args, Debug)]
pub struct DataOutFlags {
    /// Write train/, val/, test/ and labels/ under this directory.
    #[arg(
        long,
        required_unless_present_all = ["train_out", "val_out", "test_out", "labels_out"],
        conflicts_with_all = ["train_out", "val_out", "test_out", "labels_out"]
    )]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub train_out: Option<PathBuf>,
    #[arg(long)]
    pub val_out: Option<PathBuf>,
    #[arg(long)]
    pub test_out: Option<PathBuf>,
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GcFlags {
    #[arg(long)]
    pub gc_hidden: Option<usize>,
    #[arg(long)]
    pub gc_layers: Option<usize>,
    #[arg(long)]
    pub gc_heads: Option<usize>,
    #[arg(long)]
    pub gc_intermediate: Option<usize>,
    /// Local attention: the positions on each side a position sees, in every layer.
    #[arg(long)]
    pub gc_window: Option<usize>,
    #[arg(long)]
    pub gc_dropout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct FcFlags {
    /// Hidden widths of the MLP, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub fc_hidden: Option<Vec<usize>>,
    #[arg(long)]
    pub fc_dropout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct TrainFlags {
    /// AdamW learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Maximum global gradient norm.
    #[arg(long)]
    pub clip: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Early stopping: epochs without a better validation loss.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Stop after this many optimiser steps in all (benchmarks, smoke runs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Use only the first N examples of the train and the validation split (GC: fragments,
    /// FC: reads).
    #[arg(long)]
    pub limit: Option<usize>,
}

impl TrainFlags {
    fn caps(&self) -> Caps {
        Caps {
            max_steps: self.max_steps,
            limit: self.limit,
        }
    }
}

#[derive(Args, Debug)]
pub struct TestFlags {
    /// The test split artifact (a directory written by `dataset`).
    #[arg(long)]
    pub test: PathBuf,
    /// The label-map artifact.
    #[arg(long)]
    pub labels: PathBuf,
    /// Directory of the model under test.
    #[arg(long)]
    pub model: PathBuf,
    /// Directory for metrics.json (a KFP system.Metrics artifact).
    #[arg(long)]
    pub metrics_out: PathBuf,
    /// Directory for the confusion matrix / ROC curve (a KFP system.ClassificationMetrics artifact).
    #[arg(long)]
    pub classification_out: Option<PathBuf>,
    /// Reads per forward pass of the GC; the preset's batch size by default.
    #[arg(long)]
    pub batch_size: Option<usize>,
}

macro_rules! set {
    ($dst:expr, $src:expr) => {
        if let Some(v) = $src.clone() {
            $dst = v;
        }
    };
}

fn apply_data(p: &mut Preset, f: &DataFlags) {
    let d = &mut p.data;
    if f.transcripts.is_some() {
        d.transcripts = f.transcripts.clone();
    }
    set!(d.synth.genes, f.genes);
    set!(d.fusions_per_gene, f.fusions_per_gene);
    set!(d.reads.read_length, f.read_length);
    set!(d.reads.coverage, f.coverage);
    set!(d.reads.error_rate, f.error_rate);
    set!(d.reads.indel_rate, f.indel_rate);
    set!(d.reads.min_anchor, f.min_anchor);
    d.hold_out_pairs |= f.hold_out_pairs;
    set!(d.synth.length_scale, f.length_scale);
    set!(d.gc.stride, f.gc_stride);
    set!(d.gc.val_reads, f.gc_val_reads);
    set!(d.gc.test_reads, f.gc_test_reads);
    set!(d.k, f.k);
    set!(d.words, f.words);
    d.csv |= f.csv;
}

fn apply_gc(p: &mut Preset, f: &GcFlags) {
    set!(p.gc.hidden, f.gc_hidden);
    set!(p.gc.layers, f.gc_layers);
    set!(p.gc.heads, f.gc_heads);
    set!(p.gc.intermediate, f.gc_intermediate);
    set!(p.gc.window, f.gc_window);
    set!(p.gc.dropout, f.gc_dropout);
}

fn apply_fc(p: &mut Preset, f: &FcFlags) {
    set!(p.fc.hidden, f.fc_hidden);
    set!(p.fc.dropout, f.fc_dropout);
}

fn apply_train(p: &mut Preset, f: &TrainFlags) {
    for t in [&mut p.gc_train, &mut p.fc_train] {
        set!(t.lr, f.lr);
        set!(t.weight_decay, f.weight_decay);
        set!(t.clip, f.clip);
        set!(t.batch_size, f.batch_size);
        set!(t.max_epochs, f.epochs);
        set!(t.patience, f.patience);
    }
}

/// The KFP scalars of a training step: final and best losses, and every epoch's losses.
fn history_scalars(h: &History) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("epochs".into(), json!(h.epochs.len()));
    m.insert("best_epoch".into(), json!(h.best_epoch));
    m.insert("best_val_loss".into(), json!(h.best_val_loss));
    for e in &h.epochs {
        m.insert(
            format!("epoch_{:03}_train_loss", e.epoch),
            json!(e.train_loss),
        );
        m.insert(format!("epoch_{:03}_val_loss", e.epoch), json!(e.val_loss));
    }
    serde_json::Value::Object(m)
}

fn report_training(
    common: &Common,
    h: &History,
    metrics_out: Option<&Path>,
) -> Result<(), StepError> {
    if let Some(dir) = metrics_out {
        report::write_json(dir, "history.json", h)?;
    }
    if let Some(input) = &common.executor_input {
        report::write_executor_output(input, &[("metrics", history_scalars(h))])?;
    }
    Ok(())
}

/// Writes a test step's reports: `metrics.json` (`report`), the classification artifact of
/// `m`, the KFP metrics (`scalars`), and the `KGF_METRICS` line.
fn report_test(
    common: &Common,
    report: &impl serde::Serialize,
    m: &Metrics,
    scalars: &BTreeMap<String, f64>,
    t: &TestFlags,
) -> Result<(), StepError> {
    report::write_json(&t.metrics_out, "metrics.json", report)?;
    if let Some(dir) = &t.classification_out {
        report::write_json(
            dir,
            "classification.json",
            &report::classification_metadata(m),
        )?;
    }
    if let Some(input) = &common.executor_input {
        report::write_executor_output(
            input,
            &[
                ("metrics", json!(scalars)),
                ("classification", report::classification_metadata(m)),
            ],
        )?;
    }
    // One line on stdout that kgf-up reads back from the step's pod log after a run
    // (`kgf-up pipeline run` prints the test steps' metrics from it).
    println!("KGF_METRICS {}", json!(scalars));
    Ok(())
}

/// test-gc's scalars: the per-read metrics, and the per-position ones prefixed `position_`.
fn gc_scalars(r: &gc::GcReport) -> BTreeMap<String, f64> {
    let mut s = report::scalars(&r.reads);
    for (k, v) in report::scalars(&r.positions) {
        s.insert(format!("position_{k}"), v);
    }
    s
}

/// test-fc's scalars: the binary read metrics and the fusion caller's figures.
fn fc_scalars(r: &fc::FcReport) -> BTreeMap<String, f64> {
    let mut s = report::scalars(&r.reads);
    s.extend(r.fusion.scalars());
    s
}

/// Writes a KFP output parameter file: the value as text, parent directories created.
fn write_parameter(path: &Path, value: f64) -> Result<(), StepError> {
    let io = |source| StepError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, value.to_string()).map_err(io)
}

/// Per-read gene metrics of a caller that names a gene per read (or none: counted wrong, as an
/// extra class `none` in the confusion matrix).
fn gc_call_metrics(ex: &dataset::Examples, genes: &[Option<u16>], names: &[String]) -> Metrics {
    let none = names.len() as u32;
    let mut classes = names.to_vec();
    classes.push("none".into());
    let pred: Vec<u32> = genes.iter().map(|g| g.map_or(none, u32::from)).collect();
    let scores: Vec<f32> = pred
        .iter()
        .flat_map(|&p| (0..classes.len() as u32).map(move |c| f32::from(u8::from(c == p))))
        .collect();
    crate::metrics::compute(&ex.labels, &pred, &scores, &classes, &ex.groups)
}

/// The headline metrics with their 95 % intervals, and what the intervals resampled.
fn summary_line(m: &Metrics) -> String {
    let shown: Vec<String> = [
        "accuracy",
        "balanced_accuracy",
        "f1_weighted",
        "f1_macro",
        "roc_auc",
    ]
    .iter()
    .map(|n| m.show(n))
    .collect();
    format!(
        "{} (95% intervals over {} independent groups of {} samples)",
        shown.join(", "),
        m.intervals.groups,
        m.samples
    )
}

fn device(common: &Common) -> Result<candle_core::Device, StepError> {
    let (dev, which) = select_device(common.device.into(), common.seed)
        .map_err(model("opening the compute device"))?;
    eprintln!("kgf-step: computing on {which}");
    Ok(dev)
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), StepError> {
    match cli.command {
        Command::Dataset { common, data, out } => {
            let mut p = preset(common.preset.into());
            apply_data(&mut p, &data);
            let outs = match &out.out {
                Some(dir) => DataOut::under(dir),
                None => DataOut {
                    train: out.train_out.clone().unwrap_or_default(),
                    val: out.val_out.clone().unwrap_or_default(),
                    test: out.test_out.clone().unwrap_or_default(),
                    labels: out.labels_out.clone().unwrap_or_default(),
                },
            };
            let started = std::time::Instant::now();
            let labels = dataset::run(&p.data, common.seed, &outs)?;
            let secs = started.elapsed().as_secs_f64();
            let reads: u64 = labels.counts.iter().map(|c| c.fc_reads).sum();
            let chimeric: u64 = labels.counts.iter().map(|c| c.fc_chimeric).sum();
            let fragments: u64 = labels.counts.iter().map(|c| c.gc_fragments).sum();
            eprintln!(
                "dataset: {fragments} GC fragments (both strands; {} duplicates dropped), {reads} FC reads ({:.1}% chimeric; {} ambiguous reads dropped) in {secs:.2}s ({:.0} reads/s)",
                labels.gc_duplicates,
                100.0 * chimeric as f64 / reads.max(1) as f64,
                labels.fc_ambiguous,
                reads as f64 / secs.max(1e-9)
            );
            for c in &labels.counts {
                eprintln!(
                    "dataset: {:<5} {} GC fragments, {} fusions, {} FC reads ({} chimeric)",
                    c.split, c.gc_fragments, c.fc_fusions, c.fc_reads, c.fc_chimeric
                );
            }
            if let Some(input) = &common.executor_input {
                let counts =
                    json!({"gc_fragments": fragments, "fc_reads": reads, "fc_chimeric": chimeric});
                report::write_executor_output(input, &[("labels", counts)])?;
            }
            Ok(())
        }
        Command::Transcripts {
            out,
            ensembl_url,
            species,
            genes,
            biotype,
            timeout,
        } => {
            let cfg = ensembl::FetchConfig {
                base_url: ensembl_url,
                species,
                genes: genes.unwrap_or_else(|| {
                    crate::transcripts::PANEL
                        .iter()
                        .map(|g| g.to_string())
                        .collect()
                }),
                biotype: (biotype != "any").then_some(biotype),
                timeout: std::time::Duration::from_secs(timeout),
                attempts: 5,
            };
            let fetched = ensembl::fetch_to(&cfg, &out)?;
            let bases: usize = fetched.iter().map(|t| t.seq.len()).sum();
            eprintln!(
                "transcripts: {} transcripts of {} genes ({bases} bases) written to {}",
                fetched.len(),
                cfg.genes.len(),
                out.display()
            );
            Ok(())
        }
        Command::TrainGc {
            common,
            train,
            val,
            labels,
            model_out,
            metrics_out,
            arch,
            train_flags,
        } => {
            let mut p = preset(common.preset.into());
            apply_gc(&mut p, &arch);
            apply_train(&mut p, &train_flags);
            let dev = device(&common)?;
            let h = gc::train(&gc::TrainGc {
                train: &train,
                val: &val,
                labels: &labels,
                model_out: &model_out,
                arch: &p.gc,
                params: &p.gc_train,
                caps: train_flags.caps(),
                seed: common.seed,
                dev: &dev,
            })?;
            report_training(&common, &h, metrics_out.as_deref())
        }
        Command::TestGc { common, test } => {
            let dev = device(&common)?;
            let batch = test
                .batch_size
                .unwrap_or(preset(common.preset.into()).gc_train.batch_size);
            let r = gc::test(&test.test, &test.labels, &test.model, batch, &dev)?;
            report_test(&common, &r, &r.reads, &gc_scalars(&r), &test)?;
            eprintln!("test-gc: per read: {}", summary_line(&r.reads));
            eprintln!("test-gc: per position: {}", summary_line(&r.positions));
            Ok(())
        }
        Command::TrainFc {
            common,
            train,
            val,
            labels,
            gc_model,
            model_out,
            metrics_out,
            arch,
            train_flags,
        } => {
            let mut p = preset(common.preset.into());
            apply_fc(&mut p, &arch);
            apply_train(&mut p, &train_flags);
            let dev = device(&common)?;
            let h = fc::train(&fc::TrainFc {
                train: &train,
                val: &val,
                labels: &labels,
                gc_model: &gc_model,
                model_out: &model_out,
                arch: &p.fc,
                params: &p.fc_train,
                caps: train_flags.caps(),
                seed: common.seed,
                dev: &dev,
            })?;
            report_training(&common, &h, metrics_out.as_deref())
        }
        Command::TestFc {
            common,
            test,
            gc_model,
            event_f1_out,
        } => {
            let dev = device(&common)?;
            let batch = test
                .batch_size
                .unwrap_or(preset(common.preset.into()).gc_train.batch_size);
            let r = fc::test(
                &test.test,
                &test.labels,
                &gc_model,
                &test.model,
                batch,
                classify::DEFAULT_THRESHOLD,
                &dev,
            )?;
            if let Some(path) = &event_f1_out {
                write_parameter(path, r.fusion.headline().map_or(0.0, |e| e.f1))?;
            }
            report_test(&common, &r, &r.reads, &fc_scalars(&r), &test)?;
            let labels = dataset::read_labels(&test.labels)?;
            let calls = test.metrics_out.join("calls.tsv");
            std::fs::write(&calls, evaluate::format_calls(&r.calls, &labels.genes)).map_err(
                |source| StepError::Io {
                    path: calls,
                    source,
                },
            )?;
            eprintln!("test-fc: {}", r.fusion.summary());
            Ok(())
        }
        Command::Score {
            test,
            labels,
            task,
            calls,
            metrics_out,
        } => {
            let l = dataset::read_labels(&labels)?;
            let text = std::fs::read_to_string(&calls).map_err(|source| StepError::Io {
                path: calls.clone(),
                source,
            })?;
            let bad = |e: String| StepError::Mismatch(format!("{}: {e}", calls.display()));
            match task {
                TaskArg::Fc => {
                    let ex = dataset::load_fc(&test, &l)?;
                    let parsed = evaluate::parse_calls(&text, &l.genes, ex.len()).map_err(bad)?;
                    let scores = evaluate::score(&fc::truth(&ex), &parsed);
                    report::write_json(&metrics_out, "metrics.json", &scores)?;
                    println!("KGF_METRICS {}", json!(scores.scalars()));
                    eprintln!("score: {}", scores.summary());
                }
                TaskArg::Gc => {
                    let ex = dataset::load_gc(&test, &l)?;
                    let genes = evaluate::parse_genes(&text, &l.genes, ex.len()).map_err(bad)?;
                    let m = gc_call_metrics(&ex, &genes, &l.genes);
                    report::write_json(&metrics_out, "metrics.json", &m)?;
                    println!("KGF_METRICS {}", json!(report::scalars(&m)));
                    eprintln!("score: {}", summary_line(&m));
                }
            }
            Ok(())
        }
        Command::Serve { serve: f } => {
            let model = if f.model.starts_with("s3://") {
                ModelSource::S3(S3Uri::parse(&f.model)?)
            } else {
                ModelSource::Dir(PathBuf::from(&f.model))
            };
            serve::run(serve::Options {
                model,
                addr: std::net::SocketAddr::new(f.bind, f.port),
                device: f.device.into(),
                max_batch: f.max_batch,
                max_wait: std::time::Duration::from_millis(f.max_wait_ms),
                max_reads: f.max_reads,
                max_body: f.max_body,
                cache: f
                    .cache
                    .unwrap_or_else(|| std::env::temp_dir().join("kgf-step-model")),
            })
        }
        Command::Deploy { deploy: f } => deploy::run(&deploy::Options {
            gc_model: f.gc_model,
            fc_model: f.fc_model,
            labels: f.labels,
            test: f.test,
            store: S3Uri::parse(&f.store)?,
            run: f.run,
            threshold: f.threshold,
            namespace: f.namespace,
            image: f.image,
            gpus: f.gpus,
            s3_endpoint: f.s3_endpoint,
            s3_region: f.s3_region,
            s3_secret: f.s3_secret,
            service_account: f.service_account,
            access: crate::kube::Access {
                server: f.api_server,
                token_file: f.token_file,
                ca_file: f.ca_file,
            },
        }),
        Command::All {
            common,
            data,
            gc_arch,
            fc_arch,
            train_flags,
            out,
        } => {
            let mut p = preset(common.preset.into());
            apply_data(&mut p, &data);
            apply_gc(&mut p, &gc_arch);
            apply_fc(&mut p, &fc_arch);
            apply_train(&mut p, &train_flags);
            all(&p, &common, train_flags.caps(), &out)
        }
    }
}

/// The five steps in order under `out`, then `out/metrics.json`.
fn all(p: &Preset, common: &Common, caps: Caps, out: &Path) -> Result<(), StepError> {
    let data = DataOut::under(&out.join("data"));
    let labels = dataset::run(&p.data, common.seed, &data)?;
    eprintln!("dataset: written to {}", out.join("data").display());
    let dev = device(common)?;
    let (gc_model, fc_model) = (out.join("gc-model"), out.join("fc-model"));
    let gc_history = gc::train(&gc::TrainGc {
        train: &data.train,
        val: &data.val,
        labels: &data.labels,
        model_out: &gc_model,
        arch: &p.gc,
        params: &p.gc_train,
        caps,
        seed: common.seed,
        dev: &dev,
    })?;
    let gc_metrics = gc::test(
        &data.test,
        &data.labels,
        &gc_model,
        p.gc_train.batch_size,
        &dev,
    )?;
    report::write_json(&out.join("gc-test"), "metrics.json", &gc_metrics)?;
    eprintln!(
        "test-gc: per read: {} (chance accuracy {:.4})",
        summary_line(&gc_metrics.reads),
        1.0 / labels.genes.len() as f64
    );
    eprintln!(
        "test-gc: per position: {}",
        summary_line(&gc_metrics.positions)
    );
    let fc_history = fc::train(&fc::TrainFc {
        train: &data.train,
        val: &data.val,
        labels: &data.labels,
        gc_model: &gc_model,
        model_out: &fc_model,
        arch: &p.fc,
        params: &p.fc_train,
        caps,
        seed: common.seed,
        dev: &dev,
    })?;
    let fc_metrics = fc::test(
        &data.test,
        &data.labels,
        &gc_model,
        &fc_model,
        p.gc_train.batch_size,
        classify::DEFAULT_THRESHOLD,
        &dev,
    )?;
    report::write_json(&out.join("fc-test"), "metrics.json", &fc_metrics)?;
    std::fs::write(
        out.join("fc-test/calls.tsv"),
        evaluate::format_calls(&fc_metrics.calls, &labels.genes),
    )
    .map_err(|source| StepError::Io {
        path: out.join("fc-test/calls.tsv"),
        source,
    })?;
    eprintln!("test-fc: {}", fc_metrics.fusion.summary());
    let majority = |m: &Metrics| {
        m.per_class.iter().map(|c| c.support).max().unwrap_or(0) as f64 / m.samples.max(1) as f64
    };
    let summary = json!({
        "preset": PresetName::from(common.preset),
        "seed": common.seed,
        "gc": {
            "test": gc_metrics,
            "chance_accuracy": 1.0 / labels.genes.len() as f64,
            "majority_accuracy": majority(&gc_metrics.reads),
            "history": gc_history,
        },
        "fc": {
            "test": fc_metrics,
            "chance_balanced_accuracy": 0.5,
            "majority_accuracy": majority(&fc_metrics.reads),
            "history": fc_history,
        },
        "config": p,
    });
    report::write_json(out, "metrics.json", &summary)?;
    classify::write_manifest(out, &classify::Manifest::default())?;
    eprintln!("all: metrics in {}", out.join("metrics.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_preset_for_both_models() {
        let cli = Cli::try_parse_from([
            "kgf-step",
            "all",
            "--preset",
            "tiny",
            "--out",
            "/x",
            "--lr",
            "0.1",
            "--epochs",
            "3",
            "--k",
            "4",
            "--fc-hidden",
            "8,4",
        ])
        .unwrap();
        let Command::All {
            common,
            data,
            gc_arch,
            fc_arch,
            train_flags,
            ..
        } = cli.command
        else {
            panic!("parsed another command");
        };
        let mut p = preset(common.preset.into());
        apply_data(&mut p, &data);
        apply_gc(&mut p, &gc_arch);
        apply_fc(&mut p, &fc_arch);
        apply_train(&mut p, &train_flags);
        assert_eq!((p.gc_train.lr, p.fc_train.lr), (0.1, 0.1));
        assert_eq!((p.gc_train.max_epochs, p.fc_train.max_epochs), (3, 3));
        assert_eq!(p.data.k, 4);
        assert_eq!(p.fc.hidden, vec![8, 4]);
        assert_eq!(
            p.gc,
            preset(PresetName::Tiny).gc,
            "unset flags keep the preset"
        );
        assert_eq!(common.seed, 42);
    }

    #[test]
    fn dataset_needs_out_or_all_four_outputs() {
        assert!(Cli::try_parse_from(["kgf-step", "dataset"]).is_err());
        assert!(Cli::try_parse_from(["kgf-step", "dataset", "--train-out", "a"]).is_err());
        assert!(
            Cli::try_parse_from(["kgf-step", "dataset", "--out", "d", "--train-out", "a"]).is_err()
        );
        let four = [
            "--train-out",
            "a",
            "--val-out",
            "b",
            "--test-out",
            "c",
            "--labels-out",
            "d",
        ];
        assert!(Cli::try_parse_from(["kgf-step", "dataset"].into_iter().chain(four)).is_ok());
    }
}
