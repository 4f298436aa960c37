"""Time-aware settings and the shifted time grid, in the reference's conventions.

Time runs from t=0 (noise) to t=1 (data) on the grid ``linspace(0, 1, steps)`` shifted by
``t / (t + s - s*t)``; ``steps`` grid points mean ``steps - 1`` model calls. Every per-step
setting may be *time-aware*: a plain value, or ``(v0, (thr1, v1), (thr2, v2), ...)`` meaning v0
until t reaches thr1, then v1, and so on. The patch schedule is such a value over
"{temporal}x{spatial}" strings, which is all multi-scale sampling is: each step patchifies the
same latent at the scale in force, so switching scale needs no re-noising or resizing.
"""

import ast
from typing import Union

import torch

from ..models.nextdit import PatchSize

TimeAware = Union[float, int, str, tuple]


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
    elif (
        isinstance(schedule, (tuple, list))
        and schedule
        and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in schedule[1:])
    ):
        values = [schedule[0]] + [p[1] for p in schedule[1:]]
        thresholds = [p[0] for p in schedule[1:]]
    else:
        raise ValueError(f"{form}; got {schedule!r}")
    numeric = kind in (int, float)
    for v in values:
        wrong_number = numeric and (isinstance(v, bool) or not isinstance(v, (int, float)))
        if wrong_number or (not numeric and not isinstance(v, kind)):
            raise ValueError(f"{form}; {v!r} is not a {kind.__name__}")
    if any(not isinstance(th, (int, float)) or not 0 <= th <= 1 for th in thresholds) or thresholds != sorted(
        thresholds
    ):
        raise ValueError(f"{form}; thresholds {thresholds} are not increasing values in [0, 1]")
    if kind is str:
        for v in values:
            PatchSize.parse(v)
    if isinstance(schedule, (int, float, str)):
        return schedule
    return (schedule[0], *((p[0], p[1]) for p in schedule[1:]))  # lists (from JSON) become tuples


def parse_time_aware(text: str, name: str, kind: type) -> TimeAware:
    """Parse a user-written time-aware setting such as ``("2x4", (0.03, "2x2"), (0.125, "1x2"))`` or ``6.0``."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        if kind is str and "x" in text and "," not in text:
            value = text.strip()
        else:
            raise ValueError(
                f"{name}: can't read {text!r}; write a value or (v0, (t1, v1), ...), e.g. (20, (0.2, 0))"
            ) from None
    if kind is float and isinstance(value, int):
        value = float(value)
    return check_time_aware(value, name, kind)


def format_time_aware(value: TimeAware) -> str:
    """The inverse of parse_time_aware, as the reference writes it: ``("2x4", (0.25, "2x2"))``."""
    return repr(value).replace("'", '"')


def scale_and_cutoff(scale: TimeAware) -> tuple[float, float]:
    """A guidance scale that stops at a time, (s, (t, 0)), as (s, t); a constant scale s as (s, 1.0)."""
    if isinstance(scale, (int, float)):
        return float(scale), 1.0
    value, (cutoff, _) = scale
    return float(value), float(cutoff)


def truncated_scale(scale: float, cutoff: float) -> TimeAware:
    """The inverse of scale_and_cutoff: the scale to the end at cutoff >= 1 (or when it is 0), else the scale
    until t reaches cutoff, then 0."""
    return float(scale) if cutoff >= 1 or scale == 0 else (float(scale), (float(cutoff), 0.0))


def time_grid(steps: int, shift: float) -> torch.Tensor:
    """[steps] float32 times from 0 to 1, crowded towards t=0 (the noisy end) for shift > 1."""
    t = torch.linspace(0, 1, steps)
    return t / (t + shift - shift * t)


TABLE_SLOTS = 8
"""Switch points a time-aware setting may have in its table form (the presets use at most two)."""
TABLE_UNIT = 1_000_000
"""Table entries are integers in millionths: a framework that casts float conditions to the model's dtype (bf16
keeps three digits) leaves integers alone, so a switch time stays exactly where it was written."""


def schedule_table(schedule: TimeAware, slots: int = TABLE_SLOTS) -> torch.Tensor:
    """A numeric time-aware setting as a fixed-size tensor [2 * slots] int64: the switch times (the first is 0), then
    the values, in millionths; unused slots repeat the last value from a time never reached. Tables of any two
    settings have one shape, so they stack into a batch."""
    schedule = check_time_aware(schedule, "schedule", float)
    pairs = [(0.0, schedule)] if isinstance(schedule, (int, float)) else [(0.0, schedule[0]), *schedule[1:]]
    if len(pairs) > slots:
        raise ValueError(f"a time-aware setting in table form holds at most {slots - 1} switches, got {len(pairs) - 1}")
    never = 2.0  # past t = 1, the end of sampling
    pairs += [(never, pairs[-1][1])] * (slots - len(pairs))
    return torch.tensor([round(p[0] * TABLE_UNIT) for p in pairs] + [round(p[1] * TABLE_UNIT) for p in pairs])


def value_from_table(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The values of tables [B, 2 * slots] at times t [B] -> [B] float64, by value_at's rule (switch once t >= thr)."""
    thresholds, values = (part.double() / TABLE_UNIT for part in table.reshape(table.shape[0], 2, -1).unbind(1))
    reached = (t.double()[:, None] >= thresholds).sum(dim=1).clamp_min(1)  # slot 0 starts at t = 0
    return values.gather(1, (reached - 1)[:, None]).squeeze(1)
