//! The user documentation (README.md and docs/*.md) checked against the code, so that it tells
//! the truth today: every `kgf-up` command in a shell block parses with the real command line;
//! every YAML block is a profile (or a part of one) the real schema accepts, except a block with
//! a top-level `apiVersion` (a rendered object, not a profile); every relative link and its
//! `#anchor` exist; every page under docs/ is linked from the README; and the README stays a page
//! a newcomer reads in five minutes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;

/// The README's length limit (issue 28): what it cannot say briefly belongs in docs/.
const README_MAX_LINES: usize = 300;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as (path relative to the root, text).
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root().join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// A fenced code block: its language tag, its first line number (1-based) and its text.
struct Block {
    lang: String,
    line: usize,
    text: String,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_string(),
                    line: i + 2,
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => out.push(open.take().unwrap()),
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    out
}

/// The text outside fenced code blocks (where links and headings are).
fn prose(text: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            out.push('\n');
            continue;
        }
        if !inside {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens, and `-N`
/// for the Nth repeat of the same anchor.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text).lines() {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    seen
}

/// Every `[text](target)` link outside code blocks, with its line.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in prose(text).lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_links_every_docs_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; keep it to {README_MAX_LINES} and move the detail to a docs/ page"
    );
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap().to_string())
        .collect();
    let unlinked: Vec<String> = pages()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.starts_with("docs/") && !linked.contains(n))
        .collect();
    assert!(
        unlinked.is_empty(),
        "docs pages not linked from README.md: {unlinked:?}"
    );
}

#[test]
fn every_relative_link_and_anchor_exists() {
    let mut broken = Vec::new();
    for (name, text) in pages() {
        let dir = Path::new(&name).parent().unwrap().to_path_buf();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                root().join(&name)
            } else {
                root().join(&dir).join(file)
            };
            if !path.exists() {
                broken.push(format!("{name}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let target_text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{name}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The `kgf-up` invocations of a shell block: continued lines joined, each command of a `&&`,
/// `|` or `;` chain taken from the token that runs kgf-up (`kgf-up`, `target/debug/kgf-up`),
/// comments dropped.
fn kgf_up_commands(block: &str) -> Vec<Vec<String>> {
    let joined = block.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap();
        if line.trim_start().starts_with('#') {
            continue;
        }
        for part in line
            .split("&&")
            .flat_map(|p| p.split('|'))
            .flat_map(|p| p.split(';'))
        {
            let words: Vec<&str> = part.split_whitespace().collect();
            if let Some(at) = words
                .iter()
                .position(|w| *w == "kgf-up" || (w.ends_with("/kgf-up") && !w.contains('=')))
            {
                out.push(words[at..].iter().map(|w| w.to_string()).collect());
            }
        }
    }
    out
}

#[test]
fn every_kgf_up_command_in_the_docs_parses() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for (name, text) in pages() {
        for b in blocks(&text).iter().filter(|b| b.lang == "sh") {
            for argv in kgf_up_commands(&b.text) {
                seen += 1;
                if let Err(e) = kgf_up::cli::Cli::try_parse_from(&argv) {
                    bad.push(format!(
                        "{name} (block at line {}): `{}`: {}",
                        b.line,
                        argv.join(" "),
                        e.kind()
                    ));
                }
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} kgf-up commands found: is the parser of the blocks broken?"
    );
    assert!(
        bad.is_empty(),
        "commands the CLI refuses:\n{}",
        bad.join("\n")
    );
}

/// A YAML block as a whole profile: a fragment gets a name, and a provider named after the
/// cluster section it shows (kind when it shows none), so that the schema can check its keys.
fn as_profile(fragment: serde_json::Value) -> serde_json::Value {
    let mut p = match fragment {
        serde_json::Value::Object(m) => m,
        other => panic!("a YAML block is not a mapping: {other}"),
    };
    p.entry("name").or_insert_with(|| "docs".into());
    let cluster = p
        .entry("cluster")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .expect("cluster is a mapping");
    if !cluster.contains_key("provider") {
        let provider = ["rke2", "sim", "existing"]
            .into_iter()
            .find(|k| cluster.contains_key(*k))
            .unwrap_or("kind");
        cluster.insert("provider".into(), provider.into());
    }
    serde_json::Value::Object(p)
}

#[test]
fn every_yaml_block_in_the_docs_is_a_valid_profile() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for (name, text) in pages() {
        for b in blocks(&text).iter().filter(|b| b.lang == "yaml") {
            seen += 1;
            let at = format!("{name} (block at line {})", b.line);
            let value: serde_json::Value = match serde_saphyr::from_str(&b.text) {
                Ok(v) => v,
                Err(e) => {
                    bad.push(format!("{at}: not YAML: {e}"));
                    continue;
                }
            };
            // A Kubernetes or kind object shown as it is rendered, not a profile.
            if value.get("apiVersion").is_some() {
                continue;
            }
            // The profile is checked as JSON, whose line and column mean nothing here: the
            // message alone names the key.
            let json = as_profile(value).to_string();
            match kgf_up::profile::parse(&json, &at) {
                Ok(_) => {}
                Err(kgf_up::profile::ProfileError::Invalid { message, .. }) => {
                    bad.push(format!("{at}: {message}"))
                }
                Err(e) => bad.push(e.to_string()),
            }
        }
    }
    assert!(seen > 5, "only {seen} YAML blocks found");
    assert!(
        bad.is_empty(),
        "YAML blocks the profile schema refuses:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_link_and_anchor_readers_work() {
    let page = "# Top\n## `kgf-up plan`: what `up` would change\n## 1. Install it\n## Top\n```sh\n# not a heading](x.md)\n```\nsee [a](b.md#c) and [d](#top-1).\n";
    let a = anchors(page);
    for want in [
        "top",
        "kgf-up-plan-what-up-would-change",
        "1-install-it",
        "top-1",
    ] {
        assert!(a.contains(want), "{want} not in {a:?}");
    }
    assert_eq!(
        links(page),
        vec![(8, "b.md#c".to_string()), (8, "#top-1".to_string())]
    );
    assert_eq!(
        kgf_up_commands(
            "cargo build && target/debug/kgf-up plan \\\n  --offline   # note\nkgf-up status | head\n"
        ),
        vec![
            vec!["target/debug/kgf-up", "plan", "--offline"],
            vec!["kgf-up", "status"],
        ]
    );
}
