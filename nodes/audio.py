"""Video frames -> a soundtrack exactly as long as the video."""

from __future__ import annotations

from ..lumina_core.pipeline import generate_audio
from . import _comfy
from ._comfy import io
from .sockets import LuminaV2A

MAX_SEED = 2**53 - 1


class LuminaVideoAudioGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoAudioGenerate",
            display_name="Lumina-Video Audio Generate",
            category="Lumina-Video/audio",
            description=(
                "Makes a soundtrack for video frames with a video-to-audio model (Lumina-V2A design: frame and "
                "motion-sync features condition a flow-matching transformer over mel latents, then a vocoder). The "
                "audio lasts exactly frames / fps seconds. It runs once per video of a batch (VAE Decode gives one "
                "IMAGE per video)."
            ),
            inputs=[
                LuminaV2A.Input("v2a", tooltip="The video-to-audio model from Lumina-Video V2A Loader."),
                io.Image.Input(
                    "images",
                    tooltip="The video's frames (IMAGE [frames, height, width, 3]), e.g. from Lumina-Video VAE Decode.",
                ),
                io.Float.Input(
                    "fps",
                    default=8.0,
                    min=1.0,
                    max=120.0,
                    step=1.0,
                    round=0.001,
                    tooltip="Frame rate the video will play at; sets the audio's length and sync. "
                    "Embedded default: 8; released model: 24.",
                ),
                io.Int.Input("steps", default=25, min=2, max=200, tooltip="Time-grid points (steps - 1 model calls)."),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=MAX_SEED,
                    control_after_generate=True,
                    tooltip="Noise seed of the audio.",
                ),
                io.Float.Input(
                    "cfg",
                    default=3.5,
                    min=0.0,
                    max=20.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Guidance towards the video (engine convention: 3.5 = usual scale 4.5); 0 = no guidance.",
                ),
            ],
            outputs=[
                io.Audio.Output(display_name="audio", tooltip="Mono audio {waveform [1, 1, samples], sample_rate}.")
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, v2a, images, fps: float, steps: int, seed: int, cfg: float) -> io.NodeOutput:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images {tuple(images.shape)} are not IMAGE frames [frames, height, width, 3]")
        progress = _comfy.Progress(steps - 1, node_id=cls.hidden.unique_id if cls.hidden is not None else None)
        _comfy.throw_if_interrupted()
        _comfy.load_for_inference(v2a.patcher)
        waveform, sample_rate = generate_audio(
            v2a,
            images[None].float(),
            fps,
            seed,
            steps=steps,
            cfg=cfg,
            callback=lambda step, total, *_: progress.update(step, total),
        )
        return io.NodeOutput({"waveform": waveform[:1].float().cpu(), "sample_rate": int(sample_rate)})
