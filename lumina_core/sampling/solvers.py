"""Flow-matching integration from noise to a video latent, and the seeded noise it starts from."""

from typing import Callable, Optional

import torch

from ..models.nextdit import PatchSize
from ..models.text import TextCondition
from .cache import StepCache
from .guidance import guided_velocity
from .presets import SOLVERS, SamplingConfig
from .schedules import value_at
from .windows import WindowedModel, WindowPlan

StepCallback = Callable[[int, int, PatchSize, torch.Tensor], None]


@torch.no_grad()
def integrate(
    velocity: Callable[[torch.Tensor, float], tuple[torch.Tensor, object]],
    noise: torch.Tensor,
    times: list[float],
    solver: str = "euler",
    callback: Optional[Callable[[int, int, object, torch.Tensor], None]] = None,
    known=None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) over ``times`` from noise (t=0) towards data; the state stays float32.

    ``velocity`` returns (v, info); ``callback(step, total, info, x)`` runs after every step with
    the info of the step's first evaluation: use it for progress, previews, and cancellation
    (raise from it to stop). ``known`` (a ``conditioning.Conditioning``) sets the state's known region
    after every step, and redoes each step ``known.resample`` times from the state noised back.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver {solver!r} is not one of {SOLVERS}")

    def step(x, t0, t1):
        dt = t1 - t0
        v, info = velocity(x, t0)
        if solver == "midpoint":
            v, _ = velocity(x + 0.5 * dt * v, t0 + 0.5 * dt)
        elif solver == "heun":
            v_end, _ = velocity(x + dt * v, t1)
            v = 0.5 * (v + v_end)
        return x + dt * v, info

    if known is not None and known.mechanism == "timestep" and known.keep is not None:
        return integrate_cell_times(velocity, noise, times, solver, callback, known)
    x = noise.float()
    if known is not None:
        noise = x
        x = known.apply(known.start(x, times[0]), times[0], noise)
        generator = torch.Generator(x.device).manual_seed(known.seed) if known.resample else None
    total = len(times) - 1
    for index, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
        x, info = step(x, t0, t1)
        if known is not None:
            x = known.apply(x, t1, noise)
            for _ in range(known.resample if t1 < 1 else 0):
                x = known.apply(step(known.renoise(x, t1, t0, generator), t0, t1)[0], t1, noise)
        if callback is not None:
            callback(index + 1, total, info, x)
    return x


def integrate_cell_times(velocity, noise: torch.Tensor, times: list[float], solver: str, callback, known):
    """``integrate`` with per-token timesteps: each latent cell moves from its time at t0 to its time at t1
    (``known.cell_times``), the model told every cell's time, so cells kept at strength 1 never move."""

    def step(x, t0, t1):
        cells0, cells1 = known.cell_times(t0), known.cell_times(t1)  # [B or 1, K, h, w]
        v, info = velocity(x, t0, cells0)
        if solver == "midpoint":
            middle = t0 + 0.5 * (t1 - t0)
            cells_mid = known.cell_times(middle)
            v, _ = velocity(x + (cells_mid - cells0)[:, None] * v, middle, cells_mid)
        elif solver == "heun":
            v_end, _ = velocity(x + (cells1 - cells0)[:, None] * v, t1, cells1)
            v = 0.5 * (v + v_end)
        return x + (cells1 - cells0)[:, None] * v, info

    x = known.start(noise.float(), times[0])
    total = len(times) - 1
    for index, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
        x, info = step(x, t0, t1)
        if callback is not None:
            callback(index + 1, total, info, x)
    return x


