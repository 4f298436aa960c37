"""The empty video latent and the Lumina-Video sampler."""

from __future__ import annotations

from typing import Optional

import torch

from ..lumina_core import embedded, preview
from ..lumina_core.conditioning import denoised_times
from ..lumina_core.models.vae import frames_for
from ..lumina_core.pipeline import refine_config
from ..lumina_core.request import (
    MAX_BATCH,
    MAX_FRAMES,
    MAX_SEED,
    MAX_SIDE,
    VAE_TEMPORAL,
    check_video_size,
    frame_multiple,
    latent_shape,
    side_multiple,
    video_size_problems,
)
from ..lumina_core.sampling import (
    DEFAULT_PRESET,
    PRESETS,
    SOLVERS,
    SamplingConfig,
    StepCache,
    format_time_aware,
    make_noise,
    parse_time_aware,
    preset,
    scale_and_cutoff,
    truncated_scale,
    value_at,
)
from . import _comfy
from ._comfy import io
from .sockets import REFINE_KEY, video_samples

SIZE_MULTIPLE, FRAME_MULTIPLE = side_multiple(), frame_multiple()
FROM_PRESET = "preset"
CUSTOM = "custom"
SINGLE_SCALE = ("1x2", "2x2", "2x4")
PATCH_CHOICES = [FROM_PRESET, *SINGLE_SCALE, CUSTOM]
SOLVER_CHOICES = [FROM_PRESET, *SOLVERS]
EXAMPLE_SCHEDULE = format_time_aware(PRESETS[DEFAULT_PRESET].patch)

# --------------------------------------------------------------------------- sizes


class LuminaVideoEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoEmptyLatent",
            display_name="Lumina-Video Empty Latent",
            category="Lumina-Video/latent",
            description=(
                "An empty video latent [batch, 16, frames/4, height/8, width/8] that sets the video's size for the "
                "sampler (the seeded noise is made there). Width and height must be multiples of 32 and frames a "
                "multiple of 8; the sampler also checks what the chosen model can take (the embedded default: 64x64, "
                "8-32 frames; the released model: e.g. 1248x704 or 960x960, 96 frames at 24 fps)."
            ),
            inputs=[
                io.Int.Input(
                    "width",
                    default=embedded.WIDTH,
                    min=SIZE_MULTIPLE,
                    max=MAX_SIDE,
                    step=SIZE_MULTIPLE,
                    tooltip="Video width in pixels, a multiple of 32 "
                    "(embedded default: 64; released: up to about 1248).",
                ),
                io.Int.Input(
                    "height",
                    default=embedded.HEIGHT,
                    min=SIZE_MULTIPLE,
                    max=MAX_SIDE,
                    step=SIZE_MULTIPLE,
                    tooltip="Video height in pixels, a multiple of 32 (embedded default: 64; released: e.g. 704).",
                ),
                io.Int.Input(
                    "frames",
                    default=embedded.FRAMES,
                    min=FRAME_MULTIPLE,
                    max=MAX_FRAMES,
                    step=FRAME_MULTIPLE,
                    tooltip="Number of video frames, a multiple of 8 "
                    "(embedded default: 16 at 8 fps; released: 96 at 24 fps).",
                ),
                io.Int.Input(
                    "batch_size",
                    default=1,
                    min=1,
                    max=MAX_BATCH,
                    tooltip="Videos per run, each decoded, voiced and saved as its own file; video i uses seed + i, "
                    "so a batch repeats single runs exactly.",
                ),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="latent", tooltip="Empty latent; its shape tells the sampler the video's size."
                )
            ],
        )

    @classmethod
    def validate_inputs(cls, width: int, height: int, frames: int):
        """The size rule at queue time. ComfyUI repeats this answer for each input it reads (execution.py), so it
        reads only the three sizes that the rule ties together; the batch's range is the widget's own min and max."""
        if None in (width, height, frames):  # linked inputs are checked when the node runs
            return True
        problems = video_size_problems(width, height, frames)
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, width: int, height: int, frames: int, batch_size: int = 1) -> io.NodeOutput:
        check_video_size(width, height, frames, batch_size, max_batch=MAX_BATCH)
        samples = torch.zeros(latent_shape(width, height, frames, batch_size), device=_comfy.intermediate_device())
        return io.NodeOutput({"samples": samples})


