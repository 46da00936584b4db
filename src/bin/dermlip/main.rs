//! `dermlip`: zero-shot classification and embeddings from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dermlip::knowledge::labels::LabelSet;
use dermlip::knowledge::ontology::{Ontology, UnplacedLabels};
use dermlip::knowledge::zero_shot::{l2_normalize, zero_shot_templates};
use dermlip::{DermLip, Error, Result};

mod convert;
mod eval;
mod fetch;
mod gallery;

use eval::EvalCommand;
use gallery::{IndexArgs, SearchArgs};

#[derive(Parser)]
#[command(
    name = "dermlip",
    version,
    about = "DermLIP skin-image classification and embeddings (educational use, not a diagnosis)",
    long_about = "DermLIP (Derm1M, ICCV 2025) vision-language models on Burn.\n\
                  MODEL is an open_clip checkpoint directory (open_clip_config.json plus \
                  open_clip_model.safetensors, open_clip_pytorch_model.bin or a training .pt), \
                  or a weights file beside its open_clip_config.json.\n\
                  Results are for education and research; they are not a diagnosis."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-shot classification of images against a list of labels; says so when an image looks
    /// more like something else (a cat, food, text) than like skin (provisional thresholds).
    Classify(ClassifyArgs),
    /// Image embeddings (one row per image, open_clip `encode_image`).
    EmbedImage(EmbedImageArgs),
    /// Text embeddings (one row per text, open_clip `encode_text`).
    EmbedText(EmbedTextArgs),
    /// Clinical concept tags (MONET presence scores of Derm1M's 64 concept term lists).
    Concepts(ConceptsArgs),
    /// Build a searchable collection (.dlemb) from images and/or captions.
    Index(IndexArgs),
    /// Search a collection by text or by image.
    Search(SearchArgs),
    /// Evaluation protocols of the Derm1M paper on your data.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Write a web bundle for the browser: image and text towers, precomputed label-set and
    /// concept embeddings, and a manifest with the size and sha256 of every file.
    Convert(convert::ConvertArgs),
    /// Download an open_clip checkpoint from the Hugging Face hub (default: DermLIP ViT-B/16).
    Fetch(fetch::FetchArgs),
}

#[derive(Args)]
struct LabelArgs {
    /// Comma-separated class names, e.g. "melanoma,nevus,basal cell carcinoma".
    #[arg(long, conflicts_with_all = ["label_file", "label_set"], required_unless_present_any = ["label_file", "label_set"])]
    labels: Option<String>,
    /// File of class names: one per line, a JSON array of strings, or a CSV with a `label` column.
    #[arg(long, value_name = "FILE", conflicts_with = "label_set")]
    label_file: Option<PathBuf>,
    /// A built-in label set: ham7, pad6, daffodil5, f17k, snu134, sd128, derm1m.
    #[arg(long, value_name = "ID")]
    label_set: Option<String>,
    /// File of prompt templates with `{c}` for the class name (one per line, or a JSON array).
    /// Default: Derm1M's eight skin templates.
    #[arg(long, value_name = "FILE")]
    template_file: Option<PathBuf>,
}

#[derive(Args)]
struct ConceptsArgs {
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// How many concepts to report per image.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    top_k: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ModelArgs {
    /// Checkpoint directory or weights file.
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    /// Compute device: `cpu` (pure-Rust flex backend) or `wgpu` (GPU through Vulkan/Metal/DX12).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Wgpu,
}

#[derive(Args)]
struct ClassifyArgs {
    /// Image files (JPEG, PNG, WebP, GIF, BMP).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    labels: LabelArgs,
    /// How many classes to report per image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    top_k: u32,
    /// Also report the ontology chain: probabilities summed over each condition group, down to
    /// the most specific group whose probability reaches THRESHOLD (default 0.5).
    #[arg(long, value_name = "THRESHOLD", num_args = 0..=1, default_missing_value = "0.5")]
    hierarchy: Option<f32>,
    /// Look only at this part of each image: X,Y,WIDTH,HEIGHT in its pixels (after EXIF
    /// orientation), as the web page's movable crop sends it; then preprocessed as a whole photo.
    #[arg(long, value_name = "X,Y,W,H", value_parser = parse_region)]
    region: Option<dermlip::input::preprocess::Region>,
    /// With --json: also where each image agrees with its top class over the patch grid
    /// (`heatMap`: cosine and share per patch, row-major), as the web page's heat-map shows it.
    #[arg(long, requires = "json")]
    heat_map: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_region(s: &str) -> std::result::Result<dermlip::input::preprocess::Region, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>().map_err(|_| format!("\"{p}\" is not a whole number of pixels")))
        .collect::<std::result::Result<_, _>>()?;
    match v[..] {
        [x, y, width, height] => Ok(dermlip::input::preprocess::Region { x, y, width, height }),
        _ => Err(format!("expected X,Y,WIDTH,HEIGHT (four numbers), got {} of them", v.len())),
    }
}

