//! `kgf-step serve`: the fusion model behind KServe's v2 Open Inference Protocol over HTTP/1.1
//! (`/v2/health/{live,ready}`, `/v2/models/gene-fusion[/ready]`, `POST
//! /v2/models/gene-fusion/infer`) and Prometheus metrics on `/metrics`.
//!
//! One model worker thread owns the models and the device; request handlers validate their
//! reads, queue them, and wait for their share of a batch. The worker takes the first queued
//! request, then keeps collecting until the batch holds `max_batch` reads or `max_wait` has
//! passed, so concurrent clients share forward passes. A request never panics the server: bad
//! input is a 400 naming the field, a failed forward pass a 500, and a panic inside the worker is
//! caught and answered as a 500.
//!
//! Owns HTTP and batching only; the model and read checks live in `classify`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::classify::{Call, Classifier};
use crate::error::StepError;
use crate::metrics_text::Registry;
use crate::model::{DeviceChoice, open_device};
use crate::store;

/// The model's name in every v2 path.
pub const MODEL: &str = "gene-fusion";
/// The one input tensor.
pub const INPUT: &str = "reads";

/// Where the model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    Dir(PathBuf),
    S3(store::S3Uri),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub model: ModelSource,
    pub addr: SocketAddr,
    pub device: DeviceChoice,
    /// Reads per forward pass, across requests.
    pub max_batch: usize,
    /// How long the worker waits for more requests to fill a batch.
    pub max_wait: Duration,
    /// Reads one request may carry.
    pub max_reads: usize,
    /// Bytes one request body may have.
    pub max_body: usize,
    /// Where an `s3://` model is downloaded to.
    pub cache: PathBuf,
}

struct Job {
    reads: Vec<Vec<u16>>,
    reply: oneshot::Sender<Result<Vec<Call>, String>>,
}

/// What the handlers share.
struct State {
    opts: Options,
    ready: AtomicBool,
    /// Set once the model is loaded.
    model: std::sync::OnceLock<ModelInfo>,
    queue: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    metrics: Registry,
}

struct ModelInfo {
    version: String,
    read_length: usize,
    k: usize,
    threshold: f64,
}

/// Binds, loads the model in the background (readiness turns true when it is loaded), and
/// serves until the process is stopped. Prints `kgf-step: serving on ADDR` once bound.
pub fn run(opts: Options) -> Result<(), StepError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .build()
        .map_err(|source| StepError::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    rt.block_on(serve(opts))
}

async fn serve(opts: Options) -> Result<(), StepError> {
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| StepError::Serve(format!("binding {}: {source}", opts.addr)))?;
    let local = listener
        .local_addr()
        .map_err(|source| StepError::Serve(format!("reading the bound address: {source}")))?;
    eprintln!("kgf-step: serving on {local}");
    let state = Arc::new(State {
        opts: opts.clone(),
        ready: AtomicBool::new(false),
        model: std::sync::OnceLock::new(),
        queue: std::sync::Mutex::new(None),
        metrics: Registry::default(),
    });
    let loader = tokio::spawn(load(state.clone()));
    let accept = tokio::spawn(accept(listener, state));
    match loader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(StepError::Serve(format!("loading the model panicked: {e}"))),
    }
    accept
        .await
        .map_err(|e| StepError::Serve(format!("the HTTP server stopped: {e}")))
}

