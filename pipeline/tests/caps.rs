//! `--max-steps` and `--limit` cap a training run without edited data files (what the
//! benchmarks rely on), and the history records steps and the training time apart from
//! validation.

mod common;

use serde_json::Value;

fn kgf_step(args: &[&str]) {
    common::tiny_step(5, args);
}

#[test]
fn max_steps_and_limit_cap_train_gc_and_train_fc() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let (data, train, val, labels) = (d("data"), d("data/train"), d("data/val"), d("data/labels"));
    let (gc_dir, fc_dir) = (d("gc"), d("fc"));
    kgf_step(&["dataset", "--out", &data]);
    let common = [
        "--train",
        &train,
        "--val",
        &val,
        "--labels",
        &labels,
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--epochs",
        "50",
    ];
    let mut gc = vec!["train-gc", "--model-out", &gc_dir, "--limit", "2"];
    gc.extend(common);
    kgf_step(&gc);
    // The FC needs both labels among its first reads.
    let mut fc = vec![
        "train-fc",
        "--gc-model",
        &gc_dir,
        "--model-out",
        &fc_dir,
        "--limit",
        "200",
    ];
    fc.extend(common);
    kgf_step(&fc);
    // Both models train on whole reads: --limit 2 is two GC fragments, 200 FC reads.
    for (model, examples) in [("gc", 2u64), ("fc", 200)] {
        let h: Value =
            serde_json::from_slice(&std::fs::read(d(&format!("{model}/history.json"))).unwrap())
                .unwrap();
        let epochs = h["epochs"].as_array().unwrap();
        let steps: u64 = epochs.iter().map(|e| e["steps"].as_u64().unwrap()).sum();
        assert_eq!(steps, 3, "{model}: three optimiser steps in all");
        assert_eq!(h["reached_max_steps"], true, "{model}");
        let per_epoch: u64 = examples.div_ceil(4);
        assert_eq!(
            epochs[0]["steps"].as_u64().unwrap(),
            per_epoch.min(3),
            "{model}: --limit"
        );
        for e in epochs {
            assert!(e["train_seconds"].as_f64().unwrap() <= e["seconds"].as_f64().unwrap());
        }
    }
}
