"""The conditioning nodes (``nodes/conditional.py``) in a real ComfyUI, in-process, against the engine.

Each task is built by its node from a held-out toy-world clip, sampled by the Lumina-Video Sampler (ComfyUI's own
sampling) and compared with the engine's ``sample(..., known=conditioning)`` built by the same builder with the same
seed and preset; the decoded video is read with the measures of ``lumina_core.toyworld.conditional``. The figures
are in docs/conditional.md, "In ComfyUI".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np
import pytest
import torch

from .inprocess import EngineView, text_condition
from .test_nodes_in_comfyui import Nodes

PRESET = "embedded-MultiScale"
SEED = 4
ENGINE_BOUND = 1e-4
"""Max abs latent difference node against engine: the native chain's own is up to 3e-5 (docs/native.md)."""


@pytest.fixture(scope="module")
def nodes(comfy_inprocess):
    torch.set_grad_enabled(False)
    return Nodes(comfy_inprocess)


@pytest.fixture(scope="module")
def vae(nodes):
    return nodes.run("LuminaVideoVAELoader", vae_name="embedded (toy world, CPU)")[0]


@pytest.fixture(scope="module")
def clip():
    from lumina_video.lumina_core.toyworld.world import heldout_clips

    return heldout_clips(0, 1)[0]


def frames_of(clip) -> torch.Tensor:
    return torch.from_numpy(clip.frames).float()


def prompts(nodes, text: str):
    return nodes.run("LuminaVideoTextEncode", model=nodes.model, positive=text)


def sampled(nodes, latent: dict, text: str, **changes) -> torch.Tensor:
    positive, negative = prompts(nodes, text)
    return nodes.sample(latent=latent, positive=positive, negative=negative, preset=PRESET, seed=SEED, steps=0,
                        **changes)  # fmt: skip


def engine(nodes, known, text: str, mechanism: Optional[str] = None) -> torch.Tensor:
    """The engine's sampler (the command line's) on the same module, seed and preset, held to ``known`` by
    ``mechanism`` (None: the one the loaded DiT was trained for, as the nodes and the command line hold it)."""
    from lumina_video.lumina_core.sampling import make_noise, preset, sample

    known = replace(known, mechanism=mechanism or nodes.model.model.lumina_source.conditioning)
    positive, negative = prompts(nodes, text)
    return sample(
        EngineView(nodes.model.model.diffusion_model),
        make_noise((1, 16, 4, 8, 8), SEED),
        text_condition(positive),
        text_condition(negative),
        preset(PRESET),
        known=known,
    )


