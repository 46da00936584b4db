//! Sample index: which image bytes and which caption make each training pair.
//!
//! Three layouts, as Derm1M ships and as users re-shard it:
//! * a CSV (`Derm1M_v2_pretrain.csv`: `filename`, `truncated_caption`, …) with images in a folder;
//! * the same CSV with images inside the released zip archives, read in place (the central
//!   directories are indexed once; entries are inflated on demand by the worker threads);
//! * WebDataset tar shards (`{key}.jpg` + `{key}.txt` or `{key}.json` with a `caption` field) as
//!   img2dataset writes them, given as brace-expanded shard lists (`shards-{00000..00099}.tar`,
//!   several specs joined by `::`).
//!
//! Nothing here fails on one bad sample: bad CSV rows, images missing from every archive,
//! incomplete tar samples and truncated shards are counted in [`IndexReport`] and left out; an
//! image that fails to read or decode later is skipped by the loader and counted per epoch.
//!
//! Hostile rows: a `filename` that is absolute or climbs out of the image folder (`../`) is
//! counted in [`IndexReport::unsafe_paths`] and left out; at read time a path that is not a
//! regular file (a FIFO, a device) or that resolves (through a symlink) outside its folder is a
//! skipped sample, and no sample is read past [`MAX_SAMPLE_BYTES`] whatever its header declares.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Clone, Debug)]
pub enum Location {
    File(PathBuf),
    Zip { archive: usize, index: usize },
    Tar { shard: usize, offset: u64, size: u64 },
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub location: Location,
    /// Shown in skip reports (the CSV filename or the WebDataset key).
    pub name: String,
    pub caption: String,
    /// Optional class label (for zero-shot evaluation), from `label_key`.
    pub label: Option<String>,
}

/// What was left out while building the index.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IndexReport {
    pub rows: usize,
    pub bad_rows: usize,
    pub missing_images: usize,
    pub incomplete_samples: usize,
    pub truncated_shards: usize,
    /// CSV `filename`s that are absolute or leave the image folder (`..`), left out.
    pub unsafe_paths: usize,
    /// The first few problems, for the log.
    pub examples: Vec<String>,
}

impl IndexReport {
    fn note(&mut self, msg: String) {
        if self.examples.len() < 20 {
            self.examples.push(msg);
        }
    }

    pub fn problems(&self) -> usize {
        self.bad_rows + self.missing_images + self.incomplete_samples + self.truncated_shards + self.unsafe_paths
    }
}

#[derive(Debug, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub archives: Vec<PathBuf>,
    pub shards: Vec<PathBuf>,
    /// The image folders, resolved: a file sample must resolve inside one of them.
    pub roots: Vec<PathBuf>,
    pub report: IndexReport,
}

/// Largest sample (image or caption entry) read, whatever a zip or tar header declares.
pub const MAX_SAMPLE_BYTES: u64 = dermlip::limits::MAX_SAMPLE_BYTES;