async fn accept(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("kgf-step: accept failed: {e}");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that hangs up mid-request is its own business, not the server's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// Downloads an `s3://` model, then loads it and starts the worker thread.
async fn load(state: Arc<State>) -> Result<(), StepError> {
    let dir = match &state.opts.model {
        ModelSource::Dir(d) => d.clone(),
        ModelSource::S3(uri) => {
            let client = store::Client::from_env()?;
            let n = client.download_prefix(uri, &state.opts.cache).await?;
            eprintln!(
                "kgf-step: downloaded {n} objects of {uri} to {}",
                state.opts.cache.display()
            );
            state.opts.cache.clone()
        }
    };
    tokio::task::spawn_blocking(move || start_worker(&state, &dir))
        .await
        .map_err(|e| StepError::Serve(format!("loading the model panicked: {e}")))?
}

/// Loads the model directory, then starts the worker thread and turns ready.
fn start_worker(state: &Arc<State>, dir: &Path) -> Result<(), StepError> {
    let dev = open_device(state.opts.device, 0).map_err(crate::error::model(
        "opening the compute device (build with `--features cuda` for CUDA)",
    ))?;
    let classifier = Classifier::load(dir, crate::fc::GC_BATCH, &dev)?;
    eprintln!(
        "kgf-step: model {} version {} loaded on {} (reads of {} bases, threshold {})",
        dir.display(),
        classifier.manifest.version,
        if dev.is_cuda() { "CUDA" } else { "the CPU" },
        classifier.read_length(),
        classifier.manifest.threshold
    );
    let _ = state.model.set(ModelInfo {
        version: classifier.manifest.version.clone(),
        read_length: classifier.read_length(),
        k: classifier.k(),
        threshold: classifier.manifest.threshold,
    });
    let (tx, rx) = mpsc::channel::<Job>();
    *state.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    let worker_state = state.clone();
    std::thread::Builder::new()
        .name("model-worker".into())
        .spawn(move || worker(&worker_state, &classifier, &rx))
        .map_err(|source| StepError::Io {
            path: "model worker thread".into(),
            source,
        })?;
    state.ready.store(true, Ordering::SeqCst);
    Ok(())
}

/// The model worker: batches queued jobs and answers each with its calls.
fn worker(state: &State, classifier: &Classifier, rx: &mpsc::Receiver<Job>) {
    let (max_batch, max_wait) = (state.opts.max_batch.max(1), state.opts.max_wait);
    while let Ok(first) = rx.recv() {
        let mut reads = first.reads.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + max_wait;
        while reads < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => {
                    reads += job.reads.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        state.metrics.observe_batch(reads);
        let all: Vec<Vec<u16>> = jobs.iter().flat_map(|j| j.reads.iter().cloned()).collect();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classifier.classify(&all)));
        let result = match result {
            Ok(Ok(calls)) if calls.len() == all.len() => Ok(calls),
            Ok(Ok(calls)) => Err(format!(
                "the forward pass answered {} of {} reads",
                calls.len(),
                all.len()
            )),
            Ok(Err(e)) => Err(format!("the forward pass failed: {e}")),
            Err(_) => Err("the forward pass panicked".to_string()),
        };
        let mut offset = 0;
        for job in jobs {
            let n = job.reads.len();
            let share = result
                .as_ref()
                .map(|calls| calls[offset..offset + n].to_vec())
                .map_err(Clone::clone);
            offset += n;
            // The handler may have gone (client hung up); nothing to answer then.
            let _ = job.reply.send(share);
        }
    }
}

type Body = Full<Bytes>;

fn reply(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("static response parts")
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    reply(code, &json!({"error": msg.into()}))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let (route, resp) = route(&state, req, &path).await;
    state
        .metrics
        .observe_request(route, resp.status().as_u16(), started.elapsed());
    Ok(resp)
}

