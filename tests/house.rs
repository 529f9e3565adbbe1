//! The house's shape, checked on the source: no files use each other in a circle at any depth
//! (so each file can be read, and changed, without the ones above it), the top-level modules
//! neither, and the adapters sit below the steps: they reach nothing but other adapters and the
//! foundation under them.
//!
//! A file uses another when its code (tests, comments and string literals left out) names an item
//! of the other through a path: `crate::a::b`, `super::x` (from nested modules too), `self::x`, a
//! child module's name, or a module it imported. A path is followed through re-exports to the file
//! that defines the item, and a `pub use` is not a use of its own: a folder's `mod.rs` that hands
//! its children's names on sits beside them, not above them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The adapters: they drive one outside system each and must know nothing of steps.
const ADAPTERS: &[&str] = &["kube", "helm", "kustomize", "ssh", "exec"];

/// What the adapters may stand on besides each other.
const FOUNDATION: &[&str] = &["gate", "fix", "secret", "wait", "diff"];

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// The code's tokens without comments, string and character literals or lifetimes: what is left
/// can be matched for paths and braces without a literal `{` or `crate::` in a message fooling it.
fn tokens(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if let Some(hashes) = raw_string_at(&chars, i) {
            // A raw string r#"…"# (or br"…"): it ends at a quote followed by as many hashes.
            i += chars[i..].iter().position(|c| *c == '"').unwrap() + 1;
            while i < chars.len()
                && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#'))
            {
                i += 1;
            }
            i += 1 + hashes;
        } else if c == '\'' {
            if next == Some('\\') {
                // Past the quote, the backslash and the escaped character.
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // A byte string's or raw string's prefix is no identifier.
            if !(matches!(word.as_str(), "b" | "br") && chars.get(i) == Some(&'"')) {
                out.push(Tok::Ident(word));
            }
        } else if c == ':' && next == Some(':') {
            out.push(Tok::Path);
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Whether a raw string (`r"`, `r#"`, `br"`) starts at `i`; its number of hashes.
fn raw_string_at(chars: &[char], i: usize) -> Option<usize> {
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    if i > 0 && ident_char(chars[i - 1]) {
        return None;
    }
    let r = match (chars.get(i), chars.get(i + 1)) {
        (Some('r'), _) => i,
        (Some('b'), Some('r')) => i + 1,
        _ => return None,
    };
    let hashes = chars[r + 1..].iter().take_while(|c| **c == '#').count();
    (chars.get(r + 1 + hashes) == Some(&'"')).then_some(hashes)
}

fn is_ident(t: Option<&Tok>, word: &str) -> bool {
    matches!(t, Some(Tok::Ident(w)) if w == word)
}

/// The index after the item that starts at `i`: its `;`, or its block's closing brace.
fn item_end(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// What each file says

/// A module path from the crate root, e.g. `["components", "builtin"]`.
type Module = Vec<String>;

/// One `use` entry: the path as written, and the name it brings into scope (`None` for a glob).
#[derive(Clone, Debug)]
struct UseEntry {
    path: Vec<String>,
    name: Option<String>,
}

/// A path named in a module: in a `use`, a `pub use` (a re-export), or the code.
#[derive(Clone, Debug)]
struct Named {
    module: Module,
    path: Vec<String>,
    reexport: bool,
    alias: Option<String>,
}

#[derive(Default)]
struct Parsed {
    /// Inline modules (`mod x { … }`).
    inline: Vec<Module>,
    named: Vec<Named>,
    /// Items defined at a module's top level: the module, the name, and whether it is a type (a
    /// module may define a function `plan` and import a module `plan`: two namespaces).
    defined: Vec<(Module, String, bool)>,
}

/// `a::b::{c, d::{self, e as f}, g::*}` → its entries.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<UseEntry>) {
    // `x as y` names `y`.
    let named = |i: &mut usize, default: Option<&String>| {
        if is_ident(toks.get(*i), "as")
            && let Some(Tok::Ident(alias)) = toks.get(*i + 1)
        {
            *i += 2;
            return Some(alias.clone());
        }
        default.cloned()
    };
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i) {
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(toks.get(*i), Some(Tok::Punct('}')) | None) {
                    use_tree(toks, i, &path, out);
                    if toks.get(*i) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(UseEntry { path, name: None });
                return;
            }
            Some(Tok::Ident(w))
                if w == "self" && !prefix.is_empty() && path.len() == prefix.len() =>
            {
                // `{self}` in a group: the group's module itself.
                *i += 1;
                let name = named(i, prefix.last());
                out.push(UseEntry { path, name });
                return;
            }
            Some(Tok::Ident(w)) => {
                path.push(w.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::Path) {
                    *i += 1;
                    continue;
                }
                let name = named(i, path.last());
                out.push(UseEntry { path, name });
                return;
            }
            _ => return,
        }
    }
}

/// The uses, re-exports, inline modules and paths of one file's tokens (the file's module is
/// `module`); items under `#[cfg(test)]` are left out.
fn parse(toks: &[Tok], module: &Module) -> Parsed {
    let mut parsed = Parsed::default();
    // The module each open brace belongs to (inline modules push their own).
    let mut scopes: Vec<(usize, Module)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let current = |scopes: &Vec<(usize, Module)>| {
        scopes
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| module.clone())
    };
    while i < toks.len() {
        // `#[cfg(test)]` and the item under it.
        if toks[i] == Tok::Punct('#')
            && toks.get(i + 1) == Some(&Tok::Punct('['))
            && is_ident(toks.get(i + 2), "cfg")
            && toks.get(i + 3) == Some(&Tok::Punct('('))
            && is_ident(toks.get(i + 4), "test")
            && toks.get(i + 5) == Some(&Tok::Punct(')'))
        {
            i = item_end(toks, i + 7);
            continue;
        }
        let top = scopes.last().map(|(d, _)| *d).unwrap_or(0);
        if depth == top
            && let (Tok::Ident(kw), Some(Tok::Ident(name))) = (&toks[i], toks.get(i + 1))
        {
            let kind = match kw.as_str() {
                "fn" | "static" => Some(false),
                "const" if name != "fn" => Some(false),
                "struct" | "enum" | "trait" | "type" | "union" => Some(true),
                _ => None,
            };
            if let Some(is_type) = kind {
                parsed
                    .defined
                    .push((current(&scopes), name.clone(), is_type));
            }
        }
        match &toks[i] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if scopes.last().is_some_and(|(d, _)| *d == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    let mut inner = current(&scopes);
                    inner.push(name.clone());
                    parsed.inline.push(inner.clone());
                    depth += 1;
                    scopes.push((depth, inner));
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                // `pub use`, `pub(crate) use`, `pub(super) use`: a re-export.
                let reexport = (1..=4).any(|back| {
                    i >= back
                        && is_ident(toks.get(i - back), "pub")
                        && (back == 1 || toks.get(i - 1) == Some(&Tok::Punct(')')))
                });
                let mut entries = Vec::new();
                let mut at = i + 1;
                if toks.get(at) == Some(&Tok::Path) {
                    at += 1;
                }
                use_tree(toks, &mut at, &[], &mut entries);
                let m = current(&scopes);
                for e in entries {
                    parsed.named.push(Named {
                        module: m.clone(),
                        path: e.path,
                        reexport,
                        alias: e.name,
                    });
                }
                i = at;
                continue;
            }
            Tok::Ident(first) if toks.get(i + 1) == Some(&Tok::Path) => {
                let starts = i == 0 || toks[i - 1] != Tok::Path;
                if starts {
                    let mut path = vec![first.clone()];
                    let mut at = i + 1;
                    while toks.get(at) == Some(&Tok::Path) {
                        match toks.get(at + 1) {
                            Some(Tok::Ident(seg)) => {
                                path.push(seg.clone());
                                at += 2;
                            }
                            _ => break,
                        }
                    }
                    parsed.named.push(Named {
                        module: current(&scopes),
                        path,
                        reexport: false,
                        alias: None,
                    });
                    i = at;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

// ---------------------------------------------------------------------------------------------
// The graph

struct Crate {
    /// Every module (files and inline modules) → the file it is in (relative to `src`).
    modules: BTreeMap<Module, String>,
    /// Module → the names it brings into scope with `use` (module aliases and items) → the path.
    scope: BTreeMap<Module, BTreeMap<String, Vec<String>>>,
    /// Module → the items it defines → whether each is a type.
    defined: BTreeMap<Module, BTreeMap<String, bool>>,
    named: Vec<Named>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn read_crate(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut krate = Crate {
        modules: BTreeMap::new(),
        scope: BTreeMap::new(),
        defined: BTreeMap::new(),
        named: Vec::new(),
    };
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        // The binary's `main.rs` and the crate root only declare and run: they sit above all.
        if rel == Path::new("main.rs") || rel == Path::new("lib.rs") {
            continue;
        }
        let name = rel.display().to_string();
        let module = module_of(rel);
        let parsed = parse(&tokens(&std::fs::read_to_string(&file).unwrap()), &module);
        krate.modules.insert(module.clone(), name.clone());
        for inline in parsed.inline {
            krate.modules.insert(inline, name.clone());
        }
        krate.named.extend(parsed.named);
        for (module, name, is_type) in parsed.defined {
            krate
                .defined
                .entry(module)
                .or_default()
                .insert(name, is_type);
        }
    }
    for n in &krate.named {
        let Some(alias) = &n.alias else { continue };
        krate
            .scope
            .entry(n.module.clone())
            .or_default()
            .insert(alias.clone(), n.path.clone());
    }
    krate
}

impl Crate {
    /// The module a path's first segments name, and the segments after it; `None` for a path
    /// outside the crate (`std::`, `kube::`, a type's associated item).
    fn start<'p>(&self, from: &Module, path: &'p [String]) -> Option<(Module, &'p [String])> {
        let first = path.first()?;
        match first.as_str() {
            "crate" | "$crate" => Some((Vec::new(), &path[1..])),
            "self" => Some((from.clone(), &path[1..])),
            "super" => {
                let mut m = from.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    m.pop();
                    rest = &rest[1..];
                }
                Some((m, rest))
            }
            _ => {
                let mut child = from.clone();
                child.push(first.clone());
                if self.modules.contains_key(&child) {
                    return Some((child, &path[1..]));
                }
                None
            }
        }
    }

    /// The file that defines what `path`, named in module `from`, names, and whether the path
    /// names a module itself rather than an item of it; `depth` bounds re-export chains.
    fn resolve(&self, from: &Module, path: &[String], depth: usize) -> Option<(String, bool)> {
        if depth > 16 {
            return None;
        }
        let (mut module, mut rest) = match self.start(from, path) {
            Some(found) => found,
            // A name `from` imported: follow the import.
            None => {
                let imported = self.scope.get(from)?.get(path.first()?)?;
                if imported.as_slice() == &path[..1] {
                    return None;
                }
                let mut full = imported.clone();
                full.extend_from_slice(&path[1..]);
                return self.resolve(from, &full, depth + 1);
            }
        };
        while let Some(seg) = rest.first() {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.modules.contains_key(&child) {
                module = child;
                rest = &rest[1..];
            } else {
                break;
            }
        }
        // An item the module imported (a re-export, or a private `use` its children see): where
        // it comes from. A function or type of its own by that name is meant where the path ends
        // there, or goes on past a type.
        let own = rest.first().and_then(|item| {
            self.defined
                .get(&module)
                .and_then(|d| d.get(item))
                .filter(|is_type| **is_type || rest.len() == 1)
        });
        if own.is_none()
            && let Some(item) = rest.first()
            && let Some(source) = self.scope.get(&module).and_then(|r| r.get(item))
        {
            let mut full = source.clone();
            full.extend_from_slice(&rest[1..]);
            return self.resolve(&module, &full, depth + 1);
        }
        self.modules
            .get(&module)
            .map(|f| (f.clone(), rest.is_empty()))
    }

    /// File → the files it uses.
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in self.modules.values() {
            graph.entry(file.clone()).or_default();
        }
        for n in self.named.iter().filter(|n| !n.reexport) {
            let Some(from) = self.modules.get(&n.module) else {
                continue;
            };
            // Importing a module is no use of it: the paths through the name are.
            if let Some((to, module)) = self.resolve(&n.module, &n.path, 0)
                && &to != from
                && !(module && n.alias.is_some())
            {
                graph.get_mut(from).unwrap().insert(to);
            }
        }
        graph
    }
}

/// One cycle through `start`, if there is one, as `a → b → a`.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<String> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then(|| path.join(" → "))
}

fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    graph.keys().filter_map(|m| cycle_from(graph, m)).collect()
}

/// The top-level module a file belongs to (`components/builtin/minio.rs` → `components`).
fn top(file: &str) -> String {
    file.split('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".rs")
        .to_string()
}

fn top_graph(files: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in files {
        let entry = graph.entry(top(from)).or_default();
        for to in tos {
            if top(to) != top(from) {
                entry.insert(top(to));
            }
        }
    }
    graph
}

/// Every file an adapter reaches that is neither an adapter nor the foundation, with the way.
fn adapters_above(files: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let allowed =
        |f: &str| ADAPTERS.contains(&top(f).as_str()) || FOUNDATION.contains(&top(f).as_str());
    let mut found = Vec::new();
    for start in files.keys().filter(|f| ADAPTERS.contains(&top(f).as_str())) {
        let mut way: BTreeMap<String, String> = BTreeMap::new();
        let mut todo = vec![start.clone()];
        while let Some(at) = todo.pop() {
            for next in files.get(&at).into_iter().flatten() {
                if next != start && !way.contains_key(next) {
                    way.insert(next.clone(), at.clone());
                    if allowed(next) {
                        todo.push(next.clone());
                    } else {
                        let mut chain = vec![next.clone()];
                        let mut back = next.clone();
                        while let Some(prev) = way.get(&back) {
                            chain.push(prev.clone());
                            if prev == start {
                                break;
                            }
                            back = prev.clone();
                        }
                        chain.reverse();
                        found.push(chain.join(" → "));
                    }
                }
            }
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn listed(set: impl IntoIterator<Item = String>) -> String {
    set.into_iter().collect::<Vec<_>>().join("\n  ")
}

#[test]
fn the_files_use_each_other_in_no_circle_at_any_depth() {
    let graph = read_crate(&src()).graph();
    assert!(graph.len() > 60, "the source was found: {graph:?}");
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "files that use each other in a circle:\n  {}",
        listed(found)
    );
}

#[test]
fn the_modules_use_each_other_in_no_circle() {
    let graph = top_graph(&read_crate(&src()).graph());
    assert!(graph.len() > 20, "the source was found: {graph:?}");
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "modules that use each other in a circle:\n  {}",
        listed(found)
    );
}

#[test]
fn the_adapters_know_nothing_of_the_layers_above_them() {
    let graph = read_crate(&src()).graph();
    let above = adapters_above(&graph);
    assert!(
        above.is_empty(),
        "adapters ({}) that reach past {}:\n  {}",
        ADAPTERS.join(", "),
        FOUNDATION.join(", "),
        listed(above)
    );
}

#[test]
fn clap_is_used_only_in_cli() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        if rel == "cli.rs" {
            continue;
        }
        let toks = tokens(&std::fs::read_to_string(&file).unwrap());
        let named = parse(&toks, &module_of(Path::new(&rel)));
        for n in named.named {
            if matches!(
                n.path.first().map(String::as_str),
                Some("clap" | "clap_complete")
            ) {
                found.push(format!("{rel}: {}", n.path.join("::")));
            }
        }
    }
    assert!(found.is_empty(), "clap outside cli:\n  {}", listed(found));
}

