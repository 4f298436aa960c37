"""Cheap pictures of a model-space video latent, for the sampler's per-step preview.

A VAE with a fitted latent-to-RGB projection (``LatentRGB``: one linear map per latent pixel, as ComfyUI's
``latent_rgb_factors`` and ``latent_rgb_factors_bias``) previews in real colours; any other falls back to
the latent's principal components, whose colours are arbitrary but whose shapes and motion show.
The embedded default's projection is ``embedded.PREVIEW``, fitted by ``python -m lumina_core.toyworld.fit_preview``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

SPATIAL_FACTOR = 8
"""Video pixels per latent pixel along each side (every CogVideoX VAE); the preview's largest upscale."""


@dataclass(frozen=True)
class LatentRGB:
    """A linear map from a latent pixel's C model-space channels to RGB in 0..1: ``rgb = latent @ factors + bias``.

    Tuples rather than tensors, so that a stored constant can't be changed in place.
    """

    factors: tuple[tuple[float, float, float], ...]  # [C][3]
    bias: tuple[float, float, float]  # [3]

    def __post_init__(self):
        factors = tuple(tuple(float(v) for v in row) for row in self.factors)
        bias = tuple(float(v) for v in self.bias)
        if not factors or any(len(row) != 3 for row in factors) or len(bias) != 3:
            raise ValueError(f"LatentRGB needs factors [C][3] and bias [3], got {len(factors)} rows and {len(bias)}")
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "bias", bias)

    @property
    def channels(self) -> int:
        return len(self.factors)

    @classmethod
    def from_tensors(cls, factors: torch.Tensor, bias: torch.Tensor) -> "LatentRGB":
        """factors [C, 3], bias [3]."""
        return cls(factors=tuple(map(tuple, factors.tolist())), bias=tuple(bias.tolist()))

    def apply(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [C, ...] -> RGB [3, ...], not clamped."""
        if latent.shape[0] != self.channels:
            raise ValueError(f"latent has {latent.shape[0]} channels, the projection {self.channels}")
        factors = torch.tensor(self.factors, dtype=latent.dtype, device=latent.device)  # [C, 3]
        bias = torch.tensor(self.bias, dtype=latent.dtype, device=latent.device)  # [3]
        rgb = torch.tensordot(factors, latent, dims=([0], [0]))  # [3, ...]
        return rgb + bias.view(3, *([1] * (latent.dim() - 1)))


def pick_frames(x: torch.Tensor, max_frames: int = 4) -> torch.Tensor:
    """The first video of x [B, C, K, h, w]: up to ``max_frames`` latent frames, evenly spaced -> [C, k, h, w]."""
    latent = x[0].detach().float().cpu()  # [C, K, h, w]
    frames = latent.shape[1]
    index = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long().unique()
    return latent[:, index]


def pca_rgb(latent: torch.Tensor) -> torch.Tensor:
    """latent [C, k, h, w] -> RGB [3, k, h, w] in 0..1: the fallback with no fitted projection.

    The channels are projected onto their three principal components (computed on this latent, signs fixed
    so that colours don't flip between steps), each scaled to mean 0.5. Colours are arbitrary.
    """
    channels = latent.shape[0]
    flat = latent.reshape(channels, -1)
    flat = flat - flat.mean(dim=1, keepdim=True)  # [C, N]
    if channels >= 3:
        _, vectors = torch.linalg.eigh(flat @ flat.T)
        components = vectors[:, -3:].flip(1)  # [C, 3], largest variance first
        signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
        rgb = (components * signs).T @ flat  # [3, N]
    else:
        rgb = flat.repeat(3, 1)[:3]
    rgb = (rgb / (4 * rgb.std(dim=1, keepdim=True) + 1e-6) + 0.5).clamp(0, 1)
    return rgb.reshape(3, *latent.shape[1:])


def projected_rgb(latent: torch.Tensor, projection: LatentRGB) -> torch.Tensor:
    """latent [C, k, h, w] -> RGB [3, k, h, w] in 0..1 through a fitted projection."""
    return projection.apply(latent).clamp(0, 1)


def side_by_side(rgb: torch.Tensor, max_side: int = 512) -> torch.Tensor:
    """RGB [3, k, h, w] -> [3, H, W]: the frames left to right, each latent pixel a square of nearest neighbours,
    up to 8x (the VAE's factor), at most ``max_side`` px wide (shrunk, nearest, when even 1x is wider)."""
    _, frames, h, w = rgb.shape
    strip = rgb.permute(0, 2, 1, 3).reshape(3, h, frames * w)  # [3, h, k*w]
    width = strip.shape[2]
    if width > max_side:
        size = (max(1, round(h * max_side / width)), max_side)
        return F.interpolate(strip[None], size=size, mode="nearest")[0]
    scale = max(1, min(SPATIAL_FACTOR, max_side // max(width, 1)))
    return F.interpolate(strip[None], scale_factor=scale, mode="nearest")[0]


def latent_preview(x: torch.Tensor, projection: Optional[LatentRGB] = None, max_frames: int = 4, max_side: int = 512):
    """A PIL picture of a model-space latent x [B, C, K, h, w]: up to ``max_frames`` latent frames of the first
    video side by side, coloured by ``projection`` (real colours), or by principal components when it is None
    or doesn't match the latent's channels."""
    from PIL import Image  # where ComfyUI runs; the engine itself doesn't need Pillow

    latent = pick_frames(x, max_frames)  # [C, k, h, w]
    usable = projection is not None and projection.channels == latent.shape[0]
    rgb = projected_rgb(latent, projection) if usable else pca_rgb(latent)
    picture = side_by_side(rgb, max_side)  # [3, H, W]
    return Image.fromarray((picture * 255).round().byte().permute(1, 2, 0).numpy())
