"""Round trips through lumina_core.media: containers, audio length and sync, odd sizes, atomic writes, file mode,
metadata, bad input."""

import json
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from lumina_core.io.media import read_video, write_video

FRAMES, HEIGHT, WIDTH, FPS = 16, 48, 64, 8
SAMPLE_RATE = 16000
AUDIO_FRAME = {"mp4": 1024, "webm": 960}  # one AAC frame; one 20 ms Opus frame at 48 kHz
CLICK_SECONDS = 0.75


def moving_square_frames(frames=FRAMES, height=HEIGHT, width=WIDTH):
    """A bright square sliding right over a dark gradient: easy to check after lossy coding."""
    video = np.zeros((frames, height, width, 3), np.float32)
    video[..., 2] = np.linspace(0.1, 0.3, width)[None, None, :]
    for index in range(frames):
        left = 2 + 2 * index
        video[index, 10:26, left : left + 16] = (0.9, 0.8, 0.1)
    return torch.from_numpy(video)


def click_track(channels, seconds):
    """Silence with one 880 Hz burst starting at CLICK_SECONDS."""
    samples = round(seconds * SAMPLE_RATE)
    audio = np.zeros((channels, samples), np.float32)
    start = round(CLICK_SECONDS * SAMPLE_RATE)
    time = np.arange(800) / SAMPLE_RATE
    audio[:, start : start + 800] = 0.8 * np.sin(2 * np.pi * 880 * time) * np.exp(-time / 0.01)
    return torch.from_numpy(audio)


def first_loud_sample_seconds(audio, sample_rate):
    loud = np.flatnonzero(np.abs(audio.numpy()).max(axis=0) > 0.2)
    return loud[0] / sample_rate


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
@pytest.mark.parametrize("channels", [None, 1, 2])
def test_round_trip_keeps_frames_size_fps_and_audio_length(tmp_path, suffix, channels):
    frames = moving_square_frames()
    duration = FRAMES / FPS
    audio = None if channels is None else click_track(channels, duration)
    path = write_video(tmp_path / f"clip.{suffix}", frames, FPS, audio, SAMPLE_RATE if audio is not None else None)

    decoded, fps, decoded_audio, sample_rate = read_video(path)
    assert decoded.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert decoded.dtype == torch.float32
    assert fps == Fraction(FPS)
    assert (decoded - frames).abs().mean() < 0.02
    if channels is None:
        assert decoded_audio is None and sample_rate is None
        return
    assert decoded_audio.shape[0] == channels
    assert sample_rate == (48000 if suffix == "webm" else SAMPLE_RATE)
    assert abs(decoded_audio.shape[1] - duration * sample_rate) <= AUDIO_FRAME[suffix]
    assert first_loud_sample_seconds(decoded_audio, sample_rate) == pytest.approx(CLICK_SECONDS, abs=0.005)


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_audio_is_trimmed_or_padded_to_the_video_duration(tmp_path, suffix):
    for seconds in (0.5, 5.0):
        tone = 0.5 * torch.sin(2 * np.pi * 440 * torch.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE)
        path = write_video(tmp_path / f"clip.{suffix}", moving_square_frames(), FPS, tone[None], SAMPLE_RATE)
        _, _, audio, sample_rate = read_video(path)
        assert abs(audio.shape[1] - FRAMES / FPS * sample_rate) <= AUDIO_FRAME[suffix]
        if seconds < FRAMES / FPS:
            after_the_tone = audio[:, round((seconds + 0.05) * sample_rate) :]
            assert after_the_tone.abs().max() < 0.02


def test_fractional_frame_rates_are_stored_as_rationals(tmp_path):
    for fps, expected in (
        (Fraction(24000, 1001), Fraction(24000, 1001)),
        (12.5, Fraction(25, 2)),
        (29.97, Fraction(2997, 100)),
    ):
        path = write_video(tmp_path / "rate.mp4", moving_square_frames(frames=4), fps)
        assert read_video(path).fps == expected


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_odd_sizes_are_padded_to_even_by_repeating_the_edge(tmp_path, suffix):
    frames = moving_square_frames(frames=3, height=33, width=47)
    frames[:, :, -1] = torch.tensor([1.0, 0.0, 0.0])  # a red last column must be repeated, not black
    path = write_video(tmp_path / f"odd.{suffix}", frames, FPS)
    decoded = read_video(path).frames
    assert decoded.shape == (3, 34, 48, 3)
    assert (decoded[:, :33, :47] - frames).abs().mean() < 0.03
    assert decoded[:, :33, 47, 0].mean() > 0.8


