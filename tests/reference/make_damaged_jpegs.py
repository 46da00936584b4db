"""Writes JPEGs with damaged APPn/COM segments and their PIL references.

Run by hand once:
    /root/.cache/dermlip-venv/bin/python tests/reference/make_damaged_jpegs.py

Images: tests/fixtures/images/damaged-app/{gray,color}_<case>.jpg, built from two small JPEGs that
PIL encodes from committed fixtures (camera_gray_384.jpg -> 96x96 greyscale; astronaut_512_q90_420.jpg
-> 96x96 4:2:0 colour) with their segments rewritten byte by byte (wrong lengths, truncated TIFF
headers, bogus IFD offsets, IFD loops, odd orientation entries, APP0/APP2/APP13/APP14 and COM damage).

References: tests/fixtures/preprocess/damaged-app/<ref>.png + manifest.json, made by the pipeline of
make_preprocess_fixtures.py (PIL.ImageOps.exif_transpose, then open_clip's eval preprocess). Identical
references are stored once. Files PIL refuses (Image.open or load raises) are listed under "refused"
with PIL's message; dermlip must refuse them too. Where PIL's EXIF parsing fails, exif_transpose
leaves the image as it is (orientation ignored), and so does the reference.
"""

import hashlib
import io
import json
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import make_preprocess_fixtures as mpf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = FIXTURES / "images" / "damaged-app"
OUT = FIXTURES / "preprocess" / "damaged-app"


def base(name: str, mode: str) -> bytes:
    with Image.open(FIXTURES / "images" / name) as im:
        im = im.convert(mode)
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((96, 96))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=60, subsampling=2)
        return buf.getvalue()


def segments(data: bytes):
    """(marker, payload) up to and including SOS, then the entropy-coded rest."""
    assert data[:2] == b"\xff\xd8"
    pos, segs = 2, []
    while True:
        assert data[pos] == 0xFF
        m = data[pos + 1]
        n = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segs.append((m, data[pos + 4 : pos + 2 + n]))
        pos += 2 + n
        if m == 0xDA:
            return segs, data[pos:]


def seg(marker: int, payload: bytes, length=None) -> bytes:
    n = len(payload) + 2 if length is None else length
    return bytes([0xFF, marker]) + struct.pack(">H", n) + payload


def tiff(entries, ifd=8, nxt=0, endian=">", extra=b"") -> bytes:
    """A TIFF block: header, IFD0 at `ifd` with (tag, type, count, 4-byte value) entries."""
    head = (b"MM" if endian == ">" else b"II") + struct.pack(endian + "HI", 42, ifd)
    body = struct.pack(endian + "H", len(entries))
    for tag, typ, count, value in entries:
        v = value if isinstance(value, bytes) else struct.pack(endian + "HH", value, 0)
        body += struct.pack(endian + "HHI", tag, typ, count) + v
    body += struct.pack(endian + "I", nxt)
    return head + b"\0" * max(0, ifd - 8) + body + extra


ORIENT6 = [(0x0112, 3, 1, 6)]
EXIF6 = b"Exif\0\0" + tiff(ORIENT6)
PAD = seg(0xFE, b"padding " * 6)  # a comment a too-long length can run into harmlessly


