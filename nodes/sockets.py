"""The pack's own socket types and what travels through them.

ComfyUI's core types are used where the payload really is that format: MODEL and CONDITIONING (the native model,
``_comfy_model.py``), IMAGE (frames [N, H, W, 3] in 0..1), AUDIO ({"waveform": [B, C, T], "sample_rate"}),
LATENT ({"samples": [B, 16, F/4, H/8, W/8]}) and VIDEO. The VAE and the video-to-audio model have their own
types: ComfyUI's VAE and audio nodes can't run them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lumina_core.models.vae import frames_for
from ._comfy import io

REFINE_KEY = "lumina_refine"
"""Set on a LATENT made by Upscale Video: the Sampler redraws it under ``pipeline.refine_config``, as the engine's
refine pass does."""


def video_samples(latent: dict):
    """A video LATENT's samples [B, 16, K, h, w]; anything else (an image latent, an odd latent frame count) is refused
    with what to use instead."""
    samples = latent["samples"]
    if samples.ndim != 5:
        raise ValueError(
            f"latent {tuple(samples.shape)} is not a video latent [batch, 16, frames/4, height/8, width/8]; "
            "use Lumina-Video Empty Latent"
        )
    frames_for(samples.shape[2])  # a clear message for odd latent frame counts
    return samples


LuminaVAE = io.Custom("LUMINAVIDEO_VAE")
LuminaV2A = io.Custom("LUMINAVIDEO_V2A")


@dataclass
class LoadedVAE:
    """LUMINAVIDEO_VAE: a CogVideoX-layout VAE and its ModelPatcher."""

    vae: Any  # lumina_core.models.vae.CogVideoXVAE
    patcher: Any
    name: str
    embedded: bool


@dataclass
class LoadedV2A:
    """LUMINAVIDEO_V2A: a video-to-audio generator and its ModelPatcher."""

    v2a: Any  # lumina_core.models.v2a.V2AGenerator
    patcher: Any
    name: str
    embedded: bool
