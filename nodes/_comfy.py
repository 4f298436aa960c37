"""Everything this pack takes from ComfyUI, in one place.

This is the only module of the pack that imports ``comfy``, ``comfy_api`` or
``folder_paths``. The node modules import the V3 API (``io``, ``ui``) and the
services below from here, so a change in ComfyUI's internals is fixed here once:

- the V3 node API (``comfy_api.latest``, which ComfyUI says changes without warning,
  so it is imported behind a gate with the frozen ``v0_0_2`` as fallback);
- progress bar and interruption (``comfy.utils.ProgressBar``, whose every update is
  also a cancellation point, and ``throw_exception_if_processing_interrupted``);
- model folders (``folder_paths``): the ``lumina_video`` folder is registered here;
- memory management (``comfy.model_patcher.ModelPatcher`` + ``load_models_gpu``);
- the output folder and numbered file names;
- ComfyUI's VIDEO type (``VideoFromComponents``);
- the server's routes (``server.PromptServer``), for the web extension's questions.
"""

from __future__ import annotations

import json
import logging
import os
from fractions import Fraction
from typing import Optional

import torch

try:  # the newest V3 API, gated: it is "latest" because it still changes
    from comfy_api.latest import ComfyExtension as ComfyExtension  # re-exported for extension.py
    from comfy_api.latest import InputImpl, Types, io, ui

    API_VERSION = "latest"
except ImportError:  # pragma: no cover - depends on the ComfyUI version
    from comfy_api.v0_0_2 import ComfyExtension as ComfyExtension  # type: ignore[no-redef]
    from comfy_api.v0_0_2 import InputImpl, Types, io, ui  # type: ignore[no-redef]

    API_VERSION = "v0_0_2"

for _name in ("ComfyNode", "Schema", "NodeOutput", "Custom", "Hidden"):
    if not hasattr(io, _name):  # pragma: no cover - depends on the ComfyUI version
        raise ImportError(
            f"this ComfyUI's comfy_api.{API_VERSION}.io has no {_name}: "
            "the Lumina-Video nodes need ComfyUI 0.3.60 or newer"
        )

import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402

log = logging.getLogger("lumina_video")

# --------------------------------------------------------------------------- model folders

LUMINA_FOLDER = "lumina_video"
MODEL_SUFFIXES = (".safetensors", ".pth")


def register_model_folders() -> None:
    """Add ``models/lumina_video`` (after any path extra_model_paths.yaml gave) and accept .safetensors/.pth there."""
    folder_paths.add_model_folder_path(
        LUMINA_FOLDER, os.path.join(folder_paths.models_dir, LUMINA_FOLDER), is_default=False
    )
    paths, extensions = folder_paths.folder_names_and_paths[LUMINA_FOLDER]
    extensions.update(MODEL_SUFFIXES)  # a new folder's set is empty (= every file); keep it a filter


def model_files(folder: str, suffixes: tuple[str, ...] = MODEL_SUFFIXES) -> list[str]:
    """Relative names of the model files ComfyUI finds in ``folder`` (empty when it isn't registered)."""
    try:
        names = folder_paths.get_filename_list(folder)
    except KeyError:
        return []
    return [n for n in names if n.lower().endswith(suffixes)]


def model_path(folder: str, name: str) -> Optional[str]:
    """Absolute path of ``name`` in ``folder``, or None."""
    try:
        return folder_paths.get_full_path(folder, name)
    except KeyError:
        return None


def folder_locations(folder: str) -> list[str]:
    try:
        return folder_paths.get_folder_paths(folder)
    except KeyError:
        return []


# --------------------------------------------------------------------------- progress and interruption


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel."""
    mm.throw_exception_if_processing_interrupted()


class Progress:
    """A node's progress bar; every update is also a cancellation point."""

    def __init__(self, total: int, node_id: Optional[str] = None):
        self.bar = comfy.utils.ProgressBar(total, node_id=node_id)

    def update(self, value: int, total: Optional[int] = None, preview=None, preview_size: Optional[int] = 512) -> None:
        """Report ``value`` of ``total``; ``preview`` is a PIL image shown on the node."""
        throw_if_interrupted()
        self.bar.update_absolute(value, total, None if preview is None else ("JPEG", preview, preview_size))


# --------------------------------------------------------------------------- devices and memory


def torch_device() -> torch.device:
    return mm.get_torch_device()


def offload_device() -> torch.device:
    return mm.unet_offload_device()


def intermediate_device() -> torch.device:
    return mm.intermediate_device()


def vae_device() -> torch.device:
    return mm.vae_device()


def auto_dtype(device: torch.device) -> torch.dtype:
    """fp32 on the CPU; bf16 where the accelerator supports it, else fp16."""
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if mm.should_use_bf16(device) else torch.float16


