"""Quality gates of the embedded default, measured on held-out toy-world prompts.

The same measurements as ``python -m lumina_core.toyworld.evaluate`` (the README table), on
the targets of the toy-world issue: colour >= 95%, shape >= 90%, direction >= 90%, motion
following the motion score (Spearman >= 0.9), multi-scale within 3 points of single-scale, and
sound landing on the bounces (onset F1 >= 0.8). Multi-scale's sampling time (at most 0.4 of
single-scale's) is a wall-clock ratio: ``python -m lumina_core bench --part embedded`` gates it.

How the motion runs in time (issue 27): at most one still frame at the start in 95 % of clips,
and a median-clip stutter (largest over median frame-to-frame move) of at most 2, checked on the
ground-truth clips, on the same clips through the VAE alone, and on the DiT's videos, so a miss
names the part that causes it.

Targets the current embedded weights miss are marked ``xfail`` with the measured figure: the
test still runs and asserts the unlowered target. The older misses are not strict (they report
XPASS the day the weights meet them); the timing misses are strict, so the change that fixes
one fails here until its record is updated. The misses and what was tried are in the README's
quality table and docs/embedded-default.md.
"""

import pytest

from lumina_core import embedded
from lumina_core.toyworld.evaluate import (
    MOTION_CLIPS,
    TARGETS,
    accuracy,
    accuracy_drop,
    motion_response,
    preset_scores,
    real_clip_timing,
    timing_summary,
)
from lumina_core.toyworld.train_v2a import evaluate_v2a
from lumina_core.toyworld.world import heldout_clips

pytestmark = pytest.mark.quality

CLIPS = 100
PRESETS = embedded.PRESETS
NOT_YET = "target missed by the current embedded weights (README quality table): {}"
NOT_YET_IN_TIME = "target missed by the current embedded weights (docs/embedded-default.md, motion in time): {}"


@pytest.fixture(scope="module")
def models():
    return embedded.load(with_audio=True)


@pytest.fixture(scope="module")
def clips():
    return heldout_clips(seed=1, n=CLIPS)


@pytest.fixture(scope="module")
def captions(clips):
    return [clip.caption for clip in clips]


@pytest.fixture(scope="module")
def scores(models, captions):
    return {preset: preset_scores(models, captions, preset, seed=1, batch=50) for preset in PRESETS}


@pytest.fixture(scope="module")
def accuracies(scores):
    return {preset: accuracy(clip_scores) for preset, clip_scores in scores.items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_colour_follows_the_prompt(accuracies, preset):
    assert accuracies[preset]["colour"] >= TARGETS["colour"], accuracies[preset]


@pytest.mark.xfail(
    reason=NOT_YET.format(
        "shape 0.87 single-scale, 0.86 multi-scale here (0.83 / 0.82 in evaluate; 0.81 / 0.73 here before the "
        "presets' skip-layer guidance of 2026-12-08), of 0.90: some triangles of the two held-out triangle "
        "combinations (blue moving right, white moving up) still come out as circles, docs/embedded-default.md"
    ),
    strict=False,
)
@pytest.mark.parametrize("preset", PRESETS)
def test_shape_follows_the_prompt(accuracies, preset):
    assert accuracies[preset]["shape"] >= TARGETS["shape"], accuracies[preset]


@pytest.mark.parametrize("preset", PRESETS)
def test_direction_follows_the_prompt(accuracies, preset):
    assert accuracies[preset]["direction"] >= TARGETS["direction"], accuracies[preset]


def test_multiscale_keeps_the_accuracy_of_single_scale(accuracies):
    single, multi = accuracies["embedded"], accuracies["embedded-MultiScale"]
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


@pytest.fixture(scope="module")
def timing(models, scores, clips):
    summaries = {preset: timing_summary([score.measured for score in scores[preset]]) for preset in PRESETS}
    return dict(summaries, **real_clip_timing(models.vae, clips, batch=50))


def starts_moving(summary) -> bool:
    return summary["moving_start"] >= TARGETS["moving_start"]


def runs_steadily(summary) -> bool:
    return summary["stutter"] <= TARGETS["stutter"]


def test_ground_truth_starts_moving_and_runs_steadily(timing):
    assert starts_moving(timing["truth"]) and runs_steadily(timing["truth"]), timing["truth"]


@pytest.mark.xfail(
    reason=NOT_YET_IN_TIME.format(
        "through the VAE alone 0.51 of the clips start with at most one still frame in evaluate, of 0.95 (0.00 "
        "before the decoder's look-ahead of 2026-12-07): real clips come back with 1 to 3"
    ),
    strict=True,
)
def test_the_vae_keeps_the_start_moving(timing):
    assert starts_moving(timing["vae"]), timing["vae"]


def test_the_vae_keeps_the_motion_steady(timing):
    assert runs_steadily(timing["vae"]), timing["vae"]


@pytest.mark.parametrize("preset", PRESETS)
def test_videos_start_moving(timing, preset):
    assert starts_moving(timing[preset]), timing[preset]


@pytest.mark.xfail(
    reason=NOT_YET_IN_TIME.format(
        "the median video's stutter is 2.79 single-scale, 2.73 multi-scale here, 2.66 / 2.72 in evaluate "
        "(2.56 / 2.30 here before the presets' skip-layer guidance, 3.06 / 3.03 with the 128 x 4 DiT, 5.41 / 5.08 "
        "before the decoder's look-ahead), of at most 2.0: the largest moves still come at latent-frame borders"
    ),
    strict=True,
)
@pytest.mark.parametrize("preset", PRESETS)
def test_videos_run_steadily(timing, preset):
    assert runs_steadily(timing[preset]), timing[preset]
