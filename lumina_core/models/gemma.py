"""Gemma-2, the text encoder of the released Lumina-Video, without ComfyUI or transformers.

Lumina-Video encodes ``SYSTEM_PROMPT + prompt`` with Gemma-2-2B and reads ``hidden_states[-2]`` of transformers'
``Gemma2Model`` (generate.py). That tuple holds the scaled embeddings, then the output of every layer, its last entry
taken after the final norm; so ``[-2]`` is the output of layer 25 of 26 (index 24) *without* the final norm, and
``Gemma2Model.hidden_state`` stops there: the 26th layer never runs.

Numerics follow transformers' eager Gemma2 (what the reference ran): RMSNorm ``x * (1 + weight)`` in float32,
embeddings times sqrt(hidden_size) in the weights' dtype, rotate-half RoPE, scores scaled by
``query_pre_attn_scalar ** -0.5`` and soft-capped ``tanh(s / cap) * cap``, the sliding window on even layers (0, 2,
...), softmax in float32. ComfyUI's own Gemma-2 (``comfy/text_encoders/llama.py``) leaves out the soft-cap and the
window; the window (4096) never matters for 256 tokens, the soft-cap (50) rarely does.

Weights: ComfyUI's repackaged ``gemma_2_2b_fp16.safetensors`` and Hugging Face's google/gemma-2-2b share key names
(``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight``, ..., ``model.norm.weight``); ComfyUI's
file adds the tokenizer as a uint8 tensor ``spiece_model`` (a sentencepiece model), HF's folder has ``config.json``,
``tokenizer.json`` and ``tokenizer.model`` beside sharded weights. Modules here carry those names without "model.".
"""

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.checkpoints import (
    CheckpointError,
    key_differences,
    open_safetensors,
    read_state_dict,
    safetensors_header,
    strip_wrapper_prefixes,
)
from .text import TextCondition, with_system_prompt

HF_PREFIX = "model."
SPIECE_KEY = "spiece_model"  # ComfyUI's files carry the sentencepiece tokenizer as this uint8 tensor
TIED_KEYS = ("lm_head.weight",)  # the output head is the embedding (tied); we never compute logits
HIDDEN_STATE_INDEX = -2  # Lumina-Video's features: transformers' hidden_states[-2]
MAX_CAPTION_TOKENS = 256  # the reference tokenizes with max_length=256, truncation=True (system prompt included)
PAD_TO_MULTIPLE_OF = 8  # ... and padding=True, pad_to_multiple_of=8 (padded positions are masked)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
WHERE_TO_GET_TOKENIZER = (
    "put tokenizer.json (or tokenizer.model) of google/gemma-2-2b (https://huggingface.co/google/gemma-2-2b, gated: "
    "accept its licence first) next to the weights. ComfyUI ships no Gemma tokenizer file (comfy/text_encoders has "
    "none); its repackaged gemma_2_2b_fp16.safetensors (Comfy-Org/Lumina_Image_2.0_Repackaged) carries the tokenizer "
    f"inside, as the {SPIECE_KEY} tensor, and needs nothing beside it"
)


@dataclass(frozen=True)
class Gemma2Config:
    """Gemma-2's architecture; the defaults are google/gemma-2-2b's (transformers' Gemma2Config defaults)."""

    vocab_size: int = 256000
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    query_pre_attn_scalar: int = 256
    attn_logit_softcapping: Optional[float] = 50.0
    sliding_window: Optional[int] = 4096
    hidden_activation: str = "gelu_pytorch_tanh"

    def __post_init__(self):
        if self.hidden_activation != "gelu_pytorch_tanh":
            raise ValueError(f"Gemma-2 uses gelu_pytorch_tanh, not {self.hidden_activation!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{self.num_attention_heads} heads can't share {self.num_key_value_heads} KV heads")

    @classmethod
    def gemma2_2b(cls) -> "Gemma2Config":
        return cls()

    @classmethod
    def from_hf(cls, values: dict) -> "Gemma2Config":
        """From a transformers config.json (``rope_theta`` at the top, or in ``rope_parameters`` since v5)."""
        values = {k: v for k, v in values.items() if v is not None or k in ("attn_logit_softcapping", "sliding_window")}
        if "rope_theta" not in values and isinstance(values.get("rope_parameters"), dict):
            values["rope_theta"] = values["rope_parameters"].get("rope_theta", cls.rope_theta)
        config = cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
        layer_types = values.get("layer_types")
        ours = [
            "sliding_attention" if config.is_sliding(i) else "full_attention" for i in range(config.num_hidden_layers)
        ]
        if layer_types is not None and config.sliding_window is not None and list(layer_types) != ours:
            raise ValueError(f"layer_types {layer_types} are not Gemma-2's alternation (sliding on even layers)")
        return config

    def is_sliding(self, layer: int) -> bool:
        """transformers' layer_types: "sliding_attention" on even layers, "full_attention" on odd ones."""
        return self.sliding_window is not None and layer % 2 == 0


