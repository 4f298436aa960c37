"""Flow-matching sampling for Lumina-Video: time-aware schedules, CFG, and multi-scale patching.

Time runs from t=0 (noise) to t=1 (data) on the reference's grid ``linspace(0, 1, steps)``
shifted by ``t / (t + s - s*t)``; ``steps`` grid points mean ``steps - 1`` model calls.
Every per-step setting may be *time-aware*: a plain value, or ``(v0, (thr1, v1), (thr2, v2), ...)``
meaning v0 until t reaches thr1, then v1, and so on. The patch schedule is such a value
over "{f_patch}x{patch}" strings, which is all multi-scale sampling is: each step patchifies
the same latent at the scale in force, so switching scale needs no re-noising or resizing.
"""

import ast
from dataclasses import dataclass, replace
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

TimeAware = Union[float, int, str, tuple]
StepCallback = Callable[[int, int, tuple[int, int], torch.Tensor], None]
SOLVERS = ("euler", "midpoint", "heun")
NO_MOTION = -1.0
"""Any negative motion score leaves the motion condition out (the model's motion-dropout case)."""


def value_at(schedule: TimeAware, t: float):
    """The value of a time-aware setting at time t (the reference's rule: switch once t >= thr)."""
    if isinstance(schedule, (int, float, str)):
        return schedule
    value = schedule[0]
    for threshold, next_value in schedule[1:]:
        if t < threshold:
            break
        value = next_value
    return value


def check_time_aware(schedule: TimeAware, name: str, kind: type) -> TimeAware:
    """Validate a time-aware setting; raises ValueError naming the setting and the expected form."""
    form = f"{name} must be a {kind.__name__} or (v0, (t1, v1), ...) with increasing t in [0, 1]"
    if isinstance(schedule, (int, float, str)) and not isinstance(schedule, bool):
        values, thresholds = [schedule], []
    elif isinstance(schedule, (tuple, list)) and schedule and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in schedule[1:]):
        values = [schedule[0]] + [p[1] for p in schedule[1:]]
        thresholds = [p[0] for p in schedule[1:]]
    else:
        raise ValueError(f"{form}; got {schedule!r}")
    numeric = kind in (int, float)
    for v in values:
        if (numeric and (isinstance(v, bool) or not isinstance(v, (int, float)))) or (not numeric and not isinstance(v, kind)):
            raise ValueError(f"{form}; {v!r} is not a {kind.__name__}")
    if any(not isinstance(th, (int, float)) or not 0 <= th <= 1 for th in thresholds) or thresholds != sorted(thresholds):
        raise ValueError(f"{form}; thresholds {thresholds} are not increasing values in [0, 1]")
    if kind is str:
        for v in values:
            parse_patch(v)
    if isinstance(schedule, (int, float, str)):
        return schedule
    return (schedule[0], *((p[0], p[1]) for p in schedule[1:]))  # lists (from JSON) become tuples


def scale_and_cutoff(scale: TimeAware) -> tuple[float, float]:
    """A guidance scale that stops at a time, (s, (t, 0)), as (s, t); a constant scale s as (s, 1.0)."""
    if isinstance(scale, (int, float)):
        return float(scale), 1.0
    value, (cutoff, _) = scale
    return float(value), float(cutoff)


def truncated_scale(scale: float, cutoff: float) -> TimeAware:
    """The inverse of scale_and_cutoff: the scale to the end at cutoff >= 1 (or when it is 0), else the scale until t
    reaches cutoff, then 0."""
    return float(scale) if cutoff >= 1 or scale == 0 else (float(scale), (float(cutoff), 0.0))


def parse_time_aware(text: str, name: str, kind: type) -> TimeAware:
    """Parse a user-written time-aware setting such as ``("2x4", (0.03, "2x2"), (0.125, "1x2"))`` or ``6.0``."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        if kind is str and "x" in text and "," not in text:
            value = text.strip()
        else:
            raise ValueError(f"{name}: can't read {text!r}; write a value or (v0, (t1, v1), ...), e.g. (20, (0.2, 0))") from None
    if kind is float and isinstance(value, int):
        value = float(value)
    return check_time_aware(value, name, kind)


def parse_patch(spec: str) -> tuple[int, int]:
    """"2x4" -> (f_patch=2, patch=4), the reference's "{temporal}x{spatial}" naming."""
    try:
        f_patch, patch = (int(part) for part in spec.lower().split("x"))
    except (AttributeError, ValueError):
        raise ValueError(f"patch size {spec!r} must be written '{{temporal}}x{{spatial}}', e.g. '1x2' or '2x4'") from None
    return f_patch, patch


