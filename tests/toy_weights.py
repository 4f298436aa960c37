"""The embedded default's four files, for the node and ComfyUI tests.

The real ones (``lumina_core/embedded``) are used when all four are there; otherwise
random-weight files of the same format and sizes (the toy configs, saved the way the
training exports them) are written to a folder the tests choose, so every node runs
the same code path either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file


def real_embedded_dir() -> Path | None:
    """The pack's embedded folder when it holds all four files
    (the env var LUMINA_VIDEO_TEST_RANDOM_WEIGHTS=1 forces random ones)."""
    from lumina_core import embedded

    if os.environ.get("LUMINA_VIDEO_TEST_RANDOM_WEIGHTS") == "1":
        return None
    folder = embedded.PACKAGE_DIR
    return folder if all((folder / name).is_file() for name in embedded.FILES.values()) else None


def write_random_embedded(folder: Path, seed: int = 0) -> Path:
    """Random-weight dit/text_encoder/vae/v2a .safetensors in ``folder``, in the embedded default's format."""
    from lumina_core.io.checkpoints import CONFIG_METADATA_KEY, TEXT_CONFIG_METADATA_KEY
    from lumina_core.models.text import TinyTextEncoder
    from lumina_core.models.v2a import V2AConfig, V2AGenerator, save_v2a
    from lumina_core.models.vae import CogVideoXVAE, save_vae
    from lumina_core.toyworld.train import TOY_DIT_CONFIG, TOY_TEXT_CONFIG, TOY_VAE_CONFIG

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        dit = TOY_DIT_CONFIG.build()
        for param in dit.parameters():  # every weight non-zero, so gates and modulations do real work
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05 + (param.ndim == 1) * 0.5)
        save_file(
            {k: v.contiguous() for k, v in dit.state_dict().items()},
            str(folder / "dit.safetensors"),
            metadata={CONFIG_METADATA_KEY: TOY_DIT_CONFIG.to_json(), "format": "pt"},
        )
        torch.manual_seed(seed)
        text = TinyTextEncoder(TOY_TEXT_CONFIG)
        save_file(
            {k: v.contiguous() for k, v in text.state_dict().items()},
            str(folder / "text_encoder.safetensors"),
            metadata={TEXT_CONFIG_METADATA_KEY: TOY_TEXT_CONFIG.to_json(), "format": "pt"},
        )
        save_vae(CogVideoXVAE(TOY_VAE_CONFIG), folder / "vae.safetensors")
        small = V2AConfig(
            dim=64, n_layers=2, n_heads=2, multiple_of=32, visual_dim=32, sync_dim=16, frame_size=32, encoder_width=8
        )
        save_v2a(folder / "v2a.safetensors", V2AGenerator(small))
    return folder


def embedded_dir_for_tests(scratch: Path) -> tuple[Path, bool]:
    """(folder with the four files, whether they are the real trained ones)."""
    real = real_embedded_dir()
    if real is not None:
        return real, True
    return write_random_embedded(scratch), False
