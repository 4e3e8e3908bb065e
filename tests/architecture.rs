//! The architecture docs/architecture.md draws, checked: every crate depends
//! on exactly the crates below it that the graph names, and no crate's
//! modules import each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each crate and the workspace crates it may use, bottom up: a crate
/// only ever names crates listed before it.
const GRAPH: &[(&str, &[&str])] = &[
    ("pspnet-tensor", &[]),
    ("pspnet-data", &[]),
    ("pspnet-kernels", &["pspnet-tensor"]),
    ("pspnet-nn", &["pspnet-kernels", "pspnet-tensor"]),
    ("pspnet-resnet", &["pspnet-kernels", "pspnet-nn", "pspnet-tensor"]),
    ("pspnet-ppm", &["pspnet-kernels", "pspnet-nn", "pspnet-tensor"]),
    ("pspnet-weights", &["pspnet-tensor"]),
    (
        "pspnet-model",
        &["pspnet-kernels", "pspnet-nn", "pspnet-ppm", "pspnet-resnet", "pspnet-tensor", "pspnet-weights"],
    ),
    (
        "pspnet-train",
        &[
            "pspnet-data",
            "pspnet-kernels",
            "pspnet-model",
            "pspnet-nn",
            "pspnet-ppm",
            "pspnet-resnet",
            "pspnet-tensor",
            "pspnet-weights",
        ],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace crates a manifest lists among its normal dependencies
/// (every `[dependencies]` and `[target.*.dependencies]` table).
fn workspace_dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies =
                line == "[dependencies]" || (line.starts_with("[target.") && line.ends_with(".dependencies]"));
        } else if in_dependencies && line.starts_with("pspnet") {
            let name = line.split(['.', '=', ' ']).next().unwrap();
            found.insert(name.to_string());
        }
    }
    found
}

/// The packages on top: `pspnet` (binary and facade), `xtask`, and the
/// Python package, which reaches the engine through the facade only; with
/// the workspace crates each uses.
const TOP: &[(&str, &[&str])] = &[
    (
        ".",
        &[
            "pspnet-data",
            "pspnet-kernels",
            "pspnet-model",
            "pspnet-nn",
            "pspnet-ppm",
            "pspnet-resnet",
            "pspnet-tensor",
            "pspnet-train",
            "pspnet-weights",
        ],
    ),
    (
        "xtask",
        &[
            "pspnet-data",
            "pspnet-kernels",
            "pspnet-model",
            "pspnet-ppm",
            "pspnet-tensor",
            "pspnet-train",
            "pspnet-weights",
        ],
    ),
    ("python", &["pspnet"]),
];

#[test]
fn crates_depend_only_on_the_crates_below_them() {
    for (i, (name, allowed)) in GRAPH.iter().enumerate() {
        let below: BTreeSet<&str> = GRAPH[..i].iter().map(|(n, _)| *n).collect();
        assert!(allowed.iter().all(|d| below.contains(d)), "{name}: the graph itself names a crate above it");
        let manifest = root().join("crates").join(name).join("Cargo.toml");
        let found = workspace_dependencies(&manifest);
        let allowed: BTreeSet<String> = allowed.iter().map(|d| d.to_string()).collect();
        assert_eq!(found, allowed, "{name}: its dependencies differ from docs/architecture.md's graph");
    }
    let crates: BTreeSet<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = GRAPH.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(crates, listed, "every crate has its place in the graph");
    for (dir, allowed) in TOP {
        let allowed: BTreeSet<String> = allowed.iter().map(|d| d.to_string()).collect();
        assert_eq!(workspace_dependencies(&root().join(dir).join("Cargo.toml")), allowed, "{dir}");
    }
}

/// A source file's code without comments and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut iter = text.lines().peekable();
    while let Some(line) = iter.next() {
        let trimmed = line.trim();
        let next = iter.peek().map_or("", |l| l.trim());
        if trimmed.starts_with("#[cfg(") && trimmed.contains("test") && next.starts_with("mod tests") {
            break;
        }
        lines.push(line.split("//").next().unwrap_or_default());
    }
    lines.join("\n")
}