# --------------------------------------------------------------------------- schedules and previews


def resolve_patch_schedule(choice: str, custom: str, preset_name: str):
    """The patch schedule in the engine's time-aware form; the error quotes the user's text."""
    if choice == FROM_PRESET:
        return preset(preset_name).patch
    if choice == CUSTOM:
        if not custom.strip():
            raise ValueError(f'custom_schedule is empty: write a patch schedule such as "1x2" or {EXAMPLE_SCHEDULE}')
        try:
            return parse_time_aware(custom, "custom_schedule", str)
        except ValueError as error:
            raise ValueError(
                f'custom_schedule {custom!r} is not a patch schedule ({error}). Write a scale such as "1x2", or '
                f"{EXAMPLE_SCHEDULE}: start at the first scale, switch to the next once t reaches each time"
            ) from None
    if choice in SINGLE_SCALE:
        return choice
    raise ValueError(f"patch_schedule {choice!r} is not one of {PATCH_CHOICES}")


def sampler_config(
    preset_name: str,
    steps: int = 0,
    cfg: float = -1.0,
    cfg_cutoff: float = -1.0,
    time_shift: float = 0.0,
    renorm: float = -1.0,
    patch_schedule: str = FROM_PRESET,
    custom_schedule: str = "",
    solver: str = FROM_PRESET,
    motion=None,
) -> SamplingConfig:
    """The preset, whole, with the sampler widgets that are set as overrides (steps 0, time_shift 0, cfg -1,
    cfg_cutoff -1, renorm -1 and "preset" keep the preset's value) and the Motion Score node's conditions."""
    config = preset(preset_name)
    changes = {}
    if steps:
        changes["steps"] = int(steps)
    if time_shift > 0:
        changes["time_shift"] = float(time_shift)
    if cfg >= 0 or cfg_cutoff >= 0:
        preset_cfg, preset_cutoff = scale_and_cutoff(config.cfg)
        changes["cfg"] = truncated_scale(
            cfg if cfg >= 0 else preset_cfg, cfg_cutoff if cfg_cutoff >= 0 else preset_cutoff
        )
    if renorm >= 0:
        changes["renorm"] = float(renorm)
    if patch_schedule != FROM_PRESET:
        changes["patch"] = resolve_patch_schedule(patch_schedule, custom_schedule, preset_name)
    if solver != FROM_PRESET:
        changes["solver"] = solver
    if motion is not None:
        changes.update(motion=motion.motion, neg_motion=motion.neg_motion)
        if motion.motion_cfg is not None:
            changes["motion_cfg"] = motion.motion_cfg
    return config.with_(**changes)


PLAN_ROUTE = "/lumina_video/plan"
"""The web extension POSTs {"sampler": {widget: value}, "motion": {widget: value} or null} here (see plan_request)."""


def plan_request(body: dict) -> dict:
    """The answer to a POST on PLAN_ROUTE: schedule_plan of the widgets it carries."""
    sampler, motion = body.get("sampler"), body.get("motion")
    if not isinstance(sampler, dict) or not (motion is None or isinstance(motion, dict)):
        return {"error": "send {'sampler': {widget: value, ...}, 'motion': {widget: value, ...} or null}"}
    return schedule_plan(sampler, motion)


def schedule_plan(sampler: dict, motion: Optional[dict] = None) -> dict:
    """What a sampler node's widgets will run, step by step, for the web extension's strip and chart:
    the time of each model call, its patch size, whether CFG, motion guidance and skip-layer guidance run, and the
    motion values.
    ``sampler`` holds the Sampler node's widgets by name, ``motion`` the Motion Score node's (or None)."""
    from .motion import motion_condition

    names = ("steps", "cfg", "cfg_cutoff", "time_shift", "renorm", "patch_schedule", "custom_schedule", "solver")
    try:
        widgets = {name: sampler[name] for name in names if name in sampler}
        conditions = None if motion is None else motion_condition(**motion)
        config = sampler_config(sampler.get("preset", DEFAULT_PRESET), motion=conditions, **widgets)
    except (ValueError, TypeError, KeyError) as error:
        return {"error": str(error)}
    times = config.times()[:-1]
    return {
        "preset": sampler.get("preset", DEFAULT_PRESET),
        "times": times,
        "patch": [str(p) for p in config.patch_schedule()],
        "cfg": [float(value_at(config.cfg, t)) for t in times],
        "motion": [float(value_at(config.motion, t)) for t in times],
        "neg_motion": [float(value_at(config.neg_motion, t)) for t in times],
        "motion_guidance": [float(value_at(config.motion_cfg, t)) for t in times],
        "skip_guidance": [float(value_at(config.skip_guidance, t)) for t in times],
    }


