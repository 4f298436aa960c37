"""The README's main job: a video with sound from the embedded default, on a CPU."""

import re
import subprocess

import pytest

from lumina_core import embedded
from lumina_core.__main__ import main
from lumina_core.io.media import read_video

EMBEDDED_BUDGET_BYTES = 30e6
"""Issue 27: the embedded default's weights, the style LoRA included, at most 30 MB in all."""


def test_generate_writes_a_video_with_sound(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert (
        main(["generate", "--prompt", "a red circle moving left", "--motion", "6", "--seed", "0", "--out", str(out)])
        == 0
    )
    video = read_video(out)
    assert video.frames.shape == (16, 64, 64, 3)
    assert video.fps == 8
    assert video.audio is not None and video.sample_rate == 16000
    assert abs(video.audio.shape[-1] - 2 * 16000) <= 1024  # 16 frames at 8 fps, within one AAC frame
    out_text = capsys.readouterr().out
    assert "wrote" in out_text
    timings = re.fullmatch(
        r"timings: text (\S+) s, sampling (\S+) s, decode (\S+) s, sound (\S+) s, total (\S+) s, clip (\S+) s",
        out_text.strip().splitlines()[-1],
    )
    assert timings, out_text
    text, sampling, decode, sound, total, clip = map(float, timings.groups())
    assert clip == 2.0 and min(text, sampling, decode, sound) >= 0 and total >= text + sampling + decode + sound


def test_the_embedded_default_ships_within_its_size_budget():
    names = [*embedded.FILES.values(), embedded.STYLE_LORA]
    sizes = {name: (embedded.PACKAGE_DIR / name).stat().st_size for name in names}
    assert sum(sizes.values()) <= EMBEDDED_BUDGET_BYTES, sizes


def test_the_repository_carries_weights_only_in_the_embedded_folder():
    """The 30 MB budget counts the embedded folder: a weight file committed anywhere else (a stray copy) is a
    defect that the budget test alone would not see."""
    root = embedded.PACKAGE_DIR.parents[1]
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = [root / name for name in listed.stdout.decode().split("\0") if name]
    weights = [path for path in tracked if path.suffix in {".safetensors", ".pt", ".pth", ".ckpt", ".bin"}]
    assert weights and all(path.parent == embedded.PACKAGE_DIR for path in weights), weights


@pytest.mark.parametrize(
    "args, message",
    [
        (["--width", "100"], "width 100 must be a multiple of 32"),
        (["--frames", "12"], "try 8 or 16"),
        (["--width", "128", "--tile", "64", "128"], "--tile 64x128 is larger than the model takes (64x64)"),
        (["--width", "128", "--tile", "60", "60"], "--tile 60x60 (height x width) must be multiples of 8 pixels"),
        (["--width", "128", "--tile-overlap", "64"], "--tile-overlap 64 must be a multiple of 8 from 0 to 56"),
        (["--width", "128", "--tile", "64", "64", "--tile-overlap", "8"], "multiples of the spatial patch 4"),
        (["--upscale", "0"], "--upscale 0 must be a whole factor of at least 1"),
        (["--upscale", "2", "--refine-start", "1"], "--refine-start 1.0 must lie in (0, 1)"),
        (["--cfg", "(4, 0.6)"], "cfg must be"),
        (
            ["--motion-cfg", "(10, (2, 0))"],
            "--motion-cfg must be a float or (v0, (t1, v1), ...) with increasing t in [0, 1]",
        ),
        (["--patch", "3x3"], "patch"),
    ],
)
def test_generate_refuses_what_the_model_cannot_do(tmp_path, capsys, args, message):
    out = tmp_path / "bad.mp4"
    assert main(["generate", "--prompt", "a red circle moving left", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "a majestic dragon moving left"], "doesn't know 'majestic', 'dragon'"),
        (["--prompt", "a red circle", "--negative-prompt", "blurry"], "the --negative-prompt 'blurry'"),
        (["--prompt", " ".join(["red"] * 16)], "reads at most 15 words and this has 16"),
    ],
)
def test_generate_refuses_words_the_embedded_model_does_not_know(tmp_path, capsys, args, message):
    """Words outside the toy vocabulary would read as one unknown token: refused before sampling, naming them,
    listing the words the model knows and saying where real weights go."""
    out = tmp_path / "bad.mp4"
    assert main(["generate", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "circle square triangle" in err and "released weights" in err
    assert not out.exists()
    assert not out.exists()


@pytest.mark.parametrize(
    "args, printed",
    [
        (["--width", "128", "--height", "128"], "tiles: 64x64 overlapping by 32 px, fused"),
        (["--upscale", "2"], "upscale: 2x to 128x128 by a refine pass from t = 0.9 in tiles of 64x64"),
    ],
)
def test_frames_larger_than_the_model_takes_come_in_fused_tiles(tmp_path, capsys, args, printed):
    out = tmp_path / "large.mp4"
    assert main(["generate", "--prompt", "a red circle moving left", "--no-audio", "--out", str(out), *args]) == 0
    assert read_video(out).frames.shape == (16, 128, 128, 3)
    assert printed in capsys.readouterr().out


@pytest.mark.skipif(not embedded.available(), reason="no embedded default")
def test_the_refine_pass_runs_without_skip_layer_guidance(monkeypatch):
    """Text-to-video keeps the preset's skip-layer guidance; the refine pass drops it (docs/embedded-default.md)."""
    import torch

    from lumina_core import pipeline
    from lumina_core.sampling import PRESETS, WindowPlan

    configs = []

    def recording(model, noise, positive, negative, config, *args):
        configs.append(config)
        return torch.zeros_like(noise)

    monkeypatch.setattr(pipeline, "sample", recording)
    models = embedded.load(with_audio=False)
    config = PRESETS[embedded.PRESET].with_(skip_guidance=(0.0, (0.5, 1.0)))
    cond, uncond = pipeline.encode_prompts(models, ["a red circle moving left"]), pipeline.encode_prompts(models, [""])
    pipeline.sample_latent(models, cond, uncond, 64, 64, 8, 0, config)
    frames = torch.rand(1, 8, 64, 64, 3)
    pipeline.refine(models, frames, cond, uncond, config, 2, 0.9, 0, WindowPlan(2, 0, tile=(8, 8), tile_overlap=4))
    assert [c.skip_guidance for c in configs] == [(0.0, (0.5, 1.0)), 0.0]
    assert configs[1] == config.with_(skip_guidance=0.0)