class Managed(torch.nn.Module):
    """The container a ModelPatcher holds: the engine's module one level down.

    ModelPatcher writes bookkeeping attributes (``device``, ``model_loaded_weight_memory``, ...)
    onto the module it manages; engine modules may define ``device`` as a read-only property,
    so they are not handed to it directly.
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module


def managed(module: torch.nn.Module, load_device: torch.device, offload_to: torch.device):
    """Wrap a plain torch module in a ModelPatcher so ComfyUI can account for it, load and unload it."""
    return comfy.model_patcher.ModelPatcher(Managed(module), load_device=load_device, offload_device=offload_to)


def load_for_inference(patcher) -> torch.nn.Module:
    """Move the whole model to its load device through ComfyUI (freeing others as needed); returns the module.

    ``force_full_load``: the pack's layers are plain ``torch.nn`` modules, not ``comfy.ops``,
    so ComfyUI's partial ("lowvram") loading would leave them split across devices.
    """
    mm.load_models_gpu([patcher], force_full_load=True)
    return patcher.model.module


def offload(patcher) -> None:
    """Send one model back to its offload device now (a no-op when it lives on the CPU anyway)."""
    if patcher.load_device == patcher.offload_device:
        return
    try:
        for index, loaded in enumerate(mm.current_loaded_models):
            if loaded.model is patcher:
                loaded.model_unload()
                mm.current_loaded_models.pop(index)
                break
    except Exception as error:  # internals vary between versions; ComfyUI will evict it later anyway
        log.debug("could not offload %s: %s", type(patcher.model).__name__, error)
    mm.soft_empty_cache()


# --------------------------------------------------------------------------- output files


def output_directory() -> str:
    return folder_paths.get_output_directory()


def filename_prefix_problem(filename_prefix: str) -> Optional[str]:
    """Why ``filename_prefix`` can't name a file in the output folder (empty, absolute, leaving it), or None.

    Pure (it writes nothing), so the Save node refuses a bad prefix when the prompt is queued, not after sampling.
    """
    output_dir = os.path.abspath(output_directory())
    prefix = filename_prefix.strip()
    if not prefix:
        return "filename_prefix is empty; give a name such as 'lumina_video/clip'"
    target = os.path.abspath(os.path.join(output_dir, os.path.normpath(prefix)))
    if os.path.isabs(prefix) or os.path.commonpath((output_dir, target)) != output_dir:
        return (
            f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder {output_dir}; "
            "use a relative name such as 'lumina_video/clip' (subfolders are fine, '..' and absolute paths are not)"
        )
    return None


def save_path(filename_prefix: str, width: int, height: int) -> tuple[str, str, int, str]:
    """(folder, file stem, first free counter, subfolder) for a numbered output file.

    Refuses a prefix that would leave the output folder, with a message saying so.
    """
    problem = filename_prefix_problem(filename_prefix)
    if problem:
        raise ValueError(problem)
    try:
        folder, stem, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix.strip(), output_directory(), width, height
        )
    except Exception as error:  # ComfyUI raises a bare Exception for paths outside the output folder
        raise ValueError(
            f"filename_prefix {filename_prefix!r} can't be used: {str(error).strip('* ').splitlines()[0]}"
        ) from None
    return folder, stem, counter, subfolder


def preview_video(filename: str, subfolder: str):
    """The UI entry that makes the frontend play a saved video on the node."""
    return ui.PreviewVideo([ui.SavedResult(filename, subfolder, io.FolderType.output)])


def metadata_disabled() -> bool:
    """True when ComfyUI runs with --disable-metadata: saved files then carry no prompt or workflow."""
    try:
        from comfy.cli_args import args
    except ImportError:  # pragma: no cover
        return False
    return bool(getattr(args, "disable_metadata", False))


def file_metadata(prompt: Optional[dict], extra_pnginfo: Optional[dict]) -> dict[str, str]:
    """The tags ComfyUI's own Save Video writes, so that dropping the file on the page restores the workflow.

    Every ``extra_pnginfo`` entry (the frontend sends the UI ``workflow`` there) and the API-format ``prompt``,
    each as JSON text (comfy_api's VideoFromComponents.save_to); none under --disable-metadata.
    """
    if metadata_disabled():
        return {}
    entries = dict(extra_pnginfo or {})
    if prompt is not None:
        entries["prompt"] = prompt
    return {key: json.dumps(value) for key, value in entries.items()}


# --------------------------------------------------------------------------- VIDEO type


def make_video(images: torch.Tensor, frame_rate: Fraction, audio: Optional[dict]):
    """ComfyUI's VIDEO (VideoFromComponents), or None when this ComfyUI has no such type."""
    try:
        components = Types.VideoComponents(images=images, frame_rate=Fraction(frame_rate), audio=audio)
        return InputImpl.VideoFromComponents(components)
    except (AttributeError, TypeError) as error:  # pragma: no cover - depends on the ComfyUI version
        log.warning("this ComfyUI can't build a VIDEO from frames (%s); the VIDEO output is empty", error)
        return None


HAS_VIDEO_TYPE = hasattr(io, "Video")


# --------------------------------------------------------------------------- server routes


def add_json_route(path: str, answer) -> bool:
    """Serve POST ``path``: the request's JSON body goes to ``answer(body) -> dict``, which comes back as JSON.

    Returns False where no ComfyUI server runs (scripts, the node tier's stand-ins): nothing is registered.
    """
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return False
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return False

    async def handle(request):
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the request body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the request body must be a JSON object"}, status=400)
        return web.json_response(answer(body))

    instance.routes.post(path)(handle)
    return True
