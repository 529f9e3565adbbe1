//! The committed Kubeflow Pipelines spec checked by the kfp SDK itself (pipeline/check_spec.py):
//! it loads and compiles, has the shape kgf-up relies on, names only flags this kgf-step accepts,
//! is what spec/generate.py writes, and the checker rejects every broken copy it makes.

use std::process::Command;

#[test]
fn the_kfp_sdk_accepts_the_spec_and_rejects_broken_ones() {
    let python = std::env::var("KGF_KFP_SDK_PYTHON").expect(
        "KGF_KFP_SDK_PYTHON is not set: run the tests with scripts/testbed test (or set it to a \
         python with pipeline/requirements.txt installed)",
    );
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/check_spec.py");
    for extra in [&[][..], &["--self-test"]] {
        let out = Command::new(&python)
            .arg(check)
            .args(["--kgf-step", env!("CARGO_BIN_EXE_kgf-step")])
            .args(extra)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "check_spec.py {extra:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
