"""Long videos and large frames by MultiDiffusion: the model runs on overlapping windows of latent frames (and, with
tiles, of latent height and width) and, at every model call, the windows' velocities are fused into one, weighted
per cell, so the clip is denoised as one whole.

A ``WindowPlan`` says how long a window is, how much neighbours overlap, how their predictions are weighted
(uniform, pyramid, gaussian) and whether the windows shift from step to step, so that no window border stays at
one frame for the whole run. ``WindowedModel`` stands in for the DiT with the model's call signature, so the
guidance code (CFG, the motion score, motion guidance) and the solvers' ``known=`` hook don't know about it. Every
window is aligned to the temporal patch, so each one is a clip the model can take at every patch size of the
schedule. Each window sees its own frames at RoPE positions from 0, as the model saw its training clips.
"""

from bisect import bisect_right
from dataclasses import dataclass
from typing import Optional

import torch

from ..models.nextdit import PatchSize, call_time
from ..request import VAE_SPATIAL, VAE_TEMPORAL

FUSES = ("uniform", "pyramid", "gaussian")
REFINE_START = 0.9
"""The refine pass's default start time (``pipeline.refine``): the best of 0.6-0.9 on the toy world
(``toyworld.upscale``, docs/long-videos.md)."""


@dataclass(frozen=True)
class WindowPlan:
    """Windows over latent frames: ``length`` frames each, neighbours sharing ``overlap``; ``fuse`` weighs each
    window's frames (uniform: equally; pyramid: rising linearly towards the window's middle; gaussian: a bell over
    it, sigma a quarter of the window); ``shift`` moves the windows by one temporal patch per step."""

    length: int
    overlap: int
    fuse: str = "pyramid"
    shift: bool = True
    tile: Optional[tuple[int, int]] = None  # latent (height, width) of spatial tiles; None: whole frames
    tile_overlap: int = 0  # latent pixels neighbouring tiles share

    def __post_init__(self):
        if self.tile is not None:
            if len(self.tile) != 2 or min(self.tile) < 1:
                raise ValueError(f"tile {self.tile} must be a latent (height, width) of at least 1 each")
            if not 0 <= self.tile_overlap < min(self.tile):
                raise ValueError(
                    f"tile overlap {self.tile_overlap} latent pixels must be between 0 and {min(self.tile) - 1} "
                    f"(smaller than the tile, {self.tile[0]}x{self.tile[1]})"
                )
        if self.length < 1:
            raise ValueError(f"window length {self.length} latent frames must be at least 1")
        if not 0 <= self.overlap < self.length:
            raise ValueError(
                f"window overlap {self.overlap} latent frames must be between 0 and {self.length - 1} "
                f"(smaller than the window, {self.length})"
            )
        if self.fuse not in FUSES:
            raise ValueError(f"fuse {self.fuse!r} is not one of {', '.join(FUSES)}")

    @property
    def tile_pixels(self) -> Optional[tuple[int, int]]:
        """The tiles' (height, width) in pixels, where sizes are checked; None for whole frames."""
        return None if self.tile is None else (VAE_SPATIAL * self.tile[0], VAE_SPATIAL * self.tile[1])

    @property
    def stride(self) -> int:
        return self.length - self.overlap

    def covers(self, frames: int, height: int = 0, width: int = 0) -> bool:
        """Whether one window takes all ``frames`` (and one tile the latent's height x width): the plain path,
        sampled without windows."""
        fits = self.tile is None or (height <= self.tile[0] and width <= self.tile[1])
        return frames <= self.length and fits

    def check_tiles(self, height: int, width: int, align: int = 1):
        """Refuse tiles that can't cover height x width latent pixels in whole spatial patches (``align``)."""
        if self.tile is None:
            return
        if any(n % align for n in (*self.tile, self.tile_overlap)):
            raise ValueError(
                f"tile {self.tile[0]}x{self.tile[1]} and tile overlap {self.tile_overlap} latent pixels must be "
                f"multiples of the spatial patch {align} (in pixels: multiples of {8 * align})"
            )

    def check(self, frames: int, align: int = 1):
        """Refuse a plan that can't tile ``frames`` latent frames in windows of whole temporal patches (``align``)."""
        if self.length % align or self.overlap % align:
            raise ValueError(
                f"window {self.length} and overlap {self.overlap} latent frames must be multiples of the temporal "
                f"patch {align} (window and overlap in video frames: multiples of {4 * align})"
            )
        if frames % align:
            raise ValueError(f"{frames} latent frames are not a multiple of the temporal patch {align}")


