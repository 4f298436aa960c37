"""Conditional generation by replacement: the latent-grid mapping, the replacement hook, the inputs refused, the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lumina_core import embedded
from lumina_core.__main__ import build_parser, main
from lumina_core.conditioning import (
    Conditioning,
    fit_frames,
    from_files,
    from_images,
    latent_frame,
    latent_mask,
    parse_keyframe,
)
from lumina_core.io.media import read_video, write_video
from lumina_core.sampling import integrate, make_noise, preset, sample, time_grid
from lumina_core.toyworld.metrics import centroid_track, detect_colour
from lumina_core.toyworld.world import heldout_clips


@pytest.fixture(scope="module")
def models():
    return embedded.load(with_audio=False)


@pytest.fixture(scope="module")
def clip():
    return heldout_clips(0, 1)[0]


def write_image(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture
def files(tmp_path, clip):
    """A clip's first frame, the clip as a video, its first 8 frames, and masks: right half white, black, white."""
    half = np.zeros((64, 64))
    half[:, 32:] = 1
    return dict(
        image=write_image(tmp_path / "image.png", clip.frames[0]),
        last=write_image(tmp_path / "last.png", clip.frames[-1]),
        video=write_video(tmp_path / "clip.mp4", clip.frames, 8),
        start=write_video(tmp_path / "start.mp4", clip.frames[:8], 8),
        mask=write_image(tmp_path / "mask.png", half),
        black=write_image(tmp_path / "black.png", np.zeros((64, 64))),
        white=write_image(tmp_path / "white.png", np.ones((64, 64))),
        text=(tmp_path / "notes.png").write_text("not an image") and tmp_path / "notes.png",
    )


@pytest.mark.parametrize("frame, index", [(0, 0), (3, 0), (4, 1), (7, 1), (8, 2), (15, 3), (95, 23)])
def test_a_video_frame_lies_in_latent_frame_n_over_4(frame, index):
    assert latent_frame(frame) == index


def test_pixel_masks_pool_onto_the_latent_grid():
    mask = torch.zeros(16, 64, 64)
    mask[4:8, :, 32:] = 1  # frames 4..7: latent frame 1, right half: latent columns 4..7
    mask[12:16, :4, :8] = 1  # half of one 8x8 cell's rows in latent frame 3: a soft value
    grid = latent_mask(mask)
    assert grid.shape == (1, 1, 4, 8, 8)
    expected = torch.zeros(1, 1, 4, 8, 8)
    expected[:, :, 1, :, 4:] = 1
    expected[:, :, 3, 0, 0] = 0.5
    assert torch.equal(grid, expected)


def test_inputs_of_another_size_are_scaled_to_cover_and_centre_cropped():
    stripes = torch.zeros(1, 32, 96, 3)  # red | green | blue thirds
    stripes[:, :, :32, 0], stripes[:, :, 32:64, 1], stripes[:, :, 64:, 2] = 1, 1, 1
    assert torch.equal(fit_frames(stripes, 32, 32), stripes[:, :, 32:64])
    small = stripes[:, ::2, ::2]  # 16 x 48: scaled up twice, then the middle third kept
    fitted = fit_frames(small, 32, 32)
    assert fitted.shape == (1, 32, 32, 3)
    assert torch.allclose(fitted[:, :, 2:-2], stripes[:, :, 34:62], atol=1e-6)
    tall = fit_frames(stripes.transpose(1, 2), 64, 32)  # 96 x 32 -> scaled to 192 x 64 -> the middle rows
    assert tall.shape == (1, 32, 64, 3) and bool((tall[..., 1] == 1).all())


@pytest.mark.parametrize(
    "text, path, frame",
    [
        ("key.png:15", "key.png", 15),
        (r"C:\frames\key.png:3", r"C:\frames\key.png", 3),
        ("D:/a:b.png:0", "D:/a:b.png", 0),
    ],
)
def test_keyframe_option_splits_at_the_last_colon(text, path, frame):
    assert parse_keyframe(text) == (Path(path), frame)
    assert build_parser().parse_args(["generate", "--prompt", "a", "--keyframe", text]).keyframe == [
        (Path(path), frame)
    ]


