"""LoRA files for the Multi-scale Next-DiT: low-rank deltas of its Linear weights, merged in at a strength.

The file layout is the generic one that ComfyUI's LoRA loaders (``LoraLoaderModelOnly``) read for a native model
whose state dict is the Next-DiT's under ``diffusion_model.`` (``nodes/_comfy_model.py``), with no key map of ours.
For each adapted Linear at module path ``M`` (``layers.0.attention.wq``, ``all_final_layer.2-1.linear``, ...)::

    diffusion_model.M.lora_A.weight   [rank, in_features]
    diffusion_model.M.lora_B.weight   [out_features, rank]
    diffusion_model.M.alpha           []  (optional; rank when absent)

and the merged weight is ``W + strength * (alpha / rank) * B @ A``, the product taken in float32 and cast to W's
dtype, as ComfyUI does. A strength of 0 adds nothing, so the model stays bit-identical to the base. The header's
metadata says what the file is: ``lumina_video.lora`` = "1", the base DiT's config (``NextDiTConfig.to_json()``),
the rank, the style's name and description.

Merging is linear in the strength: interpolating the weights of the base and of a model with a LoRA merged at 1
(ComfyUI's ModelMergeSimple at ratio r: r * merged + (1 - r) * base) gives the LoRA at strength r, the weight
interpolation Lumiere uses to blend a style into its base model.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from safetensors.torch import save_file

from .io.checkpoints import read_state_dict

PREFIX = "diffusion_model."
"""The prefix written; keys with no prefix or one of ``READ_PREFIXES`` are read as well."""
READ_PREFIXES = (PREFIX, "transformer.", "model.")
DOWN, UP, ALPHA = ".lora_A.weight", ".lora_B.weight", ".alpha"
FORMAT_KEY = "lumina_video.lora"
BASE_CONFIG_KEY = "lumina_video.base_config"
RANK_KEY = "lumina_video.rank"
NAME_KEY = "lumina_video.style"
DESCRIPTION_KEY = "lumina_video.description"
SHOWN = 4
"""How many mismatched modules an error names."""


@dataclass
class LoRA:
    """Low-rank deltas by module path: ``down`` (A) [rank, in], ``up`` (B) [out, rank], ``alpha`` per module."""

    down: dict[str, torch.Tensor]
    up: dict[str, torch.Tensor]
    alpha: dict[str, float]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return sorted(self.down)

    def delta(self, module: str, device=None) -> torch.Tensor:
        """``(alpha / rank) * B @ A`` of one module, [out, in] in float32."""
        down, up = self.down[module].to(device, torch.float32), self.up[module].to(device, torch.float32)
        return (self.alpha[module] / down.shape[0]) * (up @ down)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors under the file's key names."""
        tensors = {}
        for module in self.modules:
            key = PREFIX + module
            tensors[key + DOWN] = self.down[module].contiguous()
            tensors[key + UP] = self.up[module].contiguous()
            tensors[key + ALPHA] = torch.tensor(float(self.alpha[module]))
        return tensors

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(path), metadata={FORMAT_KEY: "1", "format": "pt", **self.metadata})
        return path


def lora_metadata(base_config_json: str, rank: int, name: str, description: str) -> dict[str, str]:
    """The header metadata of a LoRA made for the DiT with config ``base_config_json``."""
    return {BASE_CONFIG_KEY: base_config_json, RANK_KEY: str(rank), NAME_KEY: name, DESCRIPTION_KEY: description}


def module_path(key: str) -> tuple[str, str]:
    """A file key -> (module path, which of DOWN / UP / ALPHA), or (key, "") when it is none of them."""
    for prefix in READ_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    for suffix in (DOWN, UP, ALPHA):
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return key, ""


