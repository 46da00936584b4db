//! A batch's pixels on the host and their one upload. The loader delivers `u8` CHW images (what
//! open_clip's `ToTensor` sees: PIL images are `u8`); they go to the device packed four to a
//! 32-bit word — a quarter of the f32 bytes — and are unpacked and normalised there,
//! `(v / 255 − mean) / std` in f32, torchvision's `ToTensor` + `Normalize`.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

/// The pixels of a batch, `rows × 3 × size × size` values in CHW order.
#[derive(Clone, Debug, PartialEq)]
pub enum HostPixels {
    /// Already normalised f32 (tests and tools).
    F32(Vec<f32>),
    /// Raw `u8` channel values and the normalisation the device applies.
    U8 { data: Vec<u8>, mean: [f32; 3], std: [f32; 3] },
}

impl From<Vec<f32>> for HostPixels {
    fn from(v: Vec<f32>) -> Self {
        HostPixels::F32(v)
    }
}

impl HostPixels {
    /// The rows `ranges` (in units of `per_row` values), concatenated, in one allocation.
    pub fn gather(&self, ranges: &[(usize, usize)], per_row: usize) -> HostPixels {
        fn pick<T: Copy>(src: &[T], ranges: &[(usize, usize)], per_row: usize) -> Vec<T> {
            let total: usize = ranges.iter().map(|(a, b)| b - a).sum();
            let mut v = Vec::with_capacity(total * per_row);
            for &(a, b) in ranges {
                v.extend_from_slice(&src[a * per_row..b * per_row]);
            }
            v
        }
        match self {
            HostPixels::F32(v) => HostPixels::F32(pick(v, ranges, per_row)),
            HostPixels::U8 { data, mean, std } => {
                HostPixels::U8 { data: pick(data, ranges, per_row), mean: *mean, std: *std }
            }
        }
    }

    /// The `rows × 3 × size × size` f32 image tensor on `device`: one upload; `u8` values are
    /// unpacked and normalised on the device. `pinned`: the host buffer is first copied into
    /// page-locked memory (Burn's `Device::staging`; CUDA has it), so the upload is an
    /// asynchronous DMA that does not hold the device's thread; elsewhere Burn leaves the buffer
    /// as it is.
    pub fn upload(self, rows: usize, size: usize, device: &Device, pinned: bool) -> Tensor<4> {
        let shape = [rows, 3, size, size];
        let staged = |mut data: TensorData| {
            if pinned {
                device.staging(std::iter::once(&mut data));
            }
            data
        };
        match self {
            HostPixels::F32(v) => Tensor::from_data(staged(TensorData::new(v, shape)), (device, DType::F32)),
            HostPixels::U8 { data, mean, std } => {
                let n = data.len();
                let words = pack_u8(&data);
                let w = words.len();
                let packed = Tensor::<1, Int>::from_data(staged(TensorData::new(words, [w])), device);
                // Byte k of each word: (w >> 8k) & 255 (the arithmetic shift of a negative word
                // is masked off). Stacked last, so the bytes come out in memory order.
                let bytes: Vec<Tensor<2, Int>> = (0..4)
                    .map(|k| packed.clone().bitwise_right_shift_scalar(8 * k).bitwise_and_scalar(255).reshape([w, 1]))
                    .collect();
                let v = Tensor::cat(bytes, 1).reshape([w * 4]).narrow(0, 0, n).float().cast(DType::F32);
                let per_channel = |x: [f32; 3]| {
                    Tensor::<4>::from_data(TensorData::new(x.to_vec(), [1, 3, 1, 1]), (device, DType::F32))
                };
                (v.reshape(shape) / 255.0 - per_channel(mean)) / per_channel(std)
            }
        }
    }
}

/// Four bytes to a little-endian `i32` word (zero-padded at the end).
fn pack_u8(data: &[u8]) -> Vec<i32> {
    data.chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            i32::from_le_bytes(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of a word, an odd length (padding), against the host
    /// formula of `dermlip::input::preprocess::normalize` (the same f32 operations: bit-equal on
    /// the CPU).
    #[test]
    fn u8_pixels_normalise_on_the_device_as_on_the_host() {
        let (rows, size) = (3, 7);
        let n = rows * 3 * size * size; // 441: not a multiple of 4
        let data: Vec<u8> = (0..n).map(|i| ((i * 131 + i / 256) % 256) as u8).collect();
        assert!((0..=255u8).all(|b| data.contains(&b)));
        let dermlip::input::preprocess::PreprocessConfig { mean, std, .. } = Default::default();
        let plane = size * size;
        let want: Vec<f32> = data
            .iter()
            .enumerate()
            .map(|(i, &v)| (v as f32 / 255.0 - mean[(i / plane) % 3]) / std[(i / plane) % 3])
            .collect();
        let device = Device::flex();
        // `pinned` asks Burn for page-locked memory, which the CPU backend does not need.
        for pinned in [false, true] {
            let got = HostPixels::U8 { data: data.clone(), mean, std }.upload(rows, size, &device, pinned);
            assert_eq!(got.dims(), [rows, 3, size, size]);
            assert_eq!(got.into_data().try_to_vec::<f32>().unwrap(), want, "pinned {pinned}");
        }
    }

    #[test]
    fn gather_picks_rows_in_order() {
        let p = HostPixels::U8 { data: (0..12).collect(), mean: [0.0; 3], std: [1.0; 3] };
        let g = p.gather(&[(2, 3), (0, 1)], 4);
        assert_eq!(g, HostPixels::U8 { data: vec![8, 9, 10, 11, 0, 1, 2, 3], mean: [0.0; 3], std: [1.0; 3] });
    }
}
