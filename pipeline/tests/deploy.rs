//! `kgf-step deploy` against the test bed's real API server and a real MinIO: the fixture CRDs
//! carry KServe's and the Prometheus operator's schemas for the fields used; kgf-up's RBAC
//! manifest is what the step's token is allowed; the step copies the model into the store,
//! applies the InferenceService and the PodMonitor (again with no change, then with a change),
//! and what it copied is servable from `s3://`. A wrong field or type is refused by the server.
//!
//! Runs inside the bed (`scripts/testbed run -- cargo test -p kgf-step --test deploy`), which
//! sets `KUBECONFIG`, `KGF_TESTBED_BIN` and the `KGF_TESTBED_S3_*` variables of its MinIO.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use kgf_step::kube::{Access, Kube};
use serde_json::{Value, json};

const NS: &str = "kgf-deploy-test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kubectl_with(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let bin = std::env::var_os("KGF_TESTBED_BIN").expect(
        "KGF_TESTBED_BIN is not set: run inside the test bed (`scripts/testbed run -- cargo test -p kgf-step --test deploy`)",
    );
    let mut child = Command::new(PathBuf::from(bin).join("kubectl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl(args: &[&str]) -> String {
    let (ok, out, err) = kubectl_with(args, None);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

fn apply(args: &[&str], yaml: &str) {
    let mut all = vec![
        "apply",
        "--server-side",
        "--field-manager",
        "kgf-deploy-test",
        "-f",
        "-",
    ];
    all.extend_from_slice(args);
    let (ok, _, err) = kubectl_with(&all, Some(yaml));
    assert!(ok, "kubectl apply: {err}");
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

/// The API server and its CA from the bed's kubeconfig, and a token of `pipeline-runner`.
fn access(dir: &Path) -> Access {
    let server = kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca_data = kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let ca = dir.join("ca.crt");
    if ca_data.is_empty() {
        let path = kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ]);
        std::fs::copy(path.trim(), &ca).unwrap();
    } else {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca_data.trim())
            .unwrap();
        std::fs::write(&ca, pem).unwrap();
    }
    let token = kubectl(&[
        "-n",
        NS,
        "create",
        "token",
        "pipeline-runner",
        "--duration",
        "1h",
    ]);
    let token_file = dir.join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    Access {
        server: Some(server.trim().to_string()),
        token_file: Some(token_file),
        ca_file: Some(ca),
    }
}

fn deploy(a: &Access, s3: &S3, store: &str, gpus: &str, run: &str) -> std::process::Output {
    let d = model_dir();
    Command::new(BIN)
        .arg("deploy")
        .arg("--gc-model")
        .arg(d.join("gc-model"))
        .arg("--fc-model")
        .arg(d.join("fc-model"))
        .arg("--labels")
        .arg(d.join("data/labels"))
        .arg("--test")
        .arg(d.join("data/test"))
        .args([
            "--run",
            run,
            "--namespace",
            NS,
            "--image",
            "registry.test/kgf-step:1",
        ])
        .args([
            "--gpus",
            gpus,
            "--s3-endpoint",
            &s3.endpoint,
            "--store",
            store,
        ])
        .arg("--api-server")
        .arg(a.server.as_deref().unwrap())
        .arg("--token-file")
        .arg(a.token_file.as_deref().unwrap())
        .arg("--ca-file")
        .arg(a.ca_file.as_deref().unwrap())
        // The step finds the store's credentials in the Secret, as in a pod.
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap()
}

fn get(kind: &str) -> Value {
    serde_json::from_str(&kubectl(&[
        "-n",
        NS,
        "get",
        kind,
        "gene-fusion",
        "-o",
        "json",
    ]))
    .unwrap()
}

