//! The CUDA build of kgf-step, as `pipeline/check-cuda-build` makes it (and `pipeline/Dockerfile`
//! ships it), on a machine without an NVIDIA driver: it must start, run the dataset step, fall
//! back to the CPU under `--device auto` with one line saying why, and refuse `--device cuda`
//! with the cause and the fix instead of a panic. Skips, saying so, when no such build exists
//! or when a driver is present.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cuda_build() -> Option<(PathBuf, String)> {
    let dir = std::env::var_os("KGF_CUDA_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cuda"));
    let bin = dir.join("kgf-step");
    let cudart = std::fs::read_to_string(dir.join("cudart-dir")).ok()?;
    bin.is_file().then(|| (bin, cudart.trim().to_string()))
}

fn driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
        || Command::new("ldconfig")
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1"))
}

fn run(bin: &Path, cudart: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("LD_LIBRARY_PATH", cudart)
        .output()
        .expect("the CUDA-built kgf-step runs")
}

#[test]
fn cuda_built_binary_starts_without_a_driver_and_falls_back_to_the_cpu() {
    let Some((bin, cudart)) = cuda_build() else {
        eprintln!("skipped: no CUDA build under target/cuda (run pipeline/check-cuda-build)");
        return;
    };
    if driver_present() {
        eprintln!(
            "skipped: this machine has an NVIDIA driver; the no-driver fallback cannot be shown here"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let out = run(
        &bin,
        &cudart,
        &[
            "dataset", "--preset", "tiny", "--seed", "3", "--out", data_s,
        ],
    );
    assert!(
        out.status.success(),
        "dataset failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let split = |s: &str| format!("{data_s}/{s}");
    let model = dir.path().join("gc");
    let train = |device: &str| {
        run(
            &bin,
            &cudart,
            &[
                "train-gc",
                "--preset",
                "tiny",
                "--seed",
                "3",
                "--device",
                device,
                "--train",
                &split("train"),
                "--val",
                &split("val"),
                "--labels",
                &split("labels"),
                "--model-out",
                model.to_str().unwrap(),
                "--max-steps",
                "1",
            ],
        )
    };
    let auto = train("auto");
    let err = String::from_utf8_lossy(&auto.stderr);
    assert!(
        auto.status.success(),
        "train-gc --device auto failed: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("kgf-step: computing on"))
        .unwrap_or_else(|| panic!("no device line in: {err}"));
    assert!(
        line.contains("the CPU") && line.contains("libcuda.so.1"),
        "the fallback line names the CPU and the missing driver: {line}"
    );

    let cuda = train("cuda");
    let err = String::from_utf8_lossy(&cuda.stderr);
    assert!(
        !cuda.status.success(),
        "--device cuda without a driver must fail"
    );
    assert!(
        !err.contains("panicked"),
        "a clear error, not a panic: {err}"
    );
    assert!(
        err.contains("libcuda.so.1") && err.contains("--device"),
        "cause and fix: {err}"
    );
}