/// `key` as a relative path inside the image folder, normalised (`a/./b/../c` → `a/c`); `None`
/// when it is absolute, climbs above the folder, is empty or holds a NUL.
pub fn contained_path(key: &str) -> Option<String> {
    if key.starts_with('/') || key.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in key.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// How to read a CSV dataset.
#[derive(Clone, Debug)]
pub struct CsvSpec {
    pub csv: PathBuf,
    /// A folder of images, a folder holding `.zip` archives, or `.zip` files (comma separated).
    pub images: Vec<PathBuf>,
    pub image_key: String,
    pub caption_key: String,
    pub label_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// A CSV with images in folders and/or zip archives.
    pub fn from_csv(spec: &CsvSpec) -> Result<Dataset, DataError> {
        let mut ds = Dataset::default();
        let mut folders = Vec::new();
        for p in &spec.images {
            if p.is_dir() {
                folders.push(p.clone());
                ds.roots.push(p.canonicalize().map_err(|e| io_err(p, e))?);
                let mut zips: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| io_err(p, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|q| q.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
                    .collect();
                zips.sort();
                ds.archives.extend(zips);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")) {
                ds.archives.push(p.clone());
            } else {
                return Err(DataError::Invalid(format!(
                    "{}: not a folder or a .zip archive (images must be one or the other)",
                    p.display()
                )));
            }
        }
        // Zip central directories: entry name -> (archive, index). Also indexed without the first
        // path component, so `filename` matches whether or not the archive adds a top folder.
        let mut zip_index: HashMap<String, (usize, usize)> = HashMap::new();
        for (a, path) in ds.archives.iter().enumerate() {
            let file = File::open(path).map_err(|e| io_err(path, e))?;
            let zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| io_err(path, e))?;
            for i in 0..zip.len() {
                let Some(Ok(name)) = zip.name_for_index(i) else { continue };
                let name = name.to_string();
                if name.ends_with('/') {
                    continue;
                }
                let name = name.replace('\\', "/");
                if let Some((_, rest)) = name.split_once('/') {
                    zip_index.entry(rest.to_string()).or_insert((a, i));
                }
                zip_index.insert(name, (a, i));
            }
        }
        let mut reader =
            csv::ReaderBuilder::new().flexible(true).from_path(&spec.csv).map_err(|e| io_err(&spec.csv, e))?;
        let headers = reader.headers().map_err(|e| io_err(&spec.csv, e))?.clone();
        let col = |key: &str| -> Result<usize, DataError> {
            headers.iter().position(|h| h == key).ok_or_else(|| {
                DataError::Invalid(format!(
                    "{}: no column \"{key}\" (columns: {})",
                    spec.csv.display(),
                    headers.iter().collect::<Vec<_>>().join(", ")
                ))
            })
        };
        let image_col = col(&spec.image_key)?;
        let caption_col = col(&spec.caption_key)?;
        let label_col = spec.label_key.as_deref().map(col).transpose()?;
        for (line, record) in reader.records().enumerate() {
            ds.report.rows += 1;
            let row = line + 2;
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    ds.report.bad_rows += 1;
                    ds.report.note(format!("CSV row {row}: {e}"));
                    continue;
                }
            };
            let get = |c: usize| record.get(c).map(str::trim).filter(|s| !s.is_empty());
            let (Some(file), Some(caption)) = (get(image_col), get(caption_col)) else {
                ds.report.bad_rows += 1;
                ds.report
                    .note(format!("CSV row {row}: empty or missing \"{}\" / \"{}\"", spec.image_key, spec.caption_key));
                continue;
            };
            let label = match label_col {
                Some(c) => match get(c) {
                    Some(l) => Some(l.to_string()),
                    None => {
                        ds.report.bad_rows += 1;
                        ds.report.note(format!("CSV row {row}: empty label"));
                        continue;
                    }
                },
                None => None,
            };
            let key = file.replace('\\', "/");
            let Some(key) = contained_path(&key) else {
                ds.report.unsafe_paths += 1;
                ds.report.note(format!("CSV row {row}: image \"{key}\" is absolute or leaves the image folder"));
                continue;
            };
            let key = key.as_str();
            let location = if let Some(&(archive, index)) = zip_index.get(key) {
                Location::Zip { archive, index }
            } else if let Some(dir) = folders.iter().find(|d| d.join(key).is_file()) {
                Location::File(dir.join(key))
            } else if folders.len() == 1 && ds.archives.is_empty() {
                // Plain folder: do not stat a million files up front; a missing file is counted when read.
                Location::File(folders[0].join(key))
            } else {
                ds.report.missing_images += 1;
                ds.report.note(format!("CSV row {row}: image \"{key}\" is in no folder or archive"));
                continue;
            };
            ds.samples.push(Sample { location, name: key.to_string(), caption: caption.to_string(), label });
        }
        Ok(ds)
    }

    /// WebDataset shards (brace-expanded, `::`-separated specs).
    pub fn from_webdataset(spec: &str) -> Result<Dataset, DataError> {
        let mut ds = Dataset::default();
        for part in spec.split("::").filter(|s| !s.is_empty()) {
            for path in expand_braces(part)? {
                ds.shards.push(PathBuf::from(path));
            }
        }
        if ds.shards.is_empty() {
            return Err(DataError::Invalid(format!("no shards in \"{spec}\"")));
        }
        for s in 0..ds.shards.len() {
            let path = ds.shards[s].clone();
            index_shard(&mut ds, s, &path);
        }
        Ok(ds)
    }
}

