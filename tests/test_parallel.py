"""Sequence parallel (lumina_core/parallel.py): 2 gloo processes on the CPU give one process's outputs."""

import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp
from tiny_models import TINY, randomized

from lumina_core import parallel
from lumina_core.models.layers import apply_rotary, attention
from lumina_core.models.nextdit import NextDiTAttention, PatchSize
from lumina_core.models.text import TextCondition
from lumina_core.sampling import PRESETS, make_noise, sample

WORLD = 2
# (latent shape, patch): token counts 48, 24, 6, 3 (odd: padded) and 9 (odd)
FORWARDS = [
    ((2, 16, 2, 8, 12), "1x2"),
    ((2, 16, 2, 8, 12), "2x2"),
    ((2, 16, 2, 8, 12), "2x4"),
    ((1, 16, 2, 4, 12), "2x4"),
    ((1, 16, 1, 6, 6), "1x2"),
]
GQA_BELOW_WORLD = replace(TINY, n_kv_heads=1)  # one KV head for two processes: repeated before the all-to-all


def inputs(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    batch = shape[0]
    cap = torch.randn(batch, 5, TINY.cap_feat_dim, generator=generator)
    mask = torch.ones(batch, 5, dtype=torch.long)
    mask[-1, 3:] = 0  # a padded caption
    t = torch.rand(batch, generator=generator)
    motion = torch.tensor([3.0, -1.0][:batch])
    return torch.randn(shape, generator=generator), t, cap, mask, motion


def run_all():
    """Every forward and a short multi-scale sample with CFG -> list of tensors, in this process's mode."""
    results = []
    for config in (TINY, GQA_BELOW_WORLD):
        model = randomized(config)
        for i, (shape, patch) in enumerate(FORWARDS):
            with torch.no_grad():
                results.append(model(*inputs(shape, i), PatchSize.parse(patch)))
    model = randomized(TINY)
    generator = torch.Generator().manual_seed(1)  # the same caption in every process
    caption = TextCondition(torch.randn(1, 5, TINY.cap_feat_dim, generator=generator), torch.ones(1, 5).long())
    empty = TextCondition(torch.randn(1, 2, TINY.cap_feat_dim, generator=generator), torch.ones(1, 2).long())
    config = PRESETS["f24F96R960-MultiScale"].with_(steps=5)
    results.append(sample(model, make_noise((1, 16, 2, 8, 12), seed=3), caption, empty, config))
    return results


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    assert parallel.init_from_env()
    try:
        torch.save(run_all(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        parallel.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = run_all()
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        sharded = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(sharded) == len(single)
        for a, b in zip(sharded, single):
            assert a.shape == b.shape
            # fp32 rounding: the randomized weights give outputs of magnitude ~10 to 30
            assert (a - b).abs().max() <= 1e-5 * b.abs().max(), ((a - b).abs().max(), b.abs().max())


def unsharded_attention(self, x, rope, y, y_mask):
    """NextDiTAttention.forward as it was before the sequence-parallel hook."""
    heads = lambda t, n: t.unflatten(-1, (n, self.head_dim))  # noqa: E731
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


def test_without_torch_distributed_the_forward_is_bit_identical(monkeypatch):
    assert parallel.current() is None
    model = randomized(TINY)
    for i, (shape, patch) in enumerate(FORWARDS):
        with torch.no_grad():
            hooked = model(*inputs(shape, i), PatchSize.parse(patch))
            with monkeypatch.context() as patched:
                patched.setattr(NextDiTAttention, "forward", unsharded_attention)
                before = model(*inputs(shape, i), PatchSize.parse(patch))
        assert torch.equal(hooked, before)
