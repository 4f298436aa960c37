"""The toy world: one coloured shape sliding across a plain background, with a click at every bounce.

Every clip is drawn from known parameters, so generated videos can be scored exactly
(see :mod:`lumina_core.toyworld.metrics`).

Geometry. Frames are ``WIDTH x HEIGHT`` pixels; the shape fills a ``SHAPE_SIZE`` square
box (circle: the inscribed disc; square: the whole box; triangle: apex at the top
centre, base along the bottom). Its box centre moves along one axis at a constant
``speed`` in pixels per frame, in the captioned direction, and reflects off the walls
(the box never leaves the frame). Edges are antialiased from a signed distance
(coverage = clip(0.5 - distance, 0, 1)).

Timing. Frame ``i`` shows the kinematics at time ``i`` (in frames, ``i / fps`` seconds).
Starts are drawn so that the first bounce comes no earlier than
``frames_before_first_bounce`` frames (the shape visibly travels the captioned way first)
and no bounce falls in the last frame interval ``(F - 2, F - 1]``, where the frames could
not show the reversal. Only bounces up to the last frame count as events.

Motion score. The clip's ``motion_score`` is measured on its own frames: the mean
per-frame displacement of the shape's centroid in pixels. It equals the nominal
``speed`` except that a frame step containing a bounce covers less net distance (the
path folds back), so bouncing clips score a little under their speed.

Sway. ``WorldConfig.sway`` (0 in the plain world) swings the shape across its travel by
``sway * sin(2 pi t / sway_period)`` pixels at frame ``t``: the style the style LoRA learns
(:mod:`lumina_core.toyworld.style`). The swing is a look, not motion: a swaying clip's motion
score is its plain twin's, measured on the same frames without the swing.

Sound. A mono track of exactly ``num_frames / fps`` seconds at ``sample_rate``: silence
with one decaying tone burst starting at the exact (sub-frame) moment of each wall
contact, pitched by the shape (``SHAPE_PITCH_HZ``).

Captions. Word-level templates over a fixed ``VOCABULARY``, the tiny text encoder's words.

Held-out split. ``HELDOUT_COMBINATIONS`` (colour, shape, direction) never appear in
training, although each of their pairs does, and ``HELDOUT_TEMPLATES`` never appear in
training either, although all their words do. Run ``python -m lumina_core.toyworld.world
--help`` for a preview that writes a few clips as mp4 files with sound.
"""

import argparse
import itertools
import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..io.media import write_video

PALETTE = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.20),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
    "white": (0.95, 0.95, 0.95),
}
"""Shape colours in RGB 0..1; every pair is at least 0.6 apart, and at least 0.7 from the background."""

COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
DIRECTION_VECTORS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
"""(dx, dy) in image coordinates: x grows to the right, y grows downwards."""

SHAPE_PITCH_HZ = {"circle": 440.0, "square": 880.0, "triangle": 1320.0}
"""The pitch of the click a shape makes when it hits a wall."""


