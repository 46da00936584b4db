#!/usr/bin/env python3
"""Exports the image tower of an open_clip checkpoint directory to ONNX (float32, opset 17), for the
onnxruntime-web comparison in benches/browser_bench.mjs. Run by hand (needs torch + open_clip):

    python benches/export_onnx.py --model tests/reference/full/models/<name> --out benches/out/visual.onnx

Also writes <out>.reference.json: the PyTorch embedding of a fixed input, to check both runtimes.
"""
import argparse
import json
import pathlib

import torch
from safetensors.torch import load_file

import open_clip


class ImageTower(torch.nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixels):
        return self.clip.encode_image(pixels)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=pathlib.Path, help="open_clip checkpoint directory")
    ap.add_argument("--out", required=True, type=pathlib.Path)
    args = ap.parse_args()

    # nn.MultiheadAttention's fused inference path has no ONNX export.
    torch.backends.mha.set_fastpath_enabled(False)
    cfg = json.loads((args.model / "open_clip_config.json").read_text())["model_cfg"]
    model = open_clip.model.CLIP(**cfg).eval()
    model.load_state_dict(load_file(args.model / "open_clip_model.safetensors"))
    tower = ImageTower(model).eval()
    size = cfg["vision_cfg"]["image_size"]
    x = torch.linspace(-2, 2, 3 * size * size).reshape(1, 3, size, size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(tower, (x,), str(args.out), input_names=["pixels"], output_names=["embedding"],
                          dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        ref = tower(x)[0].tolist()
    pathlib.Path(str(args.out) + ".reference.json").write_text(json.dumps({"input": "linspace(-2, 2)", "embedding": ref}))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
