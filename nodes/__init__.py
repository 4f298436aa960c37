"""ComfyUI nodes of the Lumina-Video pack (V3 schema), thin adapters over ``lumina_core``.

One module per stage: ``loaders`` (video model, VAE, V2A), ``text``, ``motion``,
``sampling`` (empty latent, sampler), ``decode``, ``audio``, ``save``, ``conditional`` (VAE encode, image-to-video,
video-to-video, cinemagraph). ``sockets`` holds the pack's own types (VAE, V2A); the video model and prompts
travel as ComfyUI's MODEL and CONDITIONING.
``native`` and ``model_sampling`` hold the nodes for ComfyUI's own samplers and model tools. ``_comfy`` (services)
and ``_comfy_model`` (the native model's classes) are the only modules that import ComfyUI; the stage modules
import ``_comfy_model`` when a node runs, so their schemas load without ComfyUI's model code.

Importing this package needs nothing from ComfyUI: the node modules are imported when
ComfyUI calls ``comfy_entrypoint``. Node ids are stored in every saved workflow, so they
never change.
"""

NODE_IDS = (
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
    "LuminaVideoUpscaleVideo",
)
NATIVE_NODE_IDS = (
    "LuminaVideoMultiScale",
    "LuminaVideoGuidance",
    "LuminaVideoScheduler",
    "LuminaVideoLoRA",
    "LuminaVideoModelSampling",
    "LuminaVideoWindows",
    "LuminaVideoConditioningMechanism",
)


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: the extension listing this pack's nodes."""
    from .extension import LuminaVideoExtension

    return LuminaVideoExtension()
