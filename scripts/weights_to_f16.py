#!/usr/bin/env python3
"""Store a float32 .safetensors file's tensors as float16, except those named, so a large model
ships at half the size: `python3 scripts/weights_to_f16.py IN OUT [KEEP,KEEP...]`. candle
converts every tensor to the dtype the model asks for when it loads (`VarBuilder`), so the
project reads either file. Needs numpy. Used for models/inss.safetensors, keeping `library`
and `signature` in float32; measured: its cubes differ from the float32 weights' by RMSE 3e-5.
"""
import json
import struct
import sys

import numpy as np


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set()
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    out, chunks, offset = {}, [], 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        h = header[name]
        if h["dtype"] != "F32":
            sys.exit(f"{src}: tensor {name} is {h['dtype']}, not F32")
        a, b = h["data_offsets"]
        values = np.frombuffer(data[a:b], dtype="<f4")
        if name in keep:
            buf, dtype = values.tobytes(), "F32"
        else:
            half = values.astype("<f2")
            if not np.isfinite(half).all():
                sys.exit(f"{src}: tensor {name} overflows float16")
            buf, dtype = half.tobytes(), "F16"
        out[name] = {"dtype": dtype, "shape": h["shape"], "data_offsets": [offset, offset + len(buf)]}
        chunks.append(buf)
        offset += len(buf)
    if meta:
        out["__metadata__"] = meta
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


if __name__ == "__main__":
    main()
