//! Multi-threaded decode + augmentation with prefetch and a deterministic order.
//!
//! An epoch's order is a seeded permutation of the sample index (`seed`, `epoch`), cut into
//! batches (`drop_last` as open_clip). Batches are split into chunks that worker threads decode,
//! augment and tokenize; results are put back in order, and up to `prefetch` batches are in flight
//! ahead of the consumer, so the device only waits when the CPU cannot keep up. Each sample's
//! augmentation RNG is derived from (`seed`, `epoch`, sample id): the output is identical for any
//! number of workers and any thread timing. A sample that cannot be read or decoded is left out of
//! its batch and reported in [`Batch::skipped`] (I/O errors also counted in [`Batch::io_errors`]);
//! a panic inside a decoder is caught the same way. The workers' [`Reader`]s (each with a small
//! LRU of open shards/archives) come from a [`ReaderPool`] shared by the epochs of a run, so
//! archives are not re-opened and their central directories not re-parsed every epoch.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dermlip::input::preprocess::{self, PreprocessConfig};
use dermlip::input::tokenizer::TextTokenizer;

use crate::augment::{augment_into, push_chw, AugmentConfig};
use crate::data::{Dataset, ReadError, Reader, DEFAULT_MAX_OPEN_FILES};
use crate::pixels::HostPixels;
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub enum Transform {
    /// The Derm1M training augmentation.
    Train(AugmentConfig),
    /// The exact inference preprocessing of the core crate.
    Eval,
}

/// The workers' readers, kept between epochs: a worker takes one when it starts and puts it back
/// when its epoch ends. Clones share the pool.
#[derive(Clone)]
pub struct ReaderPool {
    readers: Arc<Mutex<Vec<Reader>>>,
    /// Open files per reader (`data.max_open_files`).
    pub max_open_files: usize,
}

impl Default for ReaderPool {
    fn default() -> Self {
        ReaderPool::new(DEFAULT_MAX_OPEN_FILES)
    }
}

impl std::fmt::Debug for ReaderPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReaderPool(max_open_files {})", self.max_open_files)
    }
}

impl ReaderPool {
    pub fn new(max_open_files: usize) -> Self {
        ReaderPool { readers: Arc::new(Mutex::new(Vec::new())), max_open_files: max_open_files.max(1) }
    }

    fn take(&self) -> Reader {
        let r = self.readers.lock().ok().and_then(|mut v| v.pop());
        r.unwrap_or_else(|| Reader::with_capacity(self.max_open_files))
    }

    fn put(&self, reader: Reader) {
        if let Ok(mut v) = self.readers.lock() {
            v.push(reader);
        }
    }

    /// Over the readers now in the pool (all of them between epochs): files opened (archives'
    /// central directories parsed) so far, the most any one reader held open at once, and the
    /// number of readers.
    pub fn stats(&self) -> (usize, usize, usize) {
        let v = self
            .readers
            .lock()
            .map(|v| (v.iter().map(|r| r.opened).sum(), v.iter().map(|r| r.peak_open).max().unwrap_or(0), v.len()));
        v.unwrap_or((0, 0, 0))
    }
}

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub drop_last: bool,
    pub transform: Transform,
    pub preprocess: PreprocessConfig,
    /// Where the workers get their readers (share it between epochs).
    pub readers: ReaderPool,
}

pub struct Batch {
    /// Batch number within the epoch.
    pub index: usize,
    /// Samples that made it into the batch.
    pub len: usize,
    /// `len × 3 × size × size` CHW `u8` values (`ToTensor`'s input; normalised on the device,
    /// see [`Batch::take_pixels`]).
    pub pixels: Vec<u8>,
    /// `len × context_length` token ids.
    pub tokens: Vec<i32>,
    /// Dataset indices of the samples, in batch order.
    pub ids: Vec<usize>,
    /// `name: reason` of each sample left out.
    pub skipped: Vec<String>,
    /// How many of `skipped` were I/O errors (the rest: refused or undecodable samples).
    pub io_errors: usize,
}

