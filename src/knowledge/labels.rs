//! Label sets: the built-in, versioned class lists of the Derm1M / MAKE / DermFM-Zero zero-shot
//! benchmarks (class names in label-index order, with provenance), custom label sets read from
//! JSON or CSV, and the zero-shot prompt templates used with them.
//!
//! The class lists are embedded verbatim from `data/` (see `data/README.md`). The order of a
//! source list is the label index of the evaluation CSVs, so it is never changed here.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

const ZERO_SHOT_JSON: &str = include_str!("../../data/zero_shot_classnames.json");
const MAKE_JSON: &str = include_str!("../../data/make_snu134_sd128_classnames.json");
const DERMFM_ZERO_JSON: &str = include_str!("../../data/dermfm_zero_classnames.json");

const DERM1M_REPO: &str = "github.com/SiyuanYan1/Derm1M @ 92d8fa9d9775aaf65bf3150c998d32daf4f1d32f";
const MAKE_REPO: &str = "github.com/SiyuanYan1/MAKE @ ded195953de2603484da886144cd1683c3b17006";
const DERMFM_ZERO_REPO: &str = "github.com/SiyuanYan1/DermFM-Zero @ afbe6ba22e57037cd7418681c2d90561049afde6";
const DERM1M_LICENCE: &str = "CC BY-NC 4.0 (stated in the Derm1M README; the repository has no \
    LICENSE file); not covered by dermlip's MIT/Apache-2.0 licence";
const MAKE_LICENCE: &str = "CC BY-NC 4.0 (the MAKE README states it for Derm1M data; the \
    repository has no LICENSE file); not covered by dermlip's MIT/Apache-2.0 licence";
const DERMFM_ZERO_LICENCE: &str = "CC-BY-NC-ND 4.0 (DermFM-Zero README; copied unmodified); not \
    covered by dermlip's MIT/Apache-2.0 licence";

/// Why a label set could not be built. Every message names the offending line or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label data is not valid UTF-8 (first invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("label set has no classes")]
    Empty,
    #[error("blank class name at {at}")]
    Blank { at: String },
    #[error("duplicate class {name:?} at {at}: same as {first_at} (names are compared trimmed and ignoring case)")]
    Duplicate { name: String, at: String, first_at: String },
    #[error("class name at {at} is {bytes} bytes long; at most {max} are accepted")]
    TooLong { at: String, bytes: usize, max: usize },
    #[error("invalid label JSON: {0}")]
    Json(String),
    #[error("label JSON must be an array of strings or {{\"name\": ..., \"classes\": [...]}}: {0}")]
    JsonShape(String),
    #[error("invalid label CSV at line {line}: {problem}")]
    Csv { line: usize, problem: String },
    #[error("cannot read label file {path}: {message}")]
    Io { path: String, message: String },
}

/// A list of class names in label-index order, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelSet {
    id: String,
    name: String,
    classes: Vec<String>,
    source: String,
    licence: String,
    notes: String,
}

struct BuiltinSpec {
    id: &'static str,
    aliases: &'static [&'static str],
    name: &'static str,
    /// The short description the web page's label-set menu shows.
    title: &'static str,
    json: &'static str,
    key: &'static str,
    repo: &'static str,
    path: &'static str,
    licence: &'static str,
    notes: &'static str,
}

