"""Node tier: the Save Video node's file metadata, file mode, audio length choice and filename check.

Called the way ComfyUI calls it (``comfy_stubs.run_node``: validation, ``validate_inputs``, hidden inputs, execute),
with the ``env`` fixture of ``tests/node_env.py``.
"""

from __future__ import annotations

import json
import os
import re
import sys

import av
import pytest
import torch
from comfy_stubs import Hidden, ValidationFailed, run_node
from node_env import EMBEDDED

from lumina_core.io.media import read_video

SAVE = "LuminaVideoSaveVideo"
AAC_FRAME = 1024  # samples; what an mp4's audio may read back longer by
PROMPT = {"9": {"class_type": SAVE, "inputs": {"fps": 8.0, "filename_prefix": "meta/clip"}}}
WORKFLOW = {"nodes": [{"id": 9, "type": SAVE, "widgets_values": [8.0, "mp4", "meta/clip", "must match"]}]}
TAG_NAMES = {"mp4": ("prompt", "workflow"), "webm": ("PROMPT", "WORKFLOW")}  # Matroska's are upper-case
BAD_PREFIXES = {
    "": "filename_prefix is empty",
    "   ": "filename_prefix is empty",
    "../escape": "outside ComfyUI's output folder",
    "/tmp/absolute": "outside ComfyUI's output folder",
    "clips/../../escape": "outside ComfyUI's output folder",
}


def frames(n=8, h=32, w=48):
    return torch.rand(n, h, w, 3)


def tone(seconds: float, rate: int = 16000) -> dict:
    """ComfyUI AUDIO: a quiet 440 Hz tone, [batch, channels, samples]."""
    t = torch.arange(round(seconds * rate)) / rate
    return {"waveform": (0.2 * torch.sin(2 * torch.pi * 440 * t))[None, None], "sample_rate": rate}


def save(env, hidden=None, **inputs):
    """Run the Save node; returns the saved file's path."""
    inputs = {"images": frames(), "fps": 8.0, "format": "mp4", "filename_prefix": "save/clip", **inputs}
    out = run_node(env.nodes[SAVE], hidden=hidden, **inputs)
    saved = out.ui.as_dict()["images"][0]
    return env.output / saved["subfolder"] / saved["filename"]


def container_metadata(path) -> dict:
    with av.open(str(path)) as container:
        return dict(container.metadata)


# --------------------------------------------------------------------------- the workflow in the file


@pytest.mark.parametrize("format", ["mp4", "webm"])
def test_saved_file_carries_the_prompt_and_the_workflow(env, format):
    """As ComfyUI's Save Video: each extra_pnginfo entry and the prompt, as JSON, in the container's tags."""
    hidden = {Hidden.prompt: PROMPT, Hidden.extra_pnginfo: {"workflow": WORKFLOW}}
    path = save(env, hidden=hidden, format=format, filename_prefix="meta/clip")
    tags = container_metadata(path)
    prompt_tag, workflow_tag = TAG_NAMES[format]
    assert json.loads(tags[prompt_tag]) == PROMPT
    assert json.loads(tags[workflow_tag]) == WORKFLOW


def test_no_metadata_with_disable_metadata(env, monkeypatch):
    monkeypatch.setattr(sys.modules["comfy.cli_args"].args, "disable_metadata", True)
    path = save(env, hidden={Hidden.prompt: PROMPT, Hidden.extra_pnginfo: {"workflow": WORKFLOW}})
    assert not {"prompt", "workflow"} & set(container_metadata(path))


def test_schema_asks_for_the_prompt_and_the_workflow(env):
    assert {Hidden.prompt, Hidden.extra_pnginfo} <= set(env.nodes[SAVE].GET_SCHEMA().hidden)


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=oct)
def test_saved_file_gets_the_mode_of_a_new_file(env, umask):
    previous = os.umask(umask)
    try:
        path = save(env, filename_prefix="mode/clip")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------- audio_length


