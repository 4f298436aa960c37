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