@dataclass(frozen=True)
class SamplingConfig:
    """Everything a sampling run needs besides the model, the noise and the prompts.

    ``cfg`` is the reference's scale: out = cond + cfg * (cond - uncond), so cfg=20 is a
    conventional guidance scale of 21, and cfg=0 skips the unconditional pass entirely.
    ``renorm`` caps the guided output's norm at renorm * |cond| per sample (<= 0: off).
    ``motion`` conditions the positive pass and ``neg_motion`` the negative one; dynamics
    follow their difference. A negative motion value means "no motion condition".
    ``motion_cfg`` adds motion guidance, motion_cfg * (cond - cond without its motion score), in a
    third pass: it isolates what the motion score does from what the caption does, so the motion
    input sets the speed even where a caption the model never saw pulls it. 0 (the reference)
    skips that pass.
    """

    steps: int = 70
    time_shift: float = 24.0
    cfg: TimeAware = (20.0, (0.2, 0.0))
    renorm: float = 2.0
    motion: TimeAware = 6.0
    neg_motion: TimeAware = (2.0, (0.05, 6.0))
    motion_cfg: TimeAware = 0.0
    patch: TimeAware = "1x2"
    solver: str = "euler"

    def __post_init__(self):
        if self.steps < 2:
            raise ValueError(f"steps must be at least 2 (grid points, the reference's convention), got {self.steps}")
        if self.time_shift <= 0:
            raise ValueError(f"time_shift must be positive, got {self.time_shift}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver {self.solver!r} is not one of {SOLVERS}")
        for name, kind in (("cfg", float), ("motion", float), ("neg_motion", float), ("motion_cfg", float), ("patch", str)):
            check_time_aware(getattr(self, name), name, kind)

    def with_(self, **changes) -> "SamplingConfig":
        return replace(self, **changes)

    def patch_schedule(self) -> list[tuple[int, int]]:
        """The (f_patch, patch) used at each model call, in order."""
        return [parse_patch(value_at(self.patch, float(t))) for t in time_grid(self.steps, self.time_shift)[:-1]]

    def patch_sizes(self) -> set[tuple[int, int]]:
        return set(self.patch_schedule())


PRESETS = {
    "f24F96R960": SamplingConfig(steps=70, time_shift=24.0, renorm=2.0, cfg=(20.0, (0.2, 0.0)), patch="1x2"),
    "f24F96R960-MultiScale": SamplingConfig(
        steps=70, time_shift=24.0, renorm=2.0, cfg=(20.0, (0.2, 0.0)), patch=("2x4", (0.03, "2x2"), (0.125, "1x2"))
    ),
    "f16F64R512": SamplingConfig(steps=70, time_shift=8.0, renorm=-1.0, cfg=(12.0, (0.4, 0.0)), patch="1x2"),
    "f16F64R512-MultiScale": SamplingConfig(
        steps=70, time_shift=8.0, renorm=-1.0, cfg=(12.0, (0.4, 0.0)), patch=("2x4", (0.075, "2x2"), (0.3, "1x2"))
    ),
}


def time_grid(steps: int, shift: float) -> torch.Tensor:
    """[steps] float32 times from 0 to 1, crowded towards t=0 (the noisy end) for shift > 1."""
    t = torch.linspace(0, 1, steps)
    return t / (t + shift - shift * t)


@dataclass
class TextCondition:
    """Caption features [B, L, D] with their mask [B, L] (1 = real token, right padding)."""

    features: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        if self.features.ndim != 3 or self.mask.shape != self.features.shape[:2]:
            raise ValueError(f"caption features {tuple(self.features.shape)} and mask {tuple(self.mask.shape)} don't match ([B, L, D] and [B, L])")
        if (self.mask.sum(dim=1) == 0).any():
            raise ValueError("a caption has no tokens (its mask is all zero); encode at least the system prompt")

    def repeat_to(self, batch: int) -> "TextCondition":
        if self.features.shape[0] == batch:
            return self
        if self.features.shape[0] != 1:
            raise ValueError(f"caption batch {self.features.shape[0]} doesn't match the latent batch {batch}")
        return TextCondition(self.features.expand(batch, -1, -1), self.mask.expand(batch, -1))


def concat_conditions(conds: list[TextCondition]) -> TextCondition:
    """Stack conditions along the batch, right-padding captions to the longest."""
    length = max(c.features.shape[1] for c in conds)
    feats = [F.pad(c.features, (0, 0, 0, length - c.features.shape[1])) for c in conds]
    masks = [F.pad(c.mask, (0, length - c.mask.shape[1])) for c in conds]
    return TextCondition(torch.cat(feats), torch.cat(masks))


