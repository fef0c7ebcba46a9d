"""Checks a compressed-tensors sparse model directory against the dense model it claims to be.

Decompresses with the algorithm of the compressed-tensors library (neuralmagic/compressed-tensors,
compressors/sparse_compressors): the bitmask is numpy.unpackbits(axis=-1, bitorder="little") of the
packed rows, and the values fill the flagged positions in row-major order. Written independently of
the engine, in numpy, as a measuring instrument. Usage:

    ct_check.py COMPRESSED_DIR DENSE_DIR

Exits 0 and prints a summary when every tensor of DENSE_DIR is reproduced bit for bit and
config.json declares the layout; prints the first difference and exits 1 otherwise.
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_dir(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    tensors = {}
    for name in files:
        with open(os.path.join(d, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for key, info in header.items():
            if key == "__metadata__":
                continue
            a, b = info["data_offsets"]
            tensors[key] = (info["dtype"], np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]))
    return tensors


def decompress(tensors, fmt):
    out = {}
    for name, (dtype, t) in tensors.items():
        if name.endswith((".compressed", ".shape", ".row_offsets")):
            continue
        if not name.endswith(".bitmask"):
            out[name] = (dtype, t)
            continue
        prefix = name[: -len(".bitmask")]
        shape = [int(v) for v in tensors[prefix + ".shape"][1].reshape(-1)]
        vdtype, values = tensors[prefix + ".compressed"]
        if fmt == "sparse-24-bitmask":
            assert values.shape == (shape[0], shape[1] // 2), f"{prefix}: compressed shape {values.shape}"
            assert tensors[prefix + ".shape"][1].shape == (2, 1)
        else:
            counts = np.unpackbits(t, axis=-1, count=shape[-1], bitorder="little").sum(-1)
            offsets = tensors[prefix + ".row_offsets"][1]
            assert (offsets == np.cumsum(counts) - counts).all(), f"{prefix}: row_offsets"
        mask = np.unpackbits(t, axis=-1, count=shape[-1], bitorder="little").reshape(shape).astype(bool)
        dense = np.zeros(shape, dtype=values.dtype)
        dense[mask] = values.reshape(-1)
        out[prefix + ".weight"] = (vdtype, dense)
    return out


def main():
    compressed_dir, dense_dir = sys.argv[1:3]
    config = json.load(open(os.path.join(compressed_dir, "config.json")))
    q = config["quantization_config"]
    assert q["quant_method"] == "compressed-tensors", q
    fmt = q["sparsity_config"]["format"]
    assert fmt in ("sparse-bitmask", "sparse-24-bitmask"), fmt
    got = decompress(read_dir(compressed_dir), fmt)
    want = read_dir(dense_dir)
    if sorted(got) != sorted(want):
        print("tensor names differ:", sorted(set(got) ^ set(want))[:5])
        return 1
    for name, (dtype, t) in want.items():
        gdtype, g = got[name]
        if gdtype != dtype or g.shape != t.shape or g.tobytes() != t.tobytes():
            print(f"{name}: differs ({gdtype} {g.shape} vs {dtype} {t.shape})")
            return 1
    compressed = sum(1 for n in read_dir(compressed_dir) if n.endswith(".bitmask"))
    print(f"OK {fmt}: {len(want)} tensors equal, {compressed} decompressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
