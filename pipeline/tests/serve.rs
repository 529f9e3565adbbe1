//! `kgf-step serve` over real HTTP on loopback: the real binary serving a model that
//! `kgf-step all --preset tiny` trained, asked by a real HTTP client. Every v2 path, the error
//! shapes, bad inputs, batching of concurrent requests, the Prometheus metrics, and loading
//! the model from `s3://` on the test bed's real MinIO server (that test runs inside the bed).

mod common;

use std::process::Command;

use common::*;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

#[test]
fn serve_answers_every_v2_path_and_classifies_reads() {
    let s = Server::start(model_dir().to_str().unwrap(), &[], &[]);
    let live = s.get("/v2/health/live");
    assert_eq!((live.status, &live.body), (200, &json!({"live": true})));
    assert_eq!(s.get("/v2/health/ready").body, json!({"ready": true}));
    assert_eq!(s.get("/v2").body["name"], "kgf-step");
    let ready = s.get("/v2/models/gene-fusion/ready");
    assert_eq!((ready.status, &ready.body["ready"]), (200, &json!(true)));

    let meta = s.get("/v2/models/gene-fusion");
    assert_eq!(meta.status, 200);
    assert_eq!(meta.body["name"], "gene-fusion");
    assert_eq!(
        meta.body["inputs"],
        json!([{"name": "reads", "datatype": "BYTES", "shape": [-1]}])
    );
    let outs: Vec<&str> = meta.body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        outs,
        [
            "chimeric_probability",
            "chimeric",
            "partner_genes",
            "partner_probabilities"
        ]
    );
    let threshold = meta.body["parameters"]["threshold"].as_f64().unwrap();
    assert_eq!(
        threshold, 0.5,
        "`all` writes the test-fc threshold into serving.json"
    );

    let reads = test_reads();
    let mine: Vec<&str> = reads.iter().take(8).map(|r| r.0.as_str()).collect();
    let mut req = reads_request(&mine);
    req["id"] = json!("req-1");
    let a = s.infer(&req);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["model_name"], "gene-fusion");
    assert_eq!(a.body["id"], "req-1");
    let p = output(&a.body, "chimeric_probability");
    assert_eq!(
        (p["datatype"].as_str(), &p["shape"]),
        (Some("FP32"), &json!([8]))
    );
    let calls = output(&a.body, "chimeric");
    assert_eq!(calls["datatype"], "BOOL");
    for (prob, call) in p["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(calls["data"].as_array().unwrap())
    {
        let prob = prob.as_f64().unwrap();
        assert!((0.0..=1.0).contains(&prob));
        assert_eq!(call.as_bool().unwrap(), prob > threshold);
    }
    let genes = output(&a.body, "partner_genes");
    assert_eq!(genes["shape"], json!([8, 2]));
    let panel = labels().genes;
    for g in genes["data"].as_array().unwrap() {
        assert!(panel.contains(&g.as_str().unwrap().to_string()), "{g}");
    }
    let gp = output(&a.body, "partner_probabilities")["data"]
        .as_array()
        .unwrap()
        .clone();
    // A chimeric call names the genes of the read's two sides, in the read's order; any other
    // call its two most likely genes, the most likely first.
    let called = output(&a.body, "chimeric")["data"]
        .as_array()
        .unwrap()
        .clone();
    for (pair, chimeric) in gp.chunks(2).zip(&called) {
        assert!(
            pair.iter()
                .all(|p| (0.0..=1.0).contains(&p.as_f64().unwrap()))
        );
        if chimeric == false {
            assert!(
                pair[0].as_f64() >= pair[1].as_f64(),
                "most likely partner first: {pair:?}"
            );
        }
    }

    // The same read alone gets the same answer (batching does not change results), and lower
    // case is the same read.
    let one = s.infer(&reads_request(&[&mine[3].to_lowercase()]));
    let p1 = output(&one.body, "chimeric_probability")["data"][0]
        .as_f64()
        .unwrap();
    assert!((p1 - p["data"][3].as_f64().unwrap()).abs() < 1e-4);

    // A chosen subset of outputs.
    let mut req = reads_request(&mine[..1]);
    req["outputs"] = json!([{"name": "chimeric"}]);
    let a = s.infer(&req);
    assert_eq!(a.body["outputs"].as_array().unwrap().len(), 1, "{}", a.text);

    // The served model is the tested one: its calls over the whole test split have the
    // accuracy test-fc measured (the same threshold, the same reads).
    let all: Vec<&str> = reads.iter().map(|r| r.0.as_str()).collect();
    let mut calls = Vec::new();
    for chunk in all.chunks(500) {
        let a = s.infer(&reads_request(chunk));
        assert_eq!(a.status, 200, "{}", a.text);
        calls.extend(
            output(&a.body, "chimeric")["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap()),
        );
    }
    let scored: Vec<(bool, u32)> = calls
        .iter()
        .zip(&reads)
        .filter(|(_, r)| r.1 <= 1)
        .map(|(&c, r)| (c, r.1))
        .collect();
    let correct = scored.iter().filter(|(c, l)| *c == (*l == 0)).count();
    let tested: Value =
        serde_json::from_slice(&std::fs::read(model_dir().join("fc-test/metrics.json")).unwrap())
            .unwrap();
    let accuracy = tested["reads"]["accuracy"].as_f64().unwrap();
    assert!(
        (correct as f64 / scored.len() as f64 - accuracy).abs() < 1e-9,
        "served accuracy {correct}/{} vs test-fc's {accuracy}",
        scored.len()
    );

    let total = s.metric("kgf_serve_reads_total{call=\"chimeric\"}")
        + s.metric("kgf_serve_reads_total{call=\"normal\"}");
    assert_eq!(total as usize, 8 + 1 + 1 + all.len());
    assert!(s.metric("kgf_serve_requests_total{route=\"infer\",code=\"200\"}") >= 4.0);
    assert!(s.metric("kgf_serve_request_duration_seconds_count{route=\"infer\"}") >= 4.0);
    assert!(s.metric("kgf_serve_batch_reads_count") >= 1.0);
    let m = s.get("/metrics");
    assert!(
        m.text
            .contains("# TYPE kgf_serve_request_duration_seconds histogram")
    );
}

#[test]
fn bad_requests_are_400_with_the_field_named_and_the_server_stays_up() {
    let s = Server::start(
        model_dir().to_str().unwrap(),
        &["--max-reads", "4", "--max-body", "20000"],
        &[],
    );
    let n = labels().read_length;
    let good = "A".repeat(n);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "request body: not JSON"),
        (b"[]".to_vec(), "request body: not a JSON object"),
        (json!({}).to_string().into(), "inputs: missing"),
        (json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [good]}]}).to_string().into(), "inputs[0].name"),
        (json!({"inputs": [{"name": "reads", "datatype": "FP32", "shape": [1], "data": [1.0]}]}).to_string().into(), "inputs[0].datatype"),
        (reads_request(&[]).to_string().into(), "inputs[0].data: empty"),
        (reads_request(&[""]).to_string().into(), "inputs[0].data[0]: read 0 is empty"),
        (reads_request(&[&good, "ACGT"]).to_string().into(), "inputs[0].data[1]: read 1 has 4 bases"),
        (reads_request(&[&format!("{}X", &good[1..])]).to_string().into(), "inputs[0].data[0]: read 0 has 'X' at position"),
        (reads_request(&[&format!("{good}A")]).to_string().into(), "inputs[0].data[0]: read 0 has"),
        (reads_request(&[&good, &good, &good, &good, &good]).to_string().into(), "over the size limit of 4"),
        (json!({"inputs": [{"name": "reads", "datatype": "BYTES", "shape": [3], "data": [good]}]}).to_string().into(), "inputs[0].shape"),
        (json!({"inputs": [{"name": "reads", "datatype": "BYTES", "shape": [1], "data": [7]}]}).to_string().into(), "inputs[0].data[0]: not a string"),
        ({ let mut r = reads_request(&[&good]); r["outputs"] = json!([{"name": "nope"}]); r.to_string().into() }, "outputs[0].name"),
        (vec![b'x'; 30000], "request body: over the size limit of 20000 bytes"),
    ];
    for (body, want) in cases {
        let a = s.send(Method::POST, "/v2/models/gene-fusion/infer", body);
        assert_eq!(a.status, 400, "{want}: {}", a.text);
        let msg = a.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", a.text));
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
    }
    let a = s.get("/v2/models/other");
    assert_eq!(a.status, 404);
    assert!(a.body["error"].as_str().unwrap().contains("gene-fusion"));
    assert_eq!(s.get("/nope").status, 404);
    let a = s.get("/v2/models/gene-fusion/infer");
    assert_eq!(a.status, 405);
    assert!(a.body["error"].as_str().unwrap().contains("POST"));
    assert_eq!(
        s.send(Method::POST, "/v2/health/live", Vec::new()).status,
        405
    );

    assert_eq!(s.get("/v2/health/live").status, 200);
    assert_eq!(s.infer(&reads_request(&[&good])).status, 200);
    assert_eq!(
        s.metric("kgf_serve_requests_total{route=\"infer\",code=\"400\"}"),
        15.0
    );
}

