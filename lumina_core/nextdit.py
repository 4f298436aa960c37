"""Multi-scale Next-DiT, the Lumina-Video transformer.

One trunk of transformer blocks shared by several patch sizes: each (spatial, temporal)
patch size has its own input embedder and final layer, keyed "{p}-{pf}" exactly as in
the released checkpoint (``all_x_embedder.2-1``, ``all_final_layer.4-2``, ...). Text
conditions every block through a gated cross-attention that reuses the RoPE'd queries of
the self-attention; a pooled caption, the flow time and the motion score are summed into
the adaLN conditioning vector.

Conventions (the reference's): ``t`` in [0, 1] with 0 = noise and 1 = data, output is
the velocity ``x1 - x0``; a negative motion score means "no motion condition".
"""

import json
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn as nn
from einops import rearrange

from .layers import FeedForward, RotaryEmbedding, TimestepEmbedder, apply_rotary, attention, init_linears_xavier

ROPE_TABLE_LENS = (64, 128, 128)  # frames, height, width in patch-grid units, as the released model


class NextDiTAttention(nn.Module):
    """Self-attention over video tokens plus a per-head gated cross-attention to the caption."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: Optional[int], qk_norm: bool, y_dim: int, dtype=None, device=None):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = dim // n_heads
        kv_dim = self.n_kv_heads * self.head_dim
        factory = dict(dtype=dtype, device=device)

        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False, **factory)
        self.wk = nn.Linear(dim, kv_dim, bias=False, **factory)
        self.wv = nn.Linear(dim, kv_dim, bias=False, **factory)
        self.wk_y = nn.Linear(y_dim, kv_dim, bias=False, **factory)
        self.wv_y = nn.Linear(y_dim, kv_dim, bias=False, **factory)
        self.gate = nn.Parameter(torch.zeros(n_heads, **factory))
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False, **factory)

        if qk_norm:
            # Over the full projected width, not per head (as released).
            self.q_norm = nn.LayerNorm(n_heads * self.head_dim, **factory)
            self.k_norm = nn.LayerNorm(kv_dim, **factory)
            self.ky_norm = nn.LayerNorm(kv_dim, **factory)
        else:
            self.q_norm = self.k_norm = self.ky_norm = nn.Identity()

    def forward(self, x, rope, y, y_mask):
        """x [B, L, dim], rope (cos, sin) [L, head_dim/2], y [B, Ly, y_dim], y_mask [B, Ly] bool -> [B, L, dim]."""
        heads = lambda t, n: t.unflatten(-1, (n, self.head_dim))  # noqa: E731  [B, L, n*D] -> [B, L, n, D]
        q = heads(self.q_norm(self.wq(x)), self.n_heads)
        k = heads(self.k_norm(self.wk(x)), self.n_kv_heads)
        v = heads(self.wv(x), self.n_kv_heads)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)

        out = attention(q, k, v)
        yk = heads(self.ky_norm(self.wk_y(y)), self.n_kv_heads)
        yv = heads(self.wv_y(y), self.n_kv_heads)
        out_y = attention(q, yk, yv, key_mask=y_mask)
        out = out + out_y * self.gate.tanh().to(out_y.dtype)[:, None]
        return self.wo(out.flatten(-2))


class NextDiTBlock(nn.Module):
    """Sandwich-norm block with adaLN scale and tanh gates (no shift)."""

    def __init__(self, dim, n_heads, n_kv_heads, multiple_of, ffn_dim_multiplier, norm_eps, qk_norm, y_dim, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.attention = NextDiTAttention(dim, n_heads, n_kv_heads, qk_norm, y_dim, **factory)
        self.feed_forward = FeedForward(dim, 4 * dim, multiple_of, ffn_dim_multiplier, **factory)
        self.attention_norm1 = nn.RMSNorm(dim, eps=norm_eps, **factory)
        self.attention_norm2 = nn.RMSNorm(dim, eps=norm_eps, **factory)
        self.ffn_norm1 = nn.RMSNorm(dim, eps=norm_eps, **factory)
        self.ffn_norm2 = nn.RMSNorm(dim, eps=norm_eps, **factory)
        self.attention_y_norm = nn.RMSNorm(y_dim, eps=norm_eps, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(min(dim, 1024), 4 * dim, bias=True, **factory))

    def forward(self, x, rope, y, y_mask, c):
        """x [B, L, dim], c [B, min(dim, 1024)] -> [B, L, dim]."""
        scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c)[:, None].chunk(4, dim=-1)
        h = self.attention(self.attention_norm1(x) * (1 + scale_msa), rope, self.attention_y_norm(y), y_mask)
        x = x + gate_msa.tanh() * self.attention_norm2(h)
        h = self.feed_forward(self.ffn_norm1(x) * (1 + scale_mlp))
        return x + gate_mlp.tanh() * self.ffn_norm2(h)


class FinalLayer(nn.Module):
    """LayerNorm (no affine) scaled by adaLN, then a linear map back to patch pixels."""

    def __init__(self, dim, patch_size, f_patch_size, out_channels, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **factory)
        self.linear = nn.Linear(dim, f_patch_size * patch_size * patch_size * out_channels, bias=True, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(min(dim, 1024), dim, bias=True, **factory))

    def forward(self, x, c):
        scale = 1 + self.adaLN_modulation(c)[:, None]
        return self.linear(self.norm_final(x) * scale)


class MultiScaleNextDiT(nn.Module):
    """The Lumina-Video transformer. Constructor keywords are the reference's, plus dtype/device."""

    def __init__(
        self,
        all_patch_size: Sequence[int] = (2,),
        all_f_patch_size: Sequence[int] = (2,),
        in_channels: int = 4,
        dim: int = 4096,
        n_layers: int = 32,
        n_heads: int = 32,
        n_kv_heads: Optional[int] = None,
        multiple_of: int = 256,
        ffn_dim_multiplier: Optional[float] = None,
        norm_eps: float = 1e-5,
        qk_norm: bool = False,
        cap_feat_dim: int = 5120,
        rope_theta: float = 10000.0,
        t_scale: float = 1.0,
        motion_scale: float = 1.0,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ):
        super().__init__()
        if len(all_patch_size) != len(all_f_patch_size):
            raise ValueError(f"all_patch_size {all_patch_size} and all_f_patch_size {all_f_patch_size} differ in length")
        head_dim = dim // n_heads
        if head_dim % 16:
            raise ValueError(f"head dim {head_dim} (dim {dim} / n_heads {n_heads}) must be a multiple of 16 for the 3D RoPE split")
        factory = dict(dtype=dtype, device=device)
        self.in_channels = self.out_channels = in_channels
        self.all_patch_size = tuple(all_patch_size)
        self.all_f_patch_size = tuple(all_f_patch_size)
        self.rope_theta, self.t_scale, self.motion_scale = rope_theta, t_scale, motion_scale
        self.dim, self.cap_feat_dim = dim, cap_feat_dim

        self.all_x_embedder = nn.ModuleDict()
        self.all_final_layer = nn.ModuleDict()
        for p, pf in zip(all_patch_size, all_f_patch_size):
            self.all_x_embedder[f"{p}-{pf}"] = nn.Linear(pf * p * p * in_channels, dim, bias=True, **factory)
            self.all_final_layer[f"{p}-{pf}"] = FinalLayer(dim, p, pf, in_channels, **factory)

        cond_dim = min(dim, 1024)
        self.t_embedder = TimestepEmbedder(cond_dim, **factory)
        self.motion_embedder = TimestepEmbedder(cond_dim, **factory)
        self.cap_embedder = nn.Sequential(nn.LayerNorm(cap_feat_dim, **factory), nn.Linear(cap_feat_dim, cond_dim, bias=True, **factory))
        self.layers = nn.ModuleList(
            NextDiTBlock(dim, n_heads, n_kv_heads, multiple_of, ffn_dim_multiplier, norm_eps, qk_norm, cap_feat_dim, **factory)
            for _ in range(n_layers)
        )
        axes_dims = (head_dim // 8 * 2, head_dim // 8 * 3, head_dim // 8 * 3)
        self.rope = RotaryEmbedding(axes_dims, ROPE_TABLE_LENS, rope_theta)
        self.pad_token = nn.Parameter(torch.empty(dim, **factory))  # in the released checkpoint; unused in forward

    @property
    def patch_sizes(self) -> list[tuple[int, int]]:
        """The (f_patch, patch) pairs this model has embedders for."""
        return [(pf, p) for p, pf in zip(self.all_patch_size, self.all_f_patch_size)]

    def initialize_weights(self, generator: Optional[torch.Generator] = None):
        """The reference's initialisation: xavier linears, zero adaLN/final/motion-out/caption-out."""
        init_linears_xavier(self, generator)
        for embedder in (self.t_embedder, self.motion_embedder):
            for i in (0, 2):
                nn.init.normal_(embedder.mlp[i].weight, std=0.02, generator=generator)
        zero = [self.motion_embedder.mlp[2].weight, self.cap_embedder[1].weight]
        for block in self.layers:
            zero += [block.adaLN_modulation[1].weight, block.adaLN_modulation[1].bias, block.attention.gate]
        for final in self.all_final_layer.values():
            zero += [final.linear.weight, final.linear.bias, final.adaLN_modulation[1].weight, final.adaLN_modulation[1].bias]
        for param in zero:
            nn.init.zeros_(param)
        nn.init.normal_(self.pad_token, std=0.02, generator=generator)

    def patchify(self, x: torch.Tensor, patch_size: int, f_patch_size: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, C, F, H, W] -> tokens [B, (F/pf)(H/p)(W/p), pf*p*p*C], frame-major, channels innermost."""
        if x.shape[2] == 1 and f_patch_size > 1:  # a single image fills a temporal patch by repetition
            x = x.repeat(1, 1, f_patch_size, 1, 1)
        tokens = rearrange(x, "b c (f pf) (h ph) (w pw) -> b (f h w) (pf ph pw c)", pf=f_patch_size, ph=patch_size, pw=patch_size)
        grid = (x.shape[2] // f_patch_size, x.shape[3] // patch_size, x.shape[4] // patch_size)
        return tokens, grid

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int], patch_size: int, f_patch_size: int, frames: int) -> torch.Tensor:
        """Inverse of patchify; crops the repeated frames of a single image back to ``frames``."""
        f, h, w = grid
        x = rearrange(
            tokens, "b (f h w) (pf ph pw c) -> b c (f pf) (h ph) (w pw)", f=f, h=h, w=w, pf=f_patch_size, ph=patch_size, pw=patch_size
        )
        return x[:, :, :frames]

    def check_input_size(self, x: torch.Tensor, patch_size: int, f_patch_size: int):
        if (f_patch_size, patch_size) not in self.patch_sizes:
            raise ValueError(f"patch size {f_patch_size}x{patch_size} is not in this model; it has {self.patch_sizes}")
        _, c, f, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"latent has {c} channels, the model expects {self.in_channels}")
        if h % patch_size or w % patch_size:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {patch_size}")
        if f > 1 and f % f_patch_size:
            raise ValueError(f"{f} latent frames can't be split into temporal patches of {f_patch_size}; use an even latent frame count")

    def forward(self, x, t, cap_feats, cap_mask, motion_score, patch_size: int, f_patch_size: int):
        """x [B, C, F, H, W], t [B], cap_feats [B, Ly, cap_dim], cap_mask [B, Ly], motion_score [B] -> velocity [B, C, F, H, W]."""
        self.check_input_size(x, patch_size, f_patch_size)
        key = f"{patch_size}-{f_patch_size}"
        frames = x.shape[2]
        tokens, grid = self.patchify(x, patch_size, f_patch_size)
        rope = self.rope(grid, x.device)
        h = self.all_x_embedder[key](tokens)

        c = self.t_embedder(t * self.t_scale)
        motion = motion_score * self.motion_scale
        no_motion = motion < 0
        motion_emb = self.motion_embedder(motion.masked_fill(no_motion, 0))
        c = c + self.cap_embedder(masked_mean(cap_feats, cap_mask)) + motion_emb.masked_fill(no_motion[:, None], 0)

        y_mask = cap_mask.bool()
        for layer in self.layers:
            h = layer(h, rope, cap_feats, y_mask, c)
        out = self.all_final_layer[key](h, c)
        return self.unpatchify(out, grid, patch_size, f_patch_size, frames)


def masked_mean(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, L, D] averaged over the positions where mask [B, L] is set -> [B, D], in feats' dtype."""
    weights = mask.to(feats).unsqueeze(-1)
    return ((feats * weights).sum(dim=1) / weights.sum(dim=1)).to(feats)


@dataclass(frozen=True)
class NextDiTConfig:
    """The constructor arguments of MultiScaleNextDiT, as stored beside a checkpoint."""

    all_patch_size: tuple[int, ...] = (2, 2, 4)
    all_f_patch_size: tuple[int, ...] = (1, 2, 2)
    in_channels: int = 16
    dim: int = 2304
    n_layers: int = 24
    n_heads: int = 16
    n_kv_heads: Optional[int] = 8
    multiple_of: int = 256
    ffn_dim_multiplier: Optional[float] = None
    norm_eps: float = 1e-5
    qk_norm: bool = True
    cap_feat_dim: int = 2304
    rope_theta: float = 256.0
    t_scale: float = 1000.0
    motion_scale: float = 20.0

    def build(self, dtype=None, device=None) -> MultiScaleNextDiT:
        return MultiScaleNextDiT(**asdict(self), dtype=dtype, device=device)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NextDiTConfig":
        values = json.loads(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown Next-DiT config fields {sorted(unknown)}")
        for key in ("all_patch_size", "all_f_patch_size"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


FACTORIES = {
    "MultiScaleNextDiT_2B": dict(dim=2304, n_layers=24, n_heads=16, n_kv_heads=None),
    "MultiScaleNextDiT_2B_GQA": dict(dim=2304, n_layers=24, n_heads=16, n_kv_heads=8),
    "MultiScaleNextDiT_4B_GQA": dict(dim=3072, n_layers=32, n_heads=24, n_kv_heads=8),
}