def latent_preview(x: torch.Tensor, embedded_model: bool = False):
    """The Sampler's per-step picture of latent x [B, 16, K, h, w]: up to 4 latent frames of the first video side
    by side, at most 512 px wide (``lumina_core.preview``). The embedded default's latents are coloured by the
    projection fitted to its VAE (``embedded.PREVIEW``: real colours); any other model's by principal components
    (arbitrary colours: the released CogVideoX VAE has no fitted projection here, its weights can't be downloaded
    where this pack is developed)."""
    return preview.latent_preview(x, embedded.PREVIEW if embedded_model else None)


# --------------------------------------------------------------------------- sampler


def _override_float(name: str, low: float, high: float, tooltip: str, slider: bool = False):
    extra = dict(display_mode=io.NumberDisplay.slider) if slider else {}
    return io.Float.Input(
        name, default=low, min=low, max=high, step=0.01 if slider else 0.1, round=0.001, tooltip=tooltip, **extra
    )


def _by_preset(describe) -> str:
    """One value of every preset, for a tooltip: 'embedded 4; embedded-MultiScale 4; ...'."""
    return "; ".join(f"{name} {describe(config)}" for name, config in PRESETS.items())


class LuminaVideoSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoSampler",
            display_name="Lumina-Video Sampler",
            category="Lumina-Video/sampling",
            description=(
                "Samples a video latent with Lumina-Video's flow-matching ODE. The preset sets every sampling value at "
                "once (steps, time shift, CFG with its truncation and renorm, motion conditions and motion guidance, "
                "the patch schedule, the solver); each widget below overrides one value when it is changed from "
                "'preset' (0 or -1). Multi-scale schedules run the noisy first steps with coarse patches (2x4, 2x2: "
                "fewer tokens, much faster) and finish with the fine 1x2; no re-noising is needed when the scale "
                "switches. Motion scores come with the conditioning (Lumina-Video Motion Score); conditionings without "
                "them get the preset's. It runs ComfyUI's own sampling on the native model with the pieces of "
                "Lumina-Video Multi-Scale, Guidance and Scheduler, so the same settings through KSampler or "
                "SamplerCustomAdvanced give the same video. A latent with a noise_mask (Lumina-Video Image To Video, "
                "Video To Video, Cinemagraph, SetLatentNoiseMask) keeps its masked-out region, held by replacement "
                "at every step; denoise below 1 starts later on the time grid from the latent's video "
                "(video-to-video). The node shows the schedule as a strip, and a preview of "
                "the latent at every step. Cancel stops it within one step."
            ),
            inputs=[
                io.Model.Input(
                    "model", tooltip="The video model from Lumina-Video Model Loader (LoRA, merges allowed)."
                ),
                io.Conditioning.Input(
                    "positive", tooltip="The prompt, from Lumina-Video Text Encode (through Motion Score, to set it)."
                ),
                io.Conditioning.Input("negative", tooltip="The negative prompt (the unconditional pass of CFG)."),
                io.Latent.Input(
                    "latent",
                    tooltip="Sets the video's size and batch (Lumina-Video Empty Latent). A latent from the "
                    "Lumina-Video conditioning nodes also brings what is kept (its noise_mask: 0 keep, 1 generate) "
                    "and the video that denoise below 1 starts from; otherwise its values are not used.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=MAX_SEED,
                    control_after_generate=True,
                    tooltip="Noise seed; video i of a batch uses seed + i.",
                ),
                io.Combo.Input(
                    "preset",
                    options=list(PRESETS),
                    default=DEFAULT_PRESET,
                    tooltip="Every sampling value at once. "
                    "embedded / embedded-MultiScale: the embedded toy-world model. "
                    "f24F96R960 / f16F64R512 (and -MultiScale): the reference's settings for the released weights.",
                ),
                io.Int.Input(
                    "steps",
                    default=0,
                    min=0,
                    max=500,
                    tooltip="Override: time-grid points (steps - 1 model calls, the reference's convention); 0 = the "
                    f"preset's ({_by_preset(lambda c: c.steps)}).",
                ),
                _override_float(
                    "cfg",
                    -1.0,
                    50.0,
                    "Override: guidance, reference convention: out = cond + cfg * (cond - uncond), so 20 equals a "
                    "usual CFG scale of 21; 0 skips the negative pass; -1 = the preset's "
                    f"({_by_preset(lambda c: f'{scale_and_cutoff(c.cfg)[0]:g}')}).",
                ),
                _override_float(
                    "cfg_cutoff",
                    -1.0,
                    1.0,
                    "Override: CFG truncation: from this time on (0 = noise, 1 = finished) cfg is 0 and the negative "
                    "pass is skipped, which also saves time; 1 keeps guidance to the end; -1 = the preset's "
                    f"({_by_preset(lambda c: f'{scale_and_cutoff(c.cfg)[1]:g}')}).",
                    slider=True,
                ),
                _override_float(
                    "time_shift",
                    0.0,
                    100.0,
                    "Override: shifts the time grid towards the noisy start (t / (t + s - s*t)); larger = more steps "
                    f"on composition; 0 = the preset's ({_by_preset(lambda c: f'{c.time_shift:g}')}).",
                ),
                _override_float(
                    "renorm",
                    -1.0,
                    20.0,
                    "Override: caps each video's guided output at renorm x the norm of its conditional output, taming "
                    "high cfg; 0 = off; -1 = the preset's "
                    f"({_by_preset(lambda c: f'{c.renorm:g}' if c.renorm > 0 else 'off')}).",
                ),
                io.Combo.Input(
                    "patch_schedule",
                    options=PATCH_CHOICES,
                    default=FROM_PRESET,
                    tooltip="Override: which patch size runs at which time. preset = the preset's (-MultiScale "
                    "presets: 2x4, then 2x2, then 1x2); 1x2/2x2/2x4 = one scale throughout; custom = the text below.",
                ),
                io.String.Input(
                    "custom_schedule",
                    default="",
                    tooltip="Used when patch_schedule is 'custom'. The reference's time-aware form: a scale "
                    f'"{{temporal}}x{{spatial}}" or {EXAMPLE_SCHEDULE} '
                    "= the first scale until t reaches the first time, then the next, and so on.",
                ),
                io.Combo.Input(
                    "solver",
                    options=SOLVER_CHOICES,
                    default=FROM_PRESET,
                    tooltip="Override: ODE solver. euler is the reference's (every preset's); midpoint and heun call "
                    "the model twice per step.",
                ),
                io.Float.Input(
                    "cache",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    round=0.001,
                    optional=True,
                    tooltip="Step caching: skip the transformer blocks on steps whose input changed less than this "
                    "(summed since the last full step) and reuse that step's result. 0 = off. On the embedded default "
                    "0.2 samples in 0.35 (single-scale) to 0.63 (multi-scale) of the time at about the same accuracy "
                    "(docs/benchmarks.md); not measured on the released weights.",
                ),
                io.Float.Input(
                    "denoise",
                    default=1.0,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    round=0.001,
                    optional=True,
                    tooltip="Video-to-video: below 1 sampling starts at t = 1 - denoise from the latent's video "
                    "noised to that time (the grid's later points follow); 1 draws from noise.",
                ),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="latent", tooltip="The sampled video latent, for Lumina-Video VAE Decode."
                )
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, custom_schedule: str):
        """The custom schedule's text, at queue time. It reads this one input only: ComfyUI repeats a node's
        validation message once for every input its validate_inputs takes (execution.py)."""
        if not custom_schedule or not custom_schedule.strip():  # linked, or empty: checked when the node runs
            return True
        try:
            resolve_patch_schedule(CUSTOM, custom_schedule, DEFAULT_PRESET)
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    def execute(
        cls, model, positive: list, negative: list, latent: dict, seed: int, preset: str, **overrides
    ) -> io.NodeOutput:
        """``overrides``: the widgets of ``sampler_config`` (steps, cfg, ..., solver), ``cache`` and ``denoise``, as
        ComfyUI passes them."""
        from . import _comfy_model  # ComfyUI's model classes: imported when a node runs

        source = _comfy_model.require_lumina_video(model)
        dit = model.model.diffusion_model
        samples = video_samples(latent)
        batch, _, latent_frames, h, w = samples.shape
        frames, windows = frames_for(latent_frames), _comfy_model.windows_of(model)
        window = VAE_TEMPORAL * windows.length if windows is not None and not windows.covers(latent_frames) else None
        tile = None if windows is None else windows.tile_pixels
        check_video_size(
            w * 8, h * 8, frames, batch, dit.patch_sizes, source.size_limits, MAX_BATCH, window=window, tile=tile
        )  # with Lumina-Video Windows each window (and tile) must fit the model, not the clip
        for name, conditioning in (("positive", positive), ("negative", negative)):
            check_caption_width(conditioning, name, dit.cap_feat_dim, source.name)
        cache = StepCache(overrides.pop("cache", 0.0))
        denoise = overrides.pop("denoise", 1.0)
        config = sampler_config(preset, **overrides)
        if latent.get(REFINE_KEY):  # Upscale Video's latent: sampled as the engine's refine pass
            config = refine_config(config)
        missing = sorted(config.patch_sizes() - set(dit.patch_sizes))
        if missing:
            custom = overrides.get("custom_schedule", "")
            custom_chosen = overrides.get("patch_schedule") == CUSTOM
            label = f"custom_schedule {custom!r}" if custom_chosen else f"the patch schedule of {preset!r}"
            raise ValueError(
                f"{label} uses {', '.join(map(str, missing))}, which the model {source.name!r} lacks; "
                f"it has {', '.join(map(str, dit.patch_sizes))}"
            )
        # the engine's grid, started later for denoise below 1 exactly as the engine's conditioning starts it
        sigmas = 1.0 - torch.tensor(denoised_times(config.times(), denoise))
        guided, cfg = reference_sampling(model, config)
        if cache.active:
            if windows is not None:
                raise ValueError("cache (step caching) can't be combined with Lumina-Video Windows yet: set it to 0")
            guided = _comfy_model.with_step_cache(guided, cache, sigmas)
        total = len(sigmas) - 1
        progress = _comfy.Progress(total, node_id=cls.hidden.unique_id if cls.hidden is not None else None)

        def on_step(step: int, denoised: torch.Tensor, x: torch.Tensor, steps: int) -> None:
            progress.update(step + 1, total, preview=latent_preview(denoised, source.embedded))

        _comfy.throw_if_interrupted()
        noise = make_noise(samples.shape, seed)  # video i depends on seed + i only
        out = _comfy_model.sample(
            guided, noise, cfg, _comfy_model.sampler_for(config.solver), sigmas, positive, negative, on_step, seed,
            latent_image=samples, noise_mask=latent.get("noise_mask"),
        )  # fmt: skip
        return io.NodeOutput({"samples": out.to(_comfy.intermediate_device())})


def check_caption_width(conditioning: list, input_name: str, wanted: int, model_name: str) -> None:
    """Refuse a conditioning from another model's text encoder before sampling, naming both widths."""
    for features, _ in conditioning:
        if features.shape[-1] != wanted:
            raise ValueError(
                f"{input_name} has {features.shape[-1]}-wide caption features but the model {model_name!r} reads "
                f"{wanted}-wide ones: encode the prompt with Lumina-Video Text Encode for this model"
            )


def reference_sampling(model, config: SamplingConfig):
    """(the MODEL patched to sample as ``config`` says, ComfyUI's cfg scale): the patch schedule (Lumina-Video
    Multi-Scale) and the reference's guidance (Lumina-Video Guidance), with the preset's motion scores for
    conditionings that have none."""
    from . import _comfy_model

    scale, cutoff = scale_and_cutoff(config.cfg)
    guidance = _comfy_model.ReferenceGuidance.of(config, cutoff if scale else 0.0)  # cfg 0: no negative pass at all
    return guidance.install(_comfy_model.with_patch_schedule(model, config.patch)), scale + 1.0
