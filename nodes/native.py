"""Nodes for ComfyUI's own samplers and model tools on the native Lumina-Video MODEL.

The Model Loader gives a native MODEL (``_comfy_model.py``), so ComfyUI's own nodes work on it: KSampler and
SamplerCustomAdvanced with any sampler, LoRA loaders, model merging, EasyCache, context windows, fp8 weights and
partial loading. Three patches give it what the reference's sampler does (the Lumina-Video Sampler is built on the
same three): Multi-Scale (the patch size follows sigma), Guidance (truncated, renormed CFG, motion guidance and the
preset's motion scores) and the Scheduler (the reference's shifted time grid as SIGMAS). Set a KSampler's cfg to the
preset's cfg + 1. LoRA applies a LoRA after checking that it fits.
"""

from __future__ import annotations

from dataclasses import replace

from ..lumina_core import embedded
from ..lumina_core.lora import load_lora
from ..lumina_core.pipeline import longest_window
from ..lumina_core.request import MAX_SIDE
from ..lumina_core.sampling import DEFAULT_PRESET, FUSES, PRESETS, scale_and_cutoff, time_grid
from ..lumina_core.sampling import preset as named_preset
from ..lumina_core.sampling.windows import plan_in_video_frames, tiles_in_pixels
from . import _comfy, _comfy_model
from ._comfy import io
from .sampling import FROM_PRESET, PATCH_CHOICES, resolve_patch_schedule


def _preset_input(tooltip: str):
    return io.Combo.Input("preset", options=list(PRESETS), default=DEFAULT_PRESET, tooltip=tooltip)


