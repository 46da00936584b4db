"""Writes the committed preprocessing test images to tests/fixtures/images/.

Run by hand (deterministic; needs only Pillow, numpy and scikit-image, no network):
    /root/.cache/dermlip-venv/bin/python tests/reference/make_images.py
Then run make_preprocess_fixtures.py to refresh the reference outputs. With `--extra` it writes only
the images of `extra_images` (BMP 16-bit/RLE, EXIF orientations in PNG/WebP, XMP orientation) and
leaves the others as they are.

Sources: scikit-image sample photographs that ship inside its wheel (astronaut, chelsea, coffee,
rocket, retina, camera, horse, logo; licences in tests/fixtures/images/README.md), re-encoded at
varied sizes, aspects and formats, plus synthetic images for the mode edge cases.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

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
    inverse = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_90, 7: t.TRANSVERSE, 8: t.ROTATE_270}
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
    from skimage import data

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        # Sub-folders (damaged-app/) belong to make_damaged_jpegs.py.
        if old.is_file() and old.name != "README.md":
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


# ---------------------------------------------------------------------------------------------
# Extra images (BMP 16-bit and RLE, EXIF orientation 2..8 in PNG and WebP, XMP-only orientation).
# Written by `make_images.py --extra` without touching the files above; the
# sources are committed JPEG fixtures, so this part needs no scikit-image.


def bmp_file(w: int, h: int, bits: int, compression: int, pixels: bytes, palette: bytes = b"", masks: bytes = b"") -> bytes:
    """A BITMAPINFOHEADER BMP (bottom-up): palette (BGRX) and BITFIELDS masks go after the header."""
    offset = 14 + 40 + len(masks) + len(palette)
    colors = len(palette) // 4
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bits, compression, len(pixels), 2835, 2835, colors, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + masks + palette + pixels


def bmp16(arr: np.ndarray, layout: str) -> bytes:
    """16-bit BMP rows (bottom-up, 4-byte padded): '555' (BI_RGB) or '565' (BI_BITFIELDS)."""
    h, w, _ = arr.shape
    a = arr.astype(np.uint16)
    if layout == "565":
        v = ((a[..., 0] >> 3) << 11) | ((a[..., 1] >> 2) << 5) | (a[..., 2] >> 3)
    else:
        v = ((a[..., 0] >> 3) << 10) | ((a[..., 1] >> 3) << 5) | (a[..., 2] >> 3)
    stride = (w * 2 + 3) & ~3
    rows = b"".join(v[y].astype("<u2").tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    if layout == "565":
        return bmp_file(w, h, 16, 3, rows, masks=struct.pack("<III", 0xF800, 0x07E0, 0x001F))
    return bmp_file(w, h, 16, 0, rows)


def rle_segment(p: list[int], rle4: bool) -> bytes:
    """Encoded runs and absolute stretches for the pixel indices `p` (one row segment)."""
    out = bytearray()
    i = 0
    while i < len(p):
        j = i
        while j < len(p) and p[j] == p[i] and j - i < 255:
            j += 1
        if j - i >= 2:
            out += bytes([j - i, p[i] * 17 if rle4 else p[i]])
            i = j
            continue
        k = i
        while k < len(p) and k - i < 254 and not (k + 2 < len(p) and p[k] == p[k + 1] == p[k + 2]):
            k += 1
        n = k - i
        if n >= 3:
            if rle4:
                lit = p[i:k] + [0] * (n % 2)
                data = bytes((lit[m] << 4) | lit[m + 1] for m in range(0, len(lit), 2))
            else:
                data = bytes(p[i:k])
            out += bytes([0, n]) + data + b"\0" * (len(data) % 2)
            i = k
        else:
            out += bytes([1, p[i] * 17 if rle4 else p[i]])
            i += 1
    return bytes(out)


def rle_bmp(idx: np.ndarray, palette: np.ndarray, rle4: bool) -> bytes:
    """RLE8/RLE4 BMP with the escapes that skip pixels: end of line before the row's end, delta
    within a row, a delta that skips rows. PIL fills the skipped pixels with index 0. (An end of
    bitmap before the last row makes Pillow 13 refuse the file: "not enough image data".)"""
    h, w = idx.shape
    out = bytearray()
    r = 0
    start = 0
    while r < h:
        row = [int(v) for v in idx[h - 1 - r]]  # file rows are bottom-up
        if r == 10:  # delta (5, 3): skips the rest of this row, two rows and 35 pixels of row 13
            out += rle_segment(row[start:30], rle4) + bytes([0, 2, 5, 3])
            r, start = 13, 35
            continue
        if 40 <= r < 52:  # a hole in the middle of the row
            out += rle_segment(row[start : w // 3], rle4) + bytes([0, 2, w // 4, 0])
            out += rle_segment(row[w // 3 + w // 4 :], rle4)
        elif 60 <= r < 64:  # rows that end early
            out += rle_segment(row[start : w // 2], rle4)
        else:
            out += rle_segment(row[start:], rle4)
        out += b"\0\0"
        r, start = r + 1, 0
    out += b"\0\1"
    pal = np.zeros((len(palette), 4), np.uint8)
    pal[:, :3] = palette[:, ::-1]  # BGRX
    return bmp_file(w, h, 4 if rle4 else 8, 2 if rle4 else 1, bytes(out), palette=pal.tobytes())


def indexed(im: Image.Image, colors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices 1..colors-1 of a quantised image; palette entry 0 is magenta, used by no pixel."""
    q = im.quantize(colors=colors - 1, method=Image.Quantize.MEDIANCUT)
    pal = np.array(q.getpalette()[: 3 * (colors - 1)], np.uint8).reshape(-1, 3)
    return np.array(q) + 1, np.vstack([[[230, 30, 200]], pal]).astype(np.uint8)


