"""Node tier: every node, called the way ComfyUI calls it, on the embedded default, without ComfyUI.

ComfyUI's modules are replaced by the stand-ins of ``comfy_stubs`` and the repository is
imported as a package from its ``__init__.py``, as ComfyUI's ``load_custom_node`` does; each
node goes through schema -> widget validation -> ``validate_inputs`` -> ``PREPARE_CLASS_CLONE``
-> ``EXECUTE_NORMALIZED``. The embedded default's real weights are used when they are in
``lumina_core/embedded``, random-weight files of the same format otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import comfy_stubs
import numpy as np
import pytest
import torch
from comfy_stubs import ValidationFailed
from node_env import EMBEDDED, MOTION_WIDGETS, REPO, default_widgets, sampler_inputs

from lumina_core.io.media import read_video

AAC_FRAME = 1024  # samples; what an mp4's audio may read back longer by


# --------------------------------------------------------------------------- registration and schemas


def test_node_ids_are_the_registered_ones(env):
    from nodes import NODE_IDS

    assert list(env.nodes) == list(NODE_IDS)
    assert list(env.package.nodes.NODE_IDS) == list(NODE_IDS)
    assert all(node_id.startswith("LuminaVideo") for node_id in NODE_IDS)
    assert not hasattr(env.package, "NODE_CLASS_MAPPINGS"), "V1 mappings would make ComfyUI ignore comfy_entrypoint"
    assert env.package.WEB_DIRECTORY == "./web"


@pytest.mark.parametrize(
    "node_id",
    [
        "LuminaVideoModelLoader",
        "LuminaVideoVAELoader",
        "LuminaVideoTextEncode",
        "LuminaVideoMotionScore",
        "LuminaVideoEmptyLatent",
        "LuminaVideoSampler",
        "LuminaVideoVAEDecode",
        "LuminaVideoV2ALoader",
        "LuminaVideoAudioGenerate",
        "LuminaVideoSaveVideo",
        "LuminaVideoVAEEncode",
        "LuminaVideoImageToVideo",
        "LuminaVideoVideoToVideo",
        "LuminaVideoCinemagraph",
    ],
)
def test_schema_is_well_formed(env, node_id):
    schema = env.nodes[node_id].GET_SCHEMA()
    assert schema.node_id == node_id
    assert schema.display_name and schema.display_name.startswith("Lumina-Video ")
    assert schema.category.startswith("Lumina-Video/")
    assert len(schema.description) > 60
    assert schema.outputs, "every node has an output"
    for out in schema.outputs:
        assert out.display_name and out.tooltip
    for inp in schema.inputs:
        assert inp.tooltip and len(inp.tooltip) > 15, f"{node_id}.{inp.id} needs a tooltip"
        if inp.is_widget:
            assert inp.default is not None, f"{node_id}.{inp.id} needs a default"
            assert comfy_stubs.check_widget_value(inp, inp.default) is None, (
                f"{node_id}.{inp.id}: default {inp.default!r} is invalid"
            )
    for io_type in {i.io_type for i in schema.inputs} | {o.io_type for o in schema.outputs}:
        assert io_type == io_type.upper()
    pack_types = {
        t
        for t in {i.io_type for i in schema.inputs} | {o.io_type for o in schema.outputs}
        if t.startswith("LUMINAVIDEO_")
    }
    assert pack_types <= {"LUMINAVIDEO_VAE", "LUMINAVIDEO_V2A"}, (
        "the video model and prompts travel as MODEL and CONDITIONING"
    )


def test_package_metadata_matches_requirements():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert project["project"]["dependencies"] == requirements
    assert not [
        r for r in requirements if r.split("=")[0].split(">")[0].strip() in ("torch", "torchvision", "torchaudio")
    ]
    assert "comfyui" not in project["project"]["name"].lower()
    assert project["project"]["urls"]["Repository"].startswith("https://")
    assert {"PublisherId", "DisplayName", "Icon", "includes"} <= set(project["tool"]["comfy"])
    assert "web" not in project["tool"]["comfy"], (
        "WEB_DIRECTORY serves web/; a second registration would load the extension twice"
    )
    assert project["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def test_only_the_comfy_modules_import_comfyui():
    """_comfy.py (services) and _comfy_model.py (the native model's ComfyUI classes) are the seam."""
    for path in (REPO / "nodes").glob("*.py"):
        text = path.read_text()
        imports_comfy = any(
            f"import {m}" in text or f"from {m}" in text for m in ("comfy", "comfy_api", "folder_paths")
        )
        assert imports_comfy == (path.name in ("_comfy.py", "_comfy_model.py")), path.name


def test_a_widget_overrides_one_value_of_the_preset(env):
    sampling = env.package.nodes.sampling
    preset = env.package.lumina_core.sampling.PRESETS["f24F96R960-MultiScale"]
    assert sampling.sampler_config("f24F96R960-MultiScale", steps=20) == preset.with_(steps=20)
    assert sampling.sampler_config("f24F96R960-MultiScale", cfg=5.0) == preset.with_(cfg=(5.0, (0.2, 0.0)))
    assert sampling.sampler_config("f24F96R960-MultiScale", cfg_cutoff=1.0) == preset.with_(cfg=20.0)
    assert sampling.sampler_config("f24F96R960-MultiScale", renorm=0.0) == preset.with_(renorm=0.0)
    assert sampling.sampler_config("f24F96R960-MultiScale", patch_schedule="2x2") == preset.with_(patch="2x2")
    assert sampling.sampler_config("f24F96R960-MultiScale", solver="heun") == preset.with_(solver="heun")


API_WORKFLOWS = sorted((REPO / "workflows" / "api").glob("*.json"))
NATIVE_PRESET_NODES = ("LuminaVideoMultiScale", "LuminaVideoGuidance")
REDRAWN = ("LuminaVideoVideoToVideo", "LuminaVideoUpscaleVideo")
"""Nodes whose latent is a video to redraw: a sampler after them takes a denoise below 1 (video-to-video, refine)."""


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_shipped_workflows_name_a_preset_and_override_nothing(env, path):
    """The workflows hold no copy of a preset's values: their samplers resolve to the preset, their Motion Score
    nodes set the default preset's motion scores and leave motion guidance to the preset, and the native path's
    Multi-Scale and Guidance patches name one preset and override none of its values."""
    sampling, motion_module = env.package.nodes.sampling, env.package.nodes.motion
    presets = env.package.lumina_core.sampling.PRESETS
    graph = json.loads(path.read_text())
    samplers = [node["inputs"] for node in graph.values() if node["class_type"] == "LuminaVideoSampler"]
    patches = [node["inputs"] for node in graph.values() if node["class_type"] in NATIVE_PRESET_NODES]
    assert samplers or len(patches) == 2, f"{path.name} has no sampler and no native preset patches"
    for inputs in samplers:
        widgets = {k: v for k, v in inputs.items() if not isinstance(v, list) and k not in ("seed", "cache", "denoise")}
        assert inputs["cache"] == 0.0, "step caching is off in the shipped workflows"
        if graph[inputs["latent"][0]]["class_type"] not in REDRAWN:
            assert inputs["denoise"] == 1.0, "a sampler that doesn't redraw a video draws from noise"
        name = widgets.pop("preset")
        assert sampling.sampler_config(name, **widgets) == presets[name]
    for node in graph.values():
        if node["class_type"] == "LuminaVideoMotionScore":
            motion = motion_module.motion_condition(**{key: node["inputs"][key] for key in MOTION_WIDGETS})
            default = motion_module.motion_condition(**default_widgets(env, "LuminaVideoMotionScore"))
            assert motion == default and motion.motion_cfg is None, "Motion Score at its defaults (the reference's)"
    if patches:
        assert len({inputs["preset"] for inputs in patches}) == 1, "Multi-Scale and Guidance name one preset"
        overrides = {k: v for inputs in patches for k, v in inputs.items() if k not in ("model", "preset")}
        assert overrides == {"patch_schedule": "preset", "custom_schedule": "", "cfg_cutoff": -1.0, "renorm": -1.0}


def test_the_web_extensions_plan_is_the_samplers(env):
    """The plan the server sends the web extension (its route's answer) is what the Sampler will run."""
    sampling = env.package.nodes.sampling
    presets = env.package.lumina_core.sampling.PRESETS
    plan = sampling.plan_request({"sampler": {"preset": "embedded-MultiScale"}, "motion": None})
    assert Counter(plan["patch"]) == {"2x4": 22, "2x2": 4, "1x2": 3}
    assert plan["times"] == presets["embedded-MultiScale"].times()[:-1]
    custom = sampling.plan_request(
        {
            "sampler": {"preset": "f24F96R960", "patch_schedule": "custom", "custom_schedule": '("2x4", (0.5'},
            "motion": None,
        }
    )
    assert "custom_schedule" in custom["error"]
    assert "error" in sampling.plan_request({"sampler": "not widgets"})


def test_motion_node_names_the_bad_input(env):
    scores = dict(motion=6.0, negative_motion_start=2.0, negative_motion_after=6.0, switch_t=0.05)
    scores_on = dict(scores, positive=[], negative=[])
    with pytest.raises(ValueError, match="motion_guidance must be a finite number"):
        env.run("LuminaVideoMotionScore", **scores_on, motion_guidance=float("nan"))
    with pytest.raises(ValidationFailed, match="bigger than max of 1.0: motion_guidance_until"):
        env.run("LuminaVideoMotionScore", **scores_on, motion_guidance_until=1.5)
    with pytest.raises(ValueError, match=re.escape("motion_guidance_until 1.5 must be a time in [0, 1]")):
        env.package.nodes.motion.motion_condition(*scores.values(), motion_guidance=10.0, motion_guidance_until=1.5)


# --------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    "size,message",
    [
        (dict(width=70, height=64, frames=16), "width 70 must be a multiple of 32 between 32 and 2048 (try 64 or 96)"),
        (dict(width=64, height=64, frames=12), "try 8 or 16"),
        (dict(width=64, height=4096, frames=16), "height 4096"),
    ],
)
def test_empty_latent_names_the_nearest_valid_size(env, size, message):
    with pytest.raises(ValidationFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        env.run("LuminaVideoEmptyLatent", batch_size=1, **size)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        env.nodes["LuminaVideoEmptyLatent"].execute(batch_size=1, **size)


@pytest.mark.parametrize("custom", ["(2x4, oops", '("2x4", (1.5, "1x2"))', '("2x4", (0.5, "fine"))'])
def test_custom_schedule_errors_quote_the_users_text(env, loaded, custom):
    with pytest.raises(ValidationFailed) as error:
        env.run("LuminaVideoSampler", **sampler_inputs(loaded, patch_schedule="custom", custom_schedule=custom))
    assert repr(custom) in str(error.value)


def test_widget_ranges_are_enforced(env, loaded):
    with pytest.raises(ValidationFailed, match="smaller than min"):
        env.run("LuminaVideoSampler", **sampler_inputs(loaded, time_shift=-5.0))
    with pytest.raises(ValidationFailed, match="smaller than min"):
        env.run("LuminaVideoSampler", **sampler_inputs(loaded, steps=-1))
    with pytest.raises(ValidationFailed, match="not in list"):
        env.run("LuminaVideoSampler", **sampler_inputs(loaded, solver="dpm"))


def test_model_files_load_from_the_folders(env):
    toy = env.models / "lumina_video" / "toy"
    toy.mkdir(exist_ok=True)
    shutil.copy(env.embedded / "dit.safetensors", toy / "dit.safetensors")
    shutil.copy(env.embedded / "dit.safetensors", env.models / "diffusion_models" / "bare_dit.safetensors")
    (toy / "model_args.pth").write_bytes(b"")
    schema = env.nodes["LuminaVideoModelLoader"].GET_SCHEMA()
    options = schema.inputs[0].options
    assert options[:2] == [EMBEDDED, "Lumina-Video-f24R960/consolidated.00-of-01.pth"]
    assert (
        "toy/dit.safetensors" in options and "bare_dit.safetensors" in options and "toy/model_args.pth" not in options
    )

    shutil.copy(env.embedded / "vae.safetensors", env.models / "vae" / "toy_vae.safetensors")
    assert "toy_vae.safetensors" in env.nodes["LuminaVideoVAELoader"].GET_SCHEMA().inputs[0].options
    env.run("LuminaVideoVAELoader", vae_name="toy_vae.safetensors", dtype="auto")


def test_missing_embedded_files_are_named(env, monkeypatch, tmp_path):
    monkeypatch.setenv("LUMINA_VIDEO_EMBEDDED_DIR", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=r"the embedded default's dit.safetensors is missing from .*lumina_core.toyworld.train"
    ):
        env.run("LuminaVideoModelLoader", model_name=EMBEDDED, dtype="auto", download=False)
    with pytest.raises(FileNotFoundError, match="v2a.safetensors is missing"):
        env.run("LuminaVideoV2ALoader", v2a_name=EMBEDDED, dtype="auto")


def test_released_weights_are_downloaded_only_on_request(env, monkeypatch):
    released = "Lumina-Video-f24R960/consolidated.00-of-01.pth"
    with pytest.raises(
        FileNotFoundError, match="Turn on 'download' to fetch Alpha-VLLM/Lumina-Video-f24R960 into .*lumina_video"
    ):
        env.run("LuminaVideoModelLoader", model_name=released, dtype="auto", download=False)

    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(
        RuntimeError,
        match=r"could not reach the Hugging Face hub for Alpha-VLLM/Lumina-Video-f24R960 "
        r".*no route to host.*into .*lumina_video/Lumina-Video-f24R960",
    ):
        env.run("LuminaVideoModelLoader", model_name=released, dtype="auto", download=True)
    assert not (env.models / "lumina_video" / "Lumina-Video-f24R960").exists(), "a failed download leaves nothing"


def test_a_failed_download_keeps_only_what_resumes(env, monkeypatch):
    """The hub client's lock files, empty parts and .cache folders go; a part that holds data stays for the next try."""
    import huggingface_hub

    target = env.models / "lumina_video" / "Lumina-Video-f24R960"

    def interrupted(repo, filename, local_dir):
        cache = Path(local_dir) / ".cache" / "huggingface" / "download"
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"{filename}.lock").touch()
        (cache / f"{filename}.incomplete").write_bytes(b"" if filename == "model_args.pth" else b"partial")
        if filename == "model_args.pth":
            (Path(local_dir) / filename).write_bytes(b"args")  # the first file arrives whole
            return
        raise TimeoutError("read timed out")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", interrupted)
    released = "Lumina-Video-f24R960/consolidated.00-of-01.pth"
    with pytest.raises(RuntimeError, match="read timed out"):
        env.run("LuminaVideoModelLoader", model_name=released, dtype="auto", download=True)
    left = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert left == [".cache/huggingface/download/consolidated.00-of-01.pth.incomplete", "model_args.pth"]
    shutil.rmtree(target)


