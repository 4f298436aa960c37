"""Lumina-Video engine: Multi-scale Next-DiT, flow sampler, checkpoint loading. No ComfyUI imports.

Rooms by concern: ``models`` (Next-DiT, layers, VAE, V2A, audio, text encoders), ``sampling``
(the preset table, schedules, guidance, solvers), ``io`` (checkpoints, media files), ``request``
(what a video request may ask for), ``pipeline`` (the stages of a run), ``embedded`` (the embedded
default in one place), ``toyworld`` (the synthetic world, its metrics, training and evaluation),
``bench`` and ``__main__`` (benchmarks and the command line).
"""

from .models.nextdit import MultiScaleNextDiT, NextDiTConfig, PatchSize

__all__ = ["MultiScaleNextDiT", "NextDiTConfig", "PatchSize"]
