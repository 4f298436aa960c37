"""The empty video latent and the Lumina-Video sampler."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..lumina_core.pipeline import ALL_PRESETS, EMBEDDED_PRESETS, check_video_size, latent_shape, sample_latent
from ..lumina_core.sampler import PRESETS, SOLVERS, SamplingConfig, parse_time_aware, scale_and_cutoff, truncated_scale
from ..lumina_core.vae import frames_for
from . import _comfy
from ._comfy import io
from .motion import UNCONNECTED
from .sockets import LuminaConditioning, LuminaModel, LuminaMotion

LATENT_CHANNELS = 16
SIZE_MULTIPLE, FRAME_MULTIPLE = 32, 8
MAX_SIZE, MAX_FRAMES, MAX_BATCH = 2048, 256, 16
MAX_SEED = 2**53 - 1  # exact in JavaScript, and seed + batch index stays a valid torch seed

CUSTOM = "custom"
SINGLE_SCALE = ("1x2", "2x2", "2x4")
# Presets first (their patch schedules), then single scales, then the user's own schedule.
SCHEDULES = list(EMBEDDED_PRESETS) + list(PRESETS) + list(SINGLE_SCALE) + [CUSTOM]
DEFAULT_CUSTOM = repr(EMBEDDED_PRESETS["embedded-MultiScale"].patch).replace("'", '"')  # its schedule, as text to edit
DEFAULTS = EMBEDDED_PRESETS["embedded"]


DEFAULT_CFG, DEFAULT_CFG_CUTOFF = scale_and_cutoff(DEFAULTS.cfg)


# --------------------------------------------------------------------------- sizes


def _nearest(value: int, multiple: int) -> str:
    low = max(multiple, value // multiple * multiple)
    return f"{low}" if low == value else f"{low} or {low + multiple}"


def size_rule_problems(width: int, height: int, frames: int, batch: int = 1) -> list[str]:
    """What breaks Lumina-Video's general size rule (any model): sides multiples of 32, frames a multiple of 8."""
    problems = []
    for name, value in (("width", width), ("height", height)):
        if value < SIZE_MULTIPLE or value > MAX_SIZE or value % SIZE_MULTIPLE:
            problems.append(f"{name} {value} must be a multiple of {SIZE_MULTIPLE} between {SIZE_MULTIPLE} and {MAX_SIZE} (try {_nearest(min(max(value, 1), MAX_SIZE), SIZE_MULTIPLE)})")
    if frames < FRAME_MULTIPLE or frames > MAX_FRAMES or frames % FRAME_MULTIPLE:
        problems.append(
            f"frames {frames} must be a multiple of {FRAME_MULTIPLE} between {FRAME_MULTIPLE} and {MAX_FRAMES} "
            f"(the VAE turns 8 frames into 2 latent frames; try {_nearest(min(max(frames, 1), MAX_FRAMES), FRAME_MULTIPLE)})"
        )
    if not 1 <= batch <= MAX_BATCH:
        problems.append(f"batch {batch} must be between 1 and {MAX_BATCH}")
    return problems


class LuminaVideoEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoEmptyLatent",
            display_name="Lumina-Video Empty Latent",
            category="Lumina-Video/latent",
            description=(
                "An empty video latent [batch, 16, frames/4, height/8, width/8] that sets the video's size for the sampler "
                "(the seeded noise is made there). Width and height must be multiples of 32 and frames a multiple of 8; "
                "the sampler also checks what the chosen model can take (the embedded default: 64x64, 8-32 frames; the "
                "released model: e.g. 1248x704 or 960x960, 96 frames at 24 fps)."
            ),
            inputs=[
                io.Int.Input("width", default=64, min=SIZE_MULTIPLE, max=MAX_SIZE, step=SIZE_MULTIPLE, tooltip="Video width in pixels, a multiple of 32 (embedded default: 64; released: up to about 1248)."),
                io.Int.Input("height", default=64, min=SIZE_MULTIPLE, max=MAX_SIZE, step=SIZE_MULTIPLE, tooltip="Video height in pixels, a multiple of 32 (embedded default: 64; released: e.g. 704)."),
                io.Int.Input("frames", default=16, min=FRAME_MULTIPLE, max=MAX_FRAMES, step=FRAME_MULTIPLE, tooltip="Number of video frames, a multiple of 8 (embedded default: 16 at 8 fps; released: 96 at 24 fps)."),
                io.Int.Input("batch_size", default=1, min=1, max=MAX_BATCH, tooltip="Videos per run; video i uses seed + i, so a batch repeats single runs exactly."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Empty latent; its shape tells the sampler the video's size.")],
        )

    @classmethod
    def validate_inputs(cls, width: int, height: int, frames: int, batch_size: int):
        if None in (width, height, frames, batch_size):  # linked inputs are checked when the node runs
            return True
        problems = size_rule_problems(width, height, frames, batch_size)
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, width: int, height: int, frames: int, batch_size: int = 1) -> io.NodeOutput:
        problems = size_rule_problems(width, height, frames, batch_size)
        if problems:
            raise ValueError("; ".join(problems))
        samples = torch.zeros(latent_shape(width, height, frames, batch_size, LATENT_CHANNELS), device=_comfy.intermediate_device())
        return io.NodeOutput({"samples": samples})


