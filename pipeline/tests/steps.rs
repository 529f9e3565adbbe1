//! End to end on the tiny preset: the five steps run as separate processes of the real binary,
//! passing artifacts through directories as the pipeline does, and `all` reproduces them.

mod common;

use std::path::Path;

use serde_json::Value;

/// Runs a step on the tiny preset with the CI's seed; returns its stdout.
fn step(args: &[&str]) -> String {
    common::tiny_step(7, args)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn five_steps_on_tiny_preset_learn_and_report_kfp_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let (train, val, test, labels) = (
        data.join("train"),
        data.join("val"),
        data.join("test"),
        data.join("labels"),
    );
    step(&["dataset", "--out", s(&data), "--csv"]);
    for f in [
        "train/gc.npy",
        "train/fc.npy",
        "val/fc.npy",
        "test/gc.csv",
        "labels/labels.json",
        "labels/vocab.txt",
    ] {
        assert!(data.join(f).is_file(), "{f} missing");
    }

    let gc = d.join("gc-model");
    step(&[
        "train-gc",
        "--train",
        s(&train),
        "--val",
        s(&val),
        "--labels",
        s(&labels),
        "--model-out",
        s(&gc),
        "--metrics-out",
        s(&d.join("gc-train")),
    ]);
    let history = json(&d.join("gc-train/history.json"));
    let epochs = history["epochs"].as_array().unwrap();
    assert!(!epochs.is_empty());
    let first = epochs[0]["train_loss"].as_f64().unwrap();
    let last = epochs.last().unwrap()["train_loss"].as_f64().unwrap();
    assert!(
        last < first,
        "GC training loss did not fall: {first} → {last}"
    );

    // test-gc as KFP runs it: with the executor input, so that metrics reach the UI.
    let exec_out = d.join("kfp/executor_output.json");
    let executor_input = serde_json::json!({
        "inputs": {},
        "outputs": {
            "outputFile": exec_out,
            "artifacts": {
                "metrics": {"artifacts": [{"name": "metrics", "uri": "minio://mlpipeline/v2/m", "type": {"schemaTitle": "system.Metrics"}}]},
                "classification": {"artifacts": [{"name": "classification", "uri": "minio://mlpipeline/v2/c", "type": {"schemaTitle": "system.ClassificationMetrics"}}]}
            }
        }
    })
    .to_string();
    let stdout = step(&[
        "test-gc",
        "--test",
        s(&test),
        "--labels",
        s(&labels),
        "--model",
        s(&gc),
        "--metrics-out",
        s(&d.join("gc-test")),
        "--classification-out",
        s(&d.join("gc-cls")),
        "--executor-input",
        &executor_input,
    ]);
    let gc_report = json(&d.join("gc-test/metrics.json"));
    // Per read (the figure that matters), with the per-position figures beside it.
    let gc_metrics = &gc_report["reads"];
    assert!(gc_report["positions"]["accuracy"].is_number());
    // The line kgf-up reads back from the pod log after a run on a cluster.
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("KGF_METRICS "))
        .expect("test-gc prints its metrics on one KGF_METRICS line");
    let printed: Value = serde_json::from_str(line).unwrap();
    assert_eq!(printed["accuracy"], gc_metrics["accuracy"]);
    assert_eq!(
        printed["position_accuracy"],
        gc_report["positions"]["accuracy"]
    );
    // Every metric carries its interval: in metrics.json and on the line kgf-up reads.
    let intervals = &gc_metrics["intervals"]["values"];
    for name in [
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "f1_weighted",
        "roc_auc",
    ] {
        let (lo, hi) = (
            intervals[name]["low"].as_f64(),
            intervals[name]["high"].as_f64(),
        );
        let v = gc_metrics[name].as_f64();
        assert!(lo <= v && v <= hi, "{name}: {v:?} outside [{lo:?}, {hi:?}]");
        assert_eq!(printed[format!("{name}_ci_low")].as_f64(), lo, "{name}");
    }
    let genes = json(&labels.join("labels.json"))["genes"]
        .as_array()
        .unwrap()
        .len();
    let accuracy = gc_metrics["accuracy"].as_f64().unwrap();
    let chance = 1.0 / genes as f64;
    assert_eq!(genes, 4);
    // The bars are what the tiny preset supports on every seed measured, not on this one alone
    // (docs/testing.md): over seeds 1-4 and 7 the per-read accuracy (chance 0.25; the test reads
    // are drawn per gene, so the commonest gene's share is 0.25 too) is 0.895-0.965 and the balanced
    // accuracy the same; the bars leave 0.095 below the worst seed.
    let balanced = gc_metrics["balanced_accuracy"].as_f64().unwrap();
    assert!(
        accuracy > 0.8 && balanced > 0.8,
        "GC per-read accuracy {accuracy} / balanced accuracy {balanced}: not above 0.8 (chance {chance})"
    );
    let kfp = json(&exec_out);
    assert_eq!(
        kfp["artifacts"]["metrics"]["artifacts"][0]["metadata"]["accuracy"].as_f64(),
        Some(accuracy)
    );
    let cm = &kfp["artifacts"]["classification"]["artifacts"][0]["metadata"]["confusionMatrix"];
    assert_eq!(cm["rows"].as_array().unwrap().len(), genes);

    let fc = d.join("fc-model");
    step(&[
        "train-fc",
        "--train",
        s(&train),
        "--val",
        s(&val),
        "--labels",
        s(&labels),
        "--gc-model",
        s(&gc),
        "--model-out",
        s(&fc),
    ]);
    step(&[
        "test-fc",
        "--test",
        s(&test),
        "--labels",
        s(&labels),
        "--gc-model",
        s(&gc),
        "--model",
        s(&fc),
        "--metrics-out",
        s(&d.join("fc-test")),
    ]);
    let fc_report = json(&d.join("fc-test/metrics.json"));
    let fc_metrics = &fc_report["reads"];
    assert_eq!(
        fc_metrics["classes"],
        serde_json::json!(["chimeric", "not_chimeric"])
    );
    // The fusion caller's figures: per read and per event, each with its interval, and every
    // read's call for other tools' comparison.
    let fusion = &fc_report["fusion"];
    for name in ["precision", "recall", "f1", "pr_auc", "balanced_accuracy"] {
        let v = fusion["reads"][name].as_f64().unwrap();
        let i = &fusion["reads"]["intervals"]["values"][name];
        assert!(
            i["low"].as_f64().unwrap() <= v && v <= i["high"].as_f64().unwrap(),
            "read {name}"
        );
    }
    let per_support = fusion["events"]["per_support"].as_array().unwrap();
    assert_eq!(per_support.len(), 10);
    assert_eq!(per_support[1]["min_support"], 2);
    let calls = std::fs::read_to_string(d.join("fc-test/calls.tsv")).unwrap();
    assert_eq!(
        calls.lines().count() as u64,
        fusion["reads"]["reads"].as_u64().unwrap() + 1
    );
    // On held-out fusion events (5-18 of them, 2-3 chimeric reads each: too few for event
    // figures to be asserted) the tiny FC's ROC-AUC over seeds 1-4 and 7 is 0.70-0.94 and its
    // balanced accuracy 0.64-0.87 (chance 0.5 for both): the bars leave room below the worst seed.
    let fc_value = |name: &str| fc_metrics[name].as_f64().unwrap();
    let auc = fc_value("roc_auc");
    assert!(auc > 0.6, "FC ROC-AUC {auc} is not above 0.6 (chance 0.5)");
    let bal = fc_value("balanced_accuracy");
    assert!(
        bal > 0.55,
        "FC balanced accuracy {bal} is not above 0.55 (chance 0.5)"
    );
    assert!(fc_metrics["roc_curve"].as_array().unwrap().len() > 2);

    // `all` with the same seed reproduces the step-by-step results exactly.
    let all = d.join("all");
    step(&["all", "--out", s(&all)]);
    let summary = json(&all.join("metrics.json"));
    assert_eq!(summary["gc"]["test"], gc_report);
    assert_eq!(summary["fc"]["test"], fc_report);
    assert_eq!(summary["gc"]["chance_accuracy"].as_f64(), Some(chance));
}

#[test]
fn a_step_fails_with_the_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = common::kgf_step(
        &["dataset", "--preset", "tiny", "--k", "7", "--out", d],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("k = 7") && err.contains("1..=6"), "{err}");
}
