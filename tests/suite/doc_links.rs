//! Every relative link in the project's Markdown (README.md, ARCHITECTURE.md, docs/*.md, the
//! other READMEs) points at a file or folder that exists, and every `#anchor` into a Markdown
//! file names one of its headings.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files() -> Vec<PathBuf> {
    let r = root();
    let mut files = vec![r.join("README.md"), r.join("ARCHITECTURE.md"), r.join("trainer/README.md")];
    for dir in ["docs", "data", "assets", "pkg", "tests/reference", "tests/fixtures"] {
        let mut stack = vec![r.join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "md") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    files
}

/// `[text](target)` link targets outside code spans and fenced blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans: a `[x](y)` inside backticks is an example, not a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's heading anchors: lowercase, spaces to `-`, punctuation other than `-`/`_` dropped.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:") || target.starts_with("data:")
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let files = markdown_files();
    assert!(files.len() >= 8, "found only {} Markdown files", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in links(&text) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            let target = target.split_whitespace().next().unwrap_or("").trim_matches(['<', '>']);
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let shown = format!("{}: {target}", file.strip_prefix(root()).unwrap_or(file).display());
            if !resolved.exists() {
                broken.push(format!("{shown} (no such file)"));
                continue;
            }
            if let Some(a) = anchor.filter(|a| !a.is_empty()) {
                if resolved.extension().is_some_and(|x| x == "md")
                    && !anchors(&std::fs::read_to_string(&resolved).unwrap()).iter().any(|h| h == a)
                {
                    broken.push(format!("{shown} (no heading #{a})"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_sees_links_and_headings() {
    let md = "See [the map](ARCHITECTURE.md) and [a](docs/x.md#top).\n`[not](a-link)`\n```\n[no](link)\n```\n## Threat model\n";
    assert_eq!(links(md), vec!["ARCHITECTURE.md", "docs/x.md#top"]);
    assert_eq!(anchors(md), vec!["threat-model"]);
    assert!(Path::new(&root()).join("README.md").exists());
}
