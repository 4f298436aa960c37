from collections import Counter

import pytest
import torch
from tiny_models import TINY

from lumina_core.models.text import TextCondition
from lumina_core.sampling import (
    PRESETS,
    guided_velocity,
    handoff_times,
    integrate,
    make_noise,
    parse_time_aware,
    renorm_per_sample,
    sample,
    time_grid,
    value_at,
)


def reference(**changes):
    """The reference's f24F96R960 settings with some values changed."""
    return PRESETS["f24F96R960"].with_(**changes)


class CountingModel(torch.nn.Module):
    """Stands in for the DiT: records each call's batch size and scale, returns a fixed velocity per motion value."""

    def __init__(self, velocity=1.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.in_channels = 16
        self.patch_sizes = [(1, 2), (2, 2), (2, 4)]
        self.rope = type("Rope", (), {"axes_lens": (64, 128, 128)})()
        self.calls = []
        self.velocity = velocity

    def forward(self, x, t, cap, mask, motion, patch):
        self.calls.append((x.shape[0], str(patch), motion.tolist()))
        return torch.full_like(x, self.velocity) * (1 + motion.view(-1, 1, 1, 1, 1) * 0)


def cond(batch=1, length=3):
    return TextCondition(torch.zeros(batch, length, 8), torch.ones(batch, length, dtype=torch.long))


def test_time_grid_is_the_shifted_linspace():
    grid = time_grid(70, 24.0)
    assert grid[0] == 0 and grid[-1] == 1 and len(grid) == 70
    t = torch.linspace(0, 1, 70)
    assert torch.allclose(grid, t / (t + 24 - 24 * t))
    assert grid[-2] == pytest.approx(0.739, abs=1e-3)  # the last model call; then one big step to t=1


@pytest.mark.parametrize(
    "preset, counts",
    [
        ("f24F96R960-MultiScale", {"2x4": 30, "2x2": 24, "1x2": 15}),
        ("f16F64R512-MultiScale", {"2x4": 28, "2x2": 26, "1x2": 15}),
        ("f24F96R960", {"1x2": 69}),
        ("f16F64R512", {"1x2": 69}),
    ],
)
def test_multiscale_step_counts(preset, counts):
    schedule = PRESETS[preset].patch_schedule()
    assert dict(Counter(map(str, schedule))) == counts
    model = CountingModel()
    sample(model, torch.zeros(1, 16, 4, 8, 8), cond(), cond(), PRESETS[preset])
    assert [c[1] for c in model.calls] == [str(p) for p in schedule]


def test_cfg_truncation_skips_the_unconditional_pass():
    model = CountingModel()
    sample(model, torch.zeros(1, 16, 4, 8, 8), cond(), cond(), PRESETS["f24F96R960"])
    batches = Counter(call[0] for call in model.calls)
    assert batches == {2: 60, 1: 9}  # cfg 20 while t < 0.2, then the negative pass is not run at all


def test_negative_motion_schedule_reaches_the_negative_pass():
    model = CountingModel()
    sample(model, torch.zeros(1, 16, 4, 8, 8), cond(), cond(), PRESETS["f24F96R960"])
    guided = [call[2] for call in model.calls if call[0] == 2]
    assert all(m[0] == 6.0 for m in guided)
    assert Counter(m[1] for m in guided) == {2.0: 39, 6.0: 21}


def test_euler_heun_midpoint_integrate_a_constant_velocity_exactly():
    for solver in ("euler", "heun", "midpoint"):
        out = sample(
            CountingModel(velocity=0.5), torch.ones(1, 16, 2, 8, 8), cond(), None, reference(steps=9, solver=solver)
        )
        assert torch.allclose(out, torch.full_like(out, 1.5))


def test_integrate_runs_a_linear_ode_to_its_solution():
    # dx/dt = x has x(1) = e * x(0); heun is second order, so it beats euler at equal steps
    times = torch.linspace(0, 1, 21).tolist()
    errors = {
        s: abs(integrate(lambda x, t: (x, None), torch.ones(1), times, s).item() - torch.e) for s in ("euler", "heun")
    }
    assert errors["heun"] < errors["euler"] / 10


def test_cfg_formula_and_per_sample_renorm():
    class Model(CountingModel):
        def forward(self, x, t, cap, mask, motion, patch):
            # cond pass (motion 6): 1; uncond pass (motion 2): 0.5 for item 0, 0.99 for item 1
            uncond = torch.tensor([0.5, 0.99]).view(2, 1, 1, 1, 1)
            return torch.where(
                (motion == 6).view(-1, 1, 1, 1, 1),
                torch.ones_like(x),
                uncond.repeat(x.shape[0] // 2, 1, 1, 1, 1).expand_as(x),
            )

    config = reference(cfg=3.0, renorm=2.0, motion=6.0, neg_motion=2.0)
    v, scale = guided_velocity(Model(), torch.zeros(2, 16, 2, 8, 8), 0.5, cond(2), cond(2), config)
    assert scale == (1, 2)
    # item 0: 1 + 3 * 0.5 = 2.5 -> renormed to 2 * |cond| = 2; item 1: 1 + 3 * 0.01 = 1.03, untouched
    assert torch.allclose(v[0], torch.full_like(v[0], 2.0))
    assert torch.allclose(v[1], torch.full_like(v[1], 1.03))


class MotionVelocityModel(CountingModel):
    """Velocity 1 + motion score / 10 per item (the motion-dropout case, a negative score, gives 0.9), plus 0.5 for the
    caption pass (batch half 0 of the first pass and of the third); the negative caption gets none."""

    def forward(self, x, t, cap, mask, motion, patch):
        self.calls.append((x.shape[0], str(patch), motion.tolist()))
        per_item = torch.where(motion < 0, torch.full_like(motion, 0.9), 1 + motion / 10) + cap[:, 0, 0]
        return per_item.view(-1, 1, 1, 1, 1).expand_as(x).clone()


def motion_cond(batch, caption):
    return TextCondition(torch.full((batch, 3, 8), caption), torch.ones(batch, 3, dtype=torch.long))


def test_motion_guidance_adds_the_motion_scores_own_effect_in_a_third_pass():
    model = MotionVelocityModel()
    config = reference(cfg=2.0, renorm=-1.0, motion=6.0, neg_motion=2.0, motion_cfg=3.0)
    v, _ = guided_velocity(model, torch.zeros(2, 16, 2, 8, 8), 0.5, motion_cond(2, 0.5), motion_cond(2, 0.0), config)
    assert model.calls == [(6, "1x2", [6.0, 6.0, 2.0, 2.0, -1.0, -1.0])]
    # cond 1.6 + 0.5 = 2.1; uncond 1.2; no-motion cond 0.9 + 0.5 = 1.4: 2.1 + 2 * (2.1 - 1.2) + 3 * (2.1 - 1.4) = 6.0
    assert torch.allclose(v, torch.full_like(v, 6.0))


def test_motion_guidance_runs_without_cfg_and_is_skipped_when_off_or_without_a_motion_score():
    without_cfg = MotionVelocityModel()
    v, _ = guided_velocity(
        without_cfg, torch.zeros(1, 16, 2, 8, 8), 0.5, motion_cond(1, 0.0), None, reference(motion=6.0, motion_cfg=2.0)
    )
    assert without_cfg.calls == [(2, "1x2", [6.0, -1.0])]
    assert torch.allclose(v, torch.full_like(v, 1.6 + 2 * 0.7))
    for config in (reference(cfg=0.0, motion=6.0, motion_cfg=0.0), reference(cfg=0.0, motion=-1.0, motion_cfg=2.0)):
        model = MotionVelocityModel()
        guided_velocity(model, torch.zeros(1, 16, 2, 8, 8), 0.5, motion_cond(1, 0.0), None, config)
        assert [call[0] for call in model.calls] == [1]


def test_motion_guidance_follows_its_time_aware_schedule():
    model = MotionVelocityModel()
    sample(
        model,
        torch.zeros(1, 16, 2, 8, 8),
        motion_cond(1, 0.0),
        None,
        reference(steps=11, time_shift=1.0, cfg=0.0, motion_cfg=(4.0, (0.5, 0.0))),
    )
    assert [call[0] for call in model.calls] == [2] * 5 + [1] * 5


def test_renorm_math():
    cond_v = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    guided = torch.tensor([[30.0, 40.0], [1.5, 0.0]])
    out = renorm_per_sample(guided, cond_v, 2.0)
    assert torch.allclose(out[0], torch.tensor([6.0, 8.0]))  # norm 50 capped at 2 * 5
    assert torch.equal(out[1], guided[1])  # norm 1.5 under 2 * 1


def test_time_aware_values():
    schedule = ("2x4", (0.03, "2x2"), (0.125, "1x2"))
    assert [value_at(schedule, t) for t in (0.0, 0.0299, 0.03, 0.1, 0.125, 0.9)] == [
        "2x4",
        "2x4",
        "2x2",
        "2x2",
        "1x2",
        "1x2",
    ]
    assert value_at(6.0, 0.5) == 6.0
    assert parse_time_aware('("2x4", (0.03, "2x2"), (0.125, "1x2"))', "patch", str) == schedule
    assert parse_time_aware("(20, (0.2, 0))", "cfg", float) == (20, (0.2, 0))
    assert parse_time_aware("2x2", "patch", str) == "2x2"
    for text, kind in (
        ("(20, 0.2)", float),
        ("('2x4', (0.5, '2y2'))", str),
        ("(1, (0.5, 2), (0.1, 3))", float),
        ("lots", float),
    ):
        with pytest.raises(ValueError):
            parse_time_aware(text, "setting", kind)


def test_seeded_noise_is_deterministic_and_batch_independent():
    a = make_noise((3, 16, 2, 4, 4), seed=7)
    b = make_noise((1, 16, 2, 4, 4), seed=7)
    assert torch.equal(a[:1], b)
    assert torch.equal(a, make_noise((3, 16, 2, 4, 4), seed=7))
    assert not torch.equal(a[0], a[1])


def test_sampling_is_deterministic_and_batched(tiny_model):
    tiny_model.cap_feat_dim = TINY.cap_feat_dim
    caption = TextCondition(torch.randn(1, 5, TINY.cap_feat_dim), torch.ones(1, 5, dtype=torch.long))
    empty = TextCondition(torch.randn(1, 2, TINY.cap_feat_dim), torch.ones(1, 2, dtype=torch.long))
    config = PRESETS["f24F96R960-MultiScale"].with_(steps=6)
    noise = make_noise((2, 16, 2, 8, 8), seed=3)
    first = sample(tiny_model, noise, caption, empty, config)
    again = sample(tiny_model, noise, caption, empty, config)
    single = sample(tiny_model, noise[1:], caption, empty, config)
    assert torch.equal(first, again)
    assert (first[1:] - single).abs().max() <= 1e-4 * single.abs().max()


def test_callback_sees_every_step_and_can_cancel():
    seen = []

    def callback(step, total, scale, x):
        seen.append((step, total, scale))
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample(CountingModel(), torch.zeros(1, 16, 4, 8, 8), cond(), cond(), PRESETS["f24F96R960-MultiScale"], callback)
    assert seen == [(1, 69, (2, 4)), (2, 69, (2, 4)), (3, 69, (2, 4))]


def test_a_hand_off_stops_sampling_at_its_time():
    """stop < 1 cuts the grid there (a denoising decoder finishes); 1 is the plain run; a grid starting after the
    stop (video-to-video at a low denoise) keeps its start; a stop outside (0, 1] is refused."""
    times = PRESETS["embedded"].times()
    assert handoff_times(times, 1.0) == times
    cut = handoff_times(times, 0.9)
    assert cut[-1] == 0.9 and cut[:-1] == [t for t in times if t < 0.9] and len(cut) < len(times)
    assert handoff_times([0.95, 0.97, 1.0], 0.9) == [0.95]
    with pytest.raises(ValueError, match="stop 0: sampling can end at a time in"):
        handoff_times(times, 0)
    model = CountingModel(velocity=1.0)  # x moves by exactly the time it covers
    config = PRESETS["embedded"].with_(cfg=0.0, motion_cfg=0.0, skip_guidance=0.0)
    x = sample(model, torch.zeros(1, 16, 2, 4, 4), cond(), None, config, stop=0.9)
    assert len(model.calls) == len(cut) - 1
    assert torch.allclose(x, torch.full_like(x, 0.9))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 16, 4, 8, 6), "multiples of 32"),
        ((1, 16, 3, 8, 8), "even latent frame count"),
        ((1, 16, 4, 8, 8 * 40), "exceeds the RoPE tables"),
        ((1, 4, 4, 8, 8), "channels"),
    ],
)
def test_sizes_the_model_cannot_take_are_refused(shape, message):
    with pytest.raises(ValueError, match=message):
        sample(CountingModel(), torch.zeros(shape), cond(), cond(), PRESETS["f24F96R960-MultiScale"])


