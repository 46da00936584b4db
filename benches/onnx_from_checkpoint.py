#!/usr/bin/env python3
"""The image tower of an open_clip ViT checkpoint as an ONNX graph, without PyTorch (numpy + onnx).

For benchmarking onnxruntime-web against dermlip on the same weights where PyTorch is not
installed (benches/export_onnx.py is the torch.onnx export). The graph is the one torch exports
for open_clip's VisionTransformer, op for op: Conv patch embedding, class token, positions,
LayerNormalization, per block MatMul+Add QKV, Reshape/Transpose heads, MatMul, Softmax, MatMul,
out projection, exact (Erf) GELU MLP, ln_post on the class token, projection. ORT's graph
optimizer ('all') fuses what it recognises, as it does for the torch export.

    python benches/onnx_from_checkpoint.py CHECKPOINT_DIR OUT.onnx

Also writes OUT.onnx.reference.json: the embedding of benches/export_onnx.py's input (a ramp from
-2 to 2) computed here with numpy in float64, which benches/browser_bench.mjs compares ORT's
output against (first 8 values).
"""
import math
import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise SystemExit(f"{name}: {meta['dtype']}, expected F32")
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(meta["shape"])
    return out


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    ckpt, out = Path(sys.argv[1]), sys.argv[2]
    w = read_safetensors(ckpt / "open_clip_model.safetensors")
    cfg = json.loads((ckpt / "open_clip_config.json").read_text())["model_cfg"]["vision_cfg"]
    width, layers, patch = cfg["width"], cfg["layers"], cfg["patch_size"]
    heads = cfg.get("heads", width // 64)
    hd = width // heads
    grid = cfg["image_size"] // patch
    seq = grid * grid + 1

    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.array(array, order="C", copy=True), name))
        return name

    def node(op, inputs, out_name, **attrs):
        nodes.append(helper.make_node(op, inputs, [out_name], **attrs))
        return out_name

    def shape(name, dims):
        return const(name, np.array(dims, dtype=np.int64))

    def linear(x, prefix, weight=None, bias=None, tag=""):
        wt = const(f"{prefix}.wT", (w[weight or f"{prefix}.weight"]).T)
        y = node("MatMul", [x, wt], f"{prefix}.mm{tag}")
        return node("Add", [y, const(f"{prefix}.b", w[bias or f"{prefix}.bias"])], f"{prefix}.out{tag}")

    def layer_norm(x, prefix):
        return node("LayerNormalization", [x, const(f"{prefix}.g", w[f"{prefix}.weight"]), const(f"{prefix}.beta", w[f"{prefix}.bias"])],
                    f"{prefix}.out", axis=-1, epsilon=1e-5)

    v = "visual"
    x = node("Conv", ["pixels", const("conv1.w", w[f"{v}.conv1.weight"])], "patches", strides=[patch, patch], kernel_shape=[patch, patch])
    x = node("Reshape", [x, shape("s_flat", [1, width, grid * grid])], "patches_flat")
    x = node("Transpose", [x], "tokens", perm=[0, 2, 1])
    x = node("Concat", [const("cls", w[f"{v}.class_embedding"].reshape(1, 1, width)), x], "with_cls", axis=1)
    x = node("Add", [x, const("pos", w[f"{v}.positional_embedding"][None])], "embedded")
    x = layer_norm(x, f"{v}.ln_pre")
    s_heads = shape("s_heads", [1, seq, heads, hd])
    s_merge = shape("s_merge", [1, seq, width])
    scale = const("scale", np.array(1.0 / np.sqrt(hd), dtype=np.float32))
    for i in range(layers):
        p = f"{v}.transformer.resblocks.{i}"
        h = layer_norm(x, f"{p}.ln_1")
        qkv = linear(h, f"{p}.attn.in_proj", weight=f"{p}.attn.in_proj_weight", bias=f"{p}.attn.in_proj_bias")
        nodes.append(helper.make_node("Split", [qkv, shape(f"{p}.split", [width, width, width])], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1))
        q = node("Transpose", [node("Reshape", [f"{p}.q", s_heads], f"{p}.q4")], f"{p}.qh", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [f"{p}.k", s_heads], f"{p}.k4")], f"{p}.kh", perm=[0, 2, 3, 1])
        vv = node("Transpose", [node("Reshape", [f"{p}.v", s_heads], f"{p}.v4")], f"{p}.vh", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), scale], f"{p}.scores")
        probs = node("Softmax", [scores], f"{p}.probs", axis=-1)
        o = node("MatMul", [probs, vv], f"{p}.o")
        o = node("Reshape", [node("Transpose", [o], f"{p}.ot", perm=[0, 2, 1, 3]), s_merge], f"{p}.om")
        x = node("Add", [x, linear(o, f"{p}.attn.out_proj")], f"{p}.x1")
        h = linear(layer_norm(x, f"{p}.ln_2"), f"{p}.mlp.c_fc")
        # exact GELU: 0.5 x (1 + erf(x / sqrt 2))
        e = node("Erf", [node("Div", [h, const(f"{p}.sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))], f"{p}.hd")], f"{p}.erf")
        g = node("Mul", [node("Mul", [h, node("Add", [e, const(f"{p}.one", np.array(1.0, dtype=np.float32))], f"{p}.e1")], f"{p}.he"),
                         const(f"{p}.half", np.array(0.5, dtype=np.float32))], f"{p}.gelu")
        x = node("Add", [x, linear(g, f"{p}.mlp.c_proj")], f"{p}.x2")
    cls = node("Gather", [x, const("zero", np.array(0, dtype=np.int64))], "cls_token", axis=1)
    cls = layer_norm(cls, f"{v}.ln_post")
    node("MatMul", [cls, const("proj", w[f"{v}.proj"])], "embedding")

    graph = helper.make_graph(
        nodes, "open_clip_visual",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, cfg["image_size"], cfg["image_size"]])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, w[f"{v}.proj"].shape[1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dermlip onnx_from_checkpoint")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)
    emb = reference_embedding(w, cfg, heads)
    Path(out + ".reference.json").write_text(json.dumps({"embedding": [float(v) for v in emb[:8]], "source": "numpy float64 forward"}))
    print(f"wrote {out}: {layers} blocks, width {width}, {heads} heads (and its numpy reference)")


def reference_embedding(w, cfg, heads):
    """open_clip's VisionTransformer forward in numpy float64, on the ramp input."""
    f = {k: v.astype(np.float64) for k, v in w.items() if k.startswith("visual.")}
    size, patch, width = cfg["image_size"], cfg["patch_size"], cfg["width"]
    n = 3 * size * size
    x = (-2 + 4 * np.arange(n) / (n - 1)).reshape(3, size, size)
    g = size // patch
    patches = x.reshape(3, g, patch, g, patch).transpose(1, 3, 0, 2, 4).reshape(g * g, -1)
    tokens = patches @ f["visual.conv1.weight"].reshape(width, -1).T
    t = np.concatenate([f["visual.class_embedding"][None], tokens]) + f["visual.positional_embedding"]

    def ln(v, p):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * f[p + ".weight"] + f[p + ".bias"]

    erf = np.vectorize(math.erf)
    t = ln(t, "visual.ln_pre")
    hd = width // heads
    for i in range(cfg["layers"]):
        p = f"visual.transformer.resblocks.{i}"
        h = ln(t, p + ".ln_1")
        qkv = h @ f[p + ".attn.in_proj_weight"].T + f[p + ".attn.in_proj_bias"]
        q, k, v = (qkv[:, j * width:(j + 1) * width].reshape(-1, heads, hd).transpose(1, 0, 2) for j in range(3))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        o = (s / s.sum(-1, keepdims=True)) @ v
        o = o.transpose(1, 0, 2).reshape(-1, width)
        t = t + o @ f[p + ".attn.out_proj.weight"].T + f[p + ".attn.out_proj.bias"]
        h = ln(t, p + ".ln_2") @ f[p + ".mlp.c_fc.weight"].T + f[p + ".mlp.c_fc.bias"]
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        t = t + h @ f[p + ".mlp.c_proj.weight"].T + f[p + ".mlp.c_proj.bias"]
    return ln(t[0], "visual.ln_post") @ f["visual.proj"]


if __name__ == "__main__":
    main()
