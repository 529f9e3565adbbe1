//! The object store wiring on the test bed, against the bed's real MinIO server (scripts/testbed
//! runs it on loopback): the real `kgf-up` binary wires the Kubeflow Pipelines fixture (shaped like
//! upstream 2.17.0's objects) to the bundled store, then to an S3 endpoint, creates the buckets with
//! S3 CreateBucket, changes nothing on a second `up`, fixes every place after the setting changes,
//! proves the wiring in `verify` with a round trip, and `down` leaves none of its objects.
//!
//! One test: the steps build on each other, and the fixture's namespace is shared with
//! tests/components.rs (test binaries run one after another).

mod support;

use std::path::{Path, PathBuf};

use kgf_up::objectstore::s3::S3;
use kgf_up::objectstore::spec::Endpoint;
use kgf_up::secret::Secret;
use serde_json::Value;
use support::{Bed, bed, fixture, kgf_up, text};

const KFP_NS: &str = "kgf-c-kubeflow";
const TEAM_NS: &str = "kgf-s-team";

struct Store {
    endpoint: String,
    access_file: PathBuf,
    secret_file: PathBuf,
}

fn store() -> Store {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run inside the test bed (scripts/testbed run -- cargo test --test objectstore)")
        })
    };
    Store {
        endpoint: var("KGF_TESTBED_S3_ENDPOINT"),
        access_file: var("KGF_TESTBED_S3_ACCESS_KEY_FILE").into(),
        secret_file: var("KGF_TESTBED_S3_SECRET_KEY_FILE").into(),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .trim_end()
        .to_string()
}

/// The bed's MinIO, with the keys the profile references.
fn s3(store: &Store) -> S3 {
    S3::direct(
        &Endpoint::try_from(store.endpoint.clone()).unwrap(),
        "us-east-1",
        true,
        &Secret::new(read(&store.access_file)),
        &Secret::new(read(&store.secret_file)),
        None,
    )
    .unwrap()
}

