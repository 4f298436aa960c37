import json

import pytest
import torch
import torch.nn.functional as F
from tiny_models import TINY, randomized
from torch.nn.attention import SDPBackend, sdpa_kernel

from lumina_core import MultiScaleNextDiT, PatchSize
from lumina_core.models.layers import SMALL_ATTENTION_GRID, attention

SCALES = [(1, 2), (2, 2), (2, 4)]


def caption(batch=2, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, TINY.cap_feat_dim, generator=g), torch.ones(batch, length, dtype=torch.long)


def assert_same(a, b):
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def run(model, x, cap, mask, motion=6.0, t=0.3, scale=(1, 2)):
    b = x.shape[0]
    return model(x, torch.full((b,), t), cap, mask, torch.full((b,), motion), PatchSize(*scale))


@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("scale", SCALES)
def test_patchify_round_trip(tiny_model, scale, frames):
    patch = PatchSize(*scale)
    x = torch.randn(2, 16, frames, 8, 16)
    tokens, grid = tiny_model.patchify(x, patch)
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], patch.temporal * patch.spatial**2 * 16)
    assert torch.equal(tiny_model.unpatchify(tokens, grid, patch, frames), x)


def test_patchify_puts_channels_innermost_and_frames_first(tiny_model):
    x = torch.arange(16 * 2 * 4 * 4, dtype=torch.float32).view(1, 16, 2, 4, 4)
    tokens, _ = tiny_model.patchify(x, PatchSize(2, 2))
    assert torch.equal(tokens[0, 0, :16], x[0, :, 0, 0, 0])  # (pf ph pw c): channel runs fastest
    assert torch.equal(tokens[0, 1, :16], x[0, :, 0, 0, 2])  # the next token is the next patch along width


