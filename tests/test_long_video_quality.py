"""Long videos on the toy world (lumina_core/toyworld/long_video.py): 64 frames in fused windows, a small run.

The figures and the full run are in docs/long-videos.md. A target the embedded default misses is recorded as a
strict xfail with the figure measured, so that it shows up the day it is met.
"""

import pytest
import torch

from lumina_core import embedded
from lumina_core.pipeline import generate_audio
from lumina_core.toyworld.long_video import FRAMES, SOUND_TARGETS, TARGETS, checks, evaluate, met

pytestmark = [pytest.mark.quality, pytest.mark.skipif(not embedded.available(), reason="no embedded default")]

CLIPS = 8
MISSES = {
    "shape_steady": "0.625 of 8 clips read one shape in all four quarters (0.500 before the presets' skip-layer "
    "guidance; 0.700 on 50 then, naive chunking 0.800)",
    "stutter_median": "median stutter 3.55 (2.97 before the presets' skip-layer guidance; 3.28 on 50 then, naive "
    "chunking 5.50)",
}
"""target name -> the figure measured at CLIPS clips (tests/test_long_video_quality.py, docs/long-videos.md)."""


@pytest.fixture(scope="module")
def report():
    return evaluate(CLIPS, seed=0, batch=4, cost=False)


def targets():
    for name in TARGETS:
        marks = [pytest.mark.xfail(strict=True, reason=MISSES[name])] if name in MISSES else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(targets()))
def test_windows_meet_the_target(report, name):
    value, (sign, bound), ok = checks(report)[name]
    assert ok, f"{name} {value:.3f}, target {sign} {bound}"


def test_windows_join_their_chunks_more_smoothly_than_naive_chunking(report):
    assert report["windows"]["join_jump_median"] < report["naive"]["join_jump_median"]


@pytest.mark.parametrize(
    "name",
    [
        "colour_steady",
        pytest.param(
            "shape_steady",
            marks=pytest.mark.xfail(
                strict=True,
                reason="windows 0.625 of 8 clips, fewer than naive chunking (0.500 before the presets' skip-layer "
                "guidance; 0.700 against 0.800 on 50 then; met by the 128 x 4 DiT before 2026-12-07, 0.625 both)",
            ),
        ),
    ],
)
def test_windows_hold_colour_and_shape_across_the_clip_at_least_as_often_as_naive_chunking(report, name):
    assert report["windows"][name] >= report["naive"][name], name


@pytest.mark.parametrize(
    "name",
    ["onset_f1", "duration_exact"],
)
def test_the_sound_of_the_windowed_clips(report, name):
    sign, bound = SOUND_TARGETS[name]
    assert met(report["sound"][name], (sign, bound)), f"{name} {report['sound'][name]:.3f}, target {sign} {bound}"


def test_the_sound_of_a_long_clip_is_exactly_frames_over_fps_long():
    models = embedded.load()
    frames = torch.rand(1, FRAMES, embedded.HEIGHT, embedded.WIDTH, 3, generator=torch.Generator().manual_seed(0))
    waveform, sample_rate = generate_audio(models, frames, embedded.FPS, seed=0, steps=2)
    assert waveform.shape[-1] * embedded.FPS == FRAMES * sample_rate
