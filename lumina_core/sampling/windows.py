"""Long videos by MultiDiffusion in time: the model runs on overlapping windows of latent frames and, at every
model call, the windows' velocities are fused into one, weighted per frame, so the clip is denoised as one whole.

A ``WindowPlan`` says how long a window is, how much neighbours overlap, how their predictions are weighted
(uniform, pyramid, gaussian) and whether the windows shift from step to step, so that no window border stays at
one frame for the whole run. ``WindowedModel`` stands in for the DiT with the model's call signature, so the
guidance code (CFG, the motion score, motion guidance) and the solvers' ``known=`` hook don't know about it. Every
window is aligned to the temporal patch, so each one is a clip the model can take at every patch size of the
schedule. Each window sees its own frames at RoPE positions from 0, as the model saw its training clips.
"""

from bisect import bisect_right
from dataclasses import dataclass

import torch

from ..models.nextdit import PatchSize, call_time
from ..request import VAE_TEMPORAL

FUSES = ("uniform", "pyramid", "gaussian")


@dataclass(frozen=True)
class WindowPlan:
    """Windows over latent frames: ``length`` frames each, neighbours sharing ``overlap``; ``fuse`` weighs each
    window's frames (uniform: equally; pyramid: rising linearly towards the window's middle; gaussian: a bell over
    it, sigma a quarter of the window); ``shift`` moves the windows by one temporal patch per step."""

    length: int
    overlap: int
    fuse: str = "pyramid"
    shift: bool = True

    def __post_init__(self):
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
    def stride(self) -> int:
        return self.length - self.overlap

    def covers(self, frames: int) -> bool:
        """Whether one window takes all ``frames``: the plain path, sampled without windows."""
        return frames <= self.length

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


def window_spans(frames: int, plan: WindowPlan, step: int = 0, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of each window over ``frames`` latent frames at sampling step ``step``, in order.

    Windows start every ``plan.stride`` frames from an offset that moves ``align`` frames a step (with ``shift``);
    a window that would run past an end is moved inside, so every window is ``plan.length`` frames long (or the
    whole clip) and every frame is covered.
    """
    plan.check(frames, align)
    if plan.covers(frames):
        return [(0, frames)]
    offset = (step * align) % plan.stride if plan.shift else 0
    starts = range(offset - plan.stride if offset else 0, frames - plan.overlap, plan.stride)
    return sorted({(s, s + plan.length) for s in (min(max(s, 0), frames - plan.length) for s in starts)})


class WindowedModel:
    """Calls like the DiT (and passes other attribute reads on to it): runs it on each window of x and fuses the
    velocities, per frame, with the plan's weights. The step, which places the windows, is found from t on the
    run's time grid ``times``, so every call of one step (solver stages, guidance passes) sees the same windows."""

    def __init__(self, model, plan: WindowPlan, times: list[float], align: int = 1):
        self.model, self.plan, self.times, self.align = model, plan, list(times), align
        self.calls = 0

    def __getattr__(self, name):
        if name == "model":  # not set yet (copy, pickle): don't recurse
            raise AttributeError(name)
        return getattr(self.model, name)

    def step_at(self, t: torch.Tensor) -> int:
        grid = torch.tensor(self.times, dtype=t.dtype).tolist()  # t arrives in the model's dtype
        return max(bisect_right(grid, call_time(t)) - 1, 0)

    def __call__(self, x, t, cap_feats, cap_mask, motion_score, patch: PatchSize) -> torch.Tensor:
        frames = x.shape[2]  # x: [N, C, F, H, W]
        spans = window_spans(frames, self.plan, self.step_at(t), self.align)
        if len(spans) == 1:
            self.calls += 1
            return self.model(x, t, cap_feats, cap_mask, motion_score, patch)
        total = weight_sum = None
        for start, stop in spans:
            self.calls += 1
            window_t = t if t.ndim == 1 else t[:, start:stop]  # per-cell times [N, F, H, W] follow the window
            v = self.model(x[:, :, start:stop], window_t, cap_feats, cap_mask, motion_score, patch).float()
            weights = fuse_weights(stop - start, self.plan.fuse).to(x.device)
            if total is None:
                total = x.new_zeros(v.shape[:2] + x.shape[2:], dtype=torch.float32)  # [N, C, F, H, W]
                weight_sum = torch.zeros(frames, device=x.device)
            total[:, :, start:stop] += v * weights[:, None, None]
            weight_sum[start:stop] += weights
        return (total / weight_sum[:, None, None]).to(x.dtype)  # every frame is covered: weight_sum > 0
