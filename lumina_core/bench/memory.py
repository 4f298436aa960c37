"""Peak GPU memory of the released pipeline at 1248x704x96, on paper (``python -m lumina_core bench --part memory``).

Parameter counts come from the configs, built on the meta device. The DiT's activations are the tensors alive at
the two high points of one block under no-grad eager inference (the sampler batches the CFG passes, so the batch is
2 on the 1x2 steps that still have guidance); every other block's tensors are gone by then:

* RoPE of q: the embedded tokens (``DiTInputs.h``, kept for the whole forward), the block's input, its modulated
  input, q and k before RoPE, v, RoPE's float32 working set for q (the copy and its complex product: 2 x dim
  float32 values) and the rotated q;
* the SwiGLU product: the embedded tokens, the block's input (its caller still holds it), the residual after
  attention, the attention's output (still bound to ``h``), the feed-forward's input, silu(w1 x) and w3 x (2 x the
  hidden width; without autograd the SiLU and the product are taken in place).

Attention itself is smaller: SDPA's flash and memory-efficient kernels keep no L x L matrix. ``LiveTensorPeak``
checks this arithmetic against a real forward on the CPU (bf16, a small config): it follows every tensor the
forward's operations create until the last reference to its storage goes. The VAE's decode
is the figure measured by ``bench/vae.py`` (docs/benchmarks.md, VAE): a tiled decode's peak does not grow with the
video, an untiled one does. CUDA's context and cuBLAS workspace (about 0.5 GiB, outside the caching allocator)
are not in these figures.
"""

import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..models.gemma import GEMMA2_2B, Gemma2Model
from ..models.layers import swiglu_hidden_dim
from ..models.nextdit import RELEASED, NextDiTConfig, PatchSize
from ..models.vae import CogVideoXVAE, CogVideoXVAEConfig
from ..request import latent_shape
from ..sampling import make_noise

GIB = 2**30
VIDEO = (1248, 704, 96)  # width, height, frames: the released model's size
CFG_BATCH = 2  # the positive and negative passes, batched, on the 1x2 steps before t = 0.2 (f24F96R960 presets)
CAPTION_TOKENS = 256  # the reference's tokenizer limit
VAE_DECODE_GIB = dict(tiled=4.3, untiled=21.0)  # bench/vae.py's 1248x704x96 bf16 estimates, weights and output in
CHECK_CONFIG = NextDiTConfig(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, cap_feat_dim=32, multiple_of=16)
CHECK_LATENT = (2, 16, 8, 32, 32)  # 2048 tokens at 1x2, batch 2


@dataclass(frozen=True)
class Weights:
    """A model's parameters: all of them, and those in matrices (ndim >= 2; what fp8 weights store in 1 byte)."""

    params: int
    matrix_params: int

    @classmethod
    def of(cls, module: torch.nn.Module) -> "Weights":
        tensors = list(module.parameters())
        return cls(sum(p.numel() for p in tensors), sum(p.numel() for p in tensors if p.ndim >= 2))

    def bytes(self, fp8: bool = False) -> int:
        """bf16 weights; with fp8, matrices in 1 byte and the rest (norms, biases, gates) still in bf16."""
        return 2 * self.params - (self.matrix_params if fp8 else 0)


def released_weights() -> dict[str, Weights]:
    """The released DiT, Gemma-2-2B (all 26 layers are loaded, though Lumina-Video reads the 25th) and the
    CogVideoX-2b VAE (encoder and decoder), counted on the meta device."""
    return dict(
        dit=Weights.of(RELEASED.build(device="meta")),
        text_encoder=Weights.of(Gemma2Model(GEMMA2_2B, device="meta")),
        vae=Weights.of(CogVideoXVAE(CogVideoXVAEConfig.cogvideox_2b(), device="meta")),
    )