class LuminaVideoMultiScale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoMultiScale",
            display_name="Lumina-Video Multi-Scale",
            category="Lumina-Video/native",
            description=(
                "Makes a Lumina-Video MODEL pick its patch size from the current sigma, as the preset's patch "
                "schedule says (the -MultiScale presets: 2x4 on the noisy steps, then 2x2, then 1x2), so any "
                "sampler runs multi-scale. Without it the model runs at its finest patch size (1x2) throughout."
            ),
            inputs=[
                io.Model.Input("model"),
                _preset_input("The preset whose patch schedule is used."),
                io.Combo.Input("patch_schedule", options=PATCH_CHOICES, default=FROM_PRESET),
                io.String.Input(
                    "custom_schedule",
                    default="",
                    optional=True,
                    tooltip="Used when patch_schedule is 'custom': a scale such as \"1x2\" or a time-aware schedule "
                    'such as ("2x4", (0.25, "2x2"), (0.45, "1x2")).',
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, preset: str, patch_schedule: str = FROM_PRESET, custom_schedule: str = "") -> io.NodeOutput:
        _comfy_model.require_lumina_video(model)
        schedule = resolve_patch_schedule(patch_schedule, custom_schedule, preset)
        have = set(model.model.diffusion_model.patch_sizes)
        config = PRESETS[preset].with_(patch=schedule)
        missing = sorted(config.patch_sizes() - have)
        if missing:
            raise ValueError(
                f"the patch schedule uses {', '.join(map(str, missing))}, which this model lacks; "
                f"it has {', '.join(map(str, sorted(have)))}"
            )
        return io.NodeOutput(_comfy_model.with_patch_schedule(model, schedule))


class LuminaVideoGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoGuidance",
            display_name="Lumina-Video Guidance",
            category="Lumina-Video/native",
            description=(
                "Classifier-free guidance the reference's way on a native sampler: truncated once t = 1 - sigma "
                "reaches the preset's cutoff (the negative pass is then skipped), renormed per video on the "
                "velocity, motion guidance as a third batched pass, and the preset's skip-layer guidance (a pass of "
                "the positive without some blocks). Conditionings without a motion score get the preset's. Set the "
                "sampler's cfg to the preset's cfg + 1 (embedded presets: 5; f24F96R960: 21). "
                "ComfyUI's RenormCFG differs: it compares sigma, not t, with its cutoff, and renorms the denoised "
                "image with one decision for the whole batch."
            ),
            inputs=[
                io.Model.Input("model"),
                _preset_input(
                    "The preset whose cutoff, renorm, motion scores, motion guidance and skip-layer guidance are used."
                ),
                io.Float.Input(
                    "cfg_cutoff", default=-1.0, min=-1.0, max=1.0, step=0.01, tooltip="Override; -1 = the preset's."
                ),
                io.Float.Input(
                    "renorm", default=-1.0, min=-1.0, max=20.0, step=0.1, tooltip="Override; -1 = the preset's."
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, preset: str, cfg_cutoff: float = -1.0, renorm: float = -1.0) -> io.NodeOutput:
        _comfy_model.require_lumina_video(model)
        config = named_preset(preset)
        cutoff = cfg_cutoff if cfg_cutoff >= 0 else scale_and_cutoff(config.cfg)[1]
        if renorm >= 0:
            config = config.with_(renorm=renorm)
        guidance = _comfy_model.ReferenceGuidance.of(config, cutoff)
        return io.NodeOutput(guidance.install(model))


class LuminaVideoScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoScheduler",
            display_name="Lumina-Video Scheduler",
            category="Lumina-Video/native",
            description=(
                "The reference's time grid as SIGMAS for SamplerCustom(Advanced): linspace(0, 1, steps) shifted by "
                "t / (t + s - s t), as sigma = 1 - t (from 1 to 0). 'steps' counts grid points, the reference's "
                "convention: steps - 1 model calls."
            ),
            inputs=[
                _preset_input("The preset whose steps and time shift are used."),
                io.Int.Input("steps", default=0, min=0, max=500, tooltip="Override: grid points; 0 = the preset's."),
                io.Float.Input(
                    "time_shift", default=0.0, min=0.0, max=100.0, step=0.1, tooltip="Override; 0 = the preset's."
                ),
            ],
            outputs=[io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def execute(cls, preset: str, steps: int = 0, time_shift: float = 0.0) -> io.NodeOutput:
        config = named_preset(preset)
        steps, shift = steps or config.steps, time_shift if time_shift > 0 else config.time_shift
        if steps < 2:
            raise ValueError(f"steps must be at least 2 grid points (one model call), got {steps}")
        return io.NodeOutput(1.0 - time_grid(steps, shift))


class LuminaVideoWindows(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoWindows",
            display_name="Lumina-Video Windows",
            category="Lumina-Video/native",
            description=(
                "Long videos by MultiDiffusion in time, as Lumiere makes them: the model runs on overlapping windows "
                "of frames and, at every step, their predictions are fused into one, so a clip longer than the model "
                "takes (the embedded default: 32 frames) is denoised as one whole. The windows move a little every "
                "step so no seam stays in one place. Works with the Lumina-Video Sampler (which then takes clips up "
                "to any length) and ComfyUI's samplers; not with step caching. ComfyUI's ContextWindowsManual works "
                "on the model too, with its own windows."
            ),
            inputs=[
                io.Model.Input("model"),
                io.Int.Input(
                    "window",
                    default=16,
                    min=8,
                    max=1024,
                    step=8,
                    tooltip="Frames the model sees at once, a multiple of 8, at most the model's limit (embedded: "
                    "32; its trained length, 16, draws best).",
                ),
                io.Int.Input(
                    "overlap",
                    default=8,
                    min=0,
                    max=1016,
                    step=8,
                    tooltip="Frames neighbouring windows share, a multiple of 8 below the window: more overlap, "
                    "smoother joins, more model calls.",
                ),
                io.Combo.Input(
                    "fuse",
                    options=list(FUSES),
                    default="pyramid",
                    tooltip="How each window's frames are weighted where windows overlap: pyramid (more weight in "
                    "the window's middle), uniform, gaussian.",
                ),
                io.Boolean.Input(
                    "shift", default=True, tooltip="Move the windows by one temporal patch each step (no fixed seams)."
                ),
                io.Int.Input(
                    "tile_height",
                    default=0,
                    min=0,
                    max=MAX_SIDE,
                    step=8,
                    tooltip="Large frames: the model also runs on spatial tiles this many pixels high (with "
                    "tile_width), fused the same way; 0 = whole frames. At most the model's size (embedded: 64).",
                ),
                io.Int.Input("tile_width", default=0, min=0, max=MAX_SIDE, step=8, tooltip="See tile_height."),
                io.Int.Input(
                    "tile_overlap",
                    default=32,
                    min=0,
                    max=MAX_SIDE,
                    step=8,
                    tooltip="Pixels neighbouring tiles share, below the tile (with the multi-scale schedule a multiple "
                    "of 32).",
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(
        cls,
        model,
        window: int = 16,
        overlap: int = 8,
        fuse: str = "pyramid",
        shift: bool = True,
        tile_height: int = 0,
        tile_width: int = 0,
        tile_overlap: int = 32,
    ):
        source = _comfy_model.require_lumina_video(model)
        limit = longest_window(model.model.diffusion_model, source.size_limits)
        plan = replace(plan_in_video_frames(window, overlap, fuse, limit), shift=shift)
        if tile_height or tile_width:
            names = ("tile_height x tile_width", "tile_overlap")
            plan = replace(plan, **tiles_in_pixels(tile_height, tile_width, tile_overlap, source.size_limits, names))
        return io.NodeOutput(_comfy_model.with_windows(model, plan))


EMBEDDED_STYLE = "embedded: sway style (toy world)"


def lora_choices() -> list[str]:
    shipped = [EMBEDDED_STYLE] if (embedded.folder() / embedded.STYLE_LORA).is_file() else []
    return shipped + sorted(_comfy.model_files("loras", (".safetensors",)), key=str.lower)


class LuminaVideoLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoLoRA",
            display_name="Lumina-Video LoRA",
            category="Lumina-Video/native",
            description=(
                "Applies a LoRA to a Lumina-Video MODEL at a strength, after checking that it was made for this model "
                "(a LoRA for another one is refused, naming the modules that don't fit). The strength interpolates "
                "the weights between the base (0) and the LoRA's style (1), as Lumiere's stylized generation does. "
                "ComfyUI's LoraLoaderModelOnly applies the same files, without the check."
            ),
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input(
                    "lora_name",
                    options=lora_choices(),
                    tooltip=f"'{EMBEDDED_STYLE}' ships with the pack (the embedded model's shapes sway across their "
                    "path, docs/style-lora.md); other files come from models/loras.",
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=-2.0,
                    max=2.0,
                    step=0.05,
                    tooltip="0 = the base model exactly; 1 = the LoRA as trained.",
                ),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, lora_name: str, strength: float = 1.0) -> io.NodeOutput:
        _comfy_model.require_lumina_video(model)
        if lora_name == EMBEDDED_STYLE:
            path = embedded.folder() / embedded.STYLE_LORA
        else:
            path = _comfy.model_path("loras", lora_name)
            if path is None:
                raise FileNotFoundError(f"LoRA file {lora_name!r} is not in {_comfy.folder_locations('loras')}")
        weights = model.model.diffusion_model.state_dict()
        lora = load_lora(path, weights)  # refuses a LoRA for another model, naming what doesn't fit
        return io.NodeOutput(_comfy_model.with_lora(model, lora.state_dict(), strength))


class LuminaVideoConditioningMechanism(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoConditioningMechanism",
            display_name="Lumina-Video Conditioning Mechanism",
            category="Lumina-Video/native",
            description=(
                "How a LATENT's noise_mask (Image To Video, Video To Video, Cinemagraph, SetLatentNoiseMask) holds the "
                "kept cells while any sampler runs: timestep (LTX-Video's: kept cells clean, their time given per "
                "token; for weights fine-tuned for it, as the embedded default is) or replace (ComfyUI's inpainting: "
                "kept cells set to the noised known latent every step; works with any weights). A model loads with "
                "what its file says it was trained for; on the embedded default timestep does better in "
                "every task but inpainting with a prompt that names a new colour, which replace follows "
                "(docs/conditional.md)."
            ),
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("mechanism", options=["timestep", "replace"], default="timestep"),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, mechanism: str = "timestep"):
        source = _comfy_model.require_lumina_video(model)
        if mechanism == "timestep" and source.conditioning != "timestep":
            raise ValueError(
                f"mechanism timestep: {source.name} was not fine-tuned with per-token timesteps (its file has no "
                "lumina_video_conditioning metadata), so kept cells marked clean would confuse it; use replace"
            )
        patched = model.clone()
        patched.add_object_patch("lumina_conditioning", mechanism)  # set while it samples; the trained one stays
        return io.NodeOutput(patched)


NATIVE_NODES = [
    LuminaVideoMultiScale,
    LuminaVideoGuidance,
    LuminaVideoScheduler,
    LuminaVideoLoRA,
    LuminaVideoWindows,
    LuminaVideoConditioningMechanism,
]