@dataclass(frozen=True)
class WorldConfig:
    """Everything about the world's size and timing; the module constants are its defaults."""

    height: int = 64
    width: int = 64
    num_frames: int = 16
    fps: Fraction = Fraction(8)
    sample_rate: int = 16000
    # Half the frame: a shape must span about 4 latent pixels of the 8x-downsampling VAE for its
    # outline (corners, apex) to survive encoding; at 16 px the tiny VAE drew every shape as a blob.
    shape_size: int = 32
    speed_range: Tuple[float, float] = (1.0, 6.0)  # pixels per frame
    frames_before_first_bounce: int = 4
    background: Tuple[float, float, float] = (0.2, 0.2, 0.2)
    click_seconds: float = 0.06
    click_decay_seconds: float = 0.012
    click_amplitude: float = 0.8
    # The sway style, off at 0: a whole swing every 8 frames puts the shape back on its line at frames 0 and 4,
    # between which the metrics read the direction.
    sway: float = 0.0  # pixels
    sway_period: float = 8.0  # frames

    def __post_init__(self):
        object.__setattr__(self, "fps", Fraction(self.fps))
        if self.num_samples != self.num_frames * self.sample_rate / self.fps:
            raise ValueError(
                f"num_frames / fps * sample_rate = {self.num_frames} / {self.fps} * {self.sample_rate} is not a whole "
                "number of samples; pick values that make the sound exactly as long as the video."
            )
        shortest_travel = min(self.width, self.height) - self.shape_size
        if shortest_travel < self.speed_range[1] * self.frames_before_first_bounce:
            raise ValueError(
                f"The shape can travel only {shortest_travel} px, too little to move {self.frames_before_first_bounce} "
                f"frames at the top speed {self.speed_range[1]} before its first bounce; lower the speed or the size."
            )
        if not 0 <= 2 * self.sway <= shortest_travel or self.sway_period <= 0:
            raise ValueError(
                f"sway {self.sway} px every {self.sway_period} frames: the sway must lie in [0, {shortest_travel / 2}] "
                "(half the room the shape has to move in) and its period must be positive."
            )

    @property
    def num_samples(self) -> int:
        return int(self.num_frames * self.sample_rate // self.fps)

    def travel(self, direction: str) -> float:
        """How far the box centre can move between the walls along ``direction``'s axis, in pixels."""
        horizontal = DIRECTION_VECTORS[direction][0] != 0
        return (self.width if horizontal else self.height) - self.shape_size

    @property
    def duration_seconds(self) -> float:
        return float(self.num_frames / self.fps)


DEFAULT_CONFIG = WorldConfig()
HEIGHT = DEFAULT_CONFIG.height
WIDTH = DEFAULT_CONFIG.width
NUM_FRAMES = DEFAULT_CONFIG.num_frames
FPS = DEFAULT_CONFIG.fps
SAMPLE_RATE = DEFAULT_CONFIG.sample_rate
SHAPE_SIZE = DEFAULT_CONFIG.shape_size
SPEED_RANGE = DEFAULT_CONFIG.speed_range

TRAIN_TEMPLATES = (
    "a {colour} {shape} moving {direction}",
    "the {colour} {shape} moves {direction}",
    "a {colour} {shape} slides {direction}",
    "the {colour} {shape} travels {direction}",
)
HELDOUT_TEMPLATES = (
    "the {colour} {shape} slides {direction}",
    "a {colour} {shape} travels {direction}",
)
TEMPLATES = TRAIN_TEMPLATES + HELDOUT_TEMPLATES

HELDOUT_COMBINATIONS = frozenset(
    {
        ("red", "circle", "left"),
        ("green", "square", "up"),
        ("blue", "triangle", "right"),
        ("yellow", "circle", "down"),
        ("white", "triangle", "up"),
        ("white", "square", "left"),
    }
)
"""(colour, shape, direction) triples never shown in training; every pair inside them is."""

ALL_COMBINATIONS = tuple(itertools.product(COLOURS, SHAPES, DIRECTIONS))
TRAIN_COMBINATIONS = tuple(combo for combo in ALL_COMBINATIONS if combo not in HELDOUT_COMBINATIONS)
SPLITS = ("train", "heldout")
START_ATTEMPTS = 1000

VOCABULARY = ("a", "the", "moving", "moves", "slides", "travels") + COLOURS + SHAPES + DIRECTIONS
"""Every word a caption can use; the tiny text encoder (``lumina_core.text``) is built over it."""


def caption_words(caption: str) -> List[str]:
    """Lower-case words, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", caption.lower())


class CaptionContent(NamedTuple):
    colour: Optional[str]
    shape: Optional[str]
    direction: Optional[str]


def parse_caption(caption: str) -> CaptionContent:
    """The colour, shape and direction a caption names (the first of each), None where it names none."""
    words = caption_words(caption)

    def first(options):
        return next((word for word in words if word in options), None)

    return CaptionContent(first(COLOURS), first(SHAPES), first(DIRECTIONS))


@dataclass
class Clip:
    """One rendered clip with its ground truth."""

    frames: np.ndarray  # [F, H, W, 3] float32 in 0..1
    audio: np.ndarray  # [T] float32 in -1..1, T = F / fps * sample_rate
    sample_rate: int
    fps: Fraction
    caption: str
    colour: str
    shape: str
    direction: str
    speed: float  # nominal pixels per frame
    motion_score: float  # measured mean centroid displacement, pixels per frame
    event_times: Tuple[float, ...]  # bounce times in seconds
    positions: np.ndarray = field(repr=False)  # [F, 2] (x, y) of the shape's box centre
    split: str = "train"


def bounce_times(
    direction: str, speed: float, distance_ahead: float, config: WorldConfig = DEFAULT_CONFIG
) -> List[float]:
    """Times (in frames, up to the last frame) at which the shape touches a wall.

    ``distance_ahead`` is how far the box centre is from the wall it is heading to at frame 0.
    """
    first = distance_ahead / speed
    period = config.travel(direction) / speed
    last_frame = config.num_frames - 1
    count = 0 if first > last_frame else int((last_frame - first) // period) + 1
    return [first + k * period for k in range(count)]


def trajectory(
    direction: str, speed: float, distance_ahead: float, across: float, config: WorldConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """[F, 2] (x, y) box centres: constant speed along ``direction``, reflecting off the walls, swaying across it
    by ``config.sway`` (nothing in the plain world: it adds zeros)."""
    low, travel = config.shape_size / 2, config.travel(direction)
    dx, dy = DIRECTION_VECTORS[direction]
    sign = dx + dy
    time = np.arange(config.num_frames, dtype=np.float64)
    # Unfold the walls: distance from the wall behind at frame 0, plus the distance covered, folded into [0, travel].
    unfolded = (travel - distance_ahead) + speed * time
    folded = np.mod(unfolded, 2 * travel)
    from_start_wall = np.where(folded <= travel, folded, 2 * travel - folded)
    along = low + (from_start_wall if sign > 0 else travel - from_start_wall)
    across_positions = np.full_like(along, low + across) + config.sway * np.sin(2 * np.pi * time / config.sway_period)
    return np.stack([along, across_positions] if dx else [across_positions, along], axis=1)


def signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, half: float) -> np.ndarray:
    """Distance outside ``shape`` (negative inside) of points (dx, dy) from its box centre; box half-size ``half``.

    Exact for the circle; for the square and triangle it is the largest distance outside
    any one edge, exact near the edges, which is all antialiasing needs.
    """
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - half
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - half
    if shape == "triangle":
        # Apex (0, -half), base corners (+-half, +half): outside the two slanted edges or the base.
        slant = (2 * np.abs(dx) - dy - half) / math.sqrt(5.0)
        return np.maximum(slant, dy - half)
    raise ValueError(f"Unknown shape {shape!r}; the world has {SHAPES}.")


def shape_coverage(shape: str, positions: np.ndarray, config: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """[F, H, W] antialiased coverage in 0..1 of ``shape`` with box centres ``positions``."""
    xs = np.arange(config.width, dtype=np.float32) + 0.5
    ys = np.arange(config.height, dtype=np.float32) + 0.5
    dx = xs[None, None, :] - positions[:, 0, None, None].astype(np.float32)
    dy = ys[None, :, None] - positions[:, 1, None, None].astype(np.float32)
    return np.clip(0.5 - signed_distance(shape, dx, dy, config.shape_size / 2), 0.0, 1.0)


def render_frames(colour: str, coverage: np.ndarray, config: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    background = np.asarray(config.background, np.float32)
    foreground = np.asarray(PALETTE[colour], np.float32)
    alpha = coverage[..., None]
    return (background + alpha * (foreground - background)).astype(np.float32)


def click_track(event_times: Sequence[float], shape: str, config: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Silence with a decaying tone burst starting exactly at each event time (seconds)."""
    audio = np.zeros(config.num_samples, np.float32)
    rate = config.sample_rate
    for start_seconds in event_times:
        first = math.ceil(start_seconds * rate)
        stop = min(config.num_samples, first + math.ceil(config.click_seconds * rate))
        since_start = np.arange(first, stop) / rate - start_seconds
        burst = np.sin(2 * np.pi * SHAPE_PITCH_HZ[shape] * since_start) * np.exp(
            -since_start / config.click_decay_seconds
        )
        audio[first:stop] += (config.click_amplitude * burst).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def still_group_frames(clip: Clip, group: int, config: WorldConfig = DEFAULT_CONFIG) -> np.ndarray:
    """``clip``'s frames [F, H, W, 3] redrawn with the shape held still within each ``group`` of frames, at the
    group's mean position: the motion between groups is the clip's, the motion within them is gone."""
    frames = len(clip.positions)
    if frames % group:
        raise ValueError(f"{frames} frames don't split into groups of {group}")
    held = clip.positions.reshape(frames // group, group, 2).mean(axis=1).repeat(group, axis=0)
    return render_frames(clip.colour, shape_coverage(clip.shape, held, config), config)


def coverage_motion(coverage: np.ndarray) -> float:
    """Mean per-frame displacement of the coverage-weighted centroid, in pixels."""
    height, width = coverage.shape[1:]
    mass = coverage.sum(axis=(1, 2))
    x = (coverage.sum(axis=1) * (np.arange(width) + 0.5)).sum(axis=1) / mass
    y = (coverage.sum(axis=2) * (np.arange(height) + 0.5)).sum(axis=1) / mass
    steps = np.diff(np.stack([x, y], axis=1), axis=0)
    return float(np.linalg.norm(steps, axis=1).mean())


def make_clip(
    colour: str,
    shape: str,
    direction: str,
    speed: float,
    distance_ahead: float,
    across: float,
    template: str = TRAIN_TEMPLATES[0],
    split: str = "train",
    config: WorldConfig = DEFAULT_CONFIG,
) -> Clip:
    """Render one clip from explicit parameters.

    ``distance_ahead``: pixels between the box centre and the wall it heads to at frame 0
    (0..travel); ``across``: the box centre's distance from the top or left wall on the other axis, around which
    it sways by ``config.sway`` (sway..travel - sway).
    """
    for name, value, options in (
        ("colour", colour, COLOURS),
        ("shape", shape, SHAPES),
        ("direction", direction, DIRECTIONS),
    ):
        if value not in options:
            raise ValueError(f"Unknown {name} {value!r}; the world has {options}.")
    positions = trajectory(direction, speed, distance_ahead, across, config)
    coverage = shape_coverage(shape, positions, config)
    plain_coverage = coverage  # the sway is a look, not motion: the motion score is measured without it
    if config.sway:
        plain = replace(config, sway=0.0)
        plain_coverage = shape_coverage(shape, trajectory(direction, speed, distance_ahead, across, plain), plain)
    event_times = tuple(float(t / config.fps) for t in bounce_times(direction, speed, distance_ahead, config))
    return Clip(
        frames=render_frames(colour, coverage, config),
        audio=click_track(event_times, shape, config),
        sample_rate=config.sample_rate,
        fps=config.fps,
        caption=template.format(colour=colour, shape=shape, direction=direction),
        colour=colour,
        shape=shape,
        direction=direction,
        speed=float(speed),
        motion_score=coverage_motion(plain_coverage),
        event_times=event_times,
        positions=positions,
        split=split,
    )


def _draw_start(rng: np.random.Generator, direction: str, speed: float, config: WorldConfig) -> float:
    """A distance to the wall ahead that gives no bounce too early and none in the last frame step."""
    travel = config.travel(direction)
    earliest = min(travel, config.frames_before_first_bounce * speed)
    last_frame = config.num_frames - 1
    for _ in range(START_ATTEMPTS):
        distance_ahead = rng.uniform(earliest, travel)
        if all(t <= last_frame - 1 for t in bounce_times(direction, speed, distance_ahead, config)):
            return distance_ahead
    raise ValueError(
        f"No start at speed {speed:.2f} px/frame keeps bounces out of the last frame step in {config}; "
        "change the speed range, the frame count or the shape size."
    )


def sample_clip(seed: int, index: int, split: str = "train", config: WorldConfig = DEFAULT_CONFIG) -> Clip:
    """Clip number ``index`` of a split; the same (seed, index, split) always gives the same clip.

    Held-out clips alternate: even indices show a held-out combination (any template),
    odd indices a training combination under a held-out template.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; use one of {SPLITS}.")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    if split == "train":
        combinations, templates = TRAIN_COMBINATIONS, TRAIN_TEMPLATES
    elif index % 2 == 0:
        combinations, templates = tuple(sorted(HELDOUT_COMBINATIONS)), TEMPLATES
    else:
        combinations, templates = TRAIN_COMBINATIONS, HELDOUT_TEMPLATES
    colour, shape, direction = combinations[rng.integers(len(combinations))]
    template = templates[rng.integers(len(templates))]
    speed = rng.uniform(*config.speed_range)
    distance_ahead = _draw_start(rng, direction, speed, config)
    crosswise = "down" if direction in ("left", "right") else "right"
    across = rng.uniform(config.sway, config.travel(crosswise) - config.sway)
    return make_clip(colour, shape, direction, speed, distance_ahead, across, template, split, config)


def train_clips(seed: int, n: int, config: WorldConfig = DEFAULT_CONFIG) -> List[Clip]:
    return [sample_clip(seed, index, "train", config) for index in range(n)]


def heldout_clips(seed: int, n: int, config: WorldConfig = DEFAULT_CONFIG) -> List[Clip]:
    return [sample_clip(seed, index, "heldout", config) for index in range(n)]


def write_preview(out: Path, n: int, seed: int, split: str, scale: int, suffix: str) -> List[Path]:
    """Write ``n`` clips as videos with sound, enlarged ``scale`` times for people to watch."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(n):
        clip = sample_clip(seed, index, split)
        frames = clip.frames.repeat(scale, axis=1).repeat(scale, axis=2)
        name = f"{split}_{index:03d}_{clip.caption.replace(' ', '_')}_motion{clip.motion_score:.1f}.{suffix}"
        written.append(write_video(out / name, frames, clip.fps, clip.audio[None], clip.sample_rate))
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.world",
        description="Write a few toy-world clips (video with the bounce clicks) to look at and listen to.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the videos (created if missing)")
    parser.add_argument("--n", type=int, default=8, help="how many clips (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="which split to draw from (default train)")
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour enlargement for viewing (default 4)")
    parser.add_argument("--format", choices=("mp4", "webm"), default="mp4", help="container (default mp4)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.scale < 1:
        parser.error("--n and --scale must be at least 1")
    for path in write_preview(args.out, args.n, args.seed, args.split, args.scale, args.format):
        print(path)


if __name__ == "__main__":
    main()
