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

from .io.checkpoints import load_nextdit, load_text_encoder, trained_conditioning
from .models.v2a import load_v2a
from .models.vae import load_vae
from .pipeline import LuminaVideoModels
from .preview import LatentRGB
from .sampling.presets import DEFAULT_PRESET

PACKAGE_DIR = Path(__file__).resolve().parent / "embedded"
FILES = dict(
    dit="dit.safetensors", text_encoder="text_encoder.safetensors", vae="vae.safetensors", v2a="v2a.safetensors"
)
STYLE_LORA = "style_lora.safetensors"
"""The sway style LoRA for dit.safetensors (``lumina_core/lora.py``), made by ``python -m
lumina_core.toyworld.train_lora`` and measured in docs/style-lora.md: an extra beside FILES, the models that the
training stages make."""
SIZES = dict(width=(64, 64), height=(64, 64), frames=(8, 32))
"""Trained on 64x64 clips of 16 frames; it can't draw beyond this."""
FPS = 8
WIDTH, HEIGHT, FRAMES = 64, 64, 16
PRESETS = ("embedded", "embedded-MultiScale")
PRESET = DEFAULT_PRESET

# The sampler's per-step preview in real colours: model-space latent pixel [16] -> RGB 0..1 (lumina_core.preview),
# fitted to this folder's vae.safetensors by `python -m lumina_core.toyworld.fit_preview --clips 200 --heldout 100
# --seed 0` (least squares on 200 training clips). On 100 held-out clips: MAE 12.4 / 255, R^2 R 0.94 G 0.85 B 0.82,
# where the principal-component fallback, even after its best affine map per channel, has MAE 32.2 / 255 and R^2
# 0.14 / 0.00 / 0.00. Refit whenever the VAE's encoder is retrained. The released CogVideoX VAE has no fitted
# projection here (its weights can't be downloaded where this was made), so its previews use the fallback.
PREVIEW = LatentRGB(
    factors=(
        (0.0318, -0.1807, 0.0582),
        (0.0551, 0.2161, -0.0096),
        (-0.0300, 0.0084, -0.1590),
        (0.0185, 0.1827, 0.0377),
        (0.1039, 0.2117, 0.2879),
        (-0.0359, 0.2034, -0.1062),
        (-0.1262, -0.2591, -0.0116),
        (-0.0336, 0.0175, 0.0121),
        (-0.1085, -0.2518, 0.1004),
        (0.1327, -0.1134, -0.0360),
        (-0.0270, -0.0105, 0.1547),
        (0.1416, 0.3203, 0.0090),
        (0.0535, 0.0666, 0.0803),
        (-0.0388, 0.1271, -0.3191),
        (0.0837, 0.2901, -0.0478),
        (0.1965, 0.2393, 0.0752),
    ),
    bias=(0.2237, 0.1453, -0.0208),
)


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
        conditioning=trained_conditioning(file("dit", where)),
    )
