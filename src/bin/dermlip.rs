//! `dermlip`: zero-shot classification and embeddings from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dermlip::pipeline::classify_embedding;
use dermlip::zero_shot::{l2_normalize, SKIN_TEMPLATES};
use dermlip::labels::LabelSet;
use dermlip::ontology::{Ontology, UnplacedLabels};
use dermlip::{DermLip, Error, Result};

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
    /// Zero-shot classification of images against a list of labels.
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
}

#[derive(Args)]
struct IndexArgs {
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
struct SearchArgs {
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

#[derive(Subcommand)]
enum EvalCommand {
    /// Zero-shot classification of a labelled CSV (`image_path,label`): accuracy, balanced
    /// accuracy, weighted F1, macro AUROC, top-5, confusion matrix.
    ZeroShot(EvalZeroShotArgs),
    /// Image↔caption retrieval of a CSV (`image_path,caption`, row i ↔ row i): Recall@1/5/10/50/200
    /// both directions.
    Retrieval(EvalRetrievalArgs),
    /// Concept annotation of a CSV (`image_path` + one 0/1 column per concept, named as in
    /// Derm1M's ConceptTerms): per-concept AUROC, mean AUROC, count above 0.7.
    Concepts(EvalConceptsArgs),
    /// Linear probe of a CSV (`image_path,label,split` with split train/val/test): logistic
    /// regression on frozen image embeddings (C = dim·classes/100), fitted on per-class fractions
    /// of train+val, scored on test.
    LinearProbe(EvalProbeArgs),
}

#[derive(Args)]
struct EvalInput {
    /// The CSV to evaluate.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Directory that relative image paths are read from (default: the CSV's directory).
    #[arg(long, value_name = "DIR")]
    images_root: Option<PathBuf>,
    /// Embedding cache (a .dlemb file): images already embedded by this model (same path, size and
    /// modification time) are not embedded again. Default: one file per model under
    /// ~/.cache/dermlip/embeddings/.
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Embed every image afresh and write no cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    model: ModelArgs,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    out_json: Option<PathBuf>,
    /// Write plots (SVG) into DIR: confusion matrix and ROC curves (zero-shot), Recall@K (retrieval).
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
}

#[derive(Args)]
struct EvalRetrievalArgs {
    #[command(flatten)]
    input: EvalInput,
    /// Caption column.
    #[arg(long, default_value = "caption")]
    caption_key: String,
}

#[derive(Args)]
struct EvalConceptsArgs {
    #[command(flatten)]
    input: EvalInput,
}

#[derive(Args)]
struct EvalProbeArgs {
    #[command(flatten)]
    input: EvalInput,
    #[command(flatten)]
    labels: LabelArgs,
    /// Fractions of the training data per class (Derm1M reports 0.01, 0.1 and 1).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1")]
    fractions: Vec<f64>,
    /// Seed of the few-shot sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
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
struct EvalZeroShotArgs {
    #[command(flatten)]
    input: EvalInput,
    #[command(flatten)]
    labels: LabelArgs,
    /// A DermFM-Zero per-image prediction file (`image_path,true_label,predicted_label,
    /// probability_class_0,…`) to compare ours with, image by image (matched by file name).
    #[arg(long, value_name = "FILE")]
    compare_reference: Option<PathBuf>,
    /// Print JSON instead of the markdown report.
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
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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
        Command::Index(a) => index(a),
        Command::Search(a) => search(a),
        Command::Eval(EvalCommand::ZeroShot(a)) => eval_zero_shot(a),
        Command::Eval(EvalCommand::Retrieval(a)) => eval_retrieval(a),
        Command::Eval(EvalCommand::Concepts(a)) => eval_concepts(a),
        Command::Eval(EvalCommand::LinearProbe(a)) => eval_probe(a),
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
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Input(format!("{}: not UTF-8 text", p.display())))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: not a JSON array of strings: {e}", p.display())));
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Embeds each image on its own so one unreadable file names itself.
fn embed_each(model: &DermLip, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>> {
    let bytes = read_images(paths)?;
    let mut pixels = Vec::with_capacity(bytes.len());
    for (p, b) in paths.iter().zip(&bytes) {
        let px = model
            .preprocess_images(&[b.as_slice()])
            .map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
        pixels.extend(px);
    }
    dermlip::pipeline::rows(model.encode_pixels(&pixels))
}

/// The class names and templates a command was given.
fn labels_and_templates(a: &LabelArgs) -> Result<(Vec<String>, Vec<String>)> {
    let labels = if let Some(l) = &a.labels {
        l.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()
    } else if let Some(id) = &a.label_set {
        let set = LabelSet::builtin(id).ok_or_else(|| {
            let ids: Vec<&str> = LabelSet::builtin_ids().collect();
            Error::Input(format!("unknown label set \"{id}\" (built-in: {})", ids.join(", ")))
        })?;
        set.classes().to_vec()
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
        None => SKIN_TEMPLATES.iter().map(|s| s.to_string()).collect(),
    };
    dermlip::zero_shot::validate_labels(&labels)?;
    dermlip::zero_shot::validate_templates(&templates)?;
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
    let weights = model.zero_shot_weights(&labels, &templates)?;
    let embeddings = embed_each(&model, &a.images)?;
    let ontology = Ontology::builtin();
    let mut out = Vec::new();
    for (path, e) in a.images.iter().zip(&embeddings) {
        let preds = classify_embedding(e, &weights, &labels, a.top_k as usize);
        let chain = match a.hierarchy {
            Some(threshold) => {
                let probs = dermlip::zero_shot::softmax(&dermlip::zero_shot::logits(e, &weights));
                let nodes = ontology
                    .aggregate_with(&labels, &probs, UnplacedLabels::Bucket)
                    .map_err(|err| Error::Input(err.to_string()))?;
                Some(ontology.most_specific(&nodes, threshold))
            }
            None => None,
        };
        out.push((path.display().to_string(), preds, chain));
    }
    if a.json {
        let items: Vec<_> = out
            .iter()
            .map(|(image, preds, chain)| serde_json::json!({"image": image, "predictions": preds, "hierarchy": chain}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items).expect("plain data serialises"));
        return Ok(());
    }
    for (image, preds, chain) in &out {
        println!("{image}");
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
        let text = String::from_utf8(read_file(f)?)
            .map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?;
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
        let items: Vec<_> = names
            .iter()
            .zip(&rows)
            .map(|(n, r)| serde_json::json!({kind: n, "embedding": r}))
            .collect();
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
        dermlip::labels::concepts(),
        &dermlip::concepts::ConceptPromptSet::monet(),
        dermlip::labels::concept_temperature(),
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

fn eval_zero_shot(a: EvalZeroShotArgs) -> Result<()> {
    let (labels, templates) = labels_and_templates(&a.labels)?;
    let rows = read_labelled_csv(&a.input.csv, &labels)?;
    let model = load_model(&a.input.model)?;
    let weights = model.zero_shot_weights(&labels, &templates)?;
    let paths: Vec<String> = rows.iter().map(|(p, _)| p.clone()).collect();
    let mut seen = std::collections::HashSet::<&str>::new();
    let duplicates = paths.iter().filter(|p| !seen.insert(p.as_str())).count();
    let (embedded, problems) = embed_listed(&model, &a.input, &paths)?;
    let (mut truth, mut probs, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for ((path, label), e) in rows.iter().zip(&embedded) {
        let Some(e) = e else { continue };
        let p: Vec<f64> = dermlip::zero_shot::softmax(&dermlip::zero_shot::logits(e, &weights)).iter().map(|&x| x as f64).collect();
        truth.push(*label);
        probs.push(p.clone());
        ours.push((path.clone(), p));
    }
    if truth.is_empty() {
        return Err(Error::Input(format!("{}: none of the {} images could be read", a.input.csv.display(), rows.len())));
    }
    let report = dermlip::eval::zero_shot_report(&labels, &truth, &probs)?;
    if let Some(dir) = &a.input.plots {
        let mut curves = Vec::new();
        for (c, name) in labels.iter().enumerate() {
            let y: Vec<bool> = truth.iter().map(|&t| t == c).collect();
            let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
            if let (Ok(curve), Ok(Some(auc))) = (dermlip::metrics::roc_curve(&y, &s), dermlip::metrics::roc_auc_binary(&y, &s)) {
                curves.push((name.clone(), curve, auc));
            }
        }
        write_plot(dir, "confusion_matrix.svg", &dermlip::plots::confusion_svg("Zero-shot confusion matrix", &labels, &report.confusion_matrix))?;
        write_plot(dir, "roc.svg", &dermlip::plots::roc_svg("Zero-shot ROC (one vs rest)", &curves))?;
    }
    let agreement = match &a.compare_reference {
        Some(f) => {
            let text = String::from_utf8(read_file(f)?).map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?;
            let reference = dermlip::eval::read_reference_predictions(&text)?;
            Some(dermlip::eval::compare_with_reference(&ours, &reference)?)
        }
        None => None,
    };
    let json = serde_json::json!({
        "csv": a.input.csv.display().to_string(), "rows": rows.len(), "skipped": problems, "duplicate_rows": duplicates,
        "report": report, "reference_agreement": agreement,
    });
    write_report(&a.input, &json)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json).expect("plain data serialises"));
        return Ok(());
    }
    println!("{}", report.to_markdown());
    println!("{} rows, {} evaluated, {} skipped, {} duplicate rows", rows.len(), truth.len(), problems.len(), duplicates);
    if let Some(g) = agreement {
        println!(
            "\nagreement with {}: {} images matched ({} only ours, {} only in the reference), top-1 agreement {:.4}, \
             max |Δprob| {:.2e}, mean |Δprob| {:.2e}",
            a.compare_reference.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            g.matched,
            g.only_ours.len(),
            g.only_reference,
            g.top1_agreement,
            g.max_abs_prob_diff,
            g.mean_abs_prob_diff
        );
    }
    Ok(())
}

/// `image_path,label` rows; a label is a class name (case-insensitive) or a 0-based index.
fn read_labelled_csv(path: &Path, classes: &[String]) -> Result<Vec<(String, usize)>> {
    let shown = path.display().to_string();
    let text = String::from_utf8(read_file(path)?).map_err(|_| Error::Input(format!("{shown}: not UTF-8 text")))?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().map_err(|e| Error::Input(format!("{shown}: {e}")))?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(pc), Some(lc)) = (col("image_path"), col("label")) else {
        return Err(Error::Input(format!("{shown}: expected a header with image_path and label columns")));
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let r = record.map_err(|e| Error::Input(format!("{shown}, line {line}: {e}")))?;
        let (p, l) = (r.get(pc).unwrap_or("").trim(), r.get(lc).unwrap_or("").trim());
        if p.is_empty() {
            return Err(Error::Input(format!("{shown}, line {line}: empty image_path")));
        }
        let index = match l.parse::<usize>() {
            Ok(k) if k < classes.len() => k,
            Ok(k) => return Err(Error::Input(format!("{shown}, line {line}: label {k} but only {} classes", classes.len()))),
            Err(_) => classes.iter().position(|c| c.eq_ignore_ascii_case(l)).ok_or_else(|| {
                Error::Input(format!("{shown}, line {line}: label \"{l}\" is not one of the {} classes", classes.len()))
            })?,
        };
        rows.push((p.to_string(), index));
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("{shown}: no rows")));
    }
    Ok(rows)
}

/// A CSV with a header, as rows of named fields.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let shown = path.display().to_string();
    let text = String::from_utf8(read_file(path)?).map_err(|_| Error::Input(format!("{shown}: not UTF-8 text")))?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| Error::Input(format!("{shown}: {e}")))?.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let r = record.map_err(|e| Error::Input(format!("{shown}, line {}: {e}", i + 2)))?;
        rows.push(r.iter().map(|f| f.trim().to_string()).collect());
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("{shown}: no rows")));
    }
    Ok((header, rows))
}

