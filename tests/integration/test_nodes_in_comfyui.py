"""The pack's model, prompt, motion and sampler nodes, called directly in a real ComfyUI's modules (no server).

These nodes make and sample ComfyUI's native MODEL and CONDITIONING, which the node tier's stand-ins for ComfyUI
can't build; here they run on ComfyUI's own model classes, samplers and progress bar (``comfy_inprocess``). The
whole chain through a server is in ``test_lumina_workflows.py``.
"""

from __future__ import annotations

import importlib
from collections import Counter

import pytest
import torch

from .inprocess import EngineView, text_condition

EMBEDDED = "embedded (toy world, CPU)"
PROMPT = "a red circle moving right"
FAST_STEPS = 6
REFERENCE_MOTION = dict(motion=6.0, negative_motion_start=2.0, negative_motion_after=6.0, switch_t=0.05)


class Nodes:
    """The pack's nodes by id, and the embedded default loaded through them."""

    def __init__(self, pack):
        extension = importlib.import_module(f"{pack.__name__}.nodes.extension")
        self.classes = {cls.define_schema().node_id: cls for cls in extension.NODES}
        self.model = self.run("LuminaVideoModelLoader", model_name=EMBEDDED)[0]
        self.positive, self.negative = self.run("LuminaVideoTextEncode", model=self.model, positive=PROMPT)
        self.latent = self.run("LuminaVideoEmptyLatent", width=64, height=64, frames=16, batch_size=1)[0]

    def run(self, node_id: str, **inputs) -> tuple:
        return tuple(self.classes[node_id].execute(**inputs).result)

    def widgets(self, node_id: str) -> dict:
        """A node's widget values as it is dropped on the canvas (the schema's defaults)."""
        inputs = self.classes[node_id].define_schema().inputs
        return {i.id: i.default for i in inputs if getattr(i, "default", None) is not None}

    def sample(self, **changes) -> torch.Tensor:
        inputs = dict(self.widgets("LuminaVideoSampler"), seed=1, steps=FAST_STEPS)
        inputs.update(model=self.model, positive=self.positive, negative=self.negative, latent=self.latent)
        inputs.update(changes)
        return self.run("LuminaVideoSampler", **inputs)[0]["samples"]


@pytest.fixture(scope="module")
def nodes(comfy_inprocess):
    torch.set_grad_enabled(False)
    return Nodes(comfy_inprocess)


@pytest.fixture
def progress():
    """Every update of ComfyUI's progress bar: (value, total, preview)."""
    import comfy.model_management
    import comfy.utils

    updates = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append(
        (value, total, preview)
    ))  # fmt: skip
    yield updates
    comfy.utils.set_progress_bar_global_hook(None)
    comfy.model_management.interrupt_current_processing(False)


def native_chain(
    nodes, preset_name: str, seed: int, positive, negative, model=None, shape=(1, 16, 4, 8, 8)
) -> torch.Tensor:
    """Multi-Scale -> Guidance -> SamplerCustomAdvanced's path with the Scheduler's sigmas and euler, on ``model``
    (the loaded embedded default when None) from the engine's noise for a latent of ``shape``."""
    import comfy.sample
    import comfy.samplers
    from lumina_video.lumina_core.sampling import make_noise, preset, scale_and_cutoff

    model = nodes.run("LuminaVideoMultiScale", model=model or nodes.model, preset=preset_name)[0]
    model = nodes.run("LuminaVideoGuidance", model=model, preset=preset_name)[0]
    sigmas = nodes.run("LuminaVideoScheduler", preset=preset_name)[0]
    cfg = scale_and_cutoff(preset(preset_name).cfg)[0] + 1
    noise = make_noise(shape, seed)
    return comfy.sample.sample_custom(
        model, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas, positive, negative,
        torch.zeros_like(noise), disable_pbar=True, seed=seed,
    )  # fmt: skip


# --------------------------------------------------------------------------- the chain


