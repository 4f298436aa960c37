"""Long videos in fused windows of latent frames (lumina_core/sampling/windows.py) and their command line."""

import argparse

import pytest
import torch
from tiny_models import randomized

from lumina_core.__main__ import window_plan
from lumina_core.conditioning import Conditioning
from lumina_core.models.text import TextCondition
from lumina_core.request import video_size_problems
from lumina_core.sampling import (
    PRESETS,
    StepCache,
    WindowedModel,
    WindowPlan,
    fuse_weights,
    sample,
    tile_spans,
    window_spans,
)


def cond(seed=0):
    features = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(seed))
    return TextCondition(features, torch.ones(1, 3, dtype=torch.long))


def noise(frames, seed=0):
    return torch.randn(1, 16, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def config(**changes):
    """The embedded multi-scale preset (temporal patch 2 at 2x4 and 2x2), shortened; CFG and motion guidance on,
    skip-layer guidance off (the stand-in models have no blocks; its pass through windows is tested below)."""
    return PRESETS["embedded-MultiScale"].with_(**{"steps": 6, "skip_guidance": 0.0, **changes})


@pytest.mark.parametrize("frames", [6, 8, 12, 16, 18])
@pytest.mark.parametrize("length,overlap,align", [(4, 2, 2), (4, 0, 2), (6, 2, 2), (4, 1, 1), (5, 3, 1)])
def test_windows_cover_every_frame_at_full_length_aligned_to_the_temporal_patch(frames, length, overlap, align):
    plan = WindowPlan(length, overlap)
    if length % align or overlap % align or frames % align:
        return
    for step in range(6):
        spans = window_spans(frames, plan, step, align)
        covered = torch.zeros(frames, dtype=torch.bool)
        for start, stop in spans:
            assert stop - start == min(length, frames)
            assert start % align == 0 and 0 <= start < stop <= frames
            covered[start:stop] = True
        assert covered.all()
        assert spans == sorted(set(spans))


def test_the_shift_moves_the_window_borders_from_step_to_step():
    plan = WindowPlan(6, 2)  # stride 4
    for side in (0, 1):  # where windows begin, and where they end
        at = [{span[side] for span in window_spans(24, plan, step, align=2)} - {0, 24} for step in range(2)]
        assert at[0] and at[1] and not at[0] & at[1] - {18, 6}  # no inner one stays (18, 6: moved inside an end)
    assert window_spans(24, plan, 2, align=2) == window_spans(24, plan, 0, align=2)  # offsets cycle over the stride
    fixed = WindowPlan(6, 2, shift=False)
    assert window_spans(24, fixed, 1, align=2) == window_spans(24, fixed, 0, align=2)


def test_one_window_covering_the_clip_is_the_whole_clip():
    assert window_spans(4, WindowPlan(4, 2), step=3, align=2) == [(0, 4)]
    assert window_spans(2, WindowPlan(8, 4), step=1) == [(0, 2)]


def test_fuse_weights():
    for fuse in ("uniform", "pyramid", "gaussian"):
        weights = fuse_weights(6, fuse)
        assert weights.shape == (6,) and (weights > 0).all()
        assert torch.allclose(weights, weights.flip(0))  # symmetric
    assert torch.equal(fuse_weights(5, "uniform"), torch.ones(5))
    assert fuse_weights(5, "pyramid").tolist() == [1, 2, 3, 2, 1]
    gaussian = fuse_weights(8, "gaussian")
    assert gaussian[3] == gaussian.max() and gaussian[0] < 0.5 * gaussian[3]


class FrameLocal(torch.nn.Module):
    """Stand-in for the DiT whose velocity at a frame depends only on that frame (and on t and the motion score):
    windows must fuse it back to exactly the whole clip's velocity."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.windows = []

    def forward(self, x, t, cap_feats, cap_mask, motion_score, patch):
        self.windows.append(x.shape[2])
        return self.scale * x + t[:, None, None, None, None] + motion_score[:, None, None, None, None]


@pytest.mark.parametrize("fuse", ["uniform", "pyramid", "gaussian"])
def test_a_frame_local_model_is_fused_exactly(fuse):
    model = FrameLocal()
    windowed = WindowedModel(model, WindowPlan(4, 2, fuse), times=[0.0, 0.5, 1.0], align=2)
    x = torch.randn(3, 16, 12, 4, 4)
    args = (torch.full((3,), 0.25), None, None, torch.tensor([1.0, 2.0, -1.0]), (2, 2))
    fused = windowed(x, *args)
    assert torch.allclose(fused, model(x, *args), atol=1e-6)
    assert model.windows[:-1] == [4] * 5  # 5 windows of 4 frames, then the reference call on all 12


@pytest.mark.parametrize("fuse", ["uniform", "pyramid", "gaussian"])
def test_a_cell_local_model_is_fused_exactly_over_tiles_and_windows(fuse):
    model = FrameLocal()
    plan = WindowPlan(4, 2, fuse, tile=(8, 8), tile_overlap=4)
    windowed = WindowedModel(model, plan, times=[0.0, 0.5, 1.0], align=2, spatial_align=4)
    x = torch.randn(2, 16, 8, 16, 12)
    args = (torch.full((2,), 0.25), None, None, torch.tensor([1.0, 2.0]), (2, 4))
    fused = windowed(x, *args)
    assert torch.allclose(fused, model(x, *args), atol=1e-6)
    assert len(model.windows) - 1 == 3 * 3 * 2  # 3 frame windows x 3 tiles down x 2 across


def test_tiles_cover_the_frame_in_whole_patches_and_shift_each_step():
    plan = WindowPlan(4, 2, tile=(8, 8), tile_overlap=4)
    for step in range(3):
        for size in (8, 12, 16, 24):
            tiles = tile_spans(size, plan, 0, step, align=4)
            covered = torch.zeros(size, dtype=torch.bool)
            for start, stop in tiles:
                assert stop - start == min(8, size) and start % 4 == 0
                covered[start:stop] = True
            assert covered.all()
    apart = WindowPlan(4, 2, tile=(8, 8))  # stride 8: two offsets of one spatial patch (4)
    assert tile_spans(16, apart, 1, 0, 4) == [(0, 8), (8, 16)]
    assert tile_spans(16, apart, 1, 1, 4) == [(0, 8), (4, 12), (8, 16)]  # the border moved from 8 to 4 and 12
    assert tile_spans(16, WindowPlan(4, 2), 0) == [(0, 16)]  # no tiles: whole frames


def test_tile_plans_are_refused_naming_the_values(tiny_model):
    with pytest.raises(ValueError, match="tile overlap 8 latent pixels must be between 0 and 7"):
        WindowPlan(4, 2, tile=(8, 8), tile_overlap=8)
    with pytest.raises(ValueError, match="tile 6x6 and tile overlap 2 latent pixels must be multiples of the spatial"):
        sample(
            tiny_model,
            torch.zeros(1, 16, 2, 12, 12),
            cond(),
            None,
            config(),
            windows=WindowPlan(4, 2, tile=(6, 6), tile_overlap=2),
        )


def test_a_tile_covering_the_frame_is_the_plain_path(tiny_model):
    plain = sample(tiny_model, noise(4), cond(), cond(1), config())
    covering = sample(tiny_model, noise(4), cond(), cond(1), config(), windows=WindowPlan(4, 2, tile=(8, 8)))
    assert torch.equal(plain, covering)


def test_each_step_places_the_windows_by_its_time():
    model = FrameLocal()
    times = [0.0, 0.3, 0.6, 1.0]
    windowed = WindowedModel(model, WindowPlan(6, 2), times, align=2)
    x = torch.zeros(1, 16, 12, 4, 4)
    for t, step in ((0.0, 0), (0.15, 0), (0.3, 1), (0.45, 1), (0.6, 2), (0.99, 2)):
        assert windowed.step_at(torch.tensor([t])) == step
    calls = windowed.calls
    windowed(x, torch.tensor([0.3]), None, None, torch.tensor([1.0]), (2, 2))
    assert windowed.calls - calls == len(window_spans(12, WindowPlan(6, 2), 1, align=2))


def test_the_plain_path_is_bit_identical(tiny_model):
    for frames in (2, 4):
        plain = sample(tiny_model, noise(frames), cond(), cond(1), config())
        covering = sample(tiny_model, noise(frames), cond(), cond(1), config(), windows=WindowPlan(4, 2))
        assert torch.equal(plain, covering)


def test_windows_sample_a_clip_longer_than_a_window(tiny_model):
    calls = []
    original = tiny_model.forward

    def counting(x, *args):
        calls.append(x.shape[2])
        return original(x, *args)

    tiny_model.forward = counting
    out = sample(tiny_model, noise(8), cond(), cond(1), config(), windows=WindowPlan(4, 2, "gaussian"))
    assert out.shape == (1, 16, 8, 8, 8) and torch.isfinite(out).all()
    assert set(calls) == {4} and len(calls) == 3 * (config().steps - 1)  # 3 windows a step


def test_skip_layer_guidance_runs_its_pass_in_every_window(tiny_model):
    skipped = []
    original = tiny_model.forward

    def recording(x, *args, **options):
        skipped.append((x.shape[2], tuple(options.get("skip_layers", ()))))
        return original(x, *args, **options)

    tiny_model.forward = recording
    guided = config(skip_guidance=1.0, skip_layers=(-1,))
    out = sample(tiny_model, noise(8), cond(), cond(1), guided, windows=WindowPlan(4, 2, "gaussian"))
    assert torch.isfinite(out).all()
    assert skipped == [(4, ()), (4, ()), (4, ()), (4, (-1,)), (4, (-1,)), (4, (-1,))] * (guided.steps - 1)


def test_windows_keep_the_known_frames(tiny_model):
    known_latent = torch.randn(1, 16, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    keep = torch.zeros(1, 1, 8, 8, 8)
    keep[:, :, :2] = 1  # the first two latent frames are given (image-to-video's shape of task)
    known = Conditioning(known_latent, keep)
    out = sample(tiny_model, noise(8), cond(), cond(1), config(), known=known, windows=WindowPlan(4, 2))
    assert torch.equal(out[:, :, :2], known_latent[:, :, :2])
    assert not torch.equal(out[:, :, 2:], known_latent[:, :, 2:])


def test_refused_plans_name_the_values():
    with pytest.raises(ValueError, match="overlap 4 latent frames must be between 0 and 3"):
        WindowPlan(4, 4)
    with pytest.raises(ValueError, match="window length 0"):
        WindowPlan(0, 0)
    with pytest.raises(ValueError, match="fuse 'cosine' is not one of uniform, pyramid, gaussian"):
        WindowPlan(4, 2, "cosine")
    with pytest.raises(ValueError, match="window 3 and overlap 1 latent frames must be multiples of the temporal"):
        window_spans(8, WindowPlan(3, 1), align=2)
    model = randomized()
    with pytest.raises(ValueError, match="multiples of the temporal patch 2"):
        sample(model, noise(8), cond(), None, config(), windows=WindowPlan(3, 1))
    with pytest.raises(ValueError, match="step caching can't be combined with windows"):
        sample(model, noise(8), cond(), None, config(), cache=StepCache(0.1), windows=WindowPlan(4, 2))


def test_the_frame_limit_applies_to_each_window():
    limits = dict(width=(64, 64), height=(64, 64), frames=(8, 32))
    assert any("frames 64 is outside" in p for p in video_size_problems(64, 64, 64, limits=limits))
    assert video_size_problems(64, 64, 64, limits=limits, window=16) == []
    assert any("window frames 40 is outside" in p for p in video_size_problems(64, 64, 64, limits=limits, window=40))


class Models:
    """What ``window_plan`` reads of the loaded models: the embedded default's size limits (its DiT is not read)."""

    dit = None
    size_limits = dict(width=(64, 64), height=(64, 64), frames=(8, 32))


def plan_for(frames, window=None, overlap=None, fuse="pyramid"):
    return window_plan(argparse.Namespace(window=window, overlap=overlap, fuse=fuse), Models(), frames, trained=16)


def test_the_command_line_plan():
    assert plan_for(32) is None  # within the model's frames: one pass
    assert plan_for(64) == WindowPlan(4, 2, "pyramid")  # beyond: the trained 16 frames, overlapping by half
    assert plan_for(64, window=32, overlap=16, fuse="uniform") == WindowPlan(8, 4, "uniform")
    assert plan_for(24, window=16) == WindowPlan(4, 2)  # asked for within the limit too
    with pytest.raises(ValueError, match="--window 40 must be a multiple of 8 between 8 and 32"):
        plan_for(64, window=40)
    with pytest.raises(ValueError, match="--window 12 must be a multiple of 8"):
        plan_for(64, window=12)
    with pytest.raises(ValueError, match="--overlap 16 must be a multiple of 8 from 0 to 8"):
        plan_for(64, window=16, overlap=16)
