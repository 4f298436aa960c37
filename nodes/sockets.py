"""The pack's own socket types and what travels through them.

ComfyUI's core types are used where the payload really is that format: IMAGE
(frames [N, H, W, 3] in 0..1), AUDIO ({"waveform": [B, C, T], "sample_rate"}),
LATENT ({"samples": [B, 16, F/4, H/8, W/8]}) and VIDEO. Everything else has its own
type, so a Lumina-Video model can't be wired into a core sampler or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..lumina_core import embedded
from ._comfy import io

LuminaModel = io.Custom("LUMINAVIDEO_MODEL")
LuminaVAE = io.Custom("LUMINAVIDEO_VAE")
LuminaV2A = io.Custom("LUMINAVIDEO_V2A")
LuminaConditioning = io.Custom("LUMINAVIDEO_CONDITIONING")
LuminaMotion = io.Custom("LUMINAVIDEO_MOTION")


@dataclass
class LoadedModel:
    """LUMINAVIDEO_MODEL: the Multi-scale Next-DiT, its ModelPatcher, and (embedded default) its tiny text encoder."""

    dit: Any  # lumina_core.models.nextdit.MultiScaleNextDiT
    patcher: Any  # comfy.model_patcher.ModelPatcher around ``dit``
    name: str
    embedded: bool
    text_encoder: Optional[Any] = None  # lumina_core.models.text.TinyTextEncoder, only for the embedded default
    notes: tuple[str, ...] = ()

    @property
    def caption_dim(self) -> int:
        return self.dit.cap_feat_dim

    @property
    def size_limits(self) -> Optional[dict]:
        """The sizes the model was trained for, when it is the embedded default (it can't draw beyond them)."""
        return embedded.SIZES if self.embedded else None


@dataclass
class LoadedVAE:
    """LUMINAVIDEO_VAE: a CogVideoX-layout VAE and its ModelPatcher."""

    vae: Any  # lumina_core.models.vae.CogVideoXVAE
    patcher: Any
    name: str
    embedded: bool


@dataclass
class LoadedV2A:
    """LUMINAVIDEO_V2A: a video-to-audio generator and its ModelPatcher."""

    v2a: Any  # lumina_core.models.v2a.V2AGenerator
    patcher: Any
    name: str
    embedded: bool


@dataclass
class Conditioning:
    """LUMINAVIDEO_CONDITIONING: caption features of the positive and negative prompt."""

    positive: Any  # lumina_core.models.text.TextCondition [1, L, D]
    negative: Any  # lumina_core.models.text.TextCondition [1, L, D]
    positive_text: str
    negative_text: str
    encoder: str  # "embedded" or "clip"


@dataclass(frozen=True)
class Motion:
    """LUMINAVIDEO_MOTION: motion conditions of the positive and the negative pass, in the engine's time-aware form."""

    motion: Any  # float or (v0, (t1, v1), ...)
    neg_motion: Any
    motion_cfg: Any = (
        None  # motion guidance, time-aware like the others; 0 = the reference's sampling, None = the preset's
    )