/// The paths a `use` tree starting right after `crate::` or `super::` names:
/// `{a, b::{c, d}}` gives `a`, `b::c`, `b::d`.
fn use_paths(text: &str) -> Vec<String> {
    fn tree(chars: &[char], i: &mut usize, prefix: &str, out: &mut Vec<String>) {
        let mut path = prefix.to_string();
        while *i < chars.len() {
            let c = chars[*i];
            if c.is_alphanumeric() || c == '_' || c == ':' {
                path.push(c);
                *i += 1;
            } else if c == '{' {
                *i += 1;
                loop {
                    tree(chars, i, &path, out);
                    match chars.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        Some(c) if c.is_whitespace() => *i += 1,
                        _ => return,
                    }
                }
            } else if c.is_whitespace() && path == prefix {
                *i += 1;
            } else {
                break;
            }
        }
        if path != prefix {
            out.push(path);
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    tree(&chars, &mut i, "", &mut out);
    out
}

/// Module name (`gemm::driver`, `` for the crate root) of each file under `src`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                found.insert(parts.join("::"), code(&path));
            }
        }
    }
    found
}

/// Which sibling modules of a crate import which, through `crate::` and
/// `super::` paths (names re-exported at the crate root lead to the module
/// that defines them).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut reexports = BTreeMap::new();
    for line in modules.get("").map(String::as_str).unwrap_or_default().split(';') {
        if let Some(rest) = line.trim().strip_prefix("pub use ").or_else(|| line.trim().strip_prefix("pub(crate) use "))
        {
            for path in use_paths(rest) {
                let segments: Vec<&str> = path.split("::").collect();
                if let [module @ .., name] = segments.as_slice() {
                    reexports.insert(name.to_string(), module.join("::"));
                }
            }
        }
    }
    let resolve = |path: &str| -> Option<String> {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        (1..=segments.len())
            .rev()
            .map(|k| segments[..k].join("::"))
            .find(|m| modules.contains_key(m) && !m.is_empty())
            .or_else(|| segments.first().and_then(|s| reexports.get(*s)).filter(|m| modules.contains_key(*m)).cloned())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut targets = BTreeSet::new();
        for (keyword, base) in [("crate::", ""), ("super::", parent)] {
            for piece in text.split(keyword).skip(1) {
                for path in use_paths(piece) {
                    let full = if base.is_empty() { path } else { format!("{base}::{path}") };
                    if let Some(target) = resolve(&full) {
                        targets.insert(target);
                    }
                }
            }
        }
        for target in targets {
            if let Some((from, to)) = siblings(module, &target) {
                edges.entry(from).or_default().insert(to);
            }
        }
        edges.entry(module.clone()).or_default();
    }
    edges
}

/// An import of module `to` by module `from`, as the import between the
/// two children of their deepest common ancestor that hold them
/// (`gemm::epilogue` using `algorithm` is `gemm` using `algorithm`); none
/// where one holds the other.
fn siblings(from: &str, to: &str) -> Option<(String, String)> {
    let (a, b): (Vec<&str>, Vec<&str>) = (from.split("::").collect(), to.split("::").collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == a.len() || common == b.len() || from.is_empty() || to.is_empty() {
        return None;
    }
    Some((a[..=common].join("::"), b[..=common].join("::")))
}

/// A cycle in the import graph, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            return Some(path[start..].iter().cloned().chain([node.to_string()]).collect());
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        let found = edges.get(node).into_iter().flatten().find_map(|next| visit(next, edges, done, path));
        path.pop();
        found
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let sources = GRAPH
        .iter()
        .map(|(name, _)| root().join("crates").join(name).join("src"))
        .chain(["src", "python/src"].map(|dir| root().join(dir)));
    for src in sources {
        let edges = imports(&src);
        assert!(edges.len() > 1 || src.ends_with("pspnet-nn/src"), "{}: no modules read", src.display());
        assert_eq!(cycle(&edges), None, "{}: modules import each other in a cycle", src.display());
    }
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    assert_eq!(
        use_paths("{Isa, gemm::{self, ConvJob}, winograd};"),
        ["Isa", "gemm::self", "gemm::ConvJob", "winograd"]
    );
    let kernels = imports(&root().join("crates/pspnet-kernels/src"));
    assert!(kernels["conv"].contains("algorithm") && kernels["algorithm"].contains("gemm"), "{kernels:?}");
    assert!(
        kernels["winograd"].contains("gemm") && kernels["winograd::multiply"].contains("winograd::plan"),
        "{kernels:?}"
    );
    assert_eq!(siblings("gemm::epilogue", "algorithm"), Some(("gemm".into(), "algorithm".into())));
    assert_eq!(siblings("winograd", "winograd::plan"), None);
    let mut looped = kernels.clone();
    looped.get_mut("gemm").unwrap().insert("conv".to_string());
    assert!(cycle(&looped).is_some_and(|c| c.contains(&"gemm".to_string())));
}
