"""Video latent -> frames, through the CogVideoX VAE."""

from __future__ import annotations

from ..lumina_core.pipeline import decode_latent
from . import _comfy
from ._comfy import io
from .sockets import LuminaVAE, video_samples


class LuminaVideoVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoVAEDecode",
            display_name="Lumina-Video VAE Decode",
            category="Lumina-Video/latent",
            description=(
                "Decodes a video latent into frames with the CogVideoX VAE, streaming through time two latent frames "
                "at a time. Tiled decoding (on by default) also splits each frame into overlapping tiles blended at "
                "the seams, so memory stays that of one tile whatever the video size. Each video comes out as ComfyUI "
                "IMAGE [frames, height, width, 3]; a batch of videos comes out as a list of videos, so the nodes "
                "after it (Audio Generate, Save Video, ComfyUI's video nodes) run once per video and each is saved "
                "as its own file."
            ),
            inputs=[
                LuminaVAE.Input(
                    "vae", tooltip="The VAE from Lumina-Video VAE Loader (the same kind the model was trained with)."
                ),
                io.Latent.Input("latent", tooltip="The sampled latent from Lumina-Video Sampler."),
                io.Boolean.Input(
                    "tiled",
                    default=True,
                    tooltip="Decode in overlapping spatial tiles: bounded memory at large sizes; seams are blended.",
                ),
                io.Int.Input(
                    "tile_size",
                    default=256,
                    min=64,
                    max=2048,
                    step=32,
                    tooltip="Tile side in pixels (8 pixels per latent pixel). Larger: fewer seams, more memory.",
                ),
                io.Int.Input(
                    "tile_overlap",
                    default=64,
                    min=0,
                    max=1024,
                    step=8,
                    tooltip="Pixels shared by neighbouring tiles and blended; must be smaller than tile_size.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    display_name="images",
                    tooltip="Decoded frames [frames, height, width, 3] in 0..1, one IMAGE per video of the batch.",
                    is_output_list=True,
                )
            ],
        )

    @classmethod
    def execute(
        cls, vae, latent: dict, tiled: bool = True, tile_size: int = 256, tile_overlap: int = 64
    ) -> io.NodeOutput:
        samples = video_samples(latent)
        tile, overlap = tile_size // 8, tile_overlap // 8
        if tiled and not 0 <= overlap < tile:
            raise ValueError(f"tile_overlap {tile_overlap} px must be smaller than tile_size {tile_size} px")
        _comfy.throw_if_interrupted()
        _comfy.load_for_inference(vae.patcher)
        video = decode_latent(vae.vae, samples, tiled=tiled, tile_latent=tile, overlap=overlap)  # [B, F, H, W, 3]
        videos = [frames.float().to(_comfy.intermediate_device()) for frames in video]
        return io.NodeOutput(videos)
