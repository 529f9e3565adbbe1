//! Shared by the tests of kgf-step: running the real binary, the model `kgf-step all --preset
//! tiny` trains, reads of its test split, a running `kgf-step serve`, and a MinIO server on
//! loopback.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use kgf_step::dataset::{self, Labels};
use kgf_step::http::Http;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_kgf-step");

/// Runs the real kgf-step with `args` and the environment `env`, whatever its exit status.
pub fn kgf_step(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("kgf-step runs")
}

/// Runs a step on the tiny preset (`--preset tiny --seed SEED --device cpu` after `args`),
/// asserts that it succeeded, and returns its stdout.
pub fn tiny_step(seed: u64, args: &[&str]) -> String {
    let seed = seed.to_string();
    let mut all = args.to_vec();
    all.extend(["--preset", "tiny", "--seed", &seed, "--device", "cpu"]);
    let out = kgf_step(&all, &[]);
    assert!(
        out.status.success(),
        "kgf-step {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The model every test serves: one `all --preset tiny` run, made once per test binary.
pub fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = Command::new(BIN)
            .args([
                "all", "--preset", "tiny", "--seed", "7", "--device", "cpu", "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kgf-step all failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn labels() -> Labels {
    dataset::read_labels(&model_dir().join("data/labels")).unwrap()
}

/// Reads of the test split as bases (rebuilt from their k-mer ids), with their labels
/// (0 chimeric, 1 not).
pub fn test_reads() -> Vec<(String, u32)> {
    let l = labels();
    let ex = dataset::load_fc(&model_dir().join("data/test"), &l).unwrap();
    (0..ex.len())
        .map(|i| {
            (
                kgf_step::classify::read_bases(ex.read(i), l.k),
                ex.labels[i],
            )
        })
        .collect()
}

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub rt: tokio::runtime::Runtime,
    pub http: Http,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Server {
    pub fn start(model: &str, extra: &[&str], env: &[(&str, String)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--model",
            model,
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--device",
            "cpu",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve exited before binding").unwrap();
            if let Some(a) = line.strip_prefix("kgf-step: serving on ") {
                break a.parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let http = rt
            .block_on(async { Http::new(None, Duration::from_secs(60)) })
            .unwrap();
        let s = Server {
            child,
            addr,
            rt,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while s.get("/v2/health/ready").status != 200 {
            assert!(Instant::now() < deadline, "the server never got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Answer {
        let url = format!("http://{}{path}", self.addr);
        let r = self
            .rt
            .block_on(self.http.send(
                method,
                &url,
                &[("content-type", "application/json".into())],
                Bytes::from(body),
            ))
            .unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        Answer {
            status: r.status.as_u16(),
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, Vec::new())
    }

    pub fn infer(&self, req: &Value) -> Answer {
        self.send(
            Method::POST,
            "/v2/models/gene-fusion/infer",
            req.to_string().into_bytes(),
        )
    }

    pub fn metric(&self, line_prefix: &str) -> f64 {
        let m = self.get("/metrics");
        m.text
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .unwrap_or_else(|| panic!("no {line_prefix} in\n{}", m.text))
            .trim()
            .parse()
            .unwrap()
    }
}

pub fn reads_request(reads: &[&str]) -> Value {
    json!({"inputs": [{"name": "reads", "datatype": "BYTES", "shape": [reads.len()], "data": reads}]})
}

pub fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {body}"))
}

/// The test bed's S3 server (MinIO built from its Go module, run on loopback by
/// `scripts/testbed`), as its environment names it, with a fresh bucket for this test.
pub struct S3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

pub fn s3(test: &str) -> S3 {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run inside the test bed (`scripts/testbed run -- cargo test -p kgf-step`), which runs MinIO")
        })
    };
    let file = |k: &str| std::fs::read_to_string(var(k)).unwrap().trim().to_string();
    let s = S3 {
        endpoint: var("KGF_TESTBED_S3_ENDPOINT"),
        access_key: file("KGF_TESTBED_S3_ACCESS_KEY_FILE"),
        secret_key: file("KGF_TESTBED_S3_SECRET_KEY_FILE"),
        bucket: format!(
            "{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ),
    };
    make_bucket(&s);
    s
}

impl S3 {
    pub fn config(&self) -> kgf_step::store::Config {
        kgf_step::store::Config {
            endpoint: url::Url::parse(&self.endpoint).unwrap(),
            region: "us-east-1".into(),
            style: rusty_s3::UrlStyle::Path,
            credentials: rusty_s3::Credentials::new(&self.access_key, &self.secret_key),
            ca: None,
        }
    }

    /// The environment `serve --model s3://…` reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }
}

/// Makes a bucket with the store client's own signing (MinIO accepts a signed PUT /bucket).
fn make_bucket(s: &S3) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = rusty_s3::Bucket::new(
            url::Url::parse(&s.endpoint).unwrap(),
            rusty_s3::UrlStyle::Path,
            s.bucket.clone(),
            "us-east-1",
        )
        .unwrap();
        let creds = rusty_s3::Credentials::new(&s.access_key, &s.secret_key);
        use rusty_s3::S3Action;
        let url = bucket.create_bucket(&creds).sign(Duration::from_secs(60));
        let http = Http::new(None, Duration::from_secs(30)).unwrap();
        let r = http
            .send(Method::PUT, url.as_str(), &[], Bytes::new())
            .await
            .unwrap();
        assert!(r.status.is_success(), "create bucket: {}", r.text());
    });
}
