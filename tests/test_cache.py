"""Step caching (lumina_core/sampling/cache.py) and the split of the DiT's forward it relies on."""

import torch
from tiny_models import randomized

from lumina_core.models.nextdit import DiTInputs, PatchSize, masked_mean
from lumina_core.models.text import TextCondition
from lumina_core.sampling import PRESETS, StepCache, sample

LATENT = (1, 16, 2, 8, 8)


def cond(batch=1, length=3, dim=32, seed=0):
    features = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(seed))
    return TextCondition(features, torch.ones(batch, length, dtype=torch.long))


def noise(seed=0):
    return torch.randn(LATENT, generator=torch.Generator().manual_seed(seed))


def config(**changes):
    """The embedded multi-scale preset, shortened; without motion or skip-layer guidance every step makes one call
    of one batch."""
    return PRESETS["embedded-MultiScale"].with_(**{"steps": 20, "motion_cfg": 0.0, "skip_guidance": 0.0, **changes})


def unsplit_forward(model, x, t, cap_feats, cap_mask, motion_score, patch):
    """The DiT's forward as it was written before embed/run_blocks/final split it."""
    patch = PatchSize(*patch)
    frames = x.shape[2]
    tokens, grid = model.patchify(x, patch)
    rope = model.rope(grid, x.device)
    h = model.all_x_embedder[patch.checkpoint_key](tokens)
    c = model.t_embedder(t * model.t_scale)
    motion = motion_score * model.motion_scale
    no_motion = motion < 0
    motion_emb = model.motion_embedder(motion.masked_fill(no_motion, 0))
    c = c + model.cap_embedder(masked_mean(cap_feats, cap_mask)) + motion_emb.masked_fill(no_motion[:, None], 0)
    for layer in model.layers:
        h = layer(h, rope, cap_feats, cap_mask.bool(), c)
    out = model.all_final_layer[patch.checkpoint_key](h, c)
    return model.unpatchify(out, grid, patch, frames)


def counted(model):
    """Record the patch size of every call that runs the blocks."""
    model.full_calls = []
    run_blocks = model.run_blocks

    def counting(inputs):
        model.full_calls.append(inputs.patch)
        return run_blocks(inputs)

    model.run_blocks = counting
    return model


def test_split_forward_is_bit_identical_to_the_unsplit_one(tiny_model):
    c = cond(batch=2)
    args = (torch.tensor([0.3, 0.7]), c.features, c.mask, torch.tensor([6.0, -1.0]))
    for patch in tiny_model.patch_sizes:
        x = torch.randn(2, 16, 2, 8, 8, generator=torch.Generator().manual_seed(1))
        assert torch.equal(tiny_model(x, *args, patch), unsplit_forward(tiny_model, x, *args, patch))


def test_threshold_zero_is_bit_identical_to_no_cache(tiny_model):
    plain = sample(tiny_model, noise(), cond(), cond(seed=1), config())
    for cache in (StepCache(0.0), StepCache(-1.0)):
        assert torch.equal(sample(tiny_model, noise(), cond(), cond(seed=1), config(), cache=cache), plain)
    wrapped = StepCache(0.0).wrap(tiny_model, config().times())  # the wrapper itself runs every call in full
    assert torch.equal(sample(wrapped, noise(), cond(), cond(seed=1), config()), plain)
    assert wrapped.skipped == 0 and wrapped.full == config().steps - 1


def forced_full(schedule, final_steps):
    """The steps that must run in full: the first at each patch size and the last ``final_steps``."""
    return [
        step
        for step, patch in enumerate(schedule)
        if step == 0 or schedule[step - 1] != patch or step >= len(schedule) - final_steps
    ]


def test_huge_threshold_runs_only_the_forced_full_steps():
    model = counted(randomized())
    cfg = config()
    schedule = cfg.patch_schedule()
    for final_steps in (1, 3):
        model.full_calls.clear()
        sample(model, noise(), cond(), cond(seed=1), cfg, cache=StepCache(1e9, final_steps=final_steps))
        forced = forced_full(schedule, final_steps)
        assert model.full_calls == [schedule[step] for step in forced]
    assert len(forced_full(schedule, 1)) == 4  # one per scale, and the last step (the second at 1x2)


def test_no_cached_step_crosses_a_patch_size_switch():
    model = counted(randomized())
    cfg = config()
    wrapped = StepCache(1e9).wrap(model, cfg.times())
    skipped_at = []
    sample(wrapped, noise(), cond(), cond(seed=1), cfg, callback=lambda *_: skipped_at.append(wrapped.skipped))
    schedule = cfg.patch_schedule()
    skipped = [b - a for a, b in zip([0] + skipped_at, skipped_at)]
    for step, patch in enumerate(schedule):
        if step == 0 or schedule[step - 1] != patch:
            assert not skipped[step], f"step {step}, the first at {patch}, reused a residual"
    assert [step for step, n in enumerate(skipped) if not n] == forced_full(schedule, 1)