#[test]
fn deploy_copies_the_model_and_applies_schema_valid_objects_with_the_rbac_kgf_up_grants() {
    // The CRDs as the fixture charts install them; they go again at the end, even on a failure,
    // because the component tests install the same CRDs through helm and helm adopts nothing.
    struct RemoveCrds;
    impl Drop for RemoveCrds {
        fn drop(&mut self) {
            let crds = format!(
                "{}\n---\n{}",
                read("tests/fixtures/components/kserve-crd/templates/crds.yaml"),
                read("tests/fixtures/components/kube-prometheus-stack/crds/crd-podmonitors.yaml")
            );
            let _ = kubectl_with(&["delete", "--ignore-not-found", "-f", "-"], Some(&crds));
        }
    }
    let _crds = RemoveCrds;
    apply(
        &[],
        &read("tests/fixtures/components/kserve-crd/templates/crds.yaml"),
    );
    apply(
        &[],
        &read("tests/fixtures/components/kube-prometheus-stack/crds/crd-podmonitors.yaml"),
    );
    kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd/inferenceservices.serving.kserve.io",
        "crd/podmonitors.monitoring.coreos.com",
    ]);
    let (_, _, _) = kubectl_with(&["create", "namespace", NS], None);
    apply(
        &["-n", NS],
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: pipeline-runner}\n",
    );
    apply(&["-n", NS], &read("manifests/pipeline/deployer-rbac.yaml"));

    let s3 = s3("kgf-deploy");
    apply(
        &["-n", NS],
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: mlpipeline-minio-artifact}}\nstringData: {{accesskey: {}, secretkey: {}}}\n",
            s3.access_key, s3.secret_key
        ),
    );
    let store = format!("s3://{}/gene-fusion", s3.bucket);
    let dir = tempfile::tempdir().unwrap();
    let acc = access(dir.path());

    let out = deploy(&acc, &s3, &store, "1", "run 42");
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let model = format!("{store}/run-42");
    assert!(stdout.contains(&format!("KGF_MODEL {model}")), "{stdout}");

    let isvc = get("inferenceservice");
    assert_eq!(
        isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
        "Standard"
    );
    let p = &isvc["spec"]["predictor"];
    assert_eq!(p["serviceAccountName"], "gene-fusion");
    let c = &p["containers"][0];
    assert_eq!(c["image"], "registry.test/kgf-step:1");
    assert_eq!(
        c["args"],
        json!([
            "serve", "--model", model, "--port", "8080", "--device", "auto"
        ])
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v2/health/ready");
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
    let pm = get("podmonitor");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"]["serving.kserve.io/inferenceservice"],
        "gene-fusion"
    );
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");

    // The same deploy again changes nothing; another GPU count updates the object in place.
    let rv = isvc["metadata"]["resourceVersion"].clone();
    assert!(deploy(&acc, &s3, &store, "1", "run 42").status.success());
    assert_eq!(get("inferenceservice")["metadata"]["resourceVersion"], rv);
    assert!(deploy(&acc, &s3, &store, "0", "run 42").status.success());
    let updated = get("inferenceservice");
    assert_ne!(updated["metadata"]["resourceVersion"], rv);
    assert!(
        updated["spec"]["predictor"]["containers"][0]["resources"]
            .get("limits")
            .is_none()
    );

    // What the step copied is a servable model directory, threshold and version included.
    let env = s3.env();
    let cache = tempfile::tempdir().unwrap();
    let s = Server::start(&model, &["--cache", cache.path().to_str().unwrap()], &env);
    let meta = s.get("/v2/models/gene-fusion");
    assert_eq!(meta.body["versions"], json!(["run-42"]));
    // The probe kgf-up verify sends: a chimeric and a normal test read, called right.
    let rt0 = tokio::runtime::Runtime::new().unwrap();
    let probes: Value = rt0.block_on(async {
        let c = kgf_step::store::Client::new(s3.config()).unwrap();
        let key = format!("gene-fusion/run-42/{}", kgf_step::classify::PROBE_READS);
        serde_json::from_slice(&c.get(&s3.bucket, &key).await.unwrap()).unwrap()
    });
    let reads = test_reads();
    for (name, label) in [("chimeric", 0), ("normal", 1)] {
        let r = probes[name].as_str().unwrap();
        assert!(
            reads.iter().any(|t| t.0 == r && t.1 == label),
            "{name} probe is a test read of that class"
        );
    }
    let a = s.infer(&reads_request(&[
        probes["chimeric"].as_str().unwrap(),
        probes["normal"].as_str().unwrap(),
    ]));
    assert_eq!(a.status, 200, "{}", a.text);
    // Called right whenever the model calls any test read of that class right (the first 4096
    // reads are what the step scans).
    let calls = output(&a.body, "chimeric")["data"].clone();
    let scan: Vec<&str> = reads.iter().take(4096).map(|r| r.0.as_str()).collect();
    let mut all = Vec::new();
    for chunk in scan.chunks(500) {
        let b = s.infer(&reads_request(chunk));
        all.extend(
            output(&b.body, "chimeric")["data"]
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    for (i, (label, want)) in [(0u32, true), (1, false)].into_iter().enumerate() {
        let possible = reads
            .iter()
            .zip(&all)
            .any(|(r, c)| r.1 == label && c.as_bool() == Some(want));
        if possible {
            assert_eq!(calls[i], json!(want), "probe {i} is called right: {calls}");
        }
    }

    // The schemas are real enough to refuse a wrong field and a wrong type, through the same
    // client and token the step uses.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kube = rt.block_on(async { Kube::new(&acc) }).unwrap();
    let mut typo = updated.clone();
    typo["spec"]["predictor"]["minReplica"] = json!(1);
    let mut wrong_type = updated.clone();
    wrong_type["spec"]["predictor"]["minReplicas"] = json!("one");
    let mut bad_interval = pm.clone();
    bad_interval["spec"]["podMetricsEndpoints"][0]["interval"] = json!("every minute");
    for (path, obj, want) in [
        (kgf_step::deploy::isvc_path(NS), typo, "minReplica"),
        (kgf_step::deploy::isvc_path(NS), wrong_type, "minReplicas"),
        (kgf_step::deploy::monitor_path(NS), bad_interval, "interval"),
    ] {
        let mut obj = obj;
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            obj["metadata"].as_object_mut().unwrap().remove(k);
        }
        obj.as_object_mut().unwrap().remove("status");
        let err = rt
            .block_on(kube.apply(&path, &obj))
            .expect_err("the API server refuses it");
        let msg = err.to_string();
        assert!(msg.contains(want), "{want}: {msg}");
    }

    // Without kgf-up's RBAC the step is refused, and says how to fix it.
    kubectl(&["-n", NS, "delete", "rolebinding", "gene-fusion-deployer"]);
    let out = deploy(&acc, &s3, &store, "1", "run 43");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("deployer-rbac.yaml"),
        "{err}"
    );
    kubectl(&["delete", "namespace", NS, "--wait=false"]);
}
