//! The safetensors format read by hand, the header parsed once (burn-store's lazy reader parses
//! it again for every tensor: quadratic in the tensor count). Every name, dtype, shape and offset
//! is checked against the bytes actually present before any tensor is copied, so a small file
//! cannot make the reader allocate more than the file holds.

use std::collections::BTreeMap;

use burn::tensor::{DType, TensorData};

use super::ExpectedTensors;
use crate::error::{Error, Result};
use crate::limits::{MAX_SAFETENSORS_HEADER_BYTES, MAX_TENSOR_RANK, MAX_WEIGHTS_BYTES};

/// One tensor as the header declares it.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Weights(format!("not a readable safetensors file: {}", msg.into()))
}

fn dtype_of(name: &str, s: &str) -> Result<(DType, usize)> {
    Ok(match s {
        "F64" => (DType::F64, 8),
        "F32" => (DType::F32, 4),
        "F16" => (DType::F16, 2),
        "BF16" => (DType::BF16, 2),
        "I64" => (DType::I64, 8),
        "I32" => (DType::I32, 4),
        "I16" => (DType::I16, 2),
        "I8" => (DType::I8, 1),
        "U8" => (DType::U8, 1),
        "BOOL" => (DType::Bool(burn::tensor::BoolStore::Native), 1),
        other => return Err(bad(format!("tensor '{name}' has unsupported dtype {other:?}"))),
    })
}

/// The tensors of a safetensors file, keyed by name.
pub(super) fn read(bytes: &[u8], expected: Option<&ExpectedTensors>) -> Result<BTreeMap<String, TensorData>> {
    if bytes.len() as u64 > MAX_WEIGHTS_BYTES {
        return Err(bad(format!("the file is {} bytes; at most {MAX_WEIGHTS_BYTES} are accepted", bytes.len())));
    }
    if bytes.len() < 8 {
        return Err(bad(format!("the file is {} bytes, shorter than the 8-byte header length", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_SAFETENSORS_HEADER_BYTES as u64 {
        return Err(bad(format!("the header declares {n} bytes; at most {MAX_SAFETENSORS_HEADER_BYTES} are accepted")));
    }
    let n = n as usize;
    if n > bytes.len() - 8 {
        return Err(bad(format!("the header declares {n} bytes but the file holds only {}", bytes.len() - 8)));
    }
    let header = std::str::from_utf8(&bytes[8..8 + n]).map_err(|e| bad(format!("the header is not UTF-8: {e}")))?;
    let data = &bytes[8 + n..];
    let entries = parse_header(header, data.len())?;
    if let Some(x) = expected {
        x.check(entries.iter().map(|e| (e.name.as_str(), e.shape.as_slice(), (e.end - e.begin) as u64)))?;
    }
    let mut out = BTreeMap::new();
    for e in entries {
        let raw = data[e.begin..e.end].to_vec();
        out.insert(e.name, TensorData::from_bytes_vec(raw, e.shape, e.dtype));
    }
    if out.is_empty() {
        return Err(Error::Weights("the checkpoint holds no tensors".into()));
    }
    Ok(out)
}

/// Checks the whole header against `data_len` (the bytes after it): known dtypes, ranks, shapes
/// whose byte size fits, offsets inside the data, no two tensors sharing bytes, total in bounds.
fn parse_header(header: &str, data_len: usize) -> Result<Vec<Entry>> {
    let value: serde_json::Value =
        serde_json::from_str(header).map_err(|e| bad(format!("the header is not JSON: {e}")))?;
    let map = value.as_object().ok_or_else(|| bad("the header is not a JSON object"))?;
    let mut entries = Vec::new();
    let mut total: u64 = 0;
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let o = v.as_object().ok_or_else(|| bad(format!("tensor '{name}' is not a JSON object")))?;
        let dtype =
            o.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad(format!("tensor '{name}' has no dtype")))?;
        let (dtype, size) = dtype_of(name, dtype)?;
        let shape =
            o.get("shape").and_then(|s| s.as_array()).ok_or_else(|| bad(format!("tensor '{name}' has no shape")))?;
        if shape.len() > MAX_TENSOR_RANK {
            return Err(bad(format!(
                "tensor '{name}' has rank {}; at most {MAX_TENSOR_RANK} is accepted",
                shape.len()
            )));
        }
        let shape: Vec<usize> = shape
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("tensor '{name}' has a shape that is not a list of sizes")))?;
        let offsets = o
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| bad(format!("tensor '{name}' has no [begin, end] data_offsets")))?;
        let declared = shape
            .iter()
            .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|&b| b <= data_len as u64)
            .ok_or_else(|| {
                bad(format!("tensor '{name}' of shape {shape:?} needs more bytes than the file's {data_len}"))
            })?;
        let (begin, end) = offsets;
        if begin > end || end > data_len as u64 {
            return Err(bad(format!(
                "tensor '{name}' has data_offsets [{begin}, {end}] outside the {data_len} data bytes"
            )));
        }
        if end - begin != declared {
            return Err(bad(format!(
                "tensor '{name}' of shape {shape:?} needs {declared} bytes but its data_offsets span {}",
                end - begin
            )));
        }
        total += declared;
        if total > MAX_WEIGHTS_BYTES {
            return Err(bad(format!("the tensors declare more than {MAX_WEIGHTS_BYTES} bytes")));
        }
        entries.push(Entry { name: name.clone(), dtype, shape, begin: begin as usize, end: end as usize });
    }
    let mut spans: Vec<(usize, usize, &str)> = entries.iter().map(|e| (e.begin, e.end, e.name.as_str())).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!("tensors '{}' and '{}' share data bytes", w[0].2, w[1].2)));
        }
    }
    Ok(entries)
}