#[derive(Args)]
struct EmbedImageArgs {
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args)]
struct EmbedTextArgs {
    /// Texts to embed.
    #[arg(value_name = "TEXT", required_unless_present = "text_file")]
    texts: Vec<String>,
    /// File with one text per line (added after the TEXT arguments).
    #[arg(long, value_name = "FILE")]
    text_file: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args)]
struct OutputArgs {
    /// Write to FILE instead of standard output: `.npy` (float32 [n, dim]) or `.json`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// L2-normalise each embedding (open_clip's `normalize=True`).
    #[arg(long)]
    normalize: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => classify(a),
        Command::EmbedImage(a) => embed_image(a),
        Command::EmbedText(a) => embed_text(a),
        Command::Concepts(a) => concepts(a),
        Command::Index(a) => gallery::index(a),
        Command::Search(a) => gallery::search(a),
        Command::Eval(command) => eval::run(command),
        Command::Convert(a) => convert::run(a),
        Command::Fetch(a) => fetch::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dermlip: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_model(args: &ModelArgs) -> Result<DermLip> {
    let device = match args.device {
        DeviceArg::Cpu => burn::tensor::Device::flex(),
        DeviceArg::Wgpu => burn::tensor::Device::wgpu_options()
            .init()
            .map_err(|e| Error::Device(format!("no usable wgpu adapter: {e:?}")))?,
    };
    DermLip::load(&args.model, device)
}

fn read_images(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    paths.iter().map(|p| read_file(p)).collect()
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::Io { path: p.display().to_string(), message: e.to_string() })
}

/// One entry per line (blank lines and `#` comments skipped), or a JSON array of strings.
fn read_list(p: &Path) -> Result<Vec<String>> {
    let bytes = read_file(p)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Input(format!("{}: not UTF-8 text", p.display())))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not a JSON array of strings: {e}", p.display())));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Embeds each image on its own so one unreadable file names itself.
fn embed_each(model: &DermLip, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>> {
    let bytes = read_images(paths)?;
    let mut pixels = Vec::with_capacity(bytes.len());
    for (p, b) in paths.iter().zip(&bytes) {
        let px = model.preprocess_images(&[b.as_slice()]).map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
        pixels.extend(px);
    }
    dermlip::pipeline::rows(model.encode_pixels(&pixels))
}

/// The class names and templates a command was given.
fn labels_and_templates(a: &LabelArgs) -> Result<(Vec<String>, Vec<String>)> {
    let labels = if let Some(l) = &a.labels {
        l.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()
    } else if let Some(id) = &a.label_set {
        LabelSet::builtin_or_error(id)?.classes().to_vec()
    } else if let Some(f) = &a.label_file {
        if f.extension().and_then(|e| e.to_str()) == Some("csv") {
            LabelSet::from_path(f).map_err(|e| Error::Input(e.to_string()))?.classes().to_vec()
        } else {
            read_list(f)?
        }
    } else {
        return Err(Error::Input("give --labels, --label-file or --label-set".into()));
    };
    let templates = match &a.template_file {
        Some(f) => read_list(f)?,
        None => zero_shot_templates(),
    };
    dermlip::knowledge::zero_shot::validate_labels(&labels)?;
    dermlip::knowledge::zero_shot::validate_templates(&templates)?;
    Ok((labels, templates))
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let (labels, templates) = labels_and_templates(&a.labels)?;
    if let Some(t) = a.hierarchy {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::Input(format!("--hierarchy threshold {t} is not between 0 and 1")));
        }
    }
    let model = load_model(&a.model)?;
    let classifier = model.zero_shot_classifier(&labels, &templates)?;
    let domain = model.domain_check()?;
    // Per image: its embedding and, with --heat-map, its patch tokens.
    let (embeddings, patches): (Vec<Vec<f32>>, Vec<Option<Vec<Vec<f32>>>>) = if a.region.is_none() && !a.heat_map {
        (embed_each(&model, &a.images)?, vec![None; a.images.len()])
    } else {
        let mut pixels = Vec::with_capacity(a.images.len());
        for (p, b) in a.images.iter().zip(read_images(&a.images)?) {
            let (rgb, _) = dermlip::input::preprocess::crop_rgb_region(&b, &model.preprocess, a.region)
                .map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
            pixels.push(dermlip::input::preprocess::normalize(&rgb, &model.preprocess));
        }
        if a.heat_map {
            let mut out = (Vec::new(), Vec::new());
            for px in pixels {
                let (e, p) = model.encode_pixels_with_patches(px);
                out.0.push(dermlip::pipeline::rows(e)?.remove(0));
                out.1.push(Some(dermlip::pipeline::rows(p)?));
            }
            out
        } else {
            (dermlip::pipeline::rows(model.encode_pixels(&pixels))?, vec![None; a.images.len()])
        }
    };
    let ontology = Ontology::builtin();
    let mut out = Vec::new();
    for ((path, e), patches) in a.images.iter().zip(&embeddings).zip(&patches) {
        let scored = classifier.classify_all(e, a.top_k as usize);
        let heat = match patches {
            Some(p) => {
                let top = &scored.predictions[0];
                Some(dermlip::knowledge::heatmap::heat_map(&top.label, p, &classifier.weights[top.index])?)
            }
            None => None,
        };
        let chain = match a.hierarchy {
            Some(threshold) => {
                let nodes = ontology
                    .aggregate_with(&labels, &scored.probabilities, UnplacedLabels::Bucket)
                    .map_err(|err| Error::Input(err.to_string()))?;
                Some(ontology.most_specific(&nodes, threshold))
            }
            None => None,
        };
        out.push((path.display().to_string(), scored.predictions, chain, domain.check(e, &classifier), heat));
    }
    if a.json {
        let items: Vec<_> = out
            .iter()
            .map(|(image, preds, chain, domain, heat)| {
                let mut item =
                    serde_json::json!({"image": image, "predictions": preds, "hierarchy": chain, "domain": domain});
                if let Some(h) = heat {
                    item["heatMap"] = serde_json::to_value(h).expect("plain data serialises");
                }
                item
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items).expect("plain data serialises"));
        return Ok(());
    }
    for (image, preds, chain, domain, _) in &out {
        println!("{image}");
        if domain.not_skin {
            println!(
                "  this does not look like a skin photo: closest to \"{}\" ({:.3}) rather than \"{}\" ({:.3})",
                domain.closest_other, domain.other_similarity, domain.closest_skin, domain.skin_similarity
            );
        }
        for p in preds {
            println!("  {:>6.2}%  {}", p.probability * 100.0, p.label);
        }
        if let Some(chain) = chain {
            let steps: Vec<String> = chain.iter().map(|n| format!("{} {:.2}", n.name, n.prob)).collect();
            match steps.is_empty() {
                true => println!("  hierarchy: no condition group reaches the threshold"),
                false => println!("  hierarchy: {}", steps.join(" → ")),
            }
        }
    }
    println!("(educational use only, not a diagnosis)");
    Ok(())
}

