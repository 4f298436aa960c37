"""One guided model evaluation: classifier-free guidance with renorm, the motion condition, motion guidance,
skip-layer guidance."""

from typing import Optional

import torch

from ..models.nextdit import PatchSize
from ..models.text import TextCondition, concat_conditions
from .presets import SamplingConfig
from .schedules import value_at

NO_MOTION = -1.0
"""Any negative motion score leaves the motion condition out (the model's motion-dropout case)."""


def guided_velocity(
    model,
    x,
    t: float,
    positive: TextCondition,
    negative: Optional[TextCondition],
    config: SamplingConfig,
    cell_times: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, PatchSize]:
    """One guided model evaluation at time t -> (velocity [B, C, F, H, W] float32, the patch size used).

    Up to three passes share one batch: the positive one; the negative one while the CFG scale in
    force is non-zero; the positive caption without its motion score while motion guidance is. While
    skip-layer guidance is non-zero a fourth pass runs the positive one again without the blocks
    ``config.skip_layers`` (its own call: the blocks differ), and the guided velocity moves away from it.
    ``cell_times`` [B or 1, F, H, W] gives every latent cell its own time (per-token timesteps); the
    schedules still follow t.
    """
    batch = x.shape[0]
    patch = PatchSize.parse(value_at(config.patch, t))
    cfg = float(value_at(config.cfg, t))
    motion_value = float(value_at(config.motion, t))
    motion_cfg = float(value_at(config.motion_cfg, t)) if motion_value >= 0 else 0.0
    skip_scale = float(value_at(config.skip_guidance, t))
    guided = cfg != 0 and negative is not None
    model_dtype = next(model.parameters()).dtype
    motion = [motion_value] * batch
    conds = [positive]
    if guided:
        motion += [float(value_at(config.neg_motion, t))] * batch
        conds.append(negative)
    if motion_cfg != 0:
        motion += [NO_MOTION] * batch
        conds.append(positive)
    cond = concat_conditions(conds)
    n = len(conds) * batch
    if cell_times is None:
        times = torch.full((n,), t, device=x.device, dtype=model_dtype)
    else:
        times = cell_times.to(x.device, model_dtype).expand(batch, *cell_times.shape[1:]).repeat(len(conds), 1, 1, 1)
    features, mask = cond.features.to(device=x.device, dtype=model_dtype), cond.mask.to(x.device)
    motion = torch.tensor(motion, device=x.device, dtype=model_dtype)
    out = model(x.to(model_dtype).repeat(len(conds), 1, 1, 1, 1), times, features, mask, motion, patch).float()
    passes = iter(out.split(batch))
    v_cond = v = next(passes)
    if guided:
        v = v_cond + cfg * (v_cond - next(passes))
        if config.renorm > 0:
            v = renorm_per_sample(v, v_cond, config.renorm)
    if motion_cfg != 0:
        v = v + motion_cfg * (v_cond - next(passes))
    if skip_scale != 0:
        first = slice(0, batch)  # the positive pass's rows
        weakened = model(
            x.to(model_dtype),
            times[first],
            features[first],
            mask[first],
            motion[first],
            patch,
            skip_layers=config.skip_layers,
        ).float()
        v = v + skip_scale * (v_cond - weakened)
    return v, patch


def renorm_per_sample(guided: torch.Tensor, cond: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Scale each sample of ``guided`` down so that its norm is at most max_ratio * |cond| of that sample."""
    dims = tuple(range(1, guided.ndim))
    limit = torch.linalg.vector_norm(cond, dim=dims, keepdim=True) * max_ratio
    norm = torch.linalg.vector_norm(guided, dim=dims, keepdim=True)
    return torch.where(norm > limit, guided * (limit / norm), guided)
