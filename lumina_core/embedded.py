"""The embedded default in one place: tiny models of the released classes, trained by this project on the toy
world (``toyworld/``), shipped in ``embedded/`` so that a CPU makes a video with sound in seconds.

Here are its folder and files, the sizes and frame rate it was trained for, its sampling presets (their values
live in the one preset table, ``sampling/presets.py``) and its loader, which goes through the loaders of released
weights.
"""

import os
from pathlib import Path
from typing import Optional

import torch

from .io.checkpoints import load_nextdit, load_text_encoder
from .models.v2a import load_v2a
from .models.vae import load_vae
from .pipeline import LuminaVideoModels
from .sampling.presets import DEFAULT_PRESET

PACKAGE_DIR = Path(__file__).resolve().parent / "embedded"
FILES = dict(
    dit="dit.safetensors", text_encoder="text_encoder.safetensors", vae="vae.safetensors", v2a="v2a.safetensors"
)
SIZES = dict(width=(64, 64), height=(64, 64), frames=(8, 32))
"""Trained on 64x64 clips of 16 frames; it can't draw beyond this."""
FPS = 8
WIDTH, HEIGHT, FRAMES = 64, 64, 16
PRESETS = ("embedded", "embedded-MultiScale")
PRESET = DEFAULT_PRESET


def folder() -> Path:
    """The embedded default's folder; LUMINA_VIDEO_EMBEDDED_DIR overrides it (the tests use random-weight copies)."""
    override = os.environ.get("LUMINA_VIDEO_EMBEDDED_DIR", "").strip()
    return Path(override) if override else PACKAGE_DIR


def file(kind: str, where: Optional[Path] = None) -> Path:
    """The path of one embedded model file (kind: dit, text_encoder, vae, v2a); a missing file says how it is made."""
    where = folder() if where is None else Path(where)
    path = where / FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded default's {FILES[kind]} is missing from {where}; it is made by "
            "python -m lumina_core.toyworld.train (and train_v2a for v2a.safetensors). Reinstall the pack."
        )
    return path


def available(where: Optional[Path] = None) -> bool:
    where = folder() if where is None else Path(where)
    return all((where / FILES[kind]).is_file() for kind in ("dit", "text_encoder", "vae"))


def load(device="cpu", dtype=torch.float32, where: Optional[Path] = None, with_audio: bool = True) -> LuminaVideoModels:
    """The embedded default, loaded through the loaders of real weights."""
    where = folder() if where is None else Path(where)
    dit, _, _ = load_nextdit(file("dit", where), dtype=dtype, device=device)
    v2a_path = where / FILES["v2a"]
    return LuminaVideoModels(
        dit=dit,
        text_encoder=load_text_encoder(file("text_encoder", where), dtype=dtype, device=device),
        vae=load_vae(file("vae", where), dtype=dtype, device=device).eval(),
        v2a=load_v2a(v2a_path, dtype=dtype, device=device) if with_audio and v2a_path.is_file() else None,
        size_limits=SIZES,
    )