def test_generator_input_and_uint8_frames(tmp_path):
    frames = (moving_square_frames().numpy() * 255).astype(np.uint8)
    path = write_video(tmp_path / "gen.mp4", (frame for frame in frames), FPS, click_track(1, 2.0), SAMPLE_RATE)
    decoded, _, audio, _ = read_video(path)
    assert decoded.shape[0] == FRAMES
    assert audio.shape[1] == FRAMES // FPS * SAMPLE_RATE


def test_failure_mid_write_leaves_no_file(tmp_path):
    def frames_then_crash():
        yield from moving_square_frames()[:5]
        raise RuntimeError("sampler interrupted")

    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="sampler interrupted"):
        write_video(target, frames_then_crash(), FPS, click_track(1, 2.0), SAMPLE_RATE)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file_intact(tmp_path):
    target = write_video(tmp_path / "out.webm", moving_square_frames(), FPS)
    before = target.read_bytes()
    bad = list(moving_square_frames()[:3]) + [torch.zeros(10, 10, 3)]
    with pytest.raises(ValueError, match="same size"):
        write_video(target, bad, FPS)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.webm"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"frames": torch.zeros(0, 8, 8, 3)}, ValueError, "0 frames"),
        ({"frames": iter([])}, ValueError, "0 frames"),
        ({"fps": 0}, ValueError, "greater than 0"),
        ({"fps": -8}, ValueError, "greater than 0"),
        ({"fps": float("nan")}, ValueError, "finite"),
        ({"fps": "8"}, TypeError, "must be a number"),
        ({"frames": torch.zeros(4, 3, 8, 8)}, ValueError, "channels-first"),
        ({"frames": torch.zeros(8, 8, 3)}, ValueError, "frames\\[None\\]"),
        ({"path_name": "clip.avi"}, ValueError, "name the file .mp4 or .webm"),
        ({"format": "mkv"}, ValueError, "not supported"),
        ({"audio": torch.zeros(1, 100)}, ValueError, "without sample_rate"),
        ({"audio": torch.zeros(100, 2), "sample_rate": 16000}, ValueError, "transpose"),
        ({"audio": torch.zeros(6, 100), "sample_rate": 16000}, ValueError, "1 \\(mono\\) or 2 \\(stereo\\)"),
        ({"audio": torch.zeros(1, 100), "sample_rate": -1}, ValueError, "positive"),
        ({"metadata": {"workflow": {"nodes": []}}}, TypeError, "json.dumps"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message_and_no_file(tmp_path, kwargs, error, message):
    arguments = {"frames": torch.zeros(2, 8, 8, 3), "fps": FPS, **kwargs}
    path = tmp_path / arguments.pop("path_name", "clip.mp4")
    with pytest.raises(error, match=message):
        write_video(path, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_read_video_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.mp4.*not a readable video"):
        read_video(junk)


# The tag names each container reads back: Matroska tag names are upper-case (what the frontend looks for).
TAG_NAMES = {"mp4": ("prompt", "workflow"), "webm": ("PROMPT", "WORKFLOW")}


def container_metadata(path):
    with av.open(str(path)) as container:
        return dict(container.metadata)


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_metadata_is_stored_as_comfyui_writes_it(tmp_path, suffix):
    """Text tags survive in the container (MP4 needs movflags use_metadata_tags for keys of its own)."""
    workflow = {"nodes": [{"id": 1, "type": "LuminaVideoSaveVideo", "widgets_values": ["é {braces}", 8.0]}]}
    prompt = {"1": {"class_type": "LuminaVideoSaveVideo", "inputs": {"fps": 8.0}}}
    metadata = {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}
    path = write_video(tmp_path / f"tagged.{suffix}", moving_square_frames(frames=4), FPS, metadata=metadata)
    stored = container_metadata(path)
    prompt_tag, workflow_tag = TAG_NAMES[suffix]
    assert json.loads(stored[prompt_tag]) == prompt and json.loads(stored[workflow_tag]) == workflow
    untagged = container_metadata(write_video(tmp_path / f"plain.{suffix}", moving_square_frames(frames=4), FPS))
    assert not {prompt_tag, workflow_tag} & set(untagged)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_written_files_get_the_mode_of_a_new_file(tmp_path, umask):
    """0o666 less the umask, as open() gives; not the 0o600 of the temporary file a mkstemp would make."""
    previous = os.umask(umask)
    try:
        path = write_video(tmp_path / "mode.mp4", moving_square_frames(frames=2), FPS)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["mode.mp4"]
