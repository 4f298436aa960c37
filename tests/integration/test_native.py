"""Lumina-Video as a native ComfyUI model, in a real ComfyUI: ComfyUI's own samplers and model tools run on it.

Each test queues an API-format prompt built here (the pack's native nodes with ComfyUI's), saves the sampled
latent with ComfyUI's SaveLatent, and compares it with the engine's sampler on the same weights, or reads the
decoded video with the toy world's metrics.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lumina_core import embedded
from lumina_core.io.media import read_video
from lumina_core.pipeline import decode_latent
from lumina_core.sampling import make_noise, preset, sample, scale_and_cutoff
from lumina_core.toyworld.metrics import detect_colour, detect_direction

EMBEDDED_MODEL = "embedded (toy world, CPU)"
PROMPTS = ("a red square moving left", "a blue circle moving up", "a green triangle moving right")
SEED = 5
_ids = itertools.count(1)


class Graph:
    """An API-format prompt under construction: ``add`` returns the new node's id; ``out(node, i)`` links."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(next(_ids))
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def out(node_id: str, index: int = 0) -> list:
    return [node_id, index]


def native_chain(prompt: str, preset_name: str = "embedded-MultiScale", dtype: str = "auto", model_name=EMBEDDED_MODEL):
    """Loader -> prompts -> Multi-Scale -> Guidance; returns (graph, patched model link, positive, negative, latent)."""
    g = Graph()
    loader = g.add("LuminaVideoModelLoader", model_name=model_name, dtype=dtype, download=False)
    prompts = g.add("LuminaVideoTextEncode", model=out(loader), positive=prompt, negative="")
    multi = g.add("LuminaVideoMultiScale", model=out(loader), preset=preset_name, patch_schedule="preset")
    guided = g.add("LuminaVideoGuidance", model=out(multi), preset=preset_name, cfg_cutoff=-1.0, renorm=-1.0)
    latent = g.add("LuminaVideoEmptyLatent", width=64, height=64, frames=16, batch_size=1)
    return g, out(guided), out(prompts, 0), out(prompts, 1), out(latent)


def custom_advanced(g: Graph, model, positive, negative, latent, preset_name: str, seed: int = SEED, sampler="euler"):
    """SamplerCustomAdvanced with the preset's grid (Lumina-Video Scheduler) and cfg (the reference's + 1)."""
    cfg = scale_and_cutoff(preset(preset_name).cfg)[0] + 1
    guider = g.add("CFGGuider", model=model, positive=positive, negative=negative, cfg=cfg)
    sigmas = g.add("LuminaVideoScheduler", preset=preset_name, steps=0, time_shift=0.0)
    return g.add(
        "SamplerCustomAdvanced",
        noise=out(g.add("RandomNoise", noise_seed=seed)),
        guider=out(guider),
        sampler=out(g.add("KSamplerSelect", sampler_name=sampler)),
        sigmas=out(sigmas),
        latent_image=latent,
    )


def run_latent(client, workdir, g: Graph, latent_link: list, prefix: str) -> torch.Tensor:
    """Queue the graph with a SaveLatent on ``latent_link``; returns the saved latent."""
    save = g.add("SaveLatent", samples=latent_link, filename_prefix=f"native/{prefix}")
    result = client.run(g.nodes, timeout=600)
    assert result.ok, result.describe_error()
    entry = result.outputs[save]["latents"][0]
    return load_file(str(Path(workdir.output) / entry["subfolder"] / entry["filename"]))["latent_tensor"]


@pytest.fixture(scope="module")
def engine(embedded_weights):
    folder, real = embedded_weights
    return embedded.load(where=folder, with_audio=False), real


def native_latent(client, workdir, prompt: str, preset_name: str = "embedded-MultiScale") -> torch.Tensor:
    g, model, positive, negative, latent = native_chain(prompt, preset_name)
    sampled = custom_advanced(g, model, positive, negative, latent, preset_name)
    return run_latent(client, workdir, g, out(sampled), "plain")