GEMMA2_2B = Gemma2Config.gemma2_2b()


class Gemma2RMSNorm(nn.Module):
    """x / rms(x) * (1 + weight) in float32, cast back: Gemma stores the scale minus one."""

    def __init__(self, dim: int, eps: float, dtype=None, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim, dtype=dtype, device=device))

    def forward(self, x):
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


def rotary_cos_sin(length: int, head_dim: int, theta: float, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [L, head_dim] for positions 0..L-1, in the rotate-half layout: frequency i drives dims i and
    i + head_dim/2 (the DiT pairs neighbouring dims instead). Computed in float32, cast to ``dtype`` as transformers."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=device) / head_dim)
    freqs = torch.arange(length, dtype=torch.float, device=device)[:, None] * inv_freq  # [L, D/2]
    angles = torch.cat((freqs, freqs), dim=-1)  # [L, D]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, D] rotated by position: x * cos + rotate_half(x) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def attention_masks(attention_mask: torch.Tensor, sliding_window: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """attention_mask [B, L] (1 = token, right padding) -> (full, sliding) [B, 1, L, L] bool, True = may attend.

    Causal, no padded key; the sliding one also drops keys ``sliding_window`` or more positions back. Every query
    keeps its own position, so a padded query's row is never empty: no NaN comes out of it to spread through later
    layers (0 * NaN), and real queries never see a padded key.
    """
    length = attention_mask.shape[1]
    pos = torch.arange(length, device=attention_mask.device)
    distance = pos[:, None] - pos[None, :]  # [Lq, Lk], query - key
    keys = attention_mask.bool()[:, None, None, :] | (distance == 0)  # [B, 1, Lq, Lk]
    full = keys & (distance >= 0)
    sliding = full if sliding_window is None else full & (distance < sliding_window)
    return full, sliding


class Gemma2Attention(nn.Module):
    """Causal self-attention with grouped KV heads and, when the config sets it, soft-capped logits."""

    def __init__(self, config: Gemma2Config, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(bias=False, dtype=dtype, device=device)
        hidden, heads, kv_heads, head_dim = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        )
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.scale = config.query_pre_attn_scalar**-0.5
        self.softcap = config.attn_logit_softcapping
        self.q_proj = operations.Linear(hidden, heads * head_dim, **factory)
        self.k_proj = operations.Linear(hidden, kv_heads * head_dim, **factory)
        self.v_proj = operations.Linear(hidden, kv_heads * head_dim, **factory)
        self.o_proj = operations.Linear(heads * head_dim, hidden, **factory)

    def forward(self, x, cos, sin, mask):
        """x [B, L, hidden], cos/sin [L, D], mask [B, 1, L, L] bool -> [B, L, hidden]."""
        q = self.q_proj(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # [B, H, L, D]
        k = self.k_proj(x).unflatten(-1, (self.kv_heads, self.head_dim)).transpose(1, 2)  # [B, Hkv, L, D]
        v = self.v_proj(x).unflatten(-1, (self.kv_heads, self.head_dim)).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        n_rep = self.heads // self.kv_heads  # query head h reads KV head h // n_rep
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # [B, H, L, D]
        if self.softcap is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        else:  # SDPA can't soft-cap: explicit scores
            scores = (q @ k.transpose(-1, -2)) * self.scale  # [B, H, L, L]
            scores = torch.tanh(scores / self.softcap) * self.softcap
            scores = scores.masked_fill(~mask, float("-inf"))
            out = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype) @ v  # [B, H, L, D]
        return self.o_proj(out.transpose(1, 2).flatten(2))


class Gemma2MLP(nn.Module):
    """GeGLU: down(gelu_tanh(gate(x)) * up(x))."""

    def __init__(self, config: Gemma2Config, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(bias=False, dtype=dtype, device=device)
        self.gate_proj = operations.Linear(config.hidden_size, config.intermediate_size, **factory)
        self.up_proj = operations.Linear(config.hidden_size, config.intermediate_size, **factory)
        self.down_proj = operations.Linear(config.intermediate_size, config.hidden_size, **factory)

    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Gemma2DecoderLayer(nn.Module):
    """Attention and MLP, each between two norms (Gemma-2's "sandwich"): x + post(f(pre(x)))."""

    def __init__(self, config: Gemma2Config, index: int, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.sliding = config.is_sliding(index)
        self.self_attn = Gemma2Attention(config, operations=operations, **factory)
        self.mlp = Gemma2MLP(config, operations=operations, **factory)
        norm = lambda: Gemma2RMSNorm(config.hidden_size, config.rms_norm_eps, **factory)
        self.input_layernorm, self.post_attention_layernorm = norm(), norm()
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = norm(), norm()

    def forward(self, x, cos, sin, mask):
        """x [B, L, hidden] -> [B, L, hidden]."""
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cos, sin, mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma2Model(nn.Module):
    """The Gemma-2 decoder stack without the output head (transformers' ``Gemma2Model``)."""

    def __init__(self, config: Gemma2Config, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.config = config
        self.embed_tokens = operations.Embedding(config.vocab_size, config.hidden_size, **factory)
        self.layers = nn.ModuleList(
            Gemma2DecoderLayer(config, i, operations=operations, **factory) for i in range(config.num_hidden_layers)
        )
        self.norm = Gemma2RMSNorm(config.hidden_size, config.rms_norm_eps, **factory)

    def hidden_state(
        self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, index: int = HIDDEN_STATE_INDEX
    ) -> torch.Tensor:
        """transformers' ``hidden_states[index]`` (output_hidden_states=True), computing only what it needs.

        input_ids [B, L], attention_mask [B, L] (1 = token, right padding; None = all tokens) -> [B, L, hidden].
        Entry k of the N + 1 is the output of the first k layers; the last one (k = N) is also normed.
        """
        n = len(self.layers)
        if not -(n + 1) <= index <= n:
            raise IndexError(f"hidden state {index} of a {n}-layer model (it has {n + 1}: embeddings, then each layer)")
        run = index % (n + 1)  # layers to run
        weight = self.embed_tokens.weight
        input_ids = input_ids.to(weight.device)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(weight.device)
        x = self.embed_tokens(input_ids)  # [B, L, hidden]
        x = x * torch.tensor(self.config.hidden_size**0.5, dtype=x.dtype)  # in the weights' dtype, as transformers
        cos, sin = rotary_cos_sin(input_ids.shape[1], self.config.head_dim, self.config.rope_theta, x.dtype, x.device)
        full, sliding = attention_masks(mask, self.config.sliding_window)
        for layer in self.layers[:run]:
            x = layer(x, cos, sin, sliding if layer.sliding else full)
        return self.norm(x) if run == n else x

    def forward(self, input_ids, attention_mask=None):
        """The last hidden state, normed (transformers' ``last_hidden_state``)."""
        return self.hidden_state(input_ids, attention_mask, index=-1)


# -- loading ----------------------------------------------------------------------------------------------------------


def weight_files(path: Path) -> list[Path]:
    """The .safetensors file(s) of a checkpoint: a file, or a folder (HF's shards by their index, or model.safetensors,
    or every .safetensors in it)."""
    if not path.is_dir():
        return [path]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = (
        [path / "model.safetensors"] if (path / "model.safetensors").is_file() else sorted(path.glob("*.safetensors"))
    )
    if not files:
        raise CheckpointError(f"{path}: no .safetensors weights in this folder")
    return files


def hf_config_beside(path: Path) -> Optional[Gemma2Config]:
    """The Gemma2Config of a transformers config.json in (or beside) ``path``, if it is a Gemma-2's."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except ValueError:  # another tool's file, not ours to judge
        return None
    if not isinstance(values, dict) or values.get("model_type") != "gemma2":
        return None
    try:
        return Gemma2Config.from_hf(values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config}: {error}") from None


def gemma2_keys(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors under this module's names (no "model.", no tied head, no embedded tokenizer) and the prefix the
    file used (for messages)."""
    state_dict = strip_wrapper_prefixes(state_dict)
    prefix = HF_PREFIX if any(k.startswith(HF_PREFIX) for k in state_dict) else ""
    out = {}
    for key, tensor in state_dict.items():
        if key not in TIED_KEYS and key != SPIECE_KEY:
            out[key[len(prefix) :] if key.startswith(prefix) else key] = tensor
    return out, prefix


def infer_gemma2_config(shapes: dict[str, tuple], base: Gemma2Config = GEMMA2_2B) -> Gemma2Config:
    """The architecture from tensor shapes (keys without "model."); what shapes don't tell (head_dim, eps, rope,
    softcap, window, query scale) comes from ``base``. Raises CheckpointError for keys that are no Gemma-2's."""
    required = ("embed_tokens.weight", "layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight")
    required += ("layers.0.mlp.gate_proj.weight", "layers.0.post_feedforward_layernorm.weight")
    if any(k not in shapes for k in required):
        raise CheckpointError(not_gemma2(shapes, required))
    vocab, hidden = shapes["embed_tokens.weight"]
    q_rows, kv_rows = shapes["layers.0.self_attn.q_proj.weight"][0], shapes["layers.0.self_attn.k_proj.weight"][0]
    if q_rows % base.head_dim or kv_rows % base.head_dim:
        raise CheckpointError(
            f"the attention widths ({q_rows} query, {kv_rows} key) are not multiples of head_dim {base.head_dim}: "
            "put the model's config.json beside the weights"
        )
    return replace(
        base,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
        num_hidden_layers=1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("layers.")),
        num_attention_heads=q_rows // base.head_dim,
        num_key_value_heads=kv_rows // base.head_dim,
    )


def not_gemma2(keys, required) -> str:
    """Why a state dict is no Gemma-2 decoder: what it lacks, what it holds, and what it looks like."""
    keys = sorted(keys)
    lacks = [HF_PREFIX + k for k in required if k not in keys]
    message = (
        f"these weights are not a Gemma-2 decoder: {len(lacks)} of its keys missing, e.g. {lacks[:3]}; "
        f"the file has {len(keys)} keys, e.g. {keys[:5]}"
    )
    if "layers.0.self_attn.q_norm.weight" in keys:
        message += " (they look like Gemma 3, which has q_norm/k_norm)"
    elif "layers.0.mlp.gate_proj.weight" in keys:
        message += " (a decoder without Gemma-2's post_feedforward_layernorm: Llama, Qwen or Gemma 1?)"
    return message


def describe_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Size], prefix: str) -> str:
    """Missing, unexpected and other-shaped keys, counted, a few named as the file names them."""
    lines = key_differences(state, expected, name=lambda k: prefix + k)
    if any("scale_weight" in k or k == "scaled_fp8" for k in state):
        lines.append("scaled-fp8 files are not read here: use gemma_2_2b_fp16.safetensors")
    return "; ".join(lines)


def load_gemma2(
    path, dtype: Optional[torch.dtype] = None, device="cpu", config: Optional[Gemma2Config] = None
) -> Gemma2Model:
    """Gemma-2 from ComfyUI's single file or a Hugging Face checkpoint (file or folder), in eval mode.

    Built on the meta device; the file's tensors become its parameters (assign=True), cast one at a time, so the
    weights are in memory once. The architecture: ``config`` when given (the file must match it, e.g. ``GEMMA2_2B``
    for Lumina-Video's 2304-wide captions), else a Gemma-2 config.json beside the weights, else the shapes with
    Gemma-2-2B's values for the rest. ``dtype`` None keeps the file's (the reference ran Gemma in bf16). A file of
    another model or size raises CheckpointError naming the keys.
    """
    path = Path(path)
    files = weight_files(path)
    state = {}
    for file in files:
        state.update(read_state_dict(file)[0])
    state, prefix = gemma2_keys(state)
    try:
        config = config or hf_config_beside(path) or infer_gemma2_config({k: tuple(v.shape) for k, v in state.items()})
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    with torch.device("meta"):
        model = Gemma2Model(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if set(expected) != set(state) or any(state[k].shape != s for k, s in expected.items()):
        raise CheckpointError(
            f"{path} does not match Gemma-2 with {config}: " + describe_mismatch(state, expected, prefix)
        )
    for key in state:  # replace one tensor at a time: the file's copy goes as its cast arrives
        state[key] = state[key].to(device=device, dtype=dtype or state[key].dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


# -- tokenizer --------------------------------------------------------------------------------------------------------


class GemmaTokenizer:
    """Gemma's tokenizer as transformers' GemmaTokenizer calls it: <bos> first (add_bos_token True), no <eos>
    (add_eos_token False); right padding with <pad>, truncation to ``max_tokens`` counting <bos>.

    ``encode`` turns text into ids without special tokens; the backends (``tokenizers`` for tokenizer.json,
    ``sentencepiece`` for tokenizer.model or ComfyUI's embedded ``spiece_model``) are imported only when used.
    """

    def __init__(self, encode: Callable[[str], list[int]], bos_id: int, pad_id: int, source: str):
        self.encode, self.bos_id, self.pad_id, self.source = encode, bos_id, pad_id, source

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> "GemmaTokenizer":
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise CheckpointError(f"reading {path} needs the tokenizers package (pip install tokenizers)") from None
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        bos = tokenizer.token_to_id("<bos>")
        if bos is None:
            raise CheckpointError(f"{path} has no <bos> token: it is not Gemma's tokenizer")
        pad = tokenizer.token_to_id("<pad>")
        encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids
        return cls(encode, bos, 0 if pad is None else pad, str(path))

    @classmethod
    def from_sentencepiece(cls, model: "Path | bytes", source: str) -> "GemmaTokenizer":
        """From a tokenizer.model file or the serialized model (ComfyUI's ``spiece_model`` tensor's bytes)."""
        try:
            import sentencepiece
        except ImportError:
            raise CheckpointError(
                f"reading the Gemma tokenizer in {source} needs the sentencepiece package (pip install sentencepiece), "
                "or put Gemma's tokenizer.json next to the weights"
            ) from None
        if isinstance(model, bytes):
            processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        else:
            processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
        if processor.bos_id() < 0:
            raise CheckpointError(f"the sentencepiece model in {source} has no <bos>: it is not Gemma's tokenizer")
        return cls(processor.encode, processor.bos_id(), max(processor.pad_id(), 0), source)

    def __call__(
        self, texts: list[str], max_tokens: int = MAX_CAPTION_TOKENS, pad_to_multiple_of: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> ids [B, L] and mask [B, L] (1 = token), L the longest row rounded up to ``pad_to_multiple_of``."""
        rows = [([self.bos_id] + list(self.encode(text)))[:max_tokens] for text in texts]
        length = -(-max(len(row) for row in rows) // pad_to_multiple_of) * pad_to_multiple_of
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        return ids, mask


def load_gemma_tokenizer(weights) -> GemmaTokenizer:
    """Gemma's tokenizer for the weights at ``weights``: tokenizer.json or tokenizer.model beside them (in the folder,
    for a folder), else the ``spiece_model`` tensor inside ComfyUI's single file."""
    weights = Path(weights)
    folder = weights if weights.is_dir() else weights.parent
    if (folder / "tokenizer.json").is_file():
        return GemmaTokenizer.from_tokenizer_json(folder / "tokenizer.json")
    if (folder / "tokenizer.model").is_file():
        return GemmaTokenizer.from_sentencepiece(folder / "tokenizer.model", str(folder / "tokenizer.model"))
    if weights.is_file() and weights.suffix == ".safetensors" and SPIECE_KEY in safetensors_header(weights):
        with open_safetensors(weights) as handle:  # that one tensor, not the weights
            proto = handle.get_tensor(SPIECE_KEY).numpy().tobytes()
        return GemmaTokenizer.from_sentencepiece(proto, f"{weights} ({SPIECE_KEY})")
    raise CheckpointError(
        f"no Gemma tokenizer for {weights}: neither {' nor '.join(TOKENIZER_FILES)} in {folder}, nor a {SPIECE_KEY} "
        f"tensor in the weights. To fix it, {WHERE_TO_GET_TOKENIZER}."
    )


# -- text encoder -----------------------------------------------------------------------------------------------------


class Gemma2TextEncoder(nn.Module):
    """Lumina-Video's caption features: Gemma-2's ``hidden_states[-2]`` for ``SYSTEM_PROMPT + prompt``, with the
    attention mask; the tiny encoder's interface (``encode``, ``feature_dim``)."""

    def __init__(
        self,
        model: Gemma2Model,
        tokenizer: GemmaTokenizer,
        max_tokens: int = MAX_CAPTION_TOKENS,
        pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
    ):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.pad_to_multiple_of = max_tokens, pad_to_multiple_of

    @classmethod
    def from_file(cls, path, dtype=None, device="cpu", config: Optional[Gemma2Config] = None, **kwargs):
        """Weights and tokenizer (see ``load_gemma2`` and ``load_gemma_tokenizer``); the tokenizer is found first,
        so a missing one is reported before gigabytes are read."""
        tokenizer = load_gemma_tokenizer(path)
        return cls(load_gemma2(path, dtype, device, config), tokenizer, **kwargs)

    @property
    def feature_dim(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids [B, L], mask [B, L] of the system prompt + each prompt, right-padded, at most max_tokens."""
        return self.tokenizer([with_system_prompt(p) for p in prompts], self.max_tokens, self.pad_to_multiple_of)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextCondition:
        """Features [B, L, hidden] (zero where padded) and mask [B, L]."""
        ids, mask = self.tokenize(prompts)
        mask = mask.to(self.model.embed_tokens.weight.device)
        features = self.model.hidden_state(ids, mask, HIDDEN_STATE_INDEX)
        return TextCondition(features * mask[..., None].to(features.dtype), mask)
