"""Where the stages meet: prompts -> caption features -> latent -> frames -> sound -> file.

``LuminaVideoModels`` holds the four models a text-to-video-with-sound run needs; the
embedded default (tiny models trained on the toy world, shipped in ``embedded/``) loads
through the same loaders as released weights. The ComfyUI nodes call the same functions.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .checkpoint import CheckpointError, load_nextdit, read_state_dict
from .nextdit import MultiScaleNextDiT
from .sampler import PRESETS, SamplingConfig, TextCondition, make_noise, sample
from .text import TinyTextEncoder, TinyTextEncoderConfig
from .v2a import V2AGenerator, load_v2a
from .vae import CogVideoXVAE, latent_frames_for, load_vae

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
TEXT_CONFIG_METADATA_KEY = "lumina_text_encoder_config"
VAE_SPATIAL, VAE_TEMPORAL = 8, 4

# The embedded default was trained on 64x64 clips of 16 frames at 8 fps; it can't draw beyond that.
EMBEDDED_SIZES = dict(width=(64, 64), height=(64, 64), frames=(8, 32))
EMBEDDED_FPS = 8
# Sampling settings for the embedded default, in the reference's form. The multi-scale
# preset hands the noisy first steps to the coarse patch sizes, as f24F96R960-MultiScale does,
# and crowds more of its steps there (time shift 9, not 3). Its switch times (2x2 from t = 0.25,
# 1x2 from 0.45) leave 22, 4 and 3 of the 29 model calls to 2x4, 2x2 and 1x2: a quarter of the
# single-scale preset's tokens. The earlier 0.15 / 0.4 (a third of the tokens) read shape 0.578 against
# 0.570 and direction 1.000 against 0.997 on 600 tuning prompts, and its sampling time came to 0.456
# of single-scale's on one CI machine.
# Guidance runs to the end, unlike the reference's truncated CFG: the tiny model settles the
# shape's corners on its last steps, and unguided it rounds squares and triangles into circles.
# Motion guidance (a third pass without the motion score) runs while t < 0.5: the tiny model's
# pooled caption shifts its speed, and guiding on the motion score alone makes the input set it
# (held-out Spearman 0.83 -> 0.90 on tuning prompts; 0.885 when it runs to the end, at more cost).
EMBEDDED_MOTION_CFG = (10.0, (0.5, 0.0))
EMBEDDED_PRESETS = {
    "embedded": SamplingConfig(
        steps=30, time_shift=3.0, cfg=4.0, renorm=2.0, motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=EMBEDDED_MOTION_CFG, patch="1x2"
    ),
    "embedded-MultiScale": SamplingConfig(
        steps=30, time_shift=9.0, cfg=4.0, renorm=2.0, motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=EMBEDDED_MOTION_CFG,
        patch=("2x4", (0.25, "2x2"), (0.45, "1x2")),
    ),
}
ALL_PRESETS = {**PRESETS, **EMBEDDED_PRESETS}


@dataclass
class LuminaVideoModels:
    dit: MultiScaleNextDiT
    text_encoder: Optional[TinyTextEncoder]
    vae: CogVideoXVAE
    v2a: Optional[V2AGenerator] = None
    embedded: bool = False


def load_text_encoder(path, dtype=None, device="cpu") -> TinyTextEncoder:
    """The tiny text encoder from a .safetensors file holding its config in the metadata."""
    path = Path(path)
    state, metadata = read_state_dict(path)
    if TEXT_CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: not a tiny text encoder (no {TEXT_CONFIG_METADATA_KEY} metadata)")
    with torch.device("meta"):
        encoder = TinyTextEncoder(TinyTextEncoderConfig.from_json(metadata[TEXT_CONFIG_METADATA_KEY]))
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)


def embedded_available(folder: Path = EMBEDDED_DIR) -> bool:
    return all((folder / name).is_file() for name in ("dit.safetensors", "text_encoder.safetensors", "vae.safetensors"))


def load_embedded(device="cpu", dtype=torch.float32, folder: Path = EMBEDDED_DIR, with_audio: bool = True) -> LuminaVideoModels:
    """The embedded default, loaded through the loaders of real weights."""
    if not embedded_available(folder):
        raise FileNotFoundError(f"the embedded default is missing from {folder}; train it with python -m lumina_core.toyworld.train")
    dit, _, _ = load_nextdit(folder / "dit.safetensors", dtype=dtype, device=device)
    v2a_path = folder / "v2a.safetensors"
    return LuminaVideoModels(
        dit=dit,
        text_encoder=load_text_encoder(folder / "text_encoder.safetensors", dtype=dtype, device=device),
        vae=load_vae(folder / "vae.safetensors", dtype=dtype, device=device).eval(),
        v2a=load_v2a(v2a_path, dtype=dtype, device=device) if with_audio and v2a_path.is_file() else None,
        embedded=True,
    )


def check_video_size(width: int, height: int, frames: int, model: MultiScaleNextDiT, embedded: bool = False):
    """Refuse sizes the model can't take, naming the nearest ones it can."""
    multiple = VAE_SPATIAL * max(p for _, p in model.patch_sizes)
    problems = []
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % multiple:
            low = max(multiple, value // multiple * multiple)
            problems.append(f"{name} {value} is not a multiple of {multiple} (try {low} or {low + multiple})")
    try:
        latent_frames = latent_frames_for(frames)
        if latent_frames > 1 and any(pf > 1 for pf, _ in model.patch_sizes) and latent_frames % 2:
            raise ValueError(f"{frames} frames give an odd latent frame count")
    except ValueError as error:
        problems.append(f"frames: {error}")
    if embedded:
        for name, value in (("width", width), ("height", height), ("frames", frames)):
            low, high = EMBEDDED_SIZES[name]
            if not low <= value <= high:
                problems.append(f"{name} {value} is outside what the embedded default was trained for ({low}..{high})")
    if problems:
        raise ValueError("; ".join(problems))


def latent_shape(width: int, height: int, frames: int, batch: int = 1, channels: int = 16) -> tuple[int, int, int, int, int]:
    """[B, C, F/4, H/8, W/8]: Lumina-Video's latent for a video of this size."""
    return (batch, channels, latent_frames_for(frames), height // VAE_SPATIAL, width // VAE_SPATIAL)


def encode_prompts(models: LuminaVideoModels, prompts: list[str]) -> TextCondition:
    if models.text_encoder is None:
        raise ValueError("these models have no built-in text encoder; encode prompts with Gemma-2-2B (ComfyUI's CLIPLoader, type lumina2)")
    with torch.no_grad():
        return models.text_encoder.encode(prompts)


def sample_latent(
    models: LuminaVideoModels,
    positive: TextCondition,
    negative: Optional[TextCondition],
    width: int,
    height: int,
    frames: int,
    seed: int,
    config: SamplingConfig,
    batch: int = 1,
    callback: Optional[Callable] = None,
) -> torch.Tensor:
    """Seeded noise of the right shape, sampled into a model-space latent [B, 16, F/4, H/8, W/8]."""
    check_video_size(width, height, frames, models.dit, models.embedded)
    device = next(models.dit.parameters()).device
    noise = make_noise(latent_shape(width, height, frames, batch, models.dit.in_channels), seed, device)
    return sample(models.dit, noise, positive, negative, config, callback)


def decode_latent(vae: CogVideoXVAE, latent: torch.Tensor, tiled: bool = True, tile_latent: int = 32, overlap: int = 8) -> torch.Tensor:
    """Model-space latent -> frames [B, F, H, W, 3] in [0, 1] (ComfyUI's IMAGE layout, per video)."""
    with torch.no_grad():
        if tiled and max(latent.shape[-2:]) > tile_latent:
            video = vae.decode_model_latent_tiled(latent, tile_latent_hw=(tile_latent, tile_latent), overlap=overlap)
        else:
            video = vae.decode_model_latent(latent)
    return ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)


def generate_audio(models: LuminaVideoModels, frames: torch.Tensor, fps: float, seed: int, steps: int = 25, cfg: float = 3.5, callback=None):
    """frames [B, F, H, W, 3] in [0, 1] -> (waveform [B, 1, round(F * sr / fps)] in [-1, 1], sample rate)."""
    if models.v2a is None:
        raise ValueError("no video-to-audio model is loaded")
    v2a = models.v2a
    batch = frames.shape[0]
    text = v2a.dit.null_text_condition(batch)
    with torch.no_grad():
        audio = v2a.generate(frames.permute(0, 1, 4, 2, 3), fps, text, steps=steps, seed=seed, cfg=cfg, callback=callback)
    return audio.waveform, audio.sample_rate
