//! A collection of image and caption embeddings, searchable by text or image, stored in a small
//! file of our own so a teaching site can ship a case gallery (format: `docs/embeddings-format.md`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::knowledge::zero_shot::l2_normalize;

const MAGIC: &[u8; 8] = b"DERMLIPE";
const VERSION: u32 = 1;
/// Headers larger than this are refused before anything is allocated for them.
const MAX_HEADER: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Image,
    Text,
}

/// What one stored vector stands for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub kind: ItemKind,
    /// Image path or URL, or the caption text.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The teacher's caption for an image (shown with a similar case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// A small picture of an image item, relative to the collection file (`dermlip index --thumbnails`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
}

#[derive(Serialize, Deserialize)]
struct Header {
    model: String,
    dim: usize,
    count: usize,
    dtype: Precision,
    items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe: Option<Vec<f32>>,
}

/// The side of the [`probe_rgba`] image.
pub const PROBE_SIDE: u32 = 224;
/// How close (cosine) a model's probe embedding must be to the collection's to count as the same
/// model: f16 and int8 weights stay above 0.999, two different models land far below.
pub const PROBE_MIN_COSINE: f32 = 0.99;

/// A fixed synthetic picture (smooth colour ramps and a disc) whose image embedding identifies the
/// model that made a collection: the reader embeds it too and compares ([`EmbeddingStore::check_probe`]).
/// RGBA, [`PROBE_SIDE`]² pixels, no decoding involved.
pub fn probe_rgba() -> Vec<u8> {
    let n = PROBE_SIDE;
    let mut out = Vec::with_capacity((n * n * 4) as usize);
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (x as i64 - 140, y as i64 - 90);
            let disc = dx * dx + dy * dy < 50 * 50;
            let r = if disc { 120 } else { (x * 255 / (n - 1)) as u8 };
            let g = if disc { 60 } else { (y * 255 / (n - 1)) as u8 };
            let b = (((x + y) * 255) / (2 * (n - 1))) as u8;
            out.extend([r, g, b, 255]);
        }
    }
    out
}

/// L2-normalised embeddings with their items; cosine similarity is a dot product.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingStore {
    /// Which model made the vectors (vectors of different models are not comparable).
    pub model: String,
    pub dim: usize,
    items: Vec<Item>,
    vectors: Vec<f32>,
    /// The model's embedding of [`probe_rgba`] (unit length), when the writer stored it.
    probe: Option<Vec<f32>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub index: usize,
    pub id: String,
    pub kind: ItemKind,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    pub score: f32,
}

impl EmbeddingStore {
    pub fn new(model: impl Into<String>, dim: usize) -> Self {
        EmbeddingStore { model: model.into(), dim, items: Vec::new(), vectors: Vec::new(), probe: None }
    }

    /// Stores the model's embedding of [`probe_rgba`], so readers can tell whether their model made
    /// this collection.
    pub fn set_probe(&mut self, embedding: &[f32]) -> Result<()> {
        if embedding.len() != self.dim || embedding.iter().any(|x| !x.is_finite()) {
            return Err(Error::Input(format!("the probe embedding is not {} finite values", self.dim)));
        }
        self.probe = Some(l2_normalize(embedding));
        Ok(())
    }

