"""The pack in a real ComfyUI: registration, the shipped workflows, interop, cancellation.

Every API-format workflow in workflows/api/ is validated against /object_info; the
ones that use only the embedded default run through /prompt while the websocket is
followed, and their saved videos are read back. The released-weights workflows can't
run here (their weights aren't downloaded); their widget values are checked instead,
with empty files standing in for the model files they name.
"""

from __future__ import annotations

import json
import math
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from lumina_core.conditioning import denoised_times
from lumina_core.io.media import read_video
from lumina_core.sampling import PRESETS
from nodes import NATIVE_NODE_IDS, NODE_IDS

from .comfy_server import PACK_NAME, PromptRejected, pack_node_ids
from .workflow_tools import check_api, strip_meta, thumbnail, ui_to_api, widget_names

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
API_WORKFLOWS = sorted((WORKFLOWS / "api").glob("*.json"))
EMBEDDED = "embedded (toy world, CPU)"
MODEL_INPUTS = ("model_name", "vae_name", "v2a_name", "clip_name")
EMBEDDED_FPS = 8


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def runs_here(graph: dict) -> bool:
    """A graph runs on this machine when every model it loads is the embedded default."""
    return all(
        value == EMBEDDED for node in graph.values() for name, value in node["inputs"].items() if name in MODEL_INPUTS
    )


RUNNABLE = [p for p in API_WORKFLOWS if runs_here(load(p))]
WITH_THE_PACKS_SAMPLER = [p for p in RUNNABLE if any(n["class_type"] == "LuminaVideoSampler" for n in load(p).values())]


@pytest.fixture(scope="module")
def object_info(comfy_client):
    return comfy_client.object_info()


def node_of(graph: dict, class_type: str) -> tuple[str, dict]:
    return next((k, v) for k, v in graph.items() if v["class_type"] == class_type)


def new_files(folder: Path, before: set) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p not in before)


# --------------------------------------------------------------------------- registration


