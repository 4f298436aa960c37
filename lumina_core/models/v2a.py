"""Lumina-V2A: sound for a video, from its frames (and optionally a caption), by a Next-DiT over audio latents.

The paper (Lumina-Video, appendix D) gives the design but no code or weights; this is our
reading of it, sized by ``V2AConfig`` (see ``docs/v2a.md`` for every departure):

- Audio lives as ``MelAutoencoder`` latents [B, C_lat, N], one token per latent frame
  (25 tokens/s with the default mel front end), with 1D RoPE over time.
- Video: a ``FrameEncoder`` gives per-frame content features (the paper: CLIP) and a
  second one per-frame synchronisation features from frame differences (the paper:
  Synchformer). Both are resampled to the audio-token timeline by time-weighted averaging
  over each token's span, so any frame rate works and no frame is dropped or cut.
- Co-attention: each block attends jointly over [audio; visual; text] tokens. Visual tokens
  sit on the audio tokens' timeline (same RoPE positions); text tokens carry no position.
  Only the audio tokens are read out.
- Conditioning: time embedding + pooled visual + pooled text gives one vector per clip;
  the sync feature at each token's time is added to it, so the adaLN scales and gates are
  per token.
- Rectified flow with velocity prediction, t = 0 noise and t = 1 data, sampled by the
  engine's ``sampler.integrate`` on its ``time_grid``.
"""

import json
import math
from abc import ABCMeta, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file

from ..io.checkpoints import CheckpointError, read_state_dict
from ..sampling import integrate, make_noise, renorm_per_sample, time_grid
from .audio import MelAutoencoder, MelAutoencoderConfig, MelConfig, Vocoder, VocoderConfig, check_fields
from .layers import FeedForward, RotaryEmbedding, TimestepEmbedder, apply_rotary, attention, init_linears_xavier
from .nextdit import masked_mean
from .text import TextCondition, concat_conditions

CONFIG_METADATA_KEY = "lumina_v2a_config"