impl Batch {
    /// Moves the pixels out for the device, which normalises them with `preprocess`'s mean and std.
    pub fn take_pixels(&mut self, preprocess: &PreprocessConfig) -> HostPixels {
        HostPixels::U8 { data: std::mem::take(&mut self.pixels), mean: preprocess.mean, std: preprocess.std }
    }
}

/// The sample order of one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::derive(&[seed, epoch, 0x5eed]).shuffle(&mut order);
    }
    order
}

pub fn num_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

struct Job {
    batch: usize,
    chunk: usize,
    ids: Vec<usize>,
}

struct ChunkOut {
    batch: usize,
    chunk: usize,
    pixels: Vec<u8>,
    tokens: Vec<i32>,
    ids: Vec<usize>,
    skipped: Vec<String>,
    io_errors: usize,
}

pub struct EpochLoader {
    order: Vec<usize>,
    batch_size: usize,
    n_batches: usize,
    chunk: usize,
    prefetch: usize,
    next_batch: usize,
    next_job_batch: usize,
    jobs: Option<Sender<Job>>,
    results: Receiver<ChunkOut>,
    done: BTreeMap<(usize, usize), ChunkOut>,
    handles: Vec<JoinHandle<()>>,
}

impl EpochLoader {
    /// Starts the workers for `epoch`, beginning at batch `start_batch` (for resuming).
    pub fn new(
        dataset: Arc<Dataset>,
        tokenizer: Arc<TextTokenizer>,
        cfg: &LoaderConfig,
        epoch: u64,
        start_batch: usize,
    ) -> EpochLoader {
        let order = epoch_order(dataset.len(), cfg.seed, epoch, cfg.shuffle);
        let batch_size = cfg.batch_size.max(1);
        let n_batches = num_batches(order.len(), batch_size, cfg.drop_last);
        let workers = cfg.workers.max(1);
        let chunk = batch_size.div_ceil(workers).clamp(1, 64);
        let (job_tx, job_rx) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (out_tx, out_rx) = channel::<ChunkOut>();
        let handles = (0..workers)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let out_tx = out_tx.clone();
                let dataset = Arc::clone(&dataset);
                let tokenizer = Arc::clone(&tokenizer);
                let cfg = cfg.clone();
                std::thread::spawn(move || {
                    let mut reader = cfg.readers.take();
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        let Ok(job) = job else { break };
                        let out = process(&dataset, &tokenizer, &cfg, epoch, &mut reader, job);
                        if out_tx.send(out).is_err() {
                            break;
                        }
                    }
                    cfg.readers.put(reader);
                })
            })
            .collect();
        EpochLoader {
            order,
            batch_size,
            n_batches,
            chunk,
            prefetch: cfg.prefetch.max(1),
            next_batch: start_batch,
            next_job_batch: start_batch,
            jobs: Some(job_tx),
            results: out_rx,
            done: BTreeMap::new(),
            handles,
        }
    }

    pub fn num_batches(&self) -> usize {
        self.n_batches
    }

    fn chunks_of(&self, batch: usize) -> usize {
        let start = batch * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        (end - start).div_ceil(self.chunk)
    }

    fn submit(&mut self) {
        let Some(tx) = &self.jobs else { return };
        while self.next_job_batch < self.n_batches && self.next_job_batch < self.next_batch + self.prefetch {
            let b = self.next_job_batch;
            let start = b * self.batch_size;
            let end = (start + self.batch_size).min(self.order.len());
            for (c, ids) in self.order[start..end].chunks(self.chunk).enumerate() {
                let _ = tx.send(Job { batch: b, chunk: c, ids: ids.to_vec() });
            }
            self.next_job_batch += 1;
        }
    }
}

