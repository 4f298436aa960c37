"""Lumina-Video Model Sampling in a real ComfyUI, and the fp8 load's memory against bf16.

The node runs in a child process that imports ComfyUI's modules and the pack as ComfyUI would
(``inprocess.load_comfyui_and_pack``): a real ``comfy`` in the test process would meet the node tier's stand-ins.
It sets the shift of ComfyUI's own flow sampling, so the test compares KSampler's path after the node with the
same path on a model loaded at that shift, and ComfyUI's sigmas with the engine's time grid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumina_core.sampling import auto_time_shift

REPO = Path(__file__).resolve().parents[2]
TOY_LATENT = (1, 16, 4, 8, 8)  # 64x64, 16 frames: 64 tokens at 1x2
RELEASED_LATENT = (1, 16, 24, 88, 156)  # 1248x704, 96 frames: 82,368 tokens at 1x2, the f24F96R960 anchor
FP8_PEAK_BOUND = 0.65
RELEASED_LOAD_GIB = 12  # the bf16 load's peak is about 8 GiB; leave room for the rest of the machine


def probe(dit_path: str) -> dict:
    """The node's effects, measured in this process (ComfyUI imported here): returns plain values for the test."""
    from tests.integration.inprocess import load_comfyui_and_pack

    load_comfyui_and_pack(os.environ["COMFYUI_ROOT"])
    import comfy.sample
    import torch
    from lumina_video.lumina_core.io.checkpoints import read_nextdit
    from lumina_video.lumina_core.models.text import TextCondition
    from lumina_video.lumina_core.sampling import make_noise, time_grid
    from lumina_video.nodes import _comfy_model
    from lumina_video.nodes.model_sampling import MODEL_SAMPLING_NODES, LuminaVideoModelSampling

    torch.set_grad_enabled(False)
    state_dict, config, _ = read_nextdit(dit_path)
    cpu = torch.device("cpu")

    def load(shift: float):
        return _comfy_model.native_model(config, state_dict, shift, torch.float32, cpu, cpu)

    def sampling(model):
        return model.get_model_object("model_sampling")

    def node(model, shift=1.0, **inputs):
        return LuminaVideoModelSampling.execute(model, shift, **inputs).result[0]

    def refusal(*args, **kwargs) -> str:
        try:
            node(*args, **kwargs)
        except ValueError as error:
            return str(error)
        return ""

    model = load(9.0)
    patched = node(model, 5.0)
    toy = {"samples": torch.zeros(TOY_LATENT)}
    schema = LuminaVideoModelSampling.define_schema()
    out = dict(
        nodes=[cls.define_schema().node_id for cls in MODEL_SAMPLING_NODES],
        schema=[schema.node_id, schema.display_name, schema.category],
        shift=sampling(patched).shift,
        multiplier=sampling(patched).multiplier,
        original_shift=sampling(model).shift,
        grid_difference=float(
            (sampling(patched).sigma(torch.linspace(1, 0, 30)) - (1 - time_grid(30, 5.0))).abs().max()
        ),
        auto_toy=sampling(node(model, 3.0, auto=True, latent=toy)).shift,
        auto_released=sampling(node(model, 3.0, auto=True, latent={"samples": torch.zeros(RELEASED_LATENT)})).shift,
        auto_off_ignores_latent=sampling(node(model, 3.0, auto=False, latent=toy)).shift,
        twice=sampling(node(patched, 7.0)).shift,
        no_latent=refusal(model, auto=True),
        image_latent=refusal(model, auto=True, latent={"samples": torch.zeros(1, 16, 8, 8)}),
        not_lumina=refusal(object(), 3.0),
        zero_shift=refusal(model, 0.0),
    )
    features = torch.randn(1, 6, config.cap_feat_dim, generator=torch.Generator().manual_seed(0))
    positive = _comfy_model.conditioning(TextCondition(features, torch.ones(1, 6, dtype=torch.long)))
    noise = make_noise(TOY_LATENT, 0)

    def ksampler(m):
        return comfy.sample.sample(
            m, noise, 4, 1.0, "euler", "simple", positive, positive, toy["samples"], disable_pbar=True, seed=0
        )

    by_node, by_loader, unpatched = ksampler(patched), ksampler(load(5.0)), ksampler(model)
    out.update(
        sample_finite=bool(torch.isfinite(by_node).all()),
        node_against_loader=float((by_node - by_loader).abs().max()),
        node_against_shift_9=float((by_node - unpatched).abs().max()),
    )
    return out


def python() -> str:
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


@pytest.fixture(scope="module")
def probed(embedded_weights):
    folder, _ = embedded_weights
    code = "import json, sys\nfrom tests.integration.test_model_sampling import probe\n"
    code += "print(json.dumps(probe(sys.argv[1])))"
    done = subprocess.run(
        [python(), "-c", code, str(folder / "dit.safetensors")], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_node_is_declared_once_with_its_id(probed):
    assert probed["nodes"] == ["LuminaVideoModelSampling"]
    assert probed["schema"] == ["LuminaVideoModelSampling", "Lumina-Video Model Sampling", "Lumina-Video/native"]


def test_the_shift_is_comfyuis_flow_shift_with_multiplier_1_on_a_clone(probed):
    assert probed["shift"] == 5.0 and probed["multiplier"] == 1.0
    assert probed["original_shift"] == 9.0
    assert probed["grid_difference"] < 1e-6  # ComfyUI's shifted sigmas are the engine's 1 - time_grid
    assert probed["twice"] == 7.0
    assert probed["auto_off_ignores_latent"] == 3.0


def test_auto_takes_the_shift_from_the_latents_tokens(probed):
    assert probed["auto_toy"] == auto_time_shift(64)
    assert probed["auto_released"] == 24.0


def test_ksampler_after_the_node_samples_as_a_model_loaded_at_that_shift(probed):
    assert probed["sample_finite"]
    assert probed["node_against_loader"] == 0.0
    assert probed["node_against_shift_9"] > 1e-3


def test_the_node_refuses_with_what_to_connect(probed):
    assert "connect the latent you sample" in probed["no_latent"]
    assert "not a video latent" in probed["image_latent"]
    assert "not a Lumina-Video model" in probed["not_lumina"]
    assert "shift must be positive" in probed["zero_shift"]


def available_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) / 2**20


@pytest.mark.slow
def test_fp8_weights_load_the_released_dit_in_about_half_the_memory_of_bf16():
    if available_gib() < RELEASED_LOAD_GIB:
        pytest.skip(f"NOT RUN: loading the released DiT in bf16 needs about {RELEASED_LOAD_GIB} GiB free")
    done = subprocess.run(
        [python(), "-m", "tests.integration.native_load_memory"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ratio = float(done.stdout.split("fp8 / bf16 peak: ")[1].split(";")[0])
    assert ratio < FP8_PEAK_BOUND, done.stdout
