//! `kgf-step transcripts` against a loopback HTTP server of ours that answers as Ensembl's REST
//! API does (`lookup/symbol` JSON with its `Transcript` array, `sequence/id?type=cdna` FASTA, 400
//! for an unknown symbol, 429 with `Retry-After` when rate limited), then `dataset
//! --transcripts` on the FASTA it wrote. The real server cannot be reached from CI. And `dataset
//! --transcripts s3://…` against the test bed's real MinIO server (those tests run inside the
//! bed): the same dataset as from the local file, and the errors of a missing object, a missing
//! bucket and refused credentials.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A request as the server saw it: the path with query, and its Content-Type header.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn sequence(seed: u64, len: usize) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b"ACGT"[(x >> 62) as usize] as char
        })
        .collect()
}

fn transcript(id: &str, name: &str, biotype: &str, canonical: bool) -> serde_json::Value {
    serde_json::json!({
        "object_type": "Transcript", "id": id, "display_name": name, "biotype": biotype,
        "is_canonical": u8::from(canonical), "Parent": "ENSG0", "species": "homo_sapiens",
        "start": 1, "end": 2, "strand": -1, "version": 3, "Exon": []
    })
}

/// Serves Ensembl-shaped answers on 127.0.0.1 until the test ends; returns the base URL.
fn ensembl_server(seen: Seen) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut limited_once = false;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let mut content_type = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-type:") {
                    content_type = v.trim().to_string();
                }
            }
            seen.lock().unwrap().push((path.clone(), content_type));
            let (status, extra, body) = if path.starts_with("/lookup/symbol/homo_sapiens/RUNX1?") {
                let gene = serde_json::json!({
                    "object_type": "Gene", "id": "ENSG00000159216", "display_name": "RUNX1",
                    "biotype": "protein_coding", "species": "homo_sapiens",
                    "Transcript": [
                        transcript("ENST00000344691", "RUNX1-202", "protein_coding", false),
                        transcript("ENST00000300305", "RUNX1-201", "protein_coding", true),
                        transcript("ENST00000479325", "RUNX1-205", "retained_intron", false),
                    ]
                });
                ("200 OK", "", gene.to_string())
            } else if path.starts_with("/lookup/symbol/homo_sapiens/ETV6?") {
                let gene = serde_json::json!({
                    "object_type": "Gene", "id": "ENSG00000139083", "display_name": "ETV6",
                    "Transcript": [transcript("ENST00000396373", "ETV6-201", "protein_coding", true)]
                });
                ("200 OK", "", gene.to_string())
            } else if path.starts_with("/lookup/symbol/") {
                let name = path.rsplit('/').next().unwrap().split('?').next().unwrap();
                (
                    "400 Bad Request",
                    "",
                    format!("{{\"error\":\"No valid lookup found for symbol {name}\"}}"),
                )
            } else if let Some(rest) = path.strip_prefix("/sequence/id/") {
                let id = rest.split('?').next().unwrap();
                if id == "ENST00000300305" && !limited_once {
                    limited_once = true;
                    (
                        "429 Too Many Requests",
                        "Retry-After: 0\r\n",
                        "{\"error\":\"slow down\"}".into(),
                    )
                } else {
                    let seed: u64 = id[4..].parse().unwrap();
                    let seq = sequence(seed, 600);
                    let wrapped: Vec<&str> = (0..seq.len())
                        .step_by(60)
                        .map(|i| &seq[i..(i + 60).min(seq.len())])
                        .collect();
                    ("200 OK", "", format!(">{id}.3\n{}\n", wrapped.join("\n")))
                }
            } else {
                ("404 Not Found", "", "{\"error\":\"page not found\"}".into())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
        }
    });
    url
}

fn kgf_step(args: &[&str]) -> std::process::Output {
    common::kgf_step(args, &[])
}

#[test]
fn transcripts_are_fetched_from_an_ensembl_shaped_server_and_feed_the_dataset_step() {
    let seen: Seen = Arc::default();
    let url = ensembl_server(seen.clone());
    let dir = tempfile::tempdir().unwrap();
    let fa = dir.path().join("panel/transcripts.fa");
    let out = kgf_step(&[
        "transcripts",
        "--ensembl-url",
        &url,
        "--genes",
        "RUNX1,ETV6",
        "--out",
        fa.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&fa).unwrap();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('>')).collect();
    assert_eq!(
        headers,
        [
            ">RUNX1|ENST00000300305 RUNX1-201 protein_coding",
            ">RUNX1|ENST00000344691 RUNX1-202 protein_coding",
            ">ETV6|ENST00000396373 ETV6-201 protein_coding",
        ],
        "protein-coding transcripts only, canonical first"
    );
    let first: String = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('>'))
        .collect();
    assert_eq!(first, sequence(300305, 600));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&(
        "/lookup/symbol/homo_sapiens/RUNX1?expand=1".into(),
        "application/json".into()
    )));
    let cdna = (
        "/sequence/id/ENST00000300305?type=cdna".to_string(),
        "text/x-fasta".to_string(),
    );
    assert_eq!(
        seen.iter().filter(|r| **r == cdna).count(),
        2,
        "the 429 is retried once"
    );
    assert!(
        !seen.iter().any(|(p, _)| p.contains("ENST00000479325")),
        "retained intron not fetched"
    );

    let data = dir.path().join("data");
    let out = kgf_step(&[
        "dataset",
        "--preset",
        "tiny",
        "--transcripts",
        fa.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("labels/labels.json")).unwrap()).unwrap();
    assert_eq!(labels["genes"], serde_json::json!(["RUNX1", "ETV6"]));
}

