//! `dermlip convert`: an open_clip checkpoint → a web bundle for the browser.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use dermlip::bundle::{write_bundle, ConvertOptions, ModelCard, WeightFormat, WeightsKind};
use dermlip::knowledge::labels::LabelSet;
use dermlip::Result;

#[derive(Args)]
pub struct ConvertArgs {
    /// open_clip checkpoint directory (or weights file beside its open_clip_config.json).
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    /// Output directory (created if missing; files in it are overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How the image tower is stored. int8: per-row int8 matrices, dequantised to f32 on load.
    #[arg(long, value_enum, default_value_t = Format::F16)]
    image_weights: Format,
    /// How the text tower is stored.
    #[arg(long, value_enum, default_value_t = Format::F16)]
    text_weights: Format,
    /// Built-in label sets to precompute, comma-separated (default: all).
    #[arg(long, value_name = "IDS")]
    label_sets: Option<String>,
    /// Prompt templates for the precomputed label sets (one per line or a JSON array; default:
    /// Derm1M's eight skin templates).
    #[arg(long, value_name = "FILE")]
    template_file: Option<PathBuf>,
    /// What the bundle serves, written into manifest.json as `model_card` (docs/web-bundle.md): a
    /// JSON object with name, source, licence, weights ("real" or "fixture") and accuracy. Without
    /// it (and without --fixture) the bundle's model is "unknown" and the page says so.
    #[arg(long, value_name = "FILE")]
    model_card: Option<PathBuf>,
    /// Marks the bundle as a test fixture (random weights): the site and the widget show a
    /// "demo model — results are meaningless" banner. Fills the card's name and source when
    /// --model-card does not give them.
    #[arg(long)]
    fixture: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    F32,
    F16,
    Int8,
}

impl From<Format> for WeightFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::F32 => WeightFormat::F32,
            Format::F16 => WeightFormat::F16,
            Format::Int8 => WeightFormat::Int8,
        }
    }
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let mut opts = ConvertOptions {
        image_weights: a.image_weights.into(),
        text_weights: a.text_weights.into(),
        ..ConvertOptions::default()
    };
    if let Some(ids) = &a.label_sets {
        opts.label_sets = ids.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        for id in &opts.label_sets {
            LabelSet::builtin_or_error(id)?;
        }
    }
    if let Some(f) = &a.template_file {
        opts.templates = super::read_list(f)?;
        dermlip::knowledge::zero_shot::validate_templates(&opts.templates)?;
    }
    let mut card = match &a.model_card {
        Some(f) => Some(ModelCard::from_json(
            &std::fs::read_to_string(f)
                .map_err(|e| dermlip::Error::Io { path: f.display().to_string(), message: e.to_string() })?,
        )?),
        None => None,
    };
    if a.fixture {
        let dir = std::fs::canonicalize(&a.model)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let fixture = ModelCard::fixture(&dir);
        let mut c = card.unwrap_or_default();
        c.weights = Some(WeightsKind::Fixture);
        c.name = c.name.or(fixture.name);
        c.source = c.source.or(fixture.source);
        card = Some(c);
    }
    opts.model_card = card;
    let manifest = write_bundle(&a.model, &a.out, &opts)?;
    println!("{:<32} {:<17} {:>12}  sha256", "file", "role", "bytes");
    for f in &manifest.files {
        println!("{:<32} {:<17} {:>12}  {}", f.path, f.role, f.bytes, &f.sha256[..16]);
    }
    let first = manifest.files.iter().filter(|f| f.role != "text-tower").map(|f| f.bytes).sum::<u64>();
    println!(
        "wrote {} ({} label sets); {:.1} MB in all, {:.1} MB before the first prediction with a built-in label set",
        a.out.join("manifest.json").display(),
        manifest.label_sets.len(),
        manifest.total_bytes() as f64 / 1e6,
        first as f64 / 1e6
    );
    match manifest.model_card.as_ref().and_then(|c| c.weights) {
        Some(WeightsKind::Fixture) => println!("model card: test fixture (the page shows a demo-model banner)"),
        Some(WeightsKind::Real) => println!("model card: real weights"),
        None => println!("model card: none (the page shows the model as unknown, not verified); see --model-card"),
    }
    Ok(())
}
