"""Conditional generation in ComfyUI's own types: image-to-video, keyframes, extension, video-to-video, inpainting and
cinemagraphs as a LATENT with a ``noise_mask``, the way ComfyUI's inpainting and LTXV image-to-video carry them.

Each node builds the engine's ``Conditioning`` with the builders the command line uses (``lumina_core.conditioning``)
and turns it into a LATENT in one function, ``as_latent``: ``samples`` the known latent [B, 16, K, h, w] in model
space, ``noise_mask`` [1, 1, K, h, w] = 1 - strength * keep (1 generate, 0 keep, soft values between). ComfyUI's
samplers hold the kept region by replacement with the run's own noise (``KSamplerX0Inpaint``:
sigma * noise + (1 - sigma) * latent, the engine's t * known + (1 - t) * noise at t = 1 - sigma), so the Lumina-Video
Sampler, KSampler and SamplerCustomAdvanced all sample these latents. Video-to-video's denoise is the sampler's
widget (the Sampler's ``denoise``, KSampler's own), as ComfyUI does it; the latent carries the video to start from.

Each node takes a latent (Lumina-Video Empty Latent, or another conditioning node's) and adds its conditioning to it,
so image nodes chain into keyframes. An image holds a whole latent frame, 4 video frames (``docs/conditional.md``).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..lumina_core.conditioning import (
    Conditioning,
    check_mask,
    cinemagraph,
    encode,
    from_images,
    from_video,
    latent_frame,
)
from ..lumina_core.models.vae import FrameCountError, frames_for, latent_frames_for
from ..lumina_core.pipeline import scaled_latent
from ..lumina_core.request import MAX_FRAMES, VAE_SPATIAL, VAE_TEMPORAL
from . import _comfy
from ._comfy import io
from .sockets import REFINE_KEY, LuminaVAE, video_samples

CATEGORY = "Lumina-Video/conditioning"
VAE_TOOLTIP = "The VAE from Lumina-Video VAE Loader (the one the model was trained with)."
LATENT_TOOLTIP = (
    "Sets the video's size, length and batch: Lumina-Video Empty Latent, or the latent of another Lumina-Video "
    "conditioning node to add this one to it (keyframes: chain Image To Video nodes)."
)
OUTPUT_TOOLTIP = (
    "The latent with the known region and its noise_mask (1 generate, 0 keep), for Lumina-Video Sampler, KSampler "
    "or SamplerCustomAdvanced."
)


# --------------------------------------------------------------------------- LATENT <-> the engine's Conditioning


def as_latent(conditioning: Conditioning) -> dict:
    """The engine's Conditioning as ComfyUI's LATENT: the known latent as ``samples`` and, where something is kept,
    ``noise_mask`` = 1 - strength * keep. The denoise amount is the sampler's widget, not part of the latent."""
    out = {"samples": conditioning.latent}
    if conditioning.keep is not None:
        out["noise_mask"] = 1 - conditioning.keep * conditioning.strength
    return out


def video_of(latent: dict) -> tuple[int, int, int]:
    """A video LATENT -> (frames, height, width) in pixels; anything else is refused."""
    _, _, latent_frames, h, w = video_samples(latent).shape
    return frames_for(latent_frames), h * VAE_SPATIAL, w * VAE_SPATIAL


def mask_of(latent: dict) -> Optional[torch.Tensor]:
    """The noise_mask a LATENT carries, if any; one that isn't on its latent grid is refused."""
    mask = latent.get("noise_mask")
    if mask is None:
        return None
    samples = latent["samples"]
    grid = (samples.shape[0], 1, *samples.shape[2:])
    if mask.ndim != 5 or any(m not in (1, g) for m, g in zip(mask.shape, grid)):
        raise ValueError(
            f"latent carries a noise_mask of shape {tuple(mask.shape)}, not one on its latent grid "
            f"[batch or 1, 1, {grid[2]}, {grid[3]}, {grid[4]}] (a pixel mask, as SetLatentNoiseMask sets): put "
            "SetLatentNoiseMask after the Lumina-Video conditioning nodes, or give the mask to Video To Video"
        )
    return mask


