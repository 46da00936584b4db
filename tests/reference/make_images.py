"""Writes the committed preprocessing test images to tests/fixtures/images/.

Run by hand (deterministic; needs only Pillow, numpy and scikit-image, no network):
    /root/.cache/dermlip-venv/bin/python tests/reference/make_images.py
Then run make_preprocess_fixtures.py to refresh the reference outputs.

Sources: scikit-image sample photographs that ship inside its wheel (astronaut, chelsea, coffee,
rocket, retina, camera, horse, logo; licences in tests/fixtures/images/README.md), re-encoded at
varied sizes, aspects and formats, plus synthetic images for the mode edge cases.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "images"


def fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop `im` to the aspect of `size`, then resize to `size` (LANCZOS)."""
    w, h = im.size
    tw, th = size
    if w * th > h * tw:
        nw = h * tw // th
        im = im.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
    else:
        nh = w * th // tw
        im = im.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))
    return im.resize(size, Image.LANCZOS)


def png_raw(path: Path, arr: np.ndarray, color_type: int, bit_depth: int) -> None:
    """Minimal PNG writer for the 16-bit colour types Pillow cannot save (RGB16, RGBA16, LA16)."""
    h, w = arr.shape[:2]
    be = arr.astype(">u2") if bit_depth == 16 else arr.astype(np.uint8)
    rows = be.reshape(h, -1).view(np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF
        )

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    )


def with_exif_orientation(upright: Image.Image, orientation: int) -> tuple[Image.Image, Image.Exif]:
    """Stored pixels such that applying EXIF `orientation` gives back `upright`."""
    t = Image.Transpose
    inverse = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 5: t.TRANSPOSE, 6: t.ROTATE_90, 7: t.TRANSVERSE, 8: t.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    return upright.transpose(inverse[orientation]), exif


