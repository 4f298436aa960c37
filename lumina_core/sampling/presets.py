"""The one table of sampling presets, and the settings object a preset fills.

Every interface reads this table: the command line (``--preset``), the ComfyUI nodes (their
defaults and preset menus), the web extension (it asks the server for the schedule a preset
gives), and the shipped workflows (they name a preset and leave its values here). A preset is
applied whole; a change to one of its values is an explicit override (``with_``).
"""

from dataclasses import dataclass, fields, replace

from ..models.nextdit import PatchSize
from .schedules import TimeAware, check_time_aware, time_grid, value_at

SOLVERS = ("euler", "midpoint", "heun")


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
    ``skip_guidance`` adds skip-layer guidance (LTX-Video's spatiotemporal skip guidance, STG-R):
    skip_guidance * (cond - cond without the blocks ``skip_layers``), indices into the transformer's
    blocks, negative ones from the end. The blocks left out take with them the detail they add, so the
    guided output leans into that detail. 0 (the reference) skips that pass.
    """

    steps: int
    time_shift: float
    cfg: TimeAware
    renorm: float
    motion: TimeAware
    neg_motion: TimeAware
    motion_cfg: TimeAware
    patch: TimeAware
    solver: str
    skip_guidance: TimeAware = 0.0
    skip_layers: tuple[int, ...] = (-1,)

    def __post_init__(self):
        if self.steps < 2:
            raise ValueError(f"steps must be at least 2 (grid points, the reference's convention), got {self.steps}")
        if self.time_shift <= 0:
            raise ValueError(f"time_shift must be positive, got {self.time_shift}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver {self.solver!r} is not one of {SOLVERS}")
        for name, kind in TIME_AWARE_KINDS.items():
            check_time_aware(getattr(self, name), name, kind)
        layers = self.skip_layers
        if not (isinstance(layers, tuple) and layers and all(type(i) is int for i in layers)):
            raise ValueError(f"skip_layers must be a non-empty tuple of block indices such as (-1,), got {layers!r}")

    def with_(self, **changes) -> "SamplingConfig":
        """This config with some values overridden (unknown names are refused by dataclasses.replace)."""
        return replace(self, **changes)

    def times(self) -> list[float]:
        """The time grid's points, ``steps`` of them, from 0 (noise) to 1 (data)."""
        return time_grid(self.steps, self.time_shift).tolist()

    def patch_schedule(self) -> list[PatchSize]:
        """The patch size used at each model call, in order."""
        return [PatchSize.parse(value_at(self.patch, t)) for t in time_grid(self.steps, self.time_shift)[:-1].tolist()]

    def patch_sizes(self) -> set[PatchSize]:
        return set(self.patch_schedule())


TIME_AWARE_KINDS = {
    "cfg": float,
    "motion": float,
    "neg_motion": float,
    "motion_cfg": float,
    "patch": str,
    "skip_guidance": float,
}
SETTING_NAMES = tuple(f.name for f in fields(SamplingConfig))

# The reference's inference settings (upstream configs/sample): motion 6 against a negative motion of
# 2 that switches to 6 once t reaches 0.05, truncated CFG, no motion guidance, the Euler solver.
PRESETS = {
    "f24F96R960": SamplingConfig(
        steps=70, time_shift=24.0, cfg=(20.0, (0.2, 0.0)), renorm=2.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=0.0,
        patch="1x2", solver="euler",
    ),
    "f24F96R960-MultiScale": SamplingConfig(
        steps=70, time_shift=24.0, cfg=(20.0, (0.2, 0.0)), renorm=2.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=0.0,
        patch=("2x4", (0.03, "2x2"), (0.125, "1x2")), solver="euler",
    ),
    "f16F64R512": SamplingConfig(
        steps=70, time_shift=8.0, cfg=(12.0, (0.4, 0.0)), renorm=-1.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=0.0,
        patch="1x2", solver="euler",
    ),
    "f16F64R512-MultiScale": SamplingConfig(
        steps=70, time_shift=8.0, cfg=(12.0, (0.4, 0.0)), renorm=-1.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=0.0,
        patch=("2x4", (0.075, "2x2"), (0.3, "1x2")), solver="euler",
    ),
    # The embedded default (tiny models trained on the toy world; see docs/embedded-default.md).
    # Guidance runs to the end, unlike the reference's truncated CFG: the tiny model settles the shapes'
    # corners on its last steps, and unguided it rounds squares and triangles into circles. Motion guidance
    # runs while t < 0.5: the tiny model's pooled caption shifts its speed, and guiding on the motion score
    # alone makes the input set it (held-out Spearman 0.83 -> 0.90 on tuning prompts). Skip-layer guidance away
    # from the DiT without its last block, from t = 0.5, draws the corners of shapes the captions pair in ways
    # training never showed (held-out shape 0.75 -> 0.83) at a cost in evenness (stutter 2.34 -> 2.66).
    "embedded": SamplingConfig(
        steps=30, time_shift=3.0, cfg=4.0, renorm=2.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=(10.0, (0.5, 0.0)),
        patch="1x2", solver="euler", skip_guidance=(0.0, (0.5, 1.0)),
    ),
    # Hands the noisy first steps to the coarse patch sizes, as f24F96R960-MultiScale does, and crowds more
    # steps there (time shift 9): 22, 4 and 3 of the 29 model calls run at 2x4, 2x2 and 1x2, a quarter of
    # the single-scale preset's tokens.
    "embedded-MultiScale": SamplingConfig(
        steps=30, time_shift=9.0, cfg=4.0, renorm=2.0,
        motion=6.0, neg_motion=(2.0, (0.05, 6.0)), motion_cfg=(10.0, (0.5, 0.0)),
        patch=("2x4", (0.25, "2x2"), (0.45, "1x2")), solver="euler", skip_guidance=(0.0, (0.5, 1.0)),
    ),
}  # fmt: skip
DEFAULT_PRESET = "embedded-MultiScale"
RELEASED_DEFAULT_PRESET = "f24F96R960-MultiScale"


def preset(name: str) -> SamplingConfig:
    """The preset ``name``, whole; an unknown name is refused with the list of known ones."""
    if name not in PRESETS:
        raise ValueError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[name]
