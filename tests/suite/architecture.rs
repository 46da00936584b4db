//! The map and the layering of `src/` (ARCHITECTURE.md), checked on every test run:
//! - every `src/` file and every top-level folder of the repository is named in ARCHITECTURE.md;
//! - a top-level module imports only from layers below its own (`LAYERS`), so no two folders
//!   import each other;
//! - no import cycle between files (a parent `mod.rs` may re-export its children; a child then
//!   takes what it needs from a sibling, never from the parent that imports it).
//!
//! Imports are read from `crate::…` / `super::…` / `self::…` paths in the code (comments and the
//! `#[cfg(test)] mod tests` block at a file's end are skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. A module may import from lower ranks only;
/// modules of the same rank are independent of each other.
const LAYERS: &[(&str, u32)] = &[
    ("limits", 0),
    ("error", 1),
    ("config", 2),
    ("input", 3),
    ("weights", 3),
    ("knowledge", 3),
    ("model", 4),
    ("eval", 4),
    ("checkpoint", 5),
    ("pipeline", 6),
    ("bundle", 7),
    ("web", 8),
    ("lib", 9),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/model/clip.rs` → `["model", "clip"]`; `src/input/preprocess/mod.rs` → `["input", "preprocess"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel.iter().skip(1).map(|s| s.to_string_lossy().into_owned()).collect();
    let last = segs.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        segs.push(stem.to_string());
    }
    segs
}

/// The code of a file without comments and without a trailing `#[cfg(test)] mod tests { … }`.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Module paths referenced by `crate::a::b`, `super::a`, `self::a` (resolved against `module`).
fn references(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let rest = &code[at..];
            let path: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let head = segs.remove(0);
            // The module that `super` / `self` names, for a file at `module`.
            let mut base: Vec<String> = match head {
                "crate" => vec![],
                "self" => module.to_vec(),
                // In `a/b.rs` and in `a/b/mod.rs` (both module a::b), `super` is `a`.
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
            base.extend(segs.iter().map(|s| s.to_string()));
            out.push(base);
        }
    }
    out
}

struct Tree {
    /// module path → file (relative to the repository root)
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Tree {
    fn load() -> Tree {
        let mut paths = Vec::new();
        rust_files(&root().join("src"), &mut paths);
        let mut files = BTreeMap::new();
        for p in paths {
            let rel = p.strip_prefix(root()).unwrap().to_path_buf();
            if rel.starts_with("src/bin") {
                continue; // entry points: they use the crate as `dermlip::…`
            }
            let module = if rel == Path::new("src/lib.rs") { vec!["lib".into()] } else { module_path(&rel) };
            files.insert(module, rel);
        }
        Tree { files }
    }

    /// The file that defines the longest module prefix of `path`.
    fn resolve(&self, path: &[String]) -> Option<&PathBuf> {
        (1..=path.len()).rev().find_map(|n| self.files.get(&path[..n]))
    }

    fn edges(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut edges = BTreeMap::new();
        for (module, rel) in &self.files {
            let text = std::fs::read_to_string(root().join(rel)).unwrap();
            let targets: BTreeSet<PathBuf> = references(&code(&text), module)
                .iter()
                .filter_map(|p| self.resolve(p))
                .filter(|t| *t != rel)
                .cloned()
                .collect();
            edges.insert(rel.clone(), targets);
        }
        edges
    }
}

fn top(rel: &Path) -> String {
    let second = rel.iter().nth(1).unwrap().to_string_lossy().into_owned();
    second.trim_end_matches(".rs").to_string()
}

fn rank(module: &str) -> u32 {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r).unwrap_or_else(|| {
        panic!(
            "src/{module}: a top-level module missing from LAYERS in tests/suite/architecture.rs and ARCHITECTURE.md"
        )
    })
}

#[test]
fn architecture_md_names_every_src_file_and_top_level_folder() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the repository root");
    let mut paths = Vec::new();
    rust_files(&root().join("src"), &mut paths);
    let mut missing: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_string_lossy().into_owned())
        .filter(|rel| !doc.contains(&format!("`{rel}`")))
        .collect();
    let mut folders: Vec<_> = std::fs::read_dir(root()).unwrap().map(|e| e.unwrap().path()).collect();
    folders.sort();
    for f in folders {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if f.is_dir() && !name.starts_with('.') && name != "node_modules" && !doc.contains(&format!("`{name}/`")) {
            missing.push(format!("{name}/"));
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name (in backticks): {missing:?}");
}

#[test]
fn folders_import_only_from_lower_layers() {
    let tree = Tree::load();
    let mut bad = Vec::new();
    for (from, targets) in tree.edges() {
        let (a, ra) = (top(&from), rank(&top(&from)));
        for to in targets {
            let b = top(&to);
            if a != b && rank(&b) >= ra {
                bad.push(format!(
                    "{} imports {} ({a} rank {ra} -> {b} rank {})",
                    from.display(),
                    to.display(),
                    rank(&b)
                ));
            }
        }
    }
    assert!(bad.is_empty(), "upward or sideways imports between folders:\n{}", bad.join("\n"));
}

#[test]
fn no_import_cycles_between_files() {
    let edges = Tree::load().edges();
    // Depth-first search; a back edge closes a cycle.
    fn visit(
        n: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                0 => visit(m, edges, state, stack, cycles),
                1 => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let names: Vec<String> = stack[i..].iter().chain([m]).map(|p| p.display().to_string()).collect();
                    cycles.push(names.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), Vec::new());
    for n in edges.keys() {
        if !state.contains_key(n) {
            visit(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The checks themselves can fail: a made-up upward import and a made-up cycle are caught.
#[test]
fn the_checks_catch_an_upward_import_and_a_cycle() {
    let module = vec!["config".to_string()];
    let refs = references("use crate::model::clip::Clip;\nlet x = super::weights::X;", &module);
    assert_eq!(refs[0], vec!["model", "clip", "Clip"]);
    assert_eq!(refs[1], vec!["weights", "X"]);
    assert!(rank("model") >= rank("config"), "config importing model must count as upward");
    let child = vec!["input".to_string(), "tokenizer".to_string(), "bpe".to_string()];
    assert_eq!(references("use super::clean::f;", &child)[0], vec!["input", "tokenizer", "clean", "f"]);
    assert_eq!(code("a // crate::model\n#[cfg(test)]\nmod tests { use super::*; }"), "a ");
}