# --------------------------------------------------------------------------- saving


def _frames(n=8, h=32, w=48):
    return torch.rand(n, h, w, 3)


def test_save_never_overwrites_and_stays_in_the_output_folder(env):
    names = []
    for _ in range(2):
        out = env.run("LuminaVideoSaveVideo", images=_frames(), fps=8.0, format="webm", filename_prefix="numbered/clip")
        names.append(out.ui.as_dict()["images"][0]["filename"])
    assert names == ["clip_00001_.webm", "clip_00002_.webm"]
    frames, fps, sound, _ = read_video(env.output / "numbered" / names[1])
    assert frames.shape == (8, 32, 48, 3) and fps == 8 and sound is None
    for prefix in ("../outside/clip", "/tmp/clip", "a/../../clip"):
        with pytest.raises(ValueError, match="outside ComfyUI's output folder"):
            env.run("LuminaVideoSaveVideo", images=_frames(), fps=8.0, format="mp4", filename_prefix=prefix)
    assert not list(env.output.parent.glob("outside*"))


@pytest.mark.parametrize(
    "rate,channels,seconds,expected_rate", [(44100, 2, 3.0, 44100), (12345, 1, 0.5, 16000), (48000, 6, 1.0, 48000)]
)
def test_save_takes_native_audio(env, rate, channels, seconds, expected_rate):
    """LoadAudio's {"waveform": [1, C, T], "sample_rate"}: resampled when AAC needs it, cut or padded to the video."""
    audio = {"waveform": torch.rand(1, channels, int(rate * seconds)) * 0.2 - 0.1, "sample_rate": rate}
    out = env.run(
        "LuminaVideoSaveVideo",
        images=_frames(n=8),
        fps=8.0,
        format="mp4",
        filename_prefix="audio/native",
        audio=audio,
        audio_length="trim or pad",
    )
    name = out.ui.as_dict()["images"][0]["filename"]
    _, fps, sound, sample_rate = read_video(env.output / "audio" / name)
    assert sample_rate == expected_rate and sound.shape[0] == (channels if channels <= 2 else 1)
    assert abs(sound.shape[-1] - expected_rate) <= AAC_FRAME  # 8 frames at 8 fps = one second


