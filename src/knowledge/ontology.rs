//! A dermatology ontology (a tree of categories and conditions) and the aggregation of class
//! probabilities up that tree.
//!
//! The built-in tree (`data/ontology.json`, authored for this crate; choices documented in
//! `data/README.md`) has the top level of Derm1M's ontology and places every class of every
//! built-in label set. Users with the Derm1M CSVs can build the official tree instead with
//! [`Ontology::from_paths`] from the `ontology_final` column.
//!
//! Names are matched trimmed, ignoring case, with runs of whitespace as one space and `’` as `'`.
//! Every name and alias is unique in a tree, so each class maps to exactly one node.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const BUILTIN_JSON: &str = include_str!("../../data/ontology.json");

/// Name of the synthetic root above the top-level categories.
pub const ROOT: &str = "root";
/// Name of the opt-in bucket for labels that are not in the ontology.
pub const UNPLACED: &str = "unplaced";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OntologyError {
    #[error("invalid ontology JSON: {0}")]
    Json(String),
    #[error("ontology node under {parent:?} has a blank name")]
    BlankName { parent: String },
    #[error("ontology name {name:?} is used twice: under {first:?} and under {second:?}")]
    DuplicateName { name: String, first: String, second: String },
    #[error("ontology name {0:?} is reserved")]
    ReservedName(String),
    #[error("no ontology paths given (every path was empty)")]
    NoPaths,
    #[error("{labels} labels but {probs} probabilities")]
    LengthMismatch { labels: usize, probs: usize },
    #[error("labels not in the ontology: {}", quoted(.0))]
    Unplaced(Vec<String>),
    #[error("label {label:?} is given twice (positions {first} and {second})")]
    DuplicateLabel { label: String, first: usize, second: usize },
    #[error("probability of {label:?} is {value}; probabilities must be finite and non-negative")]
    BadProbability { label: String, value: f32 },
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: String,
    aliases: Vec<String>,
    parent: Option<usize>,
    children: Vec<usize>,
    depth: usize,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Other names (synonyms and spelling variants) that resolve to this node.
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }
    /// 0 for the root, 1 for a top-level category.
    pub fn depth(&self) -> usize {
        self.depth
    }
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// The aggregated probability of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProb {
    pub name: String,
    /// 0 for the root.
    pub depth: usize,
    /// `None` for the root.
    pub parent: Option<String>,
    /// Sum of the probabilities of the classes at or below this node.
    pub prob: f32,
    /// Number of classes at or below this node.
    pub n_classes: usize,
    pub is_leaf: bool,
}

/// What [`Ontology::aggregate_with`] does with labels that are not in the ontology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnplacedLabels {
    /// Fail with [`OntologyError::Unplaced`], naming them.
    #[default]
    Error,
    /// Count them in a top-level node named [`UNPLACED`], listed after the other top-level nodes.
    Bucket,
}

