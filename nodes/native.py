"""Lumina-Video in ComfyUI's native types: MODEL, CONDITIONING and SIGMAS.

The model loaded here is a native MODEL (``_comfy_model.py``), so ComfyUI's own nodes work on it: KSampler and
SamplerCustomAdvanced with any sampler, LoRA loaders, model merging, EasyCache, context windows, fp8 weights and
partial loading. Three patches give it what the reference's sampler does: Multi-Scale (the patch size follows
sigma), Guidance (truncated, renormed CFG, motion guidance and the preset's motion scores) and the Scheduler (the
reference's shifted time grid as SIGMAS). Set a KSampler's cfg to the preset's cfg + 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..lumina_core import embedded
from ..lumina_core.io.checkpoints import load_text_encoder, read_nextdit
from ..lumina_core.lora import load_lora
from ..lumina_core.models.text import TextCondition
from ..lumina_core.sampling import DEFAULT_PRESET, PRESETS, scale_and_cutoff, time_grid
from ..lumina_core.sampling import preset as named_preset
from ..lumina_core.sampling.presets import RELEASED_DEFAULT_PRESET
from . import _comfy, _comfy_model
from ._comfy import io
from .loaders import EMBEDDED_MODEL, RELEASED_MODEL, _plain_errors, model_choices, model_files_for
from .motion import motion_condition
from .sampling import FROM_PRESET, PATCH_CHOICES, resolve_patch_schedule
from .text import encode_with_clip

log = logging.getLogger("lumina_video")

LuminaTextEncoder = io.Custom("LUMINAVIDEO_TEXT_ENCODER")
CPU = torch.device("cpu")
WEIGHT_DTYPES = {
    "default": None,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}


@dataclass
class TextEncoderHandle:
    """LUMINAVIDEO_TEXT_ENCODER: the embedded default's tiny text encoder, or None for weights that need Gemma-2-2B."""

    encoder: Optional[Any]  # lumina_core.models.text.TinyTextEncoder
    model_name: str


class LuminaVideoNativeModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoNativeModelLoader",
            display_name="Lumina-Video Model Loader (native MODEL)",
            category="Lumina-Video/native",
            description=(
                "Loads a Lumina-Video Multi-scale Next-DiT as ComfyUI's native MODEL, for KSampler, "
                "SamplerCustomAdvanced, LoRA loaders, model merging, EasyCache and context windows. Add Lumina-Video "
                "Multi-Scale and Lumina-Video Guidance to sample as the reference does, and take the sigmas from "
                "Lumina-Video Scheduler. The embedded default runs on the CPU and brings its own text encoder."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=model_choices(),
                    default=EMBEDDED_MODEL,
                    tooltip="Weights to load, from models/lumina_video and models/diffusion_models "
                    "(.safetensors, .pth), or the embedded toy-world model.",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=list(WEIGHT_DTYPES),
                    default="default",
                    tooltip="How the weights are stored in memory. fp8 halves bf16's memory (computation still runs "
                    "in bf16/fp16/fp32); default: ComfyUI's choice for the device.",
                ),
                io.Boolean.Input(
                    "download",
                    default=False,
                    tooltip=f"Download the released weights when {RELEASED_MODEL} is chosen and missing.",
                ),
            ],
            outputs=[
                io.Model.Output(display_name="model"),
                LuminaTextEncoder.Output(
                    display_name="text_encoder",
                    tooltip="The embedded default's text encoder, for Lumina-Video Prompt Encode "
                    "(released weights have none: use Load CLIP, type lumina2).",
                ),
            ],
        )

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str = "default", download: bool = False) -> io.NodeOutput:
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype {weight_dtype!r} is not one of {list(WEIGHT_DTYPES)}")
        path, text_path, is_embedded = model_files_for(model_name, download)
        load_device, offload_to = (CPU, CPU) if is_embedded else (_comfy.torch_device(), _comfy.offload_device())
        shift = PRESETS[DEFAULT_PRESET if is_embedded else RELEASED_DEFAULT_PRESET].time_shift
        text_encoder = None if text_path is None else load_text_encoder(text_path, dtype=torch.float32, device=CPU)
        with _plain_errors():
            state_dict, config, notes = read_nextdit(path)
        for note in notes:
            log.info("%s: %s", model_name, note)
        model = _comfy_model.native_model(
            config, state_dict, shift, WEIGHT_DTYPES[weight_dtype], load_device, offload_to
        )
        return io.NodeOutput(model, TextEncoderHandle(text_encoder, model_name))


class LuminaVideoPromptEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoPromptEncode",
            display_name="Lumina-Video Prompt Encode",
            category="Lumina-Video/native",
            description=(
                "Encodes one prompt as ComfyUI's CONDITIONING (caption features and their mask, as ComfyUI's "
                "Lumina 2 does): with Gemma-2-2B from Load CLIP (type lumina2), with Lumina-Video's system prompt; "
                "or with the embedded default's text encoder. Use one node for the prompt and one for the negative."
            ),
            inputs=[
                io.String.Input("text", multiline=True, default="a red circle moving right", tooltip="The prompt."),
                LuminaTextEncoder.Input(
                    "text_encoder", optional=True, tooltip="The embedded default's encoder, from the model loader."
                ),
                io.Clip.Input("clip", optional=True, tooltip="Gemma-2-2B (Load CLIP, type lumina2)."),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text: str, text_encoder: Optional[TextEncoderHandle] = None, clip=None) -> io.NodeOutput:
        if clip is not None:
            condition = encode_with_clip(clip, text)
        elif text_encoder is not None and text_encoder.encoder is not None:
            text_encoder.encoder.check_prompt(text, "prompt")
            with torch.no_grad():
                condition = text_encoder.encoder.encode([text])
            condition = TextCondition(condition.features.float().cpu(), condition.mask.cpu())
        else:
            raise ValueError(
                "connect a text encoder: clip (Load CLIP, type lumina2, Gemma-2-2B) for released weights, or the "
                "embedded default's text_encoder from Lumina-Video Model Loader (native MODEL)"
            )
        return io.NodeOutput(_comfy_model.conditioning(condition))


class LuminaVideoMotionConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from .motion import LuminaVideoMotionScore

        widgets = [i for i in LuminaVideoMotionScore.define_schema().inputs]
        return io.Schema(
            node_id="LuminaVideoMotionConditioning",
            display_name="Lumina-Video Motion Conditioning",
            category="Lumina-Video/native",
            description=(
                "Sets the motion score on native conditioning: 'motion' on the positive, the negative motion "
                "(switching at switch_t) on the negative, and motion guidance on the positive (applied by "
                "Lumina-Video Guidance). Without this node, Lumina-Video Guidance uses its preset's motion scores."
            ),
            inputs=[io.Conditioning.Input("positive"), io.Conditioning.Input("negative"), *widgets],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, **widgets: float) -> io.NodeOutput:
        motion = motion_condition(**widgets)
        guidance = {} if motion.motion_cfg is None else {_comfy_model.MOTION_GUIDANCE_KEY: motion.motion_cfg}
        return io.NodeOutput(
            _comfy_model.with_values(positive, **{_comfy_model.MOTION_KEY: motion.motion}, **guidance),
            _comfy_model.with_values(negative, **{_comfy_model.MOTION_KEY: motion.neg_motion}),
        )


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
                "velocity, and motion guidance as a third batched pass. Conditionings without a motion score get the "
                "preset's. Set the sampler's cfg to the preset's cfg + 1 (embedded presets: 5; f24F96R960: 21). "
                "ComfyUI's RenormCFG differs: it compares sigma, not t, with its cutoff, and renorms the denoised "
                "image with one decision for the whole batch."
            ),
            inputs=[
                io.Model.Input("model"),
                _preset_input("The preset whose cutoff, renorm, motion scores and motion guidance are used."),
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
        guidance = _comfy_model.ReferenceGuidance(
            cutoff=cutoff,
            renorm=renorm if renorm >= 0 else config.renorm,
            motion=config.motion,
            neg_motion=config.neg_motion,
            motion_guidance=config.motion_cfg,
        )
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


NATIVE_NODES = [
    LuminaVideoNativeModelLoader,
    LuminaVideoPromptEncode,
    LuminaVideoMotionConditioning,
    LuminaVideoMultiScale,
    LuminaVideoGuidance,
    LuminaVideoScheduler,
    LuminaVideoLoRA,
]
