//! One walk per module for both directions, the way candle's `VarBuilder` spells each key once:
//! a module lists its tensors (state-dict name, parameter, layout) to a [`TensorVisitor`], and the
//! visitor either fills the parameters from a checkpoint ([`WeightLoader`](super::WeightLoader),
//! strict shape checks) or writes them out ([`StateDictWriter`](super::StateDictWriter), f32,
//! PyTorch layouts; native only).
//!
//! The expected shape of every tensor is the parameter's own (lazy) shape: the tower's
//! constructor, built from the config, is the one home of the shapes.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::error::Result;

/// What a module's walk calls for each of its tensors.
pub trait TensorVisitor {
    /// A parameter stored as the model holds it (same shape, same layout).
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) -> Result<()>;

    /// A linear weight: PyTorch `[out, in]` in the checkpoint, Burn's `[in, out]` in the model.
    fn linear_weight(&mut self, key: &str, p: &mut Param<Tensor<2>>) -> Result<()>;

    /// A parameter the checkpoint stores with `S - D` extra leading 1-dimensions (PanDerm's
    /// `cls_token` `[1, 1, width]`, `pos_embed` `[1, n, width]`). `trainable: false` marks a fixed
    /// table: a loaded one does not require gradients.
    fn param_unsqueezed<const D: usize, const S: usize>(
        &mut self,
        key: &str,
        p: &mut Param<Tensor<D>>,
        trainable: bool,
    ) -> Result<()>;

    /// A scalar (`logit_scale`): `[1]` in the model, 0-d in the checkpoint.
    fn scalar(&mut self, key: &str, p: &mut Param<Tensor<1>>) -> Result<()>;
}

/// `[1, …, 1, dims…]`: `dims` with `S - D` leading 1-dimensions.
pub(crate) fn unsqueezed_shape<const D: usize, const S: usize>(dims: [usize; D]) -> [usize; S] {
    assert!(S >= D, "a stored rank {S} below the model's {D}");
    let mut stored = [1usize; S];
    stored[S - D..].copy_from_slice(&dims);
    stored
}
