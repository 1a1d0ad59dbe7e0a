"""Converts an original Reverse Distillation checkpoint (hq-deng/RD4AD main.py:
torch.save({'bn': bn.state_dict(), 'decoder': decoder.state_dict()}, path)) to the
safetensors layout anomalens reads: every tensor as float32 under `bn.<name>` /
`decoder.<name>` (num_batches_tracked dropped: anomalens ignores it either way).

    /usr/bin/python3 scripts/rd_pth_to_safetensors.py wres50_bottle.pth student.safetensors

Then: methodOptions { student: 'student.safetensors', epochs: 0 } (or Detector's restore).
Needs only torch (Debian python3-torch); the file is written by hand (8-byte header length,
JSON header, raw little-endian data) and renamed into place when complete.
"""
import json
import os
import struct
import sys

import torch


def main(src, dst):
    ckpt = torch.load(src, map_location="cpu")
    if not isinstance(ckpt, dict) or "bn" not in ckpt or "decoder" not in ckpt:
        sys.exit(f"{src}: expected a dict with 'bn' and 'decoder' state dicts, found keys {list(ckpt)[:5]}")
    tensors = {}
    for part in ("bn", "decoder"):
        for name, t in ckpt[part].items():
            if name.endswith("num_batches_tracked"):
                continue
            tensors[f"{part}.{name}"] = t.detach().to(torch.float32).contiguous().numpy()
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header["__metadata__"] = {"format": "anomalens-rd-student", "source": os.path.basename(src)}
    raw = json.dumps(header, separators=(",", ":")).encode("utf8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for a in tensors.values():
            fh.write(a.astype("<f4").tobytes())
    os.replace(tmp, dst)
    print(f"wrote {len(tensors)} tensors to {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: rd_pth_to_safetensors.py <checkpoint.pth> <out.safetensors>")
    main(sys.argv[1], sys.argv[2])
