//! The server's Prometheus metrics, kept in memory and rendered in the text exposition format
//! (version 0.0.4): requests by route and status code, request latency, batch sizes and reads
//! by call. The Grafana dashboard in `manifests/grafana/model-dashboard.yaml` queries these names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::classify::Call;

/// Upper bounds of the latency histogram, in seconds.
const LATENCY: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the batch-size histogram, in reads.
const BATCH: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (c, &b) in self.counts.iter_mut().zip(self.bounds) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    batches: Histogram,
    chimeric: u64,
    normal: u64,
}

/// Every metric of the server; one lock, held only to add or to render.
#[derive(Debug)]
pub struct Registry(Mutex<Inner>);

impl Default for Registry {
    fn default() -> Self {
        Self(Mutex::new(Inner {
            requests: BTreeMap::new(),
            latency: BTreeMap::new(),
            batches: Histogram::new(&BATCH),
            chimeric: 0,
            normal: 0,
        }))
    }
}

impl Registry {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A poisoned lock only means another thread panicked mid-update; the counts stay usable.
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    pub fn observe_request(&self, route: &'static str, code: u16, took: Duration) {
        self.with(|m| {
            *m.requests.entry((route, code)).or_default() += 1;
            m.latency
                .entry(route)
                .or_insert_with(|| Histogram::new(&LATENCY))
                .observe(took.as_secs_f64());
        });
    }

    pub fn observe_batch(&self, reads: usize) {
        self.with(|m| m.batches.observe(reads as f64));
    }

    pub fn count_calls(&self, calls: &[Call]) {
        let chimeric = calls.iter().filter(|c| c.chimeric).count() as u64;
        self.with(|m| {
            m.chimeric += chimeric;
            m.normal += calls.len() as u64 - chimeric;
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|m| {
            out.push_str("# HELP kgf_serve_requests_total HTTP requests by route and status code.\n# TYPE kgf_serve_requests_total counter\n");
            for ((route, code), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "kgf_serve_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
                );
            }
            out.push_str("# HELP kgf_serve_request_duration_seconds Time from request to response, by route.\n# TYPE kgf_serve_request_duration_seconds histogram\n");
            for (route, h) in &m.latency {
                h.render(
                    &mut out,
                    "kgf_serve_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
            out.push_str("# HELP kgf_serve_batch_reads Reads per forward pass of the model worker.\n# TYPE kgf_serve_batch_reads histogram\n");
            m.batches.render(&mut out, "kgf_serve_batch_reads", "");
            out.push_str("# HELP kgf_serve_reads_total Reads classified, by call.\n# TYPE kgf_serve_reads_total counter\n");
            let _ = writeln!(out, "kgf_serve_reads_total{{call=\"chimeric\"}} {}", m.chimeric);
            let _ = writeln!(out, "kgf_serve_reads_total{{call=\"normal\"}} {}", m.normal);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_every_bucket() {
        let r = Registry::default();
        r.observe_request("infer", 200, Duration::from_millis(3));
        r.observe_request("infer", 400, Duration::from_millis(30));
        r.observe_batch(3);
        let text = r.render();
        assert!(text.contains("kgf_serve_requests_total{route=\"infer\",code=\"200\"} 1"));
        assert!(text.contains("kgf_serve_requests_total{route=\"infer\",code=\"400\"} 1"));
        assert!(
            text.contains(
                "kgf_serve_request_duration_seconds_bucket{route=\"infer\",le=\"0.005\"} 1"
            )
        );
        assert!(
            text.contains(
                "kgf_serve_request_duration_seconds_bucket{route=\"infer\",le=\"0.05\"} 2"
            )
        );
        assert!(text.contains("kgf_serve_batch_reads_bucket{le=\"2\"} 0"));
        assert!(text.contains("kgf_serve_batch_reads_bucket{le=\"4\"} 1"));
        assert!(text.contains("kgf_serve_batch_reads_count 1"));
        assert!(text.contains("kgf_serve_reads_total{call=\"chimeric\"} 0"));
    }
}