def dit_tokens(config: NextDiTConfig = RELEASED, video: tuple = VIDEO, patch: str = "1x2") -> int:
    _, _, frames, height, width = latent_shape(*video)
    patch = PatchSize.parse(patch)
    return (frames // patch.temporal) * (height // patch.spatial) * (width // patch.spatial)


def block_peak_bytes(config: NextDiTConfig = RELEASED, value_bytes: int = 2) -> dict[str, dict[str, int]]:
    """Bytes per token and sample alive at each high point of a block, by tensor (see the module's docstring)."""
    dim = config.dim
    kv = (config.n_kv_heads or config.n_heads) * (dim // config.n_heads)
    hidden = swiglu_hidden_dim(4 * dim, config.multiple_of, config.ffn_dim_multiplier)
    v = value_bytes
    return {
        "RoPE of q": dict(
            embedded_tokens=dim * v, block_input=dim * v, modulated_input=dim * v, q=dim * v, k=kv * v, v=kv * v,
            rope_float32=2 * dim * 4, rotated_q=dim * v,
        ),
        "SwiGLU product": dict(
            embedded_tokens=dim * v, block_input=dim * v, residual=dim * v, attention_output=dim * v,
            ffn_input=dim * v, silu_w1=hidden * v, w3=hidden * v,
        ),
    }  # fmt: skip


def dit_activation_bytes(config: NextDiTConfig = RELEASED, tokens: int = None, batch: int = CFG_BATCH) -> int:
    """The largest high point of a block, for ``tokens`` tokens (default: 1x2 at 1248x704x96) and ``batch``,
    plus the RoPE tables (cos and sin, float32) the forward holds."""
    tokens = dit_tokens(config) if tokens is None else tokens
    per_token = max(sum(point.values()) for point in block_peak_bytes(config).values())
    rope_tables = 2 * tokens * (config.dim // config.n_heads // 2) * 4
    return per_token * tokens * batch + rope_tables


class LiveTensorPeak(TorchDispatchMode):
    """The peak of the bytes held by tensors that operations create inside the mode, each storage counted from
    its first tensor until no tensor on it is referenced; storages in ``known`` (weights, inputs) are not counted."""

    def __init__(self, known: set[int]):
        super().__init__()
        self.known, self.live = known, {}  # data_ptr -> [bytes, tensors referencing it]
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self.track(tensor)
        return out

    def track(self, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.known:
            return
        if key not in self.live:
            self.live[key] = [storage.nbytes(), 0]
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
        self.live[key][1] += 1
        weakref.finalize(tensor, self.release, key)

    def release(self, key: int):
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self.live[key]
            self.current -= entry[0]


def tracked_activation_bytes(config: NextDiTConfig = CHECK_CONFIG, latent: tuple = CHECK_LATENT) -> int:
    """The live-tensor peak of one bf16 forward at 1x2 on the CPU, weights and inputs left out."""
    model = config.build(dtype=torch.bfloat16).eval().requires_grad_(False)
    batch = latent[0]
    factory = dict(dtype=torch.bfloat16)
    args = (
        make_noise(latent, 0).to(torch.bfloat16),
        torch.full((batch,), 0.5, **factory),
        torch.randn(batch, 8, config.cap_feat_dim, **factory),
        torch.ones(batch, 8, dtype=torch.long),
        torch.full((batch,), 6.0, **factory),
        PatchSize(1, 2),
    )
    tensors = [*model.parameters(), *(a for a in args if isinstance(a, torch.Tensor))]
    with torch.no_grad(), LiveTensorPeak({t.untyped_storage().data_ptr() for t in tensors}) as tracker:
        model(*args)
    return tracker.peak


def text_activation_bytes(tokens: int = CAPTION_TOKENS) -> int:
    """Gemma-2 on one caption: a few layer-wide tensors and the MLP's three hidden-width ones, bf16 (a bound)."""
    config = GEMMA2_2B
    return tokens * (4 * config.hidden_size + 3 * config.intermediate_size) * 2


def stage_peaks(weights: dict[str, Weights], fp8: bool, offload: bool, tiled: bool) -> dict[str, float]:
    """GiB at the peak of each stage (text, sampling, decode); without offload every model's weights stay."""
    resident = {name: w.bytes(fp8 and name != "vae") / GIB for name, w in weights.items()}
    own = dict(
        text=resident["text_encoder"] + text_activation_bytes() / GIB,
        sampling=resident["dit"] + dit_activation_bytes() / GIB,
        decode=VAE_DECODE_GIB["tiled" if tiled else "untiled"],
    )
    model_of = dict(text="text_encoder", sampling="dit", decode="vae")
    if offload:
        return own
    others = {stage: sum(b for name, b in resident.items() if name != model) for stage, model in model_of.items()}
    return {stage: gib + others[stage] for stage, gib in own.items()}


SCENARIOS = (
    ("bf16, all resident, VAE untiled", dict(fp8=False, offload=False, tiled=False)),
    ("bf16, all resident, VAE tiled", dict(fp8=False, offload=False, tiled=True)),
    ("bf16, offload, VAE tiled", dict(fp8=False, offload=True, tiled=True)),
    ("fp8 DiT and Gemma, offload, VAE tiled", dict(fp8=True, offload=True, tiled=True)),
)


def run_memory_estimate(goal_gib: float = 24.0) -> dict:
    weights = released_weights()
    tokens = dit_tokens()
    print(f"memory estimate, released models at {'x'.join(map(str, VIDEO))}, bf16 (paper arithmetic):")
    for name, w in weights.items():
        print(
            f"  {name}: {w.params / 1e9:.3f} B parameters ({w.matrix_params / 1e9:.3f} B in matrices): "
            f"{w.bytes() / GIB:.2f} GiB bf16, {w.bytes(fp8=True) / GIB:.2f} GiB with fp8 matrices"
        )
    for point, terms in block_peak_bytes().items():
        per_token = sum(terms.values())
        print(
            f"  DiT block, {point}: {per_token:,} bytes per token x {tokens:,} tokens (1x2) x batch {CFG_BATCH} = "
            f"{per_token * tokens * CFG_BATCH / GIB:.2f} GiB"
        )
    _, _, frames, height, width = CHECK_LATENT
    check_tokens = frames * (height // 2) * (width // 2)
    tracked, estimate = tracked_activation_bytes(), dit_activation_bytes(CHECK_CONFIG, check_tokens, CHECK_LATENT[0])
    print(
        f"  check, dim {CHECK_CONFIG.dim}, {check_tokens} tokens x batch {CHECK_LATENT[0]}, bf16 on the CPU: "
        f"a forward's live tensors peak at {tracked:,} bytes, the same arithmetic gives {estimate:,} "
        f"({tracked / estimate:.4f})"
    )
    rows = []
    for name, settings in SCENARIOS:
        peaks = stage_peaks(weights, **settings)
        rows.append(dict(scenario=name, **peaks, peak=max(peaks.values())))
    print(f"  {'scenario':<40} {'text':>6} {'sampling':>9} {'decode':>7} {'peak GiB':>9}")
    for row in rows:
        mark = "" if row["peak"] <= goal_gib else f"  (over {goal_gib:g})"
        print(
            f"  {row['scenario']:<40} {row['text']:>6.1f} {row['sampling']:>9.1f} {row['decode']:>7.1f} "
            f"{row['peak']:>9.1f}{mark}"
        )
    return dict(
        weights=weights,
        tokens=tokens,
        activation_bytes=dit_activation_bytes(),
        check=dict(tracked=tracked, estimate=estimate),
        scenarios=rows,
    )
