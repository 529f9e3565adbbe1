//! Load generator for `kgf-step serve` (a benchmark, not a test): N concurrent clients on
//! loopback send v2 infer requests of R reads each until a request count or a time limit is
//! reached, then print one JSON line with p50/p99 latency, requests/s and reads/s.
//!
//!     serve_load URL READS_FILE [--clients N] [--requests M] [--reads R] [--seconds S]
//!
//! READS_FILE holds one read per line. Used by pipeline/serve-bench.sh.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use kgf_step::http::Http;
use serde_json::json;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, file) = (args[1].clone(), &args[2]);
    let clients = arg(&args, "--clients", 8);
    let requests = arg(&args, "--requests", 400);
    let per = arg(&args, "--reads", 1);
    let seconds = arg(&args, "--seconds", 60) as u64;
    let reads: Vec<String> = std::fs::read_to_string(file)
        .expect("reads file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, errors, elapsed) = rt.block_on(async {
        let http = Http::new(None, Duration::from_secs(60)).unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (http, next, url, reads) = (http.clone(), next.clone(), url.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= requests || Instant::now() > deadline {
                        return (lat, errors);
                    }
                    let batch: Vec<&str> = (0..per)
                        .map(|j| reads[(i * per + j) % reads.len()].as_str())
                        .collect();
                    let body = json!({"inputs": [{"name": "reads", "datatype": "BYTES",
                        "shape": [batch.len()], "data": batch}]})
                    .to_string();
                    let t = Instant::now();
                    match http
                        .send(
                            Method::POST,
                            &url,
                            &[("content-type", "application/json".into())],
                            Bytes::from(body),
                        )
                        .await
                    {
                        Ok(r) if r.status.is_success() => lat.push(t.elapsed().as_secs_f64()),
                        _ => errors += 1,
                    }
                }
            }));
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (all, errors, started.elapsed().as_secs_f64())
    });
    let mut l = latencies;
    l.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if l.is_empty() {
            f64::NAN
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize]
        }
    };
    println!(
        "{}",
        json!({
            "clients": clients, "reads_per_request": per, "requests": l.len(), "errors": errors,
            "seconds": elapsed, "p50_ms": q(0.5) * 1e3, "p99_ms": q(0.99) * 1e3,
            "requests_per_s": l.len() as f64 / elapsed,
            "reads_per_s": (l.len() * per) as f64 / elapsed,
        })
    );
}
