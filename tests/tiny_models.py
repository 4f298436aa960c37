"""Small random-weight models shared by the engine tests."""

import torch

from lumina_core.models.nextdit import NextDiTConfig

TINY = NextDiTConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, cap_feat_dim=32, multiple_of=16)


def randomized(config: NextDiTConfig = TINY, seed: int = 0, dtype=torch.float32):
    """A model whose every weight is non-zero, so gates and modulations do real work."""
    model = config.build(dtype=dtype).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2 + (param.ndim == 1) * 0.5)
    return model
