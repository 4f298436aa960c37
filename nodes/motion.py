"""The motion-score condition: how much the video moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lumina_core.sampling import DEFAULT_PRESET, PRESETS, scale_and_cutoff, truncated_scale
from ._comfy import io

FROM_PRESET = -1.0
"""motion_guidance at this value leaves motion guidance to the sampler's preset."""

# Widget defaults: the default preset's motion conditions (motion 6 against 2, switching to 6 at t = 0.05).
_DEFAULT = PRESETS[DEFAULT_PRESET]
DEFAULT_MOTION = float(_DEFAULT.motion)
DEFAULT_NEG_START, (DEFAULT_SWITCH, DEFAULT_NEG_AFTER) = _DEFAULT.neg_motion
DEFAULT_MOTION_CFG_UNTIL = scale_and_cutoff(_DEFAULT.motion_cfg)[1]


@dataclass(frozen=True)
class Motion:
    """The Motion Score node's widgets as the engine's time-aware values of the positive and the negative pass."""

    motion: Any  # float or (v0, (t1, v1), ...)
    neg_motion: Any
    motion_cfg: Any = None  # motion guidance; 0 = the reference's sampling, None = the sampler preset's


def motion_condition(
    motion: float,
    negative_motion_start: float,
    negative_motion_after: float,
    switch_t: float,
    motion_guidance: float = FROM_PRESET,
    motion_guidance_until: float = DEFAULT_MOTION_CFG_UNTIL,
) -> Motion:
    """The node's widgets (same names) as the time-aware values the sampler reads: the negative pass
    switches once t reaches ``switch_t``; motion guidance runs until t reaches ``motion_guidance_until``,
    or follows the sampler's preset when ``motion_guidance`` is -1."""
    for name, value in (
        ("motion", motion),
        ("negative_motion_start", negative_motion_start),
        ("negative_motion_after", negative_motion_after),
        ("motion_guidance", motion_guidance),
    ):
        if value != value or abs(value) > 1e4:
            raise ValueError(f"{name} must be a finite number (the reference uses 0..10), got {value}")
    if motion_guidance < 0 and motion_guidance != FROM_PRESET:
        raise ValueError(f"motion_guidance {motion_guidance} must be at least 0, or -1 for the sampler preset's")
    for name, value in (("switch_t", switch_t), ("motion_guidance_until", motion_guidance_until)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {value} must be a time in [0, 1] (0 = noise, 1 = finished video)")
    return Motion(
        motion=float(motion),
        neg_motion=(float(negative_motion_start), (float(switch_t), float(negative_motion_after))),
        motion_cfg=None if motion_guidance == FROM_PRESET else truncated_scale(motion_guidance, motion_guidance_until),
    )


def _score(name: str, default: float, tooltip: str):
    return io.Float.Input(
        name,
        default=default,
        min=-1.0,
        max=20.0,
        step=0.1,
        round=0.01,
        display_mode=io.NumberDisplay.slider,
        tooltip=tooltip,
    )


def _time(name: str, default: float, tooltip: str, optional: bool = False):
    """A sampling time in [0, 1] (0 = noise, 1 = finished video) as a slider."""
    return io.Float.Input(
        name,
        default=default,
        min=0.0,
        max=1.0,
        step=0.01,
        round=0.001,
        display_mode=io.NumberDisplay.slider,
        optional=optional,
        tooltip=tooltip,
    )


def _guidance_by_preset() -> str:
    parts = []
    for name, config in PRESETS.items():
        scale, until = scale_and_cutoff(config.motion_cfg)
        parts.append(f"{name}: {scale:g}" + (f" until t = {until:g}" if scale and until < 1 else ""))
    return "; ".join(parts)


class LuminaVideoMotionScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoMotionScore",
            display_name="Lumina-Video Motion Score",
            category="Lumina-Video/conditioning",
            description=(
                "Motion conditioning. Lumina-Video was trained with each clip's measured motion (optical-flow "
                "magnitude) as a condition, and at sampling time the positive pass gets 'motion' while the negative "
                "(CFG) pass gets the negative motion: the video's dynamics follow the gap between the two. A larger "
                "gap gives more motion but lower quality; no gap gives the model's average motion. The reference uses "
                "6.0 against 2.0, switching the negative to 6.0 (no gap) once t reaches 0.05, so the gap only shapes "
                "the first, noisiest steps. -1 means 'no motion condition'. Motion guidance (this pack's addition, not "
                "the reference's) runs a third pass without the motion score and pushes away from it, so the motion "
                "input sets the speed even where an unfamiliar caption would pull it. The scores are set on the "
                "conditionings that pass through (any native sampler reads them); conditionings that don't pass "
                "through this node get the sampler preset's motion settings."
            ),
            inputs=[
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning (Lumina-Video Text Encode)."),
                io.Conditioning.Input("negative", tooltip="The negative prompt's conditioning."),
                _score(
                    "motion",
                    DEFAULT_MOTION,
                    f"Motion score of the positive pass (reference {DEFAULT_MOTION:g}). Higher = more movement. "
                    "-1 = no motion condition.",
                ),
                _score(
                    "negative_motion_start",
                    DEFAULT_NEG_START,
                    f"Motion score of the negative pass until switch_t (reference {DEFAULT_NEG_START:g}). "
                    "The gap motion - this drives the dynamics early on.",
                ),
                _score(
                    "negative_motion_after",
                    DEFAULT_NEG_AFTER,
                    f"Motion score of the negative pass from switch_t on (reference {DEFAULT_NEG_AFTER:g}: "
                    "no gap for the rest of sampling).",
                ),
                _time(
                    "switch_t",
                    DEFAULT_SWITCH,
                    "Time at which the negative motion switches (0 = pure noise, 1 = finished video; reference "
                    f"{DEFAULT_SWITCH:g}). With a large time shift most steps happen at small t, "
                    "so it covers many steps.",
                ),
                io.Float.Input(
                    "motion_guidance",
                    default=FROM_PRESET,
                    min=FROM_PRESET,
                    max=50.0,
                    step=0.1,
                    round=0.01,
                    optional=True,
                    tooltip="Adds motion_guidance x (positive pass - positive pass without its motion score), in a "
                    "third pass while t is below motion_guidance_until, so the slider sets the speed more firmly. "
                    "0 = the reference's sampling (no third pass); "
                    f"-1 = the sampler preset's ({_guidance_by_preset()}).",
                ),
                _time(
                    "motion_guidance_until",
                    DEFAULT_MOTION_CFG_UNTIL,
                    "Time at which motion guidance stops (0 = noise, 1 = to the end), when motion_guidance is set "
                    "here. The speed is set in the noisy steps; guiding to the end costs more time and, on the "
                    "embedded default, let the speed stray more from the slider.",
                    optional=True,
                ),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="The prompt with its motion score."),
                io.Conditioning.Output(display_name="negative", tooltip="The negative prompt with its motion score."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, **widgets: float) -> io.NodeOutput:
        motion = motion_condition(**widgets)
        from . import _comfy_model  # ComfyUI's model classes: imported when a node runs

        guidance = {} if motion.motion_cfg is None else {_comfy_model.MOTION_GUIDANCE_KEY: motion.motion_cfg}
        return io.NodeOutput(
            _comfy_model.with_values(positive, **{_comfy_model.MOTION_KEY: motion.motion}, **guidance),
            _comfy_model.with_values(negative, **{_comfy_model.MOTION_KEY: motion.neg_motion}),
        )