def from_state_dict(tensors: Mapping[str, torch.Tensor], metadata: Optional[dict] = None, source="the LoRA") -> LoRA:
    """A LoRA from tensors in the file layout; anything else in them is refused, naming the keys."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    strays = []
    for key, tensor in tensors.items():
        module, kind = module_path(key)
        if kind:
            parts.setdefault(module, {})[kind] = tensor
        else:
            strays.append(key)
    if strays or not parts:
        raise ValueError(
            f"{source} is not a LoRA in the layout {PREFIX}M{DOWN} / {PREFIX}M{UP} / {PREFIX}M{ALPHA}: "
            f"{len(strays)} other keys, e.g. {sorted(strays)[:SHOWN]}"
        )
    broken = [m for m, p in parts.items() if DOWN not in p or UP not in p]
    broken += [m for m, p in parts.items() if m not in broken and not _fits(p[DOWN], p[UP])]
    if broken:
        shapes = {m: [tuple(parts[m][k].shape) for k in (DOWN, UP) if k in parts[m]] for m in sorted(broken)[:SHOWN]}
        raise ValueError(
            f"{source}: {len(broken)} modules lack a lora_A [rank, in] and lora_B [out, rank] pair of one rank, "
            f"e.g. {shapes} (lora_A, lora_B shapes); the file is damaged or not a LoRA"
        )
    down = {m: p[DOWN] for m, p in parts.items()}
    alpha = {m: float(p[ALPHA]) if ALPHA in p else float(down[m].shape[0]) for m, p in parts.items()}
    return LoRA(down, {m: p[UP] for m, p in parts.items()}, alpha, dict(metadata or {}))


def _fits(down: torch.Tensor, up: torch.Tensor) -> bool:
    return down.ndim == 2 and up.ndim == 2 and down.shape[0] == up.shape[1]


def load_lora(path, weights: Optional[Mapping[str, torch.Tensor]] = None) -> LoRA:
    """Read a LoRA file; with ``weights`` (the DiT's state dict), check that it fits them (``check_fits``)."""
    path = Path(path)
    tensors, metadata = read_state_dict(path)
    lora = from_state_dict(tensors, metadata, source=str(path))
    if weights is not None:
        check_fits(lora, weights, source=str(path))
    return lora


def check_fits(lora: LoRA, weights: Mapping[str, torch.Tensor], source="the LoRA"):
    """Raise ValueError naming the modules of ``lora`` that are no Linear of ``weights`` (a state dict), or whose
    ``B @ A`` is another shape than the weight's: the LoRA was made for another model."""
    problems = []
    for module in lora.modules:
        weight = weights.get(module + ".weight")
        lora_shape = (lora.up[module].shape[0], lora.down[module].shape[1])
        if weight is None or weight.ndim != 2:
            problems.append(f"{PREFIX}{module}: the model has no such Linear")
        elif tuple(weight.shape) != lora_shape:
            problems.append(
                f"{PREFIX}{module}: lora_B @ lora_A is {list(lora_shape)}, the model's weight {list(weight.shape)}"
            )
    if problems:
        made_for = lora.metadata.get(BASE_CONFIG_KEY)
        raise ValueError(
            f"{source} was made for another model: {len(problems)} of its {len(lora.modules)} modules don't fit this "
            f"Next-DiT ({'; '.join(problems[:SHOWN])})"
            + (f"; it was made for the Next-DiT {made_for}" if made_for else "")
            + ". Use it with the model it was trained for."
        )


def _scaled(lora: LoRA, module: str, strength: float, weight: torch.Tensor) -> torch.Tensor:
    return (strength * lora.delta(module, weight.device)).to(weight.dtype)


def merge(weights: Mapping[str, torch.Tensor], loras: Sequence[tuple[LoRA, float]]) -> dict[str, torch.Tensor]:
    """A copy of the state dict ``weights`` with each (LoRA, strength) merged in, in order; tensors no LoRA changes
    are shared, and a strength of 0 changes none. Every LoRA is checked before any is merged."""
    for lora, _ in loras:
        check_fits(lora, weights)
    merged = dict(weights)
    for lora, strength in loras:
        if strength == 0:
            continue
        for module in lora.modules:
            key = module + ".weight"
            merged[key] = merged[key] + _scaled(lora, module, strength, merged[key])
    return merged


def apply(model: torch.nn.Module, loras: Sequence[tuple[LoRA, float]]) -> torch.nn.Module:
    """Merge each (LoRA, strength) into ``model``'s weights in place (the same sums as ``merge``); returns it."""
    for lora, _ in loras:
        check_fits(lora, model.state_dict())
    with torch.no_grad():
        for lora, strength in loras:
            if strength == 0:
                continue
            for module in lora.modules:
                weight = model.get_parameter(module + ".weight")
                weight.add_(_scaled(lora, module, strength, weight))
    return model


def parse_spec(text: str) -> tuple[Path, float]:
    """ "PATH:STRENGTH" or "PATH" (strength 1.0) -> (path, strength). The text splits at its last colon only when
    what follows is a number, so a Windows drive ("C:\\loras\\style.safetensors:0.5") stays in the path."""
    path, colon, tail = text.rpartition(":")
    if colon and path:
        try:
            strength = float(tail)
        except ValueError:
            return Path(text), 1.0
        if not math.isfinite(strength):
            raise ValueError(f"{text!r}: the strength {tail!r} is not a finite number; write PATH:0.8")
        return Path(path), strength
    return Path(text), 1.0
