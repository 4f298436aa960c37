"""Video files with sound, written and read through PyAV alone.

Two containers are supported, picked from the file suffix unless ``format`` is given:

- ``.mp4``: H.264 (libx264, yuv420p) video and AAC audio, at the audio's own sample rate.
- ``.webm``: VP9 (libvpx-vp9, yuv420p, constant quality) video and Opus audio. Opus in
  WebM always runs at 48 kHz, so audio at any other rate is resampled to 48 kHz with
  PyAV's ``AudioResampler`` and reads back at 48 kHz.

Frames use ComfyUI's IMAGE layout, ``[frames, height, width, 3]`` floats in 0..1.
yuv420p needs even dimensions; an odd width or height is padded by one pixel that
repeats the last column or row (edge replication), so nothing is cropped away.

The audio track is made exactly as long as the video, ``frames / fps`` seconds: longer
audio is cut, shorter audio is followed by silence. It is encoded frame by frame next
to the picture (each video frame carries the audio of its own display interval), which
keeps the two streams interleaved and lets ``frames`` be a generator.

Container metadata (``metadata``: text tags) goes into the file as ComfyUI's own Save
Video writes it: MP4 keeps arbitrary keys in its ``mdta`` item list (``movflags
use_metadata_tags``), WebM in Matroska SimpleTags, whose names FFmpeg writes upper-case.
MP4s are also written ``faststart`` (index and tags at the front): the frontend reads only the
first 64 MB of a dropped file for its workflow.

Files are written to a hidden temporary file in the destination folder and renamed
into place only after the container is finalised, so an exception or an interrupt
never leaves a partial file at ``path``. The temporary file is created with the mode
any new file gets (``0o666`` less the umask), which the finished file keeps.
"""

import itertools
import math
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Union

import av
import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

OPUS_SAMPLE_RATE = 48000
"""Opus in WebM is always decoded at 48 kHz; audio for .webm is resampled to it."""

FPS_MAX_DENOMINATOR = 1001
"""Float frame rates become the nearest fraction with at most this denominator (29.97 -> 30000/1001)."""


@dataclass(frozen=True)
class ContainerSpec:
    """How one container is encoded: codecs, the default quality, encoder options."""

    video_codec: str
    audio_codec: str
    default_crf: int
    video_options: dict
    audio_sample_rate: Optional[int] = None  # None: keep the input's sample rate
    container_options: Optional[dict] = None  # options of the muxer


