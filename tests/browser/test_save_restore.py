"""A video saved by the Save Video node, dropped on the real frontend, brings its workflow back.

The graph is queued with its UI workflow in ``extra_pnginfo`` (as the page queues it); the saved mp4 / webm is fetched
from /view and dropped on the page (a ``drop`` event with the file, what dragging it from the desktop does). The
frontend reads the workflow from the container's tags (``isobmff`` for mp4, ``ebml`` for webm) and loads it: the
prompt it then builds must be the queued graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration.workflow_tools import api_to_ui, strip_meta

REPO = Path(__file__).resolve().parents[2]
APP = "window.comfyAPI.app.app"
SAVE = "LuminaVideoSaveVideo"
MIME = {"mp4": "video/mp4", "webm": "video/webm"}


def queued_graph(format: str) -> dict:
    graph = strip_meta(
        json.loads((REPO / "workflows" / "api" / "Lumina-Video text to video, embedded toy model.json").read_text())
    )
    for node in graph.values():
        if node["class_type"] == "LuminaVideoSampler":
            node["inputs"].update(steps=3, seed=7)
        if node["class_type"] == SAVE:
            # audio_length off its default: the new widget's value must come back too
            node["inputs"].update(filename_prefix=f"dropped/{format}", format=format, audio_length="trim or pad")
    return graph


def drop_file(page, url: str, filename: str, mime: str) -> None:
    """Fetch ``url`` and drop it on the page as a file named ``filename``."""
    page.evaluate(
        f"""
        const blob = await (await fetch({json.dumps(url)})).blob();
        const transfer = new DataTransfer();
        transfer.items.add(new File([blob], {json.dumps(filename)}, {{ type: {json.dumps(mime)} }}));
        document.dispatchEvent(new DragEvent('drop', {{ dataTransfer: transfer, bubbles: true, cancelable: true }}));
        return true;
        """
    )


@pytest.mark.parametrize("format", ["mp4", "webm"])
def test_dropping_a_saved_video_restores_its_workflow(page, comfy_client, format, screenshots):
    graph = queued_graph(format)
    workflow = api_to_ui(graph, comfy_client.object_info())
    result = comfy_client.run(graph, extra_data={"extra_pnginfo": {"workflow": workflow}}, timeout=300)
    assert result.ok, result.describe_error()
    save_id = next(k for k, v in graph.items() if v["class_type"] == SAVE)
    (saved,) = result.outputs[save_id]["images"]

    page.evaluate(f"{APP}.graph.clear(); return true;")
    query = f"filename={saved['filename']}&subfolder={saved['subfolder']}&type=output"
    drop_file(page, f"/view?{query}", saved["filename"], MIME[format])
    page.wait_for(
        f"{APP}.graph.nodes.some((n) => n.type === '{SAVE}' && n.widgets?.some((w) => w.value === 'dropped/{format}'))",
        timeout=30,
    )
    prompt = page.evaluate(f"return (await {APP}.graphToPrompt()).output;")
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()} == graph
    positions = page.evaluate(f"return Object.fromEntries({APP}.graph.nodes.map((n) => [n.id, [...n.pos]]));")
    assert positions == {str(n["id"]): n["pos"] for n in workflow["nodes"]}, "the UI workflow, not just the prompt"
    page.screenshot(screenshots / f"dropped_{format}.png")
