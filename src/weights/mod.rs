//! Reading open_clip checkpoints into a name → tensor map, and taking tensors out of it with
//! strict shape checks. Loading is all-or-nothing: a missing, unexpected or mis-shaped key is an
//! error naming the key (and both shapes), never a silently half-initialised model.

use std::collections::BTreeMap;

use burn::module::Param;
#[cfg(not(target_family = "wasm"))]
use burn::store::{bridge, ModuleStore};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::{Error, Result};

mod expected;
mod safetensors;
mod visit;
// Native only: saving reads every tensor back synchronously, which WebGPU in wasm cannot do.
#[cfg(not(target_family = "wasm"))]
mod writer;

pub use expected::ExpectedTensors;
pub use visit::TensorVisitor;
#[cfg(not(target_family = "wasm"))]
pub use writer::StateDictWriter;

/// [`StateDict::quantize_int8`] leaves smaller tensors (biases, norms, the class token) in float.
pub const INT8_MIN_ELEMENTS: usize = 4096;
pub const INT8_SCALE_SUFFIX: &str = ":int8_scale";

/// The tensors of one checkpoint, keyed by their open_clip state-dict names.
pub struct StateDict {
    tensors: BTreeMap<String, TensorData>,
}

impl StateDict {
    pub fn from_tensors(tensors: BTreeMap<String, TensorData>) -> Self {
        StateDict { tensors }
    }

    /// Safetensors bytes, as in `open_clip_model.safetensors` (works in the browser too).
    /// The header is parsed once and checked whole (dtypes, shapes, offsets inside the file, no
    /// shared bytes, [`MAX_WEIGHTS_BYTES`](crate::limits::MAX_WEIGHTS_BYTES) in total) before any
    /// tensor is copied.
    pub fn from_safetensors_bytes(bytes: Vec<u8>) -> Result<Self> {
        StateDict { tensors: safetensors::read(&bytes, None)? }.dequantize_int8()
    }

    /// As [`StateDict::from_safetensors_bytes`], and every declared shape and the total declared
    /// bytes are checked against what the model expects before any tensor is copied.
    pub fn from_safetensors_bytes_expecting(bytes: Vec<u8>, expected: &ExpectedTensors) -> Result<Self> {
        StateDict { tensors: safetensors::read(&bytes, Some(expected))? }.dequantize_int8()
    }

