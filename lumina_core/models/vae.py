"""CogVideoX causal 3D video VAE, the autoencoder Lumina-Video samples in.

State-dict keys and numerics follow diffusers' ``AutoencoderKLCogVideoX``, so the
``vae/diffusion_pytorch_model.safetensors`` of THUDM/CogVideoX-2b loads with
``strict=True``; ``CogVideoXVAEConfig.tiny()`` is the same architecture, narrower.
Convolutions are causal in time: a 3-frame kernel sees the current frame and two
earlier ones, the very first frame being repeated to fill the past. Each causal
convolution keeps its last two input frames in a cache, so a video goes through in
temporal chunks and comes out as if it had gone through at once.

Latent spaces. The DiT works in *model space*, ``z_model = (latent - shift_factor) *
scaling_factor`` (CogVideoX-2b: shift 0, scale 1.15258426). The public methods say
which space they take: ``encode_to_model_latent`` returns model-space latents,
``decode_model_latent`` / ``decode_model_latent_tiled`` take them.

Frame accounting (documented here only; ``latent_frames_for`` and ``frames_for``
apply it)
-------------------------------------------------------------------------------
GroupNorm statistics are taken per temporal chunk, so the chunking is part of the
model's definition. diffusers, the reference Lumina-Video decoded with, uses:

* decode: latent frames in pairs; the two temporal upsamplers turn a pair into
  2 -> 4 -> 8 video frames. K latent frames, K even, give 4K frames: the sampler's
  ``frames // 4`` = 24 latents decode to 96 frames.
* encode: video frames in groups of 8; the two temporal downsamplers average
  neighbouring frames, 8 -> 4 -> 2. F frames, F a multiple of 8, give F/4 latents
  (Lumina-Video's online training path: clips trimmed to a multiple of 8 frames,
  ``vae.encode(...).latent_dist.mode()``), and those decode back to F frames:
  16 -> 4 -> 16.
* one frame (a still image) encodes to one latent frame and decodes back to one.

So the rule is ``frames == 4 * latent_frames`` with ``latent_frames`` even (frames a
multiple of 8), or 1 <-> 1. Other counts raise ``FrameCountError``. Lumina-Video's
multi-scale schedule needs an even latent count anyway (its 2-frame temporal
patches), and diffusers treats the other counts with a special first chunk:

* 1 + 4k frames (CogVideoX's native 49): the first chunk takes 8 + (F mod 8) frames
  and keeps its first frame apart as an "image" latent, so F -> k + 1 latents.
  Decoding an odd count K >= 3 runs the first three latents as one chunk (9 frames),
  hence 4K - 3 frames. So 1 + 8m frames round-trip (49 -> 13 -> 49), the others do
  not (13 -> 4 -> 16). Lumina-Video's pre-encoded training latents drop that image
  latent (``latent[:, 1:]``).
* 4k frames with k odd: 12 -> 3 latents -> 9 frames.

Within the rule, a chunk of several pairs (several 8-frame groups) normalises each
pair (group) on its own, so ``latent_frames_per_chunk`` / ``frames_per_chunk`` trade
memory for speed without changing the result.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file

from ..io.checkpoints import CheckpointError, open_safetensors
from .layers import TimestepEmbedder

CONFIG_METADATA_KEY = "lumina_vae_config"  # safetensors metadata: the config as JSON
DIFFUSERS_CLASS_NAME = "AutoencoderKLCogVideoX"
LATENT_FRAMES_PER_PAIR, FRAMES_PER_PAIR = 2, 8  # the decoder's unit; the encoder's is the inverse
FRAME_SLICE_BYTES = 32 * 2**20  # convolution inputs with larger frames go through a few frames at a time
DEFAULT_TILE_LATENT_HW, DEFAULT_TILE_OVERLAP = (48, 48), 8  # 384x384 px tiles: 8 tiles over 1248x704
DECODER_TIME_CHANNELS = 64  # width of a denoising decoder's noise-level embedding
NOISE_LEVEL_SCALE = 1000.0  # noise levels in [0, 1] enter the sinusoid as [0, 1000], as diffusion timesteps do


class VAEInputError(ValueError):
    """A tensor given to the VAE has the wrong shape for it."""


class FrameCountError(VAEInputError):
    """A frame count outside the rule in this module's docstring."""


class VAEWeightsError(ValueError):
    """A weights file that is not a CogVideoX VAE in diffusers layout (or does not match its config)."""