@dataclass(frozen=True)
class V2AConfig:
    """Everything a V2A checkpoint needs to be rebuilt: transformer, frame encoders, autoencoder, vocoder.

    The defaults are the embedded toy-world size (the paper gives no V2A sizes). ``text_dim``
    matches ``TinyTextEncoder``'s features; set 2304 to condition on Gemma-2-2B as the video model does.
    """

    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: Optional[int] = None
    multiple_of: int = 64
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    qk_norm: bool = True
    text_dim: int = 64
    visual_dim: int = 128
    sync_dim: int = 64
    frame_size: int = 64
    encoder_width: int = 32
    sync_reference_fps: float = 25.0
    rope_theta: float = 10000.0
    t_scale: float = 1000.0
    max_audio_tokens: int = 2048
    autoencoder: MelAutoencoderConfig = MelAutoencoderConfig()
    vocoder: VocoderConfig = VocoderConfig()

    def __post_init__(self):
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of an even size")

    @property
    def mel(self) -> MelConfig:
        return self.autoencoder.mel

    @property
    def token_rate(self) -> float:
        """Audio tokens per second."""
        return self.autoencoder.latent_rate

    def with_(self, **changes) -> "V2AConfig":
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "V2AConfig":
        values = json.loads(text)
        check_fields(cls, values, "V2A")
        if "autoencoder" in values:
            values["autoencoder"] = MelAutoencoderConfig.from_dict(values["autoencoder"])
        if "vocoder" in values:
            values["vocoder"] = VocoderConfig.from_dict(values["vocoder"])
        return cls(**values)


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class AudioTimeline:
    """Where a clip's audio samples, mel frames and latent tokens fall, given its frame count and rate.

    The audio lasts exactly as long as the video: ``samples = round(frames * sample_rate / fps)``.
    Mel frame m is centred on sample m * hop; token j covers mel frames [j * down, (j + 1) * down).
    """

    frames: int
    fps: float
    samples: int
    mel_frames: int
    tokens: int
    token_seconds: float
    first_token_start: float

    @classmethod
    def for_clip(cls, frames: int, fps: float, autoencoder: MelAutoencoderConfig) -> "AudioTimeline":
        mel = autoencoder.mel
        samples = round(frames * mel.sample_rate / fps)
        if samples < 1:
            raise ValueError(f"frames: {frames} frames at {fps} fps last less than one audio sample")
        mel_frames = mel.frames_for(samples)
        return cls(
            frames=frames,
            fps=fps,
            samples=samples,
            mel_frames=mel_frames,
            tokens=autoencoder.latent_frames_for(mel_frames),
            token_seconds=autoencoder.time_downsample * mel.hop_length / mel.sample_rate,
            first_token_start=-0.5 * mel.hop_length / mel.sample_rate,
        )

    def token_spans(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) seconds [tokens] float64 of each audio token."""
        starts = self.first_token_start + self.token_seconds * torch.arange(self.tokens, dtype=torch.float64)
        return starts, starts + self.token_seconds

    def frame_to_token_weights(self) -> torch.Tensor:
        """[tokens, frames] float64: the share of each token's span that each video frame is on screen.

        Frame i shows during [i / fps, (i + 1) / fps); the first frame also covers any time
        before the clip and the last frame any time after it (the audio's last token may end
        a little past the video). Rows sum to 1; every frame has weight in some token.
        """
        token_start, token_end = self.token_spans()
        index = torch.arange(self.frames, dtype=torch.float64)
        frame_start, frame_end = index / self.fps, (index + 1) / self.fps
        frame_start[0], frame_end[-1] = -math.inf, math.inf
        overlap = torch.minimum(token_end[:, None], frame_end[None]) - torch.maximum(
            token_start[:, None], frame_start[None]
        )
        return overlap.clamp(min=0) / self.token_seconds


def resample_to_tokens(features: torch.Tensor, timeline: AudioTimeline) -> torch.Tensor:
    """Per-frame features [B, F, D] at the clip's fps -> per-token features [B, N, D] on the audio timeline.

    A box filter in time: each token averages the frames on screen during its span, so
    upsampling (8 fps -> 25 tokens/s) holds each frame and downsampling (60 fps) averages
    neighbours; nothing is truncated, and the last frame always reaches the last tokens.
    """
    if features.shape[1] != timeline.frames:
        raise ValueError(f"features have {features.shape[1]} frames, the timeline {timeline.frames}")
    weights = timeline.frame_to_token_weights().to(device=features.device, dtype=torch.float32)
    return torch.einsum("nf,bfd->bnd", weights, features.float()).to(features.dtype)


# --------------------------------------------------------------------------- frame encoders


class FrameEncoder(nn.Module, metaclass=ABCMeta):
    """frames [B, F, 3, H, W] in [0, 1] shown at ``fps`` -> per-frame features [B, F, feature_dim].

    The interface for the V2A model's video inputs: plug a CLIP image tower in for the
    content features or a Synchformer for the sync features, as long as it keeps one
    feature vector per input frame (the V2A model resamples them to its own timeline).
    """

    feature_dim: int

    @abstractmethod
    def forward(self, frames: torch.Tensor, fps: float) -> torch.Tensor: ...


def resize_frames(frames: torch.Tensor, size: int, weight: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """[B, F, 3, H, W] in [0, 1] -> [B, F, 3, size, size] in [-1, 1] on ``weight``'s device and dtype.

    A few frames at a time, so a long clip at full resolution (often on the CPU, as ComfyUI
    keeps images) never has to be copied or converted whole.
    """
    flat = rearrange(frames, "b f c h w -> (b f) c h w")
    parts = [
        F.interpolate(
            part.to(device=weight.device, dtype=torch.float32), size=(size, size), mode="bilinear", antialias=True
        )
        for part in flat.split(chunk)
    ]
    return rearrange(torch.cat(parts).to(weight.dtype) * 2 - 1, "(b f) c h w -> b f c h w", b=frames.shape[0])


class ConvImageStack(nn.Module):
    """[N, C, S, S] -> [N, 8 * width]: four stride-2 3x3 convs with SiLU, then a global mean."""

    def __init__(self, in_channels: int, width: int, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        widths = (in_channels, width, 2 * width, 4 * width, 8 * width)
        layers = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, **factory), nn.SiLU()]
        self.layers = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).mean(dim=(-2, -1))


class ConvFrameEncoder(FrameEncoder):
    """What is on screen: a small conv net per frame (stands in for the paper's CLIP frame features)."""

    def __init__(self, feature_dim: int, frame_size: int = 64, width: int = 32, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.feature_dim, self.frame_size = feature_dim, frame_size
        self.stack = ConvImageStack(3, width, **factory)
        self.proj = nn.Linear(self.stack.out_dim, feature_dim, **factory)

    def forward(self, frames: torch.Tensor, fps: float) -> torch.Tensor:
        images = rearrange(resize_frames(frames, self.frame_size, self.proj.weight), "b f c h w -> (b f) c h w")
        return rearrange(self.proj(self.stack(images)), "(b f) d -> b f d", b=frames.shape[0])


class MotionSyncEncoder(FrameEncoder):
    """When things happen: features of each frame and its difference from the previous one, at the full frame rate.

    Stands in for Synchformer. Differences are scaled by fps / ``reference_fps`` so they
    measure motion per reference frame whatever the clip's rate, and a temporal conv over
    three consecutive frames lets the features see a change of direction (the toy world's
    bounces, where its sounds are).
    """

    def __init__(
        self,
        feature_dim: int,
        frame_size: int = 64,
        width: int = 32,
        reference_fps: float = 25.0,
        dtype=None,
        device=None,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.feature_dim, self.frame_size, self.reference_fps = feature_dim, frame_size, reference_fps
        self.stack = ConvImageStack(6, width, **factory)
        self.temporal = nn.Conv1d(
            self.stack.out_dim, self.stack.out_dim, 3, padding=1, padding_mode="replicate", **factory
        )
        self.proj = nn.Linear(self.stack.out_dim, feature_dim, **factory)

    def forward(self, frames: torch.Tensor, fps: float) -> torch.Tensor:
        images = resize_frames(frames, self.frame_size, self.proj.weight)  # [B, F, 3, S, S]
        motion = torch.diff(images, dim=1, prepend=images[:, :1]) * (fps / self.reference_fps)
        per_frame = self.stack(rearrange(torch.cat([images, motion], dim=2), "b f c h w -> (b f) c h w"))
        per_frame = rearrange(per_frame, "(b f) d -> b d f", b=frames.shape[0])
        return self.proj(rearrange(F.silu(self.temporal(per_frame)), "b d f -> b f d"))


# --------------------------------------------------------------------------- transformer


class JointAttention(nn.Module):
    """Self-attention over the concatenated [audio; visual; text] tokens: the paper's co-attention."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: Optional[int], qk_norm: bool, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = dim // n_heads
        kv_dim = self.n_kv_heads * self.head_dim
        self.wq = nn.Linear(dim, dim, bias=False, **factory)
        self.wk = nn.Linear(dim, kv_dim, bias=False, **factory)
        self.wv = nn.Linear(dim, kv_dim, bias=False, **factory)
        self.wo = nn.Linear(dim, dim, bias=False, **factory)
        if qk_norm:
            self.q_norm = nn.LayerNorm(dim, **factory)
            self.k_norm = nn.LayerNorm(kv_dim, **factory)
        else:
            self.q_norm = self.k_norm = nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], key_mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim], rope (cos, sin) [L, head_dim/2], key_mask [B, L] bool -> [B, L, dim]."""
        q = rearrange(self.q_norm(self.wq(x)), "b l (h d) -> b l h d", d=self.head_dim)
        k = rearrange(self.k_norm(self.wk(x)), "b l (h d) -> b l h d", d=self.head_dim)
        v = rearrange(self.wv(x), "b l (h d) -> b l h d", d=self.head_dim)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        return self.wo(rearrange(attention(q, k, v, key_mask), "b l h d -> b l (h d)"))


class V2ABlock(nn.Module):
    """The video model's sandwich-norm block, with joint attention and per-token adaLN scales and tanh gates."""

    def __init__(self, config: V2AConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        dim, eps = config.dim, config.norm_eps
        self.attention = JointAttention(dim, config.n_heads, config.n_kv_heads, config.qk_norm, **factory)
        self.feed_forward = FeedForward(dim, 4 * dim, config.multiple_of, config.ffn_dim_multiplier, **factory)
        self.attention_norm1 = nn.RMSNorm(dim, eps=eps, **factory)
        self.attention_norm2 = nn.RMSNorm(dim, eps=eps, **factory)
        self.ffn_norm1 = nn.RMSNorm(dim, eps=eps, **factory)
        self.ffn_norm2 = nn.RMSNorm(dim, eps=eps, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(min(dim, 1024), 4 * dim, bias=True, **factory))

    def forward(self, x, rope, key_mask, c):
        """x [B, L, dim], c [B, L, cond_dim] (one conditioning vector per token) -> [B, L, dim]."""
        scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(4, dim=-1)
        h = self.attention(self.attention_norm1(x) * (1 + scale_msa), rope, key_mask)
        x = x + gate_msa.tanh() * self.attention_norm2(h)
        h = self.feed_forward(self.ffn_norm1(x) * (1 + scale_mlp))
        return x + gate_mlp.tanh() * self.ffn_norm2(h)


class V2AFinalLayer(nn.Module):
    """LayerNorm (no affine) scaled per token by adaLN, then a linear map to latent channels."""

    def __init__(self, dim: int, out_channels: int, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **factory)
        self.linear = nn.Linear(dim, out_channels, bias=True, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(min(dim, 1024), dim, bias=True, **factory))

    def forward(self, x, c):
        """x [B, N, dim], c [B, N, cond_dim] -> [B, N, out_channels]."""
        return self.linear(self.norm_final(x) * (1 + self.adaLN_modulation(c)))


class V2ANextDiT(nn.Module):
    """The V2A transformer: velocity of audio latents given token-rate video features and a caption."""

    def __init__(self, config: V2AConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.config = config
        dim, cond_dim = config.dim, min(config.dim, 1024)
        self.latent_channels = config.autoencoder.latent_channels

        self.audio_embedder = nn.Linear(self.latent_channels, dim, bias=True, **factory)
        self.visual_embedder = nn.Sequential(
            nn.LayerNorm(config.visual_dim, **factory), nn.Linear(config.visual_dim, dim, **factory)
        )
        self.text_embedder = nn.Sequential(
            nn.RMSNorm(config.text_dim, eps=config.norm_eps, **factory), nn.Linear(config.text_dim, dim, **factory)
        )

        self.t_embedder = TimestepEmbedder(cond_dim, **factory)
        self.visual_pool_embedder = nn.Sequential(
            nn.LayerNorm(config.visual_dim, **factory), nn.Linear(config.visual_dim, cond_dim, **factory)
        )
        self.text_pool_embedder = nn.Sequential(
            nn.LayerNorm(config.text_dim, **factory), nn.Linear(config.text_dim, cond_dim, **factory)
        )
        self.sync_embedder = nn.Sequential(
            nn.LayerNorm(config.sync_dim, **factory), nn.Linear(config.sync_dim, cond_dim, **factory)
        )

        # Stand-ins for a missing condition: the unconditional branch of CFG, and condition dropout in training.
        self.null_visual = nn.Parameter(torch.zeros(config.visual_dim, **factory))
        self.null_sync = nn.Parameter(torch.zeros(config.sync_dim, **factory))
        self.null_text = nn.Parameter(torch.zeros(config.text_dim, **factory))

        self.layers = nn.ModuleList(V2ABlock(config, **factory) for _ in range(config.n_layers))
        self.final_layer = V2AFinalLayer(dim, self.latent_channels, **factory)
        self.rope = RotaryEmbedding((dim // config.n_heads,), (config.max_audio_tokens,), config.rope_theta)

    def initialize_weights(self, generator: Optional[torch.Generator] = None):
        """For training from scratch: xavier linears, small null embeddings, zero adaLN and final projections
        (DiT's rule)."""
        init_linears_xavier(self, generator)
        for i in (0, 2):
            nn.init.normal_(self.t_embedder.mlp[i].weight, std=0.02, generator=generator)
        for param in (self.null_visual, self.null_sync, self.null_text):
            nn.init.normal_(param, std=0.02, generator=generator)
        zero = [self.final_layer.linear.weight, self.final_layer.linear.bias]
        for modulation in [block.adaLN_modulation for block in self.layers] + [self.final_layer.adaLN_modulation]:
            zero += [modulation[1].weight, modulation[1].bias]
        for param in zero:
            nn.init.zeros_(param)

    def null_text_condition(self, batch: int) -> TextCondition:
        """The caption of the unconditional branch: one learned token per sample."""
        features = self.null_text.view(1, 1, -1).expand(batch, 1, -1)
        return TextCondition(features, torch.ones(batch, 1, dtype=torch.long, device=features.device))

    def forward(self, latents, t, visual, sync, text, text_mask, video_dropped: Optional[torch.Tensor] = None):
        """Velocity of the audio latents.

        latents [B, C_lat, N], t [B] in [0, 1], visual [B, N, visual_dim] and sync [B, N, sync_dim]
        on the token timeline, text [B, L, text_dim] with text_mask [B, L] (1 = token),
        video_dropped [B] bool (True: use the null visual and sync features) -> [B, C_lat, N].
        """
        batch, _, n_audio = latents.shape
        if visual.shape[1] != n_audio or sync.shape[1] != n_audio:
            raise ValueError(
                f"visual {tuple(visual.shape)} and sync {tuple(sync.shape)} "
                f"features must have one row per audio token ({n_audio})"
            )
        if n_audio > self.config.max_audio_tokens:
            raise ValueError(f"{n_audio} audio tokens exceed the RoPE table of {self.config.max_audio_tokens}")
        if video_dropped is not None:
            dropped = video_dropped.view(batch, 1, 1)
            visual = torch.where(dropped, self.null_visual.to(visual.dtype), visual)
            sync = torch.where(dropped, self.null_sync.to(sync.dtype), sync)
        n_text = text.shape[1]

        audio_tokens = self.audio_embedder(rearrange(latents, "b c n -> b n c"))  # [B, N, dim]
        tokens = torch.cat(
            [audio_tokens, self.visual_embedder(visual), self.text_embedder(text)], dim=1
        )  # [B, 2N + L, dim]

        clip = self.t_embedder(t * self.config.t_scale)
        clip = (
            clip + self.visual_pool_embedder(visual.mean(dim=1)) + self.text_pool_embedder(masked_mean(text, text_mask))
        )  # [B, cond_dim]
        timed = clip[:, None] + self.sync_embedder(sync)  # [B, N, cond_dim]
        c = torch.cat([timed, timed, clip[:, None].expand(-1, n_text, -1)], dim=1)  # [B, 2N + L, cond_dim]

        # Audio and visual tokens share positions 0..N-1; text tokens are not rotated.
        cos, sin = self.rope((n_audio,), latents.device)  # [N, head_dim/2]
        no_rotation = cos.new_ones(n_text, cos.shape[1]), sin.new_zeros(n_text, sin.shape[1])
        rope = torch.cat([cos, cos, no_rotation[0]]), torch.cat([sin, sin, no_rotation[1]])
        key_mask = torch.cat([text_mask.new_ones(batch, 2 * n_audio), text_mask], dim=1).bool()

        for layer in self.layers:
            tokens = layer(tokens, rope, key_mask, c)
        out = self.final_layer(tokens[:, :n_audio], timed)
        return rearrange(out, "b n c -> b c n")


# --------------------------------------------------------------------------- generator


class GeneratedAudio(NamedTuple):
    """ComfyUI's AUDIO payload: waveform [B, 1, T] float32 in [-1, 1] and its sample rate."""

    waveform: torch.Tensor
    sample_rate: int


class V2AGenerator(nn.Module):
    """Frames (+ caption) -> audio exactly as long as the video: every V2A part, and the sampling loop.

    ``frame_encoder``/``sync_encoder``/``vocoder`` replace the ones ``config`` describes
    (their feature sizes must match ``visual_dim``/``sync_dim``); checkpoints hold the built-in ones.
    """

    def __init__(
        self,
        config: V2AConfig = V2AConfig(),
        frame_encoder: Optional[FrameEncoder] = None,
        sync_encoder: Optional[FrameEncoder] = None,
        vocoder: Optional[Vocoder] = None,
        dtype=None,
        device=None,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.config = config
        if frame_encoder is None:
            frame_encoder = ConvFrameEncoder(config.visual_dim, config.frame_size, config.encoder_width, **factory)
        if sync_encoder is None:
            sync_encoder = MotionSyncEncoder(
                config.sync_dim, config.frame_size, config.encoder_width, config.sync_reference_fps, **factory
            )
        self.frame_encoder, self.sync_encoder = frame_encoder, sync_encoder
        for name, encoder, size in (
            ("frame_encoder", self.frame_encoder, config.visual_dim),
            ("sync_encoder", self.sync_encoder, config.sync_dim),
        ):
            if encoder.feature_dim != size:
                raise ValueError(f"{name} gives {encoder.feature_dim} features per frame, the config expects {size}")
        self.dit = V2ANextDiT(config, **factory)
        self.autoencoder = MelAutoencoder(config.autoencoder, **factory)
        self.vocoder = config.vocoder.build(config.mel, **factory) if vocoder is None else vocoder
        if self.vocoder.mel != config.mel:
            raise ValueError(
                f"the vocoder's mel settings {self.vocoder.mel} differ from the autoencoder's {config.mel}"
            )

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    def timeline(self, frames: int, fps: float) -> AudioTimeline:
        """The audio layout for ``frames`` frames at ``fps``; refuses clips longer than the model's RoPE table."""
        timeline = AudioTimeline.for_clip(frames, fps, self.config.autoencoder)
        if timeline.tokens > self.config.max_audio_tokens:
            longest = self.config.max_audio_tokens / self.config.token_rate
            raise ValueError(
                f"frames: {frames} frames at {fps} fps is {frames / fps:.1f} s; "
                f"this model makes at most {longest:.1f} s of audio"
            )
        return timeline

    def video_features(
        self, frames: torch.Tensor, fps: float, timeline: AudioTimeline
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, F, 3, H, W] (any device) -> (visual [B, N, visual_dim], sync [B, N, sync_dim])
        on the audio-token timeline."""
        visual = self.frame_encoder(frames, fps)
        sync = self.sync_encoder(frames, fps)
        for name, feats, size in (
            ("frame_encoder", visual, self.config.visual_dim),
            ("sync_encoder", sync, self.config.sync_dim),
        ):
            if feats.shape != (frames.shape[0], frames.shape[1], size):
                raise ValueError(
                    f"{name} returned {tuple(feats.shape)}, "
                    f"expected one {size}-vector per frame {tuple(frames.shape[:2])}"
                )
        return resample_to_tokens(visual, timeline), resample_to_tokens(sync, timeline)

    @torch.no_grad()
    def generate(
        self,
        frames: torch.Tensor,
        fps: float,
        text: TextCondition,
        steps: int = 25,
        seed: int = 0,
        cfg: float = 3.5,
        callback: Optional[Callable[[int, int, float, torch.Tensor], None]] = None,
        negative_text: Optional[TextCondition] = None,
        time_shift: float = 1.0,
        solver: str = "euler",
        renorm: float = -1.0,
    ) -> GeneratedAudio:
        """Audio for ``frames`` [B, F, 3, H, W] in [0, 1] shown at ``fps`` (any rate > 0).

        Returns waveform [B, 1, round(F * sample_rate / fps)] in [-1, 1] and the sample rate.
        ``steps`` are time-grid points (steps - 1 model calls), shifted by ``time_shift``.
        ``cfg`` follows the engine's convention, v = v_cond + cfg * (v_cond - v_uncond), so
        3.5 is a conventional guidance scale of 4.5; 0 skips the unconditional pass. The
        unconditional branch drops the video (learned null features) and uses
        ``negative_text``, or the learned null caption when none is given. ``renorm`` > 0
        caps the guided velocity at renorm * |v_cond| per sample. ``callback(step, total, t, x)``
        runs after every step; raise from it to stop. Item i depends only on seed + i.
        """
        batch, n_frames = check_frames(frames)
        fps = check_fps(fps)
        if steps < 2:
            raise ValueError(f"steps must be at least 2 (time-grid points), got {steps}")
        text = check_text(text, batch, "text")
        timeline = self.timeline(n_frames, fps)
        dit = self.dit
        dtype, device = dit.audio_embedder.weight.dtype, dit.audio_embedder.weight.device
        visual, sync = self.video_features(frames, fps, timeline)

        guided = cfg != 0
        if guided:
            negative = (
                dit.null_text_condition(batch)
                if negative_text is None
                else check_text(negative_text, batch, "negative_text")
            )
            caption = concat_conditions([text, negative])
            visual, sync = visual.repeat(2, 1, 1), sync.repeat(2, 1, 1)
            video_dropped = torch.arange(2 * batch, device=device) >= batch
        else:
            caption, video_dropped = text, None
        caption_features, caption_mask = caption.features.to(device=device, dtype=dtype), caption.mask.to(device)

        def velocity(x: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
            x_in = x.to(dtype).repeat(2 if guided else 1, 1, 1)
            t_in = torch.full((x_in.shape[0],), t, device=device, dtype=dtype)
            out = dit(x_in, t_in, visual, sync, caption_features, caption_mask, video_dropped).float()
            if not guided:
                return out, t
            v_cond, v_uncond = out[:batch], out[batch:]
            v = v_cond + cfg * (v_cond - v_uncond)
            return (renorm_per_sample(v, v_cond, renorm) if renorm > 0 else v), t

        noise = make_noise((batch, dit.latent_channels, timeline.tokens), seed, device)
        latents = integrate(velocity, noise, time_grid(steps, time_shift).tolist(), solver, callback)
        log_mel = self.autoencoder.decode(latents)
        waveform = self.vocoder(log_mel, timeline.samples)
        return GeneratedAudio(waveform.clamp(-1, 1), self.sample_rate)


def check_frames(frames) -> tuple[int, int]:
    """frames must be a float tensor [B, F, 3, H, W] with F >= 1; returns (B, F)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(
            f"frames must be a tensor [B, F, 3, H, W] (ComfyUI's IMAGE [F, H, W, 3] needs permuting), got {shape}"
        )
    if not frames.is_floating_point():
        raise ValueError(f"frames must be floats in [0, 1], got {frames.dtype}")
    if frames.shape[1] == 0 or frames.shape[0] == 0:
        raise ValueError(
            f"frames: got {frames.shape[1]} frames in a batch of {frames.shape[0]}; give at least one frame"
        )
    if frames.shape[3] == 0 or frames.shape[4] == 0:
        raise ValueError(f"frames: the pictures are {frames.shape[3]}x{frames.shape[4]} pixels")
    return frames.shape[0], frames.shape[1]


def check_fps(fps) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    return value


def check_text(text: TextCondition, batch: int, name: str) -> TextCondition:
    """One caption for the whole batch is repeated; otherwise there must be one per video."""
    if not isinstance(text, TextCondition):
        raise ValueError(f"{name} must be a TextCondition (caption features and mask), got {type(text).__name__}")
    if text.features.shape[0] not in (1, batch):
        raise ValueError(
            f"{name} has {text.features.shape[0]} captions for a batch of {batch} videos (frames); "
            "give one caption or one per video"
        )
    return text.repeat_to(batch)


# --------------------------------------------------------------------------- checkpoints


def save_v2a(path, generator: V2AGenerator):
    """Write every weight of ``generator`` to a .safetensors file with its config in the metadata
    (``lumina_v2a_config``)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: V2A checkpoints are .safetensors files")
    expected = (
        ("frame_encoder", ConvFrameEncoder),
        ("sync_encoder", MotionSyncEncoder),
        ("vocoder", generator.config.vocoder.vocoder_class),
    )
    for name, builtin in expected:
        if type(getattr(generator, name)) is not builtin:
            raise ValueError(
                f"{name} is a {type(getattr(generator, name)).__name__}; "
                f"checkpoints hold only the {builtin.__name__} its config describes"
            )
    tensors = {key: value.detach().contiguous() for key, value in generator.state_dict().items()}
    partial = path.with_name(path.name + ".partial")
    try:
        save_file(tensors, str(partial), metadata={CONFIG_METADATA_KEY: generator.config.to_json(), "format": "pt"})
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def load_v2a(path, dtype: Optional[torch.dtype] = None, device="cpu") -> V2AGenerator:
    """Rebuild a saved V2AGenerator: built on the meta device, the file's tensors adopted (one copy in memory),
    eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: V2A checkpoints are .safetensors files written by save_v2a, "
            f"not {path.suffix or 'suffix-less'} files"
        )
    state_dict, metadata = read_state_dict(path)
    if CONFIG_METADATA_KEY not in metadata:
        hint = (
            " (it is a Lumina-Video Next-DiT: load it as the video model)" if "lumina_video_config" in metadata else ""
        )
        raise CheckpointError(f"{path}: not a Lumina V2A checkpoint, its metadata has no {CONFIG_METADATA_KEY!r}{hint}")
    try:
        config = V2AConfig.from_json(metadata[CONFIG_METADATA_KEY])
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: unreadable V2A config in the metadata ({error})") from None
    with torch.device("meta"):
        generator = V2AGenerator(config)
    expected = {key: value.shape for key, value in generator.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: the weights don't match the config in its metadata: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} with other shapes (e.g. {wrong[:3]})"
        )
    generator.load_state_dict(state_dict, strict=True, assign=True)
    return generator.to(device=device, dtype=dtype).eval().requires_grad_(False)
