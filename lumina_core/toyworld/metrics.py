"""Scoring toy-world videos from their pixels and sound alone, no learned metric model.

Every measure starts from the same segmentation, chosen to survive the blur, noise and
colour drift of a generated video:

- the background is each frame's median colour (the shape covers at most a quarter of a frame);
- contrast is a pixel's RGB distance from that background;
- the shape's core is where contrast exceeds half the frame's near-peak contrast (its
  99th percentile, which lies inside the shape), cleaned by a 3x3 morphological opening
  that removes isolated noise pixels; frames whose peak contrast is under
  ``MIN_CONTRAST`` have no shape;
- the region is the core grown by ``REGION_MARGIN`` px, and the silhouette the pixels
  above half the peak inside it (the opening alone would cut the triangle's tips);
- centroids weigh contrast (above the frame's median, the noise floor) over the region,
  so antialiased or blurred edges count in proportion to their coverage.

Measures:

- colour: the median RGB of the inner core (contrast >= 75% of peak) over all frames,
  snapped to the nearest ``PALETTE`` colour;
- shape: per frame, the silhouette cropped to its bounding box and pooled to 8x8 is
  matched to the nearest ideal silhouette (square: full box; circle: empty corners;
  triangle: empty top corners); the majority over frames wins. Cropping makes it
  independent of size, pooling tolerant of blurred edges;
- direction: the centroid's displacement over the world's bounce-free opening
  (frames 0..``frames_before_first_bounce``), its larger axis and sign;
- motion: the mean per-frame centroid displacement in pixels (the world's motion score);
- flicker: the mean absolute frame-to-frame change of pixels that are background in
  both frames (0 for the world's own clips);
- visual bounces: reversals of the centroid's velocity along the dominant axis, timed
  where the incoming and outgoing straight paths meet (exact for a reflection);
- audio onsets: rises of a 4 ms RMS envelope through a threshold, with hysteresis;
- sync: onsets matched one-to-one to bounces within +-1 video frame, as precision,
  recall and F1.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .world import DEFAULT_CONFIG, DIRECTION_VECTORS, PALETTE, SHAPES, WorldConfig, parse_caption, signed_distance

ArrayLike = Union[np.ndarray, torch.Tensor]

MIN_CONTRAST = 0.3
"""Peak RGB distance from the background below which a frame is taken to show no shape."""

REGION_MARGIN = 3
"""Pixels by which the core is grown to take in edges and thin tips (the opening trims the triangle's apex)."""

SILHOUETTE_GRID = 8
"""Side of the grid that cropped silhouettes are pooled to before they are compared."""

STILL_STEP = 0.5 * DEFAULT_CONFIG.speed_range[0]
"""Centroid move in px below which a frame counts as still: half the world's slowest speed. The world's clips
never bounce in their first ``frames_before_first_bounce`` steps, so those steps move at least that slowest
speed (1 px); half of it leaves room for a generated video's blur and noise."""

ONSET_WINDOW_SECONDS = 0.004
ONSET_HOP_SECONDS = 0.001
ONSET_MIN_RMS = 0.02
"""An envelope must reach this RMS (and a quarter of the track's peak) to count as a click."""


def as_frames(frames: ArrayLike) -> np.ndarray:
    """``[F, H, W, 3]`` float32 numpy frames from a tensor or array (uint8 is scaled to 0..1)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().float().numpy()
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames has shape {array.shape}; expected [frames, height, width, 3].")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return array.astype(np.float32, copy=False)


def _shift_max(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of [F, H, W] masks by a (2r+1)^2 square."""
    grown = mask.copy()
    height, width = mask.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = np.zeros_like(mask)
            shifted[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = mask[
                :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
            ]
            grown |= shifted
    return grown


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~_shift_max(~mask, radius)


@dataclass
class Segmentation:
    """Per-frame foreground of a clip (see the module docstring)."""

    contrast: np.ndarray  # [F, H, W] RGB distance from the frame's background colour
    peak: np.ndarray  # [F] near-peak contrast
    core: np.ndarray  # [F, H, W] bool, the shape after the noise-removing opening
    region: np.ndarray  # [F, H, W] bool, the core grown by REGION_MARGIN px
    silhouette: np.ndarray  # [F, H, W] bool, above half the peak within the region (keeps thin tips)
    present: np.ndarray  # [F] bool, the frame shows a shape


def segment(frames: ArrayLike) -> Segmentation:
    frames = as_frames(frames)
    flat = frames.reshape(frames.shape[0], -1, 3)
    background = np.median(flat, axis=1)
    contrast = np.linalg.norm(frames - background[:, None, None, :], axis=-1)
    peak = np.percentile(contrast.reshape(frames.shape[0], -1), 99, axis=1)
    present = peak >= MIN_CONTRAST
    above_half = (contrast > 0.5 * peak[:, None, None]) & present[:, None, None]
    core = _shift_max(_erode(above_half, 1), 1)
    present &= core.any(axis=(1, 2))
    region = _shift_max(core, REGION_MARGIN)
    return Segmentation(contrast, peak, core, region, above_half & region, present)


def centroid_track(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> np.ndarray:
    """[F, 2] (x, y) centroid of the shape in pixel units, NaN in frames without one."""
    seg = segmentation or segment(frames)
    noise_floor = np.median(seg.contrast.reshape(seg.contrast.shape[0], -1), axis=1)
    weights = np.clip(seg.contrast - noise_floor[:, None, None], 0.0, None) * seg.region
    height, width = weights.shape[1:]
    mass = weights.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (weights.sum(axis=1) * (np.arange(width) + 0.5)).sum(axis=1) / mass
        y = (weights.sum(axis=2) * (np.arange(height) + 0.5)).sum(axis=1) / mass
    track = np.stack([x, y], axis=1)
    track[~seg.present | (mass <= 0)] = np.nan
    return track


def _filled_track(track: np.ndarray) -> Optional[np.ndarray]:
    """The track with missing frames interpolated, or None with fewer than two frames showing the shape."""
    valid = ~np.isnan(track[:, 0])
    if valid.sum() < 2:
        return None
    index = np.arange(len(track))
    return np.stack([np.interp(index, index[valid], track[valid, axis]) for axis in range(2)], axis=1)


def measure_motion(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> float:
    """Mean per-frame displacement of the centroid in pixels, over steps where both frames show the shape."""
    steps = np.linalg.norm(np.diff(centroid_track(frames, segmentation), axis=0), axis=1)
    steps = steps[~np.isnan(steps)]
    return float(steps.mean()) if len(steps) else 0.0


def centroid_steps(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> Optional[np.ndarray]:
    """[F-1] centroid move in px between consecutive frames, frames without the shape interpolated; None with
    fewer than two frames showing it."""
    track = _filled_track(centroid_track(frames, segmentation))
    return None if track is None else np.linalg.norm(np.diff(track, axis=0), axis=1)


def frozen_start(steps: np.ndarray, still: float = STILL_STEP) -> int:
    """Still frames at the start of a clip, from its centroid ``steps`` [F-1]: frame 0 and each following frame
    up to the first that moves at least ``still`` px (a clip that moves from the first step on counts 1)."""
    moving = np.flatnonzero(steps >= still)
    return int(moving[0]) + 1 if len(moving) else len(steps) + 1


def stutter(steps: np.ndarray) -> float:
    """Largest centroid move over the median move (1 for steady motion; inf when most frames are still)."""
    median = float(np.median(steps))
    return float(steps.max()) / median if median > 0 else float("inf")


def detect_colour(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> Optional[str]:
    """The palette colour nearest the median colour of the shape's inner pixels."""
    frames = as_frames(frames)
    seg = segmentation or segment(frames)
    inner = seg.core & (seg.contrast >= 0.75 * seg.peak[:, None, None])
    if not inner.any():
        return None
    colour = np.median(frames[inner], axis=0)
    names = list(PALETTE)
    distances = [np.linalg.norm(colour - np.asarray(PALETTE[name])) for name in names]
    return names[int(np.argmin(distances))]


def _longest_run(occupied: np.ndarray) -> tuple:
    """(start, stop) of the longest run of True in a 1-D array."""
    best, start = (0, 0), None
    for position, value in enumerate(list(occupied) + [False]):
        if value and start is None:
            start = position
        elif not value and start is not None:
            if position - start > best[1] - best[0]:
                best = (start, position)
            start = None
    return best


def pooled_silhouette(mask: np.ndarray, grid: int = SILHOUETTE_GRID) -> Optional[np.ndarray]:
    """One [H, W] mask cropped to its bounding box and area-pooled to [grid, grid] (size-independent).

    The box spans the longest unbroken runs of occupied rows and columns, so stray pixels
    apart from the shape do not stretch it.
    """
    top, bottom = _longest_run(mask.any(axis=1))
    left, right = _longest_run(mask.any(axis=0))
    if bottom == top or right == left:
        return None
    crop = torch.from_numpy(mask[top:bottom, left:right].astype(np.float32))[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(crop, (grid, grid))[0, 0].numpy()


def _ideal_silhouettes(grid: int = SILHOUETTE_GRID, resolution: int = 256) -> dict:
    """Each shape filling its box, rasterised finely and pooled to [grid, grid]."""
    centres = (np.arange(resolution) + 0.5) / resolution - 0.5
    inside = {shape: signed_distance(shape, centres[None, :], centres[:, None], 0.5) <= 0 for shape in SHAPES}
    return {
        shape: mask.reshape(grid, resolution // grid, grid, resolution // grid).mean(axis=(1, 3))
        for shape, mask in inside.items()
    }


IDEAL_SILHOUETTES = _ideal_silhouettes()


def detect_shape(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> Optional[str]:
    """The shape whose ideal silhouette is nearest the pooled silhouette in most frames.

    Square fills its box, circle leaves the four corners empty, triangle the two top ones.
    """
    seg = segmentation or segment(frames)
    votes = dict.fromkeys(SHAPES, 0)
    for mask, present in zip(seg.silhouette, seg.present):
        pooled = pooled_silhouette(mask) if present else None
        if pooled is not None:
            votes[min(SHAPES, key=lambda shape: np.abs(pooled - IDEAL_SILHOUETTES[shape]).mean())] += 1
    best = max(votes, key=votes.get)
    return best if votes[best] else None


def detect_direction(
    frames: ArrayLike, config: WorldConfig = DEFAULT_CONFIG, segmentation: Optional[Segmentation] = None
) -> Optional[str]:
    """Direction of the centroid's displacement over the world's bounce-free opening frames."""
    track = _filled_track(centroid_track(frames, segmentation))
    if track is None:
        return None
    last = min(config.frames_before_first_bounce, len(track) - 1)
    displacement = track[last] - track[0]
    axis = int(np.argmax(np.abs(displacement)))
    if abs(displacement[axis]) < 0.5:
        return None
    step = [0, 0]
    step[axis] = int(np.sign(displacement[axis]))
    return next(name for name, vector in DIRECTION_VECTORS.items() if list(vector) == step)


def measure_flicker(frames: ArrayLike, segmentation: Optional[Segmentation] = None) -> float:
    """Mean absolute change between consecutive frames over pixels that are background in both."""
    frames = as_frames(frames)
    seg = segmentation or segment(frames)
    if len(frames) < 2:
        return 0.0
    background = ~seg.region[:-1] & ~seg.region[1:]
    change = np.abs(np.diff(frames, axis=0)).mean(axis=-1)
    return float(change[background].mean()) if background.any() else 0.0


def detect_bounces(frames: ArrayLike, fps, segmentation: Optional[Segmentation] = None) -> np.ndarray:
    """Times in seconds at which the shape reverses along its main axis of travel."""
    track = _filled_track(centroid_track(frames, segmentation))
    if track is None:
        return np.zeros(0)
    steps = np.diff(track, axis=0)
    axis = int(np.argmax(np.abs(steps).sum(axis=0)))
    positions, velocity = track[:, axis], steps[:, axis]
    speed = float(np.median(np.abs(velocity)))
    if speed < 0.25:
        return np.zeros(0)
    # Steps that barely move are ambiguous (a bounce can fold a step back onto itself).
    signs = np.where(np.abs(velocity) > max(0.25, 0.2 * speed), np.sign(velocity), 0)
    moving = np.flatnonzero(signs)
    times = []
    for before, after in zip(moving[:-1], moving[1:]):
        if signs[before] == signs[after]:
            continue
        # The shape was on the incoming path at frame `before` and on the outgoing one at
        # frame `after + 1`; a reflection at constant speed meets both where they cross.
        crossing = (before + after + 1) / 2 + signs[before] * (positions[after + 1] - positions[before]) / (2 * speed)
        times.append(min(max(crossing, before), after + 1))
    return np.asarray(times, dtype=np.float64) / float(fps)


def detect_onsets(audio: ArrayLike, sample_rate: int) -> np.ndarray:
    """Times in seconds where the sound's 4 ms RMS envelope rises through a threshold."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    window = max(1, round(ONSET_WINDOW_SECONDS * sample_rate))
    hop = max(1, round(ONSET_HOP_SECONDS * sample_rate))
    if len(audio) < window:
        return np.zeros(0)
    starts = np.arange(0, len(audio) - window + 1, hop)
    energy = np.cumsum(np.concatenate([[0.0], audio.astype(np.float64) ** 2]))
    envelope = np.sqrt((energy[starts + window] - energy[starts]) / window)
    high = max(ONSET_MIN_RMS, 0.25 * float(envelope.max()), 4 * float(np.median(envelope)))
    low = high / 2
    onsets, armed, rise_start = [], True, 0
    for position, level in enumerate(envelope):
        if level < low:
            armed, rise_start = True, position + 1
        elif armed and level >= high:
            onsets.append((starts[rise_start] + window / 2) / sample_rate)
            armed = False
    return np.asarray(onsets, dtype=np.float64)


@dataclass(frozen=True)
class SyncScore:
    """One-to-one matches between audio onsets and visual events; add scores to pool clips."""

    matched: int
    onsets: int
    events: int

    @property
    def precision(self) -> float:
        return self.matched / self.onsets if self.onsets else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.events if self.events else 1.0

    @property
    def f1(self) -> float:
        total = self.onsets + self.events
        return 2 * self.matched / total if total else 1.0

    def __add__(self, other: "SyncScore") -> "SyncScore":
        return SyncScore(self.matched + other.matched, self.onsets + other.onsets, self.events + other.events)


def match_events(onset_times: Sequence[float], event_times: Sequence[float], tolerance_seconds: float) -> SyncScore:
    """Greedy one-to-one matching, closest pairs first, of onsets to events within the tolerance."""
    pairs = sorted(
        (abs(onset - event), i, j)
        for i, onset in enumerate(onset_times)
        for j, event in enumerate(event_times)
        if abs(onset - event) <= tolerance_seconds
    )
    used_onsets, used_events = set(), set()
    for _, i, j in pairs:
        if i not in used_onsets and j not in used_events:
            used_onsets.add(i)
            used_events.add(j)
    return SyncScore(len(used_onsets), len(onset_times), len(event_times))


def audio_visual_sync(frames: ArrayLike, audio: ArrayLike, sample_rate: int, fps) -> SyncScore:
    """Onsets heard against bounces seen, within +-1 video frame."""
    return match_events(detect_onsets(audio, sample_rate), detect_bounces(frames, fps), 1 / float(fps))


@dataclass(frozen=True)
class VideoMeasurements:
    colour: Optional[str]
    shape: Optional[str]
    direction: Optional[str]
    motion: float
    flicker: float
    bounce_times: tuple
    frozen_start: Optional[int]  # None without a track
    stutter: Optional[float]


def measure_video(frames: ArrayLike, fps, config: WorldConfig = DEFAULT_CONFIG) -> VideoMeasurements:
    """All frame-based measures of one clip, sharing one segmentation."""
    frames = as_frames(frames)
    seg = segment(frames)
    steps = centroid_steps(frames, seg)
    return VideoMeasurements(
        colour=detect_colour(frames, seg),
        shape=detect_shape(frames, seg),
        direction=detect_direction(frames, config, seg),
        motion=measure_motion(frames, seg),
        flicker=measure_flicker(frames, seg),
        bounce_times=tuple(detect_bounces(frames, fps, seg)),
        frozen_start=None if steps is None else frozen_start(steps),
        stutter=None if steps is None else stutter(steps),
    )


@dataclass(frozen=True)
class ClipScore:
    """How a (generated) clip matches its caption, and how its sound matches its motion."""

    measured: VideoMeasurements
    colour_correct: bool
    shape_correct: bool
    direction_correct: bool
    sync: Optional[SyncScore]  # None without audio


def score_clip(
    frames: ArrayLike,
    caption: str,
    fps,
    audio: Optional[ArrayLike] = None,
    sample_rate: Optional[int] = None,
    config: WorldConfig = DEFAULT_CONFIG,
) -> ClipScore:
    measured = measure_video(frames, fps, config)
    expected = parse_caption(caption)
    sync = None
    if audio is not None:
        onsets = detect_onsets(audio, sample_rate)
        sync = match_events(onsets, measured.bounce_times, 1 / float(fps))
    return ClipScore(
        measured=measured,
        colour_correct=measured.colour == expected.colour,
        shape_correct=measured.shape == expected.shape,
        direction_correct=measured.direction == expected.direction,
        sync=sync,
    )