@pytest.mark.parametrize("text", ["key.png", r"C:\key.png", "key.png:", "key.png:last"])
def test_keyframe_option_without_a_frame_is_refused(text, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--prompt", "a", "--keyframe", text])
    assert "give PATH:FRAME" in capsys.readouterr().err


def fake_velocity(x, t):
    """A velocity in which every position sees the whole state, as the DiT's attention does."""
    return torch.sin(3 * x) + t + x.mean(dim=(2, 3, 4), keepdim=True), None


def test_replacement_ends_exactly_on_the_known_latent_where_the_mask_is_hard():
    noise = make_noise((2, 16, 4, 8, 8), seed=1)
    keep = torch.zeros(1, 1, 4, 8, 8)
    keep[:, :, 0] = 1
    keep[:, :, 2, :, 4:] = 1
    known = Conditioning(torch.randn(2, 16, 4, 8, 8), keep)
    times = time_grid(7, 3.0).tolist()
    x = integrate(fake_velocity, noise, times, "heun", known=known)
    held = keep.expand_as(x).bool()
    assert torch.equal(x[held], known.latent[held])
    free = integrate(fake_velocity, noise, times, "heun")
    assert not torch.allclose(x[~held], free[~held])  # the generated region follows the known one


def test_resampling_redoes_each_step_from_the_state_noised_back_and_still_ends_on_the_known_latent():
    calls = []

    def counting_velocity(x, t):
        calls.append(t)
        return fake_velocity(x, t)

    keep = torch.zeros(1, 1, 4, 8, 8)
    keep[..., :4] = 1
    known = Conditioning(torch.randn(1, 16, 4, 8, 8), keep, resample=2, seed=5)
    times = time_grid(5, 3.0).tolist()
    x = integrate(counting_velocity, make_noise((1, 16, 4, 8, 8), 0), times, known=known)
    assert len(calls) == 3 * (len(times) - 2) + 1  # the last step, which ends on data, isn't redone
    assert torch.equal(x[..., :4], known.latent[..., :4])
    data_free = torch.zeros(1, 16, 64, 64, 64)
    state = Conditioning(data_free).start(torch.randn(data_free.shape, generator=torch.Generator().manual_seed(0)), 0.8)
    earlier = known.renoise(state, 0.8, 0.3, torch.Generator().manual_seed(1))
    assert earlier.std().item() == pytest.approx(1 - 0.3, rel=0.01)  # the path's noise level at t = 0.3


def test_per_token_timesteps_hold_known_cells_clean_and_tell_the_model_their_times():
    seen = []

    def recording_velocity(x, t, cell_times=None):
        seen.append((t, cell_times))
        return fake_velocity(x, t)

    keep = torch.zeros(1, 1, 4, 8, 8)
    keep[:, :, 0] = 1
    keep[:, :, 3] = 0.5  # strength 0.5 there: waits at t = 0.5, then is denoised with the rest
    latent, noise = torch.randn(2, 16, 4, 8, 8), make_noise((2, 16, 4, 8, 8), seed=2)
    known = Conditioning(latent, keep, mechanism="timestep")
    times = time_grid(8, 3.0).tolist()
    states = []
    x = integrate(recording_velocity, noise, times, "midpoint", lambda *a: states.append(a[-1]), known=known)
    assert all(torch.equal(state[:, :, 0], latent[:, :, 0]) for state in states)  # never moved off the known latent
    assert all(bool((cells[:, 0] == 1).all()) for _, cells in seen)
    waiting = [state[:, :, 3] for t, state in zip(times[1:], states) if t <= 0.5]
    assert waiting and all(torch.equal(w, 0.5 * latent[:, :, 3] + 0.5 * noise[:, :, 3]) for w in waiting)
    assert all(torch.equal(cells[:, 1:3], torch.full_like(cells[:, 1:3], t)) for t, cells in seen)
    assert not torch.allclose(x[:, :, 3], waiting[0])  # moved once the sampler passed its strength


def test_mechanisms_are_named_and_resampling_goes_with_replacement():
    with pytest.raises(ValueError, match="'inject' is not one of replace, timestep"):
        Conditioning(torch.zeros(1, 16, 2, 4, 4), mechanism="inject")
    with pytest.raises(ValueError, match="resampling goes with the replace mechanism"):
        Conditioning(torch.zeros(1, 16, 2, 4, 4), torch.ones(1, 1, 2, 4, 4), resample=1, mechanism="timestep")


def test_soft_masks_and_strength_blend_towards_the_noised_known_latent():
    x, noise, latent = torch.zeros(1, 16, 2, 4, 4), torch.ones(1, 16, 2, 4, 4), torch.full((1, 16, 2, 4, 4), 3.0)
    known = Conditioning(latent, torch.full((1, 1, 2, 4, 4), 0.5), strength=0.5)
    target = 0.25 * 3.0 + 0.75 * 1.0  # the known latent at t = 0.25 with the run's noise
    assert torch.allclose(known.apply(x, 0.25, noise), torch.full_like(x, 0.25 * target))


def test_a_batch_stacks_one_conditioning_per_video_with_the_same_settings():
    one, two = (Conditioning(torch.full((1, 16, 2, 4, 4), v), torch.ones(1, 1, 2, 4, 4)) for v in (1.0, 2.0))
    batch = Conditioning.stack([one, two])
    assert batch.latent.shape == (2, 16, 2, 4, 4) and batch.keep.shape == (2, 1, 2, 4, 4)
    assert torch.equal(batch.latent[1], two.latent[0])
    with pytest.raises(ValueError, match="one strength, denoise"):
        Conditioning.stack([one, Conditioning(two.latent, two.keep, denoise=0.5)])


def test_video_to_video_starts_at_one_minus_denoise_from_the_noised_latent():
    times = time_grid(30, 9.0).tolist()
    known = Conditioning(torch.full((1, 16, 2, 4, 4), 2.0), denoise=0.4)
    later = known.times(times)
    assert later[0] == pytest.approx(0.6) and all(t > 0.6 for t in later[1:]) and later[-1] == 1.0
    assert len(later) < len(times)
    noise = torch.ones(1, 16, 2, 4, 4)
    assert torch.allclose(known.start(noise, later[0]), torch.full_like(noise, 0.6 * 2.0 + 0.4))
    assert Conditioning(known.latent, denoise=1.0).times(times) == times


def conditions(models, prompt="a red circle moving left"):
    return models.text_encoder.encode([prompt]), models.text_encoder.encode([""])


def test_the_plain_path_is_bit_identical_and_denoise_1_is_text_to_video(models):
    cond, uncond = conditions(models)
    config = preset(embedded.PRESET).with_(steps=4)
    noise = make_noise((1, 16, 4, 8, 8), seed=3)
    plain = sample(models.dit, noise, cond, uncond, config)
    assert torch.equal(sample(models.dit, noise, cond, uncond, config, known=None), plain)
    video_latent = torch.randn(1, 16, 4, 8, 8)
    assert torch.equal(sample(models.dit, noise, cond, uncond, config, known=Conditioning(video_latent)), plain)
    nothing_kept = Conditioning(video_latent, torch.zeros(1, 1, 4, 8, 8))
    assert torch.equal(sample(models.dit, noise, cond, uncond, config, known=nothing_kept), plain)
    redrawn = sample(models.dit, noise, cond, uncond, config, known=Conditioning(video_latent, denoise=0.5))
    assert not torch.equal(redrawn, plain)


def test_sampling_holds_an_image_at_its_latent_frame(models, clip):
    cond, uncond = conditions(models, clip.caption)
    image = torch.from_numpy(clip.frames[0]).float()
    known = from_images(models.vae, [(image, 0), (image, 13)], 16)
    assert torch.equal(known.keep[0, 0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    latent = sample(models.dit, make_noise((1, 16, 4, 8, 8), 0), cond, uncond, preset(embedded.PRESET).with_(steps=4),
                    known=known)  # fmt: skip
    assert torch.equal(latent[:, :, 0], known.latent[:, :, 0]) and torch.equal(latent[:, :, 3], known.latent[:, :, 3])
    with pytest.raises(ValueError, match="doesn't fit the video's latent"):
        sample(models.dit, make_noise((1, 16, 2, 8, 8), 0), cond, uncond, preset(embedded.PRESET), known=known)


def build(models, files, **options):
    """from_files at 64x64, 16 frames, with the fixture's files named by their keys."""

    def path(name):
        return files.get(name, name)

    for key in ("image", "video", "mask"):
        if key in options:
            options[key] = path(options[key])
    options["keyframes"] = [(path(name), frame) for name, frame in options.get("keyframes", [])]
    return from_files(models.vae, 64, 64, 16, **options)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(image="image", image_frame=16), "--image .* at frame 16: frame 16 is outside the video's 16 frames"),
        (dict(keyframes=[("image", 0), ("last", 21)]), "frame 21 is outside the video's 16 frames; pick a frame"),
        (dict(keyframes=[("image", 5), ("last", 5)]), "both give frame 5; give one image per frame"),
        (dict(image="image", keyframes=[("last", 2)]), "fall in one latent frame \\(0: video frames 0..3\\)"),
        (dict(video="video"), "--video has 16 frames and --frames is 16: an extension must be longer than its input"),
        (dict(video="video", denoise=0.0), "--denoise 0.0 must lie in \\(0, 1\\]"),
        (dict(video="video", denoise=1.5), "--denoise 1.5 must lie in \\(0, 1\\]"),
        (dict(video="start", denoise=0.5), "--video has 8 frames, fewer than --frames 16"),
        (dict(image="text"), "--image .*notes.png: can't be read"),
        (dict(image="missing"), "--image missing: can't be read .*no file"),
        (dict(keyframes=[("text", 0)]), "--keyframe .*notes.png: can't be read"),
        (dict(video="video", mask="text"), "--mask .*notes.png: can't be read"),
        (dict(video="text", denoise=0.5), "--video .*notes.png: can't be read"),
        (dict(video="video", mask="black"), "--mask is all black .* inpainting would regenerate nothing"),
        (dict(video="video", mask="white"), "--mask is all white: inpainting would regenerate everything"),
        (dict(image="image", mask="black"), "the cinemagraph would regenerate nothing"),
        (dict(image="image", mask="white"), "the cinemagraph would regenerate everything"),
        (dict(image="image", mechanism="inject"), "--conditioning 'inject' is not one of replace, timestep"),
        (dict(mask="mask"), "--mask goes with --video \\(inpainting\\) or --image \\(cinemagraph\\)"),
        (dict(image="image", denoise=0.5), "--denoise goes with --video"),
        (dict(image_frame=3), "--image-frame goes with --image"),
        (dict(video="video", image="image"), "--video can't be combined with --image or --keyframe"),
    ],
)
def test_bad_conditioning_input_is_refused_naming_it(models, files, options, message):
    with pytest.raises(ValueError, match=message):
        build(models, files, **options)


