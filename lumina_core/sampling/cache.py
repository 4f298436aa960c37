"""Step caching: skip the transformer blocks on a step whose input barely changed since the last full step.

In the manner of TeaCache: every model call embeds its input (cheap) and measures the relative L1
change of the first block's modulated input against the previous call's; the changes add up since
the last full call, and while the sum stays under the threshold the blocks are skipped and the last
full call's residual (blocks' output minus their input tokens) is added to this call's tokens. The
final layer always runs. A residual is reused only on the same token grid and batch: the first call
at each patch size (or after the number of guidance passes changes) is always full, and so is every
call in the last ``final_steps`` steps, where the shapes' detail settles.

The cache is a setting of the run, not of the preset: ``sample(..., cache=StepCache(0.1))``. A
``CachedModel`` stands in for the DiT with the model's call signature, so the guidance code doesn't
know about it.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..models.nextdit import DiTInputs, PatchSize, adaln, call_time


def first_block_input(model, inputs: DiTInputs) -> torch.Tensor:
    """The first block's modulated attention input, norm(h) * (1 + scale): TeaCache's signal."""
    block = model.layers[0]
    scale = adaln(block.adaLN_modulation, inputs.c).chunk(4, dim=-1)[0]
    return block.attention_norm1(inputs.h) * (1 + scale)


def relative_l1(new: torch.Tensor, old: torch.Tensor) -> float:
    return float((new - old).abs().mean() / old.abs().mean().clamp_min(1e-12))


@dataclass(frozen=True)
class StepCache:
    """Step-caching settings: ``threshold`` on the summed relative change (0 or less: off), the number of
    last steps always run in full, and the signal measured on each call's embedded input."""

    threshold: float
    final_steps: int = 1
    signal: Callable[[object, DiTInputs], torch.Tensor] = first_block_input

    @property
    def active(self) -> bool:
        return self.threshold > 0

    def wrap(self, model, times: list[float]) -> "CachedModel":
        """``model`` with this cache, for a run over the time grid ``times``."""
        return CachedModel(model, self, times)


class CachedModel:
    """Calls like the DiT (and passes other attribute reads on to it), skipping its blocks where the cache allows.

    A call at an earlier time than the one before starts a new run and forgets the cache. ``full`` and
    ``skipped`` count the calls of this run that ran the blocks and that reused a residual.
    """

    def __init__(self, model, settings: StepCache, times: list[float]):
        self.model, self.settings = model, settings
        last = max(len(times) - 1 - settings.final_steps, 0)
        self.full_from = times[last]
        self.reset()

    def reset(self):
        self.full = self.skipped = 0
        self.last_t = float("inf")
        self.key: Optional[tuple] = None
        self.residual = self.signal = None
        self.change = 0.0

    def __getattr__(self, name):
        if name == "model":  # not set yet (copy, pickle): don't recurse
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, x, t, cap_feats, cap_mask, motion_score, patch: PatchSize, **options) -> torch.Tensor:
        if options.get("skip_layers"):  # skip-layer guidance's weakened pass: other blocks, never cached nor reused
            inputs = self.model.embed(x, t, cap_feats, cap_mask, motion_score, patch)
            return self.model.final(inputs, self.model.run_blocks(inputs, options["skip_layers"]))
        now = call_time(t)
        if now < self.last_t and self.full + self.skipped:
            self.reset()
        self.last_t = now
        inputs = self.model.embed(x, t, cap_feats, cap_mask, motion_score, patch)
        if self.reuse(inputs, now):
            self.skipped += 1
            h = inputs.h + self.residual
        else:
            self.full += 1
            h = self.model.run_blocks(inputs)
            self.residual, self.change = h - inputs.h, 0.0
        return self.model.final(inputs, h)

    def reuse(self, inputs: DiTInputs, now: float) -> bool:
        """Whether this call may reuse the last full call's residual; keeps the signal for the next call."""
        key = (inputs.patch, tuple(inputs.h.shape))
        signal = self.settings.signal(self.model, inputs)
        same_grid = key == self.key and self.residual is not None
        if same_grid:
            self.change += relative_l1(signal, self.signal)
        self.key, self.signal = key, signal
        before_end = now < float(torch.tensor(self.full_from, dtype=inputs.h.dtype))  # t arrives in the model's dtype
        return same_grid and before_end and self.change < self.settings.threshold