# --------------------------------------------------------------------------- schedules and previews


def resolve_patch_schedule(choice: str, custom: str):
    """The patch schedule in the engine's time-aware form; the error quotes the user's text."""
    if choice == CUSTOM:
        try:
            return parse_time_aware(custom, "custom_schedule", str)
        except ValueError as error:
            raise ValueError(
                f"custom_schedule {custom!r} is not a patch schedule ({error}). Write a scale such as \"1x2\", or "
                f"(\"2x4\", (0.03, \"2x2\"), (0.125, \"1x2\")): start at 2x4, switch to 2x2 once t >= 0.03 and to 1x2 once t >= 0.125"
            ) from None
    if choice in ALL_PRESETS:
        return ALL_PRESETS[choice].patch
    if choice in SINGLE_SCALE:
        return choice
    raise ValueError(f"patch_schedule {choice!r} is not one of {SCHEDULES}")


def latent_preview(x: torch.Tensor, max_frames: int = 4, max_side: int = 512):
    """A cheap picture of the current latent: up to ``max_frames`` latent frames of the first video, side by side.

    The 16 latent channels are projected onto their three principal components (computed
    on this latent, signs fixed so colours don't flip between steps), each scaled to mean
    0.5, and upscaled 8x (the VAE's factor) with nearest neighbours, at most ``max_side`` px
    wide. Colours are arbitrary; shapes and motion are what the picture shows.
    """
    from PIL import Image

    lat = x[0].detach().float().cpu()  # [C, K, h, w]
    channels, frames, h, w = lat.shape
    index = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long().unique()
    picked = lat[:, index]
    flat = picked.reshape(channels, -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    if channels >= 3:
        _, vectors = torch.linalg.eigh(flat @ flat.T)
        components = vectors[:, -3:].flip(1)  # [C, 3], largest variance first
        signs = torch.sign(components.gather(0, components.abs().argmax(0, keepdim=True)))
        rgb = (components * signs).T @ flat
    else:
        rgb = flat.repeat(3, 1)[:3]
    rgb = (rgb / (4 * rgb.std(dim=1, keepdim=True) + 1e-6) + 0.5).clamp(0, 1)
    rgb = rgb.reshape(3, len(index), h, w).permute(0, 2, 1, 3).reshape(3, h, len(index) * w)
    scale = max(1, min(8, max_side // max(rgb.shape[2], 1)))
    rgb = F.interpolate(rgb[None], scale_factor=scale, mode="nearest")[0]
    return Image.fromarray((rgb * 255).round().byte().permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------- sampler


class LuminaVideoSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoSampler",
            display_name="Lumina-Video Sampler",
            category="Lumina-Video/sampling",
            description=(
                "Samples a video latent with Lumina-Video's flow-matching ODE: seeded noise of the latent's size, CFG in the reference's "
                "convention with truncation (cfg drops to 0 from cfg_cutoff on) and renorm, the motion condition, and a patch schedule. "
                "Multi-scale schedules run the noisy first steps with coarse patches (2x4, 2x2: fewer tokens, much faster) and finish with "
                "the fine 1x2; no re-noising is needed when the scale switches. The node shows the schedule as a strip, and a preview of "
                "the latent (its channels' principal components as colours) at every step. The model is loaded through ComfyUI's model "
                "management before sampling and sent back to the offload device afterwards. Cancel stops it within one step."
            ),
            inputs=[
                LuminaModel.Input("model", tooltip="The video model from Lumina-Video Model Loader."),
                LuminaConditioning.Input("conditioning", tooltip="Prompt and negative prompt from Lumina-Video Text Encode."),
                io.Latent.Input("latent", tooltip="Sets the video's size and batch (Lumina-Video Empty Latent); its values are not used, sampling starts from seeded noise."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True, tooltip="Noise seed; video i of a batch uses seed + i."),
                io.Int.Input("steps", default=DEFAULTS.steps, min=2, max=500, tooltip="Time-grid points: steps - 1 model calls (the reference's convention). Reference 70; embedded default 30."),
                io.Float.Input(
                    "cfg",
                    default=DEFAULT_CFG,
                    min=0.0,
                    max=50.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Guidance, reference convention: out = cond + cfg * (cond - uncond), so 20 equals a usual CFG scale of 21. "
                    "0 skips the negative pass. Reference 20 (f24R960) / 12 (f16R512); embedded 4.",
                ),
                io.Float.Input(
                    "cfg_cutoff",
                    default=DEFAULT_CFG_CUTOFF,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    round=0.001,
                    display_mode=io.NumberDisplay.slider,
                    tooltip="CFG truncation: from this time on (0 = noise, 1 = finished) cfg is 0 and the negative pass is skipped, which also "
                    "saves time. Reference 0.2 (f24R960) / 0.4 (f16R512); 1 keeps guidance to the end (embedded default: 1, it keeps the shapes' corners).",
                ),
                io.Float.Input(
                    "time_shift",
                    default=float(DEFAULTS.time_shift),
                    min=0.1,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Shifts the time grid towards the noisy start (t / (t + s - s*t)); larger = more steps on composition. "
                    "Reference 24 (f24R960) / 8 (f16R512); embedded 3, embedded-MultiScale 9 (fewer of its steps at the costly 1x2 scale).",
                ),
                io.Float.Input(
                    "renorm",
                    default=float(DEFAULTS.renorm),
                    min=-1.0,
                    max=20.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Caps each video's guided output at renorm x the norm of its conditional output, taming high cfg. 0 or -1 = off. "
                    "Reference 2 (f24R960), off (f16R512).",
                ),
                io.Combo.Input(
                    "patch_schedule",
                    options=SCHEDULES,
                    default="embedded",
                    tooltip="Which patch size runs at which time. Presets copy the reference's (f24F96R960 = single-scale 1x2; "
                    "-MultiScale = 2x4, then 2x2, then 1x2); 1x2/2x2/2x4 = one scale throughout; custom = the text below.",
                ),
                io.String.Input(
                    "custom_schedule",
                    default=DEFAULT_CUSTOM,
                    tooltip="Used when patch_schedule is 'custom'. The reference's time-aware form: a scale \"{temporal}x{spatial}\" or "
                    "(\"2x4\", (0.03, \"2x2\"), (0.125, \"1x2\")) = 2x4 until t reaches 0.03, then 2x2, then 1x2 from t = 0.125.",
                ),
                io.Combo.Input("solver", options=list(SOLVERS), default="euler", tooltip="ODE solver. euler is the reference's; midpoint and heun call the model twice per step."),
                LuminaMotion.Input(
                    "motion",
                    optional=True,
                    tooltip="Motion conditions from Lumina-Video Motion Score. Unconnected: that node's defaults (the reference's 6.0 against "
                    "2.0 -> 6.0 at t = 0.05, with the embedded default's motion guidance).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The sampled video latent, for Lumina-Video VAE Decode.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, patch_schedule: str, custom_schedule: str):
        if patch_schedule is None or custom_schedule is None:
            return True
        try:
            resolve_patch_schedule(patch_schedule, custom_schedule)
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    def execute(
        cls,
        model,
        conditioning,
        latent: dict,
        seed: int,
        steps: int,
        cfg: float,
        cfg_cutoff: float,
        time_shift: float,
        renorm: float,
        patch_schedule: str,
        custom_schedule: str,
        solver: str = "euler",
        motion: Optional[object] = None,
    ) -> io.NodeOutput:
        samples = latent["samples"]
        if samples.ndim != 5:
            raise ValueError(f"latent {tuple(samples.shape)} is not a video latent [batch, 16, frames/4, height/8, width/8]; use Lumina-Video Empty Latent")
        batch, _, latent_frames, h, w = samples.shape
        width, height, frames = w * 8, h * 8, frames_for(latent_frames)
        check_video_size(width, height, frames, model.dit, model.embedded)
        width_of_captions = conditioning.positive.features.shape[-1]
        if width_of_captions != model.caption_dim:
            raise ValueError(
                f"the conditioning has {width_of_captions}-wide caption features but the model {model.name!r} reads "
                f"{model.caption_dim}-wide ones: encode the prompt with Lumina-Video Text Encode for this model"
            )
        motion = motion or UNCONNECTED
        config = SamplingConfig(
            steps=steps,
            time_shift=time_shift,
            cfg=truncated_scale(cfg, cfg_cutoff),
            renorm=renorm,
            motion=motion.motion,
            neg_motion=motion.neg_motion,
            motion_cfg=motion.motion_cfg,
            patch=resolve_patch_schedule(patch_schedule, custom_schedule),
            solver=solver,
        )
        missing = sorted(config.patch_sizes() - set(model.dit.patch_sizes))
        if missing:
            label = f"custom_schedule {custom_schedule!r}" if patch_schedule == CUSTOM else f"patch_schedule {patch_schedule!r}"
            raise ValueError(
                f"{label} uses {', '.join(f'{pf}x{p}' for pf, p in missing)}, which the model {model.name!r} lacks; "
                f"it has {', '.join(f'{pf}x{p}' for pf, p in model.dit.patch_sizes)}"
            )
        progress = _comfy.Progress(steps - 1, node_id=cls.hidden.unique_id if cls.hidden is not None else None)

        def on_step(step: int, total: int, scale, x: torch.Tensor) -> None:
            progress.update(step, total, preview=latent_preview(x))

        _comfy.throw_if_interrupted()
        _comfy.load_for_inference(model.patcher)
        try:
            out = sample_latent(
                model, conditioning.positive, conditioning.negative, width, height, frames, seed, config, batch=batch, callback=on_step
            )
        finally:
            _comfy.offload(model.patcher)
        return io.NodeOutput({"samples": out.to(_comfy.intermediate_device())})