def test_a_wrapped_model_forgets_its_cache_between_runs():
    cfg = config()
    wrapped = StepCache(1e9).wrap(counted(randomized()), cfg.times())
    first = sample(wrapped, noise(), cond(), cond(seed=1), cfg)
    counts = (wrapped.full, wrapped.skipped)
    assert torch.equal(sample(wrapped, noise(), cond(), cond(seed=1), cfg), first)
    assert (wrapped.full, wrapped.skipped) == counts


class ConstantVelocityModel(torch.nn.Module):
    """The DiT's split interface with a constant velocity: the embedded tokens don't depend on the input, the blocks
    add a fixed residual and the final layer reads the tokens back."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.in_channels = 16
        self.patch_sizes = [PatchSize(1, 2), PatchSize(2, 2), PatchSize(2, 4)]
        self.rope = type("Rope", (), {"axes_lens": (64, 128, 128)})()
        self.blocks_run = 0

    def embed(self, x, t, cap_feats, cap_mask, motion_score, patch):
        patch = PatchSize(*patch)
        tokens, grid = x.shape[0], (x.shape[2] // patch.temporal, 8 // patch.spatial, 8 // patch.spatial)
        h = torch.full((tokens, grid[0] * grid[1] * grid[2], 4), 0.25)
        return DiTInputs(h, torch.zeros(tokens, 4), None, cap_feats, cap_mask.bool(), grid, patch, x.shape[2])

    def run_blocks(self, inputs):
        self.blocks_run += 1
        return inputs.h * 3 + 0.5

    def final(self, inputs, h):
        return torch.full((h.shape[0], 16, inputs.frames, 8, 8), float(h.mean()))

    def forward(self, x, t, cap_feats, cap_mask, motion_score, patch):
        inputs = self.embed(x, t, cap_feats, cap_mask, motion_score, patch)
        return self.final(inputs, self.run_blocks(inputs))


def test_a_reused_residual_gives_the_full_result_on_a_constant_velocity_model():
    cache = StepCache(0.5, signal=lambda model, inputs: inputs.h)
    for solver in ("euler", "heun"):
        cfg = config(solver=solver)
        model = ConstantVelocityModel()
        full = sample(model, noise(), cond(), cond(seed=1), cfg)
        calls = model.blocks_run
        model.blocks_run = 0
        assert torch.equal(sample(model, noise(), cond(), cond(seed=1), cfg, cache=cache), full)
        assert 0 < model.blocks_run < calls


def test_generate_takes_a_cache_threshold(monkeypatch, tmp_path):
    """`generate --cache T` hands sample() a StepCache of threshold T (0 by default: off)."""
    import lumina_core.sampling.solvers as solvers
    from lumina_core.__main__ import build_parser, main

    assert build_parser().parse_args(["generate", "--prompt", "a"]).cache == 0.0
    seen, sample = [], solvers.sample

    def recording(*args, **kwargs):
        seen.append(kwargs.get("cache", args[6] if len(args) > 6 else None))
        return sample(*args, **kwargs)

    monkeypatch.setattr("lumina_core.pipeline.sample", recording)
    out = tmp_path / "cached.mp4"
    assert (
        main(
            ["generate", "--prompt", "a red circle", "--cache", "0.1", "--steps", "4", "--no-audio", "--out", str(out)]
        )
        == 0
    )
    assert [c.threshold for c in seen] == [0.1] and out.is_file()


def test_skip_layer_guidance_passes_bypass_the_cache(tiny_model):
    cfg = config(skip_guidance=(0.0, (0.5, 1.0)))
    plain = sample(tiny_model, noise(), cond(), cond(seed=1), cfg)
    assert not torch.equal(plain, sample(tiny_model, noise(), cond(), cond(seed=1), config()))
    wrapped = StepCache(0.0).wrap(tiny_model, cfg.times())
    assert torch.equal(sample(wrapped, noise(), cond(), cond(seed=1), cfg), plain)
    assert wrapped.skipped == 0 and wrapped.full == cfg.steps - 1  # the weakened passes neither count nor store
    reusing = StepCache(1e9).wrap(tiny_model, cfg.times())
    sample(reusing, noise(), cond(), cond(seed=1), cfg)
    assert reusing.full + reusing.skipped == cfg.steps - 1