CONTAINERS = {
    "mp4": ContainerSpec(
        video_codec="libx264",
        audio_codec="aac",
        default_crf=18,
        video_options={"preset": "medium"},
        # without it the mp4 muxer keeps only the iTunes keys and drops "prompt" and "workflow"
        container_options={"movflags": "use_metadata_tags+faststart"},
    ),
    "webm": ContainerSpec(
        video_codec="libvpx-vp9",
        audio_codec="libopus",
        default_crf=32,
        # b:v 0 turns crf into constant-quality mode; "good" + cpu-used 4 keeps VP9 fast.
        video_options={"b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
        audio_sample_rate=OPUS_SAMPLE_RATE,
    ),
}


class DecodedVideo(NamedTuple):
    """What :func:`read_video` returns; unpacks as ``frames, fps, audio, sample_rate``."""

    frames: torch.Tensor  # [F, H, W, 3] float32 in 0..1
    fps: Fraction
    audio: Optional[torch.Tensor]  # [C, T] float32 in -1..1, or None without an audio stream
    sample_rate: Optional[int]


def container_format_for(path: Union[str, os.PathLike], format: Optional[str] = None) -> str:
    """The container name ("mp4" or "webm") from ``format`` or else from the suffix of ``path``."""
    if format is not None:
        name = format.lower().lstrip(".")
        if name not in CONTAINERS:
            raise ValueError(f"format={format!r} is not supported; use one of {sorted(CONTAINERS)}.")
        return name
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in CONTAINERS:
        raise ValueError(
            f"Cannot tell the container of {str(path)!r} from its suffix {Path(path).suffix!r}; "
            f"name the file .mp4 or .webm, or pass format='mp4' / format='webm'."
        )
    return suffix


def frame_rate_fraction(fps: Union[int, float, Fraction]) -> Fraction:
    """``fps`` as an exact positive Fraction; floats go through ``limit_denominator``."""
    if isinstance(fps, bool) or not isinstance(fps, (Real, Fraction)):
        raise TypeError(f"fps={fps!r} must be a number (int, float or Fraction), e.g. fps=8.")
    if isinstance(fps, float) or not isinstance(fps, (int, Fraction)):
        value = float(fps)
        if not math.isfinite(value):
            raise ValueError(f"fps={fps!r} must be a finite positive number, e.g. fps=8.")
        rate = Fraction(value).limit_denominator(FPS_MAX_DENOMINATOR)
    else:
        rate = Fraction(fps)
    if rate <= 0:
        raise ValueError(f"fps={fps!r} must be greater than 0, e.g. fps=8.")
    return rate


def write_video(
    path: Union[str, os.PathLike],
    frames: Union[ArrayLike, Iterable[ArrayLike]],
    fps: Union[int, float, Fraction],
    audio: Optional[ArrayLike] = None,
    sample_rate: Optional[int] = None,
    format: Optional[str] = None,
    crf: Optional[int] = None,
    audio_bitrate: int = 128_000,
    metadata: Optional[dict[str, str]] = None,
) -> Path:
    """Encode ``frames`` (and ``audio``) into ``path`` atomically; returns the path.

    frames: ``[F, H, W, 3]`` float in 0..1 (tensor or array), or an iterable of
        ``[H, W, 3]`` frames. uint8 frames (0..255) are accepted as they are.
    fps: int, float or Fraction, > 0.
    audio: ``[C, T]`` (C = 1 or 2) or ``[T]`` float in -1..1, or ComfyUI's ``[1, C, T]``.
        Trimmed or padded with silence to exactly ``F / fps`` seconds.
    format: "mp4" or "webm"; by default taken from the suffix of ``path``.
    crf: quality, lower is better (x264 0..51, default 18; VP9 0..63, default 32).
    metadata: container tags, text to text, e.g. ``{"workflow": json.dumps(workflow)}``.
    """
    path = Path(path)
    container_name = container_format_for(path, format)
    rate = frame_rate_fraction(fps)
    if audio is not None:
        audio, sample_rate = _validated_audio(audio, sample_rate)
    elif sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} must be a positive number of samples per second.")
    metadata = _validated_metadata(metadata)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist.")

    temporary_name = _create_temporary_file(path)
    try:
        _encode(temporary_name, container_name, frames, rate, audio, sample_rate, crf, audio_bitrate, metadata)
        os.replace(temporary_name, path)
    except BaseException:
        os.unlink(temporary_name)
        raise
    return path


def read_video(path: Union[str, os.PathLike]) -> DecodedVideo:
    """Decode every frame and the first audio track of ``path``.

    Returns ``(frames [F, H, W, 3] float32 0..1, fps Fraction, audio [C, T] float32 or None,
    sample_rate or None)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_video: no file at {str(path)!r}.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"read_video: {str(path)!r} is not a readable video file ({error}).") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"read_video: {str(path)!r} has no video stream.")
        video_stream = container.streams.video[0]
        audio_stream = container.streams.audio[0] if container.streams.audio else None
        streams = [video_stream] + ([audio_stream] if audio_stream is not None else [])

        pictures = []
        sound = []
        to_float_planar = None
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if packet.stream is video_stream:
                    pictures.append(frame.to_ndarray(format="rgb24"))
                else:
                    if to_float_planar is None:
                        to_float_planar = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
                    sound.extend(piece.to_ndarray() for piece in to_float_planar.resample(frame))
        if to_float_planar is not None:
            sound.extend(piece.to_ndarray() for piece in to_float_planar.resample(None))

        if not pictures:
            raise ValueError(f"read_video: {str(path)!r} has a video stream but no decodable frames.")
        fps = _stream_frame_rate(video_stream, len(pictures))
        if audio_stream is not None:  # read while the container is open: PyAV 18.1.1 refuses stream fields after
            channels, rate = audio_stream.codec_context.channels, int(audio_stream.rate)
            declared = None
            if audio_stream.duration and audio_stream.time_base:
                # MP4 declares the true length; AAC's last frame is decoded whole, padding included.
                declared = round(audio_stream.duration * audio_stream.time_base * audio_stream.rate)

    frames = torch.from_numpy(np.stack(pictures)).float().div_(255.0)
    if audio_stream is None:
        return DecodedVideo(frames, fps, None, None)
    samples = np.concatenate(sound, axis=1) if sound else np.zeros((channels, 0), np.float32)
    if declared is not None:
        samples = samples[:, :declared]
    return DecodedVideo(frames, fps, torch.from_numpy(samples.astype(np.float32)), rate)


def _stream_frame_rate(stream, frame_count: int) -> Fraction:
    """The stream's declared average rate, else the rate implied by its duration."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate).limit_denominator(FPS_MAX_DENOMINATOR)
    if stream.duration and stream.time_base:
        return Fraction(frame_count / float(stream.duration * stream.time_base)).limit_denominator(FPS_MAX_DENOMINATOR)
    raise ValueError("read_video: the video stream declares no frame rate and no duration.")