// ---------------------------------------------------------------------------------------------
// The checker, checked

/// A crate of `files` (path under `src/` → text) in a fresh directory.
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, BTreeMap<String, BTreeSet<String>>) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let graph = read_crate(dir.path()).graph();
    (dir, graph)
}

#[test]
fn the_checker_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycle_from(&graph, "a").as_deref(), Some("a → b → c → a"));
    assert_eq!(cycle_from(&graph, "d"), None);
}

#[test]
fn the_checker_finds_a_circle_through_super_and_a_childs_name() {
    // The folder's mod.rs calls its child by name; the child takes the folder's type with super::.
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod parts;"),
        (
            "parts/mod.rs",
            "pub mod one;\npub struct Part;\npub fn all() -> usize { one::count() }\n",
        ),
        (
            "parts/one.rs",
            "use super::Part;\npub fn count() -> usize { let _p = Part; 1 }\n",
        ),
    ]);
    assert_eq!(
        cycle_from(&graph, "parts/mod.rs").as_deref(),
        Some("parts/mod.rs → parts/one.rs → parts/mod.rs")
    );
}

#[test]
fn the_checker_finds_a_circle_through_a_nested_module_and_self() {
    // `super::super` from a module nested in a file reaches past the file; `self::` inside the
    // nested module stays in it.
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;"),
        (
            "a.rs",
            "pub struct A;\nmod inner {\n    pub fn f() -> crate::b::B { self::g(); crate::b::B }\n    fn g() {}\n}\n",
        ),
        ("b/mod.rs", "pub mod deep;\npub struct B;\n"),
        (
            "b/deep.rs",
            "mod nested {\n    pub fn h() { let _ = super::super::super::a::A; }\n}\n",
        ),
    ]);
    assert_eq!(graph["a.rs"], BTreeSet::from(["b/mod.rs".to_string()]));
    assert_eq!(graph["b/deep.rs"], BTreeSet::from(["a.rs".to_string()]));
    // b/mod.rs does not use b/deep.rs: no circle yet.
    assert!(cycles(&graph).is_empty(), "{graph:?}");
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;"),
        (
            "a.rs",
            "pub struct A;\npub fn f() -> crate::b::B { crate::b::B }\n",
        ),
        (
            "b/mod.rs",
            "pub mod deep;\npub struct B;\nfn use_deep() { self::deep::h(); }\n",
        ),
        (
            "b/deep.rs",
            "mod nested {\n    pub fn h() { let _ = super::super::super::a::A; }\n}\npub fn h() { nested::h() }\n",
        ),
    ]);
    assert_eq!(
        cycle_from(&graph, "a.rs").as_deref(),
        Some("a.rs → b/mod.rs → b/deep.rs → a.rs")
    );
}