def test_text_to_video_with_sound(nodes, progress):
    positive, negative = nodes.run("LuminaVideoMotionScore", positive=nodes.positive, negative=nodes.negative,
                                   **REFERENCE_MOTION)  # fmt: skip
    samples = nodes.sample(positive=positive, negative=negative)
    assert samples.shape == (1, 16, 4, 8, 8) and torch.isfinite(samples).all()
    # one progress update per model step, each with a preview picture
    assert [(value, total) for value, total, _ in progress] == [(i, FAST_STEPS - 1) for i in range(1, FAST_STEPS)]
    kind, picture, size = progress[-1][2]
    assert kind == "JPEG" and picture.size == (4 * 8 * 8, 8 * 8) and size == 512

    vae = nodes.run("LuminaVideoVAELoader", vae_name=EMBEDDED)[0]
    (images,) = nodes.run("LuminaVideoVAEDecode", vae=vae, latent={"samples": samples})[0]
    assert images.shape == (16, 64, 64, 3)
    v2a = nodes.run("LuminaVideoV2ALoader", v2a_name=EMBEDDED)[0]
    audio = nodes.run("LuminaVideoAudioGenerate", v2a=v2a, images=images, fps=8.0, steps=4, seed=3, cfg=3.5)[0]
    assert audio["waveform"].shape == (1, 1, 16 * audio["sample_rate"] // 8)  # exactly frames / fps seconds


@pytest.mark.parametrize("preset_name", ["embedded-MultiScale", "embedded"])
def test_the_sampler_node_samples_what_the_native_chain_samples(nodes, preset_name):
    """The issue's measure: the same seed and settings through the Sampler node and through SamplerCustomAdvanced with
    Multi-Scale, Guidance and the Scheduler give the same latent (max abs difference under 1e-5 in fp32; it is built
    on those pieces, so it is 0). Against the engine's own sampler (the command line) it is within 3e-5, the
    samplers' arithmetic (docs/native.md)."""
    from lumina_video.lumina_core.sampling import make_noise, preset, sample

    reference = EngineView(nodes.model.model.diffusion_model)
    for prompt, seed in (("a blue square moving up", 3), ("a green triangle moving left", 8)):
        positive, negative = nodes.run("LuminaVideoTextEncode", model=nodes.model, positive=prompt)
        node = nodes.sample(positive=positive, negative=negative, preset=preset_name, seed=seed, steps=0)
        chain = native_chain(nodes, preset_name, seed, positive, negative)
        assert (node - chain).abs().max().item() < 1e-5, f"{preset_name}, {prompt!r}"
        engine = sample(
            reference,
            make_noise(node.shape, seed),
            text_condition(positive),
            text_condition(negative),
            preset(preset_name),
        )
        assert (node - engine).abs().max().item() < 3e-5, f"{preset_name}, {prompt!r}: against the engine"


def test_a_batch_repeats_single_runs(nodes):
    batch = nodes.run("LuminaVideoEmptyLatent", width=64, height=64, frames=16, batch_size=2)[0]
    both = nodes.sample(latent=batch, seed=5, steps=3)
    second = nodes.sample(seed=6, steps=3)
    torch.testing.assert_close(both[1:], second, atol=1e-4, rtol=1e-4)


def test_cancel_stops_within_one_step(nodes, progress):
    import comfy.model_management
    import comfy.utils

    def cancel_at_second_step(value, total, preview, node_id=None):
        progress.append(value)
        if value == 2:
            comfy.model_management.interrupt_current_processing(True)  # the user presses Cancel

    comfy.utils.set_progress_bar_global_hook(cancel_at_second_step)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        nodes.sample(steps=20)
    assert progress == [1, 2], "the step after the cancel must not finish"


def test_a_fresh_sampler_runs_its_whole_preset(nodes, monkeypatch):
    """A Sampler dropped on the canvas runs the default preset: embedded-MultiScale's 29 model calls split
    22 / 4 / 3 over 2x4 / 2x2 / 1x2, and a call of skip-layer guidance's pass on each step the preset runs it."""
    dit = type(nodes.model.model.diffusion_model)
    forward, calls, skipping = dit.reference_forward, [], []

    def recording(self, x, t, cap_feats, cap_mask, motion_score, patch, **options):
        (skipping if options.get("skip_layers") else calls).append(str(patch))
        return forward(self, x, t, cap_feats, cap_mask, motion_score, patch, **options)

    monkeypatch.setattr(dit, "reference_forward", recording)
    nodes.sample(seed=0, steps=0)
    assert Counter(calls) == {"2x4": 22, "2x2": 4, "1x2": 3}
    from lumina_video.lumina_core.sampling import DEFAULT_PRESET, preset, value_at

    config = preset(DEFAULT_PRESET)
    guided = [t for t in config.times()[:-1] if float(value_at(config.skip_guidance, t))]
    assert 0 < len(skipping) == len(guided)


def test_step_caching_skips_block_runs_only_when_asked(nodes, monkeypatch):
    dit = type(nodes.model.model.diffusion_model)
    run_blocks, runs = dit.run_blocks, []

    def counting(self, inputs, skip_layers=()):
        if not skip_layers:  # skip-layer guidance's pass runs in full, never cached
            runs.append(1)
        return run_blocks(self, inputs, skip_layers)

    monkeypatch.setattr(dit, "run_blocks", counting)
    full = nodes.sample(steps=0)
    assert len(runs) == 29
    runs.clear()
    cached = nodes.sample(steps=0, cache=0.1)
    assert 0 < len(runs) < 29
    assert (cached - full).abs().mean() < 0.1 * full.abs().mean()


def test_conditioning_without_motion_scores_gets_the_presets(nodes):
    default = nodes.sample(steps=3)
    widgets = nodes.widgets("LuminaVideoMotionScore")
    positive, negative = nodes.run("LuminaVideoMotionScore", positive=nodes.positive, negative=nodes.negative,
                                   **widgets)  # fmt: skip
    torch.testing.assert_close(default, nodes.sample(steps=3, positive=positive, negative=negative))
    reference = nodes.run("LuminaVideoMotionScore", positive=nodes.positive, negative=nodes.negative,
                          motion_guidance=0.0, **REFERENCE_MOTION)  # fmt: skip
    assert not torch.allclose(default, nodes.sample(steps=3, positive=reference[0], negative=reference[1]))
    strong = nodes.run("LuminaVideoMotionScore", positive=nodes.positive, negative=nodes.negative, motion=12.0,
                       negative_motion_start=0.0, negative_motion_after=12.0, switch_t=1.0)  # fmt: skip
    assert not torch.allclose(default, nodes.sample(steps=3, positive=strong[0], negative=strong[1]))


@pytest.mark.parametrize(
    "schedule,custom",
    [("1x2", ""), ("2x4", ""), ("preset", ""), ("custom", '("2x4", (0.5, "1x2"))'), ("custom", "2x2")],
)
def test_patch_schedules(nodes, schedule, custom):
    assert nodes.sample(steps=3, patch_schedule=schedule, custom_schedule=custom).shape == (1, 16, 4, 8, 8)


@pytest.mark.parametrize("solver", ["midpoint", "heun"])
def test_other_solvers_draw_the_prompt(nodes, solver):
    from lumina_core import embedded
    from lumina_core.pipeline import decode_latent
    from lumina_core.toyworld.metrics import detect_colour

    samples = nodes.sample(solver=solver, steps=12)
    assert detect_colour(decode_latent(embedded.load(with_audio=False).vae, samples)[0]) == "red"


# --------------------------------------------------------------------------- clear errors


def test_sampler_refuses_what_the_model_cant_draw(nodes):
    big = nodes.run("LuminaVideoEmptyLatent", width=128, height=64, frames=16, batch_size=1)[0]
    with pytest.raises(ValueError, match="width 128 is outside what the embedded default was trained for"):
        nodes.sample(latent=big)
    with pytest.raises(ValueError, match="not a video latent"):
        nodes.sample(latent={"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(ValueError, match="steps must be at least 2"):  # 0 is the preset's, 1 no grid at all
        nodes.sample(steps=1)
    custom = '("1x4", (0.5, "3x5"))'
    with pytest.raises(ValueError) as error:  # time shift 1: the grid's even steps reach t = 0.5, both scales run
        nodes.sample(patch_schedule="custom", custom_schedule=custom, time_shift=1.0)
    assert f"custom_schedule {custom!r} uses 1x4, 3x5, which the model" in str(error.value)
    assert str(error.value).endswith("it has 1x2, 2x2, 2x4")
    with pytest.raises(ValueError, match="model is a str, not a Lumina-Video model"):
        nodes.sample(model="not a model")


class FakeGemma:
    """ComfyUI's CLIP interface (lumina2): tokenize(text, disable_weights) and encode_from_tokens(return_dict)."""

    def __init__(self, dim: int):
        self.dim, self.texts = dim, []

    def tokenize(self, text, disable_weights=False):
        assert disable_weights, "prompt weights must not be parsed"
        self.texts.append(text)
        return {"gemma2_2b": [[(i + 2, 1.0) for i in range(len(text.split()) + 1)]]}

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        n = len(tokens["gemma2_2b"][0])
        return {
            "cond": torch.randn(1, n, self.dim),
            "pooled_output": None,
            "attention_mask": torch.ones(1, n, dtype=torch.long),
        }


def test_text_encode_with_clip_adds_the_system_prompt(nodes):
    from lumina_core.models.text import SYSTEM_PROMPT

    clip = FakeGemma(dim=nodes.model.model.diffusion_model.cap_feat_dim)
    positive, _ = nodes.run("LuminaVideoTextEncode", model=nodes.model, positive="(a red:1.5) circle",
                            negative="blurry", clip=clip)  # fmt: skip
    assert clip.texts == [SYSTEM_PROMPT + "(a red:1.5) circle", SYSTEM_PROMPT + "blurry"]
    ((features, options),) = positive
    assert features.shape[-1] == clip.dim and options["attention_mask"].sum() == features.shape[1]


def test_sampler_refuses_conditioning_made_for_another_model(nodes):
    """Gemma features wired into the embedded model's sampler (the text node's own check bypassed)."""
    gemma = [[torch.randn(1, 4, 2304), {"attention_mask": torch.ones(1, 4, dtype=torch.long)}]]
    with pytest.raises(ValueError, match="positive has 2304-wide caption features but the model .* reads 64-wide"):
        nodes.sample(positive=gemma)


def test_text_encode_names_what_it_cant_encode(nodes):
    """An artist's prompt outside the toy vocabulary stops at Text Encode, before any sampling, with the words."""
    with pytest.raises(ValueError, match="doesn't know 'majestic', 'dragon'.*knows only these words: a the moving"):
        nodes.run("LuminaVideoTextEncode", model=nodes.model, positive="a majestic dragon flying", negative="")
    with pytest.raises(ValueError, match="the negative prompt 'ugly'"):
        nodes.run("LuminaVideoTextEncode", model=nodes.model, positive="a red circle", negative="ugly")
    with pytest.raises(ValueError, match="2304-wide caption features but the model .* reads 64-wide ones. Disconnect"):
        nodes.run("LuminaVideoTextEncode", model=nodes.model, positive="a red circle", clip=FakeGemma(dim=2304))


def test_a_dit_without_a_text_encoder_asks_for_gemma(nodes, embedded_weights, tmp_path):
    import folder_paths

    folder_paths.add_model_folder_path("diffusion_models", str(tmp_path), is_default=True)
    (tmp_path / "bare_dit.safetensors").symlink_to(embedded_weights[0] / "dit.safetensors")
    bare = nodes.run("LuminaVideoModelLoader", model_name="bare_dit.safetensors", dtype="fp32")[0]
    with pytest.raises(ValueError, match="has no built-in text encoder: connect Gemma-2-2B"):
        nodes.run("LuminaVideoTextEncode", model=bare, positive="a red circle")
