"""Lumina-Video Windows in a real ComfyUI (in-process): long clips sampled in fused windows of frames, through
ComfyUI's own sampling, against the engine's windowed sampler."""

from __future__ import annotations

import pytest
import torch

from .inprocess import EngineView, text_condition
from .test_nodes_in_comfyui import Nodes, native_chain

PROMPT = "a blue circle moving right"


@pytest.fixture(scope="module")
def nodes(comfy_inprocess):
    torch.set_grad_enabled(False)
    return Nodes(comfy_inprocess)


def test_a_long_clip_in_windows_is_the_engines(nodes):
    """64 frames (twice the embedded default's limit) in windows of 16 overlapping by 8: the native chain with the
    Windows patch gives the engine's windowed sampling, and the prompted colour in every quarter of the clip."""
    from lumina_video.lumina_core import embedded
    from lumina_video.lumina_core.pipeline import decode_latent
    from lumina_video.lumina_core.sampling import WindowPlan, make_noise, preset, sample
    from lumina_video.lumina_core.toyworld.metrics import detect_colour

    windowed = nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, fuse="pyramid", shift=True)[0]
    positive, negative = nodes.run("LuminaVideoTextEncode", model=windowed, positive=PROMPT)
    shape = (1, 16, 16, 8, 8)
    chain = native_chain(nodes, "embedded-MultiScale", 4, positive, negative, model=windowed, shape=shape)
    engine = sample(
        EngineView(nodes.model.model.diffusion_model),
        make_noise(shape, 4),
        text_condition(positive),
        text_condition(negative),
        preset("embedded-MultiScale"),
        windows=WindowPlan(4, 2, "pyramid"),
    )
    assert (chain - engine).abs().max().item() < 3e-5  # measured 1.0e-5 to 1.2e-5
    frames = decode_latent(embedded.load(with_audio=False).vae, chain)[0]
    assert [detect_colour(frames[q * 16 : (q + 1) * 16]) for q in range(4)] == ["blue"] * 4


def test_windows_refuse_what_the_model_cant_take(nodes):
    with pytest.raises(ValueError, match="window 40 must be a multiple of 8 between 8 and 32"):
        nodes.run("LuminaVideoWindows", model=nodes.model, window=40, overlap=8)
    with pytest.raises(ValueError, match="overlap 16 must be a multiple of 8 from 0 to 8"):
        nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=16)
    with pytest.raises(ValueError, match="not a Lumina-Video model"):
        nodes.run("LuminaVideoWindows", model="a model", window=16, overlap=8)


def test_the_sampler_takes_a_clip_as_long_as_its_windows_allow(nodes):
    """Without Windows the Sampler refuses 64 frames for the embedded default (it takes 32); with them it samples
    them, exactly as the native chain does with the same patch."""
    long = nodes.run("LuminaVideoEmptyLatent", width=64, height=64, frames=64, batch_size=1)[0]
    with pytest.raises(ValueError, match="frames 64 is outside what the embedded default was trained for"):
        nodes.sample(latent=long)
    windowed = nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, fuse="pyramid", shift=True)[0]
    node = nodes.sample(model=windowed, latent=long, seed=4, steps=0)
    chain = native_chain(nodes, "embedded-MultiScale", 4, nodes.positive, nodes.negative, windowed, (1, 16, 16, 8, 8))
    assert torch.equal(node, chain)
    with pytest.raises(ValueError, match="step caching.*can't be combined with Lumina-Video Windows"):
        nodes.sample(model=windowed, latent=long, cache=0.2)


def test_large_frames_in_tiles_are_the_engines(nodes):
    """128x128 (twice the embedded default's 64 each way) in tiles of 64x64 overlapping by 32: the Sampler refuses
    it without tiles, and with them gives the engine's tiled sampling."""
    from lumina_video.lumina_core.sampling import WindowPlan, make_noise, preset, sample

    large = nodes.run("LuminaVideoEmptyLatent", width=128, height=128, frames=16, batch_size=1)[0]
    with pytest.raises(ValueError, match="width 128 is outside what the embedded default was trained for"):
        nodes.sample(latent=large)
    tiled = nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, fuse="pyramid", shift=True,
                      tile_height=64, tile_width=64, tile_overlap=32)[0]  # fmt: skip
    node = nodes.sample(model=tiled, latent=large, seed=4, steps=0)
    engine = sample(
        EngineView(nodes.model.model.diffusion_model),
        make_noise((1, 16, 4, 16, 16), 4),
        text_condition(nodes.positive),
        text_condition(nodes.negative),
        preset("embedded-MultiScale"),
        windows=WindowPlan(4, 2, "pyramid", tile=(8, 8), tile_overlap=4),
    )
    assert node.shape == (1, 16, 4, 16, 16)
    assert (node - engine).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="tile_height x tile_width 128x64 is larger than the model takes"):
        nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, tile_height=128, tile_width=64)
    with pytest.raises(ValueError, match="tile_overlap 64 must be a multiple of 8 from 0 to 56"):
        nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, tile_height=64, tile_width=64,
                  tile_overlap=64)  # fmt: skip


def test_the_refine_chain_is_the_engines_refine_pass(nodes):
    """The upscaled workflow's refine pass (Upscale Video x2, the Sampler at denoise 0.1 with Windows in 64x64
    tiles) against the engine's ``pipeline.refine`` from t = 0.9 on the same frames."""
    from lumina_video.lumina_core import embedded
    from lumina_video.lumina_core.pipeline import LuminaVideoModels, decode_latent, refine
    from lumina_video.lumina_core.sampling import WindowPlan, preset

    vae = nodes.run("LuminaVideoVAELoader", vae_name="embedded (toy world, CPU)")[0]
    small = decode_latent(vae.vae, nodes.sample(seed=4, steps=0))  # [1, 16, 64, 64, 3]
    latent = nodes.run("LuminaVideoUpscaleVideo", vae=vae, images=small[0], scale=2)[0]
    tiled = nodes.run("LuminaVideoWindows", model=nodes.model, window=16, overlap=8, fuse="pyramid", shift=True,
                      tile_height=64, tile_width=64, tile_overlap=32)[0]  # fmt: skip
    node = nodes.sample(model=tiled, latent=latent, seed=4, steps=0, denoise=0.1)
    models = LuminaVideoModels(EngineView(nodes.model.model.diffusion_model), None, vae.vae,
                               size_limits=embedded.SIZES)  # fmt: skip
    plan = WindowPlan(4, 0, tile=(8, 8), tile_overlap=4)
    engine = refine(models, small, text_condition(nodes.positive), text_condition(nodes.negative),
                    preset("embedded-MultiScale"), 2, 0.9, 4, plan)  # fmt: skip
    assert node.shape == engine.shape == (1, 16, 4, 16, 16)
    assert (node - engine).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="images: 12 video frames"):
        nodes.run("LuminaVideoUpscaleVideo", vae=vae, images=small[0, :12], scale=2)
