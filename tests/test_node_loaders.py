"""Node tier: each loader lists only the files of its kind (read from their headers), and a file that can't be
loaded stops the loader with a ValueError naming the file and the fix: ComfyUI shows a builtin exception type by its
short name, any other by its module path."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from node_env import EMBEDDED
from safetensors.torch import load_file, save_file

from lumina_core.models.vae import CONFIG_METADATA_KEY, DIFFUSERS_KEYS, CogVideoXVAEConfig

RELEASED = "Lumina-Video-f24R960/consolidated.00-of-01.pth"
INPUTS = {
    "LuminaVideoModelLoader": dict(model_name=None, dtype="auto", download=False),
    "LuminaVideoVAELoader": dict(vae_name=None, dtype="auto"),
    "LuminaVideoV2ALoader": dict(v2a_name=None, dtype="auto"),
}


@pytest.fixture(scope="module")
def folders(env):
    """Files of every kind in the stand-in model folders (this module's own ComfyUI work dir)."""
    lumina, diffusion, vae = (env.models / name for name in ("lumina_video", "diffusion_models", "vae"))
    for kind in ("dit", "text_encoder", "v2a"):
        shutil.copy(env.embedded / f"{kind}.safetensors", lumina / f"{kind}.safetensors")
    v2a = (env.embedded / "v2a.safetensors").read_bytes()
    (lumina / "v2a_cut.safetensors").write_bytes(v2a[: len(v2a) // 2])  # truncated, but its header is whole
    (lumina / "corrupt.safetensors").write_bytes(random.Random(0).randbytes(4096))
    (lumina / "empty.pth").write_bytes(b"")  # a pickle can't be looked into: taken for the released DiT
    (lumina / "model_args.pth").write_bytes(b"")
    shutil.copy(env.embedded / "dit.safetensors", diffusion / "dit_in_diffusion_models.safetensors")
    save_file({"x_embedder.weight": torch.zeros(1)}, str(diffusion / "lumina_image_2.safetensors"))

    shutil.copy(env.embedded / "vae.safetensors", vae / "toy_vae.safetensors")
    save_file({key: torch.zeros(1) for key in DIFFUSERS_KEYS}, str(vae / "cogvideox_diffusers.safetensors"))
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(vae / "sd_vae.safetensors"))
    (vae / "corrupt.safetensors").write_bytes(b"")
    mismatched = {CONFIG_METADATA_KEY: json.dumps(CogVideoXVAEConfig.cogvideox_2b().to_dict())}
    save_file(load_file(env.embedded / "vae.safetensors"), str(vae / "2b_config.safetensors"), metadata=mismatched)
    return lumina, vae


def options(env, node_id: str) -> list[str]:
    return env.nodes[node_id].GET_SCHEMA().inputs[0].options


def test_each_loader_lists_only_its_kind(env, folders):
    assert options(env, "LuminaVideoModelLoader") == [
        EMBEDDED,
        RELEASED,
        "corrupt.safetensors",  # unreadable: listed here, so choosing it says what is wrong
        "dit.safetensors",
        "dit_in_diffusion_models.safetensors",
        "empty.pth",
    ]
    assert options(env, "LuminaVideoV2ALoader") == [EMBEDDED, "v2a.safetensors", "v2a_cut.safetensors"]
    assert options(env, "LuminaVideoVAELoader") == [
        EMBEDDED,
        "2b_config.safetensors",
        "cogvideox_diffusers.safetensors",
        "corrupt.safetensors",
        "toy_vae.safetensors",
    ]


def load_error(env, node_id: str, name: str) -> str:
    """The message of the error a loader stops with; its type is ValueError itself, not an engine subclass."""
    inputs = {key: name if value is None else value for key, value in INPUTS[node_id].items()}
    with pytest.raises(ValueError) as error:
        env.run(node_id, **inputs)
    assert type(error.value) is ValueError, type(error.value)
    return str(error.value)


@pytest.mark.parametrize(
    "node_id, name, what",
    [
        ("LuminaVideoModelLoader", "corrupt.safetensors", "not a readable .safetensors file"),
        ("LuminaVideoModelLoader", "empty.pth", "is empty"),
        ("LuminaVideoV2ALoader", "v2a_cut.safetensors", "is truncated: its header says the file has"),
        ("LuminaVideoVAELoader", "corrupt.safetensors", "has 0 bytes"),
    ],
)
def test_a_damaged_file_is_named_with_the_fix(env, folders, node_id, name, what):
    lumina, vae = folders
    message = load_error(env, node_id, name)
    assert str((vae if node_id == "LuminaVideoVAELoader" else lumina) / name) in message
    assert what in message and "Download it again" in message


def test_a_vae_that_does_not_match_its_config_is_a_plain_value_error(env, folders):
    _, vae = folders
    message = load_error(env, "LuminaVideoVAELoader", "2b_config.safetensors")
    assert str(vae / "2b_config.safetensors") in message and "does not match a CogVideoX VAE" in message
