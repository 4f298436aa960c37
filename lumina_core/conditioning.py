"""Conditional generation: known latents held in place while the model samples the rest.

A ``Conditioning`` is a model-space latent, a mask on the latent grid saying where it is known (1 known, 0
generated, soft values in between), a strength, a denoise amount and a mechanism:

- ``replace``: at every step of the flow the known region of the state is set to the known latent brought to the
  step's time with the run's own noise, x_t = t * known + (1 - t) * noise (t = 0 noise, 1 data), so that it ends
  as the known latent exactly and the model draws the rest in harmony with it. Nothing is trained for this, so
  it works with released weights too.
- ``timestep`` (LTX-Video's): every latent cell has its own time (``Conditioning.cell_times``), known cells clean
  at t = 1, and the model is told so per token; it needs a model fine-tuned with such conditioning.

Video-to-video starts the flow at t = 1 - denoise from the input's latent noised to that time.

Pixels map onto the latent grid by the VAE's rule (``request.VAE_SPATIAL``, ``request.VAE_TEMPORAL``): 8x8 pixels
per latent pixel and 4 video frames per latent frame, so frame N lies in latent frame N // 4. A still image at
frame N holds that whole latent frame, which the VAE decodes to 4 nearly equal frames; the known frames come back
as the VAE's round trip of the inputs.

Tasks and their builders: image-to-video and keyframes (``from_images``), extension, video-to-video and inpainting
(``from_video``), cinemagraph (``cinemagraph``); ``from_files`` reads the command line's files, checks them and
picks the task.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .io.media import read_video
from .models.vae import CogVideoXVAE, frames_for, latent_frames_for
from .request import VAE_SPATIAL, VAE_TEMPORAL

MECHANISMS = ("replace", "timestep")


def check_denoise(denoise: float) -> None:
    if not 0 < denoise <= 1:
        raise ValueError(f"denoise {denoise} must lie in (0, 1]: 1 redraws everything, near 0 keeps the input")


def denoised_times(times: list[float], denoise: float) -> list[float]:
    """The time grid from 1 - denoise on: that time, then the grid's later points (the whole grid at denoise 1)."""
    check_denoise(denoise)
    start = 1.0 - denoise
    return [start] + [t for t in times if t > start] if start > times[0] else times


