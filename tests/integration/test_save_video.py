"""The Save Video node in a real ComfyUI: the workflow in the file, the audio length choice, the filename check.

A graph queued with the UI workflow in ``extra_data.extra_pnginfo`` (as the frontend queues it) saves a file whose
container tags hold that workflow and the prompt; a sound longer than the video is refused under "must match" and
cut under "trim or pad"; a filename_prefix outside the output folder is refused by POST /prompt.
"""

from __future__ import annotations

import json
import math
import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from lumina_core.io.media import read_video

from .comfy_server import PromptRejected
from .workflow_tools import api_to_ui, check_api, strip_meta

REPO = Path(__file__).resolve().parents[2]
SAVE = "LuminaVideoSaveVideo"
TAG_NAMES = {"mp4": ("prompt", "workflow"), "webm": ("PROMPT", "WORKFLOW")}  # Matroska's tag names are upper-case


@pytest.fixture(scope="module")
def object_info(comfy_client):
    return comfy_client.object_info()


def node_id_of(graph: dict, class_type: str) -> str:
    return next(k for k, v in graph.items() if v["class_type"] == class_type)


def embedded_graph(prefix: str, format: str = "mp4", sound: bool = False) -> dict:
    """A shipped embedded workflow, 3 sampling steps, saved under ``prefix``."""
    name = (
        "Lumina-Video text to video with sound, embedded toy model.json"
        if sound
        else "Lumina-Video text to video, embedded toy model.json"
    )
    graph = strip_meta(json.loads((REPO / "workflows" / "api" / name).read_text()))
    graph[node_id_of(graph, "LuminaVideoSampler")]["inputs"]["steps"] = 3
    graph[node_id_of(graph, SAVE)]["inputs"].update(filename_prefix=prefix, format=format, audio_length="must match")
    return graph


def saved_file(result, graph: dict, output: Path) -> Path:
    (saved,) = result.outputs[node_id_of(graph, SAVE)]["images"]
    return output / saved["subfolder"] / saved["filename"]


def output_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@pytest.mark.parametrize("format", ["mp4", "webm"])
def test_saved_file_carries_the_workflow_and_the_prompt(comfy_client, comfy_workdir, object_info, format):
    graph = embedded_graph(f"restore/{format}", format)
    workflow = api_to_ui(graph, object_info)
    result = comfy_client.run(graph, extra_data={"extra_pnginfo": {"workflow": workflow}}, timeout=300)
    assert result.ok, result.describe_error()
    path = saved_file(result, graph, comfy_workdir.output)
    with av.open(str(path)) as container:
        tags = dict(container.metadata)
    prompt_tag, workflow_tag = TAG_NAMES[format]
    assert json.loads(tags[workflow_tag]) == workflow
    assert json.loads(tags[prompt_tag]) == graph
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # the server runs with this process's umask


def write_tone(path: Path, seconds: float, rate: int = 22050) -> None:
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def load_audio_graph(prefix: str, audio_length: str) -> dict:
    """The embedded sound workflow with Load Audio's 3 s tone in place of Audio Generate (16 frames at 8 fps: 2 s)."""
    graph = embedded_graph(prefix, sound=True)
    graph[node_id_of(graph, "LuminaVideoAudioGenerate")] = {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}}
    del graph[node_id_of(graph, "LuminaVideoV2ALoader")]
    graph[node_id_of(graph, SAVE)]["inputs"]["audio_length"] = audio_length
    return graph


def test_a_longer_sound_is_refused_under_must_match_and_cut_under_trim_or_pad(comfy_client, comfy_workdir):
    write_tone(comfy_workdir.input / "tone.wav", seconds=3.0)
    refused = comfy_client.run(load_audio_graph("audio_length/refused", "must match"), timeout=300)
    assert refused.status == "error" and refused.error["node_type"] == SAVE
    assert refused.error["exception_message"].startswith(
        "audio is 3 s long but the video is 2 s (16 frames at 8 fps); at 5.33 fps they would match"
    )
    assert not (comfy_workdir.output / "audio_length" / "refused").exists()

    graph = load_audio_graph("audio_length/trimmed", "trim or pad")
    result = comfy_client.run(graph, timeout=300)
    assert result.ok, result.describe_error()
    video = read_video(saved_file(result, graph, comfy_workdir.output))
    assert video.sample_rate == 22050 and abs(video.audio.shape[-1] - 2 * 22050) <= 1024


def test_shipped_workflows_validate_with_audio_length_left_out(object_info):
    """Graphs saved before audio_length existed still queue: it is optional, its default is "must match"."""
    for path in sorted((REPO / "workflows" / "api").glob("*.json")):
        graph = strip_meta(json.loads(path.read_text()))
        graph[node_id_of(graph, SAVE)]["inputs"].pop("audio_length", None)
        assert check_api(graph, object_info) == [], path.name
    assert object_info[SAVE]["input"]["optional"]["audio_length"][1]["default"] == "must match"


@pytest.mark.parametrize(
    "prefix,message",
    [
        ("../escape", "outside ComfyUI's output folder"),
        ("/tmp/lumina_absolute", "outside ComfyUI's output folder"),
        ("", "filename_prefix is empty"),
    ],
)
def test_bad_filename_prefix_is_refused_when_queued(comfy_client, comfy_workdir, prefix, message):
    before = output_files(comfy_workdir.output)
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(embedded_graph(prefix))
    errors = json.dumps(rejected.value.node_errors)
    assert message in errors and "such as 'lumina_video/clip'" in errors
    assert list(rejected.value.node_errors) == [node_id_of(embedded_graph(prefix), SAVE)]
    queue = comfy_client.queue_state()
    assert queue["queue_running"] == [] and queue["queue_pending"] == []
    assert output_files(comfy_workdir.output) == before
    assert not list(comfy_workdir.root.glob("escape*")) and not list(Path("/tmp").glob("lumina_absolute*"))
