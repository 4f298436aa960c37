"""The "auto" time shift: the time grid's shift from the number of tokens the model sees.

A video of more tokens keeps more of its picture at a given noise level, so sampling needs more of its steps near
the noisy end, which is what a larger shift gives (``schedules.time_grid``). ComfyUI's ModelSamplingLTXV sets
LTX-Video's shift this way: interpolated in the latent's token count between two anchors, extrapolated beyond them.
Here the anchors are the reference's own two presets at the size each was made for, so "auto" gives each preset's
shift at its own size and something in between, or beyond, elsewhere.
"""

import argparse
from typing import Iterable, Sequence, Union

from ..models.nextdit import PatchSize
from .presets import preset

AUTO = "auto"
"""The time-shift setting that asks for ``auto_time_shift`` of the latent the model samples."""

AUTO_SHIFT_ANCHORS = ((16_128, "f16F64R512"), (82_368, "f24F96R960"))
"""(tokens at the finest patch, preset): each of the reference's presets at its own video size. f16F64R512 is the
reference's generate.py default, 672x384 with 64 frames: latent 16 x 48 x 84, at 1x2 16 x 24 x 42 = 16,128 tokens
(shift 8). f24F96R960 is its README's 1248x704 with 96 frames: latent 24 x 88 x 156, at 1x2 24 x 44 x 78 = 82,368
tokens (shift 24). The -MultiScale presets share these shifts and sizes; the embedded presets (shift 3 and 9, one
size) are not anchors: they can't both be met, and they were tuned for a tiny model, not for a token count."""


def token_count(latent_shape: Sequence[int], patch_sizes: Iterable[PatchSize]) -> int:
    """Tokens of a latent [..., F, H, W] at the model's finest patch size (the one giving the most tokens): the
    count ``auto_time_shift`` reads, whatever patch schedule the sampler then follows."""
    frames, height, width = latent_shape[-3:]
    patches = [PatchSize(*p) for p in patch_sizes]
    if not patches:
        raise ValueError("token_count needs the model's patch sizes; got none")
    return max((frames // p.temporal) * (height // p.spatial) * (width // p.spatial) for p in patches)


def auto_time_shift(tokens: int) -> float:
    """The time shift for a latent of ``tokens`` tokens: linear in the token count through the anchors
    (``AUTO_SHIFT_ANCHORS``: 8 at 16,128 tokens, 24 at 82,368), extrapolated as a line beyond them.

    ModelSamplingLTXV's interpolated value is the exponent of its shift (Flux's mu: shift = e^mu); interpolating our
    shift's logarithm the same way passes through the same anchors but grows exponentially past them (about 2e8 at
    the largest video the pack accepts, 2048x2048 with 256 frames, where the line gives 257). Below the first
    anchor the line stays above 4.1 (4.12 at the toy world's 64 tokens), so the shift is always positive.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"auto_time_shift needs a positive whole token count, got {tokens!r}")
    (low_tokens, low_preset), (high_tokens, high_preset) = AUTO_SHIFT_ANCHORS
    low, high = preset(low_preset).time_shift, preset(high_preset).time_shift
    return low + (tokens - low_tokens) * (high - low) / (high_tokens - low_tokens)


def parse_time_shift(text: str) -> Union[float, str]:
    """A user-written time shift: a positive number, or "auto" (``AUTO``) for ``auto_time_shift``."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ValueError(f"time shift {text!r} must be a positive number or '{AUTO}' (from the token count)")
    return value


def time_shift_option(text: str) -> Union[float, str]:
    """``parse_time_shift`` as the command lines' argparse type (--time-shift), its message kept."""
    try:
        return parse_time_shift(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def resolve_time_shift(shift: Union[float, str], latent_shape: Sequence[int], patch_sizes: Iterable[PatchSize]):
    """``shift`` itself, or for ``AUTO`` the auto shift of a latent of ``latent_shape`` at the model's finest patch."""
    if shift == AUTO:
        return auto_time_shift(token_count(latent_shape, patch_sizes))
    return float(shift)