def engine_latent(models, prompt: str, preset_name: str, seed: int = SEED) -> torch.Tensor:
    with torch.no_grad():
        positive, negative = models.text_encoder.encode([prompt]), models.text_encoder.encode([""])
        noise = make_noise((1, 16, 4, 8, 8), seed)
        return sample(models.dit, noise, positive, negative, preset(preset_name))


def reads(models, latent: torch.Tensor) -> tuple:
    """(colour, direction) the toy metrics read from the decoded video."""
    frames = decode_latent(models.vae, latent.float())[0]
    return detect_colour(frames), detect_direction(frames)


def prompted(prompt: str) -> tuple:
    words = prompt.split()
    return words[1], words[-1]


@pytest.mark.parametrize("preset_name", ["embedded-MultiScale", "embedded"])
def test_the_native_chain_samples_what_the_engine_samples(comfy_client, comfy_workdir, engine, preset_name):
    """SamplerCustomAdvanced + Multi-Scale + Guidance + Scheduler against lumina_core.sampling.sample, fp32.

    Measured 1.9e-5 at most over 24 runs (docs/native.md): ComfyUI's samplers step on the denoised prediction
    x - sigma * v and take v back as (x - denoised) / sigma, which loses ulp(x) / sigma per step near the end; the
    engine steps on v.
    """
    models, _ = engine
    for prompt in PROMPTS[:2]:
        g, model, positive, negative, latent = native_chain(prompt, preset_name)
        sampled = custom_advanced(g, model, positive, negative, latent, preset_name)
        native = run_latent(comfy_client, comfy_workdir, g, out(sampled), f"equal_{preset_name}")
        expected = engine_latent(models, prompt, preset_name)
        difference = (native - expected).abs().max().item()
        assert difference < 3e-5, f"{preset_name}, {prompt!r}: max abs latent difference {difference:.2e}"


def test_the_shipped_ksampler_workflow_draws_its_prompt(comfy_client, comfy_workdir, engine):
    """The shipped native workflow (KSampler between the pack's loaders and Save Video), run as shipped."""
    models, real = engine
    path = Path(__file__).resolve().parents[2] / "workflows" / "api"
    graph = json.loads((path / "Lumina-Video text to video with KSampler, embedded toy model.json").read_text())
    result = comfy_client.run(graph, timeout=600)
    assert result.ok, result.describe_error()
    save_id = next(k for k, v in graph.items() if v["class_type"] == "LuminaVideoSaveVideo")
    entry = result.outputs[save_id]["images"][0]
    video = read_video(Path(comfy_workdir.output) / entry["subfolder"] / entry["filename"])
    assert video.frames.shape == (16, 64, 64, 3) and video.fps == 8
    if real:
        prompt = next(v["inputs"]["positive"] for v in graph.values() if v["class_type"] == "LuminaVideoTextEncode")
        frames = video.frames.numpy()
        assert (detect_colour(frames), detect_direction(frames)) == prompted(prompt)


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m"])
def test_ksampler_draws_the_prompt(comfy_client, comfy_workdir, engine, sampler_name):
    """KSampler with its own scheduler ('simple' on the model's shift) and two of its samplers; the toy metrics read
    the prompted colour and direction."""
    models, real = engine
    if not real:
        pytest.skip("the embedded weights are random stand-ins here: nothing to read")
    for prompt in PROMPTS:
        g, model, positive, negative, latent = native_chain(prompt)
        sampled = g.add(
            "KSampler",
            model=model,
            seed=SEED,
            steps=29,
            cfg=5.0,
            sampler_name=sampler_name,
            scheduler="simple",
            positive=positive,
            negative=negative,
            latent_image=latent,
            denoise=1.0,
        )
        latent_out = run_latent(comfy_client, comfy_workdir, g, out(sampled), f"ksampler_{sampler_name}")
        assert reads(models, latent_out) == prompted(prompt), prompt


