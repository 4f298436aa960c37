"""The node tier's ComfyUI stand-in: the pack loaded as ComfyUI loads it, and the embedded default's nodes.

Fixtures for every node-tier module (``env``, ``loaded``), through ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import comfy_stubs
import pytest
import torch
from comfy_stubs import run_node
from toy_weights import embedded_dir_for_tests

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "lumina_video_pack_under_test"
EMBEDDED = "embedded (toy world, CPU)"
FAST_STEPS = 6


@dataclass
class Env:
    package: object
    nodes: dict
    models: Path
    output: Path
    embedded: Path
    real_weights: bool

    def run(self, node_id: str, **inputs):
        return run_node(self.nodes[node_id], **inputs)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfyui")
    models, output = root / "models", root / "output"
    for folder in ("lumina_video", "diffusion_models", "vae"):
        (models / folder).mkdir(parents=True)
    output.mkdir()
    embedded, real = embedded_dir_for_tests(root / "embedded")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    patch = pytest.MonkeyPatch()
    patch.setenv("LUMINA_VIDEO_EMBEDDED_DIR", str(embedded))
    saved = comfy_stubs.install(models, output)
    try:
        package = comfy_stubs.load_pack(REPO, PACKAGE)
        extension = asyncio.run(package.comfy_entrypoint())
        node_list = asyncio.run(extension.get_node_list())
        nodes = {cls.GET_SCHEMA().node_id: cls for cls in node_list}
        yield Env(package, nodes, models, output, embedded, real)
    finally:
        comfy_stubs.uninstall(saved, PACKAGE)
        patch.undo()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(env):
    """The embedded default's VAE and V2A, an empty latent, and the Sampler's default widgets. The video model and
    prompts are ComfyUI's native MODEL and CONDITIONING, which need ComfyUI's model classes: the nodes that make and
    sample them run in the integration tier (tests/integration/test_nodes_in_comfyui.py); here they are stand-ins
    for the checks that come before any of that."""
    vae = env.run("LuminaVideoVAELoader", vae_name=EMBEDDED, dtype="auto")[0]
    v2a = env.run("LuminaVideoV2ALoader", v2a_name=EMBEDDED, dtype="auto")[0]
    latent = env.run("LuminaVideoEmptyLatent", width=64, height=64, frames=16, batch_size=1)[0]
    return dict(
        model=object(),
        positive=[],
        negative=[],
        vae=vae,
        v2a=v2a,
        latent=latent,
        widgets=default_widgets(env, "LuminaVideoSampler"),
    )


MOTION_WIDGETS = (
    "motion",
    "negative_motion_start",
    "negative_motion_after",
    "switch_t",
    "motion_guidance",
    "motion_guidance_until",
)


def default_widgets(env, node_id):
    """A node's widget values as it is dropped on the canvas (the schema's defaults)."""
    return {inp.id: inp.default for inp in env.nodes[node_id].GET_SCHEMA().inputs if inp.is_widget}


def sampler_inputs(loaded, **changes):
    inputs = dict(
        loaded["widgets"],
        model=loaded["model"],
        positive=loaded["positive"],
        negative=loaded["negative"],
        latent=loaded["latent"],
    )
    inputs.update(seed=1, steps=FAST_STEPS)
    inputs.update(changes)
    return inputs
