"""Damaged copies of a good weights file, as failed downloads and broken exports leave them, for the loaders' tests."""

from __future__ import annotations

import random
import struct
from pathlib import Path


def damaged_copies(good: Path, folder: Path) -> list[tuple[Path, str]]:
    """(path, what the loader's error must say) for copies of ``good`` in ``folder``: empty, random bytes, cut in
    half and, for a .safetensors file, its header alone (a download stopped right after the header)."""
    data = Path(good).read_bytes()
    size = len(data)
    if good.suffix == ".safetensors":
        header_end = 8 + struct.unpack("<Q", data[:8])[0]
        truncated = f"is truncated: its header says the file has {size} bytes, but it has "
        variants = {
            "empty": (b"", "has 0 bytes"),
            "random": (random.Random(0).randbytes(4096), "is not a readable .safetensors file"),
            "half": (data[: size // 2], f"{truncated}{size // 2}"),
            "header_only": (data[:header_end], f"{truncated}{header_end}"),
        }
    else:
        variants = {
            "empty": (b"", "is empty"),
            "random": (random.Random(0).randbytes(4096), "is not a zip-format .pth"),
            "half": (data[: size // 2], "is truncated: the zip archive torch.save writes has lost its end"),
        }
    Path(folder).mkdir(parents=True, exist_ok=True)
    copies = []
    for name, (content, what) in variants.items():
        path = Path(folder) / f"{name}{good.suffix}"
        path.write_bytes(content)
        copies.append((path, what))
    return copies


def assert_names_file_and_fix(error: Exception, path: Path, what: str) -> None:
    """The message names the file, says what is wrong with it, and says to download it again."""
    message = str(error)
    assert str(path) in message, message
    assert what in message, message
    assert "Download it again" in message, message
