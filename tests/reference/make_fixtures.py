#!/usr/bin/env python3
"""Reference outputs of open_clip's CLIP for the Rust dermlip port.

Default mode writes the small committed fixtures:
  tests/fixtures/models/{tiny-gelu,tiny-quickgelu}/   random-weight open_clip CLIP models in hub file format
  tests/fixtures/reference/{tiny-gelu,tiny-quickgelu}.json   image/text embeddings and zero-shot results
--full writes a full-size ViT-B-16 (random weights) to tests/reference/full/ (gitignored, ~1.2 GB).

Everything runs in float32 on the CPU with open_clip's own classes, tokenizer, hub config writer,
checkpoint loader and zero-shot classifier builder. See tests/reference/README.md.
"""
import argparse
import copy
import datetime
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from PIL import Image, ImageOps

import open_clip
from open_clip.factory import load_checkpoint
from open_clip.push_to_hf_hub import save_config_for_hf
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.zero_shot_classifier import build_zero_shot_classifier

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
FULL_OUT = REPO / "tests" / "reference" / "full"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "derm1m"  # the shared/ folder beside the checkout

# The stock ViT-B-16 CLIP graph, shrunk. The text width is tiny because the 49408-row token table
# dominates the file size.
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}

LONG_CAPTION = (
    "Dermoscopic image of a pigmented skin lesion on the upper back of a 54-year-old man showing an atypical "
    "pigment network, irregular dots and globules, a blue-white veil, regression structures and asymmetry in "
    "two axes, with a diameter of about eight millimetres that has grown over the last six months according "
    "to the patient, who also reports occasional itching and bleeding after minor trauma; the clinical "
    "differential diagnosis includes melanoma, dysplastic nevus and pigmented basal cell carcinoma."
)

# Edge cases for the tokenizer as much as for the model: truncation, the empty string, ftfy repair,
# double HTML unescape, whitespace collapse, case folding, non-Latin scripts and emoji.
EXTRA_TEXTS = [
    "melanoma",
    "nevus",
    "",
    LONG_CAPTION,
    "skin " * 75,  # sot + 75 tokens + eot = exactly 77: not truncated
    "skin " * 76,  # one token too many: truncated, last token forced to eot
    "  Multiple   ERYTHEMATOUS\tpapules\non the  TRUNK  ",
    "Basal cell carcinoma &amp; actinic keratosis &amp;amp; &lt;3",
    "cafÃ© au lait spots",
    "Café-au-lait macules — naïve patient, “quoted”, 1½ cm",
    "Hautausschlag mit Bläschen und Rötung",
    "红斑 on the cheek, 皮肤病",
    "itchy rash 😀🔥 on the arm",
    "psoriasis (plaque-type), 2cm; itchy!!! a 5 mm lesion at 12 o'clock",
]
# Seeds chosen by scanning 0..29: at least 3 distinct top-1 classes over the 33 test images and every
# top-1/top-2 probability margin > 0.15, so "same top-1 as open_clip" is a meaningful, robust check.
SEEDS = {"tiny-gelu": 24, "tiny-quickgelu": 20, "full": 0}

FULL_TEXTS = ["melanoma", "", LONG_CAPTION, "cafÃ© au lait spots", "itchy rash 😀🔥 on the arm"]


def log(*a):
    print(*a, flush=True)


def load_zero_shot_spec(data_dir):
    classnames = json.loads((data_dir / "zero_shot_classnames.json").read_text())["HAM_CLASSNAMES"]
    templates = json.loads((data_dir / "prompt_templates.json").read_text())["zero_shot_templates_OPENAI_SKIN_TEMPLATES"]
    assert len(classnames) == 7 and len(templates) == 8, (len(classnames), len(templates))
    return classnames, templates


def fill(template, classname):
    return template.replace("{c}", classname)


def create_random_model(name, model_cfg, seed):
    """Builds the model the way open_clip does for a named config (create_model), so the model carries
    open_clip's default preprocess_cfg exactly as a hub upload would."""
    torch.manual_seed(seed)  # open_clip's init draws from the global generator
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / f"{name}.json"
        cfg_path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(cfg_path)
        model = open_clip.create_model(name, pretrained=None, precision="fp32", device="cpu")
    return model.eval()