    /// `open_clip_model.safetensors`, `open_clip_pytorch_model.bin`, or a training checkpoint
    /// `.pt` (a `state_dict` wrapper whose keys may carry DDP's `module.` prefix).
    #[cfg(not(target_family = "wasm"))]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        Self::from_file_checked(path, None)
    }

    /// As [`StateDict::from_file`], and every declared shape and the total declared bytes are
    /// checked against what the model expects (from the header or the pickle) before any tensor
    /// data is read.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_file_expecting(path: &std::path::Path, expected: &ExpectedTensors) -> Result<Self> {
        Self::from_file_checked(path, Some(expected))
    }

    #[cfg(not(target_family = "wasm"))]
    fn from_file_checked(path: &std::path::Path, expected: Option<&ExpectedTensors>) -> Result<Self> {
        let shown = path.display().to_string();
        let head = read_head(path)?;
        let file_len = std::fs::metadata(path).map_err(|e| io_error(&shown, e))?.len();
        if file_len > crate::limits::MAX_WEIGHTS_BYTES {
            return Err(Error::Weights(format!(
                "{shown}: the file is {file_len} bytes; at most {} are accepted",
                crate::limits::MAX_WEIGHTS_BYTES
            )));
        }
        if is_safetensors(&head) {
            let bytes = std::fs::read(path).map_err(|e| io_error(&shown, e))?;
            return safetensors::read(&bytes, expected)
                .and_then(|tensors| StateDict { tensors }.dequantize_int8())
                .map_err(|e| Error::Weights(format!("{shown}: {}", e.detail())));
        }
        let mut store = burn::store::PytorchStore::from_file(path).map_indices_contiguous(false);
        let tensors = store
            .get_all_tensors()
            .map_err(|e| Error::Weights(format!("{shown}: not a readable safetensors or PyTorch checkpoint: {e}")))?;
        check_declared_sizes(tensors.values(), file_len)
            .and_then(|()| match expected {
                Some(x) => x.check(tensors.values().map(|t| {
                    let bytes =
                        t.shape.as_slice().iter().fold(t.dtype.size() as u64, |a, &d| a.saturating_mul(d as u64));
                    (t.name.as_str(), t.shape.as_slice(), bytes)
                })),
                None => Ok(()),
            })
            .map_err(|e| Error::Weights(format!("{shown}: {}", e.detail())))?;
        let sd = Self::from_pack(tensors.values()).map_err(|e| Error::Weights(format!("{shown}: {}", e.detail())))?;
        Ok(sd.unwrap_training_checkpoint())
    }

    #[cfg(not(target_family = "wasm"))]
    fn from_pack<'a>(tensors: impl Iterator<Item = &'a burn::store::burn_pack::Tensor>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for t in tensors {
            let data =
                bridge::to_data(t).map_err(|e| Error::Weights(format!("cannot read tensor '{}': {e:?}", t.name)))?;
            out.insert(t.name.clone(), data);
        }
        if out.is_empty() {
            return Err(Error::Weights("the checkpoint holds no tensors".into()));
        }
        Ok(StateDict { tensors: out })
    }

    #[cfg(not(target_family = "wasm"))]
    /// open_clip training checkpoints hold `{"epoch", "state_dict": {"module.visual…": …}, …}`.
    fn unwrap_training_checkpoint(mut self) -> Self {
        const WRAPPER: &str = "state_dict.";
        if self.tensors.keys().any(|k| k.starts_with(WRAPPER)) {
            self.tensors = std::mem::take(&mut self.tensors)
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix(WRAPPER).map(|s| (s.to_string(), v)))
                .collect();
        }
        if self.tensors.keys().all(|k| k.starts_with("module.")) {
            self.tensors = std::mem::take(&mut self.tensors)
                .into_iter()
                .map(|(k, v)| (k["module.".len()..].to_string(), v))
                .collect();
        }
        self
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape().as_slice())
    }

    pub fn insert(&mut self, key: impl Into<String>, data: TensorData) {
        self.tensors.insert(key.into(), data);
    }

    pub fn remove(&mut self, key: &str) -> Option<TensorData> {
        self.tensors.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&TensorData> {
        self.tensors.get(key)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Splits off the tensors whose key satisfies `pred`.
    pub fn split_off(&mut self, pred: impl Fn(&str) -> bool) -> StateDict {
        let keys: Vec<String> = self.tensors.keys().filter(|k| pred(k)).cloned().collect();
        StateDict { tensors: keys.into_iter().map(|k| (k.clone(), self.tensors.remove(&k).unwrap())).collect() }
    }

    /// Converts every floating-point tensor to `dtype` (f32, f16 or bf16); integer tensors stay.
    pub fn convert_floats(self, dtype: DType) -> StateDict {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(k, t)| {
                let t = if matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16 | DType::F64) && t.dtype() != dtype
                {
                    t.convert_dtype(dtype)
                } else {
                    t
                };
                (k, t)
            })
            .collect();
        StateDict { tensors }
    }

    /// Stores every float tensor of rank ≥ 2 with at least [`INT8_MIN_ELEMENTS`] values as int8
    /// with one f32 scale per row (first dimension; symmetric, absmax/127), under
    /// `"{name}{INT8_SCALE_SUFFIX}"`. Reading the file back dequantises automatically.
    pub fn quantize_int8(self) -> StateDict {
        let mut out = BTreeMap::new();
        for (name, t) in self.tensors {
            let shape = t.shape().to_vec();
            let float = matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16 | DType::F64);
            if !float || shape.len() < 2 || shape.iter().product::<usize>() < INT8_MIN_ELEMENTS {
                out.insert(name, t);
                continue;
            }
            let values: Vec<f32> = t.convert::<f32>().try_to_vec().expect("converted to f32");
            let row = values.len() / shape[0];
            let mut q = Vec::with_capacity(values.len());
            let mut scales = Vec::with_capacity(shape[0]);
            for r in values.chunks(row) {
                let max = r.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                scales.push(scale);
                q.extend(r.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
            }
            out.insert(format!("{name}{INT8_SCALE_SUFFIX}"), TensorData::new(scales, [shape[0]]));
            out.insert(name, TensorData::new(q, shape));
        }
        StateDict { tensors: out }
    }

    /// Inverse of [`StateDict::quantize_int8`] (to f32); a no-op for files without int8 tensors.
    fn dequantize_int8(mut self) -> Result<StateDict> {
        let scaled: Vec<String> =
            self.tensors.keys().filter_map(|k| k.strip_suffix(INT8_SCALE_SUFFIX).map(String::from)).collect();
        for name in scaled {
            let scales = self.tensors.remove(&format!("{name}{INT8_SCALE_SUFFIX}")).expect("listed above");
            let q = self
                .tensors
                .remove(&name)
                .ok_or_else(|| Error::Weights(format!("int8 scales for '{name}' but no such tensor")))?;
            let shape = q.shape().to_vec();
            let scales: Vec<f32> =
                scales.convert::<f32>().try_to_vec().map_err(|e| Error::Weights(format!("{e:?}")))?;
            if q.dtype() != DType::I8 || shape.is_empty() || scales.len() != shape[0] {
                return Err(Error::Weights(format!(
                    "'{name}': int8 tensor {:?} {shape:?} does not match {} scales",
                    q.dtype(),
                    scales.len()
                )));
            }
            let q: Vec<i8> = q.try_to_vec().map_err(|e| Error::Weights(format!("'{name}': {e:?}")))?;
            let row = q.len() / shape[0].max(1);
            let values: Vec<f32> = q.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / row.max(1)]).collect();
            self.tensors.insert(name, TensorData::new(values, shape));
        }
        Ok(self)
    }

    /// The safetensors file of these tensors (keys sorted), readable by PyTorch's `safetensors`
    /// and by [`StateDict::from_safetensors_bytes`].
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let dtype = match t.dtype() {
                DType::F64 => "F64",
                DType::F32 => "F32",
                DType::F16 => "F16",
                DType::BF16 => "BF16",
                DType::I64 => "I64",
                DType::I32 => "I32",
                DType::I16 => "I16",
                DType::I8 => "I8",
                DType::U8 => "U8",
                DType::Bool(burn::tensor::BoolStore::Native | burn::tensor::BoolStore::U8) => "BOOL",
                other => return Err(Error::Weights(format!("cannot write tensor '{name}' of type {other:?}"))),
            };
            let len = t.as_bytes().len();
            header.insert(
                name.clone(),
                serde_json::json!({ "dtype": dtype, "shape": t.shape().as_slice(), "data_offsets": [offset, offset + len] }),
            );
            offset += len;
        }
        let mut json = serde_json::to_vec(&header).map_err(|e| Error::Weights(e.to_string()))?;
        // The data must start 8-byte aligned.
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + json.len() + offset);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for t in self.tensors.values() {
            out.extend_from_slice(t.as_bytes());
        }
        Ok(out)
    }
}

