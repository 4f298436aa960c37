"""What a video request may ask for, checked in one place.

The command line, the ComfyUI nodes (at queue time, in ``validate_inputs``, and again when they
run) and the pipeline all call ``video_size_problems``. The rule follows from the models: the VAE
maps 8 video frames to 2 latent frames and 8x8 pixels to one latent pixel, and the DiT's coarsest
patch (2x4 for the released model and the embedded default) must tile the latent.
"""

from typing import Iterable, Optional

from .models.nextdit import RELEASED, PatchSize
from .models.vae import FrameCountError, latent_frames_for

VAE_SPATIAL, VAE_TEMPORAL = 8, 4
LATENT_CHANNELS = 16
MAX_SIDE, MAX_FRAMES, MAX_BATCH = 2048, 256, 16
MAX_SEED = 2**53 - 1  # exact in JavaScript, and seed + batch index stays a valid torch seed
RELEASED_PATCH_SIZES = tuple(PatchSize(pf, p) for p, pf in zip(RELEASED.all_patch_size, RELEASED.all_f_patch_size))


def side_multiple(patch_sizes: Iterable[PatchSize] = RELEASED_PATCH_SIZES) -> int:
    """Width and height must be multiples of this: the VAE's factor times the coarsest spatial patch."""
    return VAE_SPATIAL * max(p.spatial for p in patch_sizes)


def frame_multiple(patch_sizes: Iterable[PatchSize] = RELEASED_PATCH_SIZES) -> int:
    """Frame counts must be multiples of this: the VAE's 8-frame groups, and a whole temporal patch of latent frames."""
    return max(2 * VAE_TEMPORAL, VAE_TEMPORAL * max(p.temporal for p in patch_sizes))


def _nearest(value: int, multiple: int) -> str:
    low = max(multiple, value // multiple * multiple)
    return f"{low}" if low == value else f"{low} or {low + multiple}"


def video_size_problems(
    width: int,
    height: int,
    frames: int,
    batch: int = 1,
    patch_sizes: Iterable[PatchSize] = RELEASED_PATCH_SIZES,
    limits: Optional[dict] = None,
    max_batch: Optional[int] = None,
    window: Optional[int] = None,
    tile: Optional[tuple[int, int]] = None,
) -> list[str]:
    """Every way a video of this size can't be made, as sentences naming the value and a fix; empty when it can.

    ``limits`` maps width/height/frames to the (low, high) range a model was trained for (the embedded default's).
    ``max_batch`` bounds the batch where an interface does (the nodes' widget allows MAX_BATCH); the engine doesn't.
    ``window``: the video frames of one window where a long video is sampled in windows (``sampling/windows.py``);
    the frame limit then applies to it, not to the whole clip. ``tile``: the pixel (height, width) of one spatial
    tile where frames are sampled in tiles; the width and height limits then apply to it.
    """
    patch_sizes = tuple(PatchSize(*p) for p in patch_sizes)
    side, frame_step = side_multiple(patch_sizes), frame_multiple(patch_sizes)
    problems = []
    for name, value in (("width", width), ("height", height)):
        if not side <= value <= MAX_SIDE or value % side:
            try_ = _nearest(min(max(value, 1), MAX_SIDE), side)
            problems.append(f"{name} {value} must be a multiple of {side} between {side} and {MAX_SIDE} (try {try_})")
    try:
        latent_frames_for(frames)
        frames_ok = frame_step <= frames <= MAX_FRAMES and frames % frame_step == 0
    except FrameCountError:
        frames_ok = False
    if not frames_ok:
        problems.append(
            f"frames {frames} must be a multiple of {frame_step} between {frame_step} and {MAX_FRAMES} "
            "(the VAE turns 8 frames into 2 latent frames; "
            f"try {_nearest(min(max(frames, 1), MAX_FRAMES), frame_step)})"
        )
    if batch < 1 or (max_batch is not None and batch > max_batch):
        problems.append(f"batch {batch} must be between 1 and {max_batch or 'any number'}")
    checked = (("width", width, "width"), ("height", height, "height"), ("frames", frames, "frames"))
    if window is not None:
        checked = checked[:2] + (("frames", window, "window frames"),)
    if tile is not None:
        checked = (("width", min(width, tile[1]), "tile width"), ("height", min(height, tile[0]), "tile height"))
        checked += (("frames", frames if window is None else window, "frames" if window is None else "window frames"),)
    for name, value, label in checked:
        if limits:
            low, high = limits[name]
            if not low <= value <= high:
                problems.append(f"{label} {value} is outside what the embedded default was trained for ({low}..{high})")
    return problems


def check_video_size(*args, **kwargs) -> None:
    """``video_size_problems`` (same arguments) as a ValueError with every problem in one message."""
    problems = video_size_problems(*args, **kwargs)
    if problems:
        raise ValueError("; ".join(problems))


def latent_shape(width: int, height: int, frames: int, batch: int = 1, channels: int = LATENT_CHANNELS):
    """[B, C, F/4, H/8, W/8]: Lumina-Video's latent for a video of this size."""
    return (batch, channels, latent_frames_for(frames), height // VAE_SPATIAL, width // VAE_SPATIAL)
