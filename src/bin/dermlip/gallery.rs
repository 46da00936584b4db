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
    /// The teacher's captions for the images: a text file of `IMAGE<TAB>caption` lines, IMAGE
    /// spelled as on the command line. Shown with each similar case on the site and the widget.
    #[arg(long, value_name = "FILE")]
    image_captions: Option<PathBuf>,
    /// Also write a small JPEG (at most 160 px a side) of every image into DIR, which must be next
    /// to (or under) the collection file: the site and the widget show them as similar cases.
    #[arg(long, value_name = "DIR")]
    thumbnails: Option<PathBuf>,
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
    let image_captions = match &a.image_captions {
        Some(f) => read_image_captions(f, &a.images)?,
        None => Default::default(),
    };
    let thumbs = match &a.thumbnails {
        Some(dir) => Some(thumbnail_dir(dir, &a.out)?),
        None => None,
    };
    let model = load_model(&a.model)?;
    let mut store = EmbeddingStore::new(portable_model_id(&a.model, model.config.embed_dim), model.config.embed_dim);
    store.set_probe(&dermlip::pipeline::rows(model.encode_pixels(&[model.probe_pixels()?]))?.remove(0))?;
    for (i, (p, e)) in a.images.iter().zip(embed_each(&model, &a.images)?).enumerate() {
        let id = p.display().to_string();
        let thumbnail = match &thumbs {
            Some((dir, rel)) => Some(write_thumbnail(p, dir, rel, i)?),
            None => None,
        };
        let caption = image_captions.get(&id).cloned();
        store.push(Item { id: id.clone(), kind: ItemKind::Image, source: id, label: None, caption, thumbnail }, &e)?;
    }
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    for (i, (c, e)) in captions.iter().zip(model.embed_texts(&refs)?).enumerate() {
        store.push(
            Item {
                id: format!("caption-{}", i + 1),
                kind: ItemKind::Text,
                source: c.clone(),
                label: None,
                caption: None,
                thumbnail: None,
            },
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
    if store.has_probe() {
        store.check_probe(&dermlip::pipeline::rows(model.encode_pixels(&[model.probe_pixels()?]))?.remove(0))?;
    } else if store.model != expected {
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

/// The model's name in a collection: the checkpoint's directory (or file) name and the embedding
/// size, the same on every machine (the probe, not the name, decides whether models match).
fn portable_model_id(args: &ModelArgs, dim: usize) -> String {
    let path = std::fs::canonicalize(&args.model).unwrap_or_else(|_| args.model.clone());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    format!("{name} ({dim})")
}

/// `IMAGE<TAB>caption` lines; every IMAGE must be one of the images being indexed.
fn read_image_captions(f: &std::path::Path, images: &[PathBuf]) -> Result<std::collections::HashMap<String, String>> {
    let text =
        String::from_utf8(read_file(f)?).map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?;
    let known: std::collections::HashSet<String> = images.iter().map(|p| p.display().to_string()).collect();
    let mut out = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let Some((image, caption)) = line.split_once('\t') else {
            return Err(Error::Input(format!("{}:{}: expected IMAGE<TAB>caption", f.display(), n + 1)));
        };
        let (image, caption) = (image.trim(), caption.trim());
        if !known.contains(image) {
            return Err(Error::Input(format!(
                "{}:{}: \"{image}\" is not one of the images to index",
                f.display(),
                n + 1
            )));
        }
        if caption.is_empty() || caption.chars().count() > 500 {
            return Err(Error::Input(format!("{}:{}: a caption has 1 to 500 characters", f.display(), n + 1)));
        }
        if out.insert(image.to_string(), caption.to_string()).is_some() {
            return Err(Error::Input(format!("{}:{}: \"{image}\" has a caption already", f.display(), n + 1)));
        }
    }
    Ok(out)
}

/// Creates the thumbnail directory; returns it and its path relative to the collection's folder
/// ('/'-separated, as the page resolves it against the collection's URL).
fn thumbnail_dir(dir: &std::path::Path, out: &std::path::Path) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.display().to_string(), message: e.to_string() })?;
    let canon = |p: &std::path::Path| {
        std::fs::canonicalize(p).map_err(|e| Error::Io { path: p.display().to_string(), message: e.to_string() })
    };
    let base = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => canon(p)?,
        None => canon(std::path::Path::new("."))?,
    };
    let rel = canon(dir)?
        .strip_prefix(&base)
        .map_err(|_| {
            Error::Input(format!(
                "--thumbnails {} must be in the folder of --out {} (or under it)",
                dir.display(),
                out.display()
            ))
        })?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    Ok((dir.to_path_buf(), rel))
}

/// Writes `<n>.jpg` (at most 160 px a side, EXIF orientation applied) and returns its relative path.
fn write_thumbnail(image: &std::path::Path, dir: &std::path::Path, rel: &str, n: usize) -> Result<String> {
    let max_pixels = dermlip::input::preprocess::PreprocessConfig::default().max_pixels;
    let rgb = dermlip::input::preprocess::load_rgb(&read_file(image)?, max_pixels)
        .map_err(|e| Error::Input(format!("{}: {e}", image.display())))?;
    let (w, h) = (rgb.width() as f64, rgb.height() as f64);
    let scale = (160.0 / w.max(h)).min(1.0);
    let (tw, th) = (((w * scale).round() as u32).max(1), ((h * scale).round() as u32).max(1));
    let thumb = image::imageops::thumbnail(&rgb, tw, th);
    let name = format!("{}.jpg", n + 1);
    let path = dir.join(&name);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(&thumb)
        .map_err(|e| Error::Input(format!("{}: cannot write a thumbnail: {e}", image.display())))?;
    std::fs::write(&path, bytes).map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })?;
    Ok(if rel.is_empty() { name } else { format!("{rel}/{name}") })
}