@torch.no_grad()
def perturb_(model, seed, width_of):
    """Replaces every parameter's structured init with seeded noise, so that a key loaded into the
    wrong place (or a transposed matrix) changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if name == "logit_scale":
            p.copy_(math.log(1 / 0.07) + 0.1 * noise)
        elif leaf in ("positional_embedding", "class_embedding"):
            p.copy_(noise * width_of(name) ** -0.5)
        elif p.ndim == 1 and (leaf.endswith("bias")):
            p.copy_(0.05 * noise)
        elif p.ndim == 1 and leaf == "weight":  # LayerNorm gains
            p.copy_(1.0 + 0.1 * noise)
        elif p.ndim >= 2:
            std = float(p.std())
            p.add_(0.5 * std * noise)
        else:
            raise RuntimeError(f"no perturbation rule for parameter {name} {tuple(p.shape)}")
    # Nothing may be left at a constant value.
    for name, p in model.named_parameters():
        if p.numel() > 1 and float(p.std()) == 0.0:
            raise RuntimeError(f"parameter {name} is still constant")


def width_fn(model_cfg):
    vw, tw = model_cfg["vision_cfg"]["width"], model_cfg["text_cfg"]["width"]
    return lambda name: vw if name.startswith("visual.") else tw


def contiguous_state_dict(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_model_files(model, model_cfg, out_dir, extra, half):
    """Writes what open_clip's push_to_hf_hub writes (config + safetensors [+ .bin]), and optionally an
    open_clip training checkpoint (checkpoint.pt, DDP 'module.' prefix). `half` stores float16, as
    fp16 checkpoints do (the model's weights were already rounded to float16, so nothing is lost)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in out_dir.iterdir():
        f.unlink()
    tensors = model.state_dict()
    if half:
        tensors = {k: v.half() for k, v in tensors.items()}
    save_config_for_hf(model, out_dir / "open_clip_config.json", model_config=copy.deepcopy(model_cfg))
    safetensors.torch.save_file(tensors, out_dir / "open_clip_model.safetensors")
    if "bin" in extra:
        torch.save(tensors, out_dir / "open_clip_pytorch_model.bin")
    if "checkpoint" in extra:
        params = [n for n, p in model.named_parameters() if p.requires_grad]
        # The optimizer entry mimics torch.optim.AdamW.state_dict() after construction (no moments, to
        # stay small); open_clip_train puts it next to epoch/name/state_dict.
        optimizer = {
            "state": {},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.1,
                              "amsgrad": False, "params": list(range(len(params)))}],
        }
        ckpt = {"epoch": 1, "name": out_dir.name,
                "state_dict": {"module." + k: v for k, v in tensors.items()},
                "optimizer": optimizer}
        torch.save(ckpt, out_dir / "checkpoint.pt")
    for f in out_dir.iterdir():
        f.chmod(0o644)  # safetensors creates its file 0600


@torch.no_grad()
def check_reload(model, model_cfg, out_dir, probe_image, probe_text):
    """Reloads every written file with open_clip's own loaders and asserts bit-identical outputs."""
    want_i = model.encode_image(probe_image)
    want_t = model.encode_text(probe_text)
    loaded = open_clip.create_model(f"local-dir:{out_dir}", precision="fp32", device="cpu").eval()
    files = ["open_clip_model.safetensors (via local-dir:)"]
    models = [loaded]
    for fname in ("open_clip_pytorch_model.bin", "checkpoint.pt"):
        if (out_dir / fname).exists():
            m = open_clip.create_model(f"local-dir:{out_dir}", load_weights=False, precision="fp32", device="cpu").eval()
            load_checkpoint(m, str(out_dir / fname), strict=True)
            models.append(m)
            files.append(fname)
    for fname, m in zip(files, models):
        got_i, got_t = m.encode_image(probe_image), m.encode_text(probe_text)
        assert torch.equal(got_i, want_i) and torch.equal(got_t, want_t), f"{out_dir}/{fname} does not reload"
        for k in ("mean", "std", "interpolation", "resize_mode"):
            assert list(np.atleast_1d(m.visual.preprocess_cfg[k])) == list(np.atleast_1d(model.visual.preprocess_cfg[k])), k
        act = type(m.visual.transformer.resblocks[0].mlp.gelu).__name__
        log(f"  reload ok: {fname} (activation {act})")