def test_empty_caption_is_refused():
    with pytest.raises(ValueError, match="no tokens"):
        TextCondition(torch.zeros(1, 3, 8), torch.zeros(1, 3))


class SkipLayerModel(MotionVelocityModel):
    """MotionVelocityModel whose velocity falls by 0.25 per block left out, and which records the blocks left out."""

    depth = 3

    def forward(self, x, t, cap, mask, motion, patch, skip_layers=()):
        self.skipped = getattr(self, "skipped", []) + [tuple(skip_layers)]
        return super().forward(x, t, cap, mask, motion, patch) - 0.25 * len(skip_layers)

    def layer_index(self, index):
        if not -self.depth <= index < self.depth:
            raise ValueError(f"skip layer {index}: this model has {self.depth} blocks")
        return index % self.depth


def test_skip_layer_guidance_moves_away_from_the_model_without_its_blocks_in_a_pass_of_its_own():
    model = SkipLayerModel()
    config = reference(cfg=2.0, renorm=-1.0, motion=6.0, neg_motion=2.0, motion_cfg=3.0, skip_guidance=2.0)
    config = config.with_(skip_layers=(-1, 0))
    v, _ = guided_velocity(model, torch.zeros(2, 16, 2, 8, 8), 0.5, motion_cond(2, 0.5), motion_cond(2, 0.0), config)
    assert model.calls == [(6, "1x2", [6.0, 6.0, 2.0, 2.0, -1.0, -1.0]), (2, "1x2", [6.0, 6.0])]
    assert model.skipped == [(), (-1, 0)]
    # 6.0 as in the motion guidance test, plus 2 * (cond 2.1 - cond without two blocks 1.6) = 7.0
    assert torch.allclose(v, torch.full_like(v, 7.0))


