"""The loaders' model files in a real ComfyUI: each loader offers only files of its kind (read from their headers),
and a damaged file stops the graph with a short exception type and a message naming the file and the fix.

The files of this module go in a ``kinds/`` subfolder of the work dir's model folders (and are removed after it),
next to the toy files conftest.py puts there for every module.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lumina_core.models.vae import DIFFUSERS_KEYS

from .workflow_tools import combo_options, strip_meta

WORKFLOW = (
    Path(__file__).resolve().parents[2] / "workflows" / "api" / "Lumina-Video text to video, embedded toy model.json"
)
EMBEDDED = "embedded (toy world, CPU)"
LOADERS = {
    "LuminaVideoModelLoader": "model_name",
    "LuminaVideoVAELoader": "vae_name",
    "LuminaVideoV2ALoader": "v2a_name",
}


@pytest.fixture(scope="module")
def kinds(comfy_workdir, embedded_weights):
    """Files of every kind under kinds/ in models/lumina_video, models/diffusion_models and models/vae."""
    embedded, _ = embedded_weights
    lumina, diffusion, vae = (
        comfy_workdir.model_dir(name) / "kinds" for name in ("lumina_video", "diffusion_models", "vae")
    )
    for folder in (lumina, diffusion, vae):
        folder.mkdir()
    for kind in ("dit", "text_encoder", "v2a"):
        (lumina / f"{kind}.safetensors").symlink_to(embedded / f"{kind}.safetensors")
    v2a = (embedded / "v2a.safetensors").read_bytes()
    (lumina / "v2a_cut.safetensors").write_bytes(v2a[: len(v2a) // 2])
    (lumina / "corrupt.safetensors").write_bytes(random.Random(0).randbytes(4096))
    save_file({"x_embedder.weight": torch.zeros(1)}, str(diffusion / "lumina_image_2.safetensors"))
    (vae / "vae.safetensors").symlink_to(embedded / "vae.safetensors")
    save_file({key: torch.zeros(1) for key in DIFFUSERS_KEYS}, str(vae / "cogvideox_diffusers.safetensors"))
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(vae / "sd_vae.safetensors"))
    (vae / "dit.safetensors").symlink_to(embedded / "dit.safetensors")
    try:
        yield comfy_workdir
    finally:
        for folder in (lumina, diffusion, vae):
            shutil.rmtree(folder)


def loader_options(comfy_client, node_id: str) -> list[str]:
    spec = comfy_client.object_info(node_id)[node_id]["input"]["required"][LOADERS[node_id]]
    return combo_options(spec[0], spec[1] if len(spec) > 1 else {})


def test_each_loader_offers_only_its_kind(comfy_client, kinds):
    ours = {node_id: loader_options(comfy_client, node_id) for node_id in LOADERS}
    assert all(options[0] == EMBEDDED for options in ours.values())
    in_kinds = {node_id: [name for name in options if name.startswith("kinds/")] for node_id, options in ours.items()}
    assert in_kinds == {
        "LuminaVideoModelLoader": ["kinds/corrupt.safetensors", "kinds/dit.safetensors"],
        "LuminaVideoV2ALoader": ["kinds/v2a.safetensors", "kinds/v2a_cut.safetensors"],
        "LuminaVideoVAELoader": ["kinds/cogvideox_diffusers.safetensors", "kinds/vae.safetensors"],
    }
    toy_files = {  # conftest.py's, for every module: each in its own loader's list only
        "toy/dit.safetensors": "LuminaVideoModelLoader",
        "toy_v2a.safetensors": "LuminaVideoV2ALoader",
        "toy_vae.safetensors": "LuminaVideoVAELoader",
        "cogvideox_2b_vae.safetensors": "LuminaVideoVAELoader",  # an empty placeholder: unreadable, listed
        "toy/text_encoder.safetensors": None,  # loaded beside its DiT, never on its own
    }
    for name, owner in toy_files.items():
        assert [node_id for node_id, options in ours.items() if name in options] == ([owner] if owner else []), name


@pytest.mark.parametrize(
    "node_id, folder, name, what",
    [
        ("LuminaVideoModelLoader", "lumina_video", "kinds/corrupt.safetensors", "not a readable .safetensors file"),
        ("LuminaVideoVAELoader", "vae", "cogvideox_2b_vae.safetensors", "has 0 bytes"),
    ],
)
def test_a_damaged_file_stops_the_graph_with_a_short_error(comfy_client, kinds, node_id, folder, name, what):
    graph = strip_meta(json.loads(WORKFLOW.read_text()))
    loader_id = next(key for key, node in graph.items() if node["class_type"] == node_id)
    graph[loader_id]["inputs"][LOADERS[node_id]] = name
    result = comfy_client.run(graph, timeout=120)
    assert result.status == "error", result.describe_error()
    (in_history,) = [data for kind, data in result.history["status"]["messages"] if kind == "execution_error"]
    for error in (result.error, in_history):  # what the websocket said, and what /history keeps
        assert (error["node_id"], error["node_type"]) == (loader_id, node_id)
        assert error["exception_type"] == "ValueError", error["exception_type"]
        message = error["exception_message"]
        assert str(kinds.model_dir(folder) / name) in message and what in message, message
        assert "Download it again" in message, message
