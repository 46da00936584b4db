#!/usr/bin/env python3
"""Times open_clip (PyTorch, float32, CPU) encode_image of a full-size ViT-B-16 with random weights:
the baseline that the Rust dermlip bench is compared with.

    python benches/bench_open_clip.py [--runs 10] [--threads N] [--batches 1 8] [--json]
"""
import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import time

import torch

import open_clip

VIT_B_16 = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_batch(model, batch, warmup, runs):
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
    for _ in range(warmup):
        model.encode_image(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.encode_image(x)
        times.append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per batch size (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch.set_num_threads (default: cores)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = ap.parse_args()
    if args.runs < 1 or args.threads < 1 or args.warmup < 0 or any(b < 1 for b in args.batches):
        ap.error("--runs, --threads and --batches must be >= 1, --warmup >= 0")

    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**VIT_B_16).eval()

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = []
    for b in args.batches:
        times = time_batch(model, b, args.warmup, args.runs)
        med = statistics.median(times)
        results.append({"batch": b, "median_ms": med * 1e3, "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
                        "per_image_ms": med * 1e3 / b, "images_per_s": b / med, "runs": args.runs})

    info = {
        "what": "open_clip CLIP ViT-B-16 encode_image, float32, CPU, random weights",
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "open_clip": open_clip.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "warmup": args.warmup,
        "loadavg_1min_before": load_before,
    }
    if args.json:
        print(json.dumps({"machine": info, "results": results}, indent=1))
        return
    print(f"open_clip {info['open_clip']} / torch {info['torch']} ViT-B-16 `encode_image` (fp32, CPU), "
          f"{info['cpu']}, {info['cores']} cores, {info['threads']} threads, {info['date']}")
    if load_before is not None:
        print(f"1-min load average before timing: {load_before:.2f} (other work on the machine skews the numbers)")
    print(f"warm-up {args.warmup}, median of {args.runs} runs\n")
    print("| batch | median ms | min ms | max ms | ms / image | images / s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['batch']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | "
              f"{r['per_image_ms']:.1f} | {r['images_per_s']:.2f} |")


if __name__ == "__main__":
    main()