#[test]
fn an_unknown_gene_fails_with_the_symbol_and_the_fix_and_writes_nothing() {
    let url = ensembl_server(Arc::default());
    let dir = tempfile::tempdir().unwrap();
    let fa = dir.path().join("t.fa");
    let out = kgf_step(&[
        "transcripts",
        "--ensembl-url",
        &url,
        "--genes",
        "RUNX1,NOPE1",
        "--out",
        fa.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("knows no gene 'NOPE1'") && err.contains("--genes"),
        "{err}"
    );
    assert!(!fa.exists(), "no partial FASTA left behind");
    let out = kgf_step(&[
        "transcripts",
        "--ensembl-url",
        "ftp://x",
        "--out",
        fa.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("http:// or https://"));
}

/// A FASTA of our own: three genes, two isoforms of the first (the second skips its middle),
/// long enough for the tiny preset's blocks and fusions.
fn own_fasta() -> String {
    let runx1 = sequence(11, 900);
    let skipped = format!("{}{}", &runx1[..300], &runx1[600..]);
    let records = [
        ("RUNX1|RUNX1-201", runx1.clone()),
        ("RUNX1|RUNX1-202", skipped),
        ("ETV6|ETV6-201", sequence(12, 700)),
        ("PAX5|PAX5-201", sequence(13, 650)),
    ];
    records
        .iter()
        .map(|(h, seq)| {
            let lines: Vec<&str> = (0..seq.len())
                .step_by(70)
                .map(|i| &seq[i..(i + 70).min(seq.len())])
                .collect();
            format!(">{h}\n{}\n", lines.join("\n"))
        })
        .collect()
}

fn dataset_from(transcripts: &str, out: &Path, env: &[(&str, String)]) -> std::process::Output {
    let out = out.to_str().unwrap();
    common::kgf_step(
        &[
            "dataset",
            "--preset",
            "tiny",
            "--seed",
            "4",
            "--transcripts",
            transcripts,
            "--out",
            out,
        ],
        env,
    )
}

#[test]
fn dataset_reads_a_fasta_from_s3_as_from_the_local_file() {
    let s3 = common::s3("kgf-fasta");
    let fasta = own_fasta();
    let key = "references/panel.fa";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = kgf_step::store::Client::new(s3.config()).unwrap();
        client
            .put(&s3.bucket, key, fasta.clone().into_bytes().into())
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let local_fa = dir.path().join("panel.fa");
    std::fs::write(&local_fa, &fasta).unwrap();
    let uri = format!("s3://{}/{key}", s3.bucket);
    let (remote, local) = (dir.path().join("remote"), dir.path().join("local"));
    for (src, out, env) in [
        (uri.as_str(), &remote, s3.env()),
        (local_fa.to_str().unwrap(), &local, vec![]),
    ] {
        let o = dataset_from(src, out, &env);
        assert!(
            o.status.success(),
            "dataset --transcripts {src}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for f in [
        "train/gc.npy",
        "train/fc.npy",
        "val/gc.npy",
        "val/fc.npy",
        "test/gc.npy",
        "test/fc.npy",
        "labels/vocab.txt",
    ] {
        let (a, b) = (
            std::fs::read(remote.join(f)).unwrap(),
            std::fs::read(local.join(f)).unwrap(),
        );
        assert!(
            !a.is_empty() && a == b,
            "{f} differs between s3:// and the local file"
        );
    }
    let labels = |d: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(d.join("labels/labels.json")).unwrap()).unwrap()
    };
    let (mut a, mut b) = (labels(&remote), labels(&local));
    assert_eq!(a["config"]["transcripts"], serde_json::json!(uri));
    assert_eq!(a["genes"], serde_json::json!(["RUNX1", "ETV6", "PAX5"]));
    // The label maps differ only in where the transcripts came from.
    a["config"]["transcripts"] = serde_json::Value::Null;
    b["config"]["transcripts"] = serde_json::Value::Null;
    assert_eq!(a, b);
}

#[test]
fn a_missing_s3_fasta_fails_with_the_uri_and_the_fix_and_writes_nothing() {
    let s3 = common::s3("kgf-fasta-missing");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let fails = |uri: &str, env: &[(&str, String)]| -> String {
        let o = dataset_from(uri, &out, env);
        assert!(!o.status.success(), "dataset --transcripts {uri} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    let missing = format!("s3://{}/references/missing.fa", s3.bucket);
    let err = fails(&missing, &s3.env());
    assert!(
        err.contains(&format!("cannot read transcripts from {missing}"))
            && err.contains("has no object \"references/missing.fa\"")
            && err.contains(&format!("aws s3 cp panel.fa {missing}")),
        "{err}"
    );
    assert!(
        !out.exists(),
        "nothing is written when the FASTA is missing"
    );

    let no_bucket = format!("s3://{}-gone/panel.fa", s3.bucket);
    let err = fails(&no_bucket, &s3.env());
    assert!(
        err.contains(&no_bucket) && err.contains("has no bucket") && err.contains(&s3.endpoint),
        "{err}"
    );

    let mut wrong = s3.env();
    for (k, v) in wrong.iter_mut() {
        if *k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let err = fails(&missing, &wrong);
    assert!(
        err.contains(&missing) && err.contains("refused") && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-secret"),
        "the secret is never printed"
    );
    assert!(!out.exists());
}
