#!/usr/bin/env python3
"""Writes the hostile-image corpus: crafted and damaged image files that must each give a clean
one-line error (or a picture) from `dermlip`, never a panic, a signal, a timeout or a huge
allocation. `tests/hostile/run_cli.sh` runs the CLI over it; `tests/suite/hostile_images.rs` covers the
same cases (and a fuzz pass) in-process.

Usage: python3 tests/hostile/make_corpus.py OUT_DIR

Standard library only (struct, zlib): the files are built from the committed fixture images in
tests/fixtures/images and from scratch. The corpus is not committed; CI writes it to a temporary
folder. Every file is small (the largest is a fixture image with a few changes).
"""

import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "images")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


# --------------------------------------------------------------------------------------------
# JPEG helpers


def segments(b):
    """(offset, marker, length) of each header segment up to and including the first SOS."""
    out, i = [], 2
    while i + 3 < len(b) and b[i] == 0xFF:
        m = b[i + 1]
        n = struct.unpack(">H", b[i + 2:i + 4])[0]
        out.append((i, m, n))
        if m == 0xDA:
            break
        i += 2 + n
    return out


def find(b, marker):
    for off, m, n in segments(b):
        if m == marker:
            return off, n
    raise KeyError(hex(marker))


def sof_of(b):
    for off, m, n in segments(b):
        if m in (0xC0, 0xC1, 0xC2):
            return off, n
    raise KeyError("SOF")


def jpeg_size(b, w, h):
    off, _ = sof_of(b)
    b = bytearray(b)
    b[off + 5:off + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def jpeg_marker(b, marker):
    """The frame header's marker changed (SOF1 extended, SOF3 lossless, SOF9 arithmetic...)."""
    off, _ = sof_of(b)
    b = bytearray(b)
    b[off + 1] = marker
    return bytes(b)


def jpeg_insert_after_soi(b, extra):
    return b[:2] + extra + b[2:]


def app1_exif(tiff):
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def tiff_ifd(entries, next_ifd=0, little=True, first=8):
    """A TIFF header and one IFD at `first`: entries are (tag, type, count, value/offset)."""
    e = "<" if little else ">"
    head = (b"II" if little else b"MM") + struct.pack(e + "HI", 42, first)
    head += b"\0" * (first - len(head))
    ifd = struct.pack(e + "H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3 and count == 1:
            ifd += struct.pack(e + "HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack(e + "HHII", tag, typ, count, value)
    ifd += struct.pack(e + "I", next_ifd)
    return head + ifd


def scan_bomb(base, count, kind, frame=None):
    if frame:
        base = jpeg_size(base, *frame)
    assert base[-2:] == b"\xff\xd9"
    scans = (b"\xff\xda\x00\x08\x01\x01\x00" + bytes(kind)) * count
    return base[:-2] + scans + b"\xff\xd9"


# --------------------------------------------------------------------------------------------
# PNG / GIF / BMP / WebP builders


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, color_type=2, depth=8, rows=None, extra=b"", ihdr_size=None, plte=None, idat=True):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color_type, 3)
    if rows is None:
        row_bytes = (w * channels * depth + 7) // 8
        rows = b"".join(b"\0" + bytes((x * 7 + y) & 0xFF for x in range(row_bytes)) for y in range(h))
    iw, ih = ihdr_size or (w, h)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", iw, ih, depth, color_type, 0, 0, 0))
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    out += extra
    if idat:
        out += png_chunk(b"IDAT", zlib.compress(rows))
    return out + png_chunk(b"IEND", b"")


def gif(sw, sh, fw=None, fh=None, fx=0, fy=0, min_code=2, data=None, gct_bits=1, frames=1, loops=False):
    fw = sw if fw is None else fw
    fh = sh if fh is None else fh
    n = 1 << (gct_bits + 1)
    out = b"GIF89a" + struct.pack("<HHBBB", sw, sh, 0x80 | gct_bits, 0, 0)
    out += bytes((i * 40) & 0xFF for i in range(3 * n))
    if loops:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    lzw = data if data is not None else bytes([0x4C, 0x01, 0x00]) if min_code == 2 else b"\x00"
    for _ in range(frames):
        out += b"\x21\xf9\x04\x01\x0a\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", fx, fy, fw, fh, 0) + bytes([min_code])
        out += bytes([len(lzw)]) + lzw + b"\x00"
    return out + b"\x3b"