fn embed_image(a: EmbedImageArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let rows = embed_each(&model, &a.images)?;
    let names: Vec<String> = a.images.iter().map(|p| p.display().to_string()).collect();
    write_embeddings(&a.out, "image", &names, rows)
}

fn embed_text(a: EmbedTextArgs) -> Result<()> {
    let mut texts = a.texts.clone();
    if let Some(f) = &a.text_file {
        let text =
            String::from_utf8(read_file(f)?).map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?;
        texts.extend(text.lines().map(String::from));
    }
    if texts.is_empty() {
        return Err(Error::Input("no texts given".into()));
    }
    let model = load_model(&a.model)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rows = model.embed_texts(&refs)?;
    write_embeddings(&a.out, "text", &texts, rows)
}

fn write_embeddings(out: &OutputArgs, kind: &str, names: &[String], mut rows: Vec<Vec<f32>>) -> Result<()> {
    if out.normalize {
        rows = rows.iter().map(|r| l2_normalize(r)).collect();
    }
    let json = || {
        let items: Vec<_> =
            names.iter().zip(&rows).map(|(n, r)| serde_json::json!({kind: n, "embedding": r})).collect();
        serde_json::to_string_pretty(&items).expect("plain data serialises")
    };
    match &out.out {
        None => println!("{}", json()),
        Some(path) => {
            let bytes = match path.extension().and_then(|e| e.to_str()) {
                Some("npy") => npy_f32(&rows),
                Some("json") => json().into_bytes(),
                _ => return Err(Error::Input(format!("{}: output must end in .npy or .json", path.display()))),
            };
            std::fs::write(path, bytes)
                .map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })?;
        }
    }
    Ok(())
}

/// NumPy `.npy` version 1.0, little-endian float32, C order, shape `[rows, dim]`.
fn npy_f32(rows: &[Vec<f32>]) -> Vec<u8> {
    let dim = rows.first().map_or(0, Vec::len);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows.len(), dim);
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in rows.iter().flatten() {
        out.extend(v.to_le_bytes());
    }
    out
}

fn concepts(a: ConceptsArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let scorer = model.concept_scorer(
        dermlip::knowledge::concepts::concepts(),
        &dermlip::knowledge::concepts::ConceptPromptSet::monet(),
        dermlip::knowledge::concepts::concept_temperature(),
    )?;
    let embeddings = embed_each(&model, &a.images)?;
    let results: Vec<_> = a
        .images
        .iter()
        .zip(&embeddings)
        .map(|(p, e)| (p.display().to_string(), scorer.top(e, a.top_k as usize)))
        .collect();
    if a.json {
        let out: Vec<_> = results.iter().map(|(image, c)| serde_json::json!({"image": image, "concepts": c})).collect();
        println!("{}", serde_json::to_string_pretty(&out).expect("plain data serialises"));
    } else {
        for (image, concepts) in &results {
            println!("{image}");
            for c in concepts {
                println!("  {:.3}  {}", c.score, c.concept);
            }
        }
    }
    Ok(())
}

fn collection_model_id(args: &ModelArgs, dim: usize) -> String {
    let path = std::fs::canonicalize(&args.model).unwrap_or_else(|_| args.model.clone());
    format!("{} ({dim})", path.display())
}