impl Iterator for EpochLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next_batch >= self.n_batches {
            return None;
        }
        self.submit();
        let b = self.next_batch;
        let n_chunks = self.chunks_of(b);
        while (0..n_chunks).any(|c| !self.done.contains_key(&(b, c))) {
            let out = self.results.recv().expect("loader workers stopped");
            self.done.insert((out.batch, out.chunk), out);
        }
        // One allocation of the batch's final size (the chunks' buffers were sized up front too).
        let len: usize = (0..n_chunks).map(|c| self.done[&(b, c)].ids.len()).sum();
        let pixels_len: usize = (0..n_chunks).map(|c| self.done[&(b, c)].pixels.len()).sum();
        let mut batch = Batch {
            index: b,
            len: 0,
            pixels: Vec::with_capacity(pixels_len),
            tokens: Vec::new(),
            ids: Vec::with_capacity(len),
            skipped: Vec::new(),
            io_errors: 0,
        };
        for c in 0..n_chunks {
            let mut out = self.done.remove(&(b, c)).expect("present");
            batch.len += out.ids.len();
            batch.pixels.append(&mut out.pixels);
            batch.tokens.append(&mut out.tokens);
            batch.ids.append(&mut out.ids);
            batch.skipped.append(&mut out.skipped);
            batch.io_errors += out.io_errors;
        }
        self.next_batch += 1;
        self.submit();
        Some(batch)
    }
}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        self.jobs = None;
        // Drain so no worker blocks on a full channel (channels are unbounded; this is cheap).
        while self.results.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn process(
    ds: &Dataset,
    tokenizer: &TextTokenizer,
    cfg: &LoaderConfig,
    epoch: u64,
    reader: &mut Reader,
    job: Job,
) -> ChunkOut {
    let size = cfg.preprocess.size;
    let per_img = 3 * (size * size) as usize;
    let mut out = ChunkOut {
        batch: job.batch,
        chunk: job.chunk,
        pixels: Vec::with_capacity(job.ids.len() * per_img),
        tokens: Vec::new(),
        ids: Vec::with_capacity(job.ids.len()),
        skipped: Vec::new(),
        io_errors: 0,
    };
    for id in job.ids {
        let sample = &ds.samples[id];
        let start = out.pixels.len();
        let pixels = &mut out.pixels;
        // The image goes straight into the chunk's buffer (truncated again if the sample fails).
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u32>, ReadError> {
            let bytes = reader.read_sample(ds, sample)?;
            let decode = |e: String| ReadError::Refused(e);
            match &cfg.transform {
                Transform::Eval => {
                    let rgb = preprocess::crop_rgb(&bytes, &cfg.preprocess).map_err(|e| decode(e.to_string()))?;
                    push_chw(&rgb, pixels);
                }
                Transform::Train(aug) => {
                    let rgb =
                        preprocess::load_rgb(&bytes, cfg.preprocess.max_pixels).map_err(|e| decode(e.to_string()))?;
                    if rgb.width() == 0 || rgb.height() == 0 {
                        return Err(decode("empty image".into()));
                    }
                    let mut rng = Rng::derive(&[cfg.seed, epoch, id as u64, 0xa116]);
                    augment_into(&rgb, size, aug, &mut rng, pixels);
                }
            }
            if pixels.len() != start + per_img {
                return Err(decode(format!("preprocessing gave {} values, not {per_img}", pixels.len() - start)));
            }
            tokenizer.encode(&sample.caption).map_err(|e| decode(e.to_string()))
        }));
        match result {
            Ok(Ok(tokens)) => {
                out.tokens.extend(tokens.iter().map(|&t| t as i32));
                out.ids.push(id);
            }
            Ok(Err(e)) => {
                out.pixels.truncate(start);
                out.io_errors += e.is_io() as usize;
                out.skipped.push(format!("{}: {e}", sample.name));
            }
            Err(_) => {
                out.pixels.truncate(start);
                out.skipped.push(format!("{}: the decoder panicked", sample.name));
            }
        }
    }
    out
}