const IMAGE_EXTS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

fn index_shard(ds: &mut Dataset, shard: usize, path: &Path) {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            ds.report.truncated_shards += 1;
            ds.report.note(format!("{}: {e}", path.display()));
            return;
        }
    };
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Seek over the image data instead of reading it: indexing touches only headers and captions.
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    // key, image (offset, size), caption
    type Pending = (String, Option<(u64, u64)>, Option<String>);
    let mut pending: Vec<Pending> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    let mut truncated = false;
    match archive.entries_with_seek() {
        Ok(entries) => {
            for entry in entries {
                let mut entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        truncated = true;
                        ds.report.note(format!("{}: {e}", path.display()));
                        break;
                    }
                };
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = match entry.path() {
                    Ok(p) => p.to_string_lossy().replace('\\', "/"),
                    Err(_) => continue,
                };
                // WebDataset: the key is the path up to the first dot of the basename.
                let (dir, base) = name.rsplit_once('/').map_or(("", name.as_str()), |(d, b)| (d, b));
                let Some((stem, ext)) = base.split_once('.') else { continue };
                let key = if dir.is_empty() { stem.to_string() } else { format!("{dir}/{stem}") };
                let ext = ext.to_ascii_lowercase();
                let offset = entry.raw_file_position();
                let size = entry.size();
                if offset + size > file_len {
                    truncated = true;
                    ds.report.note(format!("{}: entry {name} runs past the end of the file", path.display()));
                    break;
                }
                let slot = *pos.entry(key.clone()).or_insert_with(|| {
                    pending.push((key.clone(), None, None));
                    pending.len() - 1
                });
                if IMAGE_EXTS.contains(&ext.as_str()) {
                    pending[slot].1 = Some((offset, size));
                } else if ext == "txt" || ext == "json" {
                    let mut text = String::new();
                    if (&mut entry).take(MAX_SAMPLE_BYTES).read_to_string(&mut text).is_err() {
                        continue;
                    }
                    let caption = if ext == "txt" {
                        Some(text.trim().to_string())
                    } else {
                        serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v.get("caption").and_then(|c| c.as_str()).map(|s| s.trim().to_string()))
                    };
                    // .txt wins over .json
                    if ext == "txt" || pending[slot].2.is_none() {
                        if let Some(c) = caption.filter(|c| !c.is_empty()) {
                            pending[slot].2 = Some(c);
                        }
                    }
                }
            }
        }
        Err(e) => {
            truncated = true;
            ds.report.note(format!("{}: {e}", path.display()));
        }
    }
    if truncated {
        ds.report.truncated_shards += 1;
    }
    for (key, image, caption) in pending {
        ds.report.rows += 1;
        match (image, caption) {
            (Some((offset, size)), Some(caption)) => ds.samples.push(Sample {
                location: Location::Tar { shard, offset, size },
                name: format!("{}#{key}", path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()),
                caption,
                label: None,
            }),
            _ => {
                ds.report.incomplete_samples += 1;
                ds.report.note(format!("{}: sample {key} has no image or no caption", path.display()));
            }
        }
    }
}

/// Expands `{a..b}` (numeric, zero padding kept) and `{x,y,z}` groups, as webdataset/braceexpand.
pub fn expand_braces(s: &str) -> Result<Vec<String>, DataError> {
    let Some(open) = s.find('{') else { return Ok(vec![s.to_string()]) };
    let close = s[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| DataError::Invalid(format!("unbalanced brace in \"{s}\"")))?;
    let (head, body, tail) = (&s[..open], &s[open + 1..close], &s[close + 1..]);
    let options: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let (x, y) = (a.parse::<u64>(), b.parse::<u64>());
        let (Ok(x), Ok(y)) = (x, y) else {
            return Err(DataError::Invalid(format!("bad range {{{body}}} in \"{s}\"")));
        };
        let width = if a.starts_with('0') && a.len() > 1 { a.len() } else { 0 };
        let range: Box<dyn Iterator<Item = u64>> = if x <= y { Box::new(x..=y) } else { Box::new((y..=x).rev()) };
        range.map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    let rests = expand_braces(tail)?;
    let mut out = Vec::with_capacity(options.len() * rests.len());
    for o in &options {
        for rest in &rests {
            out.push(format!("{head}{o}{rest}"));
        }
    }
    Ok(out)
}