const BUILTINS: [BuiltinSpec; 7] = [
    BuiltinSpec {
        id: "ham7",
        aliases: &["ham", "ham10000", "ham100007"],
        name: "HAM10000 (7 classes)",
        title: "HAM-7 (dermoscopy: 7 lesion types)",
        json: ZERO_SHOT_JSON,
        key: "HAM_CLASSNAMES",
        repo: DERM1M_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: DERM1M_LICENCE,
        notes: "HAM10000 diagnosis groups: \"actinic keratosis\" is akiec (actinic keratoses and \
            intraepithelial carcinoma), \"benign keratosis\" is bkl (seborrheic keratosis, solar \
            lentigo, lichen planus-like keratosis), \"vascular\" is vasc (vascular lesions).",
    },
    BuiltinSpec {
        id: "pad6",
        aliases: &["pad", "padufes", "padufes20", "padufes206"],
        name: "PAD-UFES-20 (6 classes)",
        title: "PAD-6 (smartphone photos: 6 lesion types)",
        json: ZERO_SHOT_JSON,
        key: "PAD_CLASSNAMES",
        repo: DERM1M_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: DERM1M_LICENCE,
        notes: "Smartphone images; \"squamous cell carcinoma\" includes Bowen's disease in PAD-UFES-20.",
    },
    BuiltinSpec {
        id: "daffodil5",
        aliases: &["daffodil"],
        name: "Daffodil (5 classes)",
        title: "Daffodil-5 (5 conditions)",
        json: ZERO_SHOT_JSON,
        key: "DAFFODIL_5_CLASSNAMES",
        repo: DERM1M_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: DERM1M_LICENCE,
        notes: "\"SJS/TEN\" is Stevens-Johnson syndrome / toxic epidermal necrolysis.",
    },
    BuiltinSpec {
        id: "f17k",
        aliases: &["fitzpatrick17k", "fitzpatrick", "f17k113", "f17k114"],
        name: "Fitzpatrick17k (114 classes)",
        title: "Fitzpatrick17k (113 conditions)",
        json: ZERO_SHOT_JSON,
        key: "F17K_DISEASE_113_CLASSES",
        repo: DERM1M_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: DERM1M_LICENCE,
        notes: "The source list is named F17K_DISEASE_113_CLASSES and the evaluation CSV \
            f17k-113-zero-shot-test.csv, but it has 114 entries; all 114 are kept in source order. \
            It holds near-synonyms (\"melanoma\" / \"malignant melanoma\", \"pyogenic granuloma\" / \
            \"granuloma pyogenic\", \"lichen simplex\" / \"neurodermatitis\") and misspellings kept \
            verbatim (\"erythema annulare centrifigum\").",
    },
    BuiltinSpec {
        id: "snu134",
        aliases: &["snu"],
        name: "SNU-134 (134 classes)",
        title: "SNU-134 (134 conditions)",
        json: MAKE_JSON,
        key: "SNU_134_CLASSNAMES",
        repo: MAKE_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: MAKE_LICENCE,
        notes: "Zero-shot set of MAKE (MICCAI 2025) and DermFM-Zero. Contains \"abnormal\" as a class.",
    },
    BuiltinSpec {
        id: "sd128",
        aliases: &["sd", "sd198128"],
        name: "SD-128 (128 classes)",
        title: "SD-128 (128 conditions)",
        json: MAKE_JSON,
        key: "SD_128_CLASSNAMES",
        repo: MAKE_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: MAKE_LICENCE,
        notes: "Zero-shot subset of SD-198 used by MAKE and DermFM-Zero; six classes are \
            \"actinic solar damage(...)\" variants.",
    },
    BuiltinSpec {
        id: "derm1m",
        aliases: &["derm1m407", "dermfmzero", "dermfmzero407"],
        name: "Derm1M conditions (407 classes, DermFM-Zero)",
        title: "Derm1M (407 conditions)",
        json: DERMFM_ZERO_JSON,
        key: "DERM1M_CLASSNAMES",
        repo: DERMFM_ZERO_REPO,
        path: "src/open_clip/zero_shot_metadata.py",
        licence: DERMFM_ZERO_LICENCE,
        notes: "DERM1M_CLASSNAMES: 407 names (the Derm1M paper says 390 conditions); the repository \
            does not document how the list was made. It holds spelling variants of the same \
            condition (\"bowen's disease\", \"stevens-johnson syndrome\" / \"sjs\" spellings, \
            typographic apostrophes) and non-diagnoses (\"no definitive diagnosis\", \"phototherapy\").",
    },
];

fn builtin_sets() -> &'static [LabelSet] {
    static SETS: OnceLock<Vec<LabelSet>> = OnceLock::new();
    SETS.get_or_init(|| {
        // The embedded files are fixed at build time; tests/suite/knowledge.rs checks every set parses.
        BUILTINS
            .iter()
            .filter_map(|spec| {
                let doc: Value = serde_json::from_str(spec.json).ok()?;
                let classes = doc
                    .get(spec.key)?
                    .as_array()?
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Some(LabelSet {
                    id: spec.id.to_owned(),
                    name: spec.name.to_owned(),
                    classes,
                    source: format!("{} : {} ({})", spec.repo, spec.path, spec.key),
                    licence: spec.licence.to_owned(),
                    notes: spec.notes.split_whitespace().collect::<Vec<_>>().join(" "),
                })
            })
            .collect()
    })
}