@dataclass(frozen=True)
class Conditioning:
    """What is known of a video latent, and how sampling holds to it (see the module docstring)."""

    latent: torch.Tensor  # [B, C, K, h, w] model space: the known values, and video-to-video's start
    keep: Optional[torch.Tensor] = None  # [B or 1, 1, K, h, w] in [0, 1]: 1 known, 0 generated; None: nothing kept
    strength: float = 1.0  # scales keep: below 1 the known values only pull the state towards them
    denoise: float = 1.0  # in (0, 1]: sampling starts at t = 1 - denoise from ``latent`` noised to that time
    resample: int = 0  # RePaint's resampling: each step is redone this many times from the state noised back
    seed: int = 0  # of the fresh noise that resampling adds
    mechanism: str = "replace"  # or "timestep": known cells get their own time (``cell_times``), for trained models

    def __post_init__(self):
        check_denoise(self.denoise)
        if self.mechanism not in MECHANISMS:
            raise ValueError(f"conditioning mechanism {self.mechanism!r} is not one of {', '.join(MECHANISMS)}")
        if self.mechanism == "timestep" and self.resample:
            raise ValueError("resampling goes with the replace mechanism; per-token timesteps hold known cells clean")
        if not 0 <= self.strength <= 1:
            raise ValueError(f"strength {self.strength} must lie in [0, 1] (1 holds the known region exactly)")

    def to(self, device) -> "Conditioning":
        keep = None if self.keep is None else self.keep.to(device, torch.float32)
        return replace(self, latent=self.latent.to(device, torch.float32), keep=keep)

    def check_shape(self, shape) -> None:
        """Refuse a latent of another size than the noise's [B, C, K, h, w]."""
        if tuple(self.latent.shape[1:]) != tuple(shape[1:]) or self.latent.shape[0] not in (1, shape[0]):
            raise ValueError(
                f"the known latent {tuple(self.latent.shape)} doesn't fit the video's latent {tuple(shape)}; "
                "build the conditioning at the video's width, height and frame count"
            )

    def times(self, times: list[float]) -> list[float]:
        return denoised_times(times, self.denoise)

    def start(self, noise: torch.Tensor, t: float) -> torch.Tensor:
        """The state at the first time: noise at t = 0, else the known latent noised to t (video-to-video).
        Per-token timesteps start each cell at its own time (``cell_times``)."""
        if self.mechanism == "timestep" and self.keep is not None:
            times = self.cell_times(t)[:, None]
            return times * self.latent + (1 - times) * noise
        return noise if t == 0 else t * self.latent + (1 - t) * noise

    def cell_times(self, t: float) -> torch.Tensor:
        """Per-token timesteps (LTX-Video's conditioning): each latent cell's time when the sampler is at t,
        max(t, keep * strength) [B or 1, K, h, w]. A cell kept at strength 1 stays clean (t = 1) all along; at
        strength s it waits at time s, noised that far, until the sampler passes s and denoises it with the rest."""
        weight = self.keep[:, 0] * self.strength
        return weight.clamp(min=t)

    def apply(self, x: torch.Tensor, t: float, noise: torch.Tensor) -> torch.Tensor:
        """``x`` with its known region set to the known latent at time t (exactly, where keep * strength is 1)."""
        if self.keep is None:
            return x
        weight = self.keep * self.strength
        return x * (1 - weight) + (t * self.latent + (1 - t) * noise) * weight

    def renoise(self, x: torch.Tensor, t: float, earlier: float, generator: torch.Generator) -> torch.Tensor:
        """A state at time t taken back to an earlier time with fresh noise, keeping the path's marginals:
        x_e = (e / t) x_t + s * fresh with s^2 = (1 - e)^2 - (e / t)^2 (1 - t)^2."""
        ratio = earlier / t
        spread = max((1 - earlier) ** 2 - (ratio * (1 - t)) ** 2, 0.0) ** 0.5
        fresh = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return ratio * x + spread * fresh

    @staticmethod
    def stack(items: Sequence["Conditioning"]) -> "Conditioning":
        """One conditioning per video of a batch -> one for the batch (their strength, denoise and resample agree)."""
        first = items[0]

        def settings(c):
            return c.strength, c.denoise, c.resample, c.seed, c.mechanism, c.keep is None

        if any(settings(c) != settings(first) for c in items):
            raise ValueError(
                "conditionings stacked into one batch need one strength, denoise, resampling, mechanism and mask use"
            )
        keep = None if first.keep is None else torch.cat([c.keep for c in items])
        return replace(first, latent=torch.cat([c.latent for c in items]), keep=keep)


def latent_frame(frame: int) -> int:
    """The latent frame that video frame ``frame`` lies in."""
    return frame // VAE_TEMPORAL


def latent_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pixel mask [F, H, W] (F a valid frame count, H and W multiples of 8) -> latent grid [1, 1, F/4, H/8, W/8]:
    each cell the mean of its 4 x 8 x 8 pixels (a still image, F = 1, maps to one latent frame)."""
    frames = mask.shape[0]
    latent_frames_for(frames)
    window = (1 if frames == 1 else VAE_TEMPORAL, VAE_SPATIAL, VAE_SPATIAL)
    return F.avg_pool3d(mask[None, None].float(), window)


def fit_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Frames [F, H, W, C] -> [F, height, width, C]: scaled (antialiased) to cover the size, the overflow cropped
    evenly from both sides."""
    _, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    scale = max(width / w, height / h)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    scaled = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", antialias=True)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return scaled[:, :, top : top + height, left : left + width].permute(0, 2, 3, 1).clamp(0, 1)


def encode(vae: CogVideoXVAE, frames: torch.Tensor) -> torch.Tensor:
    """Frames [F, H, W, 3] in [0, 1] -> model-space latent [1, 16, F/4, H/8, W/8] float32."""
    with torch.no_grad():
        return vae.encode_to_model_latent(frames.permute(3, 0, 1, 2)[None] * 2 - 1).float()