def bmp(w, h, bits=24, colors=0, header=40, compression=0, pixels=None, palette=None, offset=None):
    if palette is None and bits <= 8:
        palette = b"".join(bytes([i, i, i, 0]) for i in range(min(colors or (1 << bits), 256)))
    palette = palette or b""
    if pixels is None:
        stride = ((w * bits + 31) // 32) * 4
        pixels = b"\x40" * (stride * abs(h))
    info = struct.pack("<IiiHHIIiiII", header, w, h, 1, bits, compression, len(pixels), 2835, 2835, colors, 0)
    if header > 40:
        info += b"\0" * (header - 40)
    off = offset if offset is not None else 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(palette) + len(pixels), 0, 0, off) + info + palette + pixels


def riff(chunks, size=None):
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def webp_chunk(kind, data):
    pad = b"\0" if len(data) % 2 else b""
    return kind + struct.pack("<I", len(data)) + data + pad


def vp8x(w, h, flags=0):
    return webp_chunk(b"VP8X", struct.pack("<I", flags) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little"))


def vp8l_header(w, h):
    bits = (w - 1) | ((h - 1) << 14)
    return webp_chunk(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\0" * 8)


# --------------------------------------------------------------------------------------------


def corpus():
    files = {}

    def add(name, data):
        assert name not in files, name
        files[name] = data

    baseline = fixture("coffee_odd_225x301.jpg")
    progressive = fixture("coffee_600x400_progressive.jpg")
    cmyk = fixture("rocket_cmyk_320x213.jpg")
    exif_jpeg = fixture("chelsea_exif6_300x200.jpg")

    # Truncations of committed fixtures at many offsets.
    for name in [
        "coffee_odd_225x301.jpg", "coffee_600x400_progressive.jpg", "rocket_cmyk_320x213.jpg",
        "coffee_rgba_300x200.png", "chelsea_palette_240x160.gif", "rocket_lossy_q80_480x320.webp",
        "coffee_lossless_alpha_240x160.webp", "chelsea_8bit_palette_120x80.bmp", "coffee_24bit_90x60.bmp",
        "astronaut_rgb16_160.png",
    ]:
        b = fixture(name)
        stem, ext = os.path.splitext(name)
        for cut in sorted({1, 3, 12, 30, 64, 200, 700, len(b) // 3, len(b) // 2, len(b) - 2, len(b) - 1}):
            if 0 < cut < len(b):
                add(f"trunc_{stem}_{cut}{ext}", b[:cut])

    # JPEG: hidden and second frames.
    fake_sof = bytes([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0xE0, 0x00, 0xE0, 0x03,
                      0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01])
    trick = b"\xff\x00\x00\x08" + b"\xff\xe1" + struct.pack(">H", 4 + len(fake_sof)) + b"XX" + fake_sof
    for w, h in [(225, 301), (65535, 65535), (4000, 20), (20000, 15000)]:
        add(f"jpeg_ff00_hidden_frame_{w}x{h}.jpg", jpeg_insert_after_soi(jpeg_size(baseline, w, h), trick))
    off, n = sof_of(baseline)
    sof = baseline[off:off + 2 + n]
    for w, h in [(65535, 65535), (30000, 30000)]:
        huge = bytearray(sof)
        huge[5:9] = struct.pack(">HH", h, w)
        add(f"jpeg_second_sof_{w}x{h}.jpg", baseline[:off + 2 + n] + bytes(huge) + baseline[off + 2 + n:])
        add(f"jpeg_huge_first_sof_{w}x{h}.jpg", baseline[:off] + bytes(huge) + baseline[off:])
    add("jpeg_sof_65535x65535.jpg", jpeg_size(baseline, 65535, 65535))
    add("jpeg_sof_10000x10000.jpg", jpeg_size(baseline, 10000, 10000))
    add("jpeg_sof_zero_height_dnl.jpg", jpeg_size(baseline, 225, 0))
    add("jpeg_sof_65500x1.jpg", jpeg_size(baseline, 65500, 1))
    add("jpeg_sof_1x65500.jpg", jpeg_size(baseline, 1, 65500))
    add("jpeg_ff00_run_in_header.jpg", jpeg_insert_after_soi(baseline, b"\xff\x00" * 5000))
    add("jpeg_fill_ff_run.jpg", jpeg_insert_after_soi(baseline, b"\xff" * 20000))
    add("jpeg_only_soi_eoi.jpg", b"\xff\xd8\xff\xd9")
    add("jpeg_soi_only.jpg", b"\xff\xd8")
    add("jpeg_segment_len_0.jpg", b"\xff\xd8\xff\xe0\x00\x00" + baseline[2:])
    add("jpeg_segment_len_past_end.jpg", b"\xff\xd8\xff\xe0\xff\xf0JFIF")

    # Progressive scan bombs.
    add("jpeg_scan_bomb_1100_dc_4000.jpg", scan_bomb(progressive, 1100, [0, 0, 0x10], (4000, 4000)))
    add("jpeg_scan_bomb_900_ac_4000.jpg", scan_bomb(progressive, 900, [1, 63, 0x10], (4000, 4000)))
    add("jpeg_scan_bomb_990_dc_10000.jpg", scan_bomb(progressive, 990, [0, 0, 0x10], (10000, 10000)))
    add("jpeg_scan_bomb_12_ac_2000.jpg", scan_bomb(progressive, 12, [1, 63, 0x10], (2000, 2000)))
    add("jpeg_scan_bomb_5000_small.jpg", scan_bomb(progressive, 5000, [0, 0, 0x10]))
    add("jpeg_scan_bad_params.jpg", scan_bomb(progressive, 3, [5, 2, 0xEE]))

    # CMYK / YCCK, 12-bit, arithmetic, lossless, hierarchical.
    add("jpeg_cmyk.jpg", cmyk)
    try:
        aoff, _ = find(cmyk, 0xEE)
        ycck = bytearray(cmyk)
        ycck[aoff + 4 + 11] = 2
        add("jpeg_ycck.jpg", bytes(ycck))
    except KeyError:
        adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 2)
        add("jpeg_ycck.jpg", jpeg_insert_after_soi(cmyk, b"\xff\xee" + struct.pack(">H", len(adobe) + 2) + adobe))
    off, _ = sof_of(baseline)
    twelve = bytearray(jpeg_marker(baseline, 0xC1))
    twelve[off + 4] = 12
    add("jpeg_12bit_sof1.jpg", bytes(twelve))
    for marker, name in [(0xC3, "lossless_sof3"), (0xC9, "arithmetic_sof9"), (0xCA, "arithmetic_progressive_sof10"),
                         (0xCB, "arithmetic_lossless_sof11"), (0xC5, "hierarchical_sof5"), (0xCF, "sof15")]:
        add(f"jpeg_{name}.jpg", jpeg_marker(baseline, marker))
    two = bytearray(baseline)
    two[off + 9] = 2
    add("jpeg_two_components.jpg", bytes(two))
    frac = bytearray(baseline)
    frac[off + 11] = 0x32  # luma 3x2 sampling: fractional chroma ratios
    add("jpeg_fractional_sampling.jpg", bytes(frac))
    zero_samp = bytearray(baseline)
    zero_samp[off + 11] = 0x00
    add("jpeg_zero_sampling.jpg", bytes(zero_samp))
    doff, dn = find(baseline, 0xC4)
    bad_dht = bytearray(baseline)
    bad_dht[doff + 5:doff + 21] = b"\xff" * 16
    add("jpeg_bad_huffman_counts.jpg", bytes(bad_dht))
    soff, _ = find(baseline, 0xDA)
    junk_scan = baseline[:soff + 20] + bytes((i * 37) & 0x7F for i in range(5000)) + b"\xff\xd9"
    add("jpeg_garbage_entropy.jpg", junk_scan)
    add("jpeg_restart_interval_1.jpg", jpeg_insert_after_soi(baseline, b"\xff\xdd\x00\x04\x00\x01"))

    # EXIF: loops, bogus offsets, damaged APP1.
    loop_ifd = tiff_ifd([(0x0112, 3, 1, 6), (0x8769, 4, 1, 8)], next_ifd=8)
    add("exif_ifd_loop.jpg", jpeg_insert_after_soi(baseline, app1_exif(loop_ifd)))
    add("exif_next_ifd_self.jpg", jpeg_insert_after_soi(baseline, app1_exif(tiff_ifd([(0x0112, 3, 1, 3)], next_ifd=8))))
    add("exif_first_ifd_past_end.jpg", jpeg_insert_after_soi(baseline, app1_exif(b"II*\x00\xff\xff\xff\x7f")))
    add("exif_huge_count.jpg", jpeg_insert_after_soi(baseline, app1_exif(tiff_ifd([(0x0112, 3, 0x7FFFFFFF, 60)]))))
    add("exif_orientation_9.jpg", jpeg_insert_after_soi(baseline, app1_exif(tiff_ifd([(0x0112, 3, 1, 9)]))))
    add("exif_orientation_big_endian_8.jpg",
        jpeg_insert_after_soi(baseline, app1_exif(tiff_ifd([(0x0112, 3, 1, 8)], little=False))))
    add("exif_many_entries.jpg", jpeg_insert_after_soi(baseline, app1_exif(b"II*\x00\x08\x00\x00\x00\xff\xff")))
    add("exif_empty_payload.jpg", jpeg_insert_after_soi(baseline, app1_exif(b"")))
    add("exif_bad_byte_order.jpg", jpeg_insert_after_soi(baseline, app1_exif(b"XX*\x00\x08\x00\x00\x00")))
    aoff, an = find(exif_jpeg, 0xE1)
    damaged = bytearray(exif_jpeg)
    damaged[aoff + 2:aoff + 4] = b"\xff\xf0"
    add("exif_app1_length_past_end.jpg", bytes(damaged))
    damaged = bytearray(exif_jpeg)
    damaged[aoff + 2:aoff + 4] = b"\x00\x01"
    add("exif_app1_length_1.jpg", bytes(damaged))
    add("exif_app1_cut.jpg", exif_jpeg[:aoff + 30])

    # PNG.
    add("png_ok_32x32.png", png(32, 32))
    add("png_zero_width.png", png(32, 32, ihdr_size=(0, 32)))
    add("png_zero_height.png", png(32, 32, ihdr_size=(32, 0)))
    add("png_huge_claim_2147483647.png", png(16, 16, ihdr_size=(0x7FFFFFFF, 0x7FFFFFFF)))
    add("png_huge_claim_65535x65535.png", png(16, 16, ihdr_size=(65535, 65535)))
    add("png_65500x1.png", png(16, 16, ihdr_size=(65500, 1)))
    add("png_width_over_2pow31.png", png(16, 16, ihdr_size=(0xFFFFFFFF, 16)))
    rows = b"".join(b"\0" + bytes(range(32)) for _ in range(32))
    add("png_palette_index_overflow.png", png(32, 32, color_type=3, rows=rows, plte=b"\x10\x20\x30" * 4))
    add("png_palette_300_entries.png", png(32, 32, color_type=3, rows=rows, plte=b"\x10\x20\x30" * 300))
    add("png_palette_missing.png", png(32, 32, color_type=3, rows=rows))
    add("png_trns_too_long.png", png(32, 32, color_type=3, rows=rows, plte=b"\x10\x20\x30" * 32,
                                     extra=png_chunk(b"tRNS", b"\x80" * 300)))
    add("png_bad_depth.png", png(16, 16, depth=7))
    add("png_bad_color_type.png", png(16, 16, color_type=5))
    add("png_no_idat.png", png(16, 16, idat=False))
    add("png_short_idat.png", png(64, 64, rows=b"\0\1\2"))
    add("png_exif_orientation_6.png", png(32, 16, extra=png_chunk(b"eXIf", tiff_ifd([(0x0112, 3, 1, 6)]))))
    add("png_exif_loop.png", png(32, 16, extra=png_chunk(b"eXIf", loop_ifd)))
    add("png_exif_garbage.png", png(32, 16, extra=png_chunk(b"eXIf", b"\xff" * 40)))
    add("png_bad_crc.png", png(16, 16)[:-5] + b"\x00\x00\x00\x00\x00")
    add("png_chunk_len_huge.png", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 0x7FFFFFFF) + b"IHDR" + b"\0" * 13)
    add("png_16bit_grey_trns.png", png(16, 16, color_type=0, depth=16, extra=png_chunk(b"tRNS", b"\x00\x00")))
    add("png_acTL_frames_huge.png", png(16, 16, extra=png_chunk(b"acTL", struct.pack(">II", 0x7FFFFFFF, 0))))

    # GIF.
    add("gif_ok_16x16.gif", gif(16, 16))
    add("gif_zero_size.gif", gif(0, 0))
    add("gif_screen_65535x65535.gif", gif(65535, 65535, fw=16, fh=16))
    add("gif_frame_65535x65535.gif", gif(16, 16, fw=65535, fh=65535))
    add("gif_frame_outside_screen.gif", gif(32, 32, fw=16, fh=16, fx=60000, fy=60000))
    add("gif_65500x1.gif", gif(65500, 1))
    add("gif_lzw_code_size_12.gif", gif(16, 16, min_code=12))
    add("gif_lzw_code_size_0.gif", gif(16, 16, min_code=0))
    add("gif_lzw_garbage.gif", gif(64, 64, data=bytes(range(255))))
    add("gif_many_frames.gif", gif(16, 16, frames=2000, loops=True))
    add("gif_no_trailer.gif", gif(16, 16)[:-1])
    add("gif_bad_extension.gif", b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x21\xf9\xff" + b"\x00" * 8)

    # BMP.
    add("bmp_ok_16x16.bmp", bmp(16, 16))
    add("bmp_width_2pow31.bmp", bmp(16, 16)[:18] + struct.pack("<i", 0x7FFFFFFF) + bmp(16, 16)[22:])
    add("bmp_negative_min_height.bmp", bmp(16, 16)[:22] + struct.pack("<i", -0x80000000) + bmp(16, 16)[26:])
    add("bmp_65500x1.bmp", bmp(65500, 1, pixels=b"\0" * 64))
    add("bmp_zero_size.bmp", bmp(0, 0, pixels=b""))
    add("bmp_colors_4g.bmp", bmp(16, 16, bits=8, colors=0xFFFFFFFF))
    add("bmp_colors_0x40000001.bmp", bmp(16, 16, bits=8, colors=0x40000001))
    add("bmp_colors_300.bmp", bmp(16, 16, bits=8, colors=300))
    add("bmp_header_size_4g.bmp", bmp(16, 16, bits=8)[:14] + struct.pack("<I", 0xFFFFFFF0) + bmp(16, 16, bits=8)[18:])
    add("bmp_core_header_12.bmp", b"BM" + struct.pack("<IHHI", 26 + 6 + 256, 0, 0, 26 + 6)
        + struct.pack("<IHHHH", 12, 16, 16, 1, 8) + b"\x00\x00\x00\xff\xff\xff" + b"\x01" * 256)
    add("bmp_offset_past_end.bmp", bmp(16, 16, offset=0x7FFFFFFF))
    add("bmp_bits_0.bmp", bmp(16, 16, bits=0, pixels=b"\0" * 64))
    add("bmp_bits_7.bmp", bmp(16, 16, bits=7, pixels=b"\0" * 64))
    rle_delta = b"\x00\x02\xff\xff" * 20 + b"\x04\x01" + b"\x00\x00" + b"\x00\x01"
    add("bmp_rle8_delta_out_of_bounds.bmp", bmp(16, 16, bits=8, compression=1, pixels=rle_delta))
    rle_abs = b"\x00\xff" + b"\x01" * 255 + b"\x00\x01"
    add("bmp_rle8_absolute_overrun.bmp", bmp(16, 16, bits=8, compression=1, pixels=rle_abs))
    add("bmp_rle4_delta.bmp", bmp(16, 16, bits=4, compression=2, pixels=b"\x00\x02\x20\x20" * 8 + b"\x00\x01"))
    add("bmp_rle8_no_end.bmp", bmp(16, 16, bits=8, compression=1, pixels=b"\x10\x01" * 4))
    add("bmp_bitfields_zero_masks.bmp", bmp(16, 16, bits=32, compression=3, header=56))
    add("bmp_1bit.bmp", bmp(16, 16, bits=1))

    # WebP.
    add("webp_vp8x_16384x16384.webp", riff([vp8x(16384, 16384), vp8l_header(16, 16)]))
    add("webp_vp8l_16384x16384.webp", riff([vp8l_header(16384, 16384)]))
    add("webp_vp8l_16384x1.webp", riff([vp8l_header(16384, 1)]))
    add("webp_vp8x_zero_chunks.webp", riff([vp8x(16, 16)]))
    add("webp_riff_size_huge.webp", riff([vp8l_header(16, 16)], size=0xFFFFFFF0))
    add("webp_riff_size_small.webp", riff([vp8l_header(16, 16)], size=4))
    add("webp_chunk_size_huge.webp", b"RIFF\x20\x00\x00\x00WEBPVP8L\xf0\xff\xff\x7f" + b"\0" * 20)
    add("webp_animated_no_frames.webp", riff([vp8x(64, 64, flags=0x02), webp_chunk(b"ANIM", b"\0" * 6)]))
    add("webp_anmf_huge_frame.webp", riff([vp8x(64, 64, flags=0x02), webp_chunk(b"ANIM", b"\0" * 6),
                                          webp_chunk(b"ANMF", b"\0" * 6 + b"\xff\xff\xff\xff\xff\xff" + b"\0" * 4)]))
    lossy = fixture("rocket_lossy_q80_480x320.webp")
    add("webp_exif_orientation_6.webp", riff([vp8x(480, 320, flags=0x08), webp_chunk(lossy[12:16], lossy[20:20 + struct.unpack("<I", lossy[16:20])[0]]),
                                             webp_chunk(b"EXIF", tiff_ifd([(0x0112, 3, 1, 6)]))]))
    add("webp_exif_loop.webp", riff([vp8x(480, 320, flags=0x08), webp_chunk(lossy[12:16], lossy[20:20 + struct.unpack("<I", lossy[16:20])[0]]),
                                    webp_chunk(b"EXIF", loop_ifd)]))
    vp8 = bytearray(lossy)
    if vp8[12:16] == b"VP8 ":
        vp8[26:30] = struct.pack("<HH", 0x3FFF, 0x3FFF)  # VP8 frame size 16383x16383
    add("webp_vp8_frame_16383.webp", bytes(vp8))

    # Other formats and non-images.
    add("tiff_header.tif", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 8)
    add("tiff_big_endian.tif", b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 8)
    add("ico_header.ico", b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00" + struct.pack("<II", 0xFFFFFFF, 22))
    add("psd_header.psd", b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 300000, 300000, 8, 3))
    add("qoi_header.qoi", b"qoif" + struct.pack(">IIBB", 0xFFFFFFFF, 0xFFFFFFFF, 4, 0))
    add("plain_text.jpg", b"this is not an image\n")
    add("html.png", b"<!doctype html><title>x</title>")
    add("empty.jpg", b"")
    add("one_byte.png", b"\x89")
    add("zeros.bmp", b"\0" * 4096)
    add("jpeg_magic_then_png.jpg", b"\xff\xd8" + png(16, 16))
    return files


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    files = corpus()
    for name, data in sorted(files.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files ({sum(map(len, files.values()))} bytes) to {out}")


if __name__ == "__main__":
    main()