def cases(colour: bool):
    """name -> the raw segments inserted after SOI, in place of the encoder's own APP0 JFIF (or
    {"head": ..., "after_sof": ..., "tail": ...}: also segments after SOF0 and before EOI)."""
    jfif = seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    c = {
        "exif_o6": [jfif, seg(0xE1, EXIF6)],
        "exif_o6_le": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6, endian="<"))],
        "exif_len0": [jfif, seg(0xE1, EXIF6, 0)],
        "exif_len1": [jfif, seg(0xE1, EXIF6, 1)],
        "exif_len2": [jfif, seg(0xE1, EXIF6, 2)],
        "exif_len3": [jfif, seg(0xE1, EXIF6, 3)],
        "exif_short8": [jfif, seg(0xE1, EXIF6, len(EXIF6) + 2 - 8)],
        "exif_short_keeps": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6 + [(0x011A, 5, 1, b"\0\0\0\0")]), len(EXIF6) + 2 + 4)],
        "exif_long20": [jfif, seg(0xE1, EXIF6, len(EXIF6) + 2 + 20), PAD],
        "exif_long_into_dqt": [jfif, seg(0xE1, EXIF6, len(EXIF6) + 2 + 6)],
        "exif_past_eof": [jfif, seg(0xE1, EXIF6, 0xFFFF)],
        "tiff_trunc4": [jfif, seg(0xE1, b"Exif\0\0MM\0*")],
        "tiff_trunc6": [jfif, seg(0xE1, b"Exif\0\0MM\0*\0\0")],
        "tiff_empty": [jfif, seg(0xE1, b"Exif\0\0")],
        "tiff_bad_magic": [jfif, seg(0xE1, b"Exif\0\0XX" + tiff(ORIENT6)[2:])],
        "ifd_offset_bogus": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6)[:4] + b"\x7f\xff\xff\xf0" + tiff(ORIENT6)[8:])],
        "ifd_offset_inside_header": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6)[:4] + b"\0\0\0\x02" + tiff(ORIENT6)[8:])],
        "ifd_loop": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6, nxt=8))],
        "ifd_count_huge": [jfif, seg(0xE1, b"Exif\0\0" + tiff(ORIENT6)[:8] + b"\xff\xff" + tiff(ORIENT6)[10:])],
        "orient_9": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 1, 9)]))],
        "orient_0": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 1, 0)]))],
        "orient_long_type": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 4, 1, b"\0\0\0\x06")]))],
        "orient_byte_type": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 1, 1, b"\x06\0\0\0")]))],
        "orient_sshort_type": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 8, 1, 6)]))],
        "orient_count2": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 2, 6)]))],
        "orient_offset_oob": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 3, b"\x00\xff\xff\x00")]))],
        "orient_rational": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 5, 1, b"\0\0\0\x1a")], extra=b"\0\0\0\x0c\0\0\0\x02"))],
        "orient_rational_frac": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 5, 1, b"\0\0\0\x1a")], extra=b"\0\0\0\x0d\0\0\0\x02"))],
        "orient_float": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 11, 1, struct.pack(">f", 6.0))]))],
        "orient_sbyte": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 6, 1, b"\x06\0\0\0")]))],
        "orient_count3_inside": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 3, b"\0\0\0\x1a")], extra=b"\0\x06\0\x01\0\x01"))],
        "orient_count0": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 0, 6)]))],
        "orient_after_bad_value": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x010F, 2, 64, b"\0\0\xff\x00"), (0x0112, 3, 1, 6)]))],
        "orient_after_bad_type": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 99, 1, 3), (0x0112, 3, 1, 6)]))],
        "orient_dup": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 3, 1, 3), (0x0112, 3, 1, 6)]))],
        "orient_bad_type": [jfif, seg(0xE1, b"Exif\0\0" + tiff([(0x0112, 99, 1, 6)]))],
        "exif_two_segments": [jfif, seg(0xE1, b"Exif\0\0MM\0*"), seg(0xE1, EXIF6)],
        # Pillow appends a later Exif segment's TIFF data to the first's: IFD0 here lies in the second.
        "exif_split_segments": [jfif, seg(0xE1, EXIF6[:14]), seg(0xE1, b"Exif\0\0" + EXIF6[14:])],
        # An Exif segment after the scan: libjpeg skips it, PIL's header parser never reads it.
        "exif_after_scan": {"head": [jfif], "tail": [seg(0xE1, EXIF6)]},
        # Damaged segments after the frame header: junk EOI / SOI / DNL before the scan.
        "sof_then_exif_junk_eoi": {"head": [jfif], "after_sof": [seg(0xE1, EXIF6 + b"\xff\xd9", len(EXIF6) + 2)]},
        "sof_then_exif_junk_dnl": {"head": [jfif], "after_sof": [seg(0xE1, EXIF6 + b"\xff\xdc\0\x04\0\x60", len(EXIF6) + 2)]},
        "sof_then_exif_len0": {"head": [jfif], "after_sof": [seg(0xE1, EXIF6, 0)]},
        "exif_after_xmp": [jfif, seg(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>"), seg(0xE1, EXIF6)],
        "app0_len0": [seg(0xE0, jfif[4:], 0)],
        "app0_len2": [seg(0xE0, jfif[4:], 2)],
        "app0_jfif_short": [seg(0xE0, b"JFIF\0")],
        "app0_jfif_7": [seg(0xE0, b"JFIF\0\x01\x01")],
        "app0_long": [seg(0xE0, jfif[4:], len(jfif) - 2 + 10), PAD],
        "app2_icc_short": [jfif, seg(0xE2, b"ICC_PROFILE\0\x01")],
        "app2_icc_count": [jfif, seg(0xE2, b"ICC_PROFILE\0\x01\x02abc")],
        "app2_len0": [jfif, seg(0xE2, b"ICC_PROFILE\0\x01\x01abc", 0)],
        "app13_trunc": [jfif, seg(0xED, b"Photoshop 3.0\x008BIM\x04\x04\0\0\0\0\xff\xff")],
        "app13_len1": [jfif, seg(0xED, b"Photoshop 3.0\x00", 1)],
        "app14_len0": [jfif, seg(0xEE, b"Adobe\0\x64\0\0\0\0\0", 0)],
        "app14_short5": [jfif, seg(0xEE, b"Adobe")],
        "app15_len0": [jfif, seg(0xEF, b"junk", 0)],
        "com_len0": [jfif, seg(0xFE, b"a comment", 0)],
        "com_len1": [jfif, seg(0xFE, b"a comment", 1)],
        "com_short": [jfif, seg(0xFE, b"a comment", 5)],
        "com_long": [jfif, seg(0xFE, b"a comment", 11 + 12), PAD],
        "com_junk_ff01": [jfif, seg(0xFE, b"ab\xff\x01cd", 4)],
        "com_junk_ff10": [jfif, seg(0xFE, b"ab\xff\x10\0\x04cd", 4)],
        "com_junk_ffc8": [jfif, seg(0xFE, b"ab\xff\xc8\0\x04cd", 4)],
        "com_junk_fff0": [jfif, seg(0xFE, b"ab\xff\xf0\0\x04cd", 4)],
        "exif_junk_dnl": [jfif, seg(0xE1, EXIF6 + b"\xff\xdc\0\x04\0\x60", len(EXIF6) + 2)],
        "exif_junk_soi": [jfif, seg(0xE1, EXIF6 + b"\xff\xd8", len(EXIF6) + 2)],
        "exif_junk_eoi": [jfif, seg(0xE1, EXIF6 + b"\xff\xd9", len(EXIF6) + 2)],
        "exif_junk_rst": [jfif, seg(0xE1, EXIF6 + b"\xff\xd3", len(EXIF6) + 2)],
        "com_junk_ffff": [jfif, seg(0xFE, b"ab\xff\xff\xff\xfe\0\x04cd", 4)],
    }
    if colour:
        adobe0 = b"Adobe\0\x64\0\0\0\0\0"
        c.update({
            "app14_rgb": [seg(0xEE, adobe0)],
            "app14_rgb_with_jfif": [jfif, seg(0xEE, adobe0)],
            "app14_rgb_11": [seg(0xEE, adobe0[:11])],
            "app14_rgb_len0": [seg(0xEE, adobe0, 0)],
            "app14_rgb_long": [seg(0xEE, adobe0, len(adobe0) + 2 + 10), PAD],
            "app14_rgb_transform1": [seg(0xEE, adobe0[:11] + b"\x01")],
            "app14_rgb_transform7": [seg(0xEE, adobe0[:11] + b"\x07")],
            "app14_len0_then_rgb": [seg(0xEE, b"", 0), seg(0xEE, adobe0)],
        })
    return c


def build(data: bytes, inserted) -> bytes:
    """Segments `inserted` after SOI (or {"head": after SOI, "after_sof": after the frame header,
    "tail": before EOI})."""
    d = inserted if isinstance(inserted, dict) else {"head": inserted}
    head, tail, after_sof = d["head"], d.get("tail", []), d.get("after_sof", [])
    segs, rest = segments(data)
    assert rest.endswith(b"\xff\xd9")
    body = b"".join(seg(m, p) + (b"".join(after_sof) if m == 0xC0 else b"") for m, p in segs if m != 0xE0)
    return b"\xff\xd8" + b"".join(head) + body + rest[:-2] + b"".join(tail) + b"\xff\xd9"


TO_TENSOR = None  # open_clip's eval transform, when open_clip is installed (set in main)


def reference(data: bytes):
    """(crop, note) or (None, PIL's refusal)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as src:
                src.load()
                mode, size = src.mode, src.size
                try:
                    orient = src.getexif().get(0x0112, 1)
                except Exception as e:  # noqa: BLE001
                    orient = f"EXIF unreadable ({type(e).__name__})"
                try:
                    im = ImageOps.exif_transpose(src)
                except Exception as e:  # noqa: BLE001
                    # Pillow's EXIF reading fails (an orientation entry with no value): dermlip
                    # ignores the orientation, as a caller catching this would.
                    im, orient = src.copy(), f"exif_transpose raised {type(e).__name__}, ignored"
                ref = mpf.pil_pipeline(im)
                if TO_TENSOR is not None:
                    assert np.array_equal(mpf.to_uint8(TO_TENSOR, im, "damaged"), ref), "PIL replica differs from open_clip"
                return ref, f"JPEG, PIL mode {mode}, {size[0]}x{size[1]}, orientation {orient!r}"
    except Exception as e:  # noqa: BLE001
        return None, re.sub(r" <_io.BytesIO object at 0x[0-9a-f]+>", "", f"{type(e).__name__}: {e}")


def main() -> None:
    for d in (IMAGES, OUT):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
    global TO_TENSOR
    TO_TENSOR = mpf.open_clip_pipeline()
    if TO_TENSOR is None:
        print("open_clip not importable: references from make_preprocess_fixtures.pil_pipeline only")
    entries, refused, refs = [], [], {}
    for tag, name, mode in [("gray", "camera_gray_384.jpg", "L"), ("color", "astronaut_512_q90_420.jpg", "RGB")]:
        data = base(name, mode)
        for case, inserted in cases(mode == "RGB").items():
            raw = build(data, inserted)
            fname = f"{tag}_{case}.jpg"
            (IMAGES / fname).write_bytes(raw)
            ref, note = reference(raw)
            if ref is None:
                refused.append({"file": f"images/damaged-app/{fname}", "pil": note})
                print(f"{fname:40s} REFUSED {note}")
                continue
            key = hashlib.sha256(ref.tobytes()).hexdigest()
            if key not in refs:
                refs[key] = f"preprocess/damaged-app/{tag}_{case}.png"
                Image.fromarray(ref, "RGB").save(FIXTURES / refs[key], optimize=True)
            entries.append({"file": f"images/damaged-app/{fname}", "reference": refs[key], "note": note})
            print(f"{fname:40s} {note}")
    manifest = {
        "size": mpf.SIZE,
        "source": "PIL 13 decode, PIL.ImageOps.exif_transpose, then the open_clip ViT-B-16 eval preprocess before "
        "Normalize (make_preprocess_fixtures.pil_pipeline" + (", checked against open_clip)" if TO_TENSOR else ")"),
        "images": entries,
        "refused": refused,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for d in (IMAGES, OUT) for p in d.iterdir())
    print(f"{len(entries)} decoded, {len(refused)} refused, {len(refs)} references, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
