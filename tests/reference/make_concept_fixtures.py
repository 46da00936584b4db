"""MONET concept presence scores of the tiny-gelu fixture model, computed with open_clip (PyTorch)
for a few concepts and images: tests/fixtures/concepts/tiny-gelu.json.

    ~/.cache/dermlip-venv/bin/python tests/reference/make_concept_fixtures.py

score(img, c) = mean over templates t of softmax([mean_k cos(img, t(term_k)), mean cos(img, ref_t)] / T)[0],
T = 1/exp(4.5944), as MONET's calculate_concept_presence_score (Derm1M concept_annotation/model.py).
"""
import json
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "derm1m"
FIX = REPO / "tests" / "fixtures"
CONCEPTS = ["abscess", "black", "erythema", "pigment network", "scale"]
N_IMAGES = 6


def main():
    torch.set_grad_enabled(False)
    model_dir = FIX / "models" / "tiny-gelu"
    model = open_clip.create_model(f"local-dir:{model_dir}", precision="fp32", device="cpu").eval()
    tok = open_clip.get_tokenizer("ViT-B-16")
    terms = json.loads((DATA / "ConceptTerms.json").read_text())
    prompts = json.loads((DATA / "prompt_templates.json").read_text())
    templates = prompts["concept_prompt_template_list"]
    refs = prompts["concept_prompt_ref_list"]
    temp = 1 / np.exp(4.5944)

    def embed_text(texts):
        e = model.encode_text(tok(texts))
        return (e / e.norm(dim=-1, keepdim=True)).numpy().astype(np.float64)

    manifest = json.loads((FIX / "preprocess" / "manifest.json").read_text())["images"][:N_IMAGES]
    mean = np.array(model.visual.preprocess_cfg["mean"]).reshape(3, 1, 1)
    std = np.array(model.visual.preprocess_cfg["std"]).reshape(3, 1, 1)
    x = np.stack([(np.asarray(Image.open(FIX / m["reference"]).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 - mean) / std
                  for m in manifest]).astype(np.float32)
    img = model.encode_image(torch.from_numpy(x))
    img = (img / img.norm(dim=-1, keepdim=True)).numpy().astype(np.float64)

    ref_emb = [embed_text(r) for r in refs]
    scores = []
    for c in CONCEPTS:
        per_template = []
        for t, r in zip(templates, ref_emb):
            target = embed_text([t.format(term) for term in terms[c]])
            target_sim = (img @ target.T).mean(axis=1)
            ref_sim = (img @ r.T).mean(axis=1)
            logits = np.stack([target_sim, ref_sim]) / temp
            soft = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
            per_template.append(soft[0])
        scores.append(np.mean(per_template, axis=0).tolist())
    out = {"model": "tiny-gelu", "open_clip_version": open_clip.__version__, "temperature": temp,
           "concepts": [{"name": c, "terms": terms[c]} for c in CONCEPTS], "templates": templates, "references": refs,
           "images": [m["reference"] for m in manifest],
           "scores": np.array(scores).T.tolist()}  # [image][concept]
    (FIX / "concepts").mkdir(exist_ok=True)
    (FIX / "concepts" / "tiny-gelu.json").write_text(json.dumps(out, indent=1) + "\n")
    print(np.array(out["scores"]).round(4))


if __name__ == "__main__":
    main()