def _create_temporary_file(path: Path) -> str:
    """A new empty hidden file next to ``path``, with the mode a new file gets (0o666 less the umask).

    Not ``tempfile.mkstemp``: its files are 0o600, and the finished video would keep that mode after the rename.
    """
    while True:
        name = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.partial")
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return name


def _encode(filename, container_name, frames, rate, audio, sample_rate, crf, audio_bitrate, metadata):
    spec = CONTAINERS[container_name]
    frame_iter = _frames_as_uint8(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError("write_video: frames is empty (0 frames); a video needs at least one frame.")
    height, width = first.shape[:2]
    even_height, even_width = height + height % 2, width + width % 2

    with av.open(filename, mode="w", format=container_name, options=dict(spec.container_options or {})) as container:
        container.metadata.update(metadata)
        video_stream = container.add_stream(spec.video_codec, rate=rate, options=dict(spec.video_options))
        video_stream.width = even_width
        video_stream.height = even_height
        video_stream.pix_fmt = "yuv420p"
        video_stream.codec_context.options = {
            **video_stream.codec_context.options,
            "crf": str(spec.default_crf if crf is None else int(crf)),
        }

        soundtrack = None
        if audio is not None:
            soundtrack = _Soundtrack(container, spec, audio, sample_rate, rate, audio_bitrate)

        index = 0
        for picture in itertools.chain([first], frame_iter):
            if picture.shape[:2] != (height, width):
                raise ValueError(
                    f"write_video: frame {index} is {picture.shape[1]}x{picture.shape[0]} but frame 0 is "
                    f"{width}x{height}; every frame of a video must have the same size."
                )
            if (even_height, even_width) != (height, width):
                picture = np.pad(picture, ((0, even_height - height), (0, even_width - width), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            video_frame.pts = index
            video_frame.time_base = 1 / rate
            container.mux(video_stream.encode(video_frame))
            if soundtrack is not None:
                soundtrack.encode_interval(index)
            index += 1

        container.mux(video_stream.encode(None))
        if soundtrack is not None:
            soundtrack.finish()


class _Soundtrack:
    """Feeds the audio of each video frame's display interval to the audio encoder."""

    def __init__(self, container, spec, audio, sample_rate, frame_rate, bitrate):
        self.container = container
        self.audio = audio
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.layout = "mono" if audio.shape[0] == 1 else "stereo"
        output_rate = spec.audio_sample_rate or sample_rate
        self.stream = container.add_stream(spec.audio_codec, rate=output_rate)
        self.stream.layout = self.layout
        self.stream.bit_rate = bitrate
        self.resampler = (
            av.AudioResampler(format="fltp", layout=self.layout, rate=output_rate)
            if output_rate != sample_rate
            else None
        )

    def sample_at_frame(self, index: int) -> int:
        return round(Fraction(index) * self.sample_rate / self.frame_rate)

    def encode_interval(self, index: int) -> None:
        start, stop = self.sample_at_frame(index), self.sample_at_frame(index + 1)
        chunk = np.zeros((self.audio.shape[0], stop - start), np.float32)
        available = self.audio[:, start:stop]
        chunk[:, : available.shape[1]] = available
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, self.sample_rate)
        self._encode(frame)

    def _encode(self, frame) -> None:
        pieces = self.resampler.resample(frame) if self.resampler is not None else [frame]
        for piece in pieces:
            self.container.mux(self.stream.encode(piece))

    def finish(self) -> None:
        if self.resampler is not None:
            for piece in self.resampler.resample(None):
                self.container.mux(self.stream.encode(piece))
        self.container.mux(self.stream.encode(None))


def _to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype != torch.uint8:
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"write_video: {name} must be a torch.Tensor or numpy array, got {type(value).__name__}.")


def _picture_to_uint8(picture: np.ndarray) -> np.ndarray:
    if picture.dtype == np.uint8:
        return picture
    return (np.clip(picture.astype(np.float32, copy=False), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _frames_as_uint8(frames) -> Iterable[np.ndarray]:
    """Yield ``[H, W, 3]`` uint8 frames from a ``[F, H, W, 3]`` array or an iterable of frames."""
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        array = _to_numpy(frames, "frames")
        if array.ndim != 4 or array.shape[-1] != 3:
            hint = ""
            if array.ndim == 4 and array.shape[1] == 3:
                hint = " It looks channels-first; permute [F, 3, H, W] to [F, H, W, 3]."
            elif array.ndim == 3 and array.shape[-1] == 3:
                hint = " For a single image, add a frame axis: frames[None]."
            raise ValueError(
                f"write_video: frames has shape {tuple(array.shape)}; expected [frames, height, width, 3] "
                f"floats in 0..1 (ComfyUI IMAGE layout).{hint}"
            )
        if array.shape[0] == 0:
            raise ValueError("write_video: frames is empty (0 frames); a video needs at least one frame.")
        for picture in array:
            yield _picture_to_uint8(picture)
        return
    if isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
        raise TypeError(
            f"write_video: frames must be a [F, H, W, 3] tensor/array or an iterable of [H, W, 3] frames, "
            f"got {type(frames).__name__}."
        )
    for index, picture in enumerate(frames):
        picture = _to_numpy(picture, f"frame {index}")
        if picture.ndim != 3 or picture.shape[-1] != 3:
            raise ValueError(
                f"write_video: frame {index} has shape {tuple(picture.shape)}; expected [height, width, 3]."
            )
        yield _picture_to_uint8(picture)


def _validated_metadata(metadata) -> dict:
    """``metadata`` as a dict of text tags ({} for None)."""
    metadata = dict(metadata or {})
    wrong = [key for key, value in metadata.items() if not (isinstance(key, str) and isinstance(value, str))]
    if wrong:
        raise TypeError(
            f"write_video: metadata {wrong!r} must map text to text; encode other values first, e.g. json.dumps(value)."
        )
    return metadata


def _validated_audio(audio: ArrayLike, sample_rate) -> tuple:
    """``audio`` as a float32 ``[C, T]`` array in -1..1 with C in (1, 2), and an int sample rate."""
    if sample_rate is None:
        raise ValueError(
            "write_video: audio was given without sample_rate; pass sample_rate=16000 (or the audio's rate)."
        )
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, Real)
        or sample_rate <= 0
        or int(sample_rate) != sample_rate
    ):
        raise ValueError(
            f"write_video: sample_rate={sample_rate!r} must be a positive whole number of samples per second."
        )
    array = _to_numpy(audio, "audio").astype(np.float32, copy=False)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]  # ComfyUI AUDIO waveform [batch=1, C, T]
    elif array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] not in (1, 2):
        hint = ""
        if array.ndim == 2 and array.shape[1] in (1, 2):
            hint = " It looks like [T, C]; transpose it to [C, T]."
        raise ValueError(
            f"write_video: audio has shape {tuple(array.shape)}; expected [channels, samples] with 1 (mono) or "
            f"2 (stereo) channels, or [samples] for mono.{hint}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("write_video: audio contains NaN or infinite samples.")
    return np.ascontiguousarray(np.clip(array, -1.0, 1.0)), int(sample_rate)
