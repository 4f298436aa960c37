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
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
from einops import rearrange

from .. import parallel
from .layers import FeedForward, RotaryEmbedding, TimestepEmbedder, apply_rotary, attention, init_linears_xavier

ROPE_TABLE_LENS = (64, 128, 128)  # frames, height, width in patch-grid units, as the released model


class PatchSize(NamedTuple):
    """``temporal`` latent frames by ``spatial`` x ``spatial`` latent pixels per token, written "{temporal}x{spatial}"
    as the reference's sampling configs do ("2x4", "1x2"); its checkpoints key the embedders "{spatial}-{temporal}"."""

    temporal: int
    spatial: int

    @classmethod
    def parse(cls, spec: str) -> "PatchSize":
        """ "2x4" -> PatchSize(temporal=2, spatial=4)."""
        try:
            temporal, spatial = (int(part) for part in spec.lower().split("x"))
        except (AttributeError, ValueError):
            raise ValueError(
                f"patch size {spec!r} must be written '{{temporal}}x{{spatial}}', e.g. '1x2' or '2x4'"
            ) from None
        return cls(temporal, spatial)

    def __str__(self) -> str:
        return f"{self.temporal}x{self.spatial}"

    @property
    def checkpoint_key(self) -> str:
        return f"{self.spatial}-{self.temporal}"


