//! Saving: a module's walk ([`TensorVisitor`]) that writes its parameters as an open_clip state
//! dict, f32, PyTorch layouts. Native only: every tensor is read back synchronously.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData};

use super::visit::{unsqueezed_shape, TensorVisitor};
use super::StateDict;
use crate::error::{Error, Result};

/// Writes a module's parameters as an open_clip state dict: f32, PyTorch layouts.
#[derive(Default)]
pub struct StateDictWriter {
    tensors: BTreeMap<String, TensorData>,
}

fn f32_data<const D: usize>(t: Tensor<D>) -> TensorData {
    t.into_data().convert_dtype(DType::F32)
}

impl TensorVisitor for StateDictWriter {
    fn param<const D: usize>(&mut self, key: &str, p: &mut Param<Tensor<D>>) -> Result<()> {
        self.tensors.insert(key.to_string(), f32_data(p.val()));
        Ok(())
    }

    fn linear_weight(&mut self, key: &str, p: &mut Param<Tensor<2>>) -> Result<()> {
        self.tensors.insert(key.to_string(), f32_data(p.val().transpose()));
        Ok(())
    }

    fn param_unsqueezed<const D: usize, const S: usize>(
        &mut self,
        key: &str,
        p: &mut Param<Tensor<D>>,
        _trainable: bool,
    ) -> Result<()> {
        let t = p.val();
        let stored: [usize; S] = unsqueezed_shape(t.dims());
        self.tensors.insert(key.to_string(), f32_data(t.reshape(stored)));
        Ok(())
    }

    fn scalar(&mut self, key: &str, p: &mut Param<Tensor<1>>) -> Result<()> {
        let value = p
            .val()
            .into_data()
            .convert_dtype(DType::F32)
            .try_to_vec::<f32>()
            .map_err(|e| Error::Weights(format!("{key}: {e:?}")))?;
        self.tensors.insert(key.to_string(), TensorData::new(vec![value[0]], [0usize; 0]));
        Ok(())
    }
}

impl StateDictWriter {
    /// The tensors written so far.
    pub fn into_state_dict(self) -> StateDict {
        StateDict::from_tensors(self.tensors)
    }
}
