"""The motion-score condition: how much the video moves."""

from __future__ import annotations

from ..lumina_core.pipeline import EMBEDDED_PRESETS
from ..lumina_core.sampler import scale_and_cutoff, truncated_scale
from ._comfy import io
from .sockets import LuminaMotion, Motion

# The reference's inference settings (configs/sample: motion 6.0, negMotion (2.0, (0.05, 6.0))).
DEFAULT_MOTION, DEFAULT_NEG_START, DEFAULT_NEG_AFTER, DEFAULT_SWITCH = 6.0, 2.0, 6.0, 0.05
# Motion guidance is this pack's addition, tuned for the embedded default; the reference has none (0).
DEFAULT_MOTION_CFG, DEFAULT_MOTION_CFG_UNTIL = scale_and_cutoff(EMBEDDED_PRESETS["embedded"].motion_cfg)


def motion_condition(
    motion: float,
    negative_motion_start: float,
    negative_motion_after: float,
    switch_t: float,
    motion_guidance: float = DEFAULT_MOTION_CFG,
    motion_guidance_until: float = DEFAULT_MOTION_CFG_UNTIL,
) -> Motion:
    """The node's widgets (same names) as the time-aware values the sampler reads: the negative pass
    switches once t reaches ``switch_t``; motion guidance runs until t reaches ``motion_guidance_until``."""
    for name, value in (
        ("motion", motion),
        ("negative_motion_start", negative_motion_start),
        ("negative_motion_after", negative_motion_after),
        ("motion_guidance", motion_guidance),
    ):
        if value != value or abs(value) > 1e4:
            raise ValueError(f"{name} must be a finite number (the reference uses 0..10), got {value}")
    for name, value in (("switch_t", switch_t), ("motion_guidance_until", motion_guidance_until)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {value} must be a time in [0, 1] (0 = noise, 1 = finished video)")
    return Motion(
        motion=float(motion),
        neg_motion=(float(negative_motion_start), (float(switch_t), float(negative_motion_after))),
        motion_cfg=truncated_scale(motion_guidance, motion_guidance_until),
    )


UNCONNECTED = motion_condition(DEFAULT_MOTION, DEFAULT_NEG_START, DEFAULT_NEG_AFTER, DEFAULT_SWITCH)
"""What the sampler uses when no Motion Score node is connected: the node's defaults."""


def _score(name: str, default: float, tooltip: str):
    return io.Float.Input(name, default=default, min=-1.0, max=20.0, step=0.1, round=0.01, display_mode=io.NumberDisplay.slider, tooltip=tooltip)


def _time(name: str, default: float, tooltip: str, optional: bool = False):
    """A sampling time in [0, 1] (0 = noise, 1 = finished video) as a slider."""
    return io.Float.Input(
        name, default=default, min=0.0, max=1.0, step=0.01, round=0.001, display_mode=io.NumberDisplay.slider, optional=optional, tooltip=tooltip
    )


class LuminaVideoMotionScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoMotionScore",
            display_name="Lumina-Video Motion Score",
            category="Lumina-Video/conditioning",
            description=(
                "Motion conditioning. Lumina-Video was trained with each clip's measured motion (optical-flow magnitude) as a "
                "condition, and at sampling time the positive pass gets 'motion' while the negative (CFG) pass gets the negative "
                "motion: the video's dynamics follow the gap between the two. A larger gap gives more motion but lower quality; "
                "no gap gives the model's average motion. The reference uses 6.0 against 2.0, switching the negative to 6.0 "
                "(no gap) once t reaches 0.05, so the gap only shapes the first, noisiest steps. -1 means 'no motion condition'. "
                "Motion guidance (this pack's addition, not the reference's) runs a third pass without the motion score and "
                "pushes away from it, so the motion input sets the speed even where an unfamiliar caption would pull it."
            ),
            inputs=[
                _score("motion", DEFAULT_MOTION, "Motion score of the positive pass (reference 6.0). Higher = more movement. -1 = no motion condition."),
                _score(
                    "negative_motion_start",
                    DEFAULT_NEG_START,
                    "Motion score of the negative pass until switch_t (reference 2.0). The gap motion - this drives the dynamics early on.",
                ),
                _score(
                    "negative_motion_after",
                    DEFAULT_NEG_AFTER,
                    "Motion score of the negative pass from switch_t on (reference 6.0 = no gap for the rest of sampling).",
                ),
                _time(
                    "switch_t",
                    DEFAULT_SWITCH,
                    "Time at which the negative motion switches (0 = pure noise, 1 = finished video; reference 0.05). "
                    "With a large time shift most steps happen at small t, so 0.05 covers many steps.",
                ),
                io.Float.Input(
                    "motion_guidance",
                    default=DEFAULT_MOTION_CFG,
                    min=0.0,
                    max=50.0,
                    step=0.1,
                    round=0.01,
                    optional=True,
                    tooltip="Adds motion_guidance x (positive pass - positive pass without its motion score), in a third pass while t is "
                    "below motion_guidance_until, so the slider sets the speed more firmly. 0 = the reference's sampling (no third pass). "
                    f"Embedded default {DEFAULT_MOTION_CFG:g}.",
                ),
                _time(
                    "motion_guidance_until",
                    DEFAULT_MOTION_CFG_UNTIL,
                    f"Time at which motion guidance stops (0 = noise, 1 = to the end). Embedded default {DEFAULT_MOTION_CFG_UNTIL:g}: "
                    "the speed is set in the noisy steps; guiding to the end costs more time and, on the embedded default, let the speed "
                    "stray more from the slider.",
                    optional=True,
                ),
            ],
            outputs=[LuminaMotion.Output(display_name="motion", tooltip="Motion conditions for the Lumina-Video Sampler.")],
        )

    @classmethod
    def execute(cls, **widgets: float) -> io.NodeOutput:
        return io.NodeOutput(motion_condition(**widgets))
