"""The toy world's guarantees, and its metrics scoring true clips near 100% and broken ones low."""

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from lumina_core.io.media import read_video
from lumina_core.toyworld import metrics, world

SEED = 2024
TOLERANCE = 1 / float(world.FPS)


@pytest.fixture(scope="module")
def train_clips():
    return world.train_clips(SEED, 200)


@pytest.fixture(scope="module")
def heldout_clips():
    return world.heldout_clips(SEED, 60)


def spearman(a, b):
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def gaussian_blur(frames, sigma):
    """Separable 7-tap Gaussian blur of [F, H, W, 3] frames, edges replicated."""
    offsets = np.arange(-3, 4)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    for axis in (1, 2):
        padded = np.pad(frames, [(3, 3) if a == axis else (0, 0) for a in range(4)], mode="edge")
        size = frames.shape[axis]
        frames = sum(w * np.take(padded, range(k, k + size), axis=axis) for k, w in enumerate(kernel))
    return frames.astype(np.float32)


# The world


def test_clips_are_deterministic_by_seed_and_index():
    first, again = world.sample_clip(7, 3), world.train_clips(7, 5)[3]
    assert first.caption == again.caption and first.speed == again.speed
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.audio, again.audio)
    other = world.sample_clip(8, 3)
    assert not np.array_equal(first.frames, other.frames)


def test_clip_layout_and_constants(train_clips):
    clip = train_clips[0]
    assert clip.frames.shape == (world.NUM_FRAMES, world.HEIGHT, world.WIDTH, 3) == (16, 64, 64, 3)
    assert clip.frames.dtype == np.float32 and 0.0 <= clip.frames.min() and clip.frames.max() <= 1.0
    assert clip.fps == Fraction(8) and clip.sample_rate == 16000
    assert len(world.PALETTE) >= 5 and world.SHAPES == ("circle", "square", "triangle")
    colours = np.array(list(world.PALETTE.values()))
    pairwise = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert pairwise[~np.eye(len(colours), dtype=bool)].min() > 0.5
    assert np.linalg.norm(colours - np.array(world.DEFAULT_CONFIG.background), axis=1).min() > 0.5


