//! TensorBoard event files (`events.out.tfevents.*`), written by hand: `tensorboard --logdir
//! OUTPUT/tensorboard` shows the run's scalars live.
//!
//! No crate fits without heavy dependencies (checked with `cargo info`: `tensorboard-rs` 0.5.9
//! depends on `protobuf` 2.14 — the end-of-life 2.x line —, a second and old `image` 0.23 and
//! `tensorboard-proto`), and Burn 0.22.1's own metric loggers live behind its `train` feature,
//! which would rebuild all of Burn. The format is small:
//!
//! * **TFRecord framing**, one record per event: `u64 len` (LE), `u32 masked_crc32c(len bytes)`,
//!   the data, `u32 masked_crc32c(data)`; `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`,
//!   CRC-32C (Castagnoli, reflected polynomial 0x82f63b78);
//! * **protobuf** `tensorboard.Event { double wall_time = 1; int64 step = 2; oneof what { string
//!   file_version = 3; Summary summary = 5; SessionLog session_log = 7; } }`, `Summary { repeated
//!   Value value = 1; }`, `Value { string tag = 1; float simple_value = 2; }`, `SessionLog {
//!   SessionStatus status = 1; }` — proto3: zero `wall_time`/`step` are left out, as the Python
//!   writer does.
//!
//! The encoding is checked byte for byte against events written by the Python `tensorboard`
//! package (`tests/tensorboard_fixture.py`, fixture `tests/fixtures/tensorboard_reference.tfevents`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// CRC-32C lookup table (reflected Castagnoli polynomial).
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82f6_3b78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32C_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// TFRecord's masked CRC.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, ((field << 3) | wire) as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The `Event` header fields (`wall_time`, `step`), proto3: zero values left out.
fn event_head(wall_time: f64, step: i64) -> Vec<u8> {
    let mut out = Vec::new();
    if wall_time != 0.0 {
        key(&mut out, 1, 1);
        out.extend_from_slice(&wall_time.to_le_bytes());
    }
    if step != 0 {
        key(&mut out, 2, 0);
        varint(&mut out, step as u64); // int64: negatives as 10-byte two's complement
    }
    out
}

/// `Event { wall_time, file_version: "brain.Event:2" }`, the first record of every file.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = event_head(wall_time, 0);
    bytes_field(&mut out, 3, b"brain.Event:2");
    out
}

/// `Event { wall_time, step, summary { value { tag, simple_value } … } }`.
pub fn scalars_event(wall_time: f64, step: i64, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        key(&mut value, 2, 5);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    let mut out = event_head(wall_time, step);
    bytes_field(&mut out, 5, &summary);
    out
}

/// `Event { wall_time, step, session_log { status: START } }`: TensorBoard drops the points at
/// `step` and after that earlier files hold (a resumed run rewrites them).
pub fn session_start_event(wall_time: f64, step: i64) -> Vec<u8> {
    let mut out = event_head(wall_time, step);
    bytes_field(&mut out, 7, &[0x08, 0x01]);
    out
}

/// Seconds since the Unix epoch, as TensorBoard's `wall_time`.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// An open event file.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new `events.out.tfevents.<seconds>.<host>.<pid>.<n>` file in `dir` (created), starting with
    /// the file-version record; with `resumed_at`, a session-start record at that step follows.
    pub fn create(dir: &Path, resumed_at: Option<usize>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let t = now();
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        // Never reuse a name (two runs in one second of one process, e.g. a resume in a test).
        let (path, file) = (0u32..)
            .map(|n| dir.join(format!("events.out.tfevents.{}.{host}.{}.{n}", t as u64, std::process::id())))
            .find_map(|p| File::options().write(true).create_new(true).open(&p).ok().map(|f| (p, f)))
            .ok_or_else(|| std::io::Error::other("no free event file name"))?;
        let mut w = EventWriter { file: BufWriter::new(file), path };
        w.write_event(&file_version_event(t))?;
        if let Some(step) = resumed_at {
            w.write_event(&session_start_event(t, step as i64))?;
        }
        w.file.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one serialized `Event` as a TFRecord.
    pub fn write_event(&mut self, event: &[u8]) -> std::io::Result<()> {
        self.file.write_all(&tfrecord(event))
    }

    /// Scalars of one step (`tag` like `train/loss`), flushed so TensorBoard sees them live.
    pub fn scalars(&mut self, step: usize, scalars: &[(&str, f64)]) -> std::io::Result<()> {
        let v: Vec<(&str, f32)> = scalars.iter().map(|&(t, x)| (t, x as f32)).collect();
        self.write_event(&scalars_event(now(), step as i64, &v))?;
        self.file.flush()
    }
}

/// Reads back the TFRecords of an event file (checking both CRCs): the serialized events.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or("truncated record header")?;
        let len = u64::from_le_bytes(head[..8].try_into().unwrap()) as usize;
        if u32::from_le_bytes(head[8..12].try_into().unwrap()) != masked_crc32c(&head[..8]) {
            return Err(format!("bad length CRC at byte {at}"));
        }
        let data = bytes.get(at + 12..at + 12 + len).ok_or("truncated record")?;
        let crc = bytes.get(at + 12 + len..at + 16 + len).ok_or("truncated record CRC")?;
        if u32::from_le_bytes(crc.try_into().unwrap()) != masked_crc32c(data) {
            return Err(format!("bad data CRC at byte {at}"));
        }
        out.push(data.to_vec());
        at += 16 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
