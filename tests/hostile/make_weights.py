#!/usr/bin/env python3
"""Writes a corpus of small hostile weight files into OUT_DIR (stdlib only).

    python3 tests/hostile/make_weights.py OUT_DIR

Safetensors files with broken, lying or huge headers; PyTorch `torch.save` zips whose pickles
call os.system through every opcode path, bomb the memo, nest deeply or declare views and
storages far larger than the file; zips with lying sizes; empty and foreign files; and the
tiny-gelu fixture with one tensor too many or too few. `run_weights.sh` feeds each to the CLI.
"""
import json
import os
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "models", "tiny-gelu", "open_clip_model.safetensors")
PWNED = "/tmp/dermlip-hostile-pwned"


def st(header, data=b"", raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# ---- pickle (protocol 2) ------------------------------------------------------------------
def s_(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i_(v):
    return b"J" + struct.pack("<i", v)


def g_(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(vals):
    return b"(" + b"".join(i_(v) for v in vals) + b"t"


def tensor_pickle(name, numel, shape, stride, storage="FloatStorage", offset=0):
    return (
        b"\x80\x02}(" + s_(name) + g_("torch._utils", "_rebuild_tensor_v2")
        + b"((" + s_("storage") + g_("torch", storage) + s_("0") + s_("cpu") + i_(numel) + b"tQ"
        + i_(offset) + tup(shape) + tup(stride) + b"\x89" + g_("collections", "OrderedDict") + b")R" + b"tR"
        + b"u."
    )


def torch_zip(pickle, storages=(), compress=False):
    import io
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/version", "3\n")
        for key, data in storages:
            z.writestr("archive/data/" + key, data)
    return buf.getvalue()


def lie_sizes(zbytes, name, size):
    """Rewrites the declared (un)compressed sizes of entry `name` in both headers."""
    b = bytearray(zbytes)
    nb = name.encode()
    # (signature, offset of the name length, of the name, of the two sizes): local file header,
    # then central directory entry.
    for sig, name_len_at, name_at, sizes_at in ((b"PK\x03\x04", 26, 30, 18), (b"PK\x01\x02", 28, 46, 20)):
        i = 0
        while True:
            i = b.find(sig, i)
            if i < 0:
                break
            n = struct.unpack_from("<H", b, i + name_len_at)[0]
            if bytes(b[i + name_at:i + name_at + n]) == nb:
                struct.pack_into("<II", b, i + sizes_at, size, size)
            i += 4
    return bytes(b)


def code(op):
    cmd = "touch " + PWNED
    return {
        "GLOBAL": b"\x80\x02" + g_("os", "system") + b"(" + s_(cmd) + b"tR.",
        "STACK_GLOBAL": b"\x80\x02" + s_("os") + s_("system") + b"\x93(" + s_(cmd) + b"tR.",
        "INST": b"\x80\x02(" + s_(cmd) + b"ios\nsystem\n.",
        "OBJ": b"\x80\x02(" + g_("os", "system") + s_(cmd) + b"o.",
        "NEWOBJ": b"\x80\x02" + g_("os", "system") + b"(" + s_(cmd) + b"t\x81.",
        "BUILD": b"\x80\x02" + g_("os", "system") + b")R}(" + s_("x") + s_(cmd) + b"ub.",
        "REDUCE_IN_DICT": b"\x80\x02}(" + s_("w") + g_("os", "system") + b"(" + s_(cmd) + b"tRu.",
        "EVAL": b"\x80\x02" + g_("builtins", "eval") + b"(" + s_("__import__('os').system('" + cmd + "')") + b"tR.",
    }[op]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_weights.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    files = {}
    f32 = struct.pack("<f", 1.0)

    # --- safetensors ---
    files["st-empty.safetensors"] = b""
    files["st-7-bytes.safetensors"] = b"\x10\x00\x00\x00\x00\x00\x00"
    files["st-header-past-end.safetensors"] = struct.pack("<Q", 2**63) + b"{}"
    files["st-header-99mb-claimed.safetensors"] = struct.pack("<Q", 99 << 20) + b"{}"
    files["st-non-utf8-header.safetensors"] = st(None, raw_header=b'{"\xff\xfe":1}')
    files["st-not-json.safetensors"] = st(None, raw_header=b"{not json at all")
    files["st-deep-json.safetensors"] = st(None, raw_header=b"{" + b'"a":[' * 1 + b"[" * 200000 + b"]" * 200000 + b"]}")
    files["st-huge-shape.safetensors"] = st({"w": t("F32", [100000, 100000], 0, 40000000000)}, f32)
    files["st-overflow-shape.safetensors"] = st({"w": t("F32", [2**32, 2**32, 2**32], 0, 4)}, f32)
    files["st-huge-offsets.safetensors"] = st({"w": t("F32", [1], 2**62, 2**62 + 4)}, f32)
    files["st-reversed-offsets.safetensors"] = st({"w": t("F32", [1], 4, 0)}, f32)
    files["st-overlap.safetensors"] = st({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12)
    files["st-size-mismatch.safetensors"] = st({"w": t("F32", [2], 0, 4)}, b"\0" * 8)
    files["st-truncated-data.safetensors"] = st({"w": t("F32", [1024], 0, 4096)}, b"\0" * 100)
    files["st-wrong-dtype.safetensors"] = st({"w": t("Q4_K", [1], 0, 4)}, f32)
    files["st-negative-dim.safetensors"] = st({"w": t("F32", [-1], 0, 4)}, f32)
    files["st-float-dim.safetensors"] = st({"w": t("F32", [1.5], 0, 4)}, f32)
    files["st-rank-40.safetensors"] = st({"w": t("U8", [1] * 40, 0, 1)}, b"\0")
    files["st-no-tensors.safetensors"] = st({"__metadata__": {"format": "pt"}})
    files["st-array-header.safetensors"] = st([1, 2, 3])
    files["st-many-tiny-tensors.safetensors"] = st(
        {f"t{i}": t("U8", [1], i, i + 1) for i in range(50000)}, b"\0" * 50000
    )
    with open(FIXTURE, "rb") as fh:
        valid = fh.read()
    n = struct.unpack_from("<Q", valid, 0)[0]
    header = json.loads(valid[8:8 + n])
    data = valid[8 + n:]
    files["valid.safetensors"] = valid
    extra = dict(header)
    extra["visual.attnpool.weight"] = t("F32", [1], len(data), len(data) + 4)
    files["valid-extra-tensor.safetensors"] = st(extra, data + f32)
    missing = dict(header)
    missing.pop(sorted(k for k in missing if k != "__metadata__")[0])
    files["valid-missing-tensor.safetensors"] = st(missing, data)
    wrong = dict(header)
    k = "logit_scale" if "logit_scale" in wrong else sorted(wrong)[0]
    wrong[k] = dict(wrong[k], dtype="I32")
    files["valid-wrong-dtype.safetensors"] = st(wrong, data)
    files["valid-cut-in-half.safetensors"] = valid[: len(valid) // 2]

    # --- PyTorch zips ---
    for op in ["GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "BUILD", "REDUCE_IN_DICT", "EVAL"]:
        files[f"pt-code-{op.lower()}.bin"] = torch_zip(code(op), [("0", f32)])
    files["pt-zero-stride.bin"] = torch_zip(tensor_pickle("w", 1, [40000, 40000], [0, 0]), [("0", f32)])
    files["pt-huge-storage.bin"] = torch_zip(tensor_pickle("w", 2**31 - 1, [2**31 - 1], [1]), [("0", f32)])
    files["pt-huge-offset.bin"] = torch_zip(tensor_pickle("w", 1, [1], [1], offset=2**31 - 1), [("0", f32)])
    files["pt-negative-shape.bin"] = torch_zip(tensor_pickle("w", 1, [-1], [1]), [("0", f32)])
    files["pt-missing-storage.bin"] = torch_zip(tensor_pickle("w", 1, [1], [1]))
    files["pt-unknown-storage-type.bin"] = torch_zip(tensor_pickle("w", 1, [1], [1], storage="EvilStorage"), [("0", f32)])
    bomb = b"\x80\x02]q\x00" + (b"(" + b"h\x00" * 10 + b"lq\x00") * 40 + b"}(" + s_("w") + b"h\x00u."
    files["pt-memo-bomb.bin"] = torch_zip(bomb)
    N = 200000
    files["pt-deep-lists.bin"] = torch_zip(b"\x80\x02" + b"]" * N + b"a" * (N - 1) + b".")
    files["pt-deep-marks.bin"] = torch_zip(b"\x80\x02" + b"(" * N + b".")
    files["pt-deep-tuples.bin"] = torch_zip(b"\x80\x02)" + b"\x85" * N + b".")
    files["pt-empty-pickle.bin"] = torch_zip(b"")
    files["pt-no-stop.bin"] = torch_zip(b"\x80\x02}")
    ok = torch_zip(tensor_pickle("w", 1, [1], [1]), [("0", f32)])
    files["pt-lying-zip-size-small.bin"] = lie_sizes(ok, "archive/data/0", 1)
    files["pt-lying-zip-size-huge.bin"] = lie_sizes(ok, "archive/data.pkl", 0xFFFFFFF0)
    files["pt-deflate-bomb.bin"] = torch_zip(tensor_pickle("w", 1, [1], [1]) + b"\0" * (300 << 20), [("0", f32)], compress=True)
    files["pt-cut-zip.bin"] = ok[: len(ok) // 2]
    files["not-a-checkpoint.pt"] = b"this is not a checkpoint\n"
    files["random-bytes.bin"] = bytes((i * 7919 + 13) % 256 for i in range(4096))

    for name, b in files.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(b)
    print(f"{len(files)} hostile weight files in {out}")


if __name__ == "__main__":
    main()
