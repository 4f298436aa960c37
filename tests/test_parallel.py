"""Sequence parallel (lumina_core/parallel.py): 2 gloo processes on the CPU give one process's outputs.

Where each rank's shard keeps the CPU kernels on the path one process takes, the outputs are the same to 1e-5
absolute in fp32 (measured: equal, but for one forward at 4.8e-7): every rank multiplies at least 8 rows (MKL's
sgemm takes another kernel for fewer, which sums in another order) and holds an even number of tokens (PyTorch's
vectorised elementwise loops send an odd last chunk of 16 floats through their scalar path, e.g. silu's exp, which
rounds differently). Other shards differ by an ulp or two here and there; sampling with CFG at scale 20 multiplies
a step's difference by 21, so such a sampled latent ends 2.6e-6 of its magnitude away (2.5e-4 on 94). Those shapes
are checked against a relative bound.
"""

import os
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp
from tiny_models import TINY, randomized

from lumina_core import parallel
from lumina_core.bench.parallel import free_port
from lumina_core.models.layers import apply_rotary, attention
from lumina_core.models.nextdit import NextDiTAttention, PatchSize
from lumina_core.models.text import TextCondition
from lumina_core.pipeline import compile_blocks
from lumina_core.sampling import PRESETS, make_noise, sample

WORLD = 2
# (latent shape, patch): tokens per sample 48, 24, 24, 27 (odd: padded to 28) and 81 (padded to 82), so that each
# rank holds at least 8 rows in every matmul
ALIGNED_FORWARDS = [
    ((2, 16, 2, 8, 12), "1x2"),
    ((2, 16, 2, 8, 12), "2x2"),
    ((2, 16, 2, 16, 24), "2x4"),
    ((1, 16, 1, 6, 18), "1x2"),
    ((1, 16, 3, 6, 18), "1x2"),
]
# tokens per sample 6 and 3 (padded to 4) at 2x4, 9 (padded to 10) at 1x2: fewer than 8 rows per rank
FEW_TOKEN_FORWARDS = [((2, 16, 2, 8, 12), "2x4"), ((1, 16, 2, 4, 12), "2x4"), ((1, 16, 1, 6, 6), "1x2")]
ALIGNED_SAMPLE = (1, 16, 2, 16, 24)  # 24, 96 and 192 tokens per sample at 2x4, 2x2 and 1x2
FEW_TOKEN_SAMPLE = (1, 16, 2, 8, 12)  # 6 tokens at 2x4
# largest difference allowed, absolute or relative to the largest value of one process's output
BOUNDS = dict(aligned=dict(absolute=1e-5), few_tokens=dict(relative=1e-6), few_token_sample=dict(relative=1e-5))
GQA_BELOW_WORLD = replace(TINY, n_kv_heads=1)  # one KV head for two processes: repeated before the all-to-all


def inputs(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    batch = shape[0]
    cap = torch.randn(batch, 5, TINY.cap_feat_dim, generator=generator)
    mask = torch.ones(batch, 5, dtype=torch.long)
    mask[-1, 3:] = 0  # a padded caption
    t = torch.rand(batch, generator=generator)
    if seed % 2:  # per-token times (TokenConditioning, its index sharded with the tokens): latent frame 0 clean
        t = t.view(-1, 1, 1, 1).expand(batch, *shape[2:]).clone()
        t[:, 0] = 1.0
    motion = torch.tensor([3.0, -1.0][:batch])
    return torch.randn(shape, generator=generator), t, cap, mask, motion


def run_all() -> dict:
    """Every forward and a short multi-scale sample with CFG, in this process's mode -> {kind of BOUNDS: [tensors]}."""
    results = {kind: [] for kind in BOUNDS}
    for config in (TINY, GQA_BELOW_WORLD):
        model = randomized(config)
        for kind, forwards in (("aligned", ALIGNED_FORWARDS), ("few_tokens", FEW_TOKEN_FORWARDS)):
            for i, (shape, patch) in enumerate(forwards):
                with torch.no_grad():
                    results[kind].append(model(*inputs(shape, i), PatchSize.parse(patch)))
    model = randomized(TINY)
    generator = torch.Generator().manual_seed(1)  # the same caption in every process
    caption = TextCondition(torch.randn(1, 5, TINY.cap_feat_dim, generator=generator), torch.ones(1, 5).long())
    empty = TextCondition(torch.randn(1, 2, TINY.cap_feat_dim, generator=generator), torch.ones(1, 2).long())
    config = PRESETS["f24F96R960-MultiScale"].with_(steps=5)
    for kind, shape in (("aligned", ALIGNED_SAMPLE), ("few_token_sample", FEW_TOKEN_SAMPLE)):
        results[kind].append(sample(model, make_noise(shape, seed=3), caption, empty, config))
    return results


def run_compiled() -> list:
    """The aligned forwards of the tiny model with its blocks compiled (generate --compile)."""
    model = compile_blocks(randomized(TINY))
    with torch.no_grad():
        return [model(*inputs(shape, i), PatchSize.parse(patch)) for i, (shape, patch) in enumerate(ALIGNED_FORWARDS)]


def worker(rank, port, out_dir, run=run_all):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    assert parallel.init_from_env()
    try:
        torch.save(run(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        parallel.close()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = run_all()
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        sharded = torch.load(tmp_path / f"rank{rank}.pt")
        for kind, bound in BOUNDS.items():
            assert len(sharded[kind]) == len(single[kind])
            for i, (a, b) in enumerate(zip(sharded[kind], single[kind])):
                assert a.shape == b.shape
                error, magnitude = float((a - b).abs().max()), float(b.abs().max())
                assert error <= bound.get("absolute", bound.get("relative", 0) * magnitude), (kind, i, error, magnitude)


@pytest.mark.slow
def test_compiled_blocks_in_two_processes_match_one_eager_process(tmp_path):
    model = randomized(TINY)
    with torch.no_grad():
        eager = [model(*inputs(shape, i), PatchSize.parse(patch)) for i, (shape, patch) in enumerate(ALIGNED_FORWARDS)]
    mp.spawn(worker, args=(free_port(), str(tmp_path), run_compiled), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        for a, b in zip(torch.load(tmp_path / f"rank{rank}.pt"), eager, strict=True):
            assert (a - b).abs().max() <= 1e-4  # compile's bound (docs/benchmarks.md, Compile)


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
    for i, (shape, patch) in enumerate(ALIGNED_FORWARDS + FEW_TOKEN_FORWARDS):
        with torch.no_grad():
            hooked = model(*inputs(shape, i), PatchSize.parse(patch))
            with monkeypatch.context() as patched:
                patched.setattr(NextDiTAttention, "forward", unsharded_attention)
                before = model(*inputs(shape, i), PatchSize.parse(patch))
        assert torch.equal(hooked, before)