/// Takes tensors out of a [`StateDict`] onto a device, checking each shape.
pub struct WeightLoader<'a> {
    weights: StateDict,
    device: &'a Device,
}

impl<'a> WeightLoader<'a> {
    pub fn new(weights: StateDict, device: &'a Device) -> Self {
        WeightLoader { weights, device }
    }

    pub fn device(&self) -> &Device {
        self.device
    }

    /// The raw data of `key`, which must have exactly `shape`. open_clip stores scalars such as
    /// `logit_scale` 0-d; they match a `[1]` request.
    pub fn data(&mut self, key: &str, shape: &[usize]) -> Result<TensorData> {
        let data = self
            .weights
            .remove(key)
            .ok_or_else(|| Error::Weights(format!("missing tensor '{key}' (expected shape {shape:?})")))?;
        // Every parameter is floating point: an integer tensor under a parameter's name is a
        // broken or crafted file, not a value to convert (int8 bundles are dequantised on read).
        if !matches!(data.dtype(), DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(Error::Weights(format!(
                "tensor '{key}' is {:?} in the checkpoint but the model expects floating point",
                data.dtype()
            )));
        }
        let scalar_ok = data.shape().is_empty() && shape == [1];
        if data.shape().as_slice() != shape && !scalar_ok {
            return Err(Error::Weights(format!(
                "tensor '{key}' has shape {:?} in the checkpoint but the model expects {shape:?}",
                data.shape().as_slice()
            )));
        }
        let data = if scalar_ok { TensorData::new(to_f32(data, key)?, [1]) } else { data };
        Ok(data.convert_dtype(DType::F32))
    }

    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let data = self.data(key, &shape)?;
        Ok(Tensor::from_data(data, self.device))
    }

    /// A PyTorch `[out, in]` weight as Burn's `[in, out]`, transposed here once so the matmuls
    /// read a contiguous matrix instead of copying a strided view on every forward pass.
    fn transposed(&mut self, key: &str, d_in: usize, d_out: usize) -> Result<Tensor<2>> {
        let src = to_f32(self.data(key, &[d_out, d_in])?, key)?;
        let mut dst = vec![0f32; src.len()];
        for (o, row) in src.chunks_exact(d_in).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                dst[i * d_out + o] = v;
            }
        }
        Ok(Tensor::from_data(TensorData::new(dst, [d_in, d_out]), self.device))
    }

    /// Fails when keys remain that the model did not use.
    pub fn finish(self) -> Result<()> {
        let left: Vec<&String> = self.weights.keys().collect();
        if left.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> =
            left.iter().take(5).map(|k| format!("'{k}' {:?}", self.weights.shape(k).unwrap_or(&[]))).collect();
        let more = if left.len() > 5 { format!(" and {} more", left.len() - 5) } else { String::new() };
        Err(Error::Weights(format!(
            "unexpected tensor{} in the checkpoint (not part of this model config): {}{more}",
            if left.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )))
    }
}

