"""Frames (+ sound) -> a video file in ComfyUI's output folder, previewed on the node."""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F

from ..lumina_core.io.media import frame_rate_fraction, write_video
from . import _comfy
from ._comfy import io

log = logging.getLogger("lumina_video")

FORMATS = ("mp4", "webm")
# Sample rates the AAC encoder accepts; other rates are resampled to the next one up.
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def prepare_audio(audio: dict, container: str) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO -> ([channels <= 2, samples] float32, sample rate) the container can carry.

    Takes the first item of a batch, mixes more than two channels down to mono, and for mp4
    resamples (linear) to a rate AAC supports. Length is matched to the video by write_video.
    """
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if rate <= 0:
        raise ValueError(f"audio sample_rate {rate} must be positive")
    if waveform.ndim == 3:
        if waveform.shape[0] > 1:
            log.warning("Lumina-Video Save Video: audio has a batch of %d; using the first", waveform.shape[0])
        waveform = waveform[0]
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2:
        raise ValueError(f"audio waveform {tuple(audio['waveform'].shape)} is not [batch, channels, samples]")
    waveform = waveform.detach().float().cpu()
    if waveform.shape[0] > 2:
        waveform = waveform.mean(dim=0, keepdim=True)
    if container == "mp4" and rate not in AAC_RATES:
        target = next((r for r in AAC_RATES if r >= rate), AAC_RATES[-1])
        length = max(1, round(waveform.shape[1] * target / rate))
        waveform = F.interpolate(waveform[None], size=length, mode="linear", align_corners=False)[0]
        rate = target
    return waveform.contiguous(), rate


class LuminaVideoSaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoSaveVideo",
            display_name="Lumina-Video Save Video",
            category="Lumina-Video/output",
            description=(
                "Writes the frames, with the soundtrack if one is connected, to a video in ComfyUI's output folder and "
                "plays it on the node. mp4 = H.264 + AAC, webm = VP9 + Opus (48 kHz). The sound is cut or padded with "
                "silence to exactly frames / fps seconds, and resampled when the container needs it; more than two "
                "channels are mixed down. Files are numbered, never overwritten, and appear only once complete. Also "
                "outputs ComfyUI's VIDEO for the native video nodes."
            ),
            inputs=[
                io.Image.Input(
                    "images",
                    tooltip="Frames [frames, height, width, 3] in 0..1, e.g. from Lumina-Video VAE Decode. "
                    "Odd sizes are padded by one pixel.",
                ),
                io.Float.Input(
                    "fps",
                    default=8.0,
                    min=1.0,
                    max=120.0,
                    step=1.0,
                    round=0.001,
                    tooltip="Playback frame rate (embedded default 8; released model 24).",
                ),
                io.Combo.Input(
                    "format",
                    options=list(FORMATS),
                    default="mp4",
                    tooltip="mp4 (H.264 + AAC) plays everywhere; webm (VP9 + Opus) is smaller and open.",
                ),
                io.String.Input(
                    "filename_prefix",
                    default="lumina_video/LuminaVideo",
                    tooltip="File name inside ComfyUI's output folder; subfolders allowed, '..' and absolute paths "
                    "refused. A number is appended: LuminaVideo_00001_.mp4.",
                ),
                io.Audio.Input(
                    "audio",
                    optional=True,
                    tooltip="Soundtrack (AUDIO), e.g. from Lumina-Video Audio Generate or Load Audio.",
                ),
            ],
            outputs=[
                io.Video.Output(
                    display_name="video",
                    tooltip="The same frames and sound as ComfyUI's VIDEO (for Save Video, Get Video Components, ...).",
                )
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, fps: float, format: str, filename_prefix: str, audio=None) -> io.NodeOutput:
        if format not in FORMATS:
            raise ValueError(f"format {format!r} is not one of {FORMATS}")
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
            raise ValueError(f"images {tuple(images.shape)} are not IMAGE frames [frames, height, width, 3]")
        rate = frame_rate_fraction(fps)
        height, width = images.shape[1:3]
        folder, stem, counter, subfolder = _comfy.save_path(filename_prefix, width, height)
        os.makedirs(folder, exist_ok=True)
        while os.path.exists(os.path.join(folder, f"{stem}_{counter:05}_.{format}")):
            counter += 1
        filename = f"{stem}_{counter:05}_.{format}"
        sound, sample_rate = (None, None) if audio is None else prepare_audio(audio, format)
        _comfy.throw_if_interrupted()
        write_video(
            os.path.join(folder, filename),
            images.detach().float().cpu(),
            rate,
            audio=sound,
            sample_rate=sample_rate,
            format=format,
        )
        video_audio = None if sound is None else {"waveform": sound[None], "sample_rate": sample_rate}
        video = _comfy.make_video(images, rate, video_audio)
        return io.NodeOutput(video, ui=_comfy.preview_video(filename, subfolder))