def radial_alpha(w: int, h: int) -> np.ndarray:
    """Alpha with fully transparent, fully opaque and every intermediate value."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    a = np.clip((1.1 - r) * 400, 0, 255)
    a[:, : w // 6] = 0
    a[:, -w // 8 :] = 255
    return a.astype(np.uint8)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.name != "README.md":
            old.unlink()

    astronaut = Image.fromarray(data.astronaut())
    chelsea = Image.fromarray(data.chelsea())
    coffee = Image.fromarray(data.coffee())
    rocket = Image.fromarray(data.rocket())
    retina = Image.fromarray(data.retina())
    camera = Image.fromarray(data.camera())
    horse = Image.fromarray(~data.horse())  # bool silhouette, white background
    logo = Image.fromarray(data.logo())

    def save(name: str, im: Image.Image, **kw) -> None:
        im.save(OUT / name, **kw)

    # JPEG
    save("astronaut_512_q90_420.jpg", astronaut, quality=90, subsampling=2)
    save("chelsea_451x300_q95_444.jpg", chelsea, quality=95, subsampling=0)
    save("coffee_600x400_progressive.jpg", coffee, quality=88, progressive=True)
    save("camera_gray_384.jpg", camera.resize((384, 384), Image.LANCZOS), quality=90)
    save("rocket_cmyk_320x213.jpg", fit(rocket, (320, 213)).convert("CMYK"), quality=92)
    small_chelsea = fit(chelsea, (300, 200))
    for o in (3, 6, 8):
        stored, exif = with_exif_orientation(small_chelsea, o)
        save(f"chelsea_exif{o}_300x200.jpg", stored, quality=90, exif=exif)
    # EXIF orientation in PNG (eXIf chunk) and WebP (EXIF chunk), read through the image crate.
    stored, exif = with_exif_orientation(fit(coffee, (240, 160)), 5)
    save("coffee_exif5_240x160.png", stored, exif=exif)
    stored, exif = with_exif_orientation(fit(rocket, (240, 160)), 2)
    save("rocket_exif2_240x160.webp", stored, quality=85, exif=exif)
    save("retina_1600x1200_q80.jpg", fit(retina, (1600, 1200)), quality=80)
    save("astronaut_tall_100x800.jpg", fit(astronaut, (100, 800)), quality=90)
    save("coffee_odd_225x301.jpg", fit(coffee, (225, 301)), quality=90)
    # Downscales: the tall one makes Pillow 13 run its vertical pass first (height shrinks by more
    # than twice as many pixels as the width), the wide one keeps the horizontal-first order.
    save("retina_tall_420x1000_q85.jpg", fit(retina, (420, 1000)), quality=85)
    save("rocket_wide_1000x400_q85.jpg", fit(rocket, (1000, 400)), quality=85)

    # PNG
    save("astronaut_exact_224.png", fit(astronaut, (224, 224)))
    save("small_17x23.png", fit(chelsea, (17, 23)))
    save("rocket_wide_800x100.png", fit(rocket, (800, 100)))
    c = np.array(fit(coffee, (300, 200)))
    save("coffee_rgba_300x200.png", Image.fromarray(np.dstack([c, radial_alpha(300, 200)]), "RGBA"))
    save("logo_rgba_opaque_250.png", logo.resize((250, 250), Image.LANCZOS))  # RGBA, alpha 255 everywhere
    g = np.array(fit(chelsea, (225, 150)).convert("L"))
    save("chelsea_la_225x150.png", Image.fromarray(np.dstack([g, radial_alpha(225, 150)]), "LA"))
    save("camera_l_333x251.png", fit(camera, (333, 251)))
    cam16 = np.array(fit(camera, (256, 256))).astype(np.uint32)
    # Two 16-bit greyscale cases: full range (PIL clips every value > 255 to 255 in convert) and
    # values that stay below 256 (the only range where the 16-bit resize is visible in the output).
    Image.frombytes("I;16", (256, 256), (cam16 * 257).astype("<u2").tobytes()).save(OUT / "camera_gray16_full_256.png")
    Image.frombytes("I;16", (180, 180), (np.array(fit(camera, (180, 180))).astype("<u2")).tobytes()).save(
        OUT / "camera_gray16_low_180.png"
    )
    a16 = np.array(fit(astronaut, (160, 160))).astype(np.uint16) * 257 + np.random.default_rng(1).integers(
        0, 257, (160, 160, 3), dtype=np.uint16
    )
    png_raw(OUT / "astronaut_rgb16_160.png", a16, 2, 16)  # Pillow keeps only the high byte
    c16 = np.dstack([c.astype(np.uint16) * 257, radial_alpha(300, 200).astype(np.uint16) * 257 + 3])
    png_raw(OUT / "coffee_rgba16_240x150.png", c16[:150, :240], 6, 16)
    pal = fit(coffee, (300, 200)).quantize(colors=200, method=Image.Quantize.MEDIANCUT)
    save("coffee_palette_300x200.png", pal)
    trns = fit(chelsea, (300, 200)).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    save("chelsea_palette_trns_300x200.png", trns, transparency=5)
    save("horse_1bit_400x328.png", horse.convert("1"))

    # WebP
    save("rocket_lossy_q80_480x320.webp", fit(rocket, (480, 320)), quality=80)
    ca = np.array(fit(coffee, (240, 160)))
    save("coffee_lossless_alpha_240x160.webp", Image.fromarray(np.dstack([ca, radial_alpha(240, 160)]), "RGBA"), lossless=True)

    # GIF (PIL keeps the first frame as mode P, or L when the palette is the identity grey ramp)
    save("chelsea_palette_240x160.gif", fit(chelsea, (240, 160)).quantize(colors=128))
    frames = [fit(im, (160, 120)).quantize(colors=64) for im in (coffee, chelsea, rocket)]
    frames[0].save(OUT / "animated_3frames_160x120.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("chelsea_transparent_200x150.gif", fit(chelsea, (200, 150)).quantize(colors=32), transparency=3)
    save("camera_greyramp_200x150.gif", fit(camera, (200, 150)))  # mode L: identity palette

    # BMP
    save("coffee_24bit_90x60.bmp", fit(coffee, (90, 60)))
    save("chelsea_8bit_palette_120x80.bmp", fit(chelsea, (120, 80)).quantize(colors=100))

    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