/// Loading: each parameter is replaced by the checkpoint's tensor, which must have the
/// parameter's shape (the model was built from the config).
impl TensorVisitor for WeightLoader<'_> {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) -> Result<()> {
        *p = Param::from_tensor(self.tensor(key, p.lazy_shape().dims::<D>())?);
        Ok(())
    }

    fn linear_weight(&mut self, key: &str, p: &mut Param<Tensor<2>>) -> Result<()> {
        let [d_in, d_out] = p.lazy_shape().dims::<2>();
        *p = Param::from_tensor(self.transposed(key, d_in, d_out)?);
        Ok(())
    }

    fn param_unsqueezed<const D: usize, const S: usize>(
        &mut self,
        key: &str,
        p: &mut Param<Tensor<D>>,
        trainable: bool,
    ) -> Result<()> {
        let shape = p.lazy_shape().dims::<D>();
        let t = self.tensor(key, visit::unsqueezed_shape::<D, S>(shape))?.reshape(shape);
        let loaded = Param::from_tensor(t);
        *p = if trainable { loaded } else { loaded.set_require_grad(false) };
        Ok(())
    }

    fn scalar(&mut self, key: &str, p: &mut Param<Tensor<1>>) -> Result<()> {
        *p = Param::from_tensor(self.tensor(key, [1])?);
        Ok(())
    }
}

fn to_f32(data: TensorData, key: &str) -> Result<Vec<f32>> {
    data.convert_dtype(DType::F32)
        .try_to_vec::<f32>()
        .map_err(|e| Error::Weights(format!("tensor '{key}' is not a float tensor: {e:?}")))
}

/// A PyTorch checkpoint's tensors as its pickle declares them, checked before any is read: a
/// zero-stride view or a huge declared storage in a small file must not allocate gigabytes.
/// Each tensor must fit in the file, and all of them in twice the file (tensors may share a
/// storage) and in [`MAX_WEIGHTS_BYTES`](crate::limits::MAX_WEIGHTS_BYTES).
#[cfg(not(target_family = "wasm"))]
fn check_declared_sizes<'a>(
    tensors: impl Iterator<Item = &'a burn::store::burn_pack::Tensor>,
    file_len: u64,
) -> Result<()> {
    use crate::limits::{MAX_TENSOR_RANK, MAX_WEIGHTS_BYTES};
    let budget = file_len.saturating_mul(2).min(MAX_WEIGHTS_BYTES);
    let mut total: u64 = 0;
    for t in tensors {
        let dims = t.shape.as_slice();
        if dims.len() > MAX_TENSOR_RANK {
            return Err(Error::Weights(format!(
                "tensor '{}' has rank {}; at most {MAX_TENSOR_RANK} is accepted",
                t.name,
                dims.len()
            )));
        }
        let bytes = dims
            .iter()
            .try_fold(t.dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|&b| b <= file_len)
            .ok_or_else(|| {
                Error::Weights(format!(
                    "tensor '{}' of shape {dims:?} declares more bytes than the whole file ({file_len})",
                    t.name
                ))
            })?;
        total = total.saturating_add(bytes);
        if total > budget {
            return Err(Error::Weights(format!(
                "the tensors declare more than {budget} bytes in total (file of {file_len} bytes)"
            )));
        }
    }
    Ok(())
}

#[cfg(not(target_family = "wasm"))]
fn read_head(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| io_error(&shown, e))?;
    let mut head = vec![0u8; 16];
    let n = f.read(&mut head).map_err(|e| io_error(&shown, e))?;
    head.truncate(n);
    if n == 0 {
        return Err(Error::Weights(format!("{shown}: the file is empty")));
    }
    Ok(head)
}

/// Safetensors starts with a little-endian u64 header length followed by `{`.
#[cfg(not(target_family = "wasm"))]
fn is_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

#[cfg(not(target_family = "wasm"))]
fn io_error(path: &str, e: std::io::Error) -> Error {
    Error::Io { path: path.to_string(), message: e.to_string() }
}
