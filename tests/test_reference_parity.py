"""Numerical parity of MultiScaleNextDiT against the upstream Lumina-Video code.

The upstream repository is not vendored (nor installable from a registry): point
``LUMINA_VIDEO_REF_ROOT`` at a checkout of Alpha-VLLM/Lumina-Video to run these tests.
flash-attn's varlen kernel and the sequence-parallel helpers are replaced by the
single-process stand-ins below (plain masked softmax, written independently of the
SDPA path under test), and the reference's fp16/bf16-only assertion is lifted so the
comparison can run in fp32.
"""

import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from lumina_core import MultiScaleNextDiT, PatchSize

REF_ROOT = os.environ.get("LUMINA_VIDEO_REF_ROOT")
pytestmark = pytest.mark.skipif(
    not REF_ROOT,
    reason="LUMINA_VIDEO_REF_ROOT is not set: "
    "reference parity NOT checked (point it at an Alpha-VLLM/Lumina-Video checkout)",
)


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, causal, softmax_scale):
    """flash_attn_varlen_func for one process: q [Tq, H, D], k/v [Tk, Hkv, D], GQA by repeat_interleave."""
    rep = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        ks, ke = int(cu_seqlens_k[i]), int(cu_seqlens_k[i + 1])
        qi = q[qs:qe].transpose(0, 1).float()
        ki = k[ks:ke].repeat_interleave(rep, dim=1).transpose(0, 1).float()
        vi = v[ks:ke].repeat_interleave(rep, dim=1).transpose(0, 1).float()
        weights = torch.softmax(qi @ ki.transpose(1, 2) * softmax_scale, dim=-1)
        out[qs:qe] = (weights @ vi).transpose(0, 1).to(q.dtype)
    return out


def unpad_input(hidden, mask):
    lengths = mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu = torch.nn.functional.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    return hidden.flatten(0, 1)[indices], indices, cu, int(lengths.max()), lengths


def install_stand_ins():
    flash = types.ModuleType("flash_attn")
    flash.flash_attn_varlen_func = varlen_attention
    padding = types.ModuleType("flash_attn.bert_padding")
    padding.unpad_input = unpad_input
    padding.index_first_axis = padding.pad_input = None
    parallel = types.ModuleType("utils.parallel")
    parallel.all_to_all = lambda x, **kw: x
    parallel.gather_from_sequence_parallel_region = lambda x, **kw: x
    parallel.scatter_to_sequence_parallel_region = lambda x, **kw: (x, 0)
    parallel.get_sequence_parallel_group = lambda: None
    parallel.get_sequence_parallel_rank = lambda: 0
    parallel.get_sequence_parallel_world_size = lambda: 1
    utils = types.ModuleType("utils")
    utils.parallel = parallel
    sys.modules.update(
        {"flash_attn": flash, "flash_attn.bert_padding": padding, "utils": utils, "utils.parallel": parallel}
    )


@pytest.fixture(scope="module")
def reference_module():
    install_stand_ins()
    models_dir = Path(REF_ROOT) / "models"
    package = types.ModuleType("refmodels")
    package.__path__ = [str(models_dir)]
    sys.modules["refmodels"] = package
    for name in ("components", "model"):
        source = (models_dir / f"{name}.py").read_text()
        source = source.replace("assert dtype in [torch.float16, torch.bfloat16]", "")
        module = types.ModuleType(f"refmodels.{name}")
        module.__package__ = "refmodels"
        sys.modules[module.__name__] = module
        exec(compile(source, str(models_dir / f"{name}.py"), "exec"), module.__dict__)
    return sys.modules["refmodels.model"]


CONFIG = dict(
    all_patch_size=(2, 2, 4),
    all_f_patch_size=(1, 2, 2),
    in_channels=16,
    dim=128,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    qk_norm=True,
    cap_feat_dim=48,
    rope_theta=256.0,
    t_scale=1000.0,
    motion_scale=20.0,
)


def randomize(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(
                torch.randn(param.shape, generator=generator) * (0.5 / math.sqrt(max(param.shape[-1], 1)))
                + (param.ndim == 1) * 0.1
            )


def inputs(frames, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, frames, 8, 16, generator=generator)
    t = torch.rand(batch, generator=generator)
    cap = torch.randn(batch, 11, 48, generator=generator)
    mask = torch.zeros(batch, 11, dtype=torch.long)
    for i in range(batch):
        mask[i, : 11 - 4 * i] = 1
    motion = torch.tensor([6.0, -1.0][:batch])
    return x, t, cap, mask, motion


@pytest.mark.parametrize("frames", [4, 1])
@pytest.mark.parametrize("scale", [(1, 2), (2, 2), (2, 4)])
def test_forward_matches_reference(reference_module, scale, frames):
    torch.manual_seed(0)
    reference = reference_module.MultiScaleNextDiT(**CONFIG).eval()
    randomize(reference, 1)
    ours = MultiScaleNextDiT(**CONFIG).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    f_patch, patch = scale
    x, t, cap, mask, motion = inputs(frames)
    with torch.no_grad():
        # The list form: the reference's tensor form slices channels by the token count
        # (x[:, :L] in unpatchify), which only works when tokens outnumber channels.
        expected = torch.stack(reference(list(x.clone()), t.clone(), cap, mask, motion.clone(), patch, f_patch))
        got = ours(x, t, cap, mask, motion, PatchSize(f_patch, patch))
    assert got.shape == x.shape
    assert expected.abs().max() > 1e-2  # the check is not vacuous: the output is not all zeros
    assert (got - expected).abs().max().item() < 1e-4
