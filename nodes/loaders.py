"""Loader nodes: the video model, the VAE, and the video-to-audio model.

Each lists the embedded default (tiny models trained on the toy world, shipped in
``lumina_core/embedded``) and the files of its kind ComfyUI finds in its model folders
(read from their headers: models/lumina_video holds DiTs, V2A models and text encoders
side by side), and loads them through the engine's loaders, the same code for both.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from ..lumina_core import embedded
from ..lumina_core.io.checkpoints import (
    CheckpointError,
    checkpoint_kind,
    load_text_encoder,
    read_nextdit,
    trained_conditioning,
)
from ..lumina_core.models.v2a import load_v2a
from ..lumina_core.models.vae import VAEWeightsError, load_vae
from ..lumina_core.sampling import DEFAULT_PRESET, PRESETS
from ..lumina_core.sampling.presets import RELEASED_DEFAULT_PRESET
from . import _comfy
from ._comfy import io
from .sockets import LoadedV2A, LoadedVAE, LuminaV2A, LuminaVAE

log = logging.getLogger("lumina_video")

EMBEDDED_MODEL = "embedded (toy world, CPU)"
EMBEDDED_VAE = "embedded (toy world, CPU)"
EMBEDDED_V2A = "embedded (toy world, CPU)"
RELEASED_REPO = "Alpha-VLLM/Lumina-Video-f24R960"
RELEASED_FOLDER = "Lumina-Video-f24R960"
RELEASED_FILES = ("consolidated.00-of-01.pth", "model_args.pth")
# Always offered, so a workflow naming it loads everywhere; the file is downloaded on request.
RELEASED_MODEL = f"{RELEASED_FOLDER}/{RELEASED_FILES[0]}"
DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODEL_DTYPES = {**DTYPES, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
"""The video model's weights may also be stored in fp8 (cast per layer to a dtype the device computes in)."""
CPU = torch.device("cpu")


def _placement(name: str, embedded_name: str, embedded_kind: str, folder: str, what: str, load_device):
    """-> (path, load device, offload device, embedded?) for a loader's file choice;
    the embedded file stays on the CPU."""
    if name == embedded_name:
        return embedded.file(embedded_kind), CPU, CPU, True
    path = _comfy.model_path(folder, name)
    if path is None:
        raise FileNotFoundError(f"{what} file {name!r} is not in {_comfy.folder_locations(folder)}")
    return path, load_device(), _comfy.offload_device(), False


def _listed(path: str, kind: str, unreadable: bool) -> bool:
    """Whether a loader lists a file of its folders: the file holds ``kind``; or nothing can be read from it and
    ``unreadable`` (the Model and VAE Loaders: a damaged download in their own folders is listed, so choosing it
    tells the user what is wrong with it and to download it again, rather than the file silently missing)."""
    try:
        return checkpoint_kind(path) == kind
    except CheckpointError:
        return unreadable


@contextmanager
def _plain_errors():
    """Raise the engine's loader errors as ValueError, with the same message (it names the file and the fix).

    ComfyUI's error dialog shows an exception's type, and a type that is not a builtin by its module path
    (execution.py's full_type_name): "custom_nodes/lumina-video-comfyui.lumina_core.io.checkpoints.CheckpointError".
    """
    try:
        yield
    except (CheckpointError, VAEWeightsError) as error:
        raise ValueError(str(error)) from None


def _dtype(choice: str, device: torch.device) -> torch.dtype:
    if choice not in DTYPES:
        raise ValueError(f"dtype {choice!r} is not one of {list(DTYPES)}")
    return DTYPES[choice] or _comfy.auto_dtype(device)


def _dtype_input(what: str):
    return io.Combo.Input(
        "dtype",
        options=list(DTYPES),
        default="auto",
        tooltip=f"Precision of the {what} weights. auto: fp32 on the CPU, bf16 on GPUs that support it, else fp16. "
        "The released video model is stored in fp32 (7 GB); bf16 halves its memory.",
    )


# --------------------------------------------------------------------------- video model


def model_choices() -> list[str]:
    names = set(_comfy.model_files(_comfy.LUMINA_FOLDER)) | set(_comfy.model_files("diffusion_models"))
    files = {name for name in names - {RELEASED_MODEL} if _listed(find_model_file(name), "dit", unreadable=True)}
    return [EMBEDDED_MODEL, RELEASED_MODEL] + sorted(files, key=str.lower)


def find_model_file(name: str) -> str | None:
    for folder in (_comfy.LUMINA_FOLDER, "diffusion_models"):
        path = _comfy.model_path(folder, name)
        if path is not None:
            return path
    return None