fn column(header: &[String], name: &str, csv: &Path) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| Error::Input(format!("{}: no \"{name}\" column", csv.display())))
}

/// Embeds every listed image (through the cache when given); unreadable ones are reported on
/// stderr and come back as `None`, so one bad file never stops a run.
fn embed_listed(model: &DermLip, input: &EvalInput, paths: &[String]) -> Result<(Vec<Option<Vec<f32>>>, Vec<String>)> {
    use dermlip::retrieval::{EmbeddingStore, Item, ItemKind, Precision};
    let root = input.images_root.clone().unwrap_or_else(|| input.csv.parent().map(Path::to_path_buf).unwrap_or_default());
    let model_id = collection_model_id(&input.model, model.config.embed_dim);
    let cache_path = match (&input.cache, input.no_cache) {
        (_, true) => None,
        (Some(f), _) => Some(f.clone()),
        (None, false) => default_cache_path(&model_id),
    };
    let mut cache = match &cache_path {
        Some(f) if f.exists() => {
            let store = EmbeddingStore::from_bytes(&read_file(f)?).map_err(|e| Error::Input(format!("{}: {e}", f.display())))?;
            if store.model != model_id {
                return Err(Error::Input(format!("{}: embeddings of {}, not of {model_id}", f.display(), store.model)));
            }
            store
        }
        _ => EmbeddingStore::new(model_id, model.config.embed_dim),
    };
    let mut out = Vec::with_capacity(paths.len());
    let (mut problems, mut fresh) = (Vec::new(), 0);
    let bar = indicatif::ProgressBar::new(paths.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} images, {per_sec}, ETA {eta}")
            .expect("valid template"),
    );
    bar.set_message("embedding");
    for (i, p) in paths.iter().enumerate() {
        let full = if Path::new(p).is_absolute() { PathBuf::from(p) } else { root.join(p) };
        let key = std::fs::metadata(&full).ok().map(|m| {
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            format!("{}|{}|{mtime}", full.display(), m.len())
        });
        let cached = key.as_ref().and_then(|k| cache.items().iter().position(|it| &it.id == k)).map(|j| cache.vector(j).to_vec());
        let result = match cached {
            Some(v) => Ok(v),
            None => read_file(&full).and_then(|b| {
                let px = model.preprocess_images(&[b.as_slice()])?;
                Ok(dermlip::pipeline::rows(model.encode_pixels(&px))?.remove(0))
            }),
        };
        match result {
            Ok(v) => {
                if let (Some(k), None) = (&key, cache.items().iter().position(|it| Some(&it.id) == key.as_ref())) {
                    cache.push(Item { id: k.clone(), kind: ItemKind::Image, source: full.display().to_string(), label: None }, &v)?;
                    fresh += 1;
                }
                out.push(Some(v));
            }
            Err(e @ Error::Io { .. }) => {
                problems.push(format!("row {}: {e}", i + 2));
                out.push(None);
            }
            Err(e) => {
                problems.push(format!("row {}: {}: {e}", i + 2, full.display()));
                out.push(None);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for p in &problems {
        eprintln!("dermlip: skipped {p}");
    }
    if let (Some(f), true) = (&cache_path, fresh > 0) {
        // Cached vectors are normalised; every metric here is cosine-based, so nothing changes.
        let tmp = f.with_extension("dlemb.tmp");
        std::fs::write(&tmp, cache.to_bytes(Precision::F32))
            .and_then(|_| std::fs::rename(&tmp, f))
            .map_err(|e| Error::Io { path: f.display().to_string(), message: e.to_string() })?;
    }
    Ok((out, problems))
}

fn write_report(input: &EvalInput, json: &serde_json::Value) -> Result<()> {
    if let Some(out) = &input.out_json {
        std::fs::write(out, serde_json::to_string_pretty(json).expect("plain data serialises"))
            .map_err(|e| Error::Io { path: out.display().to_string(), message: e.to_string() })?;
    }
    Ok(())
}

fn eval_retrieval(a: EvalRetrievalArgs) -> Result<()> {
    let (header, rows) = read_table(&a.input.csv)?;
    let (pc, cc) = (column(&header, "image_path", &a.input.csv)?, column(&header, &a.caption_key, &a.input.csv)?);
    let model = load_model(&a.input.model)?;
    let paths: Vec<String> = rows.iter().map(|r| r[pc].clone()).collect();
    let (images, skipped) = embed_listed(&model, &a.input, &paths)?;
    let (mut img, mut txt) = (Vec::new(), Vec::new());
    for (e, r) in images.into_iter().zip(&rows) {
        if let Some(e) = e {
            img.push(e);
            txt.push(r[cc].clone());
        }
    }
    if img.is_empty() {
        return Err(Error::Input("no image could be read".into()));
    }
    let refs: Vec<&str> = txt.iter().map(String::as_str).collect();
    let report = dermlip::eval::retrieval_report(&img, &model.embed_texts(&refs)?, &dermlip::eval::RECALL_KS)?;
    write_report(&a.input, &serde_json::json!({"rows": rows.len(), "skipped": skipped, "report": report}))?;
    if let Some(dir) = &a.input.plots {
        let svg = dermlip::plots::recall_svg("Retrieval recall@K", &report.ks, &report.image_to_text, &report.text_to_image);
        write_plot(dir, "recall_at_k.svg", &svg)?;
    }
    println!("| direction | {} |", report.ks.iter().map(|k| format!("R@{k}")).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(report.ks.len()));
    for (name, r) in [("image → text", &report.image_to_text), ("text → image", &report.text_to_image)] {
        println!("| {name} | {} |", r.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" | "));
    }
    println!("{} pairs evaluated of {} rows", report.n_pairs, rows.len());
    Ok(())
}

fn eval_concepts(a: EvalConceptsArgs) -> Result<()> {
    let (header, rows) = read_table(&a.input.csv)?;
    let pc = column(&header, "image_path", &a.input.csv)?;
    let known = dermlip::labels::concepts();
    let mut chosen = Vec::new();
    for (c, h) in header.iter().enumerate().filter(|(c, _)| *c != pc) {
        let concept = known.iter().find(|k| k.name.eq_ignore_ascii_case(h)).ok_or_else(|| {
            Error::Input(format!("{}: column \"{h}\" is not one of Derm1M's {} concepts", a.input.csv.display(), known.len()))
        })?;
        chosen.push((c, concept.clone()));
    }
    if chosen.is_empty() {
        return Err(Error::Input(format!("{}: no concept columns", a.input.csv.display())));
    }
    let mut present = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let row: Result<Vec<bool>> = chosen
            .iter()
            .map(|(c, k)| match r[*c].as_str() {
                "1" | "1.0" | "true" => Ok(true),
                "0" | "0.0" | "false" => Ok(false),
                v => Err(Error::Input(format!("line {}: \"{v}\" in column {} is not 0 or 1", i + 2, k.name))),
            })
            .collect();
        present.push(row?);
    }
    let model = load_model(&a.input.model)?;
    let concepts: Vec<dermlip::concepts::Concept> = chosen.iter().map(|(_, k)| k.clone()).collect();
    let scorer = model.concept_scorer(
        &concepts,
        &dermlip::concepts::ConceptPromptSet::monet(),
        dermlip::labels::concept_temperature(),
    )?;
    let paths: Vec<String> = rows.iter().map(|r| r[pc].clone()).collect();
    let (mut truth, mut scores) = (Vec::new(), Vec::new());
    let (embedded, skipped) = embed_listed(&model, &a.input, &paths)?;
    for (e, p) in embedded.into_iter().zip(present) {
        if let Some(e) = e {
            scores.push(scorer.scores(&e));
            truth.push(p);
        }
    }
    let names: Vec<String> = concepts.iter().map(|c| c.name.clone()).collect();
    let report = dermlip::eval::concept_report(&names, &truth, &scores)?;
    write_report(&a.input, &serde_json::json!({"rows": rows.len(), "skipped": skipped, "report": report}))?;
    println!("| concept | AUROC |\n|---|---|");
    for (n, auc) in &report.per_concept {
        println!("| {n} | {} |", auc.map_or("– (one class only)".into(), |x| format!("{x:.4}")));
    }
    let mean = report.mean_auroc.map_or("–".into(), |x| format!("{x:.4}"));
    println!("mean AUROC {mean}; {} of {} concepts above 0.7", report.above_0_7, names.len());
    Ok(())
}