def test_skip_layer_guidance_follows_its_schedule_and_is_off_in_every_reference_preset():
    model = SkipLayerModel()
    config = reference(steps=11, time_shift=1.0, cfg=0.0, skip_guidance=(0.0, (0.5, 1.5)))
    sample(model, torch.zeros(1, 16, 2, 8, 8), motion_cond(1, 0.0), None, config)
    assert [skip for skip in model.skipped if skip] == [(-1,)] * 5  # t = 0.5 ... 0.9, after the five before it
    assert all(PRESETS[name].skip_guidance == 0.0 for name in PRESETS if not name.startswith("embedded"))


def test_skip_layers_the_model_lacks_are_refused_before_any_step():
    model = SkipLayerModel()
    config = reference(steps=5, skip_guidance=1.0, skip_layers=(3,))
    with pytest.raises(ValueError, match="skip layer 3: this model has 3 blocks"):
        sample(model, torch.zeros(1, 16, 2, 8, 8), cond(), cond(), config)
    assert model.calls == []
    sample(model, torch.zeros(1, 16, 2, 8, 8), cond(), cond(), config.with_(skip_guidance=0.0))  # off: not checked


@pytest.mark.parametrize("layers", [(), [-1], (1.0,), (True,), -1])
def test_skip_layers_must_be_a_tuple_of_block_indices(layers):
    with pytest.raises(ValueError, match="skip_layers must be a non-empty tuple of block indices"):
        reference(skip_layers=layers)
