"""Writing a .safetensors file one tensor at a time, so that a conversion holds one tensor's bytes, not the model's.

The format (https://huggingface.co/docs/safetensors, "Format"): 8 bytes, little-endian, the length N of a JSON
header; the header, ``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}``,
padded with spaces to a multiple of 8 bytes; then each tensor's raw little-endian bytes in header order, offsets
counted from the end of the header. The header is computed from the shapes and dtypes alone, before any tensor is
read; tensors come in the order safetensors' own ``save_file`` uses (wider dtypes first, then by name), which keeps
every tensor aligned to its element size and gives the same header as ``save_file`` (up to the order of the
metadata keys, which ``save_file`` writes in hash order).
"""

import json
import os
import struct
import sys
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Optional

import torch

# safetensors' dtype names, widest first as safetensors' writer orders them (its Dtype enum, descending).
DTYPE_NAMES = {
    torch.uint64: "U64",
    torch.int64: "I64",
    torch.float64: "F64",
    torch.float32: "F32",
    torch.uint32: "U32",
    torch.int32: "I32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.uint16: "U16",
    torch.int16: "I16",
    torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
    torch.float8_e4m3fnuz: "F8_E4M3FNUZ",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
DTYPE_RANK = {dtype: rank for rank, dtype in enumerate(DTYPE_NAMES)}


class TensorSpec(NamedTuple):
    """What the header says of a tensor before its bytes exist."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * self.dtype.itemsize


def layout(specs: Mapping[str, TensorSpec], metadata: Optional[Mapping[str, str]] = None) -> tuple[bytes, list[str]]:
    """(the file's first 8 + N bytes, the tensor names in the order their bytes follow)."""
    unknown = sorted({str(spec.dtype) for spec in specs.values() if spec.dtype not in DTYPE_RANK})
    if unknown:
        raise ValueError(f"safetensors has no dtype for {', '.join(unknown)}")
    if metadata is not None and not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("safetensors metadata values must be strings")
    order = sorted(specs, key=lambda name: (DTYPE_RANK[specs[name].dtype], name))
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        spec = specs[name]
        header[name] = {
            "dtype": DTYPE_NAMES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")  # as serde_json writes it
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, order


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in C order, without a copy when it is already contiguous (reshape(-1) lets 0-d tensors
    be viewed as bytes)."""
    flat = tensor.contiguous().reshape(-1).view(torch.uint8)
    return memoryview(flat.numpy())


def write_safetensors(
    path,
    specs: Mapping[str, TensorSpec],
    load: Callable[[str], torch.Tensor],
    metadata: Optional[Mapping[str, str]] = None,
    done: Optional[Callable[[str], None]] = None,
) -> Path:
    """Write ``specs`` to ``path``, asking ``load(name)`` for one tensor at a time (already in its spec's dtype) and
    calling ``done(name)`` once its bytes are written, so the caller can release the source.

    The bytes go to ``path`` + ".partial", synced and renamed when whole: ``path`` is never a half file, and the
    partial file is removed if anything fails (a KeyboardInterrupt included).
    """
    if sys.byteorder != "little":
        raise RuntimeError("writing .safetensors needs a little-endian machine")
    path = Path(path)
    header, order = layout(specs, metadata)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            out.write(header)
            for name in order:
                _write_one(out, name, load(name), specs[name])
                if done is not None:
                    done(name)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _write_one(out, name: str, tensor: torch.Tensor, spec: TensorSpec):
    if tensor.dtype != spec.dtype or tuple(tensor.shape) != tuple(spec.shape):
        raise ValueError(
            f"{name}: expected {spec.dtype} {tuple(spec.shape)} as the header says, got {tensor.dtype} "
            f"{tuple(tensor.shape)}"
        )
    out.write(tensor_bytes(tensor.detach().cpu()))
