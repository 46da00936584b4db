//! Token ids → the text tower's input: a `[rows, len]` Int tensor without the padding columns
//! that every row ends with.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::bpe::PAD_TOKEN;
use crate::config::TextArch;

/// The id the text tower's tokenizer pads with: 0 for open_clip's CLIP BPE, `pad_token_id` for a BERT.
pub fn text_pad_id(arch: &TextArch) -> u32 {
    match arch {
        TextArch::Clip => PAD_TOKEN,
        TextArch::Bert(b) => b.pad_token_id,
    }
}

/// Drops the padding columns that every row of a `[rows, row_len]` batch of token ids ends with:
/// they change no text embedding, so the text tower need not run over them (prompts use ~20 of
/// CLIP's 77 positions, a few dozen of BERT's 256). BERT masks padding as keys and leaves it out
/// of its mean; CLIP's attention is causal and it pools at the end-of-text token, which no later
/// position can reach (so their gradients are zero too). Returns the ids and the new row length.
pub fn trim_text_padding(ids: &[i32], rows: usize, pad: i32) -> (Vec<i32>, usize) {
    let row_len = ids.len() / rows.max(1);
    if rows == 0 || row_len == 0 {
        return (ids.to_vec(), row_len);
    }
    let len = ids.chunks(row_len).map(|row| used_length(row, pad)).max().unwrap_or(row_len);
    (ids.chunks(row_len).flat_map(|row| &row[..len]).copied().collect(), len)
}

/// Ids up to and including the last non-padding one (at least one).
fn used_length(row: &[i32], pad: i32) -> usize {
    row.iter().rposition(|&i| i != pad).map_or(1, |last| last + 1)
}

/// A batch of token-id rows as the text tower takes them: `rows` rows of `len` ids, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TextIds {
    pub ids: Vec<i32>,
    pub rows: usize,
    pub len: usize,
}

impl TextIds {
    /// `rows` rows of equal length (flattened), without the padding columns ([`trim_text_padding`]).
    pub fn trimmed(ids: &[i32], rows: usize, pad: u32) -> Self {
        let (ids, len) = trim_text_padding(ids, rows, pad as i32);
        TextIds { ids, rows, len }
    }

    /// Tokenizer output (one row per text), without the padding columns.
    pub fn from_rows(rows: &[Vec<u32>], pad: u32) -> Self {
        let flat: Vec<i32> = rows.iter().flatten().map(|&i| i as i32).collect();
        Self::trimmed(&flat, rows.len(), pad)
    }

    /// Every row as a `[rows, len]` Int tensor.
    pub fn tensor(&self, device: &Device) -> Tensor<2, Int> {
        self.tensor_rows(0..self.rows, device)
    }

    /// Rows `rows.start..rows.end` as a `[rows.len(), len]` Int tensor.
    pub fn tensor_rows(&self, rows: Range<usize>, device: &Device) -> Tensor<2, Int> {
        let ids = self.ids[rows.start * self.len..rows.end * self.len].to_vec();
        Tensor::<2, Int>::from_data(TensorData::new(ids, [rows.len(), self.len]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::tokenizer::bpe::{ClipTokenizer, EOT_TOKEN, SOT_TOKEN};

    #[test]
    fn text_batches_are_cut_after_their_last_non_padding_id() {
        let tok = ClipTokenizer::new().unwrap();
        let ids: Vec<i32> =
            ["a photo of a nevus", "melanoma"].iter().flat_map(|t| tok.encode(t).unwrap()).map(|i| i as i32).collect();
        let eot = ids.iter().position(|&i| i == EOT_TOKEN as i32).unwrap();
        let (cut, len) = trim_text_padding(&ids, 2, 0);
        assert_eq!(len, eot + 1);
        assert_eq!(cut[..len], ids[..len]);
        assert_eq!(cut[len..], ids[77..77 + len]);
        // Id 0 is also the BPE token "!": only the zeros after end-of-text are padding.
        let (sot, eot) = (SOT_TOKEN as i32, EOT_TOKEN as i32);
        assert_eq!(trim_text_padding(&[sot, 0, 320, 0, eot, 0, 0], 1, 0).1, 5);
        // A full row keeps every column; an empty batch stays empty.
        let full: Vec<i32> = tok.encode(&"word ".repeat(100)).unwrap().iter().map(|&i| i as i32).collect();
        assert_eq!(trim_text_padding(&full, 1, 0).1, 77);
        assert_eq!(trim_text_padding(&[], 0, 0), (vec![], 0));
    }
}
