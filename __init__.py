"""ComfyUI entry point of the Lumina-Video pack.

Outside ComfyUI (tests, the command line) there is nothing to register, and importing
this file must still succeed; the engine lives in ``lumina_core`` and never needs ComfyUI.
"""

import importlib.util

WEB_DIRECTORY = "./web"

if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: F401
