"""Lumina-Video Model Sampling: a native Lumina-Video MODEL's time shift, set by hand or from the latent's size.

The shift is the one of ComfyUI's discrete flow sampling (sigma' = s sigma / (1 + (s - 1) sigma)), the reference's
time shift under ComfyUI's sigma = 1 - t, so KSampler's schedulers step on the grid the reference's sampler would.
"auto" takes it from the latent's token count (``lumina_core.sampling.auto_time_shift``), as ComfyUI's
ModelSamplingLTXV does for LTX-Video.
"""

from __future__ import annotations

from typing import Optional

from ..lumina_core.sampling import auto_time_shift, token_count
from . import _comfy, _comfy_model
from ._comfy import io


def with_flow_shift(model, shift: float):
    """A clone of the MODEL whose model sampling is ComfyUI's discrete flow at ``shift`` with multiplier 1, set as
    ModelSamplingAuraFlow sets it (an object patch). The multiplier stays 1 because the Lumina-Video model takes sigma
    itself as its timestep and refuses anything above 1.

    The new sampling is an instance of the class the Lumina-Video model was built with, so this module needs no
    ComfyUI import. It is read from the base model, or from the patcher's backup of it while a loaded clone has its
    own object patches applied in place (another node's sampling, Flux's for instance, has no multiplier)."""
    base = model.model
    own = model.object_patches_backup.get("model_sampling", base.model_sampling)
    sampling = type(own)(base.model_config)
    sampling.set_parameters(shift=shift, multiplier=1.0)
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


def latent_tokens(model, latent: Optional[dict]) -> int:
    """The token count of a LATENT's samples [B, C, F, H, W] at the model's finest patch size."""
    if latent is None:
        raise ValueError(
            "auto takes the shift from the latent's size: connect the latent you sample (Lumina-Video Empty Latent, "
            "or the one your sampler starts from) to latent, or turn auto off and set shift"
        )
    shape = tuple(latent["samples"].shape)
    if len(shape) != 5:
        raise ValueError(
            f"latent is {list(shape)}, not a video latent [batch, channels, frames, height, width]: connect a "
            "Lumina-Video latent (Lumina-Video Empty Latent)"
        )
    return token_count(shape, model.model.diffusion_model.patch_sizes)


class LuminaVideoModelSampling(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoModelSampling",
            display_name="Lumina-Video Model Sampling",
            category="Lumina-Video/native",
            description=(
                "Sets a Lumina-Video MODEL's time shift, which KSampler's schedulers read: a larger shift puts more "
                "steps at the noisy end. The reference uses 24 at 1248x704 with 96 frames and 8 at 672x384 with 64; "
                "auto interpolates between those in the latent's token count (as ModelSamplingLTXV does). Use this "
                "node or ModelSamplingAuraFlow, not ModelSamplingSD3 (its timesteps are 1000 times too large for "
                "this model). Lumina-Video Scheduler's sigmas keep their preset's shift."
            ),
            inputs=[
                io.Model.Input("model"),
                io.Float.Input(
                    "shift",
                    default=24.0,
                    min=0.01,
                    max=100.0,
                    step=0.01,
                    tooltip="The time shift when auto is off: 24 for released weights at 1248x704x96 (8 at "
                    "672x384x64); the embedded default's presets use 3 (single-scale) and 9 (multi-scale).",
                ),
                io.Boolean.Input(
                    "auto",
                    default=False,
                    tooltip="Take the shift from the latent's token count at the model's finest patch size instead: "
                    "8 at 16,128 tokens, 24 at 82,368, on a line through both (4.1 for the embedded default's "
                    "64x64x16).",
                ),
                io.Latent.Input("latent", optional=True, tooltip="The latent to sample; its size sets auto's shift."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, shift: float, auto: bool = False, latent: Optional[dict] = None) -> io.NodeOutput:
        _comfy_model.require_lumina_video(model)
        if auto:
            tokens = latent_tokens(model, latent)
            shift = auto_time_shift(tokens)
            _comfy.log.info("Lumina-Video Model Sampling: auto shift %.4g for %d tokens", shift, tokens)
        if not shift > 0:
            raise ValueError(f"shift must be positive, got {shift}")
        return io.NodeOutput(with_flow_shift(model, float(shift)))


MODEL_SAMPLING_NODES = [LuminaVideoModelSampling]