fn eval_probe(a: EvalProbeArgs) -> Result<()> {
    let (labels, _) = labels_and_templates(&a.labels)?;
    if let Some(f) = a.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        return Err(Error::Input(format!("--fractions: {f} is not in (0, 1]")));
    }
    let (header, rows) = read_table(&a.input.csv)?;
    let csv = &a.input.csv;
    let (pc, lc, sc) = (column(&header, "image_path", csv)?, column(&header, "label", csv)?, column(&header, "split", csv)?);
    let mut parsed = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let l = &r[lc];
        let label = match l.parse::<usize>() {
            Ok(k) if k < labels.len() => k,
            _ => labels.iter().position(|c| c.eq_ignore_ascii_case(l)).ok_or_else(|| {
                Error::Input(format!("{}, line {}: label \"{l}\" is not one of the {} classes", csv.display(), i + 2, labels.len()))
            })?,
        };
        let test = match r[sc].to_ascii_lowercase().as_str() {
            "train" | "val" | "valid" | "validation" => false,
            "test" => true,
            other => return Err(Error::Input(format!("{}, line {}: split \"{other}\" is not train, val or test", csv.display(), i + 2))),
        };
        parsed.push((label, test));
    }
    let model = load_model(&a.input.model)?;
    let paths: Vec<String> = rows.iter().map(|r| r[pc].clone()).collect();
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (embedded, skipped) = embed_listed(&model, &a.input, &paths)?;
    for (e, (label, test)) in embedded.into_iter().zip(parsed) {
        let Some(e) = e else { continue };
        if test {
            test_x.push(e);
            test_y.push(label);
        } else {
            train_x.push(e);
            train_y.push(label);
        }
    }
    if train_x.is_empty() || test_x.is_empty() {
        return Err(Error::Input(format!("{}: needs readable train/val and test images", csv.display())));
    }
    let mut reports = Vec::new();
    for &f in &a.fractions {
        reports.push(dermlip::eval::linear_probe_report((&train_x, &train_y), (&test_x, &test_y), labels.len(), f, a.seed)?);
    }
    write_report(&a.input, &serde_json::json!({"rows": rows.len(), "skipped": skipped, "reports": reports}))?;
    println!("| fraction | train | test | accuracy | balanced accuracy | weighted F1 | macro AUROC (OvO) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &reports {
        let auc = r.macro_auroc.map_or("–".into(), |x| format!("{x:.4}"));
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {auc} |{}",
            r.fraction, r.n_train, r.n_test, r.accuracy, r.balanced_accuracy, r.weighted_f1,
            if r.converged { "" } else { " (not converged)" }
        );
    }
    Ok(())
}