def download_released() -> str:
    """Fetch the released weights into the first lumina_video folder (resumable); returns the weights' path."""
    locations = _comfy.folder_locations(_comfy.LUMINA_FOLDER)
    target = Path(locations[0]) / RELEASED_FOLDER
    by_hand = (
        f"download {' and '.join(RELEASED_FILES)} from https://huggingface.co/{RELEASED_REPO} "
        f"into {target} yourself, then choose {RELEASED_MODEL}"
    )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise RuntimeError(
            "huggingface_hub is not installed (pip install -r requirements.txt), "
            f"so {RELEASED_REPO} can't be downloaded; {by_hand}"
        ) from None
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s (7 GB; resumes where it stopped)", RELEASED_REPO, target)
    try:
        for filename in reversed(RELEASED_FILES):  # the small model_args.pth first: fails fast when offline
            hf_hub_download(RELEASED_REPO, filename, local_dir=str(target))
    except Exception as error:  # offline, proxy, HTTP errors: all end the same way for the user
        remove_what_holds_no_data(target, created)
        raise RuntimeError(
            f"could not reach the Hugging Face hub for {RELEASED_REPO} ({type(error).__name__}: {error}); {by_hand}"
        ) from None
    return str(target / RELEASED_FILES[0])


def remove_what_holds_no_data(folder: Path, created: bool) -> None:
    """After a failed download: delete the lock files, empty partial files and empty folders the hub client left
    (its .cache folder), and ``folder`` itself if this attempt created it and it is empty. A partial file that holds
    data stays, so that the next try resumes it."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
        if path.is_file() and (path.suffix == ".lock" or (path.suffix == ".incomplete" and path.stat().st_size == 0)):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def model_files_for(model_name: str, download: bool) -> tuple[Path, Path | None, bool]:
    """(the DiT's weights, the tiny text encoder saved beside them or None, embedded?) for a Model Loader choice;
    downloads the released weights when they are chosen, missing and ``download`` is on."""
    if model_name == EMBEDDED_MODEL:
        return embedded.file("dit"), embedded.file("text_encoder"), True
    path = find_model_file(model_name)
    if path is None and model_name == RELEASED_MODEL:
        if not download:
            target = Path(_comfy.folder_locations(_comfy.LUMINA_FOLDER)[0]) / RELEASED_FOLDER
            raise FileNotFoundError(
                f"{RELEASED_MODEL} is not in models/lumina_video yet. Turn on 'download' to fetch "
                f"{RELEASED_REPO} into {target}, or download {' and '.join(RELEASED_FILES)} from "
                f"https://huggingface.co/{RELEASED_REPO} there yourself."
            )
        path = download_released()
    if path is None:
        raise FileNotFoundError(
            f"model file {model_name!r} is not in {_comfy.folder_locations(_comfy.LUMINA_FOLDER)} "
            "or the diffusion_models folders"
        )
    dit_path = Path(path)
    sibling = dit_path.with_name("text_encoder.safetensors")
    return dit_path, sibling if sibling.is_file() and dit_path.suffix == ".safetensors" else None, False


class LuminaVideoModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoModelLoader",
            display_name="Lumina-Video Model Loader",
            category="Lumina-Video/loaders",
            description=(
                "Loads a Lumina-Video Multi-scale Next-DiT as ComfyUI's native MODEL: the Lumina-Video Sampler runs "
                "it with a preset, and ComfyUI's own nodes work on it too (KSampler and SamplerCustomAdvanced after "
                "Lumina-Video Multi-Scale and Guidance, LoRA loaders, model merging, EasyCache, context windows, "
                "fp8 weights, partial loading on small GPUs). 'embedded (toy world, CPU)' is the tiny model shipped "
                "with the pack (64x64 shapes, with its own text encoder; runs on a CPU in seconds). Released weights "
                f"go in models/lumina_video (or models/diffusion_models): the {RELEASED_REPO} folder, a .pth, or a "
                "converted .safetensors; they need Gemma-2-2B (Load CLIP, type lumina2) for the prompts."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=model_choices(),
                    default=EMBEDDED_MODEL,
                    tooltip=(
                        "Weights to load, from models/lumina_video and models/diffusion_models (.safetensors, .pth). "
                        f"{RELEASED_MODEL} is where the download puts the released weights. A tiny text encoder saved "
                        "beside a DiT as text_encoder.safetensors (a toy-world training export) is loaded with it."
                    ),
                ),
                io.Combo.Input(
                    "dtype",
                    options=list(MODEL_DTYPES),
                    default="auto",
                    tooltip="How the video model's weights are stored. auto: ComfyUI's choice for the device (fp32 on "
                    "the CPU; bf16 or fp16 on GPUs). The released model is stored in fp32 (7 GB); bf16 halves its "
                    "memory and fp8 halves it again (computation then runs in bf16/fp16/fp32, layer by layer).",
                ),
                io.Boolean.Input(
                    "download",
                    default=False,
                    tooltip=f"Download {RELEASED_REPO} (7 GB) from the Hugging Face hub into "
                    f"models/lumina_video/{RELEASED_FOLDER} when {RELEASED_MODEL} is chosen and missing. "
                    "Off: nothing is downloaded. Interrupted downloads resume.",
                ),
            ],
            outputs=[
                io.Model.Output(
                    display_name="model",
                    tooltip="The video model as a native MODEL (the embedded default carries its text encoder, for "
                    "Lumina-Video Text Encode).",
                )
            ],
        )

    @classmethod
    def execute(cls, model_name: str, dtype: str = "auto", download: bool = False) -> io.NodeOutput:
        if dtype not in MODEL_DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {list(MODEL_DTYPES)}")
        dit_path, text_path, is_embedded = model_files_for(model_name, download)
        load_device, offload_to = (CPU, CPU) if is_embedded else (_comfy.torch_device(), _comfy.offload_device())
        with _plain_errors():
            state_dict, config, notes = read_nextdit(dit_path)
            # the tiny text encoder is a few hundred kB: it stays on the CPU in fp32, whatever the DiT does
            text_encoder = None if text_path is None else load_text_encoder(text_path, dtype=torch.float32, device=CPU)
        for note in notes:
            log.info("%s: %s", model_name, note)
        from . import _comfy_model  # ComfyUI's model classes: imported when a model is loaded

        shift = PRESETS[DEFAULT_PRESET if is_embedded else RELEASED_DEFAULT_PRESET].time_shift
        source = _comfy_model.ModelSource(model_name, is_embedded, text_encoder, trained_conditioning(dit_path))
        model = _comfy_model.native_model(
            config, state_dict, shift, MODEL_DTYPES[dtype], load_device, offload_to, source
        )
        return io.NodeOutput(model)


# --------------------------------------------------------------------------- VAE


def vae_choices() -> list[str]:
    names = _comfy.model_files("vae", (".safetensors",))
    files = [name for name in names if _listed(_comfy.model_path("vae", name), "vae", unreadable=True)]
    return [EMBEDDED_VAE] + sorted(files, key=str.lower)


class LuminaVideoVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoVAELoader",
            display_name="Lumina-Video VAE Loader",
            category="Lumina-Video/loaders",
            description=(
                "Loads a CogVideoX video VAE (diffusers layout: THUDM/CogVideoX-2b "
                "vae/diffusion_pytorch_model.safetensors, renamed into models/vae) or the embedded toy-world VAE. "
                "ComfyUI's own Load VAE can't read this VAE."
            ),
            inputs=[
                io.Combo.Input(
                    "vae_name",
                    options=vae_choices(),
                    default=EMBEDDED_VAE,
                    tooltip="A CogVideoX VAE .safetensors from models/vae, or the embedded toy-world VAE "
                    "(pair it with the embedded model).",
                ),
                _dtype_input("VAE"),
            ],
            outputs=[LuminaVAE.Output(display_name="vae", tooltip="The video VAE.")],
        )

    @classmethod
    def execute(cls, vae_name: str, dtype: str = "auto") -> io.NodeOutput:
        path, load_device, offload_to, is_embedded = _placement(
            vae_name, EMBEDDED_VAE, "vae", "vae", "VAE", _comfy.vae_device
        )
        with _plain_errors():
            vae = load_vae(path, dtype=_dtype(dtype, load_device), device=offload_to)
        return io.NodeOutput(LoadedVAE(vae, _comfy.managed(vae, load_device, offload_to), vae_name, is_embedded))


# --------------------------------------------------------------------------- video-to-audio


def v2a_choices() -> list[str]:
    """V2A files only. One that can't be read is left to the Model Loader, which shares the folder: no V2A weights
    are published, so a damaged download there is a video model's."""
    names = _comfy.model_files(_comfy.LUMINA_FOLDER, (".safetensors",))
    files = [name for name in names if _listed(_comfy.model_path(_comfy.LUMINA_FOLDER, name), "v2a", unreadable=False)]
    return [EMBEDDED_V2A] + sorted(files, key=str.lower)


class LuminaVideoV2ALoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LuminaVideoV2ALoader",
            display_name="Lumina-Video V2A Loader",
            category="Lumina-Video/loaders",
            description=(
                "Loads a video-to-audio generator in the Lumina-V2A design. No V2A weights have been published by "
                "Alpha-VLLM; the embedded one was trained on the toy world's sounds (a click when a shape bounces, "
                "pitched by its shape)."
            ),
            inputs=[
                io.Combo.Input(
                    "v2a_name",
                    options=v2a_choices(),
                    default=EMBEDDED_V2A,
                    tooltip="A V2A checkpoint (.safetensors written by lumina_core.v2a.save_v2a) "
                    "from models/lumina_video, or the embedded one.",
                ),
                _dtype_input("video-to-audio"),
            ],
            outputs=[LuminaV2A.Output(display_name="v2a", tooltip="The video-to-audio model.")],
        )

    @classmethod
    def execute(cls, v2a_name: str, dtype: str = "auto") -> io.NodeOutput:
        path, load_device, offload_to, is_embedded = _placement(
            v2a_name, EMBEDDED_V2A, "v2a", _comfy.LUMINA_FOLDER, "V2A", _comfy.torch_device
        )
        with _plain_errors():
            v2a = load_v2a(path, dtype=_dtype(dtype, load_device), device=offload_to)
        return io.NodeOutput(LoadedV2A(v2a, _comfy.managed(v2a, load_device, offload_to), v2a_name, is_embedded))
