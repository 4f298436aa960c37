"""Sequence parallel for the Next-DiT: its tokens split across processes (``torchrun --nproc-per-node N``).

DeepSpeed-Ulysses style (the scheme of xDiT/xfuser's sequence parallel): each rank holds L/N tokens
through the transformer blocks (norms, adaLN, feed-forward: per token) and all-gathers them after the last one,
so that ``MultiScaleNextDiT.run_blocks`` still returns every token (step caching reuses them); around attention an
all-to-all turns [B, L/N, H, D] into [B, L, H/N, D] (every token, a slice of the heads), attention runs
locally, and the inverse all-to-all turns it back. The caption cross-attention reuses the self-attention's
RoPE'd queries, so it runs on the same head slice before the inverse all-to-all, against the whole caption
that every rank keeps: it costs no communication.

Why Ulysses rather than ring attention: the released model has 16 query heads, so any N dividing 16 works;
attention needs one all-to-all pair per layer (q, k, v in, the output back), each moving 1/N of a rank's
activations, instead of N-1 rounds of key/value passing overlapped with blockwise attention; and the
attention kernel stays the unmodified SDPA. Ring attention would scale beyond the head count, which 8 GPUs
for one video don't need. KV heads (8 in the released GQA model) fewer than N, or not divisible by N, are
repeated to the query heads before the all-to-all (as ``attention`` would repeat them anyway); the query
heads must be divisible by N.

Tokens are padded at the end to a multiple of N. After the all-to-all every rank holds all L + padding tokens
of its heads; the padding is cropped before attention and put back after it, so each head's attention runs on
the L tokens alone, with the shapes and kernel of one process (a key mask over the padding instead gave
differences of 1e-5 on outputs of 45 in fp32). The padded outputs are cropped after the gather. Sequence
parallel is on only after ``init_from_env`` (or ``use_group``) in a world of more than one process; otherwise
``token_shards`` yields None and the model runs exactly as before.
Inference only: the all-to-alls have no backward.
"""

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.distributed as dist

_GROUP: Optional[dist.ProcessGroup] = None  # the sequence-parallel group, once set up
_OWN_PROCESS_GROUP = False  # whether init_from_env created the process group (and close destroys it)
_ACTIVE: Optional["TokenShards"] = None  # the running forward's shards; a plain global, which torch.compile traces


def init_from_env(device: Optional[torch.device] = None) -> bool:
    """Set up the process group from torchrun's env vars (WORLD_SIZE, RANK, MASTER_ADDR, ...) when WORLD_SIZE > 1:
    NCCL on CUDA (each rank on cuda:LOCAL_RANK), gloo on the CPU. Returns whether sequence parallel is on."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        global _OWN_PROCESS_GROUP
        dist.init_process_group("nccl" if cuda else "gloo")
        _OWN_PROCESS_GROUP = True
    use_group(dist.group.WORLD)
    return True


def use_group(group: Optional[dist.ProcessGroup]):
    """Shard the DiT's tokens over ``group`` from now on (None: stop)."""
    global _GROUP
    _GROUP = group


def close():
    """Leave sequence parallel and destroy the process group if init_from_env made it (after sampling; the rest
    runs on rank 0 alone)."""
    global _OWN_PROCESS_GROUP
    use_group(None)
    if _OWN_PROCESS_GROUP:
        dist.destroy_process_group()
        _OWN_PROCESS_GROUP = False


def rank() -> int:
    """This process's rank in the sequence-parallel group; 0 without one (so 'rank 0 writes' holds alone too)."""
    return dist.get_rank(_GROUP) if _GROUP is not None else 0


def current() -> Optional["TokenShards"]:
    """The shards of the forward now running, for the attention layers; None when not sharded."""
    return _ACTIVE