/// A name that [`Ontology::from_paths`] found under more than one parent, and how it was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathConflict {
    pub name: String,
    /// The parent kept (most votes; ties: first seen); [`ROOT`] for a top-level name.
    pub parent: String,
    pub votes: usize,
    /// The parents not kept, with their votes (paths naming them).
    pub rejected: Vec<(String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ontology {
    /// Pre-order: every parent comes before its children; index 0 is the root.
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct JsonNode {
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    children: Vec<JsonNode>,
}

#[derive(Serialize, Deserialize)]
struct JsonDoc {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    version: Option<String>,
    children: Vec<JsonNode>,
}

fn key(name: &str) -> String {
    name.replace(['\u{2019}', '\u{2018}'], "'").split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A tree under construction: arbitrary order, linearised by [`Draft::finish`].
struct Draft {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl Draft {
    fn new() -> Self {
        let root = Node { name: ROOT.into(), aliases: vec![], parent: None, children: vec![], depth: 0 };
        Draft { nodes: vec![root], index: HashMap::from([(ROOT.to_owned(), 0)]) }
    }

    fn add(&mut self, parent: usize, name: &str, aliases: &[String]) -> Result<usize, OntologyError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(OntologyError::BlankName { parent: self.nodes[parent].name.clone() });
        }
        let id = self.nodes.len();
        let mut keys = Vec::new();
        for n in std::iter::once(name).chain(aliases.iter().map(|a| a.trim())) {
            if n.is_empty() {
                return Err(OntologyError::BlankName { parent: self.nodes[parent].name.clone() });
            }
            let k = key(n);
            if k == ROOT || k == UNPLACED {
                return Err(OntologyError::ReservedName(n.to_owned()));
            }
            if let Some(&other) = self.index.get(&k) {
                let first = self.nodes[other].parent.map_or(ROOT, |p| &self.nodes[p].name).to_owned();
                return Err(OntologyError::DuplicateName {
                    name: n.to_owned(),
                    first,
                    second: self.nodes[parent].name.clone(),
                });
            }
            if keys.contains(&k) {
                return Err(OntologyError::DuplicateName {
                    name: n.to_owned(),
                    first: name.to_owned(),
                    second: name.to_owned(),
                });
            }
            keys.push(k);
        }
        for k in keys {
            self.index.insert(k, id);
        }
        let aliases = aliases.iter().map(|a| a.trim().to_owned()).collect();
        self.nodes.push(Node { name: name.to_owned(), aliases, parent: Some(parent), children: vec![], depth: 0 });
        self.nodes[parent].children.push(id);
        Ok(id)
    }

    /// Re-indexes the nodes in pre-order and sets depths.
    fn finish(self) -> Ontology {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            order.push(i);
            stack.extend(self.nodes[i].children.iter().rev());
        }
        let mut new_id = vec![0usize; self.nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = new;
        }
        let mut nodes: Vec<Node> = order
            .iter()
            .map(|&old| {
                let n = &self.nodes[old];
                Node {
                    name: n.name.clone(),
                    aliases: n.aliases.clone(),
                    parent: n.parent.map(|p| new_id[p]),
                    children: n.children.iter().map(|&c| new_id[c]).collect(),
                    depth: 0,
                }
            })
            .collect();
        for i in 1..nodes.len() {
            nodes[i].depth = nodes[nodes[i].parent.unwrap_or(0)].depth + 1;
        }
        let index = self.index.into_iter().map(|(k, old)| (k, new_id[old])).collect();
        Ontology { nodes, index }
    }
}

impl Ontology {
    /// The built-in ontology (`data/ontology.json`).
    pub fn builtin() -> &'static Ontology {
        static BUILTIN: OnceLock<Ontology> = OnceLock::new();
        // The embedded file is fixed at build time; tests/suite/knowledge.rs checks that it parses.
        BUILTIN.get_or_init(|| Ontology::from_json(BUILTIN_JSON).unwrap_or_else(|_| Draft::new().finish()))
    }

    /// Parses the `data/ontology.json` format:
    /// `{"children": [{"name": ..., "aliases": [...], "children": [...]}, ...]}`.
    pub fn from_json(text: &str) -> Result<Ontology, OntologyError> {
        let doc: JsonDoc = serde_json::from_str(text).map_err(|e| OntologyError::Json(e.to_string()))?;
        let mut draft = Draft::new();
        fn walk(draft: &mut Draft, parent: usize, nodes: &[JsonNode]) -> Result<(), OntologyError> {
            for n in nodes {
                let id = draft.add(parent, &n.name, &n.aliases)?;
                walk(draft, id, &n.children)?;
            }
            Ok(())
        }
        walk(&mut draft, 0, &doc.children)?;
        Ok(draft.finish())
    }

    /// The tree in the `data/ontology.json` format.
    pub fn to_json(&self) -> String {
        fn build(o: &Ontology, i: usize) -> JsonNode {
            let n = &o.nodes[i];
            JsonNode {
                name: n.name.clone(),
                aliases: n.aliases.clone(),
                children: n.children.iter().map(|&c| build(o, c)).collect(),
            }
        }
        let doc = JsonDoc {
            format: Some("dermlip-ontology/1".into()),
            version: None,
            children: self.nodes[0].children.iter().map(|&c| build(self, c)).collect(),
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Builds a tree from comma-separated paths such as Derm1M's `ontology_final` column
    /// ("inflammatory, non-infectious, eczema, nummular eczema"). See
    /// [`Ontology::from_paths_with_report`] for how inconsistent paths are resolved.
    pub fn from_paths<I, S>(paths: I) -> Result<Ontology, OntologyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::from_paths_with_report(paths).map(|(o, _)| o)
    }

    /// Like [`Ontology::from_paths`], also returning the names found under more than one parent.
    ///
    /// Each path is split at commas and trimmed; empty parts, parts named [`ROOT`] or
    /// [`UNPLACED`], and a part repeating one earlier in the same path are dropped (Derm1M writes
    /// "eczema, eczema, nummular eczema"). Each remaining step is a vote for "child under parent",
    /// one per path. A name gets the parent with the most votes (ties: the pairing seen first),
    /// unless that would make a cycle, in which case the next best is used. Children keep the
    /// order in which they were first seen. A name that itself contains a comma cannot be
    /// expressed in this format.
    pub fn from_paths_with_report<I, S>(paths: I) -> Result<(Ontology, Vec<PathConflict>), OntologyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        const TOP: usize = usize::MAX;
        let mut names: Vec<String> = Vec::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        // (parent, child) -> (votes, first seen)
        let mut votes: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
        for path in paths {
            let mut seen_here: Vec<usize> = Vec::new();
            let mut parent = TOP;
            for part in path.as_ref().split(',') {
                let part = part.trim();
                let k = key(part);
                if k.is_empty() || k == ROOT || k == UNPLACED {
                    continue;
                }
                let next = names.len();
                let id = *ids.entry(k).or_insert(next);
                if id == next {
                    names.push(part.split_whitespace().collect::<Vec<_>>().join(" "));
                }
                if seen_here.contains(&id) {
                    continue;
                }
                seen_here.push(id);
                let order = votes.len();
                votes.entry((parent, id)).or_insert((0, order)).0 += 1;
                parent = id;
            }
        }
        if names.is_empty() {
            return Err(OntologyError::NoPaths);
        }
        let mut edges: Vec<((usize, usize), (usize, usize))> = votes.into_iter().collect();
        edges.sort_by_key(|&(_, (n, first))| (std::cmp::Reverse(n), first));
        let mut parent_of: Vec<Option<(usize, usize)>> = vec![None; names.len()];
        let mut rejected: Vec<Vec<(usize, usize)>> = vec![Vec::new(); names.len()];
        for &((p, c), (n, _)) in &edges {
            let creates_cycle = p != TOP && {
                let mut a = Some(p);
                let mut hit = false;
                while let Some(x) = a {
                    if x == c {
                        hit = true;
                        break;
                    }
                    a = parent_of[x].map(|(q, _)| q).filter(|&q| q != TOP);
                }
                hit
            };
            if parent_of[c].is_some() || creates_cycle {
                rejected[c].push((p, n));
            } else {
                parent_of[c] = Some((p, n));
            }
        }
        let name_of = |i: usize| if i == TOP { ROOT.to_owned() } else { names[i].clone() };
        let conflicts = (0..names.len())
            .filter(|&c| !rejected[c].is_empty())
            .map(|c| {
                let (p, n) = parent_of[c].unwrap_or((TOP, 0));
                PathConflict {
                    name: names[c].clone(),
                    parent: name_of(p),
                    votes: n,
                    rejected: rejected[c].iter().map(|&(q, m)| (name_of(q), m)).collect(),
                }
            })
            .collect();
        // Children in first-seen order: add nodes parent-first, visiting names by id.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        let mut top = Vec::new();
        for (c, placed) in parent_of.iter().enumerate() {
            match placed {
                Some((p, _)) if *p != TOP => children[*p].push(c),
                _ => top.push(c),
            }
        }
        let mut draft = Draft::new();
        let mut stack: Vec<(usize, usize)> = top.iter().rev().map(|&c| (0, c)).collect();
        while let Some((draft_parent, c)) = stack.pop() {
            let id = draft.add(draft_parent, &names[c], &[])?;
            stack.extend(children[c].iter().rev().map(|&g| (id, g)));
        }
        Ok((draft.finish(), conflicts))
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.index.get(&key(name)).copied()
    }

    /// The node a name or alias resolves to ([`ROOT`] gives the root).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.find(name).map(|i| &self.nodes[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The node name a name or alias resolves to.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        self.node(name).map(Node::name)
    }

    /// Node names from the top-level category down to the node (the root is not included);
    /// empty for an unknown name.
    pub fn path(&self, name: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut at = self.find(name);
        while let Some(i) = at {
            if i == 0 {
                break;
            }
            out.push(self.nodes[i].name.as_str());
            at = self.nodes[i].parent;
        }
        out.reverse();
        out
    }

    /// Whether a name or alias sits under `ancestor` (or is it); false for an unknown name.
    pub fn is_under(&self, name: &str, ancestor: &str) -> bool {
        let Some(top) = self.find(ancestor) else { return false };
        let mut at = self.find(name);
        while let Some(i) = at {
            if i == top {
                return true;
            }
            at = self.nodes[i].parent;
        }
        false
    }

    /// Names of the children of a node (of the root for [`ROOT`]); empty for a leaf or unknown name.
    pub fn children(&self, name: &str) -> Vec<&str> {
        self.find(name)
            .map(|i| self.nodes[i].children.iter().map(|&c| self.nodes[c].name.as_str()).collect())
            .unwrap_or_default()
    }

    /// The top-level categories.
    pub fn top_level(&self) -> Vec<&str> {
        self.children(ROOT)
    }

    /// Every leaf, in tree order.
    pub fn leaves(&self) -> Vec<&str> {
        self.leaves_under(ROOT)
    }

    /// The leaves at or below a node, in tree order; empty for an unknown name.
    pub fn leaves_under(&self, name: &str) -> Vec<&str> {
        let Some(start) = self.find(name) else { return Vec::new() };
        let end = self.subtree_end(start);
        (start..end).filter(|&i| self.nodes[i].is_leaf()).map(|i| self.nodes[i].name.as_str()).collect()
    }

    /// One past the last node of the subtree starting at `i` (pre-order).
    fn subtree_end(&self, i: usize) -> usize {
        let depth = self.nodes[i].depth;
        (i + 1..self.nodes.len()).find(|&j| self.nodes[j].depth <= depth).unwrap_or(self.nodes.len())
    }

    /// All nodes in tree order, the root first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Number of nodes, not counting the root.
    pub fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    pub fn max_depth(&self) -> usize {
        self.nodes.iter().map(|n| n.depth).max().unwrap_or(0)
    }

    /// The probability of every node (root first, tree order): the sum over the classes at or
    /// below it, each class counted once. A class that names an inner node counts for that node
    /// and its ancestors. Labels not in the ontology are an error naming them.
    pub fn aggregate<S: AsRef<str>>(&self, labels: &[S], probs: &[f32]) -> Result<Vec<NodeProb>, OntologyError> {
        self.aggregate_with(labels, probs, UnplacedLabels::Error)
    }

    pub fn aggregate_with<S: AsRef<str>>(
        &self,
        labels: &[S],
        probs: &[f32],
        unplaced: UnplacedLabels,
    ) -> Result<Vec<NodeProb>, OntologyError> {
        if labels.len() != probs.len() {
            return Err(OntologyError::LengthMismatch { labels: labels.len(), probs: probs.len() });
        }
        let mut direct = vec![0f64; self.nodes.len()];
        let mut count = vec![0usize; self.nodes.len()];
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut missing = Vec::new();
        let (mut bucket_p, mut bucket_n) = (0f64, 0usize);
        for (i, (label, &p)) in labels.iter().zip(probs).enumerate() {
            let label = label.as_ref();
            if let Some(&first) = seen.get(&key(label)) {
                return Err(OntologyError::DuplicateLabel { label: label.to_owned(), first: first + 1, second: i + 1 });
            }
            seen.insert(key(label), i);
            if !p.is_finite() || p < 0.0 {
                return Err(OntologyError::BadProbability { label: label.to_owned(), value: p });
            }
            match self.find(label).filter(|&n| n != 0) {
                Some(n) => {
                    direct[n] += f64::from(p);
                    count[n] += 1;
                }
                None => {
                    missing.push(label.to_owned());
                    bucket_p += f64::from(p);
                    bucket_n += 1;
                }
            }
        }
        if !missing.is_empty() && unplaced == UnplacedLabels::Error {
            return Err(OntologyError::Unplaced(missing));
        }
        // Pre-order: children come after parents, so a reverse sweep sums subtrees.
        for i in (1..self.nodes.len()).rev() {
            let p = self.nodes[i].parent.unwrap_or(0);
            direct[p] += direct[i];
            count[p] += count[i];
        }
        direct[0] += bucket_p;
        count[0] += bucket_n;
        let mut out: Vec<NodeProb> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeProb {
                name: n.name.clone(),
                depth: n.depth,
                parent: n.parent.map(|p| self.nodes[p].name.clone()),
                prob: direct[i] as f32,
                n_classes: count[i],
                is_leaf: n.is_leaf(),
            })
            .collect();
        if unplaced == UnplacedLabels::Bucket && bucket_n > 0 {
            out.push(NodeProb {
                name: UNPLACED.to_owned(),
                depth: 1,
                parent: Some(ROOT.to_owned()),
                prob: bucket_p as f32,
                n_classes: bucket_n,
                is_leaf: true,
            });
        }
        Ok(out)
    }

    /// The chain from the top level down to the deepest node whose probability is at least
    /// `threshold`: at each level the child with the highest probability among those at or above
    /// the threshold is taken; between siblings with exactly equal probability, the one listed
    /// first (tree order, the unplaced bucket last) wins. The root is not included; the chain is
    /// empty when no top-level node reaches the threshold. `aggregated` is the output of
    /// [`Ontology::aggregate`]; its parent links define the tree.
    pub fn most_specific(&self, aggregated: &[NodeProb], threshold: f32) -> Vec<NodeProb> {
        let mut chain: Vec<NodeProb> = Vec::new();
        let Some(root) = aggregated.iter().find(|n| n.parent.is_none()) else { return chain };
        let mut parent = root.name.as_str();
        // The length bound stops a malformed input whose parent links form a cycle.
        while chain.len() < aggregated.len() {
            let mut best: Option<&NodeProb> = None;
            for n in aggregated.iter().filter(|n| n.parent.as_deref() == Some(parent)) {
                if n.prob >= threshold && best.is_none_or(|b| n.prob > b.prob) {
                    best = Some(n);
                }
            }
            let Some(n) = best else { break };
            chain.push(n.clone());
            parent = n.name.as_str();
        }
        chain
    }
}
