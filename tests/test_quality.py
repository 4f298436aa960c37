"""Quality gates of the embedded default, measured on held-out toy-world prompts.

The same measurements as ``python -m lumina_core.toyworld.evaluate`` (the README table), on
the targets of the toy-world issue: colour >= 95%, shape >= 90%, direction >= 90%, motion
following the motion score (Spearman >= 0.9), multi-scale within 3 points of single-scale at
no more than 0.4 of its sampling time, and sound landing on the bounces (onset F1 >= 0.8).
"""

import pytest

from lumina_core.toyworld.evaluate import TARGETS, caption_accuracy, motion_response
from lumina_core.toyworld.train_v2a import evaluate_v2a
from lumina_core.pipeline import load_embedded
from lumina_core.toyworld.world import heldout_clips

CLIPS = 100


@pytest.fixture(scope="module")
def models():
    return load_embedded(with_audio=True)


@pytest.fixture(scope="module")
def captions():
    return [clip.caption for clip in heldout_clips(seed=1, n=CLIPS)]


@pytest.fixture(scope="module")
def accuracy(models, captions):
    return {preset: caption_accuracy(models, captions, preset, seed=1, batch=50) for preset in ("embedded", "embedded-MultiScale")}


@pytest.mark.parametrize("preset", ["embedded", "embedded-MultiScale"])
def test_video_shows_what_the_prompt_asked(accuracy, preset):
    scores, _ = accuracy[preset]
    for key in ("colour", "shape", "direction"):
        assert scores[key] >= TARGETS[key], f"{preset}: {key} accuracy {scores[key]:.2f} < {TARGETS[key]}"


def test_multiscale_keeps_quality_at_a_fraction_of_the_time(accuracy):
    (single, single_time), (multi, multi_time) = accuracy["embedded"], accuracy["embedded-MultiScale"]
    for key in ("colour", "shape", "direction"):
        assert single[key] - multi[key] <= TARGETS["multiscale_gap"], f"{key}: {multi[key]:.2f} vs {single[key]:.2f}"
    assert multi_time / single_time <= TARGETS["multiscale_time"]


def test_motion_follows_the_slider(models, captions):
    response = motion_response(models, captions[:16], seed=2, batch=64)
    assert response["spearman"] >= TARGETS["motion_spearman"], response["by_value"]
    gaps = list(response["by_negative"].values())  # largest pos-neg gap first
    assert gaps == sorted(gaps, reverse=True), response["by_negative"]


def test_sound_lands_on_the_bounces_and_lasts_as_long_as_the_video(models):
    scores = evaluate_v2a(models.v2a, n_clips=CLIPS, seed=1)
    assert scores["f1"] >= TARGETS["onset_f1"], scores
    assert scores["duration_exact"] == 1.0