def decoded(nodes, vae, samples: torch.Tensor) -> torch.Tensor:
    (frames,) = nodes.run("LuminaVideoVAEDecode", vae=vae, latent={"samples": samples})[0]
    return frames


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def report(task: str, **figures) -> None:
    print(f"\n{task}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))


# --------------------------------------------------------------------------- the tasks against the engine


def test_image_to_video(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import from_images
    from lumina_video.lumina_core.toyworld.conditional import caption, psnr
    from lumina_video.lumina_core.toyworld.metrics import detect_colour

    image = frames_of(clip)[:1]
    latent = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=image, frame_index=0,
                       strength=1.0)[0]  # fmt: skip
    known = from_images(vae.vae, [(image[0], 0)], 16)
    assert torch.equal(latent["samples"], known.latent) and torch.equal(latent["noise_mask"], 1 - known.keep)
    text = caption(clip.colour, clip.shape, clip.direction)
    node = sampled(nodes, latent, text)
    reference = engine(nodes, known, text)
    video = decoded(nodes, vae, node)
    figures = dict(
        engine=difference(node, reference),
        kept=difference(node[:, :, :1], known.latent[:, :, :1]),
        frame0_psnr=psnr(video[0], clip.frames[0]),
        engine_frame0_psnr=psnr(decoded(nodes, vae, reference)[0], clip.frames[0]),
        colour=detect_colour(video.numpy()),
    )
    report("image-to-video", **figures)
    assert figures["engine"] < ENGINE_BOUND
    assert figures["kept"] < 1e-5
    assert abs(figures["frame0_psnr"] - figures["engine_frame0_psnr"]) < 0.1
    assert figures["colour"] == clip.colour


@pytest.fixture(params=["timestep", "replace"])
def mechanism(request, nodes):
    """The loaded model taken as trained for one mechanism or the other (the embedded DiT's file says timestep;
    weights without that metadata, the released ones, load as replace)."""
    native = nodes.model.model
    source = native.lumina_source
    native.lumina_source = replace(source, conditioning=request.param)
    yield request.param
    native.lumina_source = source


@pytest.mark.parametrize("task", ["image-to-video", "inpainting"])
def test_each_mechanism_is_the_engines(nodes, vae, clip, mechanism, task):
    from lumina_video.lumina_core.conditioning import from_images, from_video

    frames = frames_of(clip)
    if task == "image-to-video":
        latent = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=frames[:1], frame_index=0,
                           strength=1.0)[0]  # fmt: skip
        known = from_images(vae.vae, [(frames[0], 0)], 16)
    else:
        regenerate = torch.zeros(1, 64, 64)
        regenerate[..., 32:] = 1
        latent = nodes.run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=frames, keep_frames=0,
                           mask=regenerate)[0]  # fmt: skip
        known = from_video(vae.vae, frames, 16, regenerate)
    node = sampled(nodes, latent, clip.caption)
    other = {"timestep": "replace", "replace": "timestep"}[mechanism]
    held = known.keep.expand_as(node).bool()
    figures = dict(engine=difference(node, engine(nodes, known, clip.caption)),
                   kept=difference(node[held], known.latent[held]),
                   other_mechanism=difference(node, engine(nodes, known, clip.caption, other)))  # fmt: skip
    report(f"{task}, {mechanism}", **figures)
    assert figures["engine"] < ENGINE_BOUND
    assert figures["kept"] < 1e-6  # the known latent comes back (float32 rounding)
    assert figures["other_mechanism"] > 100 * ENGINE_BOUND  # the model was told something else


def test_the_mechanism_node_switches_a_model_to_replacement(nodes, vae, clip):
    """The embedded DiT loads as trained for per-token timesteps; Conditioning Mechanism (replace) makes any sampler
    hold the kept cells by replacement instead, and refuses timestep for weights not trained for it."""
    from lumina_video.lumina_core.conditioning import from_images

    assert nodes.model.model.lumina_source.conditioning == "timestep"
    image = frames_of(clip)[:1]
    latent = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=image, frame_index=0,
                       strength=1.0)[0]  # fmt: skip
    known = from_images(vae.vae, [(image[0], 0)], 16)
    replacing = nodes.run("LuminaVideoConditioningMechanism", model=nodes.model, mechanism="replace")[0]
    node = sampled(nodes, latent, clip.caption, model=replacing)
    assert difference(node, engine(nodes, known, clip.caption, "replace")) < ENGINE_BOUND
    assert difference(node, engine(nodes, known, clip.caption, "timestep")) > 100 * ENGINE_BOUND
    assert difference(sampled(nodes, latent, clip.caption), engine(nodes, known, clip.caption)) < ENGINE_BOUND
    assert nodes.model.model.lumina_source.conditioning == "timestep"  # the clone's patch left the trained one
    native = nodes.model.model
    source = native.lumina_source
    native.lumina_source = replace(source, conditioning="replace")
    try:
        with pytest.raises(ValueError, match="was not fine-tuned with per-token timesteps .* use replace"):
            nodes.run("LuminaVideoConditioningMechanism", model=nodes.model, mechanism="timestep")
    finally:
        native.lumina_source = source