/// Answers one request; returns the route label for the metrics with the response.
async fn route(
    state: &State,
    req: Request<Incoming>,
    path: &str,
) -> (&'static str, Response<Body>) {
    let model = format!("/v2/models/{MODEL}");
    let m = req.method().clone();
    let get = m == Method::GET;
    let ready = state.ready.load(Ordering::SeqCst);
    let not_ready = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model {MODEL} is not loaded yet"),
        )
    };
    match path {
        "/v2/health/live" if get => ("live", reply(StatusCode::OK, &json!({"live": true}))),
        "/v2/health/ready" if get => (
            "ready",
            if ready {
                reply(StatusCode::OK, &json!({"ready": true}))
            } else {
                not_ready()
            },
        ),
        "/v2" if get => (
            "server_metadata",
            reply(
                StatusCode::OK,
                &json!({"name": "kgf-step", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
            ),
        ),
        "/metrics" if get => (
            "metrics",
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(state.metrics.render())))
                .expect("static response parts"),
        ),
        p if p == model && get => (
            "model_metadata",
            match state.model.get() {
                Some(info) => reply(StatusCode::OK, &metadata(info)),
                None => not_ready(),
            },
        ),
        p if p == format!("{model}/ready") && get => (
            "model_ready",
            if ready {
                reply(StatusCode::OK, &json!({"name": MODEL, "ready": true}))
            } else {
                not_ready()
            },
        ),
        p if p == format!("{model}/infer") && m == Method::POST => {
            ("infer", infer(state, req).await)
        }
        "/v2/health/live" | "/v2/health/ready" | "/v2" | "/metrics" => (
            "other",
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} {path}: use GET"),
            ),
        ),
        p if p == model || p == format!("{model}/ready") => (
            "other",
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} {path}: use GET"),
            ),
        ),
        p if p == format!("{model}/infer") => (
            "other",
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} {path}: use POST"),
            ),
        ),
        p if p.starts_with("/v2/models/") => (
            "other",
            error(
                StatusCode::NOT_FOUND,
                format!("{p}: this server serves only the model {MODEL}"),
            ),
        ),
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, format!("{path}: no such endpoint")),
        ),
    }
}

fn metadata(info: &ModelInfo) -> Value {
    json!({
        "name": MODEL,
        "versions": [info.version],
        "platform": "kgf-step",
        "inputs": [
            {"name": INPUT, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "chimeric_probability", "datatype": "FP32", "shape": [-1]},
            {"name": "chimeric", "datatype": "BOOL", "shape": [-1]},
            {"name": "partner_genes", "datatype": "BYTES", "shape": [-1, 2]},
            {"name": "partner_probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "parameters": {"read_length": info.read_length, "threshold": info.threshold},
    })
}

/// The output tensors, in the order of [`metadata`].
const OUTPUTS: [&str; 4] = [
    "chimeric_probability",
    "chimeric",
    "partner_genes",
    "partner_probabilities",
];

async fn infer(state: &State, req: Request<Incoming>) -> Response<Body> {
    let Some(info) = state.model.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("model {MODEL} is not loaded yet"),
        );
    };
    let limit = state.opts.max_body;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request body: over the size limit of {limit} bytes (--max-body)"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("request body: could not be read: {e}"),
            );
        }
    };
    let parsed = match parse_request(&body, state.opts.max_reads) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let mut reads = Vec::with_capacity(parsed.reads.len());
    for (i, r) in parsed.reads.iter().enumerate() {
        match crate::classify::check_read(i, r, info.read_length, info.k) {
            Ok(ids) => reads.push(ids),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("inputs[0].data[{i}]: {e}")),
        }
    }
    let (tx, rx) = oneshot::channel();
    // The lock is released at the end of this statement, before any await.
    let sent = matches!(
        state
            .queue
            .lock()
            .map(|q| q.as_ref().map(|q| q.send(Job { reads, reply: tx }).is_ok())),
        Ok(Some(true))
    );
    if !sent {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model worker is not running",
        );
    }
    let calls = match rx.await {
        Ok(Ok(calls)) => calls,
        Ok(Err(msg)) => return error(StatusCode::INTERNAL_SERVER_ERROR, msg),
        Err(_) => {
            state.ready.store(false, Ordering::SeqCst);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model worker stopped; the server is no longer ready",
            );
        }
    };
    state.metrics.count_calls(&calls);
    let mut v = json!({
        "model_name": MODEL,
        "model_version": info.version,
        "outputs": outputs(&calls, &parsed.outputs),
    });
    if let Some(id) = parsed.id {
        v["id"] = Value::String(id);
    }
    reply(StatusCode::OK, &v)
}

