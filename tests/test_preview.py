"""The sampler's latent preview (``lumina_core.preview``): the embedded VAE's fitted latent-to-RGB projection
shows the toy world's real colours, the size rules, and the principal-component fallback."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import torch

from lumina_core import embedded
from lumina_core.preview import LatentRGB, latent_preview, pca_rgb
from lumina_core.toyworld import fit_preview
from lumina_core.toyworld.world import DEFAULT_CONFIG, PALETTE, make_clip

SHAPE_TOLERANCE = 0.05  # a latent pixel is a shape pixel when its mean colour is this close to the shape's colour


@pytest.fixture(scope="module")
def real_vae():
    """The shipped embedded VAE, the one ``embedded.PREVIEW`` was fitted to (not the node tests' random copies)."""
    from lumina_core.models.vae import load_vae

    path = embedded.PACKAGE_DIR / embedded.FILES["vae"]
    if not path.is_file():
        pytest.skip(f"{path} is missing: embedded.PREVIEW is fitted to the real embedded VAE, made by toyworld.train")
    return load_vae(path).eval()


def preview_pixels(picture, frames: int, h: int, w: int) -> np.ndarray:
    """A side-by-side preview -> the colour of each latent pixel, [frames, h, w, 3] in 0..255."""
    image = np.asarray(picture).astype(np.float32)  # [H, frames*w*scale, 3]
    scale = image.shape[1] // (frames * w)
    centres = image[scale // 2 :: scale, scale // 2 :: scale][:h, : frames * w]  # [h, frames*w, 3]
    return centres.reshape(h, frames, w, 3).transpose(1, 0, 2, 3)


def shape_colours(vae, colour: str) -> np.ndarray:
    """The preview colours [n, 3] (0..255) of the latent pixels a square of ``colour`` covers whole."""
    clip = make_clip(colour, "square", "right", speed=1.5, distance_ahead=20.0, across=16.0)
    latent = fit_preview.encode(vae, [clip])  # [1, 16, 4, 8, 8]
    target = fit_preview.latent_targets([clip])[0].permute(1, 2, 3, 0).numpy()  # [4, 8, 8, 3]
    shown = preview_pixels(latent_preview(latent, embedded.PREVIEW), *latent.shape[2:])
    inside = np.abs(target - np.asarray(PALETTE[colour])).max(axis=-1) < SHAPE_TOLERANCE
    assert inside.sum() >= 16, "the test clip's square should cover several latent pixels whole"
    return shown[inside]


# --------------------------------------------------------------------------- the fitted projection


@pytest.mark.parametrize("colour, channel", [("red", 0), ("green", 1), ("blue", 2)])
def test_fitted_preview_shows_primary_colours_as_themselves(real_vae, colour, channel):
    colours = shape_colours(real_vae, colour)
    dominant = colours.argmax(axis=1)
    assert (dominant == channel).mean() >= 0.9, f"{colour} shape pixels: {np.median(colours, axis=0)}"


@pytest.mark.parametrize("colour", sorted(PALETTE))
def test_fitted_preview_colours_are_nearest_their_palette_colour(real_vae, colour):
    candidates = {**PALETTE, "background": DEFAULT_CONFIG.background}
    median = np.median(shape_colours(real_vae, colour), axis=0) / 255
    nearest = min(candidates, key=lambda name: np.abs(np.asarray(candidates[name]) - median).sum())
    assert nearest == colour, f"a {colour} square previews as {np.round(median * 255)}, nearest {nearest}"


def test_fitted_preview_shows_yellow_and_white_as_such(real_vae):
    yellow = np.median(shape_colours(real_vae, "yellow"), axis=0)
    white = np.median(shape_colours(real_vae, "white"), axis=0)
    assert min(yellow[:2]) > yellow[2] + 75, f"yellow: {yellow}"  # about (204, 173, 75) for (242, 217, 38)
    assert white.min() > 160 and white.max() - white.min() < 40, f"white: {white}"  # about (205, 201, 190)


def test_stored_projection_fits_the_shipped_vae_better_than_pca(real_vae):
    """Guards against retraining the VAE's encoder without refitting embedded.PREVIEW (fit_preview says how)."""
    from lumina_core.toyworld.world import heldout_clips

    clips = heldout_clips(seed=1, n=8)
    latents, targets = fit_preview.encode(real_vae, clips), fit_preview.latent_targets(clips)
    fitted = fit_preview.projection_scores(embedded.PREVIEW, latents, targets)
    pca = fit_preview.pca_scores(latents, targets)
    assert fitted["mae"] < 20, fitted  # 12.4 / 255 on the 100 held-out clips of the stored fit
    assert fitted["mae"] < 0.75 * pca["mae"], (fitted, pca)
    assert min(fitted["r2"]) > 0.7, fitted


def test_stored_projection_is_frozen_and_shaped():
    assert embedded.PREVIEW.channels == 16 and len(embedded.PREVIEW.bias) == 3
    with pytest.raises(FrozenInstanceError):
        embedded.PREVIEW.bias = (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"factors \[C\]\[3\]"):
        LatentRGB(factors=((1.0, 0.0),), bias=(0.0, 0.0, 0.0))


# --------------------------------------------------------------------------- the fit


def test_least_squares_recovers_a_linear_map():
    generator = torch.Generator().manual_seed(0)
    factors, bias = torch.randn(16, 3, generator=generator), torch.tensor([0.2, -0.1, 0.5])
    latents = torch.randn(2, 16, 4, 8, 8, generator=generator)
    targets = (torch.einsum("nckhw,cd->ndkhw", latents, factors) + bias.view(1, 3, 1, 1, 1)).contiguous()
    projection = fit_preview.fit(latents, targets)
    assert torch.allclose(torch.tensor(projection.factors), factors, atol=1e-4)
    assert torch.allclose(torch.tensor(projection.bias), bias, atol=1e-4)


def test_targets_average_each_latent_pixels_frames_and_pixels():
    clip = make_clip("red", "square", "right", speed=1.5, distance_ahead=20.0, across=16.0)
    targets = fit_preview.latent_targets([clip])  # [1, 3, 4, 8, 8]
    assert targets.shape == (1, 3, 4, 8, 8)
    expected = clip.frames[4:8, 16:24, 40:48].mean(axis=(0, 1, 2))  # latent frame 1, row 2, column 5
    assert np.allclose(targets[0, :, 1, 2, 5].numpy(), expected, atol=1e-6)


def test_fit_preview_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "lumina_core.toyworld.fit_preview", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert all(option in result.stdout for option in ("--clips", "--heldout", "--seed", "--vae"))


# --------------------------------------------------------------------------- sizes and the fallback


@pytest.mark.parametrize(
    "shape, size",
    [
        ((1, 16, 4, 8, 8), (4 * 64, 64)),  # the embedded default: 8x, four frames side by side
        ((2, 16, 8, 8, 8), (4 * 64, 64)),  # at most four latent frames, of the first video
        ((1, 16, 1, 8, 8), (64, 64)),  # a still image
        ((1, 16, 4, 16, 16), (512, 128)),  # 4 x 16 latent pixels: 8x makes exactly 512
        ((1, 16, 4, 8, 24), (480, 40)),  # 96 latent pixels wide: 5x
        ((1, 16, 24, 88, 156), (512, 72)),  # the released model's 1248x704: shrunk to 512 wide
    ],
)
@pytest.mark.parametrize("fitted", [True, False])
def test_preview_size_rules(shape, size, fitted):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    picture = latent_preview(x, embedded.PREVIEW if fitted else None)
    assert picture.size == size and picture.mode == "RGB"
    assert picture.size[0] <= 512


def test_preview_shows_evenly_spaced_frames_left_to_right():
    red = LatentRGB(factors=((1.0, 0.0, 0.0),) + ((0.0, 0.0, 0.0),) * 15, bias=(0.0, 0.0, 0.0))
    x = torch.zeros(1, 16, 8, 8, 8)
    x[0, 0] = torch.arange(8.0).view(8, 1, 1) / 7  # latent frame k is red k/7
    pixels = preview_pixels(latent_preview(x, red), 4, 8, 8)  # [4, 8, 8, 3]
    assert np.allclose(pixels[:, 0, 0, 0], np.round(np.array([0, 2, 5, 7]) / 7 * 255))  # frames 0, 2, 5, 7
    assert (pixels[..., 1:] == 0).all()


def test_fallback_previews_a_random_latent():
    x = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    picture = np.asarray(latent_preview(x))
    assert picture.shape == (64, 256, 3) and picture.std() > 10, "principal components should show structure"
    three_channels = LatentRGB(factors=((1.0, 0.0, 0.0),) * 3, bias=(0.0, 0.0, 0.0))
    assert np.array_equal(np.asarray(latent_preview(x, three_channels)), picture), "a mismatched projection falls back"
    rgb = pca_rgb(x[0])
    assert rgb.shape == (3, 4, 8, 8) and 0 <= rgb.min() and rgb.max() <= 1


def test_sampler_node_previews_the_embedded_model_with_the_fitted_projection(env):
    x = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    node_preview = env.package.nodes.sampling.latent_preview
    assert np.array_equal(np.asarray(node_preview(x, True)), np.asarray(latent_preview(x, embedded.PREVIEW)))
    assert np.array_equal(np.asarray(node_preview(x, False)), np.asarray(latent_preview(x)))
    assert not np.array_equal(np.asarray(node_preview(x, True)), np.asarray(node_preview(x, False)))