def read_manifest(wait_s):
    path = FIXTURES / "preprocess" / "manifest.json"
    deadline = time.time() + wait_s
    while not path.exists():
        if time.time() > deadline:
            sys.exit(f"error: {path} does not exist (it is written by the preprocess fixture script)")
        log(f"waiting for {path} ...")
        time.sleep(60)
    manifest = json.loads(path.read_text())
    assert manifest.get("size") == 224, f"manifest size {manifest.get('size')} != 224"
    assert manifest["images"], "manifest lists no images"
    return manifest["images"]


def image_input(reference_png, mean, std):
    """(png/255 - mean)/std, NCHW float32: exactly open_clip's ToTensor + Normalize on the PNG pixels."""
    arr = np.asarray(Image.open(reference_png).convert("RGB"))
    assert arr.shape == (224, 224, 3), f"{reference_png}: shape {arr.shape}"
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((t - m) / s).unsqueeze(0)


def check_preprocess_equal(model, entries, inputs):
    """open_clip's real preprocess on the original file (after exif_transpose) must give the same tensor
    as the committed reference PNG, for every manifest image."""
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    results = []
    for entry, x in zip(entries, inputs):
        with Image.open(FIXTURES / entry["file"]) as im:
            im = ImageOps.exif_transpose(im)
            y = preprocess(im).unsqueeze(0)
        diff = float((y - x).abs().max())
        log(f"  preprocess {entry['file']}: max |open_clip - png-derived| = {diff:.3g}")
        assert diff <= 1e-6, f"{entry['file']}: open_clip preprocess differs from {entry['reference']} by {diff}"
        results.append((entry["file"], diff))
    return results


def floats(t):
    return [float(v) for v in t.reshape(-1).tolist()]


@torch.no_grad()
def reference_outputs(name, model, tokenizer, entries, texts, classnames, templates):
    mean, std = model.visual.preprocess_cfg["mean"], model.visual.preprocess_cfg["std"]
    inputs = [image_input(FIXTURES / e["reference"], mean, std) for e in entries]
    images = torch.cat(inputs)
    img_emb = model.encode_image(images)

    ids = tokenizer(texts)
    txt_emb = model.encode_text(ids)

    templ_fns = [(lambda c, t=t: fill(t, c)) for t in templates]
    classifier = build_zero_shot_classifier(model, tokenizer, classnames, templ_fns, num_classes_per_batch=None).T
    # Independent recomputation of the protocol (mean of normalised template embeddings, renormalised).
    for ci, c in enumerate(classnames):
        e = model.encode_text(tokenizer([fill(t, c) for t in templates]), normalize=True).mean(0)
        assert torch.allclose(e / e.norm(), classifier[ci], atol=1e-6), c
    img_n = img_emb / img_emb.norm(dim=-1, keepdim=True)
    probs = (100.0 * img_n @ classifier.T).softmax(dim=-1)
    top2 = probs.topk(2, dim=-1)
    top1 = top2.indices[:, 0]
    margin = top2.values[:, 0] - top2.values[:, 1]

    out = {
        "model": name,
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
        "logit_scale": float(model.logit_scale.item()),
        "embed_dim": int(img_emb.shape[-1]),
        "images": [{"file": e["file"], "reference": e["reference"], "embedding": floats(img_emb[i])}
                   for i, e in enumerate(entries)],
        "texts": [{"text": t, "ids": [int(v) for v in ids[i].tolist()], "embedding": floats(txt_emb[i])}
                  for i, t in enumerate(texts)],
        "zero_shot": {
            "classnames": classnames,
            "templates": templates,
            "classifier": [floats(r) for r in classifier],
            "probs": [floats(r) for r in probs],
            "top1": [int(v) for v in top1.tolist()],
            "margin": [float(v) for v in margin.tolist()],
        },
    }
    return out, inputs


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def report_margins(name, out):
    zs = out["zero_shot"]
    log(f"  {name} zero-shot top-1 / margin per image:")
    for img, t, m in zip(out["images"], zs["top1"], zs["margin"]):
        flag = "   <-- margin < 1e-3" if m < 1e-3 else ""
        log(f"    {img['file']:<40} top1={t} ({zs['classnames'][t]:<22}) margin={m:.4f}{flag}")
    counts = np.bincount(zs["top1"], minlength=len(zs["classnames"])).tolist()
    log(f"    top-1 class histogram: {counts}; min margin {min(zs['margin']):.4g}")


