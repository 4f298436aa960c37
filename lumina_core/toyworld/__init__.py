"""The toy world the embedded models learn from, and the metrics that score generated clips.

``world`` draws the clips (frames, clicks, captions, splits, vocabulary); ``metrics``
measures colour, shape, direction, motion, flicker and audio-visual sync from decoded
frames and sound. The names below are loaded on first use rather than at import, so that
``python -m lumina_core.toyworld.world`` runs the module without it being imported twice.
"""

from importlib import import_module

_EXPORTS = {
    "world": (
        "Clip",
        "WorldConfig",
        "DEFAULT_CONFIG",
        "PALETTE",
        "COLOURS",
        "SHAPES",
        "DIRECTIONS",
        "SHAPE_PITCH_HZ",
        "VOCABULARY",
        "TRAIN_TEMPLATES",
        "HELDOUT_TEMPLATES",
        "HELDOUT_COMBINATIONS",
        "TRAIN_COMBINATIONS",
        "parse_caption",
        "make_clip",
        "sample_clip",
        "train_clips",
        "heldout_clips",
    ),
    "metrics": (
        "SyncScore",
        "ClipScore",
        "measure_video",
        "score_clip",
        "detect_onsets",
        "detect_bounces",
        "audio_visual_sync",
        "match_events",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
