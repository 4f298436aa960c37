"""A real ComfyUI starts with the pack, lists its nodes, and runs prompts.

The last tests run a graph of core nodes only: they check the harness itself
(queue, websocket, history, view), so a failure there is not the pack's.
"""

from __future__ import annotations

import pytest

from .comfy_server import PACK_NAME, PromptRejected, pack_node_ids

NODE_ID_PREFIX = "LuminaVideo"


def test_pack_imported_without_failure(comfy_server):
    status = comfy_server.pack_import_status()
    assert status is not None, "ComfyUI's log has no import line for %s; last lines:\n%s" % (
        comfy_server.workdir.pack_link,
        comfy_server.log_tail(),
    )
    assert status, "ComfyUI logged (IMPORT FAILED) for the pack (log %s):\n%s" % (
        comfy_server.workdir.log,
        comfy_server.pack_import_error() or comfy_server.log_tail(80),
    )


def test_object_info_lists_pack_nodes(comfy_client):
    info = comfy_client.object_info()
    ours = pack_node_ids(info)
    assert ours, "no node in /object_info comes from custom_nodes.%s" % PACK_NAME
    # Node ids are stored in every saved workflow: keep the pack prefix.
    assert [k for k in ours if not k.startswith(NODE_ID_PREFIX)] == []
    for node_id in ours:
        single = comfy_client.object_info(node_id)
        assert set(single) == {node_id}


def test_system_stats_answers(comfy_client):
    stats = comfy_client.system_stats()
    assert stats["system"]["comfyui_version"]
    assert stats["devices"], stats


def _tiny_image_graph(prefix: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 0xFF0000}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def test_harness_runs_a_core_graph(comfy_client, comfy_workdir):
    result = comfy_client.run(_tiny_image_graph("harness/smoke"), timeout=120)
    assert result.ok, result.describe_error()
    kinds = [k for k, _ in result.messages]
    assert "execution_start" in kinds and "execution_success" in kinds, kinds
    assert result.of_type("executed")[-1]["node"] == "2"

    (image,) = result.outputs["2"]["images"]
    assert image["type"] == "output" and image["subfolder"] == "harness"
    data = comfy_client.view(image["filename"], image["subfolder"], image["type"])
    assert data.startswith(b"\x89PNG")
    assert (comfy_workdir.output / "harness" / image["filename"]).read_bytes() == data


def test_harness_reports_a_rejected_graph(comfy_client):
    graph = _tiny_image_graph("harness/rejected")
    del graph["2"]["inputs"]["images"]
    with pytest.raises(PromptRejected) as rejected:
        comfy_client.queue(graph)
    assert "2" in rejected.value.node_errors


def test_harness_interrupt_when_idle(comfy_client):
    comfy_client.interrupt()
    assert comfy_client.queue_state()["queue_running"] == []
