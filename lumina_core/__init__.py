"""Lumina-Video engine: Multi-scale Next-DiT, flow sampler, checkpoint loading. No ComfyUI imports."""

from .nextdit import MultiScaleNextDiT

__all__ = ["MultiScaleNextDiT"]