def latent_frames_for(frames: int) -> int:
    """Latent frames that ``frames`` video frames encode to (and decode back from)."""
    if frames == 1 or (frames > 0 and frames % FRAMES_PER_PAIR == 0):
        return 1 if frames == 1 else frames // 4
    nearest = sorted({max(FRAMES_PER_PAIR, (frames // FRAMES_PER_PAIR + step) * FRAMES_PER_PAIR) for step in (0, 1)})
    raise FrameCountError(
        f"{frames} video frames: the CogVideoX VAE encodes groups of 8 frames into 2 latent frames, so the "
        f"frame count must be a multiple of 8 (or 1 for a still image); use {' or '.join(map(str, nearest))} frames"
    )


def frames_for(latent_frames: int) -> int:
    """Video frames that ``latent_frames`` latent frames decode to."""
    if latent_frames == 1 or (latent_frames > 0 and latent_frames % LATENT_FRAMES_PER_PAIR == 0):
        return 1 if latent_frames == 1 else 4 * latent_frames
    nearest = sorted({max(2, (latent_frames // 2 + step) * 2) for step in (0, 1)})
    raise FrameCountError(
        f"{latent_frames} latent frames: the CogVideoX VAE decodes latent frames in pairs (each pair -> 8 video "
        f"frames), so the latent needs an even number of frames (or 1 for a still image); use "
        f"{' or '.join(map(str, nearest))} latent frames ({' or '.join(str(4 * k) for k in nearest)} video frames)"
    )


@dataclass(frozen=True)
class CogVideoXVAEConfig:
    """The fields of diffusers' ``AutoencoderKLCogVideoX`` config that shape the model.

    diffusers' fields left out are either tiling hints (``sample_height/width``) or
    options no released CogVideoX VAE uses; ``from_diffusers_config`` refuses the
    latter when set, rather than silently building a different model.
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3
    latent_channels: int = 16
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    temporal_compression_ratio: int = 4
    scaling_factor: float = 1.15258426
    shift_factor: float = 0.0
    decoder_lookahead: bool = False
    """This pack's option, off for every CogVideoX VAE: the decoder's latent-conditioned norms move their modulation
    from each latent frame towards the next one across the frames it decodes to (one latent frame of look-ahead), so
    those frames can differ; the causal decoder otherwise draws the frames of the first latent frame alike."""
    decoder_timestep_conditioning: bool = False
    """This pack's option, off for every CogVideoX VAE: LTX-Video's denoising decoder. The decoder takes the noise
    level of the latent it is given (0 clean, 1 pure noise) and each of its resnet blocks scales and shifts its norms'
    outputs by an embedding of it, so it can finish the last stretch of denoising itself: the sampler stops short of
    the clean end and hands its still slightly noisy latent over (``decode_model_latent(..., noise_level=...)``)."""

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        if self.temporal_compression_ratio != 4:
            raise ValueError(
                f"temporal_compression_ratio={self.temporal_compression_ratio}: only 4 is supported "
                "(the frame rule of this module and every released CogVideoX VAE assume 4)"
            )
        if len(self.block_out_channels) < 3:
            raise ValueError(
                "block_out_channels needs at least 3 entries: "
                "the two temporal downsamplers live in the first two blocks"
            )
        odd = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if odd:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {odd}")

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def cogvideox_2b(cls) -> "CogVideoXVAEConfig":
        """THUDM/CogVideoX-2b ``vae/config.json`` (about 216M parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> "CogVideoXVAEConfig":
        """The embedded default: same latent (16 channels, 8x spatial, 4x temporal), about 1.3M parameters."""
        return cls(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8)

    @classmethod
    def from_diffusers_config(cls, config: dict) -> "CogVideoXVAEConfig":
        class_name = config.get("_class_name", DIFFUSERS_CLASS_NAME)
        if class_name != DIFFUSERS_CLASS_NAME:
            raise VAEWeightsError(f"config is for {class_name}, not {DIFFUSERS_CLASS_NAME}")
        unsupported = {
            "act_fn": ("silu", config.get("act_fn", "silu")),
            "use_quant_conv": (False, config.get("use_quant_conv", False)),
            "use_post_quant_conv": (False, config.get("use_post_quant_conv", False)),
            "invert_scale_latents": (False, config.get("invert_scale_latents", False)),
            "latents_mean": (None, config.get("latents_mean")),
            "latents_std": (None, config.get("latents_std")),
        }
        for name, (supported, value) in unsupported.items():
            if value != supported:
                raise ValueError(
                    f"{DIFFUSERS_CLASS_NAME} config with {name}={value!r} is not supported (only {supported!r})"
                )
        for name in ("down_block_types", "up_block_types"):
            kinds = set(config.get(name, ()))
            if kinds - {"CogVideoXDownBlock3D", "CogVideoXUpBlock3D"}:
                raise ValueError(f"{name}={sorted(kinds)}: only CogVideoX 3D blocks are supported")
        known = {f: config[f] for f in cls.__dataclass_fields__ if f in config}
        if known.get("shift_factor") is None:
            known.pop("shift_factor", None)
        return cls(**known)

    def to_dict(self) -> dict:
        """A diffusers ``AutoencoderKLCogVideoX`` config (``from_config`` accepts it)."""
        blocks = len(self.block_out_channels)
        return {
            "_class_name": DIFFUSERS_CLASS_NAME,
            **asdict(self),
            "block_out_channels": list(self.block_out_channels),
            "down_block_types": ["CogVideoXDownBlock3D"] * blocks,
            "up_block_types": ["CogVideoXUpBlock3D"] * blocks,
            "act_fn": "silu",
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        }


def _records_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd is recording through these tensors (in-place ops are only safe when not)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x, inplace=not _records_grad(x))


def conv3d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride=(1, 1, 1), padding=(0, 0, 0)
) -> torch.Tensor:
    """``F.conv3d``, except that float32 on CPU always goes through oneDNN.

    PyTorch sends a batch-1 input with N*C*T*H <= 20480 (every tile-sized activation of
    a tiled decode) to its im2col kernel, several times slower and holding a column
    buffer 27x the input. (oneDNN wants contiguous input: a strided one, such as a
    latent tile, costs it hundreds of times longer.)
    """
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    ):
        return torch.mkldnn_convolution(x.contiguous(), weight, bias, padding, stride, (1, 1, 1), 1)
    return F.conv3d(x, weight, bias, stride, padding)


def in_frame_slices(output_frames, frames: int, frame_bytes: int, step_multiple: int = 1) -> torch.Tensor:
    """Assemble ``output_frames(a, b)`` (frames [a, b) of a conv's output) over slices of the time axis.

    A convolution copies its input (the causal padding; oneDNN/cuDNN layouts), so a big
    input goes through in slices of about ``FRAME_SLICE_BYTES``, frames being independent
    given their window; a small one goes through in one call.
    """
    step = max(step_multiple, FRAME_SLICE_BYTES // max(frame_bytes, 1) // step_multiple * step_multiple)
    if step >= frames:
        return output_frames(0, frames)
    out = None
    for a in range(0, frames, step):
        part = output_frames(a, min(a + step, frames))
        if out is None:
            out = part.new_empty(*part.shape[:2], frames, *part.shape[3:])
        out[:, :, a : a + part.shape[2]] = part
    return out


def group_norm(x: torch.Tensor, norm: nn.GroupNorm, segments: int) -> torch.Tensor:
    """GroupNorm with statistics per temporal segment: x [B, C, T, H, W], T split into ``segments`` equal parts.

    One segment per pair of latent frames (8-frame group) makes a multi-pair chunk
    compute exactly what pair-by-pair decoding computes.
    """
    if segments == 1:
        return norm(x)
    out = torch.empty_like(x)
    for part_out, part in zip(out.chunk(segments, dim=2), x.chunk(segments, dim=2)):
        part_out.copy_(norm(part))
    return out


class CausalConv3d(nn.Module):
    """3D convolution, causal in time (zero-padded in space), with a cache of its last input frames.

    ``cache`` maps each causal convolution to the frames it needs from the previous chunk;
    with no entry, the first frame is repeated into the past.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dtype=None, device=None):
        super().__init__()
        self.past_frames = kernel_size - 1
        self.spatial_padding = (0, kernel_size // 2, kernel_size // 2)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C', T, H, W]."""
        p = self.past_frames
        past = cache.get(self)
        if p and past is None:
            past = x[:, :, :1].expand(-1, -1, p, -1, -1)
        if p:
            cache[self] = torch.cat([past, x[:, :, -p:]], dim=2)[:, :, -p:].clone()

        def output_frames(a: int, b: int) -> torch.Tensor:
            # frames [a, b + p) of the causal input [past | x]
            parts = ([past[:, :, a:]] if a < p else []) + [x[:, :, max(a - p, 0) : b]]
            window = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
            return conv3d(window, self.conv.weight, self.conv.bias, padding=self.spatial_padding)

        return in_frame_slices(output_frames, x.shape[2], frame_bytes=x[:, :, :1].numel() * x.element_size())


def towards_next(p: torch.Tensor, frames: int) -> torch.Tensor:
    """p [B, C, t + 1, h, w] (t latent frames and the next one) -> [B, C, frames, h, w]: each latent frame's value
    moved linearly towards the next one's over the ``frames // t`` frames it decodes to (the first of them its own
    value). Both modulations are 1x1x1 convolutions, so this equals interpolating the latent itself."""
    now, following = p[:, :, :-1], p[:, :, 1:]
    t = now.shape[2]
    steps = frames // t
    weights = torch.arange(steps, device=p.device, dtype=p.dtype) / steps  # [steps]
    moved = now[:, :, :, None] + weights[:, None, None] * (following - now)[:, :, :, None]  # [B, C, t, steps, h, w]
    return moved.flatten(2, 3)


class SpatialNorm3D(nn.Module):
    """GroupNorm modulated by the latent: ``norm(f) * conv_y(z) + conv_b(z)``, z upsampled (nearest) to f.

    conv_y and conv_b are 1x1x1, so they run at latent resolution and the result is
    broadcast over each nearest-neighbour block: the same numbers as convolving the
    upsampled latent, without materialising it.
    """

    def __init__(
        self, channels: int, latent_channels: int, groups: int, lookahead: bool = False, dtype=None, device=None
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.lookahead = lookahead
        self.norm_layer = nn.GroupNorm(groups, channels, eps=1e-6, **factory)
        self.conv_y = CausalConv3d(latent_channels, channels, 1, **factory)
        self.conv_b = CausalConv3d(latent_channels, channels, 1, **factory)

    def forward(self, f: torch.Tensor, z: torch.Tensor, cache: dict, segments: int) -> torch.Tensor:
        """f [B, C, T, H, W], z [B, L, t, h, w] with T, H, W integer multiples of t, h, w -> [B, C, T, H, W].
        With ``lookahead``, z holds one more frame, the next latent frame, and t counts the others."""
        scale, shift = self.conv_y(z, cache), self.conv_b(z, cache)  # [B, C, t (+1), h, w]
        out = group_norm(f, self.norm_layer, segments)
        if self.lookahead:
            scale, shift = (towards_next(p, out.shape[2]) for p in (scale, shift))
        b, c, t, h, w = scale.shape
        T, H, W = out.shape[2:]
        blocks = out.view(b, c, t, T // t, h, H // h, w, W // w)
        scale, shift = (p.view(b, c, t, 1, h, 1, w, 1) for p in (scale, shift))
        if _records_grad(out, scale, shift):
            return (blocks * scale + shift).view_as(out)
        blocks.mul_(scale).add_(shift)
        return out


def modulate(h: torch.Tensor, scale_shift: Optional[torch.Tensor]) -> torch.Tensor:
    """h [B, C, T, H, W] scaled by 1 + scale and shifted, scale_shift [B, 2C] (None: h as it is)."""
    if scale_shift is None:
        return h
    scale, shift = scale_shift[:, :, None, None, None].chunk(2, dim=1)  # [B, C, 1, 1, 1] each
    return h * (1 + scale) + shift


class ResnetBlock3D(nn.Module):
    """Two (norm, SiLU, causal conv) stages and a residual; spatial norms in the decoder."""

    def __init__(
        self,
        in_channels,
        out_channels,
        groups,
        eps,
        latent_channels: Optional[int] = None,
        lookahead: bool = False,
        time_channels: Optional[int] = None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.split = (2 * in_channels, 2 * out_channels)
        if time_channels is not None:  # a denoising decoder's block: (scale, shift) of each norm from the noise level
            self.time_modulation = nn.Linear(time_channels, sum(self.split), **factory)
            nn.init.zeros_(self.time_modulation.weight)  # starts as the block without it
            nn.init.zeros_(self.time_modulation.bias)
        if latent_channels is None:
            self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, **factory)
            self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, **factory)
        else:
            self.norm1 = SpatialNorm3D(in_channels, latent_channels, groups, lookahead, **factory)
            self.norm2 = SpatialNorm3D(out_channels, latent_channels, groups, lookahead, **factory)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, **factory)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, **factory)
        if in_channels != out_channels:
            self.conv_shortcut = nn.Conv3d(in_channels, out_channels, 1, **factory)

    def _norm(self, norm, x, z, cache, segments):
        return group_norm(x, norm, segments) if z is None else norm(x, z, cache, segments)

    def forward(
        self, x, cache: dict, segments: int, z: Optional[torch.Tensor] = None, time: Optional[torch.Tensor] = None
    ):
        """x [B, C_in, T, H, W] -> [B, C_out, T, H, W]; z is the decoder's latent chunk, time [B, E] a denoising
        decoder's noise-level embedding."""
        first = second = None
        if time is not None:
            first, second = self.time_modulation(time).split(self.split, dim=1)  # [B, 2 C_in], [B, 2 C_out]
        # One statement per stage, so that each intermediate is released as soon as the next exists.
        h = modulate(self._norm(self.norm1, x, z, cache, segments), first)
        h = self.conv1(_silu(h), cache)
        h = modulate(self._norm(self.norm2, h, z, cache, segments), second)
        h = self.conv2(_silu(h), cache)
        shortcut = (
            conv3d(x, self.conv_shortcut.weight, self.conv_shortcut.bias) if hasattr(self, "conv_shortcut") else x
        )
        return h.add_(shortcut)


class Downsample3D(nn.Module):
    """Halve H and W (3x3 stride-2 conv per frame); with ``compress_time``, first average neighbouring frames."""

    def __init__(self, channels: int, compress_time: bool, dtype=None, device=None):
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C, T/2 (or T), H/2, W/2]; T is 1 or even."""
        if self.compress_time and x.shape[2] > 1:
            x = rearrange(x, "b c (t pair) h w -> b c t pair h w", pair=2).mean(dim=3)
        x = F.pad(x, (0, 1, 0, 1))
        return conv3d(x, self.conv.weight.unsqueeze(2), self.conv.bias, stride=(1, 2, 2))


class Upsample3D(nn.Module):
    """Double H and W (nearest, then a 3x3 conv per frame); with ``compress_time``, also double T."""

    def __init__(self, channels: int, compress_time: bool, dtype=None, device=None):
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T, H, W] -> [B, C, 2T (or T), 2H, 2W]; a single frame is never doubled in time."""
        time_factor = 2 if self.compress_time and x.shape[2] > 1 else 1

        def output_frames(a: int, b: int) -> torch.Tensor:
            up = F.interpolate(
                x[:, :, a // time_factor : b // time_factor], scale_factor=(time_factor, 2, 2), mode="nearest"
            )
            return conv3d(up, self.conv.weight.unsqueeze(2), self.conv.bias, padding=(0, 1, 1))

        frame_bytes = 4 * x[:, :, :1].numel() * x.element_size()
        return in_frame_slices(output_frames, time_factor * x.shape[2], frame_bytes, step_multiple=time_factor)


class DownBlock3D(nn.Module):
    def __init__(
        self,
        in_channels,
        out_channels,
        layers,
        groups,
        eps,
        downsample: bool,
        compress_time: bool,
        dtype=None,
        device=None,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups, eps, **factory)
            for i in range(layers)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample3D(out_channels, compress_time, **factory)]) if downsample else None
        )

    def forward(self, x, cache, segments):
        for resnet in self.resnets:
            x = resnet(x, cache, segments)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class MidBlock3D(nn.Module):
    def __init__(
        self,
        channels,
        groups,
        eps,
        latent_channels: Optional[int] = None,
        lookahead=False,
        time_channels: Optional[int] = None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(
                channels, channels, groups, eps, latent_channels, lookahead, time_channels, dtype=dtype, device=device
            )
            for _ in range(2)
        )

    def forward(self, x, cache, segments, z=None, time=None):
        for resnet in self.resnets:
            x = resnet(x, cache, segments, z, time)
        return x


class UpBlock3D(nn.Module):
    def __init__(
        self,
        in_channels,
        out_channels,
        layers,
        groups,
        eps,
        latent_channels,
        upsample: bool,
        compress_time: bool,
        lookahead: bool = False,
        time_channels: Optional[int] = None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.resnets = nn.ModuleList(
            ResnetBlock3D(
                in_channels if i == 0 else out_channels,
                out_channels,
                groups,
                eps,
                latent_channels,
                lookahead,
                time_channels,
                **factory,
            )
            for i in range(layers)
        )
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels, compress_time, **factory)]) if upsample else None

    def forward(self, x, cache, segments, z, time=None):
        for resnet in self.resnets:
            x = resnet(x, cache, segments, z, time)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


def _temporal_levels(config: CogVideoXVAEConfig) -> int:
    return int(math.log2(config.temporal_compression_ratio))


class Encoder3D(nn.Module):
    """frames [B, 3, T, H, W] -> posterior moments [B, 2L, T/4, H/8, W/8] (mean then log-variance)."""

    def __init__(self, config: CogVideoXVAEConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        channels, groups, eps = config.block_out_channels, config.norm_num_groups, config.norm_eps
        self.conv_in = CausalConv3d(config.in_channels, channels[0], 3, **factory)
        self.down_blocks = nn.ModuleList(
            DownBlock3D(
                channels[max(i - 1, 0)],
                channels[i],
                config.layers_per_block,
                groups,
                eps,
                downsample=i < len(channels) - 1,
                compress_time=i < _temporal_levels(config),
                **factory,
            )
            for i in range(len(channels))
        )
        self.mid_block = MidBlock3D(channels[-1], groups, eps, **factory)
        self.norm_out = nn.GroupNorm(groups, channels[-1], eps=1e-6, **factory)
        self.conv_out = CausalConv3d(channels[-1], 2 * config.latent_channels, 3, **factory)

    def forward(self, x: torch.Tensor, cache: dict, segments: int) -> torch.Tensor:
        x = self.conv_in(x, cache)
        for block in self.down_blocks:
            x = block(x, cache, segments)
        x = self.mid_block(x, cache, segments)
        return self.conv_out(_silu(group_norm(x, self.norm_out, segments)), cache)


class Decoder3D(nn.Module):
    """latent [B, L, t, h, w] -> frames [B, 3, 4t (1 if t == 1), 8h, 8w]; every norm is conditioned on the latent
    (and, in a denoising decoder, every resnet block on the latent's noise level)."""

    def __init__(self, config: CogVideoXVAEConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        channels = tuple(reversed(config.block_out_channels))
        groups, eps, latent = config.norm_num_groups, config.norm_eps, config.latent_channels
        self.lookahead = config.decoder_lookahead
        time_channels = DECODER_TIME_CHANNELS if config.decoder_timestep_conditioning else None
        if time_channels is not None:
            self.time_embedder = TimestepEmbedder(time_channels, **factory)
        self.conv_in = CausalConv3d(latent, channels[0], 3, **factory)
        self.mid_block = MidBlock3D(channels[0], groups, eps, latent, self.lookahead, time_channels, **factory)
        self.up_blocks = nn.ModuleList(
            UpBlock3D(
                channels[max(i - 1, 0)],
                channels[i],
                config.layers_per_block + 1,
                groups,
                eps,
                latent,
                upsample=i < len(channels) - 1,
                compress_time=i < _temporal_levels(config),
                lookahead=self.lookahead,
                time_channels=time_channels,
                **factory,
            )
            for i in range(len(channels))
        )
        self.norm_out = SpatialNorm3D(channels[-1], latent, groups, self.lookahead, **factory)
        self.conv_out = CausalConv3d(channels[-1], config.out_channels, 3, **factory)

    def forward(
        self,
        z: torch.Tensor,
        cache: dict,
        segments: int,
        z_next: Optional[torch.Tensor] = None,
        noise_level: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``z_next``: the latent frame after the chunk z (None at the end), read by look-ahead norms only;
        ``noise_level`` [B]: each latent's noise level, read by a denoising decoder only (None: 0, clean)."""
        time = None
        if hasattr(self, "time_embedder"):
            level = z.new_zeros(z.shape[0]) if noise_level is None else noise_level.to(z)
            time = self.time_embedder(level * NOISE_LEVEL_SCALE, dtype=z.dtype)  # [B, E]
        x = self.conv_in(z, cache)
        if self.lookahead:  # the norms see the next latent frame too (the last one holds at the end)
            z = torch.cat([z, z[:, :, -1:] if z_next is None else z_next], dim=2)
        x = self.mid_block(x, cache, segments, z, time)
        for block in self.up_blocks:
            x = block(x, cache, segments, z, time)
        return self.conv_out(_silu(self.norm_out(x, z, cache, segments)), cache)


@dataclass
class DiagonalGaussian:
    """The encoder's posterior over latents (VAE space), from moments [B, 2L, t, h, w]."""

    moments: torch.Tensor
    mean: torch.Tensor = field(init=False)
    logvar: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.mean, logvar = self.moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``size`` with at least ``overlap`` shared;
    the last one ends at ``size``."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def edge_ramp(length: int, ramp: int, rise: bool, fall: bool) -> torch.Tensor:
    """Blend weights [length] along one tile axis: linear ramps over ``ramp`` px on the sides that have a neighbour."""
    weight = torch.ones(length)
    up = (torch.arange(length) + 0.5) / ramp
    if rise:
        weight = torch.minimum(weight, up)
    if fall:
        weight = torch.minimum(weight, up.flip(0))
    return weight


class CogVideoXVAE(nn.Module):
    """Encoder + decoder with diffusers ``AutoencoderKLCogVideoX`` keys; frames are [B, 3, F, H, W] in [-1, 1]."""

    def __init__(self, config: CogVideoXVAEConfig, dtype=None, device=None):
        super().__init__()
        self.config = config
        self.encoder = Encoder3D(config, dtype=dtype, device=device)
        self.decoder = Decoder3D(config, dtype=dtype, device=device)

    @property
    def device(self) -> torch.device:
        return self.decoder.conv_in.conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.conv.weight.dtype

    def to_model_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """VAE space -> model space (what the DiT sees)."""
        return (latent - self.config.shift_factor) * self.config.scaling_factor

    def from_model_latent(self, z_model: torch.Tensor) -> torch.Tensor:
        """Model space -> VAE space."""
        return z_model / self.config.scaling_factor + self.config.shift_factor

    # -- encode -----------------------------------------------------------------------

    def encode_posterior(self, frames: torch.Tensor, frames_per_chunk: int = FRAMES_PER_PAIR) -> DiagonalGaussian:
        """frames [B, 3, F, H, W] in [-1, 1] (F a multiple of 8, or 1) -> posterior over VAE-space latents."""
        if frames.ndim != 5 or frames.shape[1] != self.config.in_channels:
            raise VAEInputError(
                f"frames of shape {tuple(frames.shape)}: "
                f"expected [batch, {self.config.in_channels}, frames, height, width]"
            )
        latent_frames_for(frames.shape[2])
        s = self.config.spatial_compression
        if frames.shape[3] % s or frames.shape[4] % s:
            raise VAEInputError(
                f"frames of {frames.shape[3]}x{frames.shape[4]} px: "
                f"height and width must be multiples of {s}; crop or resize first"
            )
        if frames_per_chunk <= 0 or frames_per_chunk % FRAMES_PER_PAIR:
            raise VAEInputError(
                f"frames_per_chunk={frames_per_chunk}: must be a positive multiple of {FRAMES_PER_PAIR}"
            )
        frames = frames.to(device=self.device, dtype=self.dtype)
        cache: dict = {}
        moments = [
            self.encoder(chunk, cache, segments=max(chunk.shape[2] // FRAMES_PER_PAIR, 1))
            for chunk in frames.split(frames_per_chunk, dim=2)
        ]
        return DiagonalGaussian(torch.cat(moments, dim=2))

    def encode_to_model_latent(
        self,
        frames: torch.Tensor,
        sample: bool = False,
        generator: Optional[torch.Generator] = None,
        frames_per_chunk: int = FRAMES_PER_PAIR,
    ) -> torch.Tensor:
        """frames [B, 3, F, H, W] in [-1, 1] -> model-space latent [B, 16, F/4 (1 if F == 1), H/8, W/8].

        The posterior mean by default (as Lumina-Video trains); ``sample=True`` draws from it.
        """
        posterior = self.encode_posterior(frames, frames_per_chunk)
        return self.to_model_latent(posterior.sample(generator) if sample else posterior.mode())

    # -- decode -----------------------------------------------------------------------

    def _check_latent(self, latent: torch.Tensor, latent_frames_per_chunk: int) -> torch.Tensor:
        if latent.ndim != 5 or latent.shape[1] != self.config.latent_channels:
            raise VAEInputError(
                f"latent of shape {tuple(latent.shape)}: this VAE expects [batch, {self.config.latent_channels}, "
                f"latent_frames, height/{self.config.spatial_compression}, width/{self.config.spatial_compression}]; "
                "was it made for another VAE? Sample with this VAE's latent channels"
            )
        frames_for(latent.shape[2])
        if latent_frames_per_chunk <= 0 or latent_frames_per_chunk % LATENT_FRAMES_PER_PAIR:
            raise VAEInputError(f"latent_frames_per_chunk={latent_frames_per_chunk}: must be a positive even number")
        return latent.to(device=self.device, dtype=self.dtype)

    def _noise_levels(self, latent: torch.Tensor, noise_level) -> Optional[torch.Tensor]:
        """``noise_level`` (a float, or one per latent [B]) -> [B] for a denoising decoder, None for clean latents."""
        levels = torch.as_tensor(noise_level, dtype=torch.float32).flatten()
        if levels.numel() not in (1, latent.shape[0]) or not bool(((levels >= 0) & (levels <= 1)).all()):
            raise VAEInputError(
                f"noise_level {noise_level}: give one level in [0, 1] (0: a clean latent), or one per latent of the "
                f"batch of {latent.shape[0]}"
            )
        if not self.config.decoder_timestep_conditioning:
            if bool((levels > 0).any()):
                raise VAEInputError(
                    f"noise_level {noise_level}: this VAE's decoder has no noise-level input (only a denoising "
                    "decoder, CogVideoXVAEConfig.decoder_timestep_conditioning, takes noisy latents); sample to the "
                    "end and decode with noise_level 0"
                )
            return None
        return levels.expand(latent.shape[0]).to(latent.device)

    def _decode_chunks(
        self, latent: torch.Tensor, latent_frames_per_chunk: int, noise_level: Optional[torch.Tensor] = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (first frame index, frames [B, 3, f, 8h, 8w]) chunk by chunk, the causal cache carried between them."""
        cache: dict = {}
        first = 0
        chunks = latent.split(latent_frames_per_chunk, dim=2)
        for index, chunk in enumerate(chunks):
            following = chunks[index + 1][:, :, :1] if index + 1 < len(chunks) else None
            segments = max(chunk.shape[2] // LATENT_FRAMES_PER_PAIR, 1)
            frames = self.decoder(chunk, cache, segments=segments, z_next=following, noise_level=noise_level)
            yield first, frames
            first += frames.shape[2]

    def _output(self, latent: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = latent.shape
        s = self.config.spatial_compression
        return latent.new_zeros(b, self.config.out_channels, frames_for(t), h * s, w * s)

    def decode_model_latent(
        self, z_model: torch.Tensor, latent_frames_per_chunk: int = LATENT_FRAMES_PER_PAIR, noise_level=0.0
    ) -> torch.Tensor:
        """model-space latent [B, 16, K, h, w] (K even, or 1) -> frames [B, 3, 4K (1 if K == 1), 8h, 8w]
        in about [-1, 1].

        Decodes ``latent_frames_per_chunk`` latent frames at a time (more: faster, more memory;
        same result). The frames are written into one preallocated tensor. ``noise_level`` (a float or [B];
        0 clean, 1 noise): how noisy the latent still is, for a denoising decoder (a sampler stopped short of
        the end); other decoders take clean latents only.
        """
        latent = self.from_model_latent(self._check_latent(z_model, latent_frames_per_chunk))
        levels = self._noise_levels(latent, noise_level)
        out = self._output(latent)
        for first, frames in self._decode_chunks(latent, latent_frames_per_chunk, levels):
            out[:, :, first : first + frames.shape[2]] = frames
        return out

    def decode_model_latent_tiled(
        self,
        z_model: torch.Tensor,
        tile_latent_hw: tuple[int, int] = DEFAULT_TILE_LATENT_HW,
        overlap: int = DEFAULT_TILE_OVERLAP,
        latent_frames_per_chunk: int = LATENT_FRAMES_PER_PAIR,
        noise_level=0.0,
    ) -> torch.Tensor:
        """``decode_model_latent`` in overlapping spatial tiles, each streamed through time.

        Tiles are ``tile_latent_hw`` latent px with ``overlap`` latent px shared between
        neighbours, blended with linear ramps over the overlap. Working memory is one
        tile's chunk plus its causal cache, whatever the video size; only the output
        grows with it. GroupNorm statistics are per tile, so the result is close to,
        not equal to, the untiled decode (equal when one tile covers the latent).
        """
        tile_h, tile_w = tile_latent_hw
        if not 0 <= overlap < min(tile_h, tile_w):
            raise VAEInputError(
                f"overlap={overlap} with tiles of {tile_h}x{tile_w} latent px: need 0 <= overlap < tile size"
            )
        latent = self.from_model_latent(self._check_latent(z_model, latent_frames_per_chunk))
        levels = self._noise_levels(latent, noise_level)
        out = self._output(latent)
        s = self.config.spatial_compression
        h, w = latent.shape[3:]
        tile_h, tile_w = min(tile_h, h), min(tile_w, w)
        rows = [(y, edge_ramp(tile_h * s, overlap * s, y > 0, y + tile_h < h)) for y in tile_starts(h, tile_h, overlap)]
        cols = [(x, edge_ramp(tile_w * s, overlap * s, x > 0, x + tile_w < w)) for x in tile_starts(w, tile_w, overlap)]

        weight_sum = torch.zeros(h * s, w * s)  # [H, W]: ramps of all tiles, to normalise each pixel's blend
        for y, ramp_y in rows:
            for x, ramp_x in cols:
                weight_sum[y * s : (y + tile_h) * s, x * s : (x + tile_w) * s] += ramp_y[:, None] * ramp_x[None]

        for y, ramp_y in rows:
            for x, ramp_x in cols:
                pixels = (slice(y * s, (y + tile_h) * s), slice(x * s, (x + tile_w) * s))
                blend = (ramp_y[:, None] * ramp_x[None] / weight_sum[pixels]).to(out)  # [tile H, tile W]
                tile = latent[:, :, :, y : y + tile_h, x : x + tile_w]
                for first, frames in self._decode_chunks(tile, latent_frames_per_chunk, levels):
                    out[:, :, first : first + frames.shape[2], pixels[0], pixels[1]] += frames.mul_(blend)
        return out


# -- weights -------------------------------------------------------------------------


def save_vae(vae: CogVideoXVAE, path: Union[str, Path]) -> None:
    """Write diffusers-layout safetensors with the config in the metadata (``load_vae`` reads it back)."""
    tensors = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    save_file(tensors, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(vae.config.to_dict())})


DIFFUSERS_KEYS = ("encoder.conv_in.conv.weight", "decoder.conv_in.conv.weight", "decoder.conv_out.conv.weight")
"""Keys every CogVideoX VAE in diffusers layout has (and other VAEs, with plain convolutions, don't)."""


def _config_for(weights: Path, keys: list[str], metadata: dict, shape_of) -> CogVideoXVAEConfig:
    """Sibling config.json (when it is a CogVideoX VAE's), else the metadata, else shapes (2b defaults for the rest)."""
    sibling = weights.with_name("config.json")
    if sibling.is_file():
        config = json.loads(sibling.read_text())
        if config.get("_class_name") == DIFFUSERS_CLASS_NAME:
            return CogVideoXVAEConfig.from_diffusers_config(config)
    if CONFIG_METADATA_KEY in metadata:
        return CogVideoXVAEConfig.from_diffusers_config(json.loads(metadata[CONFIG_METADATA_KEY]))

    if not set(DIFFUSERS_KEYS) <= set(keys):
        raise VAEWeightsError(
            f"{weights} is not a CogVideoX VAE in diffusers layout: "
            f"it has no {', '.join(k for k in DIFFUSERS_KEYS if k not in keys)} "
            f"(its keys start {sorted(keys)[:5]}). Use THUDM/CogVideoX-2b vae/diffusion_pytorch_model.safetensors"
        )
    blocks = sorted({int(k.split(".")[2]) for k in keys if k.startswith("encoder.down_blocks.")})
    layers = {int(k.split(".")[4]) for k in keys if k.startswith("encoder.down_blocks.0.resnets.")}
    channels = tuple(shape_of(f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight")[0] for i in blocks)
    groups = CogVideoXVAEConfig.norm_num_groups  # shapes do not tell; CogVideoX's own value
    if any(c % groups for c in channels):
        raise VAEWeightsError(
            f"{weights}: the norm group count cannot be read from shapes, and CogVideoX's {groups} does not divide "
            f"the block widths {channels}; "
            "put the diffusers config.json beside the weights (or save them with save_vae)"
        )
    return CogVideoXVAEConfig(
        in_channels=shape_of("encoder.conv_in.conv.weight")[1],
        out_channels=shape_of("decoder.conv_out.conv.weight")[0],
        block_out_channels=channels,
        layers_per_block=len(layers),
        latent_channels=shape_of("decoder.conv_in.conv.weight")[1],
    )


def load_vae(path: Union[str, Path], dtype: Optional[torch.dtype] = None, device=None) -> CogVideoXVAE:
    """Load diffusers-layout CogVideoX VAE weights (a .safetensors file, or a folder holding
    ``diffusion_pytorch_model.safetensors``); the model is built on the meta device and takes
    the loaded tensors as its parameters, so the weights are in memory once.

    ``dtype`` None keeps the file's dtype; ``device`` None loads to CPU. A file that can't be read raises
    CheckpointError, one that is not a CogVideoX VAE VAEWeightsError.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "diffusion_pytorch_model.safetensors"
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: the CogVideoX VAE is read from .safetensors files, not {path.suffix or 'suffix-less'} ones"
        )
    device = torch.device(device or "cpu")
    with open_safetensors(path, device) as f:
        keys = list(f.keys())
        config = _config_for(path, keys, f.metadata() or {}, lambda k: f.get_slice(k).get_shape())
        vae = CogVideoXVAE(config, device="meta")
        expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
        missing, unexpected = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
        if missing or unexpected:
            raise VAEWeightsError(
                f"{path} does not match a CogVideoX VAE with {config}: {len(missing)} missing keys "
                f"{missing[:4]}, {len(unexpected)} unexpected keys {unexpected[:4]}. Expected diffusers "
                "AutoencoderKLCogVideoX weights (THUDM/CogVideoX-2b vae/diffusion_pytorch_model.safetensors)"
            )
        state = {}
        for key in keys:
            shape = tuple(f.get_slice(key).get_shape())
            if shape != expected[key]:
                raise VAEWeightsError(
                    f"{path}: {key} has shape {shape}, the config expects {expected[key]}; "
                    "the config.json / metadata beside the weights belongs to another model"
                )
            tensor = f.get_tensor(key)
            state[key] = tensor if dtype is None else tensor.to(dtype)
    vae.load_state_dict(state, strict=True, assign=True)
    return vae.requires_grad_(False).eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two videos in the VAE's pixel range [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)
