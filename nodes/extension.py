"""The pack's V3 extension: registers the model folders and lists the nodes."""

from __future__ import annotations

import importlib.util

from ._comfy import ComfyExtension, add_json_route, register_model_folders

register_model_folders()  # before any schema lists the folders' files

from .audio import LuminaVideoAudioGenerate  # noqa: E402
from .conditional import CONDITIONAL_NODES  # noqa: E402
from .decode import LuminaVideoVAEDecode  # noqa: E402
from .loaders import LuminaVideoModelLoader, LuminaVideoV2ALoader, LuminaVideoVAELoader  # noqa: E402
from .motion import LuminaVideoMotionScore  # noqa: E402
from .sampling import PLAN_ROUTE, LuminaVideoEmptyLatent, LuminaVideoSampler, plan_request  # noqa: E402
from .save import LuminaVideoSaveVideo  # noqa: E402
from .text import LuminaVideoTextEncode  # noqa: E402

NODES = [
    LuminaVideoModelLoader,
    LuminaVideoVAELoader,
    LuminaVideoTextEncode,
    LuminaVideoMotionScore,
    LuminaVideoEmptyLatent,
    LuminaVideoSampler,
    LuminaVideoVAEDecode,
    LuminaVideoV2ALoader,
    LuminaVideoAudioGenerate,
    LuminaVideoSaveVideo,
    *CONDITIONAL_NODES,
]


if importlib.util.find_spec("comfy.model_base") is not None:
    # These modules import ComfyUI's model classes when loaded, which the node tier's stand-ins for ComfyUI don't
    # provide; ComfyUI always has them (the integration tier runs these nodes there).
    from .model_sampling import MODEL_SAMPLING_NODES
    from .native import NATIVE_NODES

    NODES += NATIVE_NODES + MODEL_SAMPLING_NODES

add_json_route(PLAN_ROUTE, plan_request)


class LuminaVideoExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)
