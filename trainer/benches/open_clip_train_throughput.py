#!/usr/bin/env python3
"""open_clip (PyTorch) counterpart of `trainer --bench`: forward + backward + AdamW on random
inputs at a fixed batch, printed as one JSON line (same fields as the Rust side).

    python trainer/benches/open_clip_train_throughput.py --model ViT-B-16 --batch 8 --device cpu
"""
import argparse
import json
import resource
import time

import torch
import open_clip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-16", help="open_clip model name or local-dir:PATH")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--accum-freq", type=int, default=1,
                    help="open_clip --accum-freq: micro-batches per step (features cached, then recomputed with gradient)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "amp", "amp_bf16"],
                    help="open_clip --precision: amp = fp16 autocast + GradScaler (open_clip 2.x), amp_bf16 = bf16 autocast")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    name = a.model
    if name.startswith("local-dir:"):
        # Random init from a model folder's config (open_clip 2.x has no local-dir: schema, and
        # no weights are wanted): register its model_cfg under a name.
        import pathlib, tempfile
        folder = pathlib.Path(name[len("local-dir:"):])
        cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        tmp = pathlib.Path(tempfile.mkdtemp())
        name = "bench-" + folder.name
        (tmp / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(tmp)
    model = open_clip.create_model(name, device=a.device)
    model.train()
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    ctx = model.context_length
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n)]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    opt = torch.optim.AdamW([{"params": rest, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.1}],
                            lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()
    images = torch.randn(a.batch, 3, size, size, device=a.device)
    ids = torch.randint(1, 49000, (a.batch, ctx), device=a.device)
    import contextlib
    dtype = {"amp": torch.float16, "amp_bf16": torch.bfloat16}.get(a.precision)
    autocast = (lambda: torch.autocast(device_type=a.device.split(":")[0], dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(a.device.split(":")[0]) if a.precision == "amp" else None
    timed = 0.0
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        opt.zero_grad()
        k = a.accum_freq
        if k <= 1:
            with autocast():
                img, txt, scale = model(images, ids)
                loss = loss_fn(img, txt, scale)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        else:
            # open_clip train.py's accumulation: cache every micro-batch's features without
            # gradient, then recompute one micro-batch at a time against the cached others.
            chunks = list(zip(images.chunk(k), ids.chunk(k)))
            with torch.no_grad(), autocast():
                cached = [model(im, tx)[:2] for im, tx in chunks]
            for j, (im, tx) in enumerate(chunks):
                with autocast():
                    img, txt, scale = model(im, tx)
                    imgs = torch.cat([c[0] for c in cached[:j]] + [img] + [c[0] for c in cached[j + 1:]])
                    txts = torch.cat([c[1] for c in cached[:j]] + [txt] + [c[1] for c in cached[j + 1:]])
                    loss = loss_fn(imgs, txts, scale)
                (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= a.warmup:
            timed += time.perf_counter() - t
    step = timed / a.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "framework": f"open_clip {open_clip.__version__} / torch {torch.__version__}",
        "device": a.device, "precision": a.precision, "batch": a.batch, "accum_freq": a.accum_freq, "steps": a.steps, "step_ms": step * 1e3,
        "samples_per_s": a.batch / step, "peak_rss_mib": peak, "mib_per_sample": (peak - base) / a.batch,
    }))


if __name__ == "__main__":
    main()
