"""Frames (+ sound) -> a video file in ComfyUI's output folder, previewed on the node."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Optional

import torch
import torch.nn.functional as F

from ..lumina_core.io.media import frame_rate_fraction, write_video
from . import _comfy
from ._comfy import io

log = logging.getLogger("lumina_video")

FORMATS = ("mp4", "webm")
MUST_MATCH, TRIM_OR_PAD = "must match", "trim or pad"
AUDIO_LENGTHS = (MUST_MATCH, TRIM_OR_PAD)
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


def audio_length_problem(samples: int, sample_rate: int, frames: int, fps: Fraction) -> Optional[str]:
    """Why a sound of ``samples`` doesn't fit ``frames`` at ``fps`` (off by more than one video frame), or None.

    The usual cause is another fps on Audio Generate, which makes frames / its fps seconds of sound.
    """
    sound, video = Fraction(samples, sample_rate), frames / fps
    if abs(sound - video) <= 1 / fps:
        return None
    message = (
        f"audio is {_number(sound)} s long but the video is {_number(video)} s ({frames} frames at {_number(fps)} fps)"
    )
    if samples:
        message += f"; at {_number(frames / sound)} fps they would match ({frames} frames / {_number(sound)} s)"
    return (
        f"{message}. Set the same fps on Audio Generate and on Save Video, or set audio_length to '{TRIM_OR_PAD}' to "
        "cut the sound or pad it with silence to the video's length."
    )


def soundtrack(audio, container: str, frames: int, fps: Fraction, audio_length: str) -> tuple:
    """(waveform, sample rate) for write_video, (None, None) without audio.

    Under "must match" a sound that doesn't last frames / fps is refused here, before anything is written; its
    length is measured as given, before any resampling.
    """
    if audio is None:
        return None, None
    prepared = prepare_audio(audio, container)  # checks the sample rate, too
    if audio_length == MUST_MATCH:
        problem = audio_length_problem(audio["waveform"].shape[-1], int(audio["sample_rate"]), frames, fps)
        if problem:
            raise ValueError(problem)
    return prepared


def _number(value) -> str:
    """Seconds or frames per second for a message: at most two decimals, no trailing zeros."""
    return f"{round(float(value), 2):g}"


class LuminaVideoSaveVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoSaveVideo",
            display_name="Lumina-Video Save Video",
            category="Lumina-Video/output",
            description=(
                "Writes the frames, with the soundtrack if one is connected, to a video in ComfyUI's output folder and "
                "plays it on the node. mp4 = H.264 + AAC, webm = VP9 + Opus (48 kHz). A sound that isn't frames / fps "
                "seconds long (within a frame) is refused or cut or padded with silence, as audio_length says; it is "
                "resampled when the container needs it, and more than two channels are mixed down. Files are numbered, "
                "never overwritten, and appear only once complete; they carry the prompt and the workflow (drop one on "
                "ComfyUI to get its workflow back) unless ComfyUI runs with --disable-metadata. Also outputs ComfyUI's "
                "VIDEO for the native video nodes."
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
                    tooltip="Playback frame rate (embedded default 8; released model 24). Give Audio Generate the "
                    "same fps.",
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
                io.Combo.Input(
                    "audio_length",
                    options=list(AUDIO_LENGTHS),
                    default=MUST_MATCH,
                    optional=True,
                    tooltip=f"'{MUST_MATCH}': a sound that isn't frames / fps seconds long (within a frame) is an "
                    "error, nothing is saved (usually Audio Generate ran at another fps). "
                    f"'{TRIM_OR_PAD}': the sound is cut, or padded with silence, to the video's length.",
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            outputs=[
                io.Video.Output(
                    display_name="video",
                    tooltip="The same frames and sound as ComfyUI's VIDEO (for Save Video, Get Video Components, ...).",
                )
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filename_prefix: str):
        if filename_prefix is None:  # a linked input is checked when the node runs
            return True
        return _comfy.filename_prefix_problem(filename_prefix) or True

    @classmethod
    def execute(
        cls, images, fps: float, format: str, filename_prefix: str, audio=None, audio_length: str = MUST_MATCH
    ) -> io.NodeOutput:
        if format not in FORMATS:
            raise ValueError(f"format {format!r} is not one of {FORMATS}")
        if audio_length not in AUDIO_LENGTHS:
            raise ValueError(f"audio_length {audio_length!r} is not one of {AUDIO_LENGTHS}")
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
            raise ValueError(f"images {tuple(images.shape)} are not IMAGE frames [frames, height, width, 3]")
        rate = frame_rate_fraction(fps)
        sound, sample_rate = soundtrack(audio, format, len(images), rate, audio_length)
        height, width = images.shape[1:3]
        folder, stem, counter, subfolder = _comfy.save_path(filename_prefix, width, height)
        os.makedirs(folder, exist_ok=True)
        while os.path.exists(os.path.join(folder, f"{stem}_{counter:05}_.{format}")):
            counter += 1
        filename = f"{stem}_{counter:05}_.{format}"
        _comfy.throw_if_interrupted()
        write_video(
            os.path.join(folder, filename),
            images.detach().float().cpu(),
            rate,
            audio=sound,
            sample_rate=sample_rate,
            format=format,
            metadata=_comfy.file_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo),
        )
        video_audio = None if sound is None else {"waveform": sound[None], "sample_rate": sample_rate}
        video = _comfy.make_video(images, rate, video_audio)
        return io.NodeOutput(video, ui=_comfy.preview_video(filename, subfolder))
