"""The released Lumina-Video weights end to end, without ComfyUI: find the models in a folder, load them.

A run needs the Multi-scale Next-DiT (the released folder with ``consolidated.00-of-01.pth`` and
``model_args.pth``, or a converted ``.safetensors``), Gemma-2-2B (ComfyUI's ``gemma_2_2b_fp16.safetensors``,
its tokenizer inside, or a Hugging Face folder) and the CogVideoX VAE (diffusers layout: a ``.safetensors`` or
the ``vae`` folder). A video-to-audio model is optional: no V2A weights have been published. Each file is
recognised from its header, never by its name, so the folder may hold them under any names.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .io.checkpoints import CheckpointError, checkpoint_kind, load_nextdit
from .models.gemma import Gemma2TextEncoder
from .models.nextdit import RELEASED
from .models.v2a import load_v2a
from .models.vae import DIFFUSERS_CLASS_NAME, load_vae
from .pipeline import LuminaVideoModels

RELEASED_WEIGHTS = ("consolidated.00-of-01.safetensors", "consolidated.00-of-01.pth")
KINDS = ("dit", "text_encoder", "vae", "v2a")
WHAT = dict(
    dit="the Next-DiT (the Lumina-Video-f24R960 folder: consolidated.00-of-01.pth + model_args.pth, or a .safetensors "
    "made by `python -m lumina_core convert`)",
    text_encoder="Gemma-2-2B (gemma_2_2b_fp16.safetensors from Comfy-Org/Lumina_Image_2.0_Repackaged, or the "
    "google/gemma-2-2b folder with its tokenizer)",
    vae="the CogVideoX VAE (THUDM/CogVideoX-2b vae/diffusion_pytorch_model.safetensors, or that vae folder)",
    v2a="a video-to-audio model (.safetensors written by lumina_core.models.v2a.save_v2a)",
)


@dataclass(frozen=True)
class ReleasedFiles:
    dit: Path
    text_encoder: Path
    vae: Path
    v2a: Optional[Path] = None


def kind_of(path: Path) -> Optional[str]:
    """What a file or folder holds: one of KINDS, or None."""
    if path.is_dir():
        if any((path / name).is_file() for name in RELEASED_WEIGHTS):
            return "dit"
        config = path / "config.json"
        if config.is_file():
            values = json.loads(config.read_text())
            if values.get("model_type") == "gemma2":
                return "text_encoder"
            if values.get("_class_name") == DIFFUSERS_CLASS_NAME:
                return "vae"
        return None
    if path.suffix not in (".safetensors", ".pth"):
        return None
    kind = checkpoint_kind(path)
    # our "text_encoder" is Gemma-2; a tiny toy-world encoder is none of the released models
    return {"gemma2": "text_encoder", "text_encoder": None}.get(kind, kind)


def find_released(folder: Path) -> ReleasedFiles:
    """The models in ``folder`` (and its direct subfolders), each recognised from its contents."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--models {folder}: no such folder")
    found: dict[str, list[Path]] = {kind: [] for kind in KINDS}
    candidates = [folder, *sorted(folder.iterdir())]
    candidates += [p for sub in sorted(folder.iterdir()) if sub.is_dir() for p in sorted(sub.iterdir())]
    for path in candidates:
        kind = kind_of(path)
        if kind is not None and not any(path.is_relative_to(p) for p in found[kind] if p.is_dir()):
            found[kind].append(path)
    for kind, paths in found.items():
        if len(paths) > 1:
            raise ValueError(f"--models {folder} holds more than one {kind}: {', '.join(map(str, paths))}")
    missing = [kind for kind in ("dit", "text_encoder", "vae") if not found[kind]]
    if missing:
        raise FileNotFoundError(
            f"--models {folder} lacks " + "; and ".join(WHAT[kind] for kind in missing) + ". Put the files there, "
            "or name each with --dit, --text-encoder and --vae"
        )
    return ReleasedFiles(*(found[kind][0] if found[kind] else None for kind in KINDS))


def load_released(files: ReleasedFiles, dtype=torch.bfloat16, device="cpu") -> tuple[LuminaVideoModels, list[str]]:
    """The released models, built on the meta device and given the files' tensors (one copy of each in memory), and
    notes on how the DiT's config was found (e.g. inferred from shapes when model_args.pth is missing)."""
    dit, config, notes = load_nextdit(files.dit, dtype=dtype, device=device)
    text = Gemma2TextEncoder.from_file(files.text_encoder, dtype=dtype, device=device)
    if text.feature_dim != config.cap_feat_dim:
        raise CheckpointError(
            f"{files.text_encoder}: its features are {text.feature_dim} wide, but the DiT {files.dit} reads "
            f"{config.cap_feat_dim}-wide captions (the released model: Gemma-2-2B, {RELEASED.cap_feat_dim})"
        )
    vae = load_vae(files.vae, dtype=dtype, device=device).eval()
    v2a = None if files.v2a is None else load_v2a(files.v2a, dtype=dtype, device=device)
    return LuminaVideoModels(dit=dit, text_encoder=text, vae=vae, v2a=v2a), [f"{files.dit}: {n}" for n in notes]