/// Why a sample could not be read. I/O errors (a file or shard that cannot be opened, read or
/// seeked, a zip archive whose central directory or entry data is damaged) are counted apart from
/// the samples that are refused (too large, not a regular file, outside the image folder) and from
/// decode failures: a storage problem shows up as I/O errors in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    Io(String),
    Refused(String),
}

impl ReadError {
    pub fn is_io(&self) -> bool {
        matches!(self, ReadError::Io(_))
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(m) => write!(f, "I/O error: {m}"),
            ReadError::Refused(m) => f.write_str(m),
        }
    }
}

/// Open shard files / archives a reader keeps by default (see [`Reader::with_capacity`]).
pub const DEFAULT_MAX_OPEN_FILES: usize = 8;

/// A small least-recently-used map from a shard or archive index to its open handle.
struct Lru<V> {
    cap: usize,
    clock: u64,
    entries: Vec<(usize, u64, V)>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Lru { cap: cap.max(1), clock: 0, entries: Vec::new() }
    }

    /// The entry for `key`, opened with `open` (evicting the least recently used one when full).
    fn get_or_open<E>(&mut self, key: usize, open: impl FnOnce() -> Result<V, E>) -> Result<(&mut V, bool), E> {
        self.clock += 1;
        let opened = match self.entries.iter().position(|e| e.0 == key) {
            Some(i) => {
                self.entries[i].1 = self.clock;
                false
            }
            None => {
                let v = open()?;
                if self.entries.len() >= self.cap {
                    let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].1).expect("non-empty");
                    self.entries.swap_remove(oldest);
                }
                self.entries.push((key, self.clock, v));
                true
            }
        };
        let i = self.entries.iter().position(|e| e.0 == key).expect("present");
        Ok((&mut self.entries[i].2, opened))
    }

    fn remove(&mut self, key: usize) {
        self.entries.retain(|e| e.0 != key);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

type ZipHandle = zip::ZipArchive<std::io::BufReader<File>>;

/// Reads sample bytes. One per worker thread: it keeps at most `capacity` open zip archives (with
/// their parsed central directories) and shard files, least recently used closed first, so
/// `shards × workers` never piles up file descriptors. The trainer hands the same readers to the
/// workers of every epoch (`loader::ReaderPool`), so an archive's central directory is parsed
/// again only after it was evicted.
pub struct Reader {
    zips: Lru<ZipHandle>,
    tars: Lru<File>,
    /// Archives and shard files opened (a zip's central directory parsed) so far.
    pub opened: usize,
    /// The most files this reader held open at once.
    pub peak_open: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader::with_capacity(DEFAULT_MAX_OPEN_FILES)
    }
}

impl Reader {
    /// A reader holding at most `capacity` archives and at most `capacity` shard files open (a
    /// dataset uses one kind or the other).
    pub fn with_capacity(capacity: usize) -> Self {
        Reader { zips: Lru::new(capacity), tars: Lru::new(capacity), opened: 0, peak_open: 0 }
    }

    /// Files open now.
    pub fn open_files(&self) -> usize {
        self.zips.len() + self.tars.len()
    }

    pub fn read(&mut self, ds: &Dataset, sample: &Sample) -> Result<Vec<u8>, String> {
        self.read_sample(ds, sample).map_err(|e| e.to_string())
    }

    /// As [`Reader::read`], with the kind of failure.
    pub fn read_sample(&mut self, ds: &Dataset, sample: &Sample) -> Result<Vec<u8>, ReadError> {
        let out = self.read_inner(ds, sample);
        self.peak_open = self.peak_open.max(self.open_files());
        // A damaged handle (a failed read or seek) is dropped: the next sample reopens the file.
        if let Err(ReadError::Io(_)) = &out {
            match &sample.location {
                Location::Zip { archive, .. } => self.zips.remove(*archive),
                Location::Tar { shard, .. } => self.tars.remove(*shard),
                Location::File(_) => {}
            }
        }
        out
    }