def test_each_task_builds_its_latent_grid(models, files):
    assert build(models, files) is None
    assert build(models, files, image="image").mechanism == "replace"
    assert build(models, files, image="image", mechanism="timestep").mechanism == "timestep"
    extension = build(models, files, video="start")
    assert torch.equal(extension.keep[0, 0, :, 0, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    inpainting = build(models, files, video="video", mask="mask")
    assert bool((inpainting.keep[..., :4] == 1).all()) and bool((inpainting.keep[..., 4:] == 0).all())
    video_to_video = build(models, files, video="video", denoise=0.3)
    assert video_to_video.keep is None and video_to_video.denoise == 0.3
    still = build(models, files, image="image", mask="mask")
    assert still.keep.shape == (1, 1, 4, 8, 8) and bool((still.keep[..., :4] == 1).all())


def test_generate_image_to_video_on_the_embedded_default(tmp_path, files, clip, capsys):
    out = tmp_path / "i2v.mp4"
    args = ["generate", "--prompt", clip.caption, "--image", str(files["image"]), "--steps", "4", "--no-audio"]
    assert main([*args, "--out", str(out)]) == 0
    frames = read_video(out).frames
    assert frames.shape == (16, 64, 64, 3)
    assert detect_colour(frames[:4]) == clip.colour
    shown, given = centroid_track(frames[:1])[0], centroid_track(clip.frames[:1])[0]
    assert np.linalg.norm(shown - given) < 4  # the image's shape where the image has it


@pytest.mark.parametrize(
    "args, message",
    [
        (["--video", "VIDEO", "--denoise", "0"], "--denoise 0.0 must lie in (0, 1]"),
    ],
)
def test_generate_refuses_bad_conditioning(tmp_path, files, capsys, args, message):
    args = [str(files["image"]) if a == "IMAGE" else str(files["video"]) if a == "VIDEO" else a for a in args]
    out = tmp_path / "bad.mp4"
    assert main(["generate", "--prompt", "a red circle moving left", "--out", str(out), "--no-audio", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_generate_holds_known_frames_the_way_the_dit_was_trained_for(tmp_path, files, capsys, monkeypatch):
    """The embedded DiT was fine-tuned with per-token timesteps, so they are its default; weights without that
    training (random ones here, the released ones) refuse them and take replacement."""
    from toy_weights import write_random_embedded

    from lumina_core.io.checkpoints import trained_conditioning

    assert trained_conditioning(embedded.file("dit")) == "timestep"
    args = ["generate", "--prompt", "a red circle moving left", "--no-audio", "--steps", "4", "--image"]
    assert main([*args, str(files["image"]), "--out", str(tmp_path / "a.mp4")]) == 0
    monkeypatch.setenv("LUMINA_VIDEO_EMBEDDED_DIR", str(write_random_embedded(tmp_path / "random")))
    refused = [*args, str(files["image"]), "--conditioning", "timestep", "--out", str(tmp_path / "b.mp4")]
    assert main(refused) == 2
    assert "were not fine-tuned with per-token timesteps" in capsys.readouterr().err
    assert main([*args, str(files["image"]), "--out", str(tmp_path / "c.mp4")]) == 0  # replacement by default