def test_latent_preview_is_stable_and_sized(env):
    latent_preview = env.package.nodes.sampling.latent_preview
    x = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    first, again = latent_preview(x), latent_preview(x * 1.0001)
    assert first.size == (4 * 64, 64)
    difference = (torch.from_numpy(np.array(first)).float() - torch.from_numpy(np.array(again)).float()).abs().mean()
    assert difference < 2, "colours must not flip between nearly equal latents"


def test_conditioning_nodes_carry_the_engines_conditioning_in_a_latent(env, loaded):
    """The conditioning nodes, called as ComfyUI calls them, give the engine's builders' latent and 1 - keep as the
    LATENT's noise_mask (sampled in the integration tier, tests/integration/test_conditional_nodes.py)."""
    conditioning = env.package.lumina_core.conditioning
    vae, latent = loaded["vae"], loaded["latent"]
    video = torch.rand(16, 64, 64, 3)
    mask = torch.zeros(1, 64, 64)
    mask[..., 32:] = 1
    image = env.run("LuminaVideoImageToVideo", vae=vae, latent=latent, image=video[:1], frame_index=4, strength=1.0)
    known = conditioning.from_images(vae.vae, [(video[0], 4)], 16)
    assert torch.equal(image[0]["samples"], known.latent) and torch.equal(image[0]["noise_mask"], 1 - known.keep)
    inpaint = env.run("LuminaVideoVideoToVideo", vae=vae, latent=latent, video=video, keep_frames=0, mask=mask)[0]
    known = conditioning.from_video(vae.vae, video, 16, mask)
    assert torch.equal(inpaint["samples"], known.latent) and torch.equal(inpaint["noise_mask"], 1 - known.keep)
    still = env.run("LuminaVideoCinemagraph", vae=vae, latent=latent, image=video[:1], mask=mask)[0]
    known = conditioning.cinemagraph(vae.vae, video[0], mask[0], 16)
    assert torch.equal(still["samples"], known.latent) and torch.equal(still["noise_mask"], 1 - known.keep)
    encoded = env.run("LuminaVideoVAEEncode", vae=vae, images=video)[0]
    assert torch.equal(encoded["samples"], conditioning.encode(vae.vae, video)) and "noise_mask" not in encoded