def added(incoming: dict, conditioning: Conditioning, whole: bool) -> dict:
    """The LATENT ``incoming`` with ``conditioning`` added, as a LATENT. The masks combine (the smaller wins: kept by
    either is kept). ``whole``: the conditioning's latent is the video everywhere (video, cinemagraph), so it
    replaces the samples except where only ``incoming`` keeps them; otherwise (images) it counts only where it keeps."""
    old, old_mask = incoming["samples"], mask_of(incoming)
    new = as_latent(conditioning)
    latent = new["samples"].to(old.device, old.dtype)
    new_mask = new.get("noise_mask")
    new_mask = None if new_mask is None else new_mask.to(old.device, old.dtype)
    new_keeps = torch.zeros((), dtype=torch.bool) if new_mask is None else new_mask < 1
    if whole:
        old_keeps = torch.zeros((), dtype=torch.bool) if old_mask is None else old_mask.to(old.device) < 1
        samples = torch.where(old_keeps & ~new_keeps, old, latent)
    else:
        samples = torch.where(new_keeps, latent, old)
    out = {**incoming, "samples": samples.expand(old.shape).clone()}
    masks = [m.to(old.device, old.dtype) for m in (old_mask, new_mask) if m is not None]
    if masks:
        out["noise_mask"] = masks[0] if len(masks) == 1 else torch.minimum(*masks)
    return out


# --------------------------------------------------------------------------- input checks


def rgb(images: torch.Tensor, name: str) -> torch.Tensor:
    """IMAGE [N, H, W, C] -> [N, H, W, 3] float (an alpha channel dropped)."""
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise ValueError(f"{name} {tuple(images.shape)} is not an IMAGE [frames, height, width, 3]")
    return images[..., :3].float().cpu()


def encodable_frames(images: torch.Tensor, name: str) -> torch.Tensor:
    """``rgb`` frames whose count the VAE takes (1, or a multiple of 8), else an error naming the input."""
    frames = rgb(images, name)
    try:
        latent_frames_for(len(frames))
    except FrameCountError as error:
        raise ValueError(f"{name}: {error}") from None
    return frames


def check_size(images: torch.Tensor, name: str, height: int, width: int) -> None:
    """Refuse pixels of another size than the latent's, naming both sizes and the fix."""
    h, w = images.shape[1:3]
    if (h, w) != (height, width):
        raise ValueError(
            f"{name} is {w}x{h} but the latent is {width}x{height}: scale the {name} to {width}x{height} "
            f"(ComfyUI's Upscale Image, crop: center) or set the Empty Latent to {w}x{h} (multiples of 32)"
        )


def pixel_mask(mask: torch.Tensor, name: str, height: int, width: int) -> torch.Tensor:
    """MASK [H, W] or [N, H, W] -> [N, H, W] float in [0, 1]; another size than the video's is refused."""
    mask = mask.float().cpu()
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{name} {tuple(mask.shape)} is not a MASK [frames, height, width]")
    h, w = mask.shape[1:]
    if (h, w) != (height, width):
        raise ValueError(
            f"{name} is {w}x{h} but the video is {width}x{height}: make the mask at {width}x{height} "
            "(ComfyUI's Upscale Image on the mask as an image, or draw it on the video's frame)"
        )
    return mask.clamp(0, 1)


def prepare_vae(vae):
    """The engine's VAE of a LUMINAVIDEO_VAE, on its device through ComfyUI."""
    _comfy.throw_if_interrupted()
    _comfy.load_for_inference(vae.patcher)
    return vae.vae


# --------------------------------------------------------------------------- nodes


class LuminaVideoVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoVAEEncode",
            display_name="Lumina-Video VAE Encode",
            category=CATEGORY,
            description=(
                "Encodes frames into a video latent with the CogVideoX VAE: 4 frames per latent frame, 8x8 pixels per "
                "latent pixel, a single image to one latent frame. With a sampler's denoise below 1 (the Sampler's, "
                "KSampler's) the encoded video is redrawn (video-to-video); SetLatentNoiseMask on it gives "
                "ComfyUI's own inpainting."
            ),
            inputs=[
                LuminaVAE.Input("vae", tooltip=VAE_TOOLTIP),
                io.Image.Input(
                    "images",
                    tooltip="Frames [frames, height, width, 3]: 1 (a still image) or a multiple of 8 frames, width "
                    "and height multiples of 8 (of 32 to sample them).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The frames' latent, in the model's space.")],
        )

    @classmethod
    def execute(cls, vae, images: torch.Tensor) -> io.NodeOutput:
        frames = encodable_frames(images, "images")
        h, w = frames.shape[1:3]
        if h % VAE_SPATIAL or w % VAE_SPATIAL:
            raise ValueError(
                f"images are {w}x{h}: the VAE takes multiples of {VAE_SPATIAL} (the model multiples of 32); "
                "scale or crop them first (ComfyUI's Upscale Image, crop: center)"
            )
        latent = encode(prepare_vae(vae), frames)
        return io.NodeOutput({"samples": latent.to(_comfy.intermediate_device())})


class LuminaVideoImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoImageToVideo",
            display_name="Lumina-Video Image To Video",
            category=CATEGORY,
            description=(
                "Holds an image at a frame of the video: the image's latent frame is kept (noise_mask 0) while the "
                "sampler draws the rest in harmony with it. Frame N lies in latent frame N // 4, which decodes to 4 "
                "nearly equal frames. Chain several for keyframes (one image per group of 4 frames)."
            ),
            inputs=[
                LuminaVAE.Input("vae", tooltip=VAE_TOOLTIP),
                io.Latent.Input("latent", tooltip=LATENT_TOOLTIP),
                io.Image.Input(
                    "image",
                    tooltip="The image, at the latent's width and height (the first image of a batch is used).",
                ),
                io.Int.Input(
                    "frame_index",
                    default=0,
                    min=0,
                    max=MAX_FRAMES - 1,
                    tooltip="The video frame the image is (0 = the first); it holds frames "
                    "4 * (frame_index // 4) to that + 3.",
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    round=0.001,
                    tooltip="1 holds the image exactly; below 1 the sampler is only pulled towards it "
                    "(noise_mask = 1 - strength).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip=OUTPUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, vae, latent: dict, image: torch.Tensor, frame_index: int, strength: float) -> io.NodeOutput:
        frames, height, width = video_of(latent)
        picture = rgb(image, "image")[0]
        check_size(picture[None], "image", height, width)
        if not 0 <= frame_index < frames:
            raise ValueError(
                f"frame_index {frame_index} is beyond the latent's {frames} frames: pick 0..{frames - 1}, or make "
                "the Empty Latent longer"
            )
        index = latent_frame(frame_index)
        held = mask_of(latent)
        if held is not None and bool((held[:, :, index] < 1).any()):
            first = VAE_TEMPORAL * index
            raise ValueError(
                f"frame_index {frame_index} lies in latent frame {index} (video frames {first}..{first + 3}), which "
                f"the incoming latent already holds: the VAE keeps one image per {VAE_TEMPORAL} frames, so give "
                "each keyframe its own group of 4"
            )
        conditioning = from_images(prepare_vae(vae), [(picture, frame_index)], frames)
        conditioning = Conditioning(conditioning.latent, conditioning.keep, strength=strength)
        return io.NodeOutput(added(latent, conditioning, whole=False))


class LuminaVideoVideoToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoVideoToVideo",
            display_name="Lumina-Video Video To Video",
            category=CATEGORY,
            description=(
                "A video as the start of sampling. Alone it is video-to-video: set the sampler's denoise below 1 (the "
                "Sampler's or KSampler's; 1 redraws everything). With a mask it is inpainting: white (1) is "
                "regenerated, the rest kept. With keep_frames it is extension: the video's first keep_frames frames "
                "start a longer video (the Empty Latent's length)."
            ),
            inputs=[
                LuminaVAE.Input("vae", tooltip=VAE_TOOLTIP),
                io.Latent.Input("latent", tooltip=LATENT_TOOLTIP),
                io.Image.Input(
                    "video",
                    tooltip="The video's frames [frames, height, width, 3] at the latent's width and height; at "
                    "least the latent's frames (the rest are dropped) unless extending.",
                ),
                io.Int.Input(
                    "keep_frames",
                    default=0,
                    min=0,
                    max=MAX_FRAMES,
                    tooltip="Extension: keep the video's first keep_frames frames and generate the rest of the "
                    "latent's frames (a multiple of 4 keeps whole latent frames); 0 = off.",
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Inpainting: 1 (white) = regenerate, 0 = keep; one mask for every frame or one per "
                    "frame, at the video's size.",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip=OUTPUT_TOOLTIP)],
        )

    @classmethod
    def execute(
        cls, vae, latent: dict, video: torch.Tensor, keep_frames: int = 0, mask: Optional[torch.Tensor] = None
    ) -> io.NodeOutput:
        frames, height, width = video_of(latent)
        clip = rgb(video, "video")
        check_size(clip, "video", height, width)
        regenerate = None if mask is None else pixel_mask(mask, "mask", height, width)
        if regenerate is not None and len(regenerate) != 1 and len(regenerate) < frames:
            raise ValueError(
                f"mask has {len(regenerate)} frames and the latent {frames}: give one mask for all frames, or at "
                "least one per frame"
            )
        if keep_frames:
            if keep_frames > len(clip):
                raise ValueError(
                    f"keep_frames {keep_frames} is beyond the video's {len(clip)} frames: keep at most {len(clip)}"
                )
            if keep_frames >= frames:
                raise ValueError(
                    f"keep_frames {keep_frames} is not shorter than the latent's {frames} frames: an extension must "
                    "be longer than what it keeps; make the Empty Latent longer, or set keep_frames to 0"
                )
            clip = clip[:keep_frames]
        elif len(clip) < frames:
            raise ValueError(
                f"video has {len(clip)} frames, fewer than the latent's {frames}: video-to-video and inpainting keep "
                f"the latent's length; make the Empty Latent {len(clip) // 8 * 8 or 8} frames, or set keep_frames "
                "to extend the video"
            )
        # denoise 1.0 with no mask: nothing held, the video is where the sampler's denoise starts
        denoise = 1.0 if regenerate is None and not keep_frames else None
        conditioning = from_video(prepare_vae(vae), clip[:frames], frames, regenerate, denoise)
        if regenerate is not None:
            check_mask(conditioning.keep, "inpainting", "mask")
        return io.NodeOutput(added(latent, conditioning, whole=True))


class LuminaVideoCinemagraph(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoCinemagraph",
            display_name="Lumina-Video Cinemagraph",
            category=CATEGORY,
            description=(
                "A still image that moves only inside a mask: outside it every frame is the image (kept), inside "
                "the sampler animates it as the prompt says. The mask maps onto the latent grid by 8x8-pixel cells; "
                "a cell partly inside is partly kept."
            ),
            inputs=[
                LuminaVAE.Input("vae", tooltip=VAE_TOOLTIP),
                io.Latent.Input("latent", tooltip=LATENT_TOOLTIP),
                io.Image.Input(
                    "image",
                    tooltip="The still image, at the latent's width and height (the first image of a batch is used).",
                ),
                io.Mask.Input(
                    "mask",
                    tooltip="Where it moves: 1 (white) animated, 0 still; at the image's size (the first mask of a "
                    "batch is used).",
                ),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip=OUTPUT_TOOLTIP)],
        )

    @classmethod
    def execute(cls, vae, latent: dict, image: torch.Tensor, mask: torch.Tensor) -> io.NodeOutput:
        frames, height, width = video_of(latent)
        picture = rgb(image, "image")[0]
        check_size(picture[None], "image", height, width)
        animate = pixel_mask(mask, "mask", height, width)[0]
        conditioning = cinemagraph(prepare_vae(vae), picture, animate, frames)
        check_mask(conditioning.keep, "the cinemagraph", "mask")
        return io.NodeOutput(added(latent, conditioning, whole=True))


class LuminaVideoUpscaleVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoUpscaleVideo",
            display_name="Lumina-Video Upscale Video",
            category=CATEGORY,
            description=(
                "The start of the refine pass, Lumiere's super-resolution stage: frames scaled up (bicubic) and "
                "encoded at the new size. Sample it with the Sampler at denoise 0.1 (redrawn from t = 0.9, the best "
                "measured on the toy world) with the model through Lumina-Video Windows with tiles of the size the "
                "model knows (embedded: 64x64, overlap 32): the layout stays the video's, the detail is redrawn. "
                "The Sampler redraws this latent without the preset's skip-layer guidance, which deforms shapes "
                "larger than the model draws."
            ),
            inputs=[
                LuminaVAE.Input("vae", tooltip=VAE_TOOLTIP),
                io.Image.Input("images", tooltip="The video's frames [frames, height, width, 3], a multiple of 8."),
                io.Int.Input("scale", default=2, min=1, max=8, tooltip="How many times wider and higher."),
            ],
            outputs=[io.Latent.Output(display_name="latent", tooltip="The scaled video's latent, to redraw.")],
        )

    @classmethod
    def execute(cls, vae, images: torch.Tensor, scale: int = 2) -> io.NodeOutput:
        frames = encodable_frames(images, "images")
        latent = scaled_latent(prepare_vae(vae), frames[None], scale)
        return io.NodeOutput({"samples": latent.to(_comfy.intermediate_device()), REFINE_KEY: True})


CONDITIONAL_NODES = [
    LuminaVideoVAEEncode,
    LuminaVideoImageToVideo,
    LuminaVideoVideoToVideo,
    LuminaVideoCinemagraph,
    LuminaVideoUpscaleVideo,
]
