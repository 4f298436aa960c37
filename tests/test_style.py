"""The sway style: the world draws it, the measure reads it, and train_lora learns it into a LoRA file."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from lumina_core import embedded, lora
from lumina_core.io.checkpoints import load_nextdit
from lumina_core.toyworld import style
from lumina_core.toyworld.metrics import score_clip
from lumina_core.toyworld.train_lora import main as train_lora_main
from lumina_core.toyworld.world import (
    COLOURS,
    DEFAULT_CONFIG,
    DIRECTIONS,
    SHAPE_SIZE,
    SHAPES,
    WorldConfig,
    heldout_clips,
    make_clip,
    sample_clip,
)


@pytest.fixture(scope="module")
def twins():
    """Clips drawn plain and swaying from the same parameters: every shape and direction, slow to fast."""
    cases = itertools.product(zip(COLOURS, SHAPES * 2), DIRECTIONS, (1.2, 3.5, 6.0))
    return [
        tuple(
            make_clip(colour, shape, direction, speed, 21.0, 13.0, config=config)
            for config in (DEFAULT_CONFIG, style.STYLE)
        )
        for (colour, shape), direction, speed in cases
    ]


def test_a_swaying_clip_is_its_plain_twin_swung_across_its_travel(twins):
    for plain, swaying in twins:
        across = 1 if plain.direction in ("left", "right") else 0
        along = 1 - across
        assert np.array_equal(swaying.positions[:, along], plain.positions[:, along])
        swing = swaying.positions[:, across] - swaying.positions[0, across]
        np.testing.assert_allclose(swing, style.SWAY * np.sin(2 * np.pi * np.arange(16) / style.SWAY_PERIOD), atol=1e-9)
        assert swaying.motion_score == pytest.approx(plain.motion_score, abs=1e-6)  # the swing is a look, not motion
        assert swaying.event_times == plain.event_times and np.array_equal(swaying.audio, plain.audio)


def test_swaying_clips_stay_in_the_frame():
    for clip in heldout_clips(4, 48, style.STYLE):
        assert clip.positions.min() >= SHAPE_SIZE / 2 and clip.positions.max() <= 64 - SHAPE_SIZE / 2


def test_the_measure_reads_plain_clips_as_zero_and_swaying_ones_as_one(twins):
    for plain, swaying in twins:
        plain_sway = style.sway_amplitude(plain.frames, plain.direction)
        swaying_sway = style.sway_amplitude(swaying.frames, swaying.direction)
        assert abs(plain_sway) < 0.05 and not style.is_styled(plain_sway) and style.style_score(plain_sway) < 0.02
        assert swaying_sway == pytest.approx(style.SWAY, abs=0.05)
        assert style.is_styled(swaying_sway) and style.style_score(swaying_sway) > 0.98


def test_the_metrics_read_colour_shape_and_direction_of_swaying_clips(twins):
    for _, clip in twins:
        score = score_clip(clip.frames, clip.caption, clip.fps)
        assert score.colour_correct and score.shape_correct and score.direction_correct, clip.caption


def test_half_the_sway_scores_half():
    half = replace(style.STYLE, sway=style.SWAY / 2)
    clip = sample_clip(0, 3, "heldout", half)
    amplitude = style.sway_amplitude(clip.frames, clip.direction)
    assert style.style_score(amplitude) == pytest.approx(0.5, abs=0.02)


def test_a_plain_world_has_no_sway_and_a_sway_that_leaves_no_room_is_refused():
    assert DEFAULT_CONFIG.sway == 0
    with pytest.raises(ValueError, match=r"sway 17.0 px every 8.0 frames: the sway must lie in \[0, 16.0\]"):
        WorldConfig(sway=17.0)


def test_train_lora_exports_a_small_lora_for_the_embedded_dit_and_resumes(tmp_path, capsys):
    runs, export = tmp_path / "runs", tmp_path / "style.safetensors"
    common = ["--clips", "4", "--batch", "2", "--rank", "4", "--runs", str(runs), "--export", str(export)]
    train_lora_main(["--steps", "2", "--save-every", "1", *common])
    dit, config, _ = load_nextdit(embedded.file("dit"))
    first = lora.load_lora(export, dit.state_dict())
    assert export.stat().st_size < 2e6
    assert first.metadata[lora.BASE_CONFIG_KEY] == config.to_json() and first.metadata[lora.NAME_KEY] == style.NAME
    assert first.metadata[lora.RANK_KEY] == "4" and all(first.down[m].shape[0] == 4 for m in first.modules)
    assert any("layers.3.adaLN_modulation.1" == m for m in first.modules)
    train_lora_main(["--steps", "3", *common])
    assert "resumed" in capsys.readouterr().out


def test_train_lora_refuses_unknown_targets(capsys):
    with pytest.raises(SystemExit):
        train_lora_main(["--steps", "1", "--targets", "attention,mlp"])
    assert (
        "argument --targets: mlp unknown; choose from attention, feed_forward, adaln, final" in capsys.readouterr().err
    )