    fn read_inner(&mut self, ds: &Dataset, sample: &Sample) -> Result<Vec<u8>, ReadError> {
        let io = |what: &dyn std::fmt::Display, e: &dyn std::fmt::Display| ReadError::Io(format!("{what}: {e}"));
        match &sample.location {
            Location::File(p) => read_contained_file(p, &ds.roots),
            Location::Zip { archive, index } => {
                let path = &ds.archives[*archive];
                let (z, opened) = self.zips.get_or_open(*archive, || {
                    let f = File::open(path).map_err(|e| io(&path.display(), &e))?;
                    zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| io(&path.display(), &e))
                })?;
                self.opened += opened as usize;
                let entry = z.by_index(*index).map_err(|e| io(&sample.name, &e))?;
                // The declared size is only a hint (a bomb or a lying header): read at most the cap.
                let mut buf = Vec::with_capacity(entry.size().min(MAX_SAMPLE_BYTES) as usize);
                entry.take(MAX_SAMPLE_BYTES + 1).read_to_end(&mut buf).map_err(|e| io(&sample.name, &e))?;
                if buf.len() as u64 > MAX_SAMPLE_BYTES {
                    return Err(ReadError::Refused(format!(
                        "{}: the zip entry inflates past {MAX_SAMPLE_BYTES} bytes",
                        sample.name
                    )));
                }
                Ok(buf)
            }
            Location::Tar { shard, offset, size } => {
                if *size > MAX_SAMPLE_BYTES {
                    return Err(ReadError::Refused(format!(
                        "{}: {size} bytes, over the {MAX_SAMPLE_BYTES}-byte limit",
                        sample.name
                    )));
                }
                let path = &ds.shards[*shard];
                let (f, opened) =
                    self.tars.get_or_open(*shard, || File::open(path).map_err(|e| io(&path.display(), &e)))?;
                self.opened += opened as usize;
                f.seek(SeekFrom::Start(*offset)).map_err(|e| io(&sample.name, &e))?;
                let mut buf = vec![0u8; *size as usize];
                f.read_exact(&mut buf).map_err(|e| io(&sample.name, &e))?;
                Ok(buf)
            }
        }
    }
}

/// A file sample: a regular file (not a FIFO or a device) that resolves inside one of `roots`
/// (symlinks included), read up to [`MAX_SAMPLE_BYTES`].
fn read_contained_file(p: &Path, roots: &[PathBuf]) -> Result<Vec<u8>, ReadError> {
    let shown = p.display();
    // `metadata` does not open the file: a FIFO would block the worker on `open`.
    // A file missing from a plain folder (not stat'ed when indexed) is a data defect, not I/O.
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Refused(format!("{shown}: {e}")),
        _ => ReadError::Io(format!("{shown}: {e}")),
    })?;
    if !meta.is_file() {
        return Err(ReadError::Refused(format!("{shown}: not a regular file")));
    }
    if !roots.is_empty() {
        let real = p.canonicalize().map_err(|e| ReadError::Io(format!("{shown}: {e}")))?;
        if !roots.iter().any(|r| real.starts_with(r)) {
            return Err(ReadError::Refused(format!("{shown}: resolves outside the image folder ({})", real.display())));
        }
    }
    if meta.len() > MAX_SAMPLE_BYTES {
        return Err(ReadError::Refused(format!(
            "{shown}: {} bytes, over the {MAX_SAMPLE_BYTES}-byte limit",
            meta.len()
        )));
    }
    let f = File::open(p).map_err(|e| ReadError::Io(format!("{shown}: {e}")))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_SAMPLE_BYTES + 1).read_to_end(&mut buf).map_err(|e| ReadError::Io(format!("{shown}: {e}")))?;
    if buf.len() as u64 > MAX_SAMPLE_BYTES {
        return Err(ReadError::Refused(format!("{shown}: grew past the {MAX_SAMPLE_BYTES}-byte limit while read")));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces() {
        assert_eq!(expand_braces("a-{000..002}.tar").unwrap(), vec!["a-000.tar", "a-001.tar", "a-002.tar"]);
        assert_eq!(expand_braces("{x,y}/{1..2}").unwrap(), vec!["x/1", "x/2", "y/1", "y/2"]);
        assert_eq!(expand_braces("plain.tar").unwrap(), vec!["plain.tar"]);
        assert!(expand_braces("a{1..2").is_err());
    }
}