def test_fp8_weights_draw_the_prompt(comfy_client, comfy_workdir, engine):
    models, real = engine
    if not real:
        pytest.skip("the embedded weights are random stand-ins here: nothing to read")
    for prompt in PROMPTS:
        g, model, positive, negative, latent = native_chain(prompt, dtype="fp8_e4m3fn")
        sampled = custom_advanced(g, model, positive, negative, latent, "embedded-MultiScale")
        latent_out = run_latent(comfy_client, comfy_workdir, g, out(sampled), "fp8")
        full = engine_latent(models, prompt, "embedded-MultiScale")
        assert 0 < (latent_out - full).abs().max() < 1.0, "fp8 weights should move the latent a little, not a lot"
        assert reads(models, latent_out) == prompted(prompt), prompt


@pytest.fixture(scope="module")
def second_model(comfy_workdir, embedded_weights):
    """Another Lumina-Video model in models/lumina_video: the embedded DiT with the weights of every leaf module moved
    by noise. The per-head cross-attention gates and the pad token stay: ComfyUI patches (merges, LoRA) only the
    parameters of leaf modules, and these two are parameters of modules with children (docs/native.md)."""
    folder, _ = embedded_weights
    weights = load_file(str(Path(folder) / "dit.safetensors"))
    generator = torch.Generator().manual_seed(0)
    kept = ("attention.gate", "pad_token")
    moved = {
        k: v if k.endswith(kept) else v + 0.02 * torch.randn(v.shape, generator=generator) for k, v in weights.items()
    }
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "dit.safetensors"), "pt") as f:
        metadata = f.metadata()
    path = Path(comfy_workdir.model_dir("lumina_video")) / "moved" / "dit.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(moved, str(path), metadata=metadata)
    return "moved/dit.safetensors"


def merged_latent(client, workdir, second: str, ratio: float) -> torch.Tensor:
    g, _, positive, negative, latent = native_chain(PROMPTS[0])
    base = next(k for k, v in g.nodes.items() if v["class_type"] == "LuminaVideoModelLoader")
    other = g.add("LuminaVideoModelLoader", model_name=second, dtype="auto", download=False)
    merge = g.add("ModelMergeSimple", model1=out(other), model2=out(base), ratio=ratio)
    multi = g.add("LuminaVideoMultiScale", model=out(merge), preset="embedded-MultiScale", patch_schedule="preset")
    guided = g.add("LuminaVideoGuidance", model=out(multi), preset="embedded-MultiScale", cfg_cutoff=-1.0, renorm=-1.0)
    sampled = custom_advanced(g, out(guided), positive, negative, latent, "embedded-MultiScale")
    return run_latent(client, workdir, g, out(sampled), f"merge_{ratio}")


def test_model_merge_interpolates_between_two_lumina_video_models(comfy_client, comfy_workdir, second_model):
    """ModelMergeSimple(model1 = moved, model2 = embedded, ratio r) = r * moved + (1 - r) * embedded: ratio 0 samples
    exactly what the embedded model samples, ratio 0.5 something between."""
    at_zero = merged_latent(comfy_client, comfy_workdir, second_model, 0.0)
    base = native_latent(comfy_client, comfy_workdir, PROMPTS[0])
    assert torch.equal(at_zero, base)
    at_half = merged_latent(comfy_client, comfy_workdir, second_model, 0.5)
    at_one = merged_latent(comfy_client, comfy_workdir, second_model, 1.0)
    assert (at_half - base).abs().max() > 1e-3 and (at_half - at_one).abs().max() > 1e-3


