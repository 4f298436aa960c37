"""ComfyUI's modules in this process (no server), with this repository imported as the package ComfyUI would
import: for tests and measurements that call the pack's nodes directly and read what they return."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "lumina_video"


def load_comfyui_and_pack(comfyui_root: str):
    """ComfyUI's modules on the CPU, and this repository imported as ``lumina_video``; returns the package."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    sys.path.insert(0, comfyui_root)
    argv, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management  # noqa: F401  (parses the arguments above)

    sys.argv = argv
    spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = pack
    spec.loader.exec_module(pack)
    return pack


class EngineView:
    """A native model's Next-DiT seen through the engine's call (the reference's time and velocity), so that
    ``lumina_core.sampling.sample`` runs on the very module ComfyUI loaded, patched and cast: the tests' reference."""

    def __init__(self, dit):
        self.dit = dit

    def __call__(self, x, t, cap_feats, cap_mask, motion_score, patch, **options):
        return self.dit.reference_forward(x, t, cap_feats, cap_mask, motion_score, patch, **options)

    def __getattr__(self, name):
        if name == "dit":  # not set yet (copy, pickle): don't recurse
            raise AttributeError(name)
        return getattr(self.dit, name)


def text_condition(conditioning: list):
    """A one-prompt CONDITIONING as the engine's TextCondition (features [1, L, D] and mask on the CPU)."""
    import torch
    from lumina_video.lumina_core.models.text import TextCondition

    ((features, options),) = conditioning
    mask = options.get("attention_mask")
    if mask is None:
        mask = torch.ones(features.shape[:2], dtype=torch.long)
    return TextCondition(features.float().cpu(), mask.long().cpu())
