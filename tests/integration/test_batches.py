"""A batch in a real ComfyUI: one video, one sound track and one file per batch item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lumina_core.io.media import read_video

from .workflow_tools import strip_meta

WORKFLOW = (
    Path(__file__).resolve().parents[2]
    / "workflows"
    / "api"
    / "Lumina-Video text to video with sound, embedded toy model.json"
)


def node_of(graph: dict, class_type: str) -> tuple[str, dict]:
    return next((key, node) for key, node in graph.items() if node["class_type"] == class_type)


def test_a_batch_of_two_saves_two_videos_with_their_own_sound(comfy_client, comfy_workdir):
    graph = strip_meta(json.loads(WORKFLOW.read_text()))
    node_of(graph, "LuminaVideoEmptyLatent")[1]["inputs"]["batch_size"] = 2
    node_of(graph, "LuminaVideoSampler")[1]["inputs"]["steps"] = 4
    node_of(graph, "LuminaVideoAudioGenerate")[1]["inputs"]["steps"] = 3
    save_id, save = node_of(graph, "LuminaVideoSaveVideo")
    save["inputs"]["filename_prefix"] = "batch/clip"
    result = comfy_client.run(graph, timeout=300)
    assert result.ok, result.describe_error()

    saved = result.outputs[save_id]["images"]
    assert [entry["filename"] for entry in saved] == ["clip_00001_.mp4", "clip_00002_.mp4"]
    videos = [read_video(comfy_workdir.output / entry["subfolder"] / entry["filename"]) for entry in saved]
    for video in videos:
        assert video.frames.shape == (16, 64, 64, 3) and video.fps == 8
        assert video.audio is not None and abs(video.audio.shape[-1] - 2 * video.sample_rate) <= 1024
    difference = np.abs(videos[0].frames.numpy() - videos[1].frames.numpy()).mean()  # frames in 0..1
    assert difference > 0.05, "the two videos are the batch's two seeds, not one video twice"