def test_audio_is_exactly_as_long_as_the_video(train_clips):
    for clip in train_clips:
        assert clip.audio.shape == (world.NUM_FRAMES * world.SAMPLE_RATE // 8,)
        assert clip.audio.dtype == np.float32 and np.abs(clip.audio).max() <= 1.0
    config = world.WorldConfig(num_frames=24, fps=12, sample_rate=22050)
    assert world.sample_clip(0, 0, config=config).audio.shape == (44100,)
    with pytest.raises(ValueError, match="whole number of samples"):
        world.WorldConfig(num_frames=7, fps=Fraction(30000, 1001), sample_rate=16000)


def test_kinematics_guarantees(train_clips):
    config = world.DEFAULT_CONFIG
    low, high = config.shape_size / 2, config.width - config.shape_size / 2
    for clip in train_clips:
        assert config.speed_range[0] <= clip.speed <= config.speed_range[1]
        assert clip.positions.min() >= low - 1e-9 and clip.positions.max() <= high + 1e-9
        frames_at_events = np.array(clip.event_times) * float(clip.fps)
        assert np.all(frames_at_events >= config.frames_before_first_bounce)
        assert np.all(frames_at_events <= config.num_frames - 2)
        dx, dy = world.DIRECTION_VECTORS[clip.direction]
        opening = clip.positions[config.frames_before_first_bounce] - clip.positions[0]
        np.testing.assert_allclose(opening, np.array([dx, dy]) * clip.speed * config.frames_before_first_bounce)
        if clip.speed > 6:
            assert clip.event_times, "fast clips must bounce"


def test_other_sizes_keep_the_guarantees_and_the_metrics():
    config = world.WorldConfig(width=96, height=64, num_frames=24, fps=12, speed_range=(1.0, 6.0))
    for index in range(30):
        clip = world.sample_clip(5, index, config=config)
        assert clip.frames.shape == (24, 64, 96, 3)
        assert clip.positions[:, 0].min() >= 8 and clip.positions[:, 0].max() <= 88
        assert clip.positions[:, 1].min() >= 8 and clip.positions[:, 1].max() <= 56
        measured = metrics.measure_video(clip.frames, clip.fps, config)
        assert (measured.colour, measured.shape, measured.direction) == (clip.colour, clip.shape, clip.direction)
        assert len(measured.bounce_times) == len(clip.event_times)


def test_clicks_start_at_the_wall_contacts():
    # distance 10 px at 2 px/frame: contact at frame 5 (0.625 s), then every (64 - 32) / 2 = 16 frames (past the end).
    clip = world.make_clip("red", "square", "right", speed=2.0, distance_ahead=10.0, across=20.0)
    assert clip.event_times == (0.625,)
    assert clip.positions[5, 0] == pytest.approx(world.WIDTH - world.SHAPE_SIZE / 2)
    audible = np.flatnonzero(np.abs(clip.audio) > 1e-3)
    assert audible[0] in (10000, 10001)
    assert audible[-1] < 10000 + world.DEFAULT_CONFIG.click_seconds * 16000


def test_click_pitch_follows_the_shape():
    for shape, pitch in world.SHAPE_PITCH_HZ.items():
        clip = world.make_clip("blue", shape, "up", speed=8.0, distance_ahead=40.0, across=5.0)
        spectrum = np.abs(np.fft.rfft(clip.audio))
        assert np.fft.rfftfreq(len(clip.audio), 1 / 16000)[spectrum.argmax()] == pytest.approx(pitch, abs=5)


def test_onsets_match_the_recorded_event_times(train_clips):
    errors = []
    for clip in train_clips:
        onsets = metrics.detect_onsets(clip.audio, clip.sample_rate)
        assert len(onsets) == len(clip.event_times)
        errors.extend(np.abs(onsets - np.array(clip.event_times)))
    assert max(errors) < 0.005


def test_motion_score_is_measured_on_the_frames(train_clips):
    for clip in train_clips:
        assert metrics.measure_motion(clip.frames) == pytest.approx(clip.motion_score, abs=0.01)
        if not clip.event_times:
            assert clip.motion_score == pytest.approx(clip.speed, abs=0.01)
        else:
            assert clip.motion_score <= clip.speed + 0.01


def test_heldout_combinations_and_templates_never_appear_in_training(train_clips, heldout_clips):
    assert not set(world.TRAIN_COMBINATIONS) & world.HELDOUT_COMBINATIONS
    assert not set(world.TRAIN_TEMPLATES) & set(world.HELDOUT_TEMPLATES)
    for colour, shape, direction in world.HELDOUT_COMBINATIONS:  # every pair is still learnable
        assert any(c == colour and s == shape for c, s, _ in world.TRAIN_COMBINATIONS)
        assert any(c == colour and d == direction for c, _, d in world.TRAIN_COMBINATIONS)
        assert any(s == shape and d == direction for _, s, d in world.TRAIN_COMBINATIONS)
    train_captions = set()
    for clip in train_clips + world.train_clips(SEED + 1, 400):
        assert (clip.colour, clip.shape, clip.direction) not in world.HELDOUT_COMBINATIONS
        train_captions.add(clip.caption)
        assert not any(
            clip.caption == t.format(colour=clip.colour, shape=clip.shape, direction=clip.direction)
            for t in world.HELDOUT_TEMPLATES
        )
    for clip in heldout_clips:
        assert clip.split == "heldout" and clip.caption not in train_captions
    combos = [(c.colour, c.shape, c.direction) in world.HELDOUT_COMBINATIONS for c in heldout_clips]
    assert combos[0::2] == [True] * len(combos[0::2])


def test_vocabulary_covers_every_caption_and_heldout_templates_use_only_training_words():
    assert len(set(world.VOCABULARY)) == len(world.VOCABULARY) == 18
    train_words = {
        w
        for t in world.TRAIN_TEMPLATES
        for w in world.caption_words(t.format(colour="red", shape="circle", direction="up"))
    }
    for template in world.TEMPLATES:
        for colour, shape, direction in world.ALL_COMBINATIONS:
            caption = template.format(colour=colour, shape=shape, direction=direction)
            assert set(world.caption_words(caption)) <= set(world.VOCABULARY)
            assert set(world.caption_words(caption)) - {colour, shape, direction} <= train_words
    assert world.caption_words("A red Circle, moving LEFT quickly!") == [
        "a",
        "red",
        "circle",
        "moving",
        "left",
        "quickly",
    ]
    assert world.parse_caption("the Green triangle travels up") == ("green", "triangle", "up")
    assert world.parse_caption("something else") == (None, None, None)


def test_preview_writes_playable_clips_that_still_score(tmp_path):
    world.main(["--out", str(tmp_path), "--n", "2", "--scale", "1", "--seed", "3"])
    videos = sorted(tmp_path.glob("*.mp4"))
    assert len(videos) == 2
    for index, path in enumerate(videos):
        clip = world.sample_clip(3, index)
        frames, fps, audio, sample_rate = read_video(path)
        assert frames.shape == clip.frames.shape and fps == clip.fps
        score = metrics.score_clip(frames, clip.caption, fps, audio, sample_rate)
        assert score.colour_correct and score.shape_correct and score.direction_correct
        assert score.sync.f1 == 1.0


def test_preview_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "lumina_core.toyworld.world", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout and "--n" in result.stdout


# The metrics


def measure_all(clips, transform=lambda clip: clip.frames):
    rows, sync = [], metrics.SyncScore(0, 0, 0)
    for clip in clips:
        frames = transform(clip)
        measured = metrics.measure_video(frames, clip.fps)
        sync += metrics.match_events(
            metrics.detect_onsets(clip.audio, clip.sample_rate), measured.bounce_times, TOLERANCE
        )
        rows.append(
            (measured.colour == clip.colour, measured.shape == clip.shape, measured.direction == clip.direction)
        )
        rows[-1] += (measured.motion, measured.flicker)
    table = np.array(rows, dtype=float)
    return table[:, :3].mean(axis=0), table[:, 3], table[:, 4], sync


def test_metrics_score_true_clips_near_100_percent(train_clips):
    accuracy, motion, flicker, sync = measure_all(train_clips)
    correlation = spearman(motion, [clip.speed for clip in train_clips])
    print(
        f"\nground truth, 200 clips: colour/shape/direction accuracy {accuracy}, motion-speed Spearman "
        f"{correlation:.4f}, sync P/R/F1 {sync.precision:.3f}/{sync.recall:.3f}/{sync.f1:.3f} "
        f"over {sync.events} bounces, max flicker {flicker.max():.2e}"
    )
    assert np.all(accuracy >= 0.98)
    assert correlation >= 0.95
    assert sync.f1 >= 0.95 and sync.events > 100
    assert flicker.max() < 1e-3


def test_metrics_hold_on_heldout_clips(heldout_clips):
    accuracy, _, _, sync = measure_all(heldout_clips)
    assert np.all(accuracy >= 0.98) and sync.f1 >= 0.95


def test_metrics_survive_blur_and_noise(train_clips):
    rng = np.random.default_rng(0)

    def degrade(clip):
        noisy = gaussian_blur(clip.frames, 1.0) + rng.normal(0, 0.03, clip.frames.shape).astype(np.float32)
        return np.clip(noisy, 0, 1)

    clips = train_clips[:80]
    accuracy, motion, flicker, sync = measure_all(clips, degrade)
    print(f"\nblur 1 px + noise 0.03: accuracy {accuracy}, sync F1 {sync.f1:.3f}, mean flicker {flicker.mean():.3f}")
    assert np.all(accuracy >= 0.95)
    assert spearman(motion, [clip.speed for clip in clips]) >= 0.95
    assert sync.f1 >= 0.9
    assert flicker.mean() > 0.01  # noise shows up as flicker


def test_sync_fails_for_shuffled_frames_silence_and_other_clips_sound(train_clips):
    rng = np.random.default_rng(1)
    clips = train_clips[:100]
    shuffled, silent, swapped = (metrics.SyncScore(0, 0, 0) for _ in range(3))
    for index, clip in enumerate(clips):
        shuffled += metrics.audio_visual_sync(
            clip.frames[rng.permutation(len(clip.frames))], clip.audio, clip.sample_rate, clip.fps
        )
        silent += metrics.audio_visual_sync(clip.frames, np.zeros_like(clip.audio), clip.sample_rate, clip.fps)
        swapped += metrics.audio_visual_sync(clip.frames, clips[index - 1].audio, clip.sample_rate, clip.fps)
    print(
        f"\nsync F1: shuffled frames {shuffled.f1:.3f}, silent track {silent.f1:.3f}, "
        f"another clip's sound {swapped.f1:.3f}"
    )
    assert shuffled.f1 < 0.5 and silent.f1 == 0.0 and swapped.f1 < 0.5


def test_wrong_content_is_caught():
    clip = world.make_clip("yellow", "triangle", "down", speed=5.0, distance_ahead=30.0, across=20.0)
    score = metrics.score_clip(clip.frames, "a blue square moving up", clip.fps)
    assert not (score.colour_correct or score.shape_correct or score.direction_correct)
    assert score.sync is None
    blank = np.full_like(clip.frames, 0.2)
    measured = metrics.measure_video(blank, clip.fps)
    assert (measured.colour, measured.shape, measured.direction, measured.motion) == (None, None, None, 0.0)
    assert measured.bounce_times == ()
    still = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert metrics.measure_video(still, clip.fps).direction is None


def test_sync_score_arithmetic():
    score = metrics.match_events([0.1, 0.5, 0.52, 1.5], [0.12, 0.5, 1.0], tolerance_seconds=0.125)
    assert (score.matched, score.onsets, score.events) == (2, 4, 3)
    assert score.precision == 0.5 and score.recall == pytest.approx(2 / 3) and score.f1 == pytest.approx(4 / 7)
    assert metrics.match_events([], [], 0.1).f1 == 1.0
    assert (score + score).f1 == score.f1


def test_optical_flow_agrees_with_the_centroid_motion(train_clips):
    """Optional cross-check with OpenCV's Farneback flow, when opencv is installed."""
    cv2 = pytest.importorskip("cv2")
    flow_motion = []
    for clip in train_clips[:60]:
        grey = [cv2.cvtColor((frame * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for frame in clip.frames]
        magnitudes = []
        for before, after in zip(grey[:-1], grey[1:]):
            flow = cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            on_shape = np.abs(before.astype(int) - int(np.median(before))) > 10
            magnitudes.append(np.linalg.norm(flow, axis=-1)[on_shape].mean())
        flow_motion.append(np.mean(magnitudes))
    assert spearman(flow_motion, [clip.motion_score for clip in train_clips[:60]]) >= 0.95


# How the motion runs in time: still frames at the start, stutter


def frames_along(xs, shape="square"):
    """[F, H, W, 3] frames of a red ``shape`` whose box centre runs through ``xs`` along the middle row."""
    positions = np.stack([xs, np.full_like(xs, world.HEIGHT / 2)], axis=1)
    return world.render_frames("red", world.shape_coverage(shape, positions))


def test_frozen_start_counts_the_still_frames_at_the_start():
    start = world.SHAPE_SIZE / 2
    moving = start + 2.0 * np.arange(world.NUM_FRAMES)
    held = np.concatenate([np.full(3, start), moving[: world.NUM_FRAMES - 3]])  # frames 0-3 alike
    assert metrics.frozen_start(metrics.centroid_steps(frames_along(moving))) == 1
    assert metrics.frozen_start(metrics.centroid_steps(frames_along(held))) == 4
    assert metrics.frozen_start(metrics.centroid_steps(frames_along(np.full(world.NUM_FRAMES, start)))) == 16
    assert metrics.frozen_start(np.array([0.0, 0.2, 0.4, 3.0, 0.0])) == 4


def test_the_slowest_true_clips_start_moving(train_clips):
    slowest = world.make_clip("blue", "triangle", "up", speed=world.SPEED_RANGE[0], distance_ahead=20.0, across=5.0)
    for clip in [slowest, *train_clips]:
        assert metrics.frozen_start(metrics.centroid_steps(clip.frames)) == 1, (clip.caption, clip.speed)


def test_stutter_is_one_for_steady_motion_and_the_jump_over_the_median_step():
    steady = world.SHAPE_SIZE / 2 + 2.0 * np.arange(world.NUM_FRAMES)
    assert metrics.stutter(metrics.centroid_steps(frames_along(steady, "circle"))) == pytest.approx(1.0, abs=0.02)
    steps = np.tile([1.0, 1.0, 1.0, 4.0], 4)[: world.NUM_FRAMES - 1]  # a 4 px jump at each 4-frame group's border
    jumpy = world.SHAPE_SIZE / 2 + np.concatenate([[0.0], np.cumsum(steps)])
    assert metrics.stutter(metrics.centroid_steps(frames_along(jumpy))) == pytest.approx(4.0, abs=0.1)
    assert metrics.stutter(np.array([0.0, 0.0, 0.0, 5.0])) == float("inf")


def test_true_clips_run_steadily_but_for_their_bounces(train_clips):
    stutters = [metrics.stutter(metrics.centroid_steps(clip.frames)) for clip in train_clips]
    assert max(stutters) <= 1.1, max(stutters)  # a bounce's step is shorter, never longer
    measured = metrics.measure_video(train_clips[0].frames, train_clips[0].fps)
    assert measured.frozen_start == 1 and measured.stutter == pytest.approx(stutters[0])
    blank = metrics.measure_video(np.full_like(train_clips[0].frames, 0.2), train_clips[0].fps)
    assert blank.frozen_start is None and blank.stutter is None


def test_still_group_frames_hold_the_shape_at_each_groups_mean_position(train_clips):
    """The decoder's still-group input: within each group of 4 frames one still picture, the shape where the clip's
    shape is on average over the group, so the motion between groups is the clip's."""
    clip = train_clips[0]
    held = world.still_group_frames(clip, 4)
    assert held.shape == clip.frames.shape
    groups = held.reshape(4, 4, *held.shape[1:])
    assert np.array_equal(groups, np.repeat(groups[:, :1], 4, axis=1))
    track = metrics.centroid_track(held)[::4]  # [4, 2]
    expected = clip.positions.reshape(4, 4, 2).mean(axis=1)
    assert np.abs(track - expected).max() < 1.0
    assert metrics.detect_shape(held) == clip.shape
    with pytest.raises(ValueError, match="don't split into groups of 3"):
        world.still_group_frames(clip, 3)