#[test]
fn a_re_export_is_followed_to_the_file_that_defines_the_item() {
    // mod.rs hands its children's names on and its child uses a sibling through that face:
    // neither is a circle, and the use lands on the sibling.
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod kit;\npub mod user;"),
        (
            "kit/mod.rs",
            "mod a;\nmod b;\npub use a::{Alpha, helper as aid};\npub use b::Beta;\n",
        ),
        ("kit/a.rs", "pub struct Alpha;\npub fn helper() {}\n"),
        ("kit/b.rs", "use super::Alpha;\npub struct Beta(Alpha);\n"),
        (
            "user.rs",
            "use crate::kit::{self, Beta};\n// crate::nothing::here in a comment\nfn f() { kit::aid(); let _ = \"crate::nor::here\"; }\n",
        ),
    ]);
    assert!(cycles(&graph).is_empty(), "{graph:?}");
    assert_eq!(graph["kit/b.rs"], BTreeSet::from(["kit/a.rs".to_string()]));
    assert!(
        graph["kit/mod.rs"].is_empty(),
        "a re-export is no use: {graph:?}"
    );
    assert_eq!(
        graph["user.rs"],
        BTreeSet::from(["kit/a.rs".to_string(), "kit/b.rs".to_string()])
    );
}

#[test]
fn a_function_and_an_imported_module_of_one_name_are_told_apart() {
    // `verbs::plan::plan()` is the function in verbs/plan.rs, not the module `crate::plan` that
    // verbs/plan.rs imports under the same name.
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod plan;\npub mod verbs;"),
        ("plan.rs", "pub struct Plan;\n"),
        (
            "verbs/mod.rs",
            "mod plan;\npub fn run() { plan::plan(); }\n",
        ),
        (
            "verbs/plan.rs",
            "use crate::plan::{self, Plan};\npub fn plan() -> Plan { plan::Plan }\n",
        ),
    ]);
    assert_eq!(
        graph["verbs/mod.rs"],
        BTreeSet::from(["verbs/plan.rs".to_string()])
    );
    assert_eq!(
        graph["verbs/plan.rs"],
        BTreeSet::from(["plan.rs".to_string()])
    );
}

#[test]
fn tests_literals_and_lifetimes_are_no_uses() {
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod a;\npub mod b;"),
        ("a.rs", "pub struct A;\n"),
        (
            "b.rs",
            "pub fn f<'x>(s: &'x str) -> char { let _ = r#\"crate::a::A \"quoted\" {\"#; let _ = '{'; s.chars().next().unwrap_or('}') }\n\
             #[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n",
        ),
    ]);
    assert!(graph["b.rs"].is_empty(), "{graph:?}");
}

#[test]
fn the_checker_finds_an_adapter_that_reaches_a_step() {
    let (_dir, graph) = tree(&[
        ("lib.rs", "pub mod helm;\npub mod gate;\npub mod step;"),
        ("gate.rs", "pub struct Gate;\n"),
        ("step.rs", "pub struct StepError;\n"),
        ("helm/mod.rs", "mod error;\npub use error::HelmError;\n"),
        (
            "helm/error.rs",
            "pub struct HelmError(crate::gate::Gate);\nimpl From<HelmError> for crate::step::StepError { fn from(_: HelmError) -> Self { crate::step::StepError } }\n",
        ),
    ]);
    assert_eq!(adapters_above(&graph), ["helm/error.rs → step.rs"]);
}