def test_every_node_is_registered(object_info):
    assert pack_node_ids(object_info) == sorted(NODE_IDS + NATIVE_NODE_IDS)
    for node_id in NODE_IDS:
        info = object_info[node_id]
        assert info["category"].startswith("Lumina-Video/") and info["description"]
        for category in ("required", "optional"):
            for name, spec in info["input"].get(category, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_server_log_has_no_complaint_about_the_pack(comfy_server, object_info):
    log = comfy_server.log_text()
    assert "Unable to parse pyproject.toml" not in log
    complaints = [
        line
        for line in log.splitlines()
        if "lumina" in line.lower() and any(w in line for w in ("Error", "Traceback", "WARNING", "Skip"))
    ]
    assert complaints == []


def test_web_extension_and_templates_are_served(comfy_client):
    scripts = comfy_client.get_json("/extensions")
    ours = [s for s in scripts if s.startswith(f"/extensions/{PACK_NAME}/")]
    assert ours == [f"/extensions/{PACK_NAME}/lumina_video.js"], scripts
    status, body = comfy_client._request("GET", ours[0])
    assert status == 200 and b"registerExtension" in body
    templates = comfy_client.get_json("/workflow_templates")
    assert sorted(templates.get(PACK_NAME, [])) == sorted(p.stem for p in API_WORKFLOWS)


# --------------------------------------------------------------------------- the shipped workflows


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_api_workflow_is_valid(object_info, path):
    assert check_api(strip_meta(load(path)), object_info) == []


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_matches_its_api_copy(object_info, path):
    ui_path = WORKFLOWS / path.name
    ui = load(ui_path)
    assert ui_to_api(ui, object_info) == strip_meta(load(path))
    for node in ui["nodes"]:
        if node["type"] in object_info:
            assert len(node["widgets_values"]) == len(widget_names(object_info[node["type"]]))
            assert node["properties"]["Node name for S&R"] == node["type"]
    assert ui_path.with_suffix(".jpg").is_file(), f"{ui_path.name} needs a thumbnail"


@pytest.mark.parametrize("path", WITH_THE_PACKS_SAMPLER, ids=lambda p: p.stem)
def test_embedded_workflow_runs(comfy_client, comfy_workdir, path, tmp_path):
    graph = strip_meta(load(path))
    # the last sampler: an upscaled workflow's first one may come from ComfyUI's cache (a text-to-video run's twin)
    sampler_id, sampler = [(k, v) for k, v in graph.items() if v["class_type"] == "LuminaVideoSampler"][-1]
    save_id, save = node_of(graph, "LuminaVideoSaveVideo")
    size = node_of(graph, "LuminaVideoEmptyLatent")[1]["inputs"]
    scales = [n["inputs"]["scale"] for n in graph.values() if n["class_type"] == "LuminaVideoUpscaleVideo"]
    frames, scale = size["frames"], scales[0] if scales else 1
    started = time.monotonic()
    result = comfy_client.run(graph, timeout=300)
    seconds = time.monotonic() - started
    assert result.ok, result.describe_error()
    assert seconds < 60, f"the embedded workflow took {seconds:.0f} s on this CPU"

    config = PRESETS[sampler["inputs"]["preset"]]
    config = config.with_(steps=sampler["inputs"]["steps"] or config.steps)  # 0 = the preset's
    steps = len(denoised_times(config.times(), sampler["inputs"]["denoise"])) - 1  # denoise < 1 starts later
    sampler_progress = [p["value"] for p in result.progress if p["node"] == sampler_id]
    assert sampler_progress == list(range(1, steps + 1))
    previews = [frame for frame in result.previews if frame[8:10] == b"\xff\xd8"]  # event + format header, then JPEG
    assert len(previews) >= steps

    (saved,) = result.outputs[save_id]["images"]
    assert result.outputs[save_id]["animated"] == [True] and saved["type"] == "output"
    path_on_disk = comfy_workdir.output / saved["subfolder"] / saved["filename"]
    assert comfy_client.view(saved["filename"], saved["subfolder"]) == path_on_disk.read_bytes()
    video = read_video(path_on_disk)
    side = 64 * scale  # an upscaled workflow's Upscale Video sets the saved size
    assert video.frames.shape == (frames, side, side, 3) and video.fps == save["inputs"]["fps"]
    if "audio" in save["inputs"]:
        assert video.audio is not None
        assert abs(video.audio.shape[-1] - frames / video.fps * video.sample_rate) <= 1024
    else:
        assert video.audio is None
    thumbnail(video.frames.numpy(), tmp_path / f"{path.stem}.jpg")


def test_models_load_from_the_model_folders(comfy_client):
    """The same graph with files from models/lumina_video and models/vae instead of the embedded choice."""
    graph = strip_meta(load(WORKFLOWS / "api" / "Lumina-Video text to video with sound, embedded toy model.json"))
    node_of(graph, "LuminaVideoModelLoader")[1]["inputs"]["model_name"] = "toy/dit.safetensors"
    node_of(graph, "LuminaVideoVAELoader")[1]["inputs"]["vae_name"] = "toy_vae.safetensors"
    node_of(graph, "LuminaVideoV2ALoader")[1]["inputs"]["v2a_name"] = "toy_v2a.safetensors"
    node_of(graph, "LuminaVideoSampler")[1]["inputs"].update(steps=4)
    node_of(graph, "LuminaVideoSaveVideo")[1]["inputs"]["filename_prefix"] = "lumina_video/from_files"
    result = comfy_client.run(graph, timeout=300)
    assert result.ok, result.describe_error()


# ------------------------------------------------------------------------- interop with ComfyUI's video and audio nodes


def _embedded_frames_graph(steps: int = 4, prefix: str = "interop/ours") -> dict:
    graph = strip_meta(load(WORKFLOWS / "api" / "Lumina-Video text to video with sound, embedded toy model.json"))
    node_of(graph, "LuminaVideoSampler")[1]["inputs"]["steps"] = steps
    node_of(graph, "LuminaVideoAudioGenerate")[1]["inputs"]["steps"] = 3
    node_of(graph, "LuminaVideoSaveVideo")[1]["inputs"]["filename_prefix"] = prefix
    return graph


def test_our_frames_and_sound_into_native_video_nodes(comfy_client, comfy_workdir):
    graph = _embedded_frames_graph()
    decode_id = node_of(graph, "LuminaVideoVAEDecode")[0]
    audio_id = node_of(graph, "LuminaVideoAudioGenerate")[0]
    save_id = node_of(graph, "LuminaVideoSaveVideo")[0]
    graph["20"] = {
        "class_type": "CreateVideo",
        "inputs": {"images": [decode_id, 0], "fps": 8.0, "audio": [audio_id, 0]},
    }
    graph["21"] = {
        "class_type": "SaveVideo",
        "inputs": {"video": ["20", 0], "filename_prefix": "interop/native", "format": "mp4", "codec": "h264"},
    }
    graph["22"] = {
        "class_type": "SaveVideo",
        "inputs": {"video": [save_id, 0], "filename_prefix": "interop/our_video", "format": "auto", "codec": "auto"},
    }
    result = comfy_client.run(graph, timeout=300)
    assert result.ok, result.describe_error()
    for node in ("21", "22"):
        (saved,) = result.outputs[node]["images"]
        video = read_video(comfy_workdir.output / saved["subfolder"] / saved["filename"])
        assert video.frames.shape == (16, 64, 64, 3) and video.fps == 8 and video.audio is not None


def test_native_load_audio_into_our_save_node(comfy_client, comfy_workdir):
    rate, seconds = 22050, 3.0  # longer than the video, at a rate the model never makes
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(comfy_workdir.input / "tone.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.stack([tone]).T.tobytes())
    graph = _embedded_frames_graph(prefix="interop/load_audio")
    audio_id = node_of(graph, "LuminaVideoAudioGenerate")[0]
    graph[audio_id] = {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}}
    del graph[node_of(graph, "LuminaVideoV2ALoader")[0]]
    save_id, save = node_of(graph, "LuminaVideoSaveVideo")
    save["inputs"]["audio_length"] = "trim or pad"
    result = comfy_client.run(graph, timeout=300)
    assert result.ok, result.describe_error()
    (saved,) = result.outputs[save_id]["images"]
    video = read_video(comfy_workdir.output / saved["subfolder"] / saved["filename"])
    assert video.sample_rate == rate
    assert abs(video.audio.shape[-1] - 2 * rate) <= 1024  # cut to the video's 16 frames / 8 fps


# --------------------------------------------------------------------------- errors and cancellation


def test_bad_sizes_are_refused_at_queue_time(comfy_client):
    graph = _embedded_frames_graph()
    node_of(graph, "LuminaVideoEmptyLatent")[1]["inputs"].update(width=70)
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(graph)
    assert "try 64 or 96" in json.dumps(rejected.value.node_errors)


def test_bad_custom_schedule_is_refused_with_the_users_text(comfy_client):
    graph = _embedded_frames_graph()
    node_of(graph, "LuminaVideoSampler")[1]["inputs"].update(patch_schedule="custom", custom_schedule="(2x4, (0.1")
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(graph)
    (errors,) = [node["errors"] for node in rejected.value.node_errors.values()]
    assert len(errors) == 1, "one message, not one per input"
    assert "(2x4, (0.1" in errors[0]["details"]


def test_interrupt_mid_sampling_leaves_no_file_and_a_healthy_server(comfy_client, comfy_workdir):
    graph = _embedded_frames_graph(steps=500, prefix="interrupted/clip")
    # the last sampler: an upscaled workflow's first one may come from ComfyUI's cache (a text-to-video run's twin)
    sampler_id, sampler = [(k, v) for k, v in graph.items() if v["class_type"] == "LuminaVideoSampler"][-1]
    sampler["inputs"].update(solver="heun", seed=123)  # slow enough to catch it running
    before = {p for p in comfy_workdir.output.rglob("*")}
    seen = []

    def on_message(kind, data):
        if kind == "progress" and data.get("node") == sampler_id:
            seen.append(data["value"])
            if len(seen) == 3:
                comfy_client.interrupt()

    prompt_id = comfy_client.queue(graph)
    result = comfy_client.wait(prompt_id, timeout=300, on_message=on_message)
    assert result.status == "interrupted", result.describe_error()
    assert 3 <= len(seen) < 30, f"the sampler went on for {len(seen)} of 499 steps after the cancel"
    assert new_files(comfy_workdir.output, before) == []
    assert comfy_client.queue_state()["queue_running"] == []
    assert comfy_client.system_stats()["system"]["comfyui_version"]
    after = comfy_client.run(_embedded_frames_graph(steps=3, prefix="after_interrupt/clip"), timeout=300)
    assert after.ok, after.describe_error()
