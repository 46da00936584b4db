//! `dermlip index` / `dermlip search`: searchable collections of image and caption embeddings.

use std::path::PathBuf;

use clap::Args;
use dermlip::{Error, Result};

use super::{collection_model_id, embed_each, load_model, read_file, ModelArgs};

#[derive(Args)]
pub(crate) struct IndexArgs {
    /// Image files to add (their path is their id).
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// A text file of captions to add, one per line (id: caption-<line>).
    #[arg(long, value_name = "FILE")]
    captions: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// The collection file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Store float16 vectors (half the size).
    #[arg(long)]
    f16: bool,
}

#[derive(Args)]
pub(crate) struct SearchArgs {
    /// A collection written by `dermlip index`.
    #[arg(value_name = "COLLECTION")]
    collection: PathBuf,
    /// Query text.
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    text: Option<String>,
    /// Query image.
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Only return items of this kind.
    #[arg(long, value_parser = ["image", "text"])]
    kind: Option<String>,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top_k: u32,
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn index(a: IndexArgs) -> Result<()> {
    use dermlip::knowledge::retrieval::{EmbeddingStore, Item, ItemKind, Precision};
    let captions: Vec<String> = match &a.captions {
        Some(f) => String::from_utf8(read_file(f)?)
            .map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    if a.images.is_empty() && captions.is_empty() {
        return Err(Error::Input("nothing to index: give images and/or --captions".into()));
    }
    let model = load_model(&a.model)?;
    let mut store = EmbeddingStore::new(collection_model_id(&a.model, model.config.embed_dim), model.config.embed_dim);
    for (p, e) in a.images.iter().zip(embed_each(&model, &a.images)?) {
        let id = p.display().to_string();
        store.push(Item { id: id.clone(), kind: ItemKind::Image, source: id, label: None }, &e)?;
    }
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    for (i, (c, e)) in captions.iter().zip(model.embed_texts(&refs)?).enumerate() {
        store.push(
            Item { id: format!("caption-{}", i + 1), kind: ItemKind::Text, source: c.clone(), label: None },
            &e,
        )?;
    }
    let bytes = store.to_bytes(if a.f16 { Precision::F16 } else { Precision::F32 });
    std::fs::write(&a.out, &bytes)
        .map_err(|e| Error::Io { path: a.out.display().to_string(), message: e.to_string() })?;
    println!("{}: {} images, {} captions, {} bytes", a.out.display(), a.images.len(), captions.len(), bytes.len());
    Ok(())
}

pub(crate) fn search(a: SearchArgs) -> Result<()> {
    use dermlip::knowledge::retrieval::{EmbeddingStore, ItemKind};
    let store = EmbeddingStore::from_bytes(&read_file(&a.collection)?)
        .map_err(|e| Error::Input(format!("{}: {}", a.collection.display(), e.detail())))?;
    let model = load_model(&a.model)?;
    let expected = collection_model_id(&a.model, model.config.embed_dim);
    if store.model != expected {
        return Err(Error::Input(format!(
            "{} was made by {}, not by {expected}: its vectors are not comparable",
            a.collection.display(),
            store.model
        )));
    }
    let query = match (&a.text, &a.image) {
        (Some(t), _) => model.embed_texts(&[t.as_str()])?.remove(0),
        (None, Some(img)) => embed_each(&model, std::slice::from_ref(img))?.remove(0),
        (None, None) => return Err(Error::Input("give --text or --image".into())),
    };
    let kind = a.kind.as_deref().map(|k| if k == "image" { ItemKind::Image } else { ItemKind::Text });
    let hits = store.search(&query, a.top_k as usize, kind)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&hits).expect("plain data serialises"));
    } else {
        for h in &hits {
            println!("{:.4}  {}", h.score, h.source);
        }
    }
    Ok(())
}