/// A profile with the Kubeflow Pipelines fixture and `object_store` as given (YAML, indented).
fn profile(dir: &Path, object_store: &str) -> String {
    let kfp = fixture("components/kubeflow-pipelines");
    let text = format!(
        "name: kgf-store\n\
         cluster: {{provider: existing}}\n\
         settings: {{timeout: 60s, namespace: kgf-s-system}}\n\
         components:\n  kubeflow-pipelines:\n    namespace: {KFP_NS}\n    source:\n      kustomize:\n        paths:\n          - {}\n          - {}\n\
         validation: {{min_gpu_nodes: 0}}\n\
         object_store:\n{object_store}",
        kfp.join("cluster-scoped-resources").display(),
        kfp.join("env/platform-agnostic").display(),
    );
    let path = dir.join("store.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn s3_section(store: &Store, pipelines: &str) -> String {
    format!(
        "  s3:\n    endpoint: {}\n    buckets: {{pipelines: {pipelines}, datasets: {pipelines}-data, models: {pipelines}-models}}\n    credentials:\n      access_key: {{file: {}}}\n      secret_key: {{file: {}}}\n  namespaces: [{TEAM_NS}]\n",
        store.endpoint,
        store.access_file.display(),
        store.secret_file.display()
    )
}

fn up(profile: &str) -> String {
    let out = kgf_up(&["up", "--profile", profile, "--non-interactive"]);
    assert!(out.status.success(), "up: {}", text(&out));
    text(&out)
}

fn get(bed: &Bed, ns: &str, what: &str) -> Option<Value> {
    let out = bed.tool("kubectl", &["-n", ns, "get", what, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn data(bed: &Bed, ns: &str, what: &str, key: &str) -> String {
    let obj = get(bed, ns, what).unwrap_or_else(|| panic!("{what} in {ns} is missing"));
    obj["data"][key].as_str().unwrap_or_default().to_string()
}

fn secret_value(bed: &Bed, ns: &str, key: &str) -> String {
    let b64 = data(bed, ns, "secret/mlpipeline-minio-artifact", key);
    let bytes: k8s_openapi::ByteString = serde_json::from_value(Value::String(b64)).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

fn env(bed: &Bed) -> Vec<(String, Value)> {
    let d = get(bed, KFP_NS, "deployment/ml-pipeline").unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

fn env_value(bed: &Bed, name: &str) -> Option<String> {
    env(bed)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e["value"].as_str().map(str::to_string))
}

/// Every place Kubeflow Pipelines reads the store says the bed's MinIO and `bucket`.
fn assert_wired(bed: &Bed, store: &Store, bucket: &str) {
    let authority = store.endpoint.trim_start_matches("http://");
    let (host, port) = authority.split_once(':').unwrap();
    for ns in [KFP_NS, TEAM_NS] {
        assert_eq!(
            secret_value(bed, ns, "accesskey"),
            read(&store.access_file),
            "{ns}"
        );
        assert_eq!(
            secret_value(bed, ns, "secretkey"),
            read(&store.secret_file),
            "{ns}"
        );
        assert_eq!(
            data(bed, ns, "configmap/kfp-launcher", "defaultPipelineRoot"),
            format!("s3://{bucket}/v2/artifacts"),
            "{ns}"
        );
        let providers: Value =
            serde_saphyr::from_str(&data(bed, ns, "configmap/kfp-launcher", "providers")).unwrap();
        let default = &providers["s3"]["default"];
        assert_eq!(default["endpoint"], authority, "{ns}: {providers}");
        assert_eq!(default["disableSSL"], true);
        assert_eq!(default["forcePathStyle"], true);
        assert_eq!(default["region"], "us-east-1");
        assert_eq!(
            default["credentials"]["secretRef"],
            serde_json::json!({"secretName": "mlpipeline-minio-artifact", "accessKeyKey": "accesskey", "secretKeyKey": "secretkey"})
        );
    }
    let repo: Value = serde_saphyr::from_str(&data(
        bed,
        KFP_NS,
        "configmap/workflow-controller-configmap",
        "artifactRepository",
    ))
    .unwrap();
    assert_eq!(repo["s3"]["endpoint"], authority, "{repo}");
    assert_eq!(repo["s3"]["bucket"], bucket);
    assert_eq!(repo["s3"]["insecure"], true);
    assert_eq!(
        repo["archiveLogs"], true,
        "upstream's settings are kept: {repo}"
    );
    assert!(
        repo["s3"]["keyFormat"]
            .as_str()
            .unwrap()
            .starts_with("private-artifacts/"),
        "{repo}"
    );
    assert_eq!(
        repo["s3"]["accessKeySecret"]["name"],
        "mlpipeline-minio-artifact"
    );
    assert_eq!(
        data(
            bed,
            KFP_NS,
            "configmap/pipeline-install-config",
            "bucketName"
        ),
        bucket
    );
    assert_eq!(
        env_value(bed, "OBJECTSTORECONFIG_HOST").as_deref(),
        Some(host)
    );
    assert_eq!(
        env_value(bed, "OBJECTSTORECONFIG_PORT").as_deref(),
        Some(port)
    );
    assert_eq!(
        env_value(bed, "OBJECTSTORECONFIG_SECURE").as_deref(),
        Some("false")
    );
    assert_eq!(
        env_value(bed, "OBJECTSTORECONFIG_REGION").as_deref(),
        Some("us-east-1")
    );
    assert_eq!(
        env_value(bed, "OBJECTSTORECONFIG_BUCKETNAME").as_deref(),
        Some(bucket)
    );
    let keyed = env(bed)
        .into_iter()
        .find(|(n, _)| n == "OBJECTSTORECONFIG_ACCESSKEY")
        .unwrap()
        .1;
    assert_eq!(
        keyed["valueFrom"]["secretKeyRef"]["name"],
        "mlpipeline-minio-artifact"
    );
    // The bundled store is dropped; its volume claim (data) stays until `down`.
    for gone in [
        "deployment/seaweedfs",
        "service/seaweedfs",
        "serviceaccount/seaweedfs",
    ] {
        assert!(get(bed, KFP_NS, gone).is_none(), "{gone} should be gone");
    }
}

#[test]
fn the_store_is_wired_everywhere_kept_converged_rewired_on_change_and_removed_by_down() {
    let bed = bed();
    let store = store();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3(&store);
    let suffix = std::process::id();
    let first = format!("kgf-pipes-{suffix}");
    let second = format!("kgf-other-{suffix}");
    // A namespace a user made for running pipelines: kgf-up adds its objects and leaves it. It has
    // a stale kfp-launcher from an earlier setup, made by kubectl (another field manager).
    bed.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {TEAM_NS}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: kfp-launcher, namespace: {TEAM_NS}}}\n\
         data: {{defaultPipelineRoot: \"s3://stale-bucket/old\"}}\n"
    ));

    // The bundled store: upstream's objects as they are, the extra namespace gets them too.
    let bundled = profile(
        dir.path(),
        &format!("  bundled: {{}}\n  namespaces: [{TEAM_NS}]\n"),
    );
    up(&bundled);
    assert!(get(&bed, KFP_NS, "deployment/seaweedfs").is_some());
    assert_eq!(secret_value(&bed, KFP_NS, "accesskey"), "minio");
    assert_eq!(secret_value(&bed, TEAM_NS, "accesskey"), "minio");
    assert_eq!(
        data(
            &bed,
            TEAM_NS,
            "configmap/kfp-launcher",
            "defaultPipelineRoot"
        ),
        "minio://mlpipeline/v2/artifacts"
    );

    // An S3 endpoint (the bed's MinIO): buckets made by CreateBucket, every place rewired.
    for b in [&first, &format!("{first}-data"), &format!("{first}-models")] {
        assert!(
            !rt.block_on(s3.bucket_exists(b)).unwrap(),
            "{b} exists before up"
        );
    }
    let on_s3 = profile(dir.path(), &s3_section(&store, &first));
    let out = up(&on_s3);
    assert!(
        !out.contains(&read(&store.secret_file)),
        "the secret key is never printed"
    );
    for b in [&first, &format!("{first}-data"), &format!("{first}-models")] {
        assert!(
            rt.block_on(s3.bucket_exists(b)).unwrap(),
            "{b} was not created"
        );
    }
    assert_wired(&bed, &store, &first);
    assert!(
        get(&bed, KFP_NS, "persistentvolumeclaim/seaweedfs-pvc").is_some(),
        "the bundled store's data stays until down"
    );

    // A second up changes nothing.
    let mark = bed.audit_mark();
    let out = up(&on_s3);
    assert!(out.contains("no changes"), "{out}");
    let changed: Vec<_> = bed
        .mutations_since(&mark, &["kgf-up"])
        .into_iter()
        .filter(|m| !m.uri.contains("/leases/"))
        .collect();
    assert!(changed.is_empty(), "a converged up changed {changed:?}");

    // A changed setting is drift: every place follows, and the new bucket is made.
    let moved = profile(dir.path(), &s3_section(&store, &second));
    let out = kgf_up(&["status", "--profile", &moved]);
    assert!(text(&out).contains("drifted"), "{}", text(&out));
    up(&moved);
    assert!(rt.block_on(s3.bucket_exists(&second)).unwrap());
    assert_wired(&bed, &store, &second);

    // verify writes and reads back an object with the pipeline's credentials, against MinIO.
    let out = kgf_up(&["verify", "--profile", &moved, "--non-interactive"]);
    let said = text(&out);
    let line = said
        .lines()
        .find(|l| l.contains("object-store/round-trip"))
        .unwrap_or_else(|| panic!("no round-trip line: {said}"));
    assert!(line.contains('✓'), "{said}");
    assert!(
        line.contains(&format!("s3://{second}/kgf-up-verify/")),
        "{line}"
    );
    assert!(
        rt.block_on(s3.list(&second, "kgf-up-verify/"))
            .unwrap()
            .is_empty(),
        "the probe object is removed"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("object-store/run-artifacts") && l.contains("skipped")),
        "{said}"
    );
    assert!(said.contains("serving/inference-service"), "{said}");

    // status ends with where each UI is.
    let out = kgf_up(&["status", "--profile", &moved]);
    assert!(
        text(&out).contains("port-forward svc/ml-pipeline-ui"),
        "{}",
        text(&out)
    );

    // down removes every object kgf-up made (the user's namespace stays; buckets hold data).
    let out = kgf_up(&["down", "--profile", &moved, "--non-interactive", "--yes"]);
    assert!(out.status.success(), "down: {}", text(&out));
    assert!(get(&bed, TEAM_NS, "secret/mlpipeline-minio-artifact").is_none());
    assert!(get(&bed, TEAM_NS, "configmap/kfp-launcher").is_none());
    assert!(
        bed.tool("kubectl", &["get", "namespace", TEAM_NS])
            .status
            .success()
    );
    let ns = bed.tool(
        "kubectl",
        &["get", "namespace", KFP_NS, "-o", "jsonpath={.status.phase}"],
    );
    let phase = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !ns.status.success() || phase == "Terminating",
        "{KFP_NS} is still {phase}"
    );
    bed.kubectl(&["delete", "namespace", TEAM_NS, "--wait=false"]);
}

/// The S3 client itself against the bed's MinIO: buckets, objects, listing, and the error codes
/// the fixes are chosen by.
#[test]
fn the_s3_client_talks_to_a_real_s3_server() {
    let store = store();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3(&store);
    let bucket = format!("kgf-client-{}", std::process::id());
    rt.block_on(async {
        assert!(!s3.bucket_exists(&bucket).await.unwrap());
        s3.create_bucket(&bucket).await.unwrap();
        s3.create_bucket(&bucket)
            .await
            .expect("creating an owned bucket again is fine");
        assert!(s3.bucket_exists(&bucket).await.unwrap());
        s3.put(&bucket, "a/b c.txt", b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(s3.get(&bucket, "a/b c.txt").await.unwrap(), b"hello");
        assert_eq!(s3.list(&bucket, "a/").await.unwrap(), ["a/b c.txt"]);
        s3.delete(&bucket, "a/b c.txt").await.unwrap();
        let missing = s3.get(&bucket, "a/b c.txt").await.unwrap_err();
        assert_eq!(missing.code(), Some("NoSuchKey"), "{missing}");
    });
    let wrong = S3::direct(
        &Endpoint::try_from(store.endpoint.clone()).unwrap(),
        "us-east-1",
        true,
        &Secret::new(read(&store.access_file)),
        &Secret::new("not-the-secret-key-of-the-bed"),
        None,
    )
    .unwrap();
    let refused = rt
        .block_on(wrong.put(&bucket, "x", b"x".to_vec()))
        .unwrap_err();
    assert_eq!(refused.code(), Some("SignatureDoesNotMatch"), "{refused}");
    let nowhere = S3::direct(
        &Endpoint::try_from("http://127.0.0.1:1".to_string()).unwrap(),
        "us-east-1",
        true,
        &Secret::new("a-key"),
        &Secret::new("a-secret"),
        None,
    )
    .unwrap();
    let err = rt.block_on(nowhere.bucket_exists("b")).unwrap_err();
    assert!(
        matches!(err, kgf_up::objectstore::s3::S3Error::Unreachable { .. }),
        "{err}"
    );
}