struct Parsed {
    id: Option<String>,
    reads: Vec<String>,
    /// Requested output names; all of them when the request names none.
    outputs: Vec<&'static str>,
}

/// Checks an inference request's JSON against the v2 protocol and this model's one input.
/// Every message names the field it is about.
fn parse_request(body: &[u8], max_reads: usize) -> Result<Parsed, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body: not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("request body: not a JSON object with `inputs`")?;
    let id = match obj.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("id: not a string".into()),
    };
    let inputs = obj
        .get("inputs")
        .ok_or("inputs: missing; send one BYTES tensor named `reads`")?
        .as_array()
        .ok_or("inputs: not an array of tensors")?;
    if inputs.len() != 1 {
        return Err(format!(
            "inputs: {} tensors; this model takes exactly one, `{INPUT}`",
            inputs.len()
        ));
    }
    let t = inputs[0]
        .as_object()
        .ok_or("inputs[0]: not a tensor object")?;
    match t.get("name").and_then(Value::as_str) {
        Some(INPUT) => {}
        Some(other) => {
            return Err(format!(
                "inputs[0].name: {other:?}; this model's input is `{INPUT}`"
            ));
        }
        None => return Err("inputs[0].name: missing".into()),
    }
    match t.get("datatype").and_then(Value::as_str) {
        Some("BYTES") => {}
        Some(other) => return Err(format!("inputs[0].datatype: {other}; reads are BYTES")),
        None => return Err("inputs[0].datatype: missing".into()),
    }
    let data = t
        .get("data")
        .ok_or("inputs[0].data: missing")?
        .as_array()
        .ok_or("inputs[0].data: not an array of reads")?;
    if data.is_empty() {
        return Err("inputs[0].data: empty; send at least one read".into());
    }
    if data.len() > max_reads {
        return Err(format!(
            "inputs[0].data: {} reads, over the size limit of {max_reads} per request (--max-reads)",
            data.len()
        ));
    }
    let shape: Vec<u64> = t
        .get("shape")
        .ok_or("inputs[0].shape: missing")?
        .as_array()
        .and_then(|s| s.iter().map(Value::as_u64).collect())
        .ok_or("inputs[0].shape: not an array of non-negative integers")?;
    let n = data.len() as u64;
    if shape != [n] && shape != [n, 1] {
        return Err(format!(
            "inputs[0].shape: {shape:?} does not match {n} reads in data; use [{n}]"
        ));
    }
    let reads = data
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.as_str()
                .map(str::to_string)
                .ok_or(format!("inputs[0].data[{i}]: not a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = match obj.get("outputs") {
        None => OUTPUTS.to_vec(),
        Some(Value::Array(reqs)) => reqs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                OUTPUTS.iter().find(|&&k| k == name).copied().ok_or(format!(
                    "outputs[{i}].name: {name:?} is not one of {}",
                    OUTPUTS.join(", ")
                ))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("outputs: not an array".into()),
    };
    Ok(Parsed { id, reads, outputs })
}

fn outputs(calls: &[Call], names: &[&'static str]) -> Vec<Value> {
    let n = calls.len();
    names
        .iter()
        .map(|&name| match name {
            "chimeric_probability" => json!({"name": name, "datatype": "FP32", "shape": [n],
                "data": calls.iter().map(|c| c.chimeric_probability).collect::<Vec<_>>()}),
            "chimeric" => json!({"name": name, "datatype": "BOOL", "shape": [n],
                "data": calls.iter().map(|c| c.chimeric).collect::<Vec<_>>()}),
            "partner_genes" => json!({"name": name, "datatype": "BYTES", "shape": [n, 2],
                "data": calls.iter().flat_map(|c| c.partners.iter().map(|p| p.0.clone())).collect::<Vec<_>>()}),
            _ => json!({"name": name, "datatype": "FP32", "shape": [n, 2],
                "data": calls.iter().flat_map(|c| c.partners.iter().map(|p| p.1)).collect::<Vec<_>>()}),
        })
        .collect()
}
