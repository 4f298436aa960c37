"""Text encoders: anything that turns prompts into caption features [B, L, D] with a mask.

The released model reads Gemma-2-2B's ``hidden_states[-2]`` for ``SYSTEM_PROMPT + prompt``
(in ComfyUI, the native CLIPLoader type "lumina2" provides it; see ``nodes``). The embedded
default uses ``TinyTextEncoder``, a word-level transformer over the toy world's vocabulary
trained together with the tiny DiT. Both hand the sampler a ``TextCondition``.
"""

import json
import re
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import FeedForward, attention

SYSTEM_PROMPT = (
    "You are an assistant designed to generate high-quality videos with the highest degree of "
    "image-text alignment based on user prompts. <Prompt Start> "
)
SPECIAL_TOKENS = ("<pad>", "<bos>", "<unk>")
PAD, BOS, UNK = range(len(SPECIAL_TOKENS))


@dataclass
class TextCondition:
    """Caption features [B, L, D] with their mask [B, L] (1 = real token, right padding)."""

    features: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        if self.features.ndim != 3 or self.mask.shape != self.features.shape[:2]:
            raise ValueError(
                f"caption features {tuple(self.features.shape)} and mask {tuple(self.mask.shape)} don't match "
                "([B, L, D] and [B, L])"
            )
        if (self.mask.sum(dim=1) == 0).any():
            raise ValueError("a caption has no tokens (its mask is all zero); encode at least the system prompt")

    def repeat_to(self, batch: int) -> "TextCondition":
        if self.features.shape[0] == batch:
            return self
        if self.features.shape[0] != 1:
            raise ValueError(f"caption batch {self.features.shape[0]} doesn't match the latent batch {batch}")
        return TextCondition(self.features.expand(batch, -1, -1), self.mask.expand(batch, -1))


def concat_conditions(conds: list[TextCondition]) -> TextCondition:
    """Stack conditions along the batch, right-padding captions to the longest."""
    length = max(c.features.shape[1] for c in conds)
    feats = [F.pad(c.features, (0, 0, 0, length - c.features.shape[1])) for c in conds]
    masks = [F.pad(c.mask, (0, length - c.mask.shape[1])) for c in conds]
    return TextCondition(torch.cat(feats), torch.cat(masks))


def with_system_prompt(prompt: str) -> str:
    """The text the released model was trained on: the system prompt, then the user's prompt."""
    return SYSTEM_PROMPT + prompt


@dataclass(frozen=True)
class TinyTextEncoderConfig:
    vocabulary: tuple[str, ...]
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_tokens: int = 16

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TinyTextEncoderConfig":
        values = json.loads(text)
        values = {k: v for k, v in values.items() if k in {f.name for f in fields(cls)}}
        values["vocabulary"] = tuple(values["vocabulary"])
        return cls(**values)


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + SwiGLU over caption tokens, with a key-padding mask."""

    def __init__(self, dim: int, n_heads: int, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.n_heads = n_heads
        self.norm1 = operations.RMSNorm(dim, **factory)
        self.qkv = operations.Linear(dim, 3 * dim, bias=False, **factory)
        self.out = operations.Linear(dim, dim, bias=False, **factory)
        self.norm2 = operations.RMSNorm(dim, **factory)
        self.feed_forward = FeedForward(
            dim, 4 * dim, multiple_of=16, ffn_dim_multiplier=None, operations=operations, **factory
        )

    def forward(self, x, mask):
        """x [B, L, D], mask [B, L] bool -> [B, L, D]."""
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.n_heads, -1)).unbind(dim=2)
        x = x + self.out(attention(q, k, v, key_mask=mask).flatten(-2))
        return x + self.feed_forward(self.norm2(x))


class TinyTextEncoder(nn.Module):
    """Word-level caption encoder for the embedded default; a stand-in with Gemma's interface."""

    def __init__(self, config: TinyTextEncoderConfig, dtype=None, device=None, operations=nn):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.config = config
        self.index = {word: i + len(SPECIAL_TOKENS) for i, word in enumerate(config.vocabulary)}
        self.embedding = operations.Embedding(len(SPECIAL_TOKENS) + len(config.vocabulary), config.dim, **factory)
        self.position = nn.Parameter(torch.zeros(config.max_tokens, config.dim, **factory))
        self.layers = nn.ModuleList(
            EncoderLayer(config.dim, config.n_heads, operations=operations, **factory) for _ in range(config.n_layers)
        )
        self.norm = operations.RMSNorm(config.dim, **factory)

    @property
    def feature_dim(self) -> int:
        return self.config.dim

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower-cased words -> ids [B, L] (BOS first, right-padded) and mask [B, L]; unknown words map to <unk>."""
        rows = []
        for prompt in prompts:
            words = re.findall(r"[a-z]+", prompt.lower())
            ids = [BOS] + [self.index.get(w, UNK) for w in words]
            rows.append(ids[: self.config.max_tokens])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, (ids != PAD).long()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids [B, L], mask [B, L] -> features [B, L, D]."""
        x = self.embedding(ids.to(self.position.device)) + self.position[: ids.shape[1]]
        key_mask = mask.bool().to(x.device)
        for layer in self.layers:
            x = layer(x, key_mask)
        return self.norm(x)

    def encode(self, prompts: list[str]) -> TextCondition:
        ids, mask = self.tokenize(prompts)
        return TextCondition(self(ids, mask), mask.to(self.position.device))

    def unknown_words(self, prompt: str) -> list[str]:
        """Words of ``prompt`` this encoder has never seen (they all read as <unk>)."""
        return [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in self.index]

    def check_prompt(self, prompt: str, name: str = "prompt") -> None:
        """Refuse a prompt this encoder would read only in part: words it has never seen (they would all read as
        one unknown token) or more words than it reads (the rest would be dropped)."""
        unknown = self.unknown_words(prompt)
        words = len(re.findall(r"[a-z]+", prompt.lower()))
        problems = []
        if unknown:
            problems.append(f"it doesn't know {', '.join(repr(w) for w in dict.fromkeys(unknown))}")
        if words > self.config.max_tokens - 1:
            problems.append(f"it reads at most {self.config.max_tokens - 1} words and this has {words}")
        if problems:
            raise ValueError(
                f"the {name} {prompt!r} can't be drawn by the embedded default: {'; '.join(problems)}. It is a tiny "
                f"toy model that knows only these words: {' '.join(self.config.vocabulary)}. For other prompts use the "
                "released weights (Lumina-Video-f24R960 in models/lumina_video, with Gemma-2-2B as the text encoder)."
            )
