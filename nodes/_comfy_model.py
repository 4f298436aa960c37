"""Lumina-Video as a native ComfyUI model: MODEL and CONDITIONING.

With ``_comfy.py``, the only module of the pack that imports ComfyUI. A native MODEL is ComfyUI's
``ModelPatcher`` over ``LuminaVideoNative`` (a ``comfy.model_base.BaseModel``) whose diffusion model,
``ComfyNextDiT``, is the engine's Multi-scale Next-DiT built from ``comfy.ops`` layers: its state dict is
the checkpoint's under ``diffusion_model.``, so LoRA files, merges, fp8 weights and partial loading work
as they do on ComfyUI's own models.

Conventions are converted here, once:
- time: ComfyUI's sigma (1 = noise, 0 = data) is the reference's t = 1 - sigma; the model sampling is
  ComfyUI's discrete flow with multiplier 1, so the diffusion model receives sigma itself;
- output: ComfyUI's flow models predict noise - data, the reference's velocity is data - noise;
- conditioning: a caption's features and mask travel as ComfyUI's Lumina 2 does (``cross_attn``,
  ``attention_mask``); the motion score (``lumina_motion``, time-aware) is set on a conditioning by the
  Motion Score node and read per step from the table form of ``sampling.schedule_table``;
- the patch size: the finest the model has, unless a Multi-Scale patch puts a schedule into the model's
  transformer options (``TRANSFORMER_KEY``); it is read per call from sigma;
- a LATENT's ``noise_mask`` (1 generate, 0 keep): ComfyUI's inpainting replacement, or, for weights trained
  with per-token timesteps (``ModelSource.conditioning``), LTXV's way: kept cells clean, their sigma scaled by
  the mask, a time per latent cell for the DiT.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Optional

import comfy.conds
import comfy.latent_formats
import comfy.lora
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.supported_models_base
import torch
from tqdm.auto import trange

from ..lumina_core import embedded
from ..lumina_core.models.nextdit import MultiScaleNextDiT, NextDiTConfig, PatchSize, call_time
from ..lumina_core.models.text import TextCondition
from ..lumina_core.sampling import (
    NO_MOTION,
    SamplingConfig,
    StepCache,
    TimeAware,
    WindowedModel,
    WindowPlan,
    renorm_per_sample,
    schedule_table,
    value_at,
    value_from_table,
)

TRANSFORMER_KEY = "lumina_video"
"""model_options["transformer_options"][TRANSFORMER_KEY]: {"patch": time-aware patch schedule, "cache": the
engine's step cache (``sampling.cache.CachedModel``) for one run, "windows": a ``WindowPlan`` over latent frames}."""
SKIP_LAYERS_KEY = "lumina_skip_layers"
"""On a conditioning of skip-layer guidance's pass: the blocks to leave out, as integers [1, n]."""
MOTION_KEY = "lumina_motion"
"""A conditioning's motion score (time-aware, the engine's form); absent = no motion condition."""
MOTION_GUIDANCE_KEY = "lumina_motion_guidance"
"""A positive conditioning's motion-guidance scale (time-aware), applied by the Guidance patch."""


class LuminaVideoLatentFormat(comfy.latent_formats.LatentFormat):
    """The pack's latents are the model's own (the VAE nodes scale them), [B, 16, F, H, W]."""

    latent_channels = 16
    latent_dimensions = 3
    scale_factor = 1.0


class LuminaVideoModelConfig(comfy.supported_models_base.BASE):
    """The model config ComfyUI's loading code reads: the Next-DiT's constructor arguments and the flow sampling."""

    unet_extra_config = {}
    latent_format = LuminaVideoLatentFormat
    supported_inference_dtypes = [torch.bfloat16, torch.float16, torch.float32]
    memory_usage_factor = 2.0  # ComfyUI's rule of thumb for DiTs; sizes ComfyUI's partial-loading decision only

    def __init__(self, dit_config: NextDiTConfig, shift: float):
        super().__init__(asdict(dit_config))
        self.sampling_settings = {"multiplier": 1.0, "shift": float(shift)}

    def get_model(self, state_dict, prefix="", device=None) -> "LuminaVideoNative":
        return LuminaVideoNative(self, device=device)


class ComfyNextDiT(MultiScaleNextDiT):
    """The Next-DiT called the way ComfyUI calls a diffusion model.

    ``forward(x [B, C, F, H, W], sigma [B] or per latent cell [B, F, H, W], context [B, L, D], attention_mask
    [B, L], lumina_motion [B, 2*slots])`` -> noise - data [B, C, F, H, W]. ``reference_forward`` is the engine's
    call (t = 1 - sigma, data - noise).
    """

    def __init__(self, dtype=None, device=None, operations=None, **config):
        super().__init__(**config, dtype=dtype, device=device, operations=operations)
        self.dtype = dtype  # ComfyUI's BaseModel.get_dtype reads it

    reference_forward = MultiScaleNextDiT.forward

    @property
    def finest_patch(self) -> PatchSize:
        return min(self.patch_sizes, key=lambda p: (p.temporal * p.spatial**2, p))

    def forward(
        self,
        x,
        timesteps,
        context,
        attention_mask=None,
        lumina_motion=None,
        transformer_options=None,
        lumina_skip_layers=None,
        **_,
    ):
        transformer_options = transformer_options or {}
        return comfy.patcher_extension.WrapperExecutor.new_class_executor(
            self._forward,
            self,
            comfy.patcher_extension.get_all_wrappers(
                comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, transformer_options
            ),
        ).execute(
            x,
            timesteps,
            context,
            attention_mask,
            lumina_motion,
            transformer_options=transformer_options,
            lumina_skip_layers=lumina_skip_layers,
        )

    def _forward(
        self, x, timesteps, context, attention_mask, lumina_motion, transformer_options=None, lumina_skip_layers=None
    ):
        transformer_options = transformer_options or {}
        if float(timesteps.max()) > 1.0 + 1e-4:
            raise ValueError(
                f"Lumina-Video got timestep {float(timesteps.max()):g}: it takes sigma itself (model sampling with "
                "multiplier 1). Use Lumina-Video Model Sampling or ModelSamplingAuraFlow, not ModelSamplingSD3"
            )
        t = 1.0 - timesteps.double()  # the reference's time, 0 = noise
        batch = x.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(context.shape[:2], dtype=torch.long, device=x.device)
        sample_t = t if t.ndim == 1 else t.flatten(1).amin(1)  # per-cell times: the sampler's is the least
        if lumina_motion is None:
            motion = torch.full((batch,), NO_MOTION, dtype=torch.float64, device=x.device)
        else:
            motion = value_from_table(lumina_motion, sample_t)
        options = transformer_options.get(TRANSFORMER_KEY, {})
        schedule = options.get("patch")
        patch = self.finest_patch if schedule is None else PatchSize.parse(value_at(schedule, call_time(t)))
        forward = self.reference_forward if options.get("cache") is None else options["cache"]
        if options.get("windows") is not None:
            if options.get("cache") is not None:
                raise ValueError("step caching can't be combined with windows yet: set the Sampler's cache to 0")
            forward = self.windowed(forward, options["windows"], schedule, transformer_options.get("sample_sigmas"))
        dtype = x.dtype
        # skip-layer guidance's pass: every row of the batch carries the same blocks (its conds batch only together)
        skip = {} if lumina_skip_layers is None else {"skip_layers": tuple(lumina_skip_layers[0].tolist())}
        velocity = forward(x, t.to(dtype), context, attention_mask, motion.to(dtype), patch, **skip)
        return -velocity

    def windowed(self, forward, plan: WindowPlan, schedule: Optional[TimeAware], sigmas) -> WindowedModel:
        """``forward`` run on the plan's windows of latent frames (and tiles) and fused (the engine's MultiDiffusion),
        aligned to the largest temporal (and spatial) patch the schedule uses; the windows shift along the run's
        sigmas, which ComfyUI's sampling puts in the transformer options (without them they stay in place)."""
        patches = [self.finest_patch] if schedule is None else [PatchSize.parse(p) for p in schedule_values(schedule)]
        times = [0.0] if sigmas is None else (1.0 - sigmas.double()).tolist()
        align, spatial_align = max(p.temporal for p in patches), max(p.spatial for p in patches)
        return WindowedModel(forward, plan, times, align=align, spatial_align=spatial_align)


def schedule_values(schedule: TimeAware) -> list:
    """Every value a time-aware setting takes: v, or (v0, (t1, v1), ...)."""
    return [schedule] if not isinstance(schedule, tuple) else [schedule[0], *(value for _, value in schedule[1:])]


class PaddedCaption(comfy.conds.CONDRegular):
    """Caption features [B, L, D] or masks [B, L] that batch with captions of another length: ComfyUI concatenates
    conds of one batch, and a positive and a negative prompt rarely have as many tokens. Padding is zero, and a
    zero mask entry hides a padded token from attention, so a padded caption gives the same result."""

    def can_concat(self, other) -> bool:
        mine, theirs = self.cond.shape, other.cond.shape
        return len(mine) == len(theirs) and mine[2:] == theirs[2:] and self.cond.device == other.cond.device

    def concat(self, others):
        conds = [self.cond] + [other.cond for other in others]
        longest = max(c.shape[1] for c in conds)
        padded = [torch.nn.functional.pad(c, (0, 0) * (c.ndim - 2) + (0, longest - c.shape[1])) for c in conds]
        return torch.cat(padded)


@dataclass(frozen=True)
class ModelSource:
    """Where a native model came from: its loader choice, whether it is the embedded default (which can't draw beyond
    the sizes it was trained for), and the embedded default's own tiny text encoder (None for weights that need
    Gemma-2-2B). Not a module, so it is no part of the state dict that merges and saving see."""

    name: str
    embedded: bool = False
    text_encoder: Optional[Any] = None  # lumina_core.models.text.TinyTextEncoder
    conditioning: str = "replace"  # what the DiT was trained for (io.checkpoints.trained_conditioning)

    @property
    def size_limits(self) -> Optional[dict]:
        return embedded.SIZES if self.embedded else None


class LuminaVideoNative(comfy.model_base.BaseModel):
    """ComfyUI's BaseModel around ComfyNextDiT: a flow model whose conditions are the caption, its mask and the
    motion score."""

    def __init__(self, model_config: LuminaVideoModelConfig, device=None):
        super().__init__(model_config, comfy.model_base.ModelType.FLOW, device=device, unet_model=ComfyNextDiT)
        self.lumina_source = ModelSource("Lumina-Video")
        self.lumina_conditioning: Optional[str] = None  # the mechanism chosen (an object patch), None: the trained one

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        features = kwargs.get("cross_attn")
        if features is not None:
            width, wanted = features.shape[-1], self.diffusion_model.cap_feat_dim
            if width != wanted:
                raise ValueError(
                    f"the conditioning's caption features are {width} wide but this Lumina-Video model reads "
                    f"{wanted}-wide ones: encode the prompt for this model (the embedded default with its own text "
                    "encoder, released weights with Gemma-2-2B: Load CLIP, type lumina2)"
                )
            mask = kwargs.get("attention_mask")
            if mask is None:
                mask = torch.ones(features.shape[:2], dtype=torch.long)
            out["c_crossattn"] = PaddedCaption(features)
            out["attention_mask"] = PaddedCaption(mask.long())
        motion = kwargs.get(MOTION_KEY)
        if motion is not None:
            out[MOTION_KEY] = comfy.conds.CONDRegular(schedule_table(motion)[None])
        skip_layers = kwargs.get(SKIP_LAYERS_KEY)
        if skip_layers is not None:
            out[SKIP_LAYERS_KEY] = comfy.conds.CONDRegular(skip_layers)
        denoise_mask = kwargs.get("denoise_mask")
        if denoise_mask is not None and self.per_token_timesteps:
            out["denoise_mask"] = comfy.conds.CONDRegular(denoise_mask[:, :1])  # [B, 1, K, h, w]
        return out

    @property
    def per_token_timesteps(self) -> bool:
        return (self.lumina_conditioning or self.lumina_source.conditioning) == "timestep"

    def process_timestep(self, timestep, x=None, denoise_mask=None, **kwargs):
        """sigma [B] -> per latent cell [B, K, h, w], scaled by the noise mask (kept cells at 0: clean)."""
        if denoise_mask is None:
            return timestep
        return denoise_mask[:, 0] * timestep.view(-1, 1, 1, 1)

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        """Kept cells enter the model clean under per-token timesteps, noised to sigma under replacement."""
        if self.per_token_timesteps:
            return latent_image
        return super().scale_latent_inpaint(sigma, noise, latent_image, **kwargs)


def native_model(
    dit_config: NextDiTConfig,
    state_dict: dict[str, torch.Tensor],
    shift: float,
    weight_dtype: Optional[torch.dtype],
    load_device: torch.device,
    offload_device: torch.device,
    source: Optional[ModelSource] = None,
):
    """A ModelPatcher over the Next-DiT of ``state_dict``, built as ComfyUI builds its diffusion models: the weight
    dtype given (fp8 included) or ComfyUI's choice for the device, computing in a dtype the device supports."""
    config = LuminaVideoModelConfig(dit_config, shift)
    parameters = sum(t.numel() for t in state_dict.values())
    supported = list(config.supported_inference_dtypes)
    if weight_dtype is None:
        weight_dtype = mm.unet_dtype(device=load_device, model_params=parameters, supported_dtypes=supported)
    config.set_inference_dtype(weight_dtype, mm.unet_manual_cast(weight_dtype, load_device, supported))
    model = config.get_model(state_dict, "").to(offload_device)
    missing, unexpected = model.diffusion_model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:  # the engine's loader checked the keys already: this is a bug, not a user's error
        raise RuntimeError(f"native Lumina-Video model: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.diffusion_model.requires_grad_(False)
    if source is not None:
        model.lumina_source = source
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def is_lumina_video(model) -> bool:
    """Whether a MODEL (ModelPatcher) holds a Lumina-Video Next-DiT."""
    return isinstance(getattr(getattr(model, "model", None), "diffusion_model", None), ComfyNextDiT)


def require_lumina_video(model, input_name: str = "model") -> ModelSource:
    """-> the model's source; refuses a MODEL that isn't Lumina-Video's."""
    if not is_lumina_video(model):
        kind = type(getattr(model, "model", model)).__name__
        raise ValueError(f"{input_name} is a {kind}, not a Lumina-Video model: load it with Lumina-Video Model Loader")
    return model.model.lumina_source


def with_lora(model, tensors: dict[str, torch.Tensor], strength: float):
    """A clone of the MODEL with a LoRA (tensors in the pack's layout, checked by the engine) added as ComfyUI's
    weight patches, the way its LoRA loaders add them; strength 0 adds none."""
    patched = model.clone()
    if strength != 0:
        key_map = comfy.lora.model_lora_keys_unet(patched.model, {})
        patched.add_patches(comfy.lora.load_lora(tensors, key_map), strength)
    return patched


# --------------------------------------------------------------------------- conditioning


def conditioning(condition: TextCondition, **extra) -> list:
    """A prompt's caption features [1, L, D] and mask as ComfyUI's CONDITIONING: [[features, {"attention_mask"}]]."""
    return [[condition.features, {"attention_mask": condition.mask, **extra}]]


def with_values(conditioning_in: list, **values) -> list:
    """A copy of a CONDITIONING with ``values`` set on every entry (as ComfyUI's node_helpers does)."""
    return [[features, {**options, **values}] for features, options in conditioning_in]


# --------------------------------------------------------------------------- model patches


def with_patch_schedule(model, schedule: TimeAware):
    """A clone of the MODEL that picks its patch size from sigma by ``schedule`` (the engine's time-aware form)."""
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options[TRANSFORMER_KEY] = {**options.get(TRANSFORMER_KEY, {}), "patch": schedule}
    return patched


def with_windows(model, plan: WindowPlan):
    """A clone of the MODEL that samples long clips in fused windows of latent frames (``plan``)."""
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    options[TRANSFORMER_KEY] = {**options.get(TRANSFORMER_KEY, {}), "windows": plan}
    return patched


def windows_of(model) -> Optional[WindowPlan]:
    """The window plan a MODEL carries (Lumina-Video Windows), or None."""
    return model.model_options.get("transformer_options", {}).get(TRANSFORMER_KEY, {}).get("windows")


def with_step_cache(model, cache: StepCache, sigmas: torch.Tensor):
    """A clone of the MODEL that runs the engine's step caching over the time grid of ``sigmas`` (a cache holds one
    run's residuals: make a clone per run)."""
    patched = model.clone()
    times = (1.0 - sigmas.double()).tolist()
    options = patched.model_options.setdefault("transformer_options", {})
    options[TRANSFORMER_KEY] = {
        **options.get(TRANSFORMER_KEY, {}),
        "cache": cache.wrap(model.model.diffusion_model, times),
    }
    return patched


class ReferenceGuidance:
    """Classifier-free guidance as the reference computes it, in ComfyUI's sampler hooks.

    ComfyUI's cfg scale s is the reference's cfg + 1 (uncond + s (cond - uncond) = cond + cfg (cond - uncond)).
    Guidance is truncated once t = 1 - sigma reaches ``cutoff`` (the unconditional pass is then skipped), the
    guided prediction is renormed per sample to at most ``renorm`` times the conditional one's norm (on noise -
    data, the velocity up to sigma, as the reference renorms its velocity), and motion guidance adds a third pass
    without the motion score, batched with the others. Conditionings without a motion score get ``motion`` (positive)
    and ``neg_motion`` (negative); the positive's ``lumina_motion_guidance`` overrides ``motion_guidance``.
    Skip-layer guidance (``skip_guidance``, time-aware; 0 = off) adds a pass of the positive without the blocks
    ``skip_layers``, as the engine does.
    """

    def __init__(
        self,
        cutoff: float,
        renorm: float,
        motion: TimeAware,
        neg_motion: TimeAware,
        motion_guidance,
        skip_guidance: TimeAware = 0.0,
        skip_layers: tuple[int, ...] = (-1,),
    ):
        self.cutoff, self.renorm = cutoff, renorm
        self.motion, self.neg_motion, self.motion_guidance = motion, neg_motion, motion_guidance
        self.skip_guidance, self.skip_layers = skip_guidance, skip_layers
        self.pending_motion_guidance: Optional[tuple[float, torch.Tensor]] = None
        self.pending_skip_guidance: Optional[tuple[float, torch.Tensor]] = None
        self.warned_cache = False

    @classmethod
    def of(cls, config: SamplingConfig, cutoff: float) -> "ReferenceGuidance":
        """The guidance ``config`` sets (renorm, motion scores, motion and skip-layer guidance), CFG cut at cutoff."""
        return cls(
            cutoff,
            config.renorm,
            config.motion,
            config.neg_motion,
            config.motion_cfg,
            config.skip_guidance,
            config.skip_layers,
        )

    def install(self, model):
        patched = model.clone()
        patched.model_options["sampler_calc_cond_batch_function"] = self.calc_cond_batch
        patched.set_model_sampler_cfg_function(self.cfg, disable_cfg1_optimization=True)
        patched.set_model_sampler_post_cfg_function(self.add_motion_guidance)
        return patched

    @staticmethod
    def time(sigma: torch.Tensor) -> float:
        return 1.0 - float(sigma.flatten()[0])

    def motion_guidance_at(self, conds: list, t: float) -> float:
        """The motion-guidance scale at time t: the positive's own or the preset's, and 0 while the positive pass has
        no motion score (as the engine's guidance)."""
        first = conds[0]
        schedule = first.get(MOTION_GUIDANCE_KEY)
        table = first["model_conds"][MOTION_KEY].cond
        if float(value_from_table(table[:1], torch.tensor([t]))) < 0:
            return 0.0
        return float(value_at(self.motion_guidance if schedule is None else schedule, t))

    def skip_guidance_at(self, model_options: dict, t: float) -> float:
        """The skip-layer guidance scale at time t; 0 under EasyCache or LazyCache, which key their reused outputs by
        conditioning and have none for a pass that starts mid-run, and would compare a reused positive with a fresh
        weakened pass (logged once)."""
        scale = float(value_at(self.skip_guidance, t))
        if scale and "easycache" in model_options.get("transformer_options", {}):
            if not self.warned_cache:
                logging.warning("Lumina-Video Guidance: skip-layer guidance is off under EasyCache / LazyCache")
                self.warned_cache = True
            return 0.0
        return scale

    def calc_cond_batch(self, args: dict) -> list:
        cond, uncond = args["conds"]
        cond = with_default_motion(cond, self.motion)
        t = self.time(args["sigma"])
        guided = uncond is not None and t < self.cutoff
        scale = self.motion_guidance_at(cond, t)
        conds = [cond, with_default_motion(uncond, self.neg_motion) if guided else None]
        if scale:
            conds.append(with_motion(cond, NO_MOTION))
        skip_scale = self.skip_guidance_at(args["model_options"], t)
        if skip_scale:
            conds.append(with_skip_layers(cond, self.skip_layers))
        out = comfy.samplers.calc_cond_batch(args["model"], conds, args["input"], args["sigma"], args["model_options"])
        self.pending_motion_guidance = (scale, out[2]) if scale else None
        self.pending_skip_guidance = (skip_scale, out[-1]) if skip_scale else None
        return [out[0], out[1] if guided else out[0]]

    def cfg(self, args: dict) -> torch.Tensor:
        """-> the guided "x - denoised" (sigma times noise - data, ComfyUI's form)."""
        cond, uncond = args["cond"], args["uncond"]
        if self.time(args["sigma"]) >= self.cutoff:
            return cond
        guided = uncond + (cond - uncond) * args["cond_scale"]
        return renorm_per_sample(guided, cond, self.renorm) if self.renorm > 0 else guided

    def add_motion_guidance(self, args: dict) -> torch.Tensor:
        """Post-CFG: adds scale * (cond - cond without motion) and scale * (cond - cond without the skipped blocks)
        with the passes ``calc_cond_batch`` ran this step."""
        denoised = args["denoised"]
        for pending in (self.pending_motion_guidance, self.pending_skip_guidance):
            if pending is not None:
                scale, other = pending
                denoised = denoised + scale * (args["cond_denoised"] - other)
        self.pending_motion_guidance = self.pending_skip_guidance = None
        return denoised


def with_motion(conds: Optional[list], motion: TimeAware, only_where_missing: bool = False) -> Optional[list]:
    """Processed conds (as a sampler holds them) with the motion condition set to ``motion``."""
    if conds is None:
        return None
    out = []
    for cond in conds:
        model_conds = dict(cond.get("model_conds", {}))
        if not (only_where_missing and MOTION_KEY in model_conds):
            model_conds[MOTION_KEY] = comfy.conds.CONDRegular(schedule_table(motion)[None])
        out.append({**cond, "model_conds": model_conds})
    return out


def with_skip_layers(conds: list, layers: tuple[int, ...]) -> list:
    """Processed conds for skip-layer guidance's pass: the blocks to leave out on each, and uuids of their own, the
    same at every step, so that caches keyed by uuid (EasyCache) keep this pass's outputs apart from the positive's."""
    out = []
    for cond in conds:
        model_conds = dict(cond.get("model_conds", {}))
        model_conds[SKIP_LAYERS_KEY] = comfy.conds.CONDRegular(torch.tensor([layers], dtype=torch.long))
        own = {"uuid": uuid.uuid5(uuid.NAMESPACE_OID, f"{cond['uuid']} skip layers")} if "uuid" in cond else {}
        out.append({**cond, "model_conds": model_conds, **own})
    return out


def with_default_motion(conds: Optional[list], motion: TimeAware) -> Optional[list]:
    return with_motion(conds, motion, only_where_missing=True)


# --------------------------------------------------------------------------- solvers


@torch.no_grad()
def sample_midpoint(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """The engine's midpoint rule in ComfyUI's sampler form: half an Euler step, then the whole step along the
    direction found there (two model calls per step)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        sigma_mid = (sigma + sigma_next) / 2
        x_mid = x + (x - denoised) / sigma * (sigma_mid - sigma)
        x = x + (x_mid - model(x_mid, sigma_mid * s_in, **extra_args)) / sigma_mid * (sigma_next - sigma)
    return x


def sample(
    model,
    noise,
    cfg: float,
    sampler,
    sigmas,
    positive: list,
    negative: list,
    callback=None,
    seed: int = 0,
    latent_image: Optional[torch.Tensor] = None,
    noise_mask: Optional[torch.Tensor] = None,
):
    """ComfyUI's sampling (SamplerCustomAdvanced's path) from ``noise`` over ``sigmas``; ``callback(step, denoised, x,
    total)`` at each step. It starts at sigmas[0] * noise + (1 - sigmas[0]) * ``latent_image`` (zeros when None), the
    noise itself when sigmas[0] is 1; where ``noise_mask`` (1 generate, 0 keep) is below 1, ComfyUI holds
    ``latent_image`` by replacement at every step (``comfy.samplers.KSamplerX0Inpaint``)."""
    latent = torch.zeros_like(noise) if latent_image is None else latent_image
    return comfy.sample.sample_custom(
        model, noise, cfg, sampler, sigmas, positive, negative, latent, noise_mask=noise_mask, callback=callback,
        disable_pbar=True, seed=seed,
    )  # fmt: skip


def sampler_for(solver: str):
    """ComfyUI's SAMPLER for one of the engine's solvers: euler and heun are ComfyUI's own (its heun takes an Euler
    step last, where sigma is 0), midpoint is ``sample_midpoint``."""
    if solver == "midpoint":
        return comfy.samplers.KSAMPLER(sample_midpoint)
    if solver in ("euler", "heun"):
        return comfy.samplers.sampler_object(solver)
    raise ValueError(f"solver {solver!r} is not one of euler, midpoint, heun")