def test_keyframes_chain_into_the_engines_conditioning(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import from_images

    frames = frames_of(clip)
    first = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=frames[:1], frame_index=0,
                      strength=1.0)[0]  # fmt: skip
    both = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=first, image=frames[15:], frame_index=15,
                     strength=0.8)[0]  # fmt: skip
    known = from_images(vae.vae, [(frames[0], 0), (frames[15], 15)], 16)
    assert torch.equal(both["samples"], known.latent)
    expected = 1 - known.keep
    expected[:, :, 3] = 1 - 0.8
    torch.testing.assert_close(both["noise_mask"], expected)
    with pytest.raises(ValueError, match="frame_index 13 lies in latent frame 3 .* already holds"):
        nodes.run("LuminaVideoImageToVideo", vae=vae, latent=both, image=frames[:1], frame_index=13, strength=1.0)


def test_inpainting(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import from_video
    from lumina_video.lumina_core.toyworld.conditional import caption, other_colour, worst_frame_psnr
    from lumina_video.lumina_core.toyworld.metrics import detect_colour

    video = frames_of(clip)
    regenerate = torch.zeros(1, 64, 64)
    regenerate[..., 32:] = 1
    latent = nodes.run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=video, keep_frames=0,
                       mask=regenerate)[0]  # fmt: skip
    known = from_video(vae.vae, video, 16, regenerate)
    colour = other_colour(clip.colour, np.random.default_rng(0))
    text = caption(colour, clip.shape, clip.direction)
    node = sampled(nodes, latent, text)
    reference = engine(nodes, known, text)
    frames = decoded(nodes, vae, node)
    outside = regenerate[0] == 0
    figures = dict(
        engine=difference(node, reference),
        kept=difference(node[..., :4], known.latent[..., :4]),
        outside_psnr=worst_frame_psnr(frames, clip.frames, outside),
        engine_outside_psnr=worst_frame_psnr(decoded(nodes, vae, reference), clip.frames, outside),
        colour_inside=detect_colour(frames[:, :, 32:].numpy()),
        prompted=colour,
    )
    report("inpainting", **figures)
    assert figures["engine"] < ENGINE_BOUND
    assert figures["kept"] < 1e-5
    assert abs(figures["outside_psnr"] - figures["engine_outside_psnr"]) < 0.1
    if figures["colour_inside"] != colour:
        pytest.xfail(
            f"the default mechanism drew {figures['colour_inside']} where {colour} was prompted: with the DiT of "
            "eceba34 per-token timesteps follow the kept half (prompted colour 0.08 on 100 clips, replace 0.89; "
            "docs/conditional.md)"
        )


@pytest.mark.parametrize("denoise", [0.5, 1.0])
def test_video_to_video(nodes, vae, clip, denoise):
    from lumina_video.lumina_core.conditioning import from_video
    from lumina_video.lumina_core.toyworld.conditional import caption, other_colour, psnr

    video = frames_of(clip)
    latent = nodes.run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=video, keep_frames=0)[0]
    assert "noise_mask" not in latent
    known = from_video(vae.vae, video, 16, denoise=denoise)
    assert torch.equal(latent["samples"], known.latent)
    text = caption(other_colour(clip.colour, np.random.default_rng(0)), clip.shape, clip.direction)
    node = sampled(nodes, latent, text, denoise=denoise)
    reference = engine(nodes, known, text)
    figures = dict(engine=difference(node, reference), input_psnr=psnr(decoded(nodes, vae, node), clip.frames))
    report(f"video-to-video at denoise {denoise}", **figures)
    assert figures["engine"] < ENGINE_BOUND
    if denoise == 1.0:  # the video is not used at all: text-to-video exactly
        assert torch.equal(node, sampled(nodes, nodes.latent, text))
    else:  # closer to the input than a redraw
        redraw = decoded(nodes, vae, sampled(nodes, nodes.latent, text))
        assert figures["input_psnr"] > psnr(redraw, clip.frames) + 1