class NextDiTAttention(nn.Module):
    """Self-attention over video tokens plus a per-head gated cross-attention to the caption."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: Optional[int],
        qk_norm: bool,
        y_dim: int,
        dtype=None,
        device=None,
        operations=nn,
    ):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = dim // n_heads
        kv_dim = self.n_kv_heads * self.head_dim
        factory = dict(dtype=dtype, device=device)

        self.wq = operations.Linear(dim, n_heads * self.head_dim, bias=False, **factory)
        self.wk = operations.Linear(dim, kv_dim, bias=False, **factory)
        self.wv = operations.Linear(dim, kv_dim, bias=False, **factory)
        self.wk_y = operations.Linear(y_dim, kv_dim, bias=False, **factory)
        self.wv_y = operations.Linear(y_dim, kv_dim, bias=False, **factory)
        self.gate = nn.Parameter(torch.zeros(n_heads, **factory))
        self.wo = operations.Linear(n_heads * self.head_dim, dim, bias=False, **factory)

        if qk_norm:
            # Over the full projected width, not per head (as released).
            self.q_norm = operations.LayerNorm(n_heads * self.head_dim, **factory)
            self.k_norm = operations.LayerNorm(kv_dim, **factory)
            self.ky_norm = operations.LayerNorm(kv_dim, **factory)
        else:
            self.q_norm = self.k_norm = self.ky_norm = nn.Identity()

    def forward(self, x, rope, y, y_mask):
        """x [B, L, dim], rope (cos, sin) [L, head_dim/2], y [B, Ly, y_dim], y_mask [B, Ly] bool -> [B, L, dim]."""
        heads = lambda t, n: t.unflatten(-1, (n, self.head_dim))  # noqa: E731  [B, L, n*D] -> [B, L, n, D]
        q = heads(self.q_norm(self.wq(x)), self.n_heads)
        k = heads(self.k_norm(self.wk(x)), self.n_kv_heads)
        v = heads(self.wv(x), self.n_kv_heads)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        yk = heads(self.ky_norm(self.wk_y(y)), self.n_kv_heads)
        yv = heads(self.wv_y(y), self.n_kv_heads)
        gate = self.gate.to(x).tanh()  # x's device and dtype: a framework may keep this parameter elsewhere (fp8, CPU)

        shards = parallel.current()  # sequence parallel: all tokens, a slice of the heads (lumina_core/parallel.py)
        if shards is not None:
            q, k, v, yk, yv, gate = shards.attention_inputs(q, k, v, yk, yv, gate)
        out = attention(q, k, v)
        out_y = attention(q, yk, yv, key_mask=y_mask)
        out = out + out_y * gate.to(out_y.dtype)[:, None]
        if shards is not None:
            out = shards.to_tokens(out)
        return self.wo(out.flatten(-2))


class NextDiTBlock(nn.Module):
    """Sandwich-norm block with adaLN scale and tanh gates (no shift)."""

    def __init__(
        self,
        dim,
        n_heads,
        n_kv_heads,
        multiple_of,
        ffn_dim_multiplier,
        norm_eps,
        qk_norm,
        y_dim,
        dtype=None,
        device=None,
        operations=nn,
    ):
        super().__init__()
        factory = dict(dtype=dtype, device=device, operations=operations)
        self.attention = NextDiTAttention(dim, n_heads, n_kv_heads, qk_norm, y_dim, **factory)
        self.feed_forward = FeedForward(dim, 4 * dim, multiple_of, ffn_dim_multiplier, **factory)
        norm = dict(eps=norm_eps, dtype=dtype, device=device)
        self.attention_norm1 = operations.RMSNorm(dim, **norm)
        self.attention_norm2 = operations.RMSNorm(dim, **norm)
        self.ffn_norm1 = operations.RMSNorm(dim, **norm)
        self.ffn_norm2 = operations.RMSNorm(dim, **norm)
        self.attention_y_norm = operations.RMSNorm(y_dim, **norm)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), operations.Linear(min(dim, 1024), 4 * dim, bias=True, dtype=dtype, device=device)
        )

    def forward(self, x, rope, y, y_mask, c):
        """x [B, L, dim], c [B, min(dim, 1024)] or per token (TokenConditioning) -> [B, L, dim]."""
        scale_msa, gate_msa, scale_mlp, gate_mlp = adaln(self.adaLN_modulation, c).chunk(4, dim=-1)
        h = self.attention(self.attention_norm1(x) * (1 + scale_msa), rope, self.attention_y_norm(y), y_mask)
        x = torch.addcmul(x, gate_msa.tanh(), self.attention_norm2(h))  # x + gate * norm(h), one pass
        h = self.feed_forward(self.ffn_norm1(x) * (1 + scale_mlp))
        return torch.addcmul(x, gate_mlp.tanh(), self.ffn_norm2(h))


class FinalLayer(nn.Module):
    """LayerNorm (no affine) scaled by adaLN, then a linear map back to patch pixels."""

    def __init__(self, dim, patch: PatchSize, out_channels, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.norm_final = operations.LayerNorm(dim, elementwise_affine=False, eps=1e-6, **factory)
        patch_volume = patch.temporal * patch.spatial * patch.spatial
        self.linear = operations.Linear(dim, patch_volume * out_channels, bias=True, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(min(dim, 1024), dim, bias=True, **factory))

    def forward(self, x, c):
        scale = 1 + adaln(self.adaLN_modulation, c)
        return self.linear(self.norm_final(x) * scale)


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
    rope_time_in_frames: bool = False
    """Temporal RoPE positions in latent frames at every patch size (``MultiScaleNextDiT.rope_placement``); the
    released model counts them in patch-grid units (False)."""

    def build(self, dtype=None, device=None, operations=nn) -> "MultiScaleNextDiT":
        return MultiScaleNextDiT(**asdict(self), dtype=dtype, device=device, operations=operations)

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


RELEASED = NextDiTConfig()
"""The released Lumina-Video-f24R960 architecture."""


class MultiScaleNextDiT(nn.Module):
    """The Lumina-Video transformer. Constructor keywords are the reference's (defaults: the released model's, from
    ``NextDiTConfig``), plus dtype/device and the ``operations`` its layers are built from."""

    def __init__(
        self,
        all_patch_size: Sequence[int] = RELEASED.all_patch_size,
        all_f_patch_size: Sequence[int] = RELEASED.all_f_patch_size,
        in_channels: int = RELEASED.in_channels,
        dim: int = RELEASED.dim,
        n_layers: int = RELEASED.n_layers,
        n_heads: int = RELEASED.n_heads,
        n_kv_heads: Optional[int] = RELEASED.n_kv_heads,
        multiple_of: int = RELEASED.multiple_of,
        ffn_dim_multiplier: Optional[float] = RELEASED.ffn_dim_multiplier,
        norm_eps: float = RELEASED.norm_eps,
        qk_norm: bool = RELEASED.qk_norm,
        cap_feat_dim: int = RELEASED.cap_feat_dim,
        rope_theta: float = RELEASED.rope_theta,
        t_scale: float = RELEASED.t_scale,
        motion_scale: float = RELEASED.motion_scale,
        rope_time_in_frames: bool = RELEASED.rope_time_in_frames,
        dtype: Optional[torch.dtype] = None,
        device=None,
        operations=nn,
    ):
        super().__init__()
        if len(all_patch_size) != len(all_f_patch_size):
            raise ValueError(
                f"all_patch_size {all_patch_size} and all_f_patch_size {all_f_patch_size} differ in length"
            )
        head_dim = dim // n_heads
        if head_dim % 16:
            raise ValueError(
                f"head dim {head_dim} (dim {dim} / n_heads {n_heads}) must be a multiple of 16 for the 3D RoPE split"
            )
        factory = dict(dtype=dtype, device=device)
        layer_factory = dict(factory, operations=operations)
        self.in_channels = self.out_channels = in_channels
        self.all_patch_size = tuple(all_patch_size)
        self.all_f_patch_size = tuple(all_f_patch_size)
        self.rope_theta, self.t_scale, self.motion_scale = rope_theta, t_scale, motion_scale
        self.rope_time_in_frames = rope_time_in_frames
        self.dim, self.cap_feat_dim = dim, cap_feat_dim

        self.all_x_embedder = nn.ModuleDict()
        self.all_final_layer = nn.ModuleDict()
        for patch in self.patch_sizes:
            volume = patch.temporal * patch.spatial * patch.spatial
            self.all_x_embedder[patch.checkpoint_key] = operations.Linear(
                volume * in_channels, dim, bias=True, **factory
            )
            self.all_final_layer[patch.checkpoint_key] = FinalLayer(dim, patch, in_channels, **layer_factory)

        cond_dim = min(dim, 1024)
        self.t_embedder = TimestepEmbedder(cond_dim, **layer_factory)
        self.motion_embedder = TimestepEmbedder(cond_dim, **layer_factory)
        self.cap_embedder = nn.Sequential(
            operations.LayerNorm(cap_feat_dim, **factory),
            operations.Linear(cap_feat_dim, cond_dim, bias=True, **factory),
        )
        self.layers = nn.ModuleList(
            NextDiTBlock(
                dim,
                n_heads,
                n_kv_heads,
                multiple_of,
                ffn_dim_multiplier,
                norm_eps,
                qk_norm,
                cap_feat_dim,
                **layer_factory,
            )
            for _ in range(n_layers)
        )
        axes_dims = (head_dim // 8 * 2, head_dim // 8 * 3, head_dim // 8 * 3)
        self.rope = RotaryEmbedding(axes_dims, ROPE_TABLE_LENS, rope_theta)
        self.pad_token = nn.Parameter(torch.empty(dim, **factory))  # in the released checkpoint; unused in forward

    @property
    def patch_sizes(self) -> list[PatchSize]:
        """The patch sizes this model has embedders for."""
        return [PatchSize(pf, p) for p, pf in zip(self.all_patch_size, self.all_f_patch_size)]

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
            zero += [
                final.linear.weight,
                final.linear.bias,
                final.adaLN_modulation[1].weight,
                final.adaLN_modulation[1].bias,
            ]
        for param in zero:
            nn.init.zeros_(param)
        nn.init.normal_(self.pad_token, std=0.02, generator=generator)

    def patchify(self, x: torch.Tensor, patch: PatchSize) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, C, F, H, W] -> tokens [B, (F/pt)(H/ps)(W/ps), pt*ps*ps*C], frame-major, channels innermost."""
        if x.shape[2] == 1 and patch.temporal > 1:  # a single image fills a temporal patch by repetition
            x = x.repeat(1, 1, patch.temporal, 1, 1)
        pt, ps = patch
        tokens = rearrange(x, "b c (f pt) (h ph) (w pw) -> b (f h w) (pt ph pw c)", pt=pt, ph=ps, pw=ps)
        grid = (x.shape[2] // pt, x.shape[3] // ps, x.shape[4] // ps)
        return tokens, grid

    def unpatchify(
        self, tokens: torch.Tensor, grid: tuple[int, int, int], patch: PatchSize, frames: int
    ) -> torch.Tensor:
        """Inverse of patchify; crops the repeated frames of a single image back to ``frames``."""
        f, h, w = grid
        pt, ps = patch
        x = rearrange(tokens, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ps, pw=ps)
        return x[:, :, :frames]

    def check_input_size(self, x: torch.Tensor, patch: PatchSize):
        if patch not in self.patch_sizes:
            raise ValueError(f"patch size {patch} is not in this model; it has {', '.join(map(str, self.patch_sizes))}")
        _, c, f, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"latent has {c} channels, the model expects {self.in_channels}")
        if h % patch.spatial or w % patch.spatial:
            raise ValueError(f"latent size {h}x{w} is not divisible by the patch size {patch.spatial}")
        if f > 1 and f % patch.temporal:
            raise ValueError(
                f"{f} latent frames can't be split into temporal patches of {patch.temporal}; "
                "use an even latent frame count"
            )

    def forward(self, x, t, cap_feats, cap_mask, motion_score, patch: PatchSize, skip_layers: Sequence[int] = ()):
        """x [B, C, F, H, W], t [B] or a time per latent cell [B, F, H, W], cap_feats [B, Ly, cap_dim],
        cap_mask [B, Ly], motion_score [B] -> velocity [B, C, F, H, W]. ``skip_layers`` (indices into the blocks,
        negative from the end) are left out: the weakened model that skip-layer guidance steers away from."""
        inputs = self.embed(x, t, cap_feats, cap_mask, motion_score, patch)
        return self.final(inputs, self.run_blocks(inputs, skip_layers))

    def embed(self, x, t, cap_feats, cap_mask, motion_score, patch: PatchSize) -> "DiTInputs":
        """The first part of forward: tokens, RoPE and the adaLN conditioning (split out for step caching)."""
        patch = PatchSize(*patch)
        self.check_input_size(x, patch)
        tokens, grid = self.patchify(x, patch)
        rope = self.rope(grid, x.device, *self.rope_placement(patch))
        h = self.all_x_embedder[patch.checkpoint_key](tokens)

        motion = motion_score * self.motion_scale
        no_motion = motion < 0
        motion_emb = self.motion_embedder(motion.masked_fill(no_motion, 0), dtype=h.dtype).masked_fill(
            no_motion[:, None], 0
        )
        caption = self.cap_embedder(masked_mean(cap_feats, cap_mask))  # [B, cond]
        if t.ndim == 1:
            c = self.t_embedder(t * self.t_scale, dtype=h.dtype) + caption + motion_emb
        else:  # per token: the clip's conditioning reaches every token
            times, clip, index = self.token_times(t, x.shape, patch)
            rows = self.t_embedder(times * self.t_scale, dtype=h.dtype) + caption[clip] + motion_emb[clip]
            c = TokenConditioning(rows, index)
        return DiTInputs(h, c, rope, cap_feats, cap_mask.bool(), grid, patch, x.shape[2])

    def rope_placement(self, patch: PatchSize) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Step and offset of the tokens' RoPE positions along (frames, height, width) at ``patch``.

        The released model counts positions in patch-grid units, so position 1 is latent frame 1 for a 1-frame
        patch but latent frames 2-3 for a 2-frame one. With ``rope_time_in_frames`` a token's temporal position
        is the centre of its latent frames at every patch size (0.5 and 2.5 for the two 2-frame tokens of four
        latent frames), so that the scales, which share every other weight, share one time axis as well.
        """
        if not self.rope_time_in_frames:
            return (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
        return (float(patch.temporal), 1.0, 1.0), ((patch.temporal - 1) / 2, 0.0, 0.0)

    def token_times(self, t: torch.Tensor, shape, patch: PatchSize) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A time per latent cell [B, F, H, W] -> the distinct (clip, token time) pairs: times [U], their clips [U]
        and each token's pair [B, L] (``TokenConditioning``).

        Per-token times are LTX-Video's way of conditioning: known tokens marked clean (t = 1) while the rest
        is denoised. A token's time is the mean over the cells its patch covers.
        """
        batch, _, *grid = shape
        if t.shape != (batch, *grid):
            raise ValueError(f"per-cell times {tuple(t.shape)} don't match the latent's [B, F, H, W] {(batch, *grid)}")
        cells = self.patchify(t[:, None], patch)[0].mean(-1)  # [B, L]
        times, time_index = torch.unique(cells, return_inverse=True)  # [T], [B, L]
        keys = torch.arange(batch, device=cells.device)[:, None] * len(times) + time_index  # (clip, time) as one int
        pairs, index = torch.unique(keys, return_inverse=True)  # [U], [B, L]
        return times[pairs % len(times)], pairs // len(times), index

    def run_blocks(self, inputs: "DiTInputs", skip_layers: Sequence[int] = ()) -> torch.Tensor:
        """The transformer blocks on the embedded tokens -> tokens [B, L, dim], the blocks ``skip_layers`` left out."""
        h, rope, c = inputs.h, inputs.rope, inputs.c
        skipped = {self.layer_index(index) for index in skip_layers}
        with parallel.token_shards(h.shape[1]) as shards:  # None unless sequence parallel is set up
            if shards is not None:
                h, rope = shards.shard(h), tuple(shards.shard(part, dim=0) for part in rope)
                c = c._replace(index=shards.shard(c.index)) if isinstance(c, TokenConditioning) else c
            for index, layer in enumerate(self.layers):
                if index not in skipped:
                    h = layer(h, rope, inputs.y, inputs.y_mask, c)
            return h if shards is None else shards.gather(h)

    def layer_index(self, index: int) -> int:
        """A block index, negative ones counted from the end as in Python; one out of range is refused by name."""
        depth = len(self.layers)
        if not -depth <= index < depth:
            raise ValueError(
                f"skip layer {index}: this model has {depth} blocks (indices 0 to {depth - 1}, or -1 to -{depth})"
            )
        return index % depth

    def final(self, inputs: "DiTInputs", h: torch.Tensor) -> torch.Tensor:
        """The final layer and unpatchify: tokens after the blocks -> velocity [B, C, F, H, W]."""
        out = self.all_final_layer[inputs.patch.checkpoint_key](h, inputs.c)
        return self.unpatchify(out, inputs.grid, inputs.patch, inputs.frames)


