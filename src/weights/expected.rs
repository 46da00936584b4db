//! What a model expects of a checkpoint, known before any tensor data is read: every state-dict
//! name with the shape the file stores it in, recorded by walking a freshly built model (lazy
//! parameters: nothing is allocated). [`StateDict::from_file_expecting`](super::StateDict) checks
//! each declared name and shape, and the total declared bytes, against it from the file's header
//! or pickle alone.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::Tensor;

use super::visit::{unsqueezed_shape, TensorVisitor};
use crate::error::{Error, Result};

/// Extra bytes a file may declare beyond the model's own tensors (optional buffers such as
/// `attn_mask` or BERT's `position_ids`, a training checkpoint's optimizer state).
const SLACK_BYTES: u64 = 64 << 20;
/// A file may hold the model up to this many times over in f32 (f64 weights, or a training
/// checkpoint's weights plus two Adam moments).
const MODEL_COPIES: u64 = 4;

/// State-dict name → stored shape (PyTorch layouts; scalars 0-d).
#[derive(Clone, Debug, Default)]
pub struct ExpectedTensors {
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ExpectedTensors {
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.shapes.get(key).map(Vec::as_slice)
    }

    /// The most tensor bytes a file for this model may declare.
    pub fn byte_budget(&self) -> u64 {
        let f32_bytes: u64 = self.shapes.values().map(|s| 4 * s.iter().map(|&d| d as u64).product::<u64>()).sum();
        f32_bytes.saturating_mul(MODEL_COPIES).saturating_add(SLACK_BYTES)
    }

    /// Checks the declared `(name, shape, bytes)` of a file's tensors before any is read: an
    /// expected name must have the expected shape (a scalar may be 0-d or `[1]`), and the total
    /// must stay within [`ExpectedTensors::byte_budget`]. Names the model does not use are left
    /// to the loader (optional buffers are dropped there; others are refused after loading).
    /// Keys may carry a training checkpoint's `state_dict.` / DDP's `module.` prefix.
    pub(super) fn check<'a>(&self, declared: impl Iterator<Item = (&'a str, &'a [usize], u64)>) -> Result<()> {
        let budget = self.byte_budget();
        let mut total: u64 = 0;
        for (name, shape, bytes) in declared {
            let key = name.strip_prefix("state_dict.").unwrap_or(name);
            let key = key.strip_prefix("module.").unwrap_or(key);
            if let Some(want) = self.shapes.get(key) {
                let scalar_ok = want.is_empty() && (shape.is_empty() || shape == [1]);
                if shape != want.as_slice() && !scalar_ok {
                    return Err(Error::Weights(format!(
                        "tensor '{key}' has shape {shape:?} in the checkpoint but the model expects {want:?}"
                    )));
                }
            }
            total = total.saturating_add(bytes);
            if total > budget {
                return Err(Error::Weights(format!(
                    "the checkpoint declares more than {budget} bytes of tensors (at '{name}'), more than \
                     this model config can use"
                )));
            }
        }
        Ok(())
    }
}

impl TensorVisitor for ExpectedTensors {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) -> Result<()> {
        self.shapes.insert(key.to_string(), p.lazy_shape().dims::<D>().to_vec());
        Ok(())
    }

    fn linear_weight(&mut self, key: &str, p: &mut Param<Tensor<2>>) -> Result<()> {
        let [d_in, d_out] = p.lazy_shape().dims::<2>();
        self.shapes.insert(key.to_string(), vec![d_out, d_in]);
        Ok(())
    }

    fn param_unsqueezed<const D: usize, const S: usize>(
        &mut self,
        key: &str,
        p: &mut Param<Tensor<D>>,
        _trainable: bool,
    ) -> Result<()> {
        let stored: [usize; S] = unsqueezed_shape(p.lazy_shape().dims::<D>());
        self.shapes.insert(key.to_string(), stored.to_vec());
        Ok(())
    }

    fn scalar(&mut self, key: &str, _p: &mut Param<Tensor<1>>) -> Result<()> {
        self.shapes.insert(key.to_string(), Vec::new());
        Ok(())
    }
}