    pub fn has_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Whether `embedding` (a model's embedding of [`probe_rgba`]) says this collection was made by
    /// that model: an error naming the collection's model when not, or when there is no probe.
    pub fn check_probe(&self, embedding: &[f32]) -> Result<f32> {
        let Some(probe) = &self.probe else {
            return Err(Error::Input(format!(
                "the collection (made by {}) has no model check; write it again with this dermlip's `dermlip index`",
                self.model
            )));
        };
        if embedding.len() != self.dim {
            return Err(Error::Input(format!(
                "the collection holds {}-d vectors, this model makes {}-d ones",
                self.dim,
                embedding.len()
            )));
        }
        let cos: f32 = probe.iter().zip(l2_normalize(embedding)).map(|(a, b)| a * b).sum();
        if cos.is_nan() || cos < PROBE_MIN_COSINE {
            return Err(Error::Input(format!(
                "the collection was made by another model ({}): its vectors are not comparable with this one's",
                self.model
            )));
        }
        Ok(cos)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The model check: this collection's model's embedding of [`probe_rgba`], if it has one.
    pub fn probe(&self) -> Option<&[f32]> {
        self.probe.as_deref()
    }

    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    pub fn push(&mut self, item: Item, embedding: &[f32]) -> Result<()> {
        if embedding.len() != self.dim {
            return Err(Error::Input(format!(
                "embedding of \"{}\" has {} values, the collection holds {}-d vectors",
                item.id,
                embedding.len(),
                self.dim
            )));
        }
        if embedding.iter().any(|x| !x.is_finite()) {
            return Err(Error::Input(format!("embedding of \"{}\" is not finite", item.id)));
        }
        if self.items.iter().any(|i| i.id == item.id) {
            return Err(Error::Input(format!("the collection already holds an item \"{}\"", item.id)));
        }
        self.vectors.extend(l2_normalize(embedding));
        self.items.push(item);
        Ok(())
    }

    /// The `k` most similar items (cosine), optionally only of one kind, best first.
    pub fn search(&self, query: &[f32], k: usize, kind: Option<ItemKind>) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(Error::Input(format!(
                "query has {} values, the collection holds {}-d vectors",
                query.len(),
                self.dim
            )));
        }
        let q = l2_normalize(query);
        let mut scored: Vec<(usize, f32)> = (0..self.len())
            .filter(|&i| kind.is_none_or(|k| self.items[i].kind == k))
            .map(|i| (i, self.vector(i).iter().zip(&q).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(i, score)| {
                let it = &self.items[i];
                Hit {
                    index: i,
                    id: it.id.clone(),
                    kind: it.kind,
                    source: it.source.clone(),
                    label: it.label.clone(),
                    caption: it.caption.clone(),
                    thumbnail: it.thumbnail.clone(),
                    score,
                }
            })
            .collect())
    }

    pub fn to_bytes(&self, precision: Precision) -> Vec<u8> {
        let header = Header {
            model: self.model.clone(),
            dim: self.dim,
            count: self.len(),
            dtype: precision,
            items: self.items.clone(),
            probe: self.probe.clone(),
        };
        let json = serde_json::to_vec(&header).expect("plain data serialises");
        let mut out = Vec::with_capacity(16 + json.len() + self.vectors.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend(VERSION.to_le_bytes());
        out.extend((json.len() as u32).to_le_bytes());
        out.extend(&json);
        match precision {
            Precision::F32 => self.vectors.iter().for_each(|v| out.extend(v.to_le_bytes())),
            Precision::F16 => self.vectors.iter().for_each(|v| out.extend(half::f16::from_f32(*v).to_le_bytes())),
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::Input(format!("not a dermlip embeddings file: {why}"));
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("it does not start with DERMLIPE"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(&format!("format version {version}, this dermlip reads version {VERSION}")));
        }
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if header_len > MAX_HEADER || 16 + header_len > bytes.len() {
            return Err(bad("the header is truncated"));
        }
        let header: Header =
            serde_json::from_slice(&bytes[16..16 + header_len]).map_err(|e| bad(&format!("bad header: {e}")))?;
        if header.items.len() != header.count {
            return Err(bad(&format!("the header lists {} items but says {}", header.items.len(), header.count)));
        }
        let width = match header.dtype {
            Precision::F32 => 4,
            Precision::F16 => 2,
        };
        let body = &bytes[16 + header_len..];
        let expected = header.count.checked_mul(header.dim).and_then(|n| n.checked_mul(width));
        if expected != Some(body.len()) {
            return Err(bad(&format!(
                "{} bytes of vectors for {} items of dimension {}",
                body.len(),
                header.count,
                header.dim
            )));
        }
        let vectors = match header.dtype {
            Precision::F32 => {
                body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
            }
            Precision::F16 => body
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(c.try_into().expect("2 bytes")).to_f32())
                .collect(),
        };
        if header.probe.as_ref().is_some_and(|p| p.len() != header.dim || p.iter().any(|x| !x.is_finite())) {
            return Err(bad("the model check (probe) is not dim finite values"));
        }
        Ok(EmbeddingStore { model: header.model, dim: header.dim, items: header.items, vectors, probe: header.probe })
    }
}
