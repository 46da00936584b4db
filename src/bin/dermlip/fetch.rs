//! `dermlip fetch`: downloads an open_clip checkpoint from the Hugging Face hub (or a mirror).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use dermlip::checkpoint::{CONFIG_FILE, WEIGHTS_FILES};
use dermlip::config::TokenizerFile;
use dermlip::{Error, ModelFileConfig, Result};

pub const DEFAULT_REPO: &str = "redlessone/DermLIP_ViT-B-16";

#[derive(Args)]
pub struct FetchArgs {
    /// Hub repository, `owner/name` or `hf-hub:owner/name`.
    #[arg(default_value = DEFAULT_REPO, value_name = "REPO")]
    repo: String,
    /// Directory to write to (default: ~/.cache/dermlip/models/NAME).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Branch, tag or commit.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Hub address (a mirror); default $HF_ENDPOINT or https://huggingface.co.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

/// Tokenizer files a hub checkpoint with a Hugging Face text tower carries (those dermlip reads,
/// then the Hugging Face tokenizer settings); optional.
const TOKENIZER_FILES: [&str; 3] =
    [TokenizerFile::FILE_NAMES[0], TokenizerFile::FILE_NAMES[1], "tokenizer_config.json"];

pub fn run(a: FetchArgs) -> Result<()> {
    let repo = a.repo.strip_prefix("hf-hub:").unwrap_or(&a.repo).trim_matches('/').to_string();
    if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
        return Err(Error::Input(format!("\"{}\" is not a hub repository (owner/name)", a.repo)));
    }
    let endpoint =
        a.endpoint.or_else(|| std::env::var("HF_ENDPOINT").ok()).unwrap_or_else(|| "https://huggingface.co".into());
    let out = match a.out {
        Some(o) => o,
        None => {
            let home = std::env::var_os("HOME").ok_or_else(|| Error::Input("HOME is not set: give --out".into()))?;
            PathBuf::from(home).join(".cache/dermlip/models").join(repo.replace('/', "--"))
        }
    };
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let base = format!("{}/{repo}/resolve/{}", endpoint.trim_end_matches('/'), a.revision);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();

    let config = download(&agent, &format!("{base}/{CONFIG_FILE}"), &out.join(CONFIG_FILE))?.ok_or_else(|| {
        Error::Input(format!("{repo} has no {CONFIG_FILE} at {}: not an open_clip checkpoint", a.revision))
    })?;
    let text = std::fs::read_to_string(&config).map_err(|e| io(&config, e))?;
    ModelFileConfig::from_json_str(&text)
        .map_err(|e| Error::Config(format!("{}: {}", config.display(), e.detail())))?;

    let mut weights = None;
    for name in WEIGHTS_FILES {
        if let Some(p) = download(&agent, &format!("{base}/{name}"), &out.join(name))? {
            weights = Some(p);
            break;
        }
    }
    let weights = weights.ok_or_else(|| {
        Error::Input(format!("{repo} has neither open_clip_model.safetensors nor open_clip_pytorch_model.bin"))
    })?;
    for name in TOKENIZER_FILES {
        download(&agent, &format!("{base}/{name}"), &out.join(name))?;
    }
    println!("{} ({})", out.display(), weights.file_name().unwrap_or_default().to_string_lossy());
    Ok(())
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Downloads `url` to `dest` through `dest.part` (renamed when complete). `Ok(None)` on 404.
/// A file already present with the server's size is kept.
fn download(agent: &ureq::Agent, url: &str, dest: &Path) -> Result<Option<PathBuf>> {
    let net = |e: ureq::Error| Error::Io { path: url.to_string(), message: format!("download failed: {e}") };
    let response = agent.get(url).call().map_err(net)?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        return Err(Error::Io { path: url.to_string(), message: format!("HTTP {status}") });
    }
    let total: Option<u64> =
        response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if let (Some(t), Ok(meta)) = (total, std::fs::metadata(dest)) {
        if meta.len() == t {
            return Ok(Some(dest.to_path_buf()));
        }
    }
    let part = dest.with_extension(format!(
        "{}.part",
        dest.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut file = std::fs::File::create(&part).map_err(|e| io(&part, e))?;
    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    bar.set_message(dest.file_name().unwrap_or_default().to_string_lossy().into_owned());
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::Io { path: url.to_string(), message: e.to_string() })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| io(&part, e))?;
        written += n as u64;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    if let Some(t) = total {
        if written != t {
            return Err(Error::Io { path: url.to_string(), message: format!("received {written} of {t} bytes") });
        }
    }
    file.sync_all().map_err(|e| io(&part, e))?;
    std::fs::rename(&part, dest).map_err(|e| io(dest, e))?;
    Ok(Some(dest.to_path_buf()))
}