def random_lora(path: Path, dit_weights: dict, rank: int = 4) -> None:
    """A LoRA in the pack's layout (diffusion_model.<module>.lora_A/lora_B.weight, alpha) on every attention query."""
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for key, weight in dit_weights.items():
        if key.endswith("attention.wq.weight"):
            module = "diffusion_model." + key[: -len(".weight")]
            tensors[f"{module}.lora_A.weight"] = 0.1 * torch.randn(rank, weight.shape[1], generator=generator)
            tensors[f"{module}.lora_B.weight"] = 0.1 * torch.randn(weight.shape[0], rank, generator=generator)
            tensors[f"{module}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path))


def test_lora_loader_model_only_applies_a_lumina_video_lora(comfy_client, comfy_workdir, engine, embedded_weights):
    """ComfyUI's LoraLoaderModelOnly reads the pack's LoRA layout without a key map: strength 0 samples what the
    model samples; strength 1 samples what the engine samples with W + B A merged into the weights."""
    models, _ = engine
    folder, _ = embedded_weights
    weights = load_file(str(Path(folder) / "dit.safetensors"))
    lora_path = Path(comfy_workdir.models) / "loras" / "random_lumina_video_lora.safetensors"
    lora_path.parent.mkdir(parents=True, exist_ok=True)
    random_lora(lora_path, weights)

    def with_lora(strength: float) -> torch.Tensor:
        g, _, positive, negative, latent = native_chain(PROMPTS[0])
        base = next(k for k, v in g.nodes.items() if v["class_type"] == "LuminaVideoModelLoader")
        lora = g.add("LoraLoaderModelOnly", model=out(base), lora_name=lora_path.name, strength_model=strength)
        multi = g.add("LuminaVideoMultiScale", model=out(lora), preset="embedded-MultiScale", patch_schedule="preset")
        guided = g.add(
            "LuminaVideoGuidance", model=out(multi), preset="embedded-MultiScale", cfg_cutoff=-1.0, renorm=-1.0
        )
        sampled = custom_advanced(g, out(guided), positive, negative, latent, "embedded-MultiScale")
        return run_latent(comfy_client, comfy_workdir, g, out(sampled), f"lora_{strength}")

    base = native_latent(comfy_client, comfy_workdir, PROMPTS[0])
    assert torch.equal(with_lora(0.0), base)
    lora = load_file(str(lora_path))
    state = models.dit.state_dict()
    for key in list(state):
        module = "diffusion_model." + key[: -len(".weight")]
        if f"{module}.lora_A.weight" in lora:
            state[key] = state[key] + lora[f"{module}.lora_B.weight"] @ lora[f"{module}.lora_A.weight"]
    original = {k: v.clone() for k, v in models.dit.state_dict().items()}
    models.dit.load_state_dict(state)
    try:
        merged = engine_latent(models, PROMPTS[0], "embedded-MultiScale")
    finally:
        models.dit.load_state_dict(original)
    at_one = with_lora(1.0)
    assert (at_one - base).abs().max() > 1e-3, "the LoRA changed nothing"
    assert (at_one - merged).abs().max() < 1e-4


def test_easycache_skips_steps_and_keeps_the_prompt(comfy_client, comfy_workdir, comfy_server, engine):
    models, real = engine
    if not real:
        pytest.skip("the embedded weights are random stand-ins here: nothing to read")
    for prompt in PROMPTS:
        g, model, positive, negative, latent = native_chain(prompt, "embedded")
        cached = g.add(
            "EasyCache", model=model, reuse_threshold=0.05, start_percent=0.15, end_percent=0.95, verbose=False
        )
        sampled = custom_advanced(g, out(cached), positive, negative, latent, "embedded")
        latent_out = run_latent(comfy_client, comfy_workdir, g, out(sampled), "easycache")
        assert reads(models, latent_out) == prompted(prompt), prompt
    assert "EasyCache - skipped" in comfy_server.log_text()
    assert "skip-layer guidance is off under EasyCache" in comfy_server.log_text()  # the embedded preset's, named


def test_context_windows_over_frames(comfy_client, comfy_workdir, engine):
    """ContextWindowsManual on the latent frames (dim 2): windows of 2 latent frames, overlapping by 1, over the
    4 latent frames of a 16-frame video; the windows are fused into a video that still draws the prompt."""
    models, real = engine
    if not real:
        pytest.skip("the embedded weights are random stand-ins here: nothing to read")
    prompt = PROMPTS[0]
    g, model, positive, negative, latent = native_chain(prompt, "embedded")
    windowed = g.add(
        "ContextWindowsManual",
        model=model,
        context_length=2,
        context_overlap=1,
        context_schedule="standard_static",
        context_stride=1,
        closed_loop=False,
        fuse_method="pyramid",
        dim=2,
    )
    sampled = custom_advanced(g, out(windowed), positive, negative, latent, "embedded")
    latent_out = run_latent(comfy_client, comfy_workdir, g, out(sampled), "context")
    assert latent_out.shape == (1, 16, 4, 8, 8)
    plain = engine_latent(models, prompt, "embedded")
    assert (latent_out - plain).abs().max() > 1e-3, "the windows changed nothing: were they applied?"
    assert reads(models, latent_out)[0] == prompted(prompt)[0]


def test_set_latent_noise_mask_keeps_the_unmasked_part(comfy_client, comfy_workdir, engine):
    """Inpainting the native way: a sampled latent, SetLatentNoiseMask on its right half, sampled again; the left
    half stays the input's."""
    models, _ = engine
    g, model, positive, negative, latent = native_chain(PROMPTS[0], "embedded")
    first = custom_advanced(g, model, positive, negative, latent, "embedded")
    mask = g.add("SolidMask", value=0.0, width=64, height=64)
    right = g.add("SolidMask", value=1.0, width=32, height=64)
    combined = g.add("MaskComposite", destination=out(mask), source=out(right), x=32, y=0, operation="add")
    masked = g.add("SetLatentNoiseMask", samples=[first, 0], mask=out(combined))
    second = g.add(
        "KSampler",
        model=model,
        seed=SEED + 1,
        steps=29,
        cfg=5.0,
        sampler_name="euler",
        scheduler="simple",
        positive=positive,
        negative=negative,
        latent_image=out(masked),
        denoise=0.8,
    )
    g.add("SaveLatent", samples=[first, 0], filename_prefix="native/inpaint_source")
    inpainted = run_latent(comfy_client, comfy_workdir, g, out(second), "inpainted")
    source = engine_latent(models, PROMPTS[0], "embedded")
    left = (inpainted - source)[..., :4].abs().max().item()
    right_change = (inpainted - source)[..., 4:].abs().max().item()
    assert left < 1e-4 and right_change > 1e-2, (left, right_change)


def test_the_packs_lora_node_checks_the_lora_and_applies_it_like_comfyui(comfy_client, comfy_workdir, embedded_weights):
    """Lumina-Video LoRA: the same patches as LoraLoaderModelOnly for a LoRA that fits; a LoRA made for another
    model is refused before sampling, naming the modules that don't fit."""
    folder, _ = embedded_weights
    loras = Path(comfy_workdir.models) / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(Path(folder) / "dit.safetensors"))
    random_lora(loras / "fits.safetensors", weights)
    wider = {k: torch.zeros(2 * v.shape[0], v.shape[1]) for k, v in weights.items() if k.endswith(".wq.weight")}
    random_lora(loras / "other_model.safetensors", wider)

    def sampled(loader: str, lora_name: str) -> torch.Tensor:
        g, _, positive, negative, latent = native_chain(PROMPTS[0])
        base = next(k for k, v in g.nodes.items() if v["class_type"] == "LuminaVideoModelLoader")
        if loader == "pack":
            lora = g.add("LuminaVideoLoRA", model=out(base), lora_name=lora_name, strength=1.0)
        else:
            lora = g.add("LoraLoaderModelOnly", model=out(base), lora_name=lora_name, strength_model=1.0)
        multi = g.add("LuminaVideoMultiScale", model=out(lora), preset="embedded-MultiScale", patch_schedule="preset")
        guided = g.add(
            "LuminaVideoGuidance", model=out(multi), preset="embedded-MultiScale", cfg_cutoff=-1.0, renorm=-1.0
        )
        done = custom_advanced(g, out(guided), positive, negative, latent, "embedded-MultiScale")
        return run_latent(comfy_client, comfy_workdir, g, out(done), f"{loader}_{lora_name}")

    assert torch.equal(sampled("pack", "fits.safetensors"), sampled("comfy", "fits.safetensors"))
    with pytest.raises(AssertionError, match="made for another model") as refused:
        sampled("pack", "other_model.safetensors")
    assert "attention.wq" in str(refused.value)