def plan_in_video_frames(
    window: int, overlap: int, fuse: str, limit: int, names: tuple[str, str] = ("window", "overlap")
) -> WindowPlan:
    """A plan given in video frames, as users count them, checked against ``limit`` (the most frames the model
    takes at once): window and overlap are whole pairs of latent frames (multiples of 8, so every window fits the
    coarsest temporal patch), the window within the limit, the overlap below the window. ``names``: what the two
    values are called where the user typed them, for the errors."""
    step = 2 * VAE_TEMPORAL
    if window % step or not step <= window <= limit:
        raise ValueError(
            f"{names[0]} {window} must be a multiple of {step} between {step} and {limit} (the model's limit)"
        )
    if overlap % step or not 0 <= overlap < window:
        raise ValueError(
            f"{names[1]} {overlap} must be a multiple of {step} from 0 to {window - step} (below {names[0]})"
        )
    return WindowPlan(window // VAE_TEMPORAL, overlap // VAE_TEMPORAL, fuse)


def tiles_in_pixels(
    height: int,
    width: int,
    overlap: int,
    limits: Optional[dict] = None,
    names: tuple[str, str] = ("tile", "tile overlap"),
) -> dict:
    """Spatial tiles given in pixels, as users count them -> ``WindowPlan``'s tile and tile_overlap (latent pixels),
    checked: multiples of 8 above 0, at most the model's size (``limits``: the embedded default's ranges), the overlap
    below the tile. ``names``: what the tile and the overlap are called where the user typed them."""
    step = VAE_SPATIAL
    if height % step or width % step or height < step or width < step:
        raise ValueError(f"{names[0]} {height}x{width} (height x width) must be multiples of {step} pixels above 0")
    if limits and (height > limits["height"][1] or width > limits["width"][1]):
        raise ValueError(
            f"{names[0]} {height}x{width} is larger than the model takes ({limits['height'][1]}x{limits['width'][1]}): "
            "make the tile at most that"
        )
    if overlap % step or not 0 <= overlap < min(height, width):
        raise ValueError(
            f"{names[1]} {overlap} must be a multiple of {step} from 0 to {min(height, width) - step} (below the tile)"
        )
    return dict(tile=(height // step, width // step), tile_overlap=overlap // step)


def fuse_weights(length: int, fuse: str) -> torch.Tensor:
    """[length] positive float32 weights of a window's frames."""
    position = torch.arange(length, dtype=torch.float32)
    if fuse == "uniform":
        return torch.ones(length)
    if fuse == "pyramid":
        return torch.minimum(position + 1, length - position)
    if fuse == "gaussian":
        sigma = length / 4
        return torch.exp(-0.5 * ((position - (length - 1) / 2) / sigma) ** 2)
    raise ValueError(f"fuse {fuse!r} is not one of {', '.join(FUSES)}")


def spans(total: int, length: int, overlap: int, offset: int) -> list[tuple[int, int]]:
    """(start, stop) of windows of ``length`` over ``total`` cells, one every length - overlap from ``offset``; a
    window that would run past an end is moved inside, so every window is ``length`` long and every cell covered."""
    if total <= length:
        return [(0, total)]
    stride = length - overlap
    starts = range(offset - stride if offset else 0, total - overlap, stride)
    return sorted({(s, s + length) for s in (min(max(s, 0), total - length) for s in starts)})


def tile_spans(size: int, plan: WindowPlan, axis: int, step: int = 0, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of the spatial tiles along latent ``axis`` (0 height, 1 width) at sampling step ``step``; with
    ``shift`` they move ``align`` cells a step, as the frame windows do."""
    if plan.tile is None:
        return [(0, size)]
    stride = plan.tile[axis] - plan.tile_overlap
    offset = (step * align) % stride if plan.shift else 0
    return spans(size, plan.tile[axis], plan.tile_overlap, offset)


def window_spans(frames: int, plan: WindowPlan, step: int = 0, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of each window over ``frames`` latent frames at sampling step ``step``, in order.

    Windows start every ``plan.stride`` frames from an offset that moves ``align`` frames a step (with ``shift``);
    a window that would run past an end is moved inside, so every window is ``plan.length`` frames long (or the
    whole clip) and every frame is covered.
    """
    plan.check(frames, align)
    if frames <= plan.length:
        return [(0, frames)]
    offset = (step * align) % plan.stride if plan.shift else 0
    return spans(frames, plan.length, plan.overlap, offset)


class WindowedModel:
    """Calls like the DiT (and passes other attribute reads on to it): runs it on each window of x and fuses the
    velocities, per frame, with the plan's weights. The step, which places the windows, is found from t on the
    run's time grid ``times``, so every call of one step (solver stages, guidance passes) sees the same windows.
    ``align`` and ``spatial_align``: the schedule's largest temporal and spatial patch, which windows and tiles keep
    whole."""

    def __init__(self, model, plan: WindowPlan, times: list[float], align: int = 1, spatial_align: int = 1):
        self.model, self.plan, self.times, self.align = model, plan, list(times), align
        self.spatial_align = spatial_align
        self.calls = 0

    def __getattr__(self, name):
        if name == "model":  # not set yet (copy, pickle): don't recurse
            raise AttributeError(name)
        return getattr(self.model, name)

    def step_at(self, t: torch.Tensor) -> int:
        grid = torch.tensor(self.times, dtype=t.dtype).tolist()  # t arrives in the model's dtype
        return max(bisect_right(grid, call_time(t)) - 1, 0)

    def __call__(self, x, t, cap_feats, cap_mask, motion_score, patch: PatchSize, **options) -> torch.Tensor:
        """The model's call on each window (``options``, such as skip_layers, passed on), fused."""
        frames, height, width = x.shape[2:]  # x: [N, C, F, H, W]
        step = self.step_at(t)
        windows = [
            (f, h, w)
            for f in window_spans(frames, self.plan, step, self.align)
            for h in tile_spans(height, self.plan, 0, step, self.spatial_align)
            for w in tile_spans(width, self.plan, 1, step, self.spatial_align)
        ]
        if len(windows) == 1:
            self.calls += 1
            return self.model(x, t, cap_feats, cap_mask, motion_score, patch, **options)
        total = weight_sum = None
        for (f0, f1), (h0, h1), (w0, w1) in windows:
            self.calls += 1
            cells = (slice(f0, f1), slice(h0, h1), slice(w0, w1))
            window_t = t if t.ndim == 1 else t[(slice(None), *cells)]  # per-cell times [N, F, H, W] follow it
            v = self.model(
                x[(slice(None), slice(None), *cells)], window_t, cap_feats, cap_mask, motion_score, patch, **options
            )
            weights = (
                fuse_weights(f1 - f0, self.plan.fuse)[:, None, None]
                * fuse_weights(h1 - h0, self.plan.fuse)[None, :, None]
                * fuse_weights(w1 - w0, self.plan.fuse)[None, None, :]
            ).to(x.device)  # [F', H', W']
            if total is None:
                total = x.new_zeros(v.shape[:2] + x.shape[2:], dtype=torch.float32)  # [N, C, F, H, W]
                weight_sum = torch.zeros(x.shape[2:], device=x.device)
            total[(slice(None), slice(None), *cells)] += v.float() * weights
            weight_sum[cells] += weights
        return (total / weight_sum).to(x.dtype)  # every cell is covered: weight_sum > 0
