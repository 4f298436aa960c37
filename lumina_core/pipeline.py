"""Where the stages meet: prompts -> caption features -> latent -> frames -> sound.

``LuminaVideoModels`` holds the four models a text-to-video-with-sound run needs. The command
line and the ComfyUI nodes call the same functions; the embedded default (``embedded.py``)
loads into the same container through the loaders of released weights.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .conditioning import Conditioning, encode
from .models.nextdit import MultiScaleNextDiT
from .models.text import TextCondition, TinyTextEncoder
from .models.v2a import V2AGenerator
from .models.vae import CogVideoXVAE
from .request import VAE_TEMPORAL, check_video_size, latent_shape
from .sampling import SamplingConfig, StepCache, WindowPlan, make_noise, sample


@dataclass
class LuminaVideoModels:
    """The models of one run. ``size_limits`` (width/height/frames -> (low, high)) is set for a model trained on a
    narrow range of sizes, the embedded default; released weights take any size the size rule allows."""

    dit: MultiScaleNextDiT
    text_encoder: Optional[TinyTextEncoder]
    vae: CogVideoXVAE
    v2a: Optional[V2AGenerator] = None
    size_limits: Optional[dict] = None
    conditioning: str = "replace"  # the mechanism the DiT was trained for (io.checkpoints.trained_conditioning)


def compile_blocks(dit: MultiScaleNextDiT) -> MultiScaleNextDiT:
    """torch.compile each transformer block in place (``generate --compile``); returns ``dit``.

    The blocks are one code path, so a compilation serves all of them; another token count or batch (a new patch
    size, CFG switching off) compiles again, with dynamic shapes from then on. On the CPU that costs about a minute
    and pays only on long runs (docs/benchmarks.md, Compile); inductor needs a C++ compiler there.
    """
    for block in dit.layers:
        block.compile()
    return dit


def encode_prompts(models, prompts: list[str]) -> TextCondition:
    if models.text_encoder is None:
        raise ValueError(
            "these models have no built-in text encoder; "
            "encode prompts with Gemma-2-2B (ComfyUI's CLIPLoader, type lumina2)"
        )
    with torch.no_grad():
        return models.text_encoder.encode(prompts)


def sample_latent(
    models,
    positive: TextCondition,
    negative: Optional[TextCondition],
    width: int,
    height: int,
    frames: int,
    seed: int,
    config: SamplingConfig,
    batch: int = 1,
    callback: Optional[Callable] = None,
    cache: Optional[StepCache] = None,
    known: Optional[Conditioning] = None,
    windows: Optional[WindowPlan] = None,
    stop: float = 1.0,
) -> torch.Tensor:
    """Seeded noise of the right shape, sampled into a model-space latent [B, 16, F/4, H/8, W/8]; ``cache``: step
    caching (``sampling/cache.py``), off when None; ``known``: what is given of the video (``conditioning.py``),
    held by replacement, None for plain text-to-video; ``windows``: a long video in fused windows of latent frames
    (``sampling/windows.py``), where the model's frame limit applies to each window; ``stop`` < 1: end at that time,
    for a denoising decoder to finish (decode with ``noise_level`` 1 - stop)."""
    window = VAE_TEMPORAL * windows.length if windows is not None else None
    window = window if window is not None and frames > window else None  # one window covering the clip: plain
    limits = dict(window=window, tile=None if windows is None else windows.tile_pixels)
    check_video_size(width, height, frames, batch, models.dit.patch_sizes, models.size_limits, **limits)
    device = next(models.dit.parameters()).device
    noise = make_noise(latent_shape(width, height, frames, batch, models.dit.in_channels), seed, device)
    return sample(models.dit, noise, positive, negative, config, callback, cache, known, windows, stop)


def refine_config(config: SamplingConfig) -> SamplingConfig:
    """The settings a refine pass samples with: ``config`` without its skip-layer guidance. At the new size the shapes
    are larger than any the model drew, and guiding away from its last block deforms them (on the embedded default,
    12 held-out prompts refined from t = 0.9: shape 0.75 with it against 0.92 without, the 64x64 draft's 0.92)."""
    return config.with_(skip_guidance=0.0)


def refine(
    models,
    frames: torch.Tensor,
    positive: TextCondition,
    negative: Optional[TextCondition],
    config: SamplingConfig,
    scale: int,
    start: float,
    seed: int,
    windows: WindowPlan,
    callback: Optional[Callable] = None,
) -> torch.Tensor:
    """Lumiere's super-resolution stage as a refine pass: frames [B, F, H, W, 3] in [0, 1] scaled ``scale`` times
    (bicubic), encoded at the new size and redrawn from t = ``start`` (0 noise, 1 data) in the plan's spatial tiles
    (and frame windows) fused by MultiDiffusion, so the layout stays the video's and each tile is drawn at the size
    the model knows. -> model-space latent [B, 16, F/4, scale*H/8, scale*W/8]. It samples under ``refine_config``."""
    config = refine_config(config)
    latent = scaled_latent(models.vae, frames, scale)
    batch, count, height, width, _ = frames.shape
    known = Conditioning(latent, denoise=1.0 - start)
    return sample_latent(models, positive, negative, scale * width, scale * height, count, seed, config, batch,
                         callback, None, known, windows)  # fmt: skip


def scaled_latent(vae: CogVideoXVAE, frames: torch.Tensor, scale: int) -> torch.Tensor:
    """The refine pass's start: frames [B, F, H, W, 3] in [0, 1] scaled ``scale`` times (bicubic, clamped) and
    encoded -> model-space latent [B, 16, F/4, scale*H/8, scale*W/8]."""
    if scale < 1:
        raise ValueError(f"upscale {scale} must be a whole factor of at least 1")
    batch, count, height, width, _ = frames.shape
    flat = frames.permute(0, 1, 4, 2, 3).flatten(0, 1).float()  # [B*F, 3, H, W]
    bigger = F.interpolate(flat, size=(scale * height, scale * width), mode="bicubic", align_corners=False)
    bigger = bigger.clamp(0, 1).unflatten(0, (batch, count)).permute(0, 1, 3, 4, 2)  # [B, F, sH, sW, 3]
    with torch.no_grad():
        return torch.cat([encode(vae, video) for video in bigger])


def longest_window(dit, size_limits: Optional[dict] = None) -> int:
    """The most video frames the DiT takes at once: the top of its trained range (``size_limits``, the embedded
    default's), else what its RoPE tables reach at its finest temporal patch."""
    if size_limits:
        return size_limits["frames"][1]
    finest = min(p.temporal for p in dit.patch_sizes)
    return VAE_TEMPORAL * finest * dit.rope.axes_lens[0]


def decode_latent(
    vae: CogVideoXVAE,
    latent: torch.Tensor,
    tiled: bool = True,
    tile_latent: int = 32,
    overlap: int = 8,
    noise_level: float = 0.0,
) -> torch.Tensor:
    """Model-space latent -> frames [B, F, H, W, 3] in [0, 1] (ComfyUI's IMAGE layout, per video); ``noise_level``:
    how noisy the latent still is (a sampler stopped at 1 - noise_level), for a denoising decoder."""
    with torch.no_grad():
        if tiled and max(latent.shape[-2:]) > tile_latent:
            video = vae.decode_model_latent_tiled(
                latent, tile_latent_hw=(tile_latent, tile_latent), overlap=overlap, noise_level=noise_level
            )
        else:
            video = vae.decode_model_latent(latent, noise_level=noise_level)
    return ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)


def generate_audio(
    models, frames: torch.Tensor, fps: float, seed: int, steps: int = 25, cfg: float = 3.5, callback=None
):
    """frames [B, F, H, W, 3] in [0, 1] -> (waveform [B, 1, round(F * sr / fps)] in [-1, 1], sample rate)."""
    if models.v2a is None:
        raise ValueError("no video-to-audio model is loaded")
    v2a = models.v2a
    batch = frames.shape[0]
    text = v2a.dit.null_text_condition(batch)
    with torch.no_grad():
        audio = v2a.generate(
            frames.permute(0, 1, 4, 2, 3), fps, text, steps=steps, seed=seed, cfg=cfg, callback=callback
        )
    return audio.waveform, audio.sample_rate