def extra_images() -> None:
    # Sources: committed fixtures written by main() (so that this needs no scikit-image).
    def src(name: str) -> Image.Image:
        with Image.open(OUT / name) as im:
            return im.convert("RGB")

    chelsea = src("chelsea_451x300_q95_444.jpg")
    coffee = src("coffee_600x400_progressive.jpg")
    rocket = src("rocket_wide_1000x400_q85.jpg")
    astronaut = src("astronaut_512_q90_420.jpg")

    # BMP: 16 bits per pixel (PIL expands the 5/6-bit channels itself) and RLE with skipped pixels.
    (OUT / "coffee_16bit_565_120x90.bmp").write_bytes(bmp16(np.array(fit(coffee, (120, 90))), "565"))
    (OUT / "astronaut_16bit_555_110x70.bmp").write_bytes(bmp16(np.array(fit(astronaut, (110, 70))), "555"))
    i8, p8 = indexed(fit(chelsea, (120, 80)), 64)
    (OUT / "chelsea_rle8_120x80.bmp").write_bytes(rle_bmp(i8, p8, rle4=False))
    i4, p4 = indexed(fit(rocket, (96, 72)), 16)
    (OUT / "rocket_rle4_96x72.bmp").write_bytes(rle_bmp(i4, p4, rle4=True))

    # EXIF orientation in PNG (eXIf) and WebP (EXIF chunk): every orientation not covered above.
    upright = fit(coffee, (96, 64))
    for o in (2, 3, 4, 6, 7, 8):
        stored, exif = with_exif_orientation(upright, o)
        stored.save(OUT / f"coffee_exif{o}_96x64.png", exif=exif)
    upright = fit(rocket, (96, 64))
    for o in (3, 4, 5, 6, 7, 8):
        stored, exif = with_exif_orientation(upright, o)
        stored.save(OUT / f"rocket_exif{o}_96x64.webp", quality=85, exif=exif)

    # XMP tiff:Orientation only (no EXIF): browsers ignore it, so does dermlip (PIL would rotate).
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    fit(chelsea, (96, 64)).save(OUT / "chelsea_xmp6_96x64.png", pnginfo=info)
    fit(chelsea, (96, 64)).save(OUT / "chelsea_xmp6_lossy_96x64.webp", quality=85, xmp=xmp.encode())


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--extra"]:
        extra_images()
    else:
        main()
        extra_images()
