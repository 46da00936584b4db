//! `dermlip eval …`: the Derm1M evaluation protocols on a user's CSVs.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use dermlip::{DermLip, Error, Result};

use super::{collection_model_id, labels_and_templates, load_model, read_file, LabelArgs, ModelArgs};

#[derive(Subcommand)]
pub(crate) enum EvalCommand {
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
pub(crate) struct EvalInput {
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
pub(crate) struct EvalRetrievalArgs {
    #[command(flatten)]
    input: EvalInput,
    /// Caption column.
    #[arg(long, default_value = "caption")]
    caption_key: String,
}

#[derive(Args)]
pub(crate) struct EvalConceptsArgs {
    #[command(flatten)]
    input: EvalInput,
}

#[derive(Args)]
pub(crate) struct EvalProbeArgs {
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
pub(crate) struct EvalZeroShotArgs {
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

pub(crate) fn run(command: EvalCommand) -> Result<()> {
    match command {
        EvalCommand::ZeroShot(a) => eval_zero_shot(a),
        EvalCommand::Retrieval(a) => eval_retrieval(a),
        EvalCommand::Concepts(a) => eval_concepts(a),
        EvalCommand::LinearProbe(a) => eval_probe(a),
    }
}

fn eval_zero_shot(a: EvalZeroShotArgs) -> Result<()> {
    let (labels, templates) = labels_and_templates(&a.labels)?;
    let rows = read_labelled_csv(&a.input.csv, &labels)?;
    let model = load_model(&a.input.model)?;
    let classifier = model.zero_shot_classifier(&labels, &templates)?;
    let paths: Vec<String> = rows.iter().map(|(p, _)| p.clone()).collect();
    let mut seen = std::collections::HashSet::<&str>::new();
    let duplicates = paths.iter().filter(|p| !seen.insert(p.as_str())).count();
    let (embedded, problems) = embed_listed(&model, &a.input, &paths, ImageVector::Embedding)?;
    let (mut truth, mut probs, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for ((path, label), e) in rows.iter().zip(&embedded) {
        let Some(e) = e else { continue };
        let p: Vec<f64> = classifier.probabilities(e).iter().map(|&x| x as f64).collect();
        truth.push(*label);
        probs.push(p.clone());
        ours.push((path.clone(), p));
    }
    if truth.is_empty() {
        return Err(Error::Input(format!(
            "{}: none of the {} images could be read",
            a.input.csv.display(),
            rows.len()
        )));
    }
    let report = dermlip::eval::zero_shot_report(&labels, &truth, &probs)?;
    if let Some(dir) = &a.input.plots {
        let mut curves = Vec::new();
        for (c, name) in labels.iter().enumerate() {
            let y: Vec<bool> = truth.iter().map(|&t| t == c).collect();
            let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
            if let (Ok(curve), Ok(Some(auc))) =
                (dermlip::eval::metrics::roc_curve(&y, &s), dermlip::eval::metrics::roc_auc_binary(&y, &s))
            {
                curves.push((name.clone(), curve, auc));
            }
        }
        write_plot(
            dir,
            "confusion_matrix.svg",
            &dermlip::eval::plots::confusion_svg("Zero-shot confusion matrix", &labels, &report.confusion_matrix),
        )?;
        write_plot(dir, "roc.svg", &dermlip::eval::plots::roc_svg("Zero-shot ROC (one vs rest)", &curves))?;
    }
    let agreement = match &a.compare_reference {
        Some(f) => {
            let text = String::from_utf8(read_file(f)?)
                .map_err(|_| Error::Input(format!("{}: not UTF-8 text", f.display())))?;
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
    println!(
        "{} rows, {} evaluated, {} skipped, {} duplicate rows",
        rows.len(),
        truth.len(),
        problems.len(),
        duplicates
    );
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
    let (header, rows) = read_table(path)?;
    let (pc, lc) = (column(&header, "image_path", path)?, column(&header, "label", path)?);
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        if r[pc].is_empty() {
            return Err(Error::Input(format!("{}, line {}: empty image_path", path.display(), i + 2)));
        }
        out.push((r[pc].clone(), class_index(&r[lc], classes, path, i + 2)?));
    }
    Ok(out)
}

/// A label cell: a 0-based class index or a class name (case-insensitive).
fn class_index(label: &str, classes: &[String], csv: &Path, line: usize) -> Result<usize> {
    match label.parse::<usize>() {
        Ok(k) if k < classes.len() => Ok(k),
        Ok(k) => {
            Err(Error::Input(format!("{}, line {line}: label {k} but only {} classes", csv.display(), classes.len())))
        }
        Err(_) => classes.iter().position(|c| c.eq_ignore_ascii_case(label)).ok_or_else(|| {
            Error::Input(format!(
                "{}, line {line}: label \"{label}\" is not one of the {} classes",
                csv.display(),
                classes.len()
            ))
        }),
    }
}

/// A CSV with a header, as rows of named fields.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let shown = path.display().to_string();
    let text = String::from_utf8(read_file(path)?).map_err(|_| Error::Input(format!("{shown}: not UTF-8 text")))?;
    let mut reader = csv::ReaderBuilder::new().from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Input(format!("{shown}: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
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
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::Input(format!("{}: no \"{name}\" column", csv.display())))
}

/// What `embed_listed` computes per image.
#[derive(Clone, Copy, PartialEq)]
enum ImageVector {
    /// The image embedding (zero-shot, retrieval, concepts).
    Embedding,
    /// The linear-probe feature: PanDerm's pre-head feature (the paper's probe input), the
    /// embedding for the open_clip ViT.
    ProbeFeature,
}

/// Embeds every listed image (through the cache when given); unreadable ones are reported on
/// stderr and come back as `None`, so one bad file never stops a run.
fn embed_listed(
    model: &DermLip,
    input: &EvalInput,
    paths: &[String],
    what: ImageVector,
) -> Result<(Vec<Option<Vec<f32>>>, Vec<String>)> {
    use dermlip::knowledge::retrieval::{EmbeddingStore, Item, ItemKind, Precision};
    let root =
        input.images_root.clone().unwrap_or_else(|| input.csv.parent().map(Path::to_path_buf).unwrap_or_default());
    let panderm_feature =
        what == ImageVector::ProbeFeature && model.config.vision.arch == dermlip::config::VisionArch::PanDerm;
    let dim = if panderm_feature { model.config.vision.width } else { model.config.embed_dim };
    let model_id = match panderm_feature {
        true => format!("{} pre-head features", collection_model_id(&input.model, dim)),
        false => collection_model_id(&input.model, dim),
    };
    let cache_path = match (&input.cache, input.no_cache) {
        (_, true) => None,
        (Some(f), _) => Some(f.clone()),
        (None, false) => default_cache_path(&model_id),
    };
    let mut cache = match &cache_path {
        Some(f) if f.exists() => {
            let store = EmbeddingStore::from_bytes(&read_file(f)?)
                .map_err(|e| Error::Input(format!("{}: {e}", f.display())))?;
            if store.model != model_id {
                return Err(Error::Input(format!("{}: embeddings of {}, not of {model_id}", f.display(), store.model)));
            }
            store
        }
        _ => EmbeddingStore::new(model_id, dim),
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
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}|{}|{mtime}", full.display(), m.len())
        });
        let cached = key
            .as_ref()
            .and_then(|k| cache.items().iter().position(|it| &it.id == k))
            .map(|j| cache.vector(j).to_vec());
        let result = match cached {
            Some(v) => Ok(v),
            None => read_file(&full).and_then(|b| {
                let px = model.preprocess_images(&[b.as_slice()])?;
                let vectors = match panderm_feature {
                    true => model.encode_pixel_features(&px),
                    false => model.encode_pixels(&px),
                };
                Ok(dermlip::pipeline::rows(vectors)?.remove(0))
            }),
        };
        match result {
            Ok(v) => {
                if let (Some(k), None) = (&key, cache.items().iter().position(|it| Some(&it.id) == key.as_ref())) {
                    cache.push(
                        Item {
                            id: k.clone(),
                            kind: ItemKind::Image,
                            source: full.display().to_string(),
                            label: None,
                            caption: None,
                            thumbnail: None,
                        },
                        &v,
                    )?;
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
    let (images, skipped) = embed_listed(&model, &a.input, &paths, ImageVector::Embedding)?;
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
        let svg = dermlip::eval::plots::recall_svg(
            "Retrieval recall@K",
            &report.ks,
            &report.image_to_text,
            &report.text_to_image,
        );
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
    let known = dermlip::knowledge::concepts::concepts();
    let mut chosen = Vec::new();
    for (c, h) in header.iter().enumerate().filter(|(c, _)| *c != pc) {
        let concept = known.iter().find(|k| k.name.eq_ignore_ascii_case(h)).ok_or_else(|| {
            Error::Input(format!(
                "{}: column \"{h}\" is not one of Derm1M's {} concepts",
                a.input.csv.display(),
                known.len()
            ))
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
    let concepts: Vec<dermlip::knowledge::concepts::Concept> = chosen.iter().map(|(_, k)| k.clone()).collect();
    let scorer = model.concept_scorer(
        &concepts,
        &dermlip::knowledge::concepts::ConceptPromptSet::monet(),
        dermlip::knowledge::concepts::concept_temperature(),
    )?;
    let paths: Vec<String> = rows.iter().map(|r| r[pc].clone()).collect();
    let (mut truth, mut scores) = (Vec::new(), Vec::new());
    let (embedded, skipped) = embed_listed(&model, &a.input, &paths, ImageVector::Embedding)?;
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
    let (pc, lc, sc) =
        (column(&header, "image_path", csv)?, column(&header, "label", csv)?, column(&header, "split", csv)?);
    let mut parsed = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let label = class_index(&r[lc], &labels, csv, i + 2)?;
        let test = match r[sc].to_ascii_lowercase().as_str() {
            "train" | "val" | "valid" | "validation" => false,
            "test" => true,
            other => {
                return Err(Error::Input(format!(
                    "{}, line {}: split \"{other}\" is not train, val or test",
                    csv.display(),
                    i + 2
                )))
            }
        };
        parsed.push((label, test));
    }
    let model = load_model(&a.input.model)?;
    let paths: Vec<String> = rows.iter().map(|r| r[pc].clone()).collect();
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (embedded, skipped) = embed_listed(&model, &a.input, &paths, ImageVector::ProbeFeature)?;
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
        reports.push(dermlip::eval::linear_probe_report(
            (&train_x, &train_y),
            (&test_x, &test_y),
            labels.len(),
            f,
            a.seed,
        )?);
    }
    write_report(&a.input, &serde_json::json!({"rows": rows.len(), "skipped": skipped, "reports": reports}))?;
    println!("| fraction | train | test | accuracy | balanced accuracy | weighted F1 | macro AUROC (OvO) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &reports {
        let auc = r.macro_auroc.map_or("–".into(), |x| format!("{x:.4}"));
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {auc} |{}",
            r.fraction,
            r.n_train,
            r.n_test,
            r.accuracy,
            r.balanced_accuracy,
            r.weighted_f1,
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
