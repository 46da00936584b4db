#!/usr/bin/env python3
"""By-hand check of the trainer's open_clip export (not run in CI: it needs torch + open_clip).

Loads a folder written by `trainer` (`open_clip_model.safetensors` + `open_clip_config.json`,
e.g. RUN/final) with open_clip's own loader (`local-dir:`), embeds a few images and captions with
open_clip, embeds the same with the `dermlip` CLI (`embed-image` / `embed-text`, which read the
same folder), and compares. Exits non-zero if any embedding differs by more than --tol.

    source scripts/env.sh && cargo build --bin dermlip
    cargo run -p dermlip-trainer --bin trainer -- --generate-synthetic /tmp/synth
    cargo run -p dermlip-trainer --bin trainer -- --device flex --train-csv /tmp/synth/Derm1M_v2_pretrain.csv \
        --train-images /tmp/synth/zips --model-config /tmp/synth/tiny_clip_config.json --batch-size 32 \
        --epochs 5 --output /tmp/run
    /root/.cache/dermlip-venv/bin/python tests/reference/check_trainer_export.py /tmp/run/final \
        --images /tmp/synth/images/val --dermlip $CARGO_TARGET_DIR/debug/dermlip

Tested with open_clip_torch 3.3.0 and torch 2.x on CPU.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import open_clip
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export_dir")
    ap.add_argument("--images", required=True, help="folder of images (the first --n are used)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--dermlip", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "dermlip"))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + os.path.abspath(args.export_dir))
    tokenizer = open_clip.get_tokenizer("local-dir:" + os.path.abspath(args.export_dir))
    model.eval()
    cfg = json.load(open(os.path.join(args.export_dir, "open_clip_config.json")))
    print("open_clip loaded", cfg["model_cfg"])

    images = sorted(os.path.join(args.images, f) for f in os.listdir(args.images))[: args.n]
    texts = ["a large red circle lesion on plain skin", "a small blue cross lesion on dotted skin",
             "melanoma", "a photo of a nevus"]
    with torch.no_grad():
        py_img = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in images])).numpy()
        py_txt = model.encode_text(tokenizer(texts)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        img_npy, txt_npy = os.path.join(tmp, "img.npy"), os.path.join(tmp, "txt.npy")
        subprocess.run([args.dermlip, "embed-image", "--model", args.export_dir, "--out", img_npy, *images], check=True)
        subprocess.run([args.dermlip, "embed-text", "--model", args.export_dir, "--out", txt_npy, *texts], check=True)
        rs_img, rs_txt = np.load(img_npy), np.load(txt_npy)

    ok = True
    for name, a, b in [("image", py_img, rs_img), ("text", py_txt, rs_txt)]:
        if a.shape != b.shape:
            print(f"{name}: shape {a.shape} (open_clip) vs {b.shape} (dermlip)")
            ok = False
            continue
        # dermlip may L2-normalise; compare directions and raw values where they match.
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        diff = float(np.abs(an - bn).max())
        print(f"{name}: {a.shape[0]} embeddings, max |normalised difference| = {diff:.2e}")
        ok &= diff <= args.tol
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
