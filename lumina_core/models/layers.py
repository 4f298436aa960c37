"""Building blocks shared by the Next-DiT video and audio models.

Everything here follows the Lumina-Video reference numerically (norms, sinusoidal
embedders, SwiGLU, interleaved-pair RoPE) but runs on plain PyTorch: attention goes
through ``scaled_dot_product_attention`` with explicit key-padding masks instead of
flash-attn's varlen kernels. Layers with weights take ``operations`` (default ``torch.nn``),
the namespace their Linear/LayerNorm/RMSNorm/Embedding classes come from, as ComfyUI's
``comfy/ldm`` models do: ComfyUI hands in ``comfy.ops`` for weight casting, fp8 and low-VRAM
loading.
"""

import contextlib
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


class TimestepEmbedder(nn.Module):
    """Scalar -> vector: a [cos | sin] sinusoid (max period 1e4) followed by an MLP.

    Used for the flow time and, with the same layout, for the motion score.
    """

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, dtype=None, device=None, operations=nn):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            operations.Linear(frequency_embedding_size, hidden_size, bias=True, dtype=dtype, device=device),
            nn.SiLU(),
            operations.Linear(hidden_size, hidden_size, bias=True, dtype=dtype, device=device),
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """t [N] -> [N, dim] float32, laid out as [cos | sin]."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """t [B] -> [B, hidden]; the sinusoid goes in as ``dtype`` (default: the weights', which are stored in another
        dtype than the computation's where a framework casts them on the fly, e.g. fp8)."""
        t_freq = self.sinusoid(t, self.frequency_embedding_size)
        return self.mlp(t_freq.to(dtype or self.mlp[0].weight.dtype))


class FeedForward(nn.Module):
    """SwiGLU MLP with the LLaMA hidden-size rule (2/3 of ``hidden_dim``, rounded up to ``multiple_of``)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        multiple_of: int,
        ffn_dim_multiplier: Optional[float],
        dtype=None,
        device=None,
        operations=nn,
    ):
        super().__init__()
        hidden_dim = swiglu_hidden_dim(hidden_dim, multiple_of, ffn_dim_multiplier)
        self.w1 = operations.Linear(dim, hidden_dim, bias=False, dtype=dtype, device=device)
        self.w2 = operations.Linear(hidden_dim, dim, bias=False, dtype=dtype, device=device)
        self.w3 = operations.Linear(dim, hidden_dim, bias=False, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        hidden = F.silu(self.w1(x), inplace=True)  # in place without autograd: no intermediate [B, L, hidden] copies
        return self.w2(hidden.mul_(self.w3(x)))


def init_linears_xavier(module: nn.Module, generator: Optional[torch.Generator] = None):
    """Xavier-uniform weights and zero biases for every nn.Linear inside ``module`` (DiT's starting point)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def swiglu_hidden_dim(hidden_dim: int, multiple_of: int, ffn_dim_multiplier: Optional[float]) -> int:
    hidden_dim = int(2 * hidden_dim / 3)
    if ffn_dim_multiplier is not None:
        hidden_dim = int(ffn_dim_multiplier * hidden_dim)
    return multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)


class RotaryEmbedding(nn.Module):
    """Axis-factorised RoPE over a token grid, as interleaved (even, odd) pairs.

    ``axes_dims`` splits the head dimension between the grid axes (for the video model:
    frames, height, width = 2/8, 3/8, 3/8 of it). ``axes_lens`` are the table sizes the
    released model was trained with; a grid larger than them is refused, because the
    reference would silently truncate the table and misalign the tokens.
    The tables are built on demand per grid, never as one dense (F, H, W, D) block.
    """

    def __init__(self, axes_dims: Sequence[int], axes_lens: Sequence[int], theta: float):
        super().__init__()
        if any(d % 2 for d in axes_dims):
            raise ValueError(f"RoPE axis dims must be even, got {tuple(axes_dims)}")
        self.axes_dims = tuple(axes_dims)
        self.axes_lens = tuple(axes_lens)
        self.theta = theta

    def axis_angles(self, axis: int, length: int, device, step: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        """[length, dim/2] float64 angles position * 1/theta^(2i/d), as the reference computes them; the i-th
        token's position is i * step + offset (the reference's: i)."""
        dim = self.axes_dims[axis]
        freqs = 1.0 / (self.theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim))
        positions = torch.arange(length, dtype=torch.float64, device=device) * step + offset
        return torch.outer(positions, freqs)

    def forward(
        self,
        grid: Sequence[int],
        device,
        steps: Optional[Sequence[float]] = None,
        offsets: Optional[Sequence[float]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """grid (n0, n1, ...) -> cos, sin [prod(grid), head_dim/2] float32, token order row-major over the grid.
        ``steps`` and ``offsets`` place each axis's tokens (``axis_angles``); None: at 0, 1, 2, ..."""
        for axis, (n, limit) in enumerate(zip(grid, self.axes_lens)):
            if n > limit:
                raise ValueError(
                    f"token grid {tuple(grid)} exceeds the RoPE table {self.axes_lens} on axis {axis} "
                    f"({n} > {limit}); use fewer frames or a smaller size, or a coarser patch size"
                )
        parts = []
        steps, offsets = steps or [1.0] * len(grid), offsets or [0.0] * len(grid)
        for axis, n in enumerate(grid):
            angles = self.axis_angles(axis, n, device, steps[axis], offsets[axis])
            shape = [1] * len(grid) + [angles.shape[-1]]
            shape[axis] = n
            parts.append(angles.view(shape).expand(*grid, angles.shape[-1]))
        angles = torch.cat(parts, dim=-1).reshape(-1, sum(self.axes_dims) // 2)
        # complex64 in the reference: round the float64 angles' cos/sin to float32.
        return torch.cos(angles).float(), torch.sin(angles).float()


COMPLEX_DEVICES = ("cpu", "cuda")
"""Devices whose complex64 multiply ``apply_rotary`` uses: one fused op where the real form takes seven, 6x faster
on the CPU at the DiT's sizes (the reference's own form); other backends (MPS) take the real form."""


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, L, H, D] with (even, odd) pairs rotated by cos/sin [L, D/2]; computed in float32."""
    if x.device.type in COMPLEX_DEVICES:
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # [B, L, H, D/2]
        return torch.view_as_real(pairs * torch.complex(cos, sin)[:, None, :]).flatten(-2).type_as(x)
    xf = x.float().unflatten(-1, (-1, 2))
    x_even, x_odd = xf[..., 0], xf[..., 1]
    cos, sin = cos[:, None, :], sin[:, None, :]
    out = torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)
    return out.flatten(-2).type_as(x)


# Query x key positions up to which the CPU takes SDPA's math kernel. On a few tokens per sample the
# flash kernel's per-(batch, head) work dominates: the embedded DiT's 2x4 forward (8 video tokens and 6
# caption tokens per sample, 150 samples) ran 0.76, 0.86 and 0.93 of its flash-kernel time with the
# math kernel (fastest of 25, three rounds, 2 threads); at 2x2 (32 tokens) neither kernel won every round.
SMALL_ATTENTION_GRID = 64


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Non-causal multi-head attention with grouped KV heads.

    q [B, Lq, Hq, D], k/v [B, Lk, Hkv, D], key_mask [B, Lk] bool (True = attend) -> [B, Lq, Hq, D].
    Query head h reads KV head h // (Hq / Hkv), flash-attn's GQA convention. Both SDPA kernels give
    a query whose keys are all masked zeros.
    """
    n_rep = q.shape[2] // k.shape[2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    small = q.device.type == "cpu" and q.shape[2] * k.shape[2] <= SMALL_ATTENTION_GRID
    with sdpa_kernel(SDPBackend.MATH) if small else contextlib.nullcontext():
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2)