def still_latent(vae: CogVideoXVAE, image: torch.Tensor, frame: int) -> torch.Tensor:
    """Image [H, W, 3] -> the latent frame [1, 16, 1, h, w] that holds it at video frame ``frame``: that latent
    frame of the image held still from frame 0, so the causal encoder sees the image before it too."""
    index = latent_frame(frame)
    held = image[None].expand(frames_for(index // 2 * 2 + 2), *image.shape)
    return encode(vae, held)[:, :, index : index + 1]


def from_images(vae: CogVideoXVAE, images: Sequence[tuple[torch.Tensor, int]], frames: int) -> Conditioning:
    """Image-to-video and keyframes: images [H, W, 3] at video frame indices, each holding its latent frame."""
    height, width = images[0][0].shape[:2]
    grid = (latent_frames_for(frames), height // VAE_SPATIAL, width // VAE_SPATIAL)
    latent, keep = torch.zeros(1, vae.config.latent_channels, *grid), torch.zeros(1, 1, *grid)
    for image, frame in images:
        index = latent_frame(frame)
        latent[:, :, index : index + 1] = still_latent(vae, image, frame).cpu()
        keep[:, :, index] = 1
    return Conditioning(latent, keep)


def from_video(
    vae: CogVideoXVAE,
    video: torch.Tensor,
    frames: int,
    regenerate: Optional[torch.Tensor] = None,
    denoise: Optional[float] = None,
) -> Conditioning:
    """Video [F, H, W, 3] -> extension (``frames`` > F: the video's frames start the longer one), video-to-video
    (``denoise`` given: nothing held, the flow starts from the video) or inpainting (``regenerate`` [F or 1, H, W]
    in [0, 1], 1 = regenerate; with ``denoise`` the regenerated region starts from the video too).

    A shorter video is continued by holding its last frame before encoding; the causal encoder's latent frames
    over the video's own frames don't see that hold.
    """
    given = min(len(video), frames)
    canvas = torch.cat([video[:given], video[given - 1 : given].expand(frames - given, *video.shape[1:])])
    latent = encode(vae, canvas).cpu()
    known = torch.zeros(canvas.shape[:3])
    known[:given] = 1.0
    if regenerate is not None:
        known = known * (1 - regenerate.float()[:frames].expand(frames, *regenerate.shape[1:]))
    keep = None if denoise is not None and regenerate is None else latent_mask(known)
    return Conditioning(latent, keep, denoise=1.0 if denoise is None else denoise)


def cinemagraph(vae: CogVideoXVAE, image: torch.Tensor, animate: torch.Tensor, frames: int) -> Conditioning:
    """Image [H, W, 3] still where ``animate`` [H, W] is 0, moving where it is 1, for ``frames`` frames."""
    latent = encode(vae, image[None].expand(frames, *image.shape)).cpu()
    keep = latent_mask((1 - animate.float())[None].expand(frames, *animate.shape))
    return Conditioning(latent, keep)


def parse_keyframe(text: str) -> tuple[Path, int]:
    """``--keyframe PATH:FRAME`` -> (path, frame); the frame follows the last colon, so C:\\key.png:15 works."""
    path, _, frame = text.rpartition(":")
    if not path or not frame.strip().lstrip("-").isdigit():
        raise ValueError(f"--keyframe {text!r}: give PATH:FRAME, an image and its video frame index, e.g. key.png:15")
    return Path(path), int(frame)


def read_frames(path: Path, option: str) -> torch.Tensor:
    """An image or a video file -> frames [F, H, W, 3] in [0, 1]; an unreadable file is refused naming ``option``."""
    try:
        return read_video(path).frames
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(
            f"{option} {path}: can't be read ({error}); give a PNG or JPEG image, or an mp4/webm video"
        ) from None


def read_mask(path: Path, width: int, height: int) -> torch.Tensor:
    """A greyscale image or mask video -> [F, height, width] in [0, 1] (colours averaged; white = 1)."""
    return fit_frames(read_frames(path, "--mask"), width, height).mean(dim=-1)


def check_mask(keep: torch.Tensor, task: str, name: str = "--mask") -> None:
    """Refuse a mask that leaves nothing to generate or nothing kept, saying what it would mean; ``name`` is the
    option or node input that gave it."""
    if bool((keep >= 1).all()):
        raise ValueError(
            f"{name} is all black (on the latent grid, 8x8 pixels a cell): {task} would regenerate nothing; "
            "paint white where the video should change"
        )
    if bool((keep <= 0).all()):
        raise ValueError(
            f"{name} is all white: {task} would regenerate everything and keep nothing, which is plain "
            f"text-to-video; paint black what should stay, or drop {name}"
        )


def from_files(
    vae: CogVideoXVAE,
    width: int,
    height: int,
    frames: int,
    image: Optional[Path] = None,
    image_frame: Optional[int] = None,
    keyframes: Sequence[tuple[Path, int]] = (),
    video: Optional[Path] = None,
    mask: Optional[Path] = None,
    denoise: Optional[float] = None,
    mechanism: str = "replace",
) -> Optional[Conditioning]:
    """The command line's conditioning options -> the task's Conditioning (None without any), held the
    ``mechanism`` way; every misuse is refused naming the option and the fix. Inputs of another size are scaled
    and centre-cropped to width x height."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"--conditioning {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    conditioning = task_from_files(vae, width, height, frames, image, image_frame, keyframes, video, mask, denoise)
    return None if conditioning is None else replace(conditioning, mechanism=mechanism)


def task_from_files(vae, width, height, frames, image, image_frame, keyframes, video, mask, denoise):
    """``from_files`` without the mechanism: the task's Conditioning, or None."""
    if image_frame is not None and image is None:
        raise ValueError("--image-frame goes with --image: it says which video frame the image is")
    if denoise is not None and video is None:
        raise ValueError("--denoise goes with --video (video-to-video)")
    if video is not None and (image is not None or keyframes):
        raise ValueError("--video can't be combined with --image or --keyframe; give one source")
    if mask is not None and video is None and image is None:
        raise ValueError("--mask goes with --video (inpainting) or --image (cinemagraph)")
    if video is not None:
        return video_task(vae, width, height, frames, video, mask, denoise)
    if image is None and not keyframes:
        return None
    if image is not None and mask is not None:
        if keyframes:
            raise ValueError("a cinemagraph (--image with --mask) takes no --keyframe")
        animate = read_mask(mask, width, height)[0]
        conditioning = cinemagraph(
            vae, fit_frames(read_frames(image, "--image")[:1], width, height)[0], animate, frames
        )
        check_mask(conditioning.keep, "the cinemagraph")
        return conditioning
    image_frame = image_frame or 0
    placed = [] if image is None else [(image, image_frame, "--image", f"--image {image} at frame {image_frame}")]
    placed += [(path, frame, "--keyframe", f"--keyframe {path}:{frame}") for path, frame in keyframes]
    taken = {}
    for _, frame, _, option in placed:
        if not 0 <= frame < frames:
            raise ValueError(
                f"{option}: frame {frame} is outside the video's {frames} frames; pick a frame in 0..{frames - 1} "
                "or raise --frames"
            )
        index = latent_frame(frame)
        if index in taken and taken[index][1] == frame:
            raise ValueError(f"{option} and {taken[index][0]} both give frame {frame}; give one image per frame")
        if index in taken:
            raise ValueError(
                f"{option} and {taken[index][0]} fall in one latent frame ({index}: video frames "
                f"{VAE_TEMPORAL * index}..{VAE_TEMPORAL * index + VAE_TEMPORAL - 1}); the VAE keeps one image per "
                f"{VAE_TEMPORAL} frames, so put them in different groups of {VAE_TEMPORAL}"
            )
        taken[index] = (option, frame)
    images = [(fit_frames(read_frames(path, name)[:1], width, height)[0], frame) for path, frame, name, _ in placed]
    return from_images(vae, images, frames)


def video_task(vae, width, height, frames, video: Path, mask: Optional[Path], denoise: Optional[float]):
    """``from_files`` for --video: extension, video-to-video (--denoise) or inpainting (--mask)."""
    if denoise is not None and not 0 < denoise <= 1:
        raise ValueError(f"--denoise {denoise} must lie in (0, 1]: 1 redraws the video, near 0 keeps it")
    clip = fit_frames(read_frames(video, "--video"), width, height)
    if denoise is None and mask is None:
        if frames <= len(clip):
            raise ValueError(
                f"--video has {len(clip)} frames and --frames is {frames}: an extension must be longer than its input; "
                f"pass --frames {8 * (len(clip) // 8 + 1)} or more, or add "
                "--denoise (video-to-video) or --mask (inpainting)"
            )
        return from_video(vae, clip, frames)
    if len(clip) < frames:
        raise ValueError(
            f"--video has {len(clip)} frames, fewer than --frames {frames}: video-to-video and inpainting keep the "
            f"video's length; pass --frames {len(clip) // 8 * 8 or 8} (a multiple of 8), or drop --denoise and --mask "
            "to extend it"
        )
    regenerate = None
    if mask is not None:
        regenerate = read_mask(mask, width, height)
        if len(regenerate) != 1 and len(regenerate) < frames:
            raise ValueError(
                f"--mask has {len(regenerate)} frames and the video {frames}: give one greyscale image for every "
                "frame or a mask video at least as long"
            )
    conditioning = from_video(vae, clip, frames, regenerate, denoise)
    if mask is not None:
        check_mask(conditioning.keep, "inpainting")
    return conditioning