def build_one(name, model_cfg, seed, out_models, out_json, extra, entries, texts, classnames, templates,
              check_pp, half=False):
    log(f"== {name}")
    model = create_random_model(name, model_cfg, seed)
    perturb_(model, seed, width_fn(model_cfg))
    if half:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    write_model_files(model, model_cfg, out_models / name, extra, half)
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    out, inputs = reference_outputs(name, model, tokenizer, entries, texts, classnames, templates)
    check_reload(model, model_cfg, out_models / name, inputs[0], tokenizer(texts[:3]))
    if check_pp:
        check_preprocess_equal(model, entries, inputs)
    write_json(out_json / f"{name}.json", out)
    report_margins(name, out)
    return out


def dir_size(paths):
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size ViT-B-16 into tests/reference/full/ (not committed)")
    ap.add_argument("--quick-gelu", action="store_true", help="--full only: build the QuickGELU variant")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                    help="derm1m data dir with zero_shot_classnames.json, prompt_templates.json, "
                         "open_clip_config_ViT-B-16.json (default %(default)s)")
    ap.add_argument("--wait-manifest", type=float, default=40 * 60,
                    help="seconds to wait for tests/fixtures/preprocess/manifest.json")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    log(f"open_clip {open_clip.__version__}, torch {torch.__version__}, {datetime.date.today()}")
    classnames, templates = load_zero_shot_spec(args.data_dir)
    zs_texts = [fill(templates[i % len(templates)], c) for i, c in enumerate(classnames)]
    entries = read_manifest(args.wait_manifest)

    if args.full:
        model_cfg = json.loads((args.data_dir / "open_clip_config_ViT-B-16.json").read_text())
        model_cfg = model_cfg.get("model_cfg", model_cfg)
        name = "vit-b-16-random"
        extra = ("bin",)
        if args.quick_gelu:
            model_cfg["quick_gelu"] = True
            name, extra = "vit-b-16-random-quickgelu", ("checkpoint",)
        texts = zs_texts[:3] + FULL_TEXTS
        build_one(name, model_cfg, SEEDS["full"], FULL_OUT / "models", FULL_OUT, extra, entries[:4], texts,
                  classnames, templates, check_pp=True)
        log(f"full-size files: {dir_size([FULL_OUT]) / 1e6:.1f} MB under {FULL_OUT}")
        return

    texts = zs_texts + EXTRA_TEXTS
    gelu_cfg = copy.deepcopy(TINY_CFG)
    quick_cfg = copy.deepcopy(TINY_CFG)
    quick_cfg["quick_gelu"] = True  # appended last, as push_pretrained_to_hf_hub does for 'openai' weights
    models_dir, ref_dir = FIXTURES / "models", FIXTURES / "reference"
    build_one("tiny-gelu", gelu_cfg, SEEDS["tiny-gelu"], models_dir, ref_dir, ("bin",), entries, texts, classnames,
              templates, check_pp=True)
    build_one("tiny-quickgelu", quick_cfg, SEEDS["tiny-quickgelu"], models_dir, ref_dir, ("checkpoint",), entries, texts,
              classnames, templates, check_pp=False, half=True)

    written = [models_dir / "tiny-gelu", models_dir / "tiny-quickgelu",
               ref_dir / "tiny-gelu.json", ref_dir / "tiny-quickgelu.json"]
    for p in written:
        for f in sorted([p] if p.is_file() else p.iterdir()):
            log(f"  {f.relative_to(REPO)}: {f.stat().st_size / 1e6:.3f} MB")
    log(f"total committed size: {dir_size(written) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