def test_audio_length_is_an_optional_last_widget_defaulting_to_must_match(env):
    """After the widgets saved workflows already hold, so their values keep their places; optional, so they load."""
    inputs = env.nodes[SAVE].GET_SCHEMA().inputs
    assert [i.id for i in inputs if i.is_widget] == ["fps", "format", "filename_prefix", "audio_length"]
    audio_length = inputs[-1]
    assert audio_length.optional and audio_length.default == "must match"
    assert audio_length.options == ["must match", "trim or pad"]


def test_audio_generate_at_another_fps_is_refused_before_anything_is_written(env):
    """Audio Generate at 8 fps makes 2 s for 16 frames; Save at 16 fps makes 1 s: an error naming both, not a cut."""
    v2a = env.run("LuminaVideoV2ALoader", v2a_name=EMBEDDED, dtype="auto")[0]
    video = frames(n=16, h=64, w=64)
    audio = env.run("LuminaVideoAudioGenerate", v2a=v2a, images=video, fps=8.0, steps=2, seed=0, cfg=3.5)[0]
    message = (
        "audio is 2 s long but the video is 1 s (16 frames at 16 fps); at 8 fps they would match (16 frames / 2 s). "
        "Set the same fps on Audio Generate and on Save Video, or set audio_length to 'trim or pad'"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        save(env, images=video, fps=16.0, audio=audio, filename_prefix="mismatch/clip")  # audio_length left out
    assert not (env.output / "mismatch").exists()


@pytest.mark.parametrize("seconds,fps_hint", [(3.0, "2.67 fps"), (0.5, "16 fps")])
def test_must_match_names_the_fps_that_would_match(env, seconds, fps_hint):
    with pytest.raises(ValueError, match=f"audio is {seconds:g} s long but the video is 1 s .*at {fps_hint}"):
        save(env, audio=tone(seconds), audio_length="must match", filename_prefix="mismatch/clip")
    assert not (env.output / "mismatch").exists()


def test_must_match_allows_up_to_one_frame_off(env):
    """1 s of video at 8 fps takes 1 s of sound give or take 1/8 s (rounding, a resampler's last samples)."""
    for seconds in (1.12, 0.88):
        _, _, sound, rate = read_video(save(env, audio=tone(seconds), filename_prefix="within/clip"))
        assert abs(sound.shape[-1] - rate) <= AAC_FRAME
    with pytest.raises(ValueError, match="audio is 1.13 s long"):
        save(env, audio=tone(1.13), filename_prefix="within/clip")


def test_trim_or_pad_cuts_or_pads_the_sound_to_the_video(env):
    for seconds in (3.0, 0.5):
        path = save(env, audio=tone(seconds), audio_length="trim or pad", filename_prefix="trimmed/clip")
        _, _, sound, rate = read_video(path)
        assert abs(sound.shape[-1] - rate) <= AAC_FRAME  # 8 frames at 8 fps = 1 s


# --------------------------------------------------------------------------- filename_prefix at queue time


@pytest.mark.parametrize("prefix", list(BAD_PREFIXES))
def test_bad_filename_prefix_is_refused_at_validation(env, prefix):
    """validate_inputs refuses it (as /prompt would, before anything runs) with execute's own message."""
    with pytest.raises(ValidationFailed, match=BAD_PREFIXES[prefix]) as refused:
        save(env, filename_prefix=prefix)
    node = env.nodes[SAVE]
    with pytest.raises(ValueError) as at_run_time:  # execute alone, as when the prefix comes through a link
        node.PREPARE_CLASS_CLONE({}).execute(images=frames(), fps=8.0, format="mp4", filename_prefix=prefix)
    assert str(refused.value) == f"Custom validation failed for node: {at_run_time.value}"
    assert "such as 'lumina_video/clip'" in str(at_run_time.value)  # the fix
    assert not list(env.output.parent.glob("escape*")) and not os.path.exists("/tmp/absolute_00001_.mp4")


def test_good_and_linked_filename_prefixes_pass_validation(env):
    node = env.nodes[SAVE]
    assert node.validate_inputs(filename_prefix="lumina_video/sub/clip") is True
    assert node.validate_inputs(filename_prefix=None) is True  # a linked input: checked when the node runs