def test_extension(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import from_video

    video = frames_of(clip)
    latent = nodes.run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=video[:8], keep_frames=8)[0]
    known = from_video(vae.vae, video[:8], 16)
    assert torch.equal(latent["samples"], known.latent) and torch.equal(latent["noise_mask"], 1 - known.keep)
    node = sampled(nodes, latent, clip.caption)
    figures = dict(engine=difference(node, engine(nodes, known, clip.caption)), kept=difference(
        node[:, :, :2], known.latent[:, :, :2]))  # fmt: skip
    report("extension", **figures)
    assert figures["engine"] < ENGINE_BOUND and figures["kept"] < 1e-5


def test_cinemagraph(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import cinemagraph
    from lumina_video.lumina_core.toyworld.conditional import lane, moving_the_prompted_way, worst_frame_psnr

    image, band = frames_of(clip)[:1], lane(clip)
    latent = nodes.run("LuminaVideoCinemagraph", vae=vae, latent=nodes.latent, image=image, mask=band[None])[0]
    known = cinemagraph(vae.vae, image[0], band, 16)
    node = sampled(nodes, latent, clip.caption)
    reference = engine(nodes, known, clip.caption)
    frames = decoded(nodes, vae, node)
    still = image.expand(16, -1, -1, -1)
    kept = (known.keep == 1).expand_as(node)
    figures = dict(
        engine=difference(node, reference),
        kept=difference(node[kept], known.latent.expand_as(node)[kept]),
        outside_psnr=worst_frame_psnr(frames, still, band == 0),
        engine_outside_psnr=worst_frame_psnr(decoded(nodes, vae, reference), still, band == 0),
        moving=moving_the_prompted_way(frames, clip.direction),
    )
    report("cinemagraph", **figures)
    assert figures["engine"] < ENGINE_BOUND
    assert figures["kept"] < 1e-5
    # The kept cells are held, but the decoder carries the animated cells' content across the band's edge: on this
    # clip and seed the worst frame outside reads 19 dB for the engine too (48 dB at seed 0; docs/conditional.md).
    assert abs(figures["outside_psnr"] - figures["engine_outside_psnr"]) < 0.1
    assert figures["moving"]


# --------------------------------------------------------------------------- ComfyUI's own samplers


def test_native_samplers_hold_the_kept_region(nodes, vae, clip):
    """The same LATENT through SamplerCustomAdvanced's path (Multi-Scale, Guidance, Scheduler, euler) and through
    KSampler's (comfy.sample.sample: its scheduler 'simple' and cfg 5): the kept latent frame comes back as given."""
    import comfy.sample
    import comfy.samplers
    from lumina_video.lumina_core.sampling import make_noise, preset, scale_and_cutoff

    latent = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=frames_of(clip)[:1],
                       frame_index=0, strength=1.0)[0]  # fmt: skip
    positive, negative = prompts(nodes, clip.caption)
    samples, mask = latent["samples"], latent["noise_mask"]
    noise = make_noise(samples.shape, SEED)
    model = nodes.run("LuminaVideoMultiScale", model=nodes.model, preset=PRESET)[0]
    model = nodes.run("LuminaVideoGuidance", model=model, preset=PRESET)[0]
    sigmas = nodes.run("LuminaVideoScheduler", preset=PRESET)[0]
    cfg = scale_and_cutoff(preset(PRESET).cfg)[0] + 1
    custom = comfy.sample.sample_custom(
        model, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas, positive, negative, samples,
        noise_mask=mask, disable_pbar=True, seed=SEED,
    )  # fmt: skip
    node = sampled(nodes, latent, clip.caption)
    ksampler = comfy.sample.sample(nodes.model, noise, 12, 5.0, "euler", "simple", positive, negative, samples,
                                   noise_mask=mask, disable_pbar=True, seed=SEED)  # fmt: skip
    figures = dict(
        custom_kept=difference(custom[:, :, :1], samples[:, :, :1]),
        custom_vs_node=difference(custom, node),
        ksampler_kept=difference(ksampler[:, :, :1], samples[:, :, :1]),
        ksampler_rest_moved=difference(ksampler[:, :, 1:], samples[:, :, 1:]),
    )
    report("native samplers", **figures)
    assert figures["custom_kept"] < 1e-5 and figures["ksampler_kept"] < 1e-5
    assert figures["custom_vs_node"] < 1e-5
    assert figures["ksampler_rest_moved"] > 0.1


