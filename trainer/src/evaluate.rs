//! In-loop evaluation on the validation set, with the exact inference preprocessing of the core
//! crate: retrieval Recall@1/5/10 in both directions (open_clip `get_clip_metrics`, ties counted
//! optimistically as `dermlip::eval::metrics::recall_at_k`) and zero-shot accuracy over the label set.

use std::collections::BTreeSet;
use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor};
use dermlip::config::ModelFileConfig;
use dermlip::input::tokenizer::{text_pad_id, TextIds, TextTokenizer};
use dermlip::knowledge::zero_shot::fill_template;
use dermlip::Clip;
use serde::Serialize;

use crate::config::DataConfig;
use crate::data::Dataset;
use crate::loader::{EpochLoader, LoaderConfig, Transform};
use crate::loss::l2_normalize;

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub n: usize,
    pub skipped: usize,
    pub image_to_text_r1: f64,
    pub image_to_text_r5: f64,
    pub image_to_text_r10: f64,
    pub text_to_image_r1: f64,
    pub text_to_image_r5: f64,
    pub text_to_image_r10: f64,
    /// R@1 of a random ranking: 1/n.
    pub chance_r1: f64,
    pub zero_shot_accuracy: Option<f64>,
    pub zero_shot_classes: usize,
}

impl EvalReport {
    pub fn summary(&self) -> String {
        let zs = self.zero_shot_accuracy.map_or(String::new(), |a| {
            format!(
                ", zero-shot acc {:.3} over {} classes (chance {:.3})",
                a,
                self.zero_shot_classes,
                1.0 / self.zero_shot_classes.max(1) as f64
            )
        });
        format!(
            "n={} i→t R@1/5/10 {:.3}/{:.3}/{:.3}, t→i R@1/5/10 {:.3}/{:.3}/{:.3} (chance R@1 {:.4}){zs}",
            self.n,
            self.image_to_text_r1,
            self.image_to_text_r5,
            self.image_to_text_r10,
            self.text_to_image_r1,
            self.text_to_image_r5,
            self.text_to_image_r10,
            self.chance_r1
        )
    }
}

const EVAL_BATCH: usize = 64;

/// Rank of the matching column (strictly greater scores) for each row of `q · kᵀ`, row i ↔ column i.
fn ranks(q: &Tensor<2>, k: &Tensor<2>) -> Vec<usize> {
    let [n, _] = q.dims();
    let device = q.device();
    let mut out = Vec::with_capacity(n);
    let mut a = 0;
    while a < n {
        let b = (a + 256).min(n);
        let s = q.clone().narrow(0, a, b - a).matmul(k.clone().transpose());
        let idx = Tensor::<1, Int>::arange(a as i64..b as i64, &device).reshape([b - a, 1]);
        let diag = s.clone().gather(1, idx);
        let r = s.greater(diag).int().sum_dim(1);
        let v: Vec<i64> = r.into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
        out.extend(v.into_iter().map(|x| x as usize));
        a = b;
    }
    out
}

fn recall(ranks: &[usize], k: usize) -> f64 {
    ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64
}

/// `model` must be a validation (non-autodiff) copy on `device`. `readers`: the pool of the
/// workers' readers (share one between evaluations so archives stay open and parsed).
pub fn evaluate(
    model: &Clip,
    ds: &Arc<Dataset>,
    tokenizer: &Arc<TextTokenizer>,
    file_cfg: &ModelFileConfig,
    data: &DataConfig,
    device: Device,
    readers: &crate::loader::ReaderPool,
) -> Result<EvalReport, String> {
    let size = file_cfg.preprocess.size as usize;
    let pad = text_pad_id(&file_cfg.model.text.arch);
    let cfg = LoaderConfig {
        batch_size: EVAL_BATCH,
        workers: data.workers,
        prefetch: 2,
        seed: 0,
        shuffle: false,
        drop_last: false,
        transform: Transform::Eval,
        preprocess: file_cfg.preprocess.clone(),
        readers: readers.clone(),
    };
    let mut imgs = Vec::new();
    let mut txts = Vec::new();
    let mut ids = Vec::new();
    let mut skipped = 0;
    for mut batch in EpochLoader::new(Arc::clone(ds), Arc::clone(tokenizer), &cfg, 0, 0) {
        skipped += batch.skipped.len();
        if batch.len == 0 {
            continue;
        }
        let img = batch.take_pixels(&cfg.preprocess).upload(batch.len, size, &device, false);
        let tok = TextIds::trimmed(&batch.tokens, batch.len, pad).tensor(&device);
        imgs.push(l2_normalize(model.encode_image(img)));
        txts.push(l2_normalize(model.encode_text(tok)));
        ids.extend(batch.ids);
    }
    if ids.len() < 2 {
        return Err(format!("validation: {} usable samples, need at least 2", ids.len()));
    }
    let img = Tensor::cat(imgs, 0);
    let txt = Tensor::cat(txts, 0);
    let i2t = ranks(&img, &txt);
    let t2i = ranks(&txt, &img);
    let n = ids.len();

    let labels: Vec<&str> = ids.iter().filter_map(|&i| ds.samples[i].label.as_deref()).collect();
    let (zero_shot_accuracy, zero_shot_classes) = if labels.len() == n && !data.zero_shot_templates.is_empty() {
        let classes: Vec<&str> = labels.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        let mut class_emb = Vec::new();
        for c in &classes {
            let prompts: Vec<Vec<u32>> = data
                .zero_shot_templates
                .iter()
                .map(|t| tokenizer.encode(&fill_template(t, c)).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            let tok = TextIds::from_rows(&prompts, pad).tensor(&device);
            let e = l2_normalize(model.encode_text(tok)).mean_dim(0);
            class_emb.push(l2_normalize(e));
        }
        let w = Tensor::cat(class_emb, 0); // [classes, d]
        let pred = img.clone().matmul(w.transpose()).argmax(1).reshape([n]);
        let pred: Vec<i64> = pred.into_data().convert::<i64>().try_to_vec::<i64>().unwrap_or_default();
        let correct = pred.iter().zip(&labels).filter(|(p, l)| classes[**p as usize] == **l).count();
        (Some(correct as f64 / n as f64), classes.len())
    } else {
        (None, 0)
    };
    Ok(EvalReport {
        n,
        skipped,
        image_to_text_r1: recall(&i2t, 1),
        image_to_text_r5: recall(&i2t, 5),
        image_to_text_r10: recall(&i2t, 10),
        text_to_image_r1: recall(&t2i, 1),
        text_to_image_r5: recall(&t2i, 5),
        text_to_image_r10: recall(&t2i, 10),
        chance_r1: 1.0 / n as f64,
        zero_shot_accuracy,
        zero_shot_classes,
    })
}
