"""Sampling: the preset table, time-aware schedules, guidance and the flow-matching solvers.

``presets`` holds every preset whole; ``schedules`` the time-aware values and the shifted
time grid; ``guidance`` one guided model evaluation; ``solvers`` the integration loop;
``cache`` step caching, a speed option of a run; ``windows`` long videos in fused windows of frames;
``time_shift`` the "auto" time shift from the token count.
"""

from .cache import CachedModel, StepCache
from .guidance import NO_MOTION, guided_velocity, renorm_per_sample
from .presets import DEFAULT_PRESET, PRESETS, SOLVERS, SamplingConfig, preset
from .schedules import (
    TimeAware,
    check_time_aware,
    format_time_aware,
    parse_time_aware,
    scale_and_cutoff,
    schedule_table,
    time_grid,
    truncated_scale,
    value_at,
    value_from_table,
)
from .solvers import check_latent_size, handoff_times, integrate, make_noise, sample
from .time_shift import AUTO, auto_time_shift, parse_time_shift, resolve_time_shift, token_count
from .windows import FUSES, REFINE_START, WindowedModel, WindowPlan, fuse_weights, tile_spans, window_spans

__all__ = [
    "AUTO",
    "DEFAULT_PRESET",
    "FUSES",
    "REFINE_START",
    "CachedModel",
    "NO_MOTION",
    "PRESETS",
    "SOLVERS",
    "SamplingConfig",
    "StepCache",
    "TimeAware",
    "WindowPlan",
    "WindowedModel",
    "auto_time_shift",
    "check_latent_size",
    "check_time_aware",
    "format_time_aware",
    "fuse_weights",
    "guided_velocity",
    "handoff_times",
    "integrate",
    "make_noise",
    "parse_time_aware",
    "parse_time_shift",
    "preset",
    "renorm_per_sample",
    "resolve_time_shift",
    "sample",
    "scale_and_cutoff",
    "schedule_table",
    "time_grid",
    "token_count",
    "truncated_scale",
    "value_at",
    "value_from_table",
    "tile_spans",
    "window_spans",
]