def guided_velocity(model, x, t: float, positive: TextCondition, negative: Optional[TextCondition], config: SamplingConfig):
    """One guided model evaluation at time t -> (velocity [B, C, F, H, W] float32, (f_patch, patch)).

    Up to three passes share one batch: the positive one; the negative one while the CFG scale in
    force is non-zero; the positive caption without its motion score while motion guidance is.
    """
    batch = x.shape[0]
    f_patch, patch = parse_patch(value_at(config.patch, t))
    cfg = float(value_at(config.cfg, t))
    motion_value = float(value_at(config.motion, t))
    motion_cfg = float(value_at(config.motion_cfg, t)) if motion_value >= 0 else 0.0
    guided = cfg != 0 and negative is not None
    model_dtype = next(model.parameters()).dtype
    motion = [motion_value] * batch
    conds = [positive]
    if guided:
        motion += [float(value_at(config.neg_motion, t))] * batch
        conds.append(negative)
    if motion_cfg != 0:
        motion += [NO_MOTION] * batch
        conds.append(positive)
    cond = concat_conditions(conds)
    n = len(conds) * batch
    out = model(
        x.to(model_dtype).repeat(len(conds), 1, 1, 1, 1),
        torch.full((n,), t, device=x.device, dtype=model_dtype),
        cond.features.to(device=x.device, dtype=model_dtype),
        cond.mask.to(x.device),
        torch.tensor(motion, device=x.device, dtype=model_dtype),
        patch,
        f_patch,
    ).float()
    passes = iter(out.split(batch))
    v_cond = v = next(passes)
    if guided:
        v = v_cond + cfg * (v_cond - next(passes))
        if config.renorm > 0:
            v = renorm_per_sample(v, v_cond, config.renorm)
    if motion_cfg != 0:
        v = v + motion_cfg * (v_cond - next(passes))
    return v, (f_patch, patch)


def renorm_per_sample(guided: torch.Tensor, cond: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Scale each sample of ``guided`` down so that its norm is at most max_ratio * |cond| of that sample."""
    dims = tuple(range(1, guided.ndim))
    limit = torch.linalg.vector_norm(cond, dim=dims, keepdim=True) * max_ratio
    norm = torch.linalg.vector_norm(guided, dim=dims, keepdim=True)
    return torch.where(norm > limit, guided * (limit / norm), guided)


@torch.no_grad()
def integrate(
    velocity: Callable[[torch.Tensor, float], tuple[torch.Tensor, object]],
    noise: torch.Tensor,
    times: list[float],
    solver: str = "euler",
    callback: Optional[Callable[[int, int, object, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) over ``times`` from noise (t=0) towards data; the state stays float32.

    ``velocity`` returns (v, info); ``callback(step, total, info, x)`` runs after every step with
    the info of the step's first evaluation: use it for progress, previews, and cancellation
    (raise from it to stop).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver {solver!r} is not one of {SOLVERS}")
    x = noise.float()
    total = len(times) - 1
    for step, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
        dt = t1 - t0
        v, info = velocity(x, t0)
        if solver == "midpoint":
            v, _ = velocity(x + 0.5 * dt * v, t0 + 0.5 * dt)
        elif solver == "heun":
            v_end, _ = velocity(x + dt * v, t1)
            v = 0.5 * (v + v_end)
        x = x + dt * v
        if callback is not None:
            callback(step + 1, total, info, x)
    return x


def sample(
    model,
    noise: torch.Tensor,
    positive: TextCondition,
    negative: Optional[TextCondition],
    config: SamplingConfig,
    callback: Optional[StepCallback] = None,
) -> torch.Tensor:
    """Sample a video latent [B, C, F, H, W] from noise with the Lumina-Video model under ``config``.

    ``callback(step, total, (f_patch, patch), x)`` runs after every step.
    """
    check_latent_size(model, noise.shape, config)
    batch = noise.shape[0]
    positive = positive.repeat_to(batch)
    negative = None if negative is None else negative.repeat_to(batch)

    def velocity(x, t):
        return guided_velocity(model, x, t, positive, negative, config)

    return integrate(velocity, noise, time_grid(config.steps, config.time_shift).tolist(), config.solver, callback)


def check_latent_size(model, shape, config: SamplingConfig):
    """Refuse latent sizes the model can't take under this patch schedule, before any work is done."""
    if len(shape) != 5:
        raise ValueError(f"latent must be [B, C, F, H, W], got shape {tuple(shape)}")
    _, channels, frames, height, width = shape
    if channels != model.in_channels:
        raise ValueError(f"latent has {channels} channels, the model expects {model.in_channels}")
    for f_patch, patch in sorted(config.patch_sizes()):
        if (f_patch, patch) not in model.patch_sizes:
            raise ValueError(f"the patch schedule uses {f_patch}x{patch}, which this model lacks; it has {model.patch_sizes}")
        if height % patch or width % patch:
            raise ValueError(
                f"latent {height}x{width} is not divisible by patch {patch}; the video's height and width must be multiples of {8 * patch}"
            )
        if frames > 1 and frames % f_patch:
            raise ValueError(
                f"{frames} latent frames can't take the temporal patch {f_patch} ({f_patch}x{patch} is in the schedule); "
                f"use an even latent frame count (a multiple of {4 * f_patch} video frames)"
            )
        grid = (max(frames // f_patch, 1), height // patch, width // patch)
        limits = model.rope.axes_lens
        if any(n > limit for n, limit in zip(grid, limits)):
            raise ValueError(f"at patch {f_patch}x{patch} the token grid {grid} exceeds the RoPE tables {limits}; use fewer frames or a smaller size")


def make_noise(shape, seed: int, device=None) -> torch.Tensor:
    """Seeded float32 noise [B, ...]; item i depends only on seed + i, so batch size doesn't change a video."""
    items = [torch.randn(tuple(shape[1:]), generator=torch.Generator().manual_seed(seed + i)) for i in range(shape[0])]
    return torch.stack(items).to(device)