fn write_plot(dir: &Path, name: &str, svg: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&path, svg))
        .map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })
}

/// Names the model that made a collection or cache, so vectors of another model are refused.
fn collection_model_id(args: &ModelArgs, dim: usize) -> String {
    let path = std::fs::canonicalize(&args.model).unwrap_or_else(|_| args.model.clone());
    format!("{} ({dim})", path.display())
}

fn index(a: IndexArgs) -> Result<()> {
    use dermlip::retrieval::{EmbeddingStore, Item, ItemKind, Precision};
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
        store.push(Item { id: format!("caption-{}", i + 1), kind: ItemKind::Text, source: c.clone(), label: None }, &e)?;
    }
    let bytes = store.to_bytes(if a.f16 { Precision::F16 } else { Precision::F32 });
    std::fs::write(&a.out, &bytes).map_err(|e| Error::Io { path: a.out.display().to_string(), message: e.to_string() })?;
    println!("{}: {} images, {} captions, {} bytes", a.out.display(), a.images.len(), captions.len(), bytes.len());
    Ok(())
}

fn search(a: SearchArgs) -> Result<()> {
    use dermlip::retrieval::{EmbeddingStore, ItemKind};
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

/// `~/.cache/dermlip/embeddings/<hash of the model id>.dlemb` (or under `$XDG_CACHE_HOME`).
fn default_cache_path(model_id: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    // FNV-1a: a stable file name per model, not a security measure.
    let hash = model_id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let dir = base.join("dermlip").join("embeddings");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join(format!("{hash:016x}.dlemb")))
}
