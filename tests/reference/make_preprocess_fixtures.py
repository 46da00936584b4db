"""Writes the preprocessing references: tests/fixtures/preprocess/<stem>.png + manifest.json.

Run by hand after make_images.py:
    /root/.cache/dermlip-venv/bin/python tests/reference/make_preprocess_fixtures.py

Each reference is open_clip's eval preprocess for stock ViT-B-16 (Resize(224, bicubic, shortest side)
-> CenterCrop(224) -> convert('RGB') -> ToTensor), stopped before Normalize and stored as 8-bit RGB
(tensor * 255, checked to round-trip exactly). The image is passed through PIL.ImageOps.exif_transpose
first: dermlip applies EXIF orientation, open_clip does not. Only an EXIF orientation counts (JPEG
APP1, PNG eXIf, WebP EXIF): Pillow's getexif also takes XMP `tiff:Orientation` when there is no EXIF
one, browsers and dermlip do not, so an image without an EXIF orientation is not transposed.

With `--add` the script leaves every existing reference and variants.json alone and only writes the
references of images that manifest.json does not list yet (appending them, sorted, to the manifest).

The same pipeline is also written out with plain PIL calls (`pil_pipeline`, documenting what
torchvision does on a PIL image); the script asserts both agree bit for bit. Without open_clip
installed it falls back to the PIL pipeline and says so.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = FIXTURES / "images"
OUT = FIXTURES / "preprocess"
SIZE = 224

NOTES = {
    "jpg": "JPEG (libjpeg-turbo in PIL)",
    "png": "PNG",
    "webp": "WebP (libwebp in PIL)",
    "gif": "GIF, first frame",
    "bmp": "BMP",
}


def pil_pipeline(im: Image.Image, size: int = SIZE) -> np.ndarray:
    """torchvision Resize(size, BICUBIC) + CenterCrop(size) + convert('RGB'), on a PIL image."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)  # torchvision _compute_resized_output_size
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    # PIL itself forces NEAREST for modes 1 and P and resizes RGBA/LA premultiplied.
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    top = int(round((nh - size) / 2.0))  # Python round: half to even
    left = int(round((nw - size) / 2.0))
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im.convert("RGB"))


def open_clip_pipeline(**kw):
    """open_clip's eval preprocess without its final Normalize (stock ViT-B-16 when no `kw`, else
    `open_clip.image_transform(SIZE, is_train=False, **kw)`), or None if open_clip is not installed."""
    try:
        import open_clip
        import torchvision.transforms as T
    except ImportError:
        return None
    if kw:
        preprocess = open_clip.image_transform(SIZE, is_train=False, **kw)
    else:
        _, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16", pretrained=None)
    assert isinstance(preprocess.transforms[-1], T.Normalize), preprocess
    print("open_clip", open_clip.__version__, kw or "ViT-B-16", "eval preprocess:", preprocess)
    return T.Compose(preprocess.transforms[:-1])


def to_uint8(to_tensor, im: Image.Image, name: str) -> np.ndarray:
    """Runs the transform and checks that tensor * 255 round-trips to 8 bits exactly."""
    t = to_tensor(im).numpy()
    assert t.shape == (3, SIZE, SIZE), t.shape
    rounded = np.round(t * 255.0)
    assert np.abs(t * 255.0 - rounded).max() < 1e-4, name
    out = rounded.astype(np.uint8).transpose(1, 2, 0)
    assert np.array_equal(out.astype(np.float32) / 255.0, t.transpose(1, 2, 0)), name
    return out


# Non-default configs (file stem, open_clip image_transform kwargs): written to variants.json.
VARIANTS = [
    ("coffee_600x400_progressive", {"interpolation": "bilinear"}),
    ("retina_tall_420x1000_q85", {"interpolation": "bilinear"}),
    ("coffee_rgba_300x200", {"interpolation": "bilinear"}),
    ("rocket_wide_1000x400_q85", {"resize_mode": "squash"}),
    ("astronaut_tall_100x800", {"resize_mode": "squash"}),
    ("chelsea_palette_240x160", {"resize_mode": "squash", "interpolation": "bilinear"}),
]


def exif_orientation(im: Image.Image) -> int:
    """The orientation tag of the image's EXIF block only (not XMP, which `getexif` also reads)."""
    raw = im.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(0x0112, 1)


def upright(src: Image.Image) -> Image.Image:
    """`ImageOps.exif_transpose` when the EXIF block has an orientation; the image as is otherwise."""
    return ImageOps.exif_transpose(src) if exif_orientation(src) != 1 else src


def main() -> None:
    import sys

    add = sys.argv[1:] == ["--add"]
    OUT.mkdir(parents=True, exist_ok=True)
    old_entries = []
    if add:
        old = json.loads((OUT / "manifest.json").read_text())
        old_entries = old["images"]
        listed = {e["file"] for e in old_entries}
    else:
        for old in OUT.iterdir():
            if old.is_file():  # sub-folders (damaged-app/) belong to make_damaged_jpegs.py
                old.unlink()
    to_tensor = open_clip_pipeline()
    if to_tensor is None:
        print("WARNING: open_clip not importable; references come from the plain-PIL pipeline only")

    entries = []
    for path in sorted(IMAGES.iterdir()):
        if path.name == "README.md" or not path.is_file():
            continue
        if add and f"images/{path.name}" in listed:
            continue
        with Image.open(path) as src:
            mode, size = src.mode, src.size
            orient = exif_orientation(src)
            im = upright(src)
            ref = pil_pipeline(im)
            if to_tensor is not None:
                from_clip = to_uint8(to_tensor, im, path.name)
                assert np.array_equal(from_clip, ref), f"{path.name}: PIL replica differs from open_clip"
                ref = from_clip
        stem = path.stem
        Image.fromarray(ref, "RGB").save(OUT / f"{stem}.png", optimize=True)
        note = f"{NOTES[path.suffix[1:]]}, PIL mode {mode}, {size[0]}x{size[1]}"
        if orient != 1:
            note += f", EXIF orientation {orient}"
        entries.append({"file": f"images/{path.name}", "reference": f"preprocess/{stem}.png", "note": note})
        print(f"{path.name:40s} {note}")

    if add:
        entries = sorted(old_entries + entries, key=lambda e: e["file"])
        (OUT / "manifest.json").write_text(json.dumps({**old, "images": entries}, indent=1) + "\n")
        print(f"added {len(entries) - len(old_entries)} references")
        return

    manifest = {
        "size": SIZE,
        "source": "open_clip ViT-B-16 eval preprocess before Normalize, after PIL.ImageOps.exif_transpose"
        if to_tensor is not None
        else "plain-PIL replica of open_clip ViT-B-16 eval preprocess (open_clip was not installed)",
        "images": entries,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    variants = []
    if to_tensor is not None:
        for stem, kw in VARIANTS:
            (path,) = [p for p in IMAGES.iterdir() if p.stem == stem]
            tag = "_".join(f"{v}" for v in kw.values())
            with Image.open(path) as src:
                ref = to_uint8(open_clip_pipeline(**kw), upright(src), path.name)
            Image.fromarray(ref, "RGB").save(OUT / f"{stem}__{tag}.png", optimize=True)
            cfg = {"interpolation": "bicubic", "resize_mode": "shortest", **kw}
            variants.append({"file": f"images/{path.name}", "reference": f"preprocess/{stem}__{tag}.png", **cfg})
        (OUT / "variants.json").write_text(json.dumps({"size": SIZE, "images": variants}, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(entries)} references, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