#[test]
fn concurrent_requests_share_forward_passes() {
    let s = Server::start(
        model_dir().to_str().unwrap(),
        &["--max-wait-ms", "200", "--max-batch", "64"],
        &[],
    );
    let reads = test_reads();
    let one = reads[0].0.clone();
    let clients = 16;
    let answers: Vec<u16> = s.rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let http = s.http.clone();
            let url = format!("http://{}/v2/models/gene-fusion/infer", s.addr);
            let body = reads_request(&[&one]).to_string();
            tasks.push(tokio::spawn(async move {
                http.send(Method::POST, &url, &[], Bytes::from(body))
                    .await
                    .unwrap()
                    .status
                    .as_u16()
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(answers.iter().all(|&c| c == 200), "{answers:?}");
    let batches = s.metric("kgf_serve_batch_reads_count");
    let reads_in = s.metric("kgf_serve_batch_reads_sum");
    assert_eq!(reads_in, clients as f64);
    assert!(
        batches < clients as f64,
        "{clients} concurrent requests ran in {batches} forward passes"
    );
}

#[test]
fn serve_loads_an_s3_model_from_a_real_minio() {
    let s3 = s3("kgf-serve");
    let uri =
        kgf_step::store::S3Uri::parse(&format!("s3://{}/gene-fusion/test-run", s3.bucket)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = rt.block_on(async {
        let client = kgf_step::store::Client::new(s3.config()).unwrap();
        let mut n = 0;
        for rel in ["gc-model", "fc-model", "data/labels"] {
            n += client
                .upload_dir(&model_dir().join(rel), &uri.join(rel))
                .await
                .unwrap();
        }
        n
    });
    assert!(n >= 5, "uploaded {n} files");
    let env = s3.env();
    let cache = tempfile::tempdir().unwrap();
    let s = Server::start(
        &uri.to_string(),
        &["--cache", cache.path().to_str().unwrap()],
        &env,
    );
    assert!(cache.path().join("fc-model/model.safetensors").is_file());
    let reads = test_reads();
    let a = s.infer(&reads_request(&[&reads[0].0]));
    assert_eq!(a.status, 200, "{}", a.text);
    let local = Server::start(model_dir().to_str().unwrap(), &[], &[]);
    let b = local.infer(&reads_request(&[&reads[0].0]));
    assert_eq!(
        output(&a.body, "chimeric_probability"),
        output(&b.body, "chimeric_probability"),
        "the s3:// copy is the same model"
    );

    // A prefix with nothing under it is an error that names it, not a server that never gets ready.
    let empty = format!("s3://{}/nothing-here", s3.bucket);
    let out = Command::new(BIN)
        .args([
            "serve",
            "--model",
            &empty,
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--cache")
        .arg(cache.path().join("empty"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{empty}: no objects under it")),
        "{err}"
    );
}
