//! The presets: every default of the dataset and model steps. `default` is the data of design §4
//! (17 genes at their real transcript lengths, 30 fusions per gene, reads of 150, min_anchor 20,
//! 6-mers, sentences of 20 words: the GC's window) with the read-level models (AdamW, clip 0.5,
//! learning rates and batches for models trained from random weights); `tiny`
//! shrinks everything so the five steps run in seconds on two CPU cores in a debug build (CI),
//! with a learning rate raised to match, yet keeps enough independent test groups (GC test
//! reads, FC fusion events) that its test figures are above chance on every seed tried.

use serde::{Deserialize, Serialize};

use crate::dataset::{DataConfig, GcData};
use crate::fc::FcArch;
use crate::gc::GcArch;
use crate::simulate::ReadConfig;
use crate::train::TrainParams;
use crate::transcripts::SynthConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresetName {
    Tiny,
    Default,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Preset {
    pub data: DataConfig,
    pub gc: GcArch,
    pub fc: FcArch,
    pub gc_train: TrainParams,
    pub fc_train: TrainParams,
}

pub fn preset(name: PresetName) -> Preset {
    match name {
        PresetName::Default => Preset {
            data: DataConfig {
                synth: SynthConfig {
                    genes: 17,
                    length_scale: 1.0,
                    isoforms_max: 3,
                    skew: 1.0,
                    divergence: 0.15,
                },
                transcripts: None,
                fusions_per_gene: 30,
                hold_out_pairs: false,
                reads: ReadConfig {
                    read_length: 150,
                    coverage: 10.0,
                    fragment_mean: 300.0,
                    fragment_sd: 30.0,
                    error_rate: 0.005,
                    indel_rate: 0.0005,
                    min_anchor: 20,
                },
                // Each base in two training fragments, at two places of a read; 200 test reads
                // per gene give every gene's recall an interval of a few points.
                gc: GcData {
                    stride: 75,
                    val_reads: 40,
                    test_reads: 200,
                },
                k: 6,
                words: 20,
                csv: false,
            },
            // Two layers with a window of 10 give every position the 21 k-mers around it in
            // the first layer and 41 by the second: enough to name a gene by its sequence.
            gc: GcArch {
                hidden: 128,
                layers: 2,
                heads: 4,
                intermediate: 512,
                window: 10,
                dropout: 0.1,
            },
            fc: FcArch {
                hidden: vec![32],
                dropout: 0.1,
            },
            // The original's lr 5e-5 and batch 512 fine-tuned a pre-trained DNABERT; this GC
            // learns the panel from random weights, within the 30-minute run (docs/pipeline.md).
            gc_train: TrainParams {
                lr: 1e-3,
                weight_decay: 0.01,
                clip: 0.5,
                batch_size: 64,
                max_epochs: 30,
                patience: 3,
            },
            fc_train: TrainParams {
                lr: 1e-3,
                weight_decay: 0.01,
                clip: 0.5,
                batch_size: 512,
                max_epochs: 30,
                patience: 5,
            },
        },
        PresetName::Tiny => Preset {
            data: DataConfig {
                synth: SynthConfig {
                    genes: 4,
                    length_scale: 0.1,
                    isoforms_max: 2,
                    skew: 1.5,
                    divergence: 0.15,
                },
                transcripts: None,
                // Many fusions at a low coverage rather than few at a high one: about as many
                // reads, but 6-20 independent test fusion events instead of 2-6, the
                // groups the FC's intervals resample.
                fusions_per_gene: 30,
                hold_out_pairs: false,
                reads: ReadConfig {
                    read_length: 20,
                    coverage: 3.5,
                    fragment_mean: 40.0,
                    fragment_sd: 5.0,
                    error_rate: 0.01,
                    indel_rate: 0.001,
                    min_anchor: 5,
                },
                gc: GcData {
                    stride: 5,
                    val_reads: 20,
                    test_reads: 50,
                },
                k: 3,
                words: 8,
                csv: false,
            },
            // Sentences of 8 3-mers: a window of 4 on each side.
            gc: GcArch {
                hidden: 32,
                layers: 1,
                heads: 2,
                intermediate: 64,
                window: 4,
                dropout: 0.1,
            },
            fc: FcArch {
                hidden: vec![32],
                dropout: 0.1,
            },
            gc_train: TrainParams {
                lr: 5e-3,
                weight_decay: 0.01,
                clip: 0.5,
                batch_size: 64,
                max_epochs: 25,
                patience: 10,
            },
            fc_train: TrainParams {
                lr: 5e-3,
                weight_decay: 0.01,
                clip: 0.5,
                batch_size: 64,
                max_epochs: 15,
                patience: 10,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_preset_is_the_original_configuration() {
        let p = preset(PresetName::Default);
        let d = &p.data;
        assert_eq!((d.synth.genes, d.fusions_per_gene), (17, 30));
        assert_eq!((d.reads.read_length, d.k, d.words), (150, 6, 20));
        assert_eq!(d.reads.coverage, 10.0);
        assert_eq!(d.reads.min_anchor, 20);
        assert_eq!(d.synth.length_scale, 1.0);
        // The optimiser and clipping are the original's; the learning rates, batches and
        // patience are this model's (it learns from random weights, the original fine-tuned).
        for t in [&p.gc_train, &p.fc_train] {
            assert_eq!((t.clip, t.weight_decay), (0.5, 0.01));
        }
        assert_eq!((p.gc.window, p.gc_train.batch_size), (10, 64));
    }

    /// The pipeline passes every parameter as a flag and a flag overrides the preset, so the
    /// spec's defaults must be the default preset's: otherwise a run on the cluster trains
    /// another model than `kgf-step all --preset default` (as it did with the original's lr 5e-5
    /// and 100 epochs). Read from the header the kfp compiler writes (check_spec.py keeps the
    /// spec what generate.py writes).
    #[test]
    fn the_pipeline_spec_defaults_are_the_default_preset() {
        let spec = include_str!("../spec/gene-fusion.yaml");
        let default = |name: &str| -> f64 {
            let prefix = format!("#    {name}: ");
            let line = spec
                .lines()
                .take_while(|l| l.starts_with('#'))
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no parameter {name} in the spec's header"));
            let value = line
                .split("[Default: ")
                .nth(1)
                .unwrap()
                .trim_end_matches(']');
            value.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
        };
        let p = preset(PresetName::Default);
        let (d, gc, fc) = (&p.data, &p.gc_train, &p.fc_train);
        assert!(spec.contains("#    preset: str [Default: 'default']"));
        assert_eq!(gc.lr, fc.lr, "one lr parameter serves both steps");
        assert_eq!(
            gc.max_epochs, fc.max_epochs,
            "one epochs parameter serves both"
        );
        assert_eq!(gc.clip, fc.clip, "one clip parameter serves both");
        for (name, want) in [
            ("lr", gc.lr),
            ("epochs", gc.max_epochs as f64),
            ("clip", gc.clip),
            ("gc_batch_size", gc.batch_size as f64),
            ("gc_patience", gc.patience as f64),
            ("fc_batch_size", fc.batch_size as f64),
            ("fc_patience", fc.patience as f64),
            ("fusions_per_gene", d.fusions_per_gene as f64),
            ("read_length", d.reads.read_length as f64),
            ("k", d.k as f64),
            ("words", d.words as f64),
            ("coverage", d.reads.coverage),
            ("error_rate", d.reads.error_rate),
        ] {
            assert_eq!(default(name), want, "the spec's {name}");
        }
    }
}