class DiTInputs(NamedTuple):
    """What the blocks and the final layer need from ``MultiScaleNextDiT.embed``."""

    h: torch.Tensor  # tokens [B, L, dim]
    c: "torch.Tensor | TokenConditioning"  # adaLN conditioning [B, min(dim, 1024)], or per token
    rope: tuple
    y: torch.Tensor  # caption features [B, Ly, cap_dim]
    y_mask: torch.Tensor  # [B, Ly] bool
    grid: tuple[int, int, int]
    patch: PatchSize
    frames: int


class TokenConditioning(NamedTuple):
    """Per-token adaLN conditioning, each distinct row once: a clip's tokens take few times (the sampler's, and 1
    or a strength on kept cells), so the time embedding and every adaLN linear run on a few rows per clip instead
    of one per token (a fifth of a training step at the toy size)."""

    rows: torch.Tensor  # [U, min(dim, 1024)]
    index: torch.Tensor  # [B, L], each token's row


def adaln(modulation: nn.Module, c: "torch.Tensor | TokenConditioning") -> torch.Tensor:
    """An adaLN modulation of the conditioning: c [B, cond] (one time per sample) -> [B, 1, D]; per token
    -> [B, L, D]."""
    if isinstance(c, TokenConditioning):
        # index_select, not rows[index]: its backward (index_add_) is ten times faster on the CPU than advanced
        # indexing's (index_put_ with accumulation)
        return modulation(c.rows).index_select(0, c.index.flatten()).unflatten(0, c.index.shape)
    return modulation(c)[:, None]


def call_time(t: torch.Tensor) -> float:
    """The sampler's time of a model call: t [B]'s first, or the least of per-cell times [B, F, H, W] (known cells
    run ahead of the schedule, at t = 1)."""
    return float(t.flatten()[0] if t.ndim == 1 else t.min())


def masked_mean(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, L, D] averaged over the positions where mask [B, L] is set -> [B, D], in feats' dtype."""
    weights = mask.to(feats).unsqueeze(-1)
    return ((feats * weights).sum(dim=1) / weights.sum(dim=1)).to(feats)


FACTORIES = {
    "MultiScaleNextDiT_2B": dict(dim=2304, n_layers=24, n_heads=16, n_kv_heads=None),
    "MultiScaleNextDiT_2B_GQA": dict(dim=2304, n_layers=24, n_heads=16, n_kv_heads=8),
    "MultiScaleNextDiT_4B_GQA": dict(dim=3072, n_layers=32, n_heads=24, n_kv_heads=8),
}