fn id_key(id: &str) -> String {
    id.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

fn class_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl LabelSet {
    /// A built-in set by id: `ham7`, `pad6`, `daffodil5`, `f17k`, `snu134`, `sd128`, `derm1m`.
    /// Case, spaces, `-` and `_` are ignored, and common names work too ("HAM-7", "HAM10000",
    /// "PAD-UFES-20", "Fitzpatrick17k", "SD-128").
    pub fn builtin(id: &str) -> Option<&'static LabelSet> {
        let key = id_key(id);
        let spec = BUILTINS.iter().find(|s| s.id == key || s.aliases.iter().any(|a| *a == key))?;
        builtin_sets().iter().find(|s| s.id == spec.id)
    }

    /// [`LabelSet::builtin`], or an error that lists the built-in ids.
    pub fn builtin_or_error(id: &str) -> crate::Result<&'static LabelSet> {
        Self::builtin(id).ok_or_else(|| {
            let ids: Vec<&str> = Self::builtin_ids().collect();
            crate::Error::Input(format!("unknown label set \"{id}\" (built-in: {})", ids.join(", ")))
        })
    }

    /// Every built-in set, in the order ham7, pad6, daffodil5, f17k, snu134, sd128, derm1m.
    pub fn all() -> &'static [LabelSet] {
        builtin_sets()
    }

    /// The ids accepted by [`LabelSet::builtin`] (canonical ones only).
    pub fn builtin_ids() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|s| s.id)
    }

    /// A custom label set. Names are trimmed; they must be non-blank and unique ignoring case.
    pub fn new(name: impl Into<String>, classes: Vec<String>) -> Result<Self, LabelError> {
        let located = classes.into_iter().enumerate().map(|(i, c)| (format!("entry {}", i + 1), c));
        Ok(Self::custom(name.into(), validate(located)?))
    }

    fn custom(name: String, classes: Vec<String>) -> Self {
        LabelSet {
            id: "custom".to_owned(),
            name,
            classes,
            source: "user".to_owned(),
            licence: String::new(),
            notes: String::new(),
        }
    }

    /// A label set from JSON: `["nevus", "melanoma"]` or
    /// `{"name": "my set", "classes": [...], "source": ..., "licence": ..., "notes": ...}`
    /// (only `classes` is required).
    pub fn from_json(bytes: &[u8]) -> Result<Self, LabelError> {
        Self::from_json_str(utf8(bytes)?)
    }

    pub fn from_json_str(text: &str) -> Result<Self, LabelError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let doc: Value = serde_json::from_str(text).map_err(|e| LabelError::Json(e.to_string()))?;
        let (name, list, meta) = match &doc {
            Value::Array(list) => ("custom".to_owned(), list, None),
            Value::Object(map) => {
                let list = match map.get("classes") {
                    Some(Value::Array(list)) => list,
                    Some(other) => {
                        return Err(LabelError::JsonShape(format!("\"classes\" is {}, not an array", json_kind(other))))
                    }
                    None => return Err(LabelError::JsonShape("the object has no \"classes\" key".into())),
                };
                let name = optional_string(map, "name")?.unwrap_or_else(|| "custom".to_owned());
                (name, list, Some(map))
            }
            other => return Err(LabelError::JsonShape(format!("the document is {}", json_kind(other)))),
        };
        let mut located = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            match v {
                Value::String(s) => located.push((format!("entry {}", i + 1), s.clone())),
                other => {
                    return Err(LabelError::JsonShape(format!("entry {} is {}, not a string", i + 1, json_kind(other))))
                }
            }
        }
        let mut set = Self::custom(name, validate(located)?);
        if let Some(map) = meta {
            if let Some(source) = optional_string(map, "source")? {
                set.source = source;
            }
            let licence = match optional_string(map, "licence")? {
                Some(l) => Some(l),
                None => optional_string(map, "license")?,
            };
            set.licence = licence.unwrap_or_default();
            set.notes = optional_string(map, "notes")?.unwrap_or_default();
        }
        Ok(set)
    }

    /// A label set from CSV: one column of names, or a header row with a `label`, `class` or
    /// `name` column (that order of preference; plural forms and `class_name` also count).
    /// RFC 4180 quoting (names with commas must be quoted), UTF-8 BOM and CRLF are handled;
    /// empty lines are skipped. The set is named "custom".
    pub fn from_csv(bytes: &[u8]) -> Result<Self, LabelError> {
        Self::from_csv_str(utf8(bytes)?)
    }

    pub fn from_csv_str(text: &str) -> Result<Self, LabelError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let records = parse_csv(text)?;
        let Some((first_line, first)) = records.first() else {
            return Err(LabelError::Empty);
        };
        let header_col = first.iter().enumerate().filter_map(|(i, h)| header_rank(h).map(|r| (r, i))).min();
        let (column, data) = match header_col {
            Some((_, col)) => (col, &records[1..]),
            None if first.len() == 1 => (0, &records[..]),
            None => {
                return Err(LabelError::Csv {
                    line: *first_line,
                    problem: format!("{} columns but no header column named `label`, `class` or `name`", first.len()),
                })
            }
        };
        let width = if header_col.is_some() { first.len() } else { 1 };
        let mut located = Vec::with_capacity(data.len());
        for (line, fields) in data {
            if fields.len() != width {
                return Err(LabelError::Csv {
                    line: *line,
                    problem: format!(
                        "{} fields where {} expected (quote names that contain commas)",
                        fields.len(),
                        width
                    ),
                });
            }
            located.push((format!("line {line}"), fields[column].clone()));
        }
        Ok(Self::custom("custom".to_owned(), validate(located)?))
    }

    /// Reads a `.json` file, or anything else as CSV / one name per line. The set is named after
    /// the file stem unless a JSON object gives a name.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<Self, LabelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| LabelError::Io { path: path.display().to_string(), message: e.to_string() })?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut set = if is_json { Self::from_json(&bytes)? } else { Self::from_csv(&bytes)? };
        if set.name == "custom" {
            if let Some(stem) = path.file_stem() {
                set.name = stem.to_string_lossy().into_owned();
            }
        }
        set.source = path.display().to_string();
        Ok(set)
    }

    /// The same set under another display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// `ham7`, … for built-in sets, `custom` otherwise.
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The short description of a built-in set for menus (the web page's label-set list).
    pub fn title(&self) -> Option<&'static str> {
        BUILTINS.iter().find(|s| s.id == self.id).map(|s| s.title)
    }
    /// Class names in label-index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    /// `repository @ commit : path (list name)` for built-in sets.
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn licence(&self) -> &str {
        &self.licence
    }
    pub fn notes(&self) -> &str {
        &self.notes
    }
    /// Label index of a class name (trimmed, ignoring case).
    pub fn index_of(&self, class: &str) -> Option<usize> {
        let key = class_key(class);
        self.classes.iter().position(|c| class_key(c) == key)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, LabelError> {
    std::str::from_utf8(bytes).map_err(|e| LabelError::NotUtf8 { offset: e.valid_up_to() })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn optional_string(map: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, LabelError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(LabelError::JsonShape(format!("\"{key}\" is {}, not a string", json_kind(other)))),
    }
}

/// Trims every name and rejects blank and duplicate ones; `at` names where each came from.
fn validate(located: impl IntoIterator<Item = (String, String)>) -> Result<Vec<String>, LabelError> {
    let mut first_seen: HashMap<String, String> = HashMap::new();
    let mut classes = Vec::new();
    for (at, raw) in located {
        let name = raw.trim();
        if name.is_empty() {
            return Err(LabelError::Blank { at });
        }
        if name.len() > crate::limits::MAX_TEXT_BYTES {
            return Err(LabelError::TooLong { at, bytes: name.len(), max: crate::limits::MAX_TEXT_BYTES });
        }
        if let Some(first_at) = first_seen.get(&class_key(name)) {
            return Err(LabelError::Duplicate { name: name.to_owned(), at, first_at: first_at.clone() });
        }
        first_seen.insert(class_key(name), at);
        classes.push(name.to_owned());
    }
    if classes.is_empty() {
        return Err(LabelError::Empty);
    }
    Ok(classes)
}

/// 0 = best: `label`, then `class`, then `name`.
fn header_rank(h: &str) -> Option<usize> {
    match h.trim().to_lowercase().as_str() {
        "label" | "labels" | "label_name" => Some(0),
        "class" | "classes" | "class_name" | "classname" => Some(1),
        "name" | "names" => Some(2),
        _ => None,
    }
}

/// RFC 4180 records as (1-based line where the record starts, fields). Empty lines are dropped.
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, LabelError> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false; // the current field was quoted
    let mut any_quoted = false; // some field of the current record was quoted
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                any_quoted = true;
                let open_line = line;
                loop {
                    match chars.next() {
                        None => {
                            return Err(LabelError::Csv {
                                line: open_line,
                                problem: "unterminated quoted field".into(),
                            })
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some('\n') => {
                            line += 1;
                            field.push('\n');
                        }
                        Some(other) => field.push(other),
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(other) => {
                        return Err(LabelError::Csv {
                            line,
                            problem: format!("unexpected {other:?} after a closing quote"),
                        })
                    }
                }
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                fields.push(std::mem::take(&mut field));
                let empty_line = fields.len() == 1 && fields[0].is_empty() && !any_quoted;
                if !empty_line {
                    records.push((record_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                quoted = false;
                any_quoted = false;
                line += 1;
                record_line = line;
            }
            other => field.push(other),
        }
    }
    if !field.is_empty() || !fields.is_empty() || any_quoted {
        fields.push(field);
        records.push((record_line, fields));
    }
    Ok(records)
}

/// Derm1M's eight zero-shot skin templates (`OPENAI_SKIN_TEMPLATES`); `{c}` is the class name.
pub const ZERO_SHOT_TEMPLATES: [&str; 8] = [
    "This is a skin image of {c}",
    "This is a skin image of {c}.",
    "A skin image of {c}.",
    "An image of {c}, a skin condition.",
    "{c}, a skin disorder, is shown in this image.",
    "The skin lesion depicted is {c}.",
    "The skin cancer in this image is {c}.",
    "This image depicts {c}, a type of skin cancer.",
];