def sample(
    model,
    noise: torch.Tensor,
    positive: TextCondition,
    negative: Optional[TextCondition],
    config: SamplingConfig,
    callback: Optional[StepCallback] = None,
    cache: Optional[StepCache] = None,
    known=None,
    windows: Optional[WindowPlan] = None,
    stop: float = 1.0,
) -> torch.Tensor:
    """Sample a video latent [B, C, F, H, W] from noise with the Lumina-Video model under ``config``.

    ``callback(step, total, patch_size, x)`` runs after every step. ``cache`` (step caching, see
    ``sampling/cache.py``) skips the transformer blocks on steps whose input barely changed. ``known``
    (``conditioning.Conditioning``: image-to-video, keyframes, extension, video-to-video, inpainting) holds
    its known region by replacement or per-token timesteps and may start later on the time grid; None is plain
    text-to-video.
    ``windows`` (``windows.py``) samples a clip longer than the model takes in fused overlapping windows of latent
    frames; a plan whose window covers the clip, or None, is the plain path.
    ``stop`` < 1 ends sampling at that time, still noisy at level 1 - stop, for a denoising decoder to finish
    (LTX-Video's hand-off; ``handoff_times``).
    """
    frames, height, width = noise.shape[2:]
    windowed = windows is not None and not windows.covers(frames, height, width)
    align = max(p.temporal for p in config.patch_sizes())
    spatial_align = max(p.spatial for p in config.patch_sizes())
    checked = noise.shape
    if windowed:
        windows.check(frames, align)
        windows.check_tiles(height, width, spatial_align)
        if cache is not None and cache.active:
            raise ValueError("step caching can't be combined with windows yet: set the cache threshold to 0")
        tile = windows.tile or (height, width)
        checked = (*noise.shape[:2], min(frames, windows.length), min(height, tile[0]), min(width, tile[1]))
    check_latent_size(model, checked, config)
    times = config.times()
    if known is not None:
        known.check_shape(noise.shape)
        known, times = known.to(noise.device), known.times(times)
    times = handoff_times(times, stop)
    batch = noise.shape[0]
    positive = positive.repeat_to(batch)
    negative = None if negative is None else negative.repeat_to(batch)
    if cache is not None and cache.active:
        model = cache.wrap(model, times)
    if windowed:
        model = WindowedModel(model, windows, times, align, spatial_align)

    def velocity(x, t, cell_times=None):
        return guided_velocity(model, x, t, positive, negative, config, cell_times)

    return integrate(velocity, noise, times, config.solver, callback, known)


def handoff_times(times: list[float], stop: float) -> list[float]:
    """The time grid cut at ``stop`` (0 noise, 1 data): its points before it, then ``stop`` itself. A grid that
    starts at or after ``stop`` (video-to-video at a low denoise) keeps its start and takes no step."""
    if not 0 < stop <= 1:
        raise ValueError(f"stop {stop}: sampling can end at a time in (0, 1] (1: the clean end)")
    if stop >= times[-1]:
        return times
    before = [t for t in times if t < stop]
    return [*before, stop] if before else times[:1]


def check_latent_size(model, shape, config: SamplingConfig):
    """Refuse latent sizes the model can't take under this patch schedule, and skip layers it lacks, before any
    work is done."""
    if any(float(value_at(config.skip_guidance, t)) != 0 for t in config.times()[:-1]):
        for index in config.skip_layers:
            model.layer_index(index)
    if len(shape) != 5:
        raise ValueError(f"latent must be [B, C, F, H, W], got shape {tuple(shape)}")
    _, channels, frames, height, width = shape
    if channels != model.in_channels:
        raise ValueError(f"latent has {channels} channels, the model expects {model.in_channels}")
    for patch in sorted(config.patch_sizes()):
        if patch not in model.patch_sizes:
            have = ", ".join(map(str, model.patch_sizes))
            raise ValueError(f"the patch schedule uses {patch}, which this model lacks; it has {have}")
        if height % patch.spatial or width % patch.spatial:
            raise ValueError(
                f"latent {height}x{width} is not divisible by patch {patch.spatial}; "
                f"the video's height and width must be multiples of {8 * patch.spatial}"
            )
        if frames > 1 and frames % patch.temporal:
            raise ValueError(
                f"{frames} latent frames can't take the temporal patch {patch.temporal} ({patch} is in the schedule); "
                f"use an even latent frame count (a multiple of {4 * patch.temporal} video frames)"
            )
        grid = (max(frames // patch.temporal, 1), height // patch.spatial, width // patch.spatial)
        limits = model.rope.axes_lens
        if any(n > limit for n, limit in zip(grid, limits)):
            raise ValueError(
                f"at patch {patch} the token grid {grid} exceeds the RoPE tables {limits}; "
                "use fewer frames or a smaller size"
            )


def make_noise(shape, seed: int, device=None) -> torch.Tensor:
    """Seeded float32 noise [B, ...]; item i depends only on seed + i, so batch size doesn't change a video."""
    items = [torch.randn(tuple(shape[1:]), generator=torch.Generator().manual_seed(seed + i)) for i in range(shape[0])]
    return torch.stack(items).to(device)