def expected_keys(n_layers, scales):
    keys = {"pad_token"}
    for f_patch, patch in scales:
        keys |= {f"all_x_embedder.{patch}-{f_patch}.{p}" for p in ("weight", "bias")}
        keys |= {
            f"all_final_layer.{patch}-{f_patch}.{m}.{p}"
            for m in ("linear", "adaLN_modulation.1")
            for p in ("weight", "bias")
        }
    for e in ("t_embedder", "motion_embedder"):
        keys |= {f"{e}.mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    keys |= {"cap_embedder.0.weight", "cap_embedder.0.bias", "cap_embedder.1.weight", "cap_embedder.1.bias"}
    for n in range(n_layers):
        a = f"layers.{n}.attention"
        keys |= {f"{a}.{w}.weight" for w in ("wq", "wk", "wv", "wk_y", "wv_y", "wo")} | {f"{a}.gate"}
        keys |= {f"{a}.{norm}.{p}" for norm in ("q_norm", "k_norm", "ky_norm") for p in ("weight", "bias")}
        keys |= {f"layers.{n}.feed_forward.{w}.weight" for w in ("w1", "w2", "w3")}
        keys |= {
            f"layers.{n}.{norm}.weight"
            for norm in ("attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2", "attention_y_norm")
        }
        keys |= {f"layers.{n}.adaLN_modulation.1.{p}" for p in ("weight", "bias")}
    return keys


def test_state_dict_keys_are_the_released_ones():
    state = TINY.build(device="meta").state_dict()
    assert set(state) == expected_keys(TINY.n_layers, SCALES)


def test_released_config_has_released_shapes_and_size():
    state = MultiScaleNextDiT(
        all_patch_size=(2, 2, 4),
        all_f_patch_size=(1, 2, 2),
        in_channels=16,
        dim=2304,
        n_layers=24,
        n_heads=16,
        n_kv_heads=8,
        qk_norm=True,
        cap_feat_dim=2304,
        device="meta",
    ).state_dict()
    assert len(state) == 583
    assert sum(v.numel() for v in state.values()) == 1_771_364_672
    shapes = {
        "all_x_embedder.2-1.weight": (2304, 64),
        "all_x_embedder.2-2.weight": (2304, 128),
        "all_x_embedder.4-2.weight": (2304, 512),
        "all_final_layer.4-2.linear.weight": (512, 2304),
        "all_final_layer.2-1.adaLN_modulation.1.weight": (2304, 1024),
        "t_embedder.mlp.0.weight": (1024, 256),
        "motion_embedder.mlp.2.weight": (1024, 1024),
        "cap_embedder.1.weight": (1024, 2304),
        "layers.0.attention.wq.weight": (2304, 2304),
        "layers.0.attention.wk_y.weight": (1152, 2304),
        "layers.0.attention.gate": (16,),
        "layers.0.attention.k_norm.weight": (1152,),
        "layers.0.feed_forward.w1.weight": (6144, 2304),
        "layers.0.adaLN_modulation.1.weight": (9216, 1024),
        "layers.23.attention_y_norm.weight": (2304,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("scale", SCALES)
def test_caption_padding_changes_nothing(tiny_model, scale):
    x = torch.randn(1, 16, 4, 8, 8)
    cap, mask = caption(batch=1, length=5)
    padded = torch.cat([cap, torch.randn(1, 6, TINY.cap_feat_dim) * 100], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert_same(run(tiny_model, x, padded, padded_mask, scale=scale), run(tiny_model, x, cap, mask, scale=scale))


def test_batch_items_are_independent(tiny_model):
    x = torch.randn(2, 16, 4, 8, 8)
    cap, mask = caption(batch=2, length=9)
    mask[1, 4:] = 0
    with torch.no_grad():
        together = run(tiny_model, x, cap, mask)
        alone = run(tiny_model, x[1:], cap[1:, :4], mask[1:, :4])
    assert_same(together[1:], alone)


def test_negative_motion_means_no_condition(tiny_model):
    x = torch.randn(1, 16, 2, 8, 8)
    cap, mask = caption(batch=1)
    with torch.no_grad():
        a, b, c = (run(tiny_model, x, cap, mask, motion=m) for m in (-1.0, -7.0, 4.0))
        zero_emb = tiny_model.motion_embedder(torch.tensor([0.0]))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert zero_emb.abs().sum() > 0  # so "no condition" is not the same as motion 0


@pytest.mark.parametrize("scale", SCALES)
def test_a_time_per_cell_equal_everywhere_is_the_scalar_time(tiny_model, scale):
    x = torch.randn(2, 16, 4, 8, 8)
    cap, mask = caption()
    motion, patch = torch.full((2,), 6.0), PatchSize(*scale)
    with torch.no_grad():
        scalar = tiny_model(x, torch.full((2,), 0.3), cap, mask, motion, patch)
        per_cell = tiny_model(x, torch.full((2, 4, 8, 8), 0.3), cap, mask, motion, patch)
    assert_same(per_cell, scalar)


def test_a_token_takes_the_mean_time_of_its_cells_and_the_times_matter(tiny_model):
    x = torch.randn(1, 16, 4, 8, 8)
    cap, mask = caption(batch=1)
    motion, patch = torch.full((1,), 6.0), PatchSize(2, 2)
    split, mean = torch.full((1, 4, 8, 8), 0.25), torch.full((1, 4, 8, 8), 0.25)
    split[:, 0] = 1.0  # latent frame 0 clean, frame 1 at 0.25: their tokens (temporal patch 2) sit at 0.625
    mean[:, :2] = 0.625
    with torch.no_grad():
        by_cells = tiny_model(x, split, cap, mask, motion, patch)
        by_tokens = tiny_model(x, mean, cap, mask, motion, patch)
        scalar = tiny_model(x, torch.full((1,), 0.25), cap, mask, motion, patch)
    assert_same(by_cells, by_tokens)
    assert not torch.allclose(by_cells, scalar, atol=1e-3)


def test_per_token_conditioning_keeps_each_clips_rows_apart_and_computes_each_row_once(tiny_model):
    x = torch.randn(2, 16, 4, 8, 8)
    cap, mask = caption()
    motion, patch = torch.tensor([6.0, 2.0]), PatchSize(1, 2)
    times = torch.full((2, 4, 8, 8), 0.4)
    times[0, 0], times[1, :, :4] = 1.0, 0.7  # the same times in both clips, under other captions and motions
    with torch.no_grad():
        both = tiny_model(x, times, cap, mask, motion, patch)
        alone = [
            tiny_model(x[i : i + 1], times[i : i + 1], cap[i : i + 1], mask[i : i + 1], motion[i : i + 1], patch)
            for i in range(2)
        ]
        c = tiny_model.embed(x, times, cap, mask, motion, patch).c
    assert_same(both, torch.cat(alone))
    assert c.rows.shape[0] == 4 and c.index.shape == (2, 64)  # (clip 0: 1.0, 0.4; clip 1: 0.7, 0.4), not 128 rows


def test_per_cell_times_of_another_grid_are_refused(tiny_model):
    x = torch.randn(1, 16, 4, 8, 8)
    cap, mask = caption(batch=1)
    with pytest.raises(ValueError, match=r"per-cell times \(1, 4, 4, 8\) don't match"):
        tiny_model(x, torch.zeros(1, 4, 4, 8), cap, mask, torch.full((1,), 6.0), PatchSize(1, 2))


def test_velocity_shape_for_a_single_image_with_temporal_patch(tiny_model):
    x = torch.randn(1, 16, 1, 8, 8)
    cap, mask = caption(batch=1)
    with torch.no_grad():
        out = run(tiny_model, x, cap, mask, scale=(2, 2))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tracks_fp32(dtype):
    model32 = randomized()
    model_half = randomized(dtype=dtype)
    x = torch.randn(1, 16, 2, 8, 8)
    cap, mask = caption(batch=1)
    with torch.no_grad():
        ref = run(model32, x, cap, mask)
        half = model_half(
            x.to(dtype),
            torch.full((1,), 0.3, dtype=dtype),
            cap.to(dtype),
            mask,
            torch.full((1,), 6.0, dtype=dtype),
            PatchSize(1, 2),
        )
    assert half.dtype == dtype
    assert (half.float() - ref).abs().max() / ref.abs().max() < 0.05


def test_bad_inputs_are_named(tiny_model):
    cap, mask = caption(batch=1)
    with pytest.raises(ValueError, match="patch size 2x8 is not in this model"):
        run(tiny_model, torch.randn(1, 16, 2, 8, 8), cap, mask, scale=(2, 8))
    with pytest.raises(ValueError, match="channels"):
        run(tiny_model, torch.randn(1, 4, 2, 8, 8), cap, mask)
    with pytest.raises(ValueError, match="even latent frame count"):
        run(tiny_model, torch.randn(1, 16, 3, 8, 8), cap, mask, scale=(2, 2))
    with pytest.raises(ValueError, match="RoPE table"):
        run(tiny_model, torch.randn(1, 16, 1, 8, 260), cap, mask)


@pytest.mark.parametrize("queries, keys", [(8, 6), (8, 8), (32, 32)])
def test_attention_agrees_with_the_flash_kernel_on_either_side_of_the_small_grid_cut(queries, keys):
    """Grids up to layers.SMALL_ATTENTION_GRID take SDPA's math kernel on the CPU, larger ones the default
    (flash) kernel: both must give the same answer, with padded keys and a query that can see no key."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, queries, 4, 32, generator=g)
    k, v = torch.randn(3, keys, 2, 32, generator=g), torch.randn(3, keys, 2, 32, generator=g)
    key_mask = torch.ones(3, keys, dtype=torch.bool)
    key_mask[1, keys // 2 :] = False
    key_mask[2] = False
    heads_first = lambda t: t.repeat_interleave(4 // t.shape[2], dim=2).transpose(1, 2)  # noqa: E731
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        expected = F.scaled_dot_product_attention(
            heads_first(q), heads_first(k), heads_first(v), attn_mask=key_mask[:, None, None, :]
        )
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = attention(q, k, v, key_mask)
    torch.testing.assert_close(out, expected.transpose(1, 2), rtol=1e-5, atol=1e-5)
    assert out[2].abs().max() == 0
    flash_ran = any("flash_attention" in event.key for event in prof.key_averages())
    assert flash_ran == (queries * keys > SMALL_ATTENTION_GRID)


class CastingLinear(torch.nn.Linear):
    """A stand-in for comfy.ops' Linear: weights stored in bf16, cast to the input's dtype on every call."""

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def test_layers_are_built_from_the_operations_given(tiny_model):
    """Every weighted layer comes from ``operations`` (as ComfyUI hands in comfy.ops), with the same keys, and a model
    whose linear weights are stored in bf16 and cast per call runs as the fp32 one does, to bf16 rounding."""
    operations = type(
        "Operations", (), dict(Linear=CastingLinear, LayerNorm=torch.nn.LayerNorm, RMSNorm=torch.nn.RMSNorm)
    )
    model = TINY.build(operations=operations).eval()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is CastingLinear for m in linears)
    model.load_state_dict(tiny_model.state_dict(), strict=True)
    for m in linears:
        m.to(torch.bfloat16)
    x, (cap, mask) = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(3)), caption(batch=1)
    with torch.no_grad():
        got, expected = run(model, x, cap, mask, scale=(2, 2)), run(tiny_model, x, cap, mask, scale=(2, 2))
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() <= 0.05 * expected.abs().max()


def test_rope_time_in_frames_centres_two_frame_tokens_and_leaves_one_frame_tokens(tiny_model):
    """Released: patch-grid positions at every scale. In frames: a 2-frame token sits at the centre of its latent
    frames (0.5, 2.5 for four), a 1-frame token where it was; height and width stay in patch-grid units."""
    from dataclasses import replace

    assert tiny_model.rope_placement(PatchSize(2, 4)) == ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    in_frames = randomized(replace(TINY, rope_time_in_frames=True))
    assert in_frames.rope_placement(PatchSize(1, 2)) == ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert in_frames.rope_placement(PatchSize(2, 2)) == ((2.0, 1.0, 1.0), (0.5, 0.0, 0.0))
    rope = in_frames.rope
    cos, sin = rope((2, 1, 1), "cpu", *in_frames.rope_placement(PatchSize(2, 2)))
    frames_dim = rope.axes_dims[0] // 2
    expected = rope.axis_angles(0, 6, "cpu", 0.5, 0.0)[[1, 5]].cos().float()  # positions 0.5 and 2.5
    assert torch.equal(cos[:, :frames_dim], expected)
    assert torch.equal(rope((2, 1, 1), "cpu")[0][:, :frames_dim], rope.axis_angles(0, 2, "cpu").cos().float())

    x = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cap, mask = caption(batch=1)
    plain = randomized()
    assert torch.equal(run(in_frames, x, cap, mask, scale=(1, 2)), run(plain, x, cap, mask, scale=(1, 2)))
    assert not torch.allclose(run(in_frames, x, cap, mask, scale=(2, 2)), run(plain, x, cap, mask, scale=(2, 2)))


def test_rope_time_in_frames_is_stored_with_the_config():
    from dataclasses import replace

    from lumina_core.models.nextdit import NextDiTConfig

    config = replace(TINY, rope_time_in_frames=True)
    assert NextDiTConfig.from_json(config.to_json()) == config
    older = {k: v for k, v in json.loads(TINY.to_json()).items() if k != "rope_time_in_frames"}
    assert NextDiTConfig.from_json(json.dumps(older)).rope_time_in_frames is False  # files written before it


def test_skip_layers_leave_out_those_blocks_and_name_an_index_out_of_range(tiny_model):
    x, (cap, mask) = torch.randn(2, 16, 2, 8, 8), caption()
    b = x.shape[0]
    args = (x, torch.full((b,), 0.3), cap, mask, torch.full((b,), 6.0), PatchSize(1, 2))
    inputs = tiny_model.embed(*args)
    h = inputs.h
    for layer in tiny_model.layers[:-1]:
        h = layer(h, inputs.rope, inputs.y, inputs.y_mask, inputs.c)
    last = len(tiny_model.layers) - 1
    for skip in ((-1,), (last,)):
        assert torch.equal(tiny_model(*args, skip_layers=skip), tiny_model.final(inputs, h))
    assert not torch.equal(tiny_model(*args, skip_layers=(0,)), tiny_model(*args))
    with pytest.raises(ValueError, match=f"skip layer {last + 1}: this model has {last + 1} blocks"):
        tiny_model(*args, skip_layers=(last + 1,))