@contextlib.contextmanager
def token_shards(length: int) -> Iterator[Optional["TokenShards"]]:
    """Around one DiT forward of ``length`` tokens: yields its TokenShards (seen by ``current``), or None when
    sequence parallel is off or there is a single process."""
    if _GROUP is None or dist.get_world_size(_GROUP) == 1:
        yield None
        return
    shards = TokenShards(length, dist.get_world_size(_GROUP), dist.get_rank(_GROUP), _GROUP)
    global _ACTIVE
    outer, _ACTIVE = _ACTIVE, shards
    try:
        yield shards
    finally:
        _ACTIVE = outer


@dataclass
class TokenShards:
    """L tokens padded to N * local and split in rank order: rank r holds tokens [r * local, (r + 1) * local)."""

    length: int
    world: int
    rank: int
    group: Optional[dist.ProcessGroup]

    @property
    def local(self) -> int:
        return -(-self.length // self.world)

    @property
    def padded(self) -> int:
        return self.local * self.world

    def shard(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """[..., L, ...] -> this rank's [..., local, ...] along ``dim``, zero-padded at the end."""
        pad = self.padded - x.shape[dim]
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:dim], pad, *x.shape[dim + 1 :])], dim=dim)
        return x.narrow(dim, self.rank * self.local, self.local)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's [B, local, C] -> [B, L, C] on every rank, padding cropped."""
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)[:, : self.length]

    def heads_slice(self, x: torch.Tensor, n_heads: int) -> torch.Tensor:
        """[B, Ly, Hkv, D] -> this rank's [B, Ly, H'/N, D]: the KV heads its query-head slice reads (caption)."""
        x = self.kv_heads(x, n_heads)
        per_rank = x.shape[2] // self.world
        return x[:, :, self.rank * per_rank : (self.rank + 1) * per_rank]

    def kv_heads(self, x: torch.Tensor, n_heads: int) -> torch.Tensor:
        """[B, L, Hkv, D] unchanged when N divides Hkv; else repeated to the n_heads query heads (GQA's order)."""
        if n_heads % self.world:
            raise ValueError(f"sequence parallel over {self.world} processes needs the heads ({n_heads}) divisible")
        if x.shape[2] % self.world:
            x = x.repeat_interleave(n_heads // x.shape[2], dim=2)
        return x

    def to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """All-to-all: [B, local, H, D] (a slice of the tokens) -> [B, L, H/N, D] (a slice of the heads), padding
        cropped."""
        b, local, h, d = x.shape
        send = x.reshape(b, local, self.world, h // self.world, d).permute(2, 0, 1, 3, 4).contiguous()
        received = torch.empty_like(send)  # [N source ranks = token chunks, B, local, H/N, D]
        dist.all_to_all_single(received, send, group=self.group)
        return received.permute(1, 0, 2, 3, 4).reshape(b, self.padded, h // self.world, d)[:, : self.length]

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse all-to-all: [B, L, H/N, D] -> [B, local, H, D], padding zero-filled."""
        b, _, h, d = x.shape
        x = torch.cat([x, x.new_zeros(b, self.padded - self.length, h, d)], dim=1)
        send = x.reshape(b, self.world, self.local, h, d).transpose(0, 1).contiguous()
        received = torch.empty_like(send)  # [N source ranks = head slices, B, local, H/N, D]
        dist.all_to_all_single(received, send, group=self.group)
        return received.permute(1, 2, 0, 3, 4).reshape(b, self.local, self.world * h, d)

    def attention_inputs(self, q, k, v, yk, yv, gate):
        """The sharded attention's operands: q [B, local, H, D], k/v [B, local, Hkv, D] -> all tokens, a head
        slice; caption yk/yv [B, Ly, Hkv, D] and gate [H] -> the same head slice, no communication."""
        n_heads = q.shape[2]
        k, v = self.kv_heads(k, n_heads), self.kv_heads(v, n_heads)
        per_rank = n_heads // self.world
        gate = gate[self.rank * per_rank : (self.rank + 1) * per_rank]
        q, k, v = self.to_heads(q), self.to_heads(k), self.to_heads(v)
        return q, k, v, self.heads_slice(yk, n_heads), self.heads_slice(yv, n_heads), gate