# --------------------------------------------------------------------------- clear errors


def test_errors_name_the_input_and_the_fix(nodes, vae, clip):
    video = frames_of(clip)
    run = nodes.run
    with pytest.raises(ValueError, match="image is 32x32 but the latent is 64x64: scale the image to 64x64"):
        run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=video[:1, :32, :32], frame_index=0,
            strength=1.0)  # fmt: skip
    with pytest.raises(ValueError, match="frame_index 16 is beyond the latent's 16 frames: pick 0..15"):
        run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=video[:1], frame_index=16, strength=1.0)
    with pytest.raises(ValueError, match="mask is 32x32 but the video is 64x64"):
        run("LuminaVideoCinemagraph", vae=vae, latent=nodes.latent, image=video[:1], mask=torch.ones(1, 32, 32))
    with pytest.raises(ValueError, match="mask is all black .* the cinemagraph would regenerate nothing"):
        run("LuminaVideoCinemagraph", vae=vae, latent=nodes.latent, image=video[:1], mask=torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="keep_frames 16 is not shorter than the latent's 16 frames"):
        run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=video, keep_frames=16)
    with pytest.raises(ValueError, match="video has 8 frames, fewer than the latent's 16"):
        run("LuminaVideoVideoToVideo", vae=vae, latent=nodes.latent, video=video[:8], keep_frames=0)
    with pytest.raises(ValueError, match="images: 5 video frames"):
        run("LuminaVideoVAEEncode", vae=vae, images=video[:5])
    pixel = {"samples": nodes.latent["samples"], "noise_mask": torch.ones(16, 64, 64)}
    with pytest.raises(ValueError, match="noise_mask of shape .* put SetLatentNoiseMask after"):
        run("LuminaVideoImageToVideo", vae=vae, latent=pixel, image=video[:1], frame_index=0, strength=1.0)


def test_vae_encode_is_the_engines(nodes, vae, clip):
    from lumina_video.lumina_core.conditioning import encode

    video = frames_of(clip)
    (latent,) = nodes.run("LuminaVideoVAEEncode", vae=vae, images=video)
    assert latent["samples"].shape == (1, 16, 4, 8, 8)
    assert torch.equal(latent["samples"], encode(vae.vae, video))


def test_soft_strength_differs_from_the_engine(nodes, vae, clip):
    """Below strength 1 ComfyUI and the engine part (docs/conditional.md): by replacement the engine blends the state
    after each step, ComfyUI the model's input and its prediction; by per-token timesteps the engine waits a cell at
    time s = strength (max(t, s)), ComfyUI scales its sigma by 1 - s. Both pull the kept frame towards the image."""
    from lumina_video.lumina_core.conditioning import Conditioning, from_images

    image = frames_of(clip)[:1]
    latent = nodes.run("LuminaVideoImageToVideo", vae=vae, latent=nodes.latent, image=image, frame_index=0,
                       strength=0.5)[0]  # fmt: skip
    held = from_images(vae.vae, [(image[0], 0)], 16)
    known = Conditioning(held.latent, held.keep, strength=0.5)
    node = sampled(nodes, latent, clip.caption)
    reference = engine(nodes, known, clip.caption)
    free = sampled(nodes, nodes.latent, clip.caption)
    figures = dict(
        engine=difference(node, reference),
        node_to_image=difference(node[:, :, :1], held.latent[:, :, :1]),
        engine_to_image=difference(reference[:, :, :1], held.latent[:, :, :1]),
        free_to_image=difference(free[:, :, :1], held.latent[:, :, :1]),
    )
    report("image-to-video at strength 0.5", **figures)
    assert figures["engine"] > 100 * ENGINE_BOUND  # they part (1.02 measured by timestep, 0.19 by replacement)
    assert figures["node_to_image"] < figures["free_to_image"]
    assert figures["engine_to_image"] < figures["free_to_image"]
