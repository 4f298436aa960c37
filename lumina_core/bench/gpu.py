"""The released architecture on one GPU, with random weights (``python -m lumina_core bench --gpu``).

Times a few DiT calls per patch size and guidance batch at each video size and multiplies them by the presets'
call counts, rather than sampling 70 steps: an estimate of each preset's sampling time, multi-scale against
single-scale. Reports achieved TFLOP/s (FLOPs counted by torch's FlopCounterMode on a meta-device copy) against
the card's dense bf16 peak, and peak memory (``torch.cuda.max_memory_allocated``) per stage with the text encoder
and the VAE offloaded and with every model resident. ``--tiny`` runs the same code on tiny configs on the CPU
(the tests do), where there is no allocator to ask and memory reads "n/a".
"""

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models.gemma import GEMMA2_2B, Gemma2Config, Gemma2Model
from ..models.nextdit import RELEASED, NextDiTConfig, PatchSize
from ..models.vae import CogVideoXVAE, CogVideoXVAEConfig
from ..pipeline import decode_latent
from ..request import frame_multiple, latent_shape
from ..sampling import PRESETS, SamplingConfig, make_noise, time_grid, value_at
from .memory import GIB

PRESET_PAIR = ("f24F96R960", "f24F96R960-MultiScale")  # single-scale, multi-scale
# Dense bf16 TFLOP/s from NVIDIA's datasheets, by a part of torch.cuda.get_device_name(); the first match counts.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


@dataclass(frozen=True)
class GPUBenchSetup:
    """The models' configs, the videos to time and the one to measure memory at (width, height, frames as asked),
    the caption length and the dtype."""

    dit: NextDiTConfig
    text_encoder: Gemma2Config
    vae: CogVideoXVAEConfig
    videos: tuple[tuple[int, int, int], ...]
    memory_video: tuple[int, int, int]
    caption_tokens: int
    dtype: torch.dtype


# The released size, and LTX-Video's 768x512 at 121 frames (a frame count our VAE can't take: the nearest valid one).
RELEASED_SETUP = GPUBenchSetup(
    RELEASED,
    GEMMA2_2B,
    CogVideoXVAEConfig.cogvideox_2b(),
    videos=((1248, 704, 96), (768, 512, 121)),
    memory_video=(1248, 704, 96),
    caption_tokens=256,
    dtype=torch.bfloat16,
)
TINY_SETUP = GPUBenchSetup(
    NextDiTConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, cap_feat_dim=32, multiple_of=16),
    Gemma2Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
    ),
    CogVideoXVAEConfig.tiny(),
    videos=((128, 128, 32), (96, 64, 25)),
    memory_video=(64, 64, 8),
    caption_tokens=8,
    dtype=torch.float32,
)  # fmt: skip


def nearest_valid_frames(frames: int, patch_sizes) -> int:
    """The frame count nearest to ``frames`` that the VAE and the coarsest temporal patch take (ties: fewer)."""
    step = frame_multiple(patch_sizes)
    return max(step, step * round(frames / step - 1e-9))


def bf16_peak_flops(device: torch.device) -> tuple[str, Optional[float]]:
    """(the device's name, its dense bf16 peak in FLOP/s, or None when it is not in the table)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((tflops * 1e12 for part, tflops in BF16_PEAK_TFLOPS if part in name), None)


def model_calls(config: SamplingConfig) -> Counter:
    """(patch size, batch of guidance passes) -> number of model calls, as ``guided_velocity`` batches its
    passes: the positive one, the negative one while CFG is on, a third while motion guidance is; skip-layer
    guidance's pass is a call of its own (counted whole, though it runs fewer blocks)."""
    calls = Counter()
    for t in time_grid(config.steps, config.time_shift)[:-1].tolist():
        motion_guided = float(value_at(config.motion, t)) >= 0 and float(value_at(config.motion_cfg, t)) != 0
        passes = 1 + (float(value_at(config.cfg, t)) != 0) + motion_guided
        patch = PatchSize.parse(value_at(config.patch, t))
        calls[patch, passes] += 1
        if float(value_at(config.skip_guidance, t)) != 0:
            calls[patch, 1] += 1
    return calls


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_seconds(fns: dict, device: torch.device, repeats: int) -> dict:
    """Each function's fastest of ``repeats`` calls after one warm-up, taking turns, the device synchronised around
    each call (the fastest and in turns, since on a shared machine other work only adds time, to all alike)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def stage_peak(fn: Callable, device: torch.device) -> tuple[float, Optional[int]]:
    """(seconds, peak bytes allocated during ``fn``; None off CUDA)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


class Bench:
    """The three models of a setup on one device, random weights, and the inputs of each stage."""

    def __init__(self, setup: GPUBenchSetup, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        factory = dict(dtype=setup.dtype, device=device)
        self.setup, self.device = setup, device
        self.dit = setup.dit.build(**factory).eval().requires_grad_(False)
        self.meta_dit = setup.dit.build(dtype=setup.dtype, device="meta")  # for counting FLOPs
        self.text_encoder = Gemma2Model(setup.text_encoder, **factory).eval().requires_grad_(False)
        self.vae = CogVideoXVAE(setup.vae, **factory).eval().requires_grad_(False)
        self.ids = torch.randint(setup.text_encoder.vocab_size, (1, setup.caption_tokens), device=device)
        self.caption = torch.randn(1, setup.caption_tokens, setup.dit.cap_feat_dim, **factory)

    def dit_args(self, shape: tuple, patch: PatchSize, batch: int, device) -> tuple:
        factory = dict(dtype=self.setup.dtype, device=device)
        features = self.caption.to(device).expand(batch, -1, -1)
        return (
            make_noise((batch, *shape[1:]), 0, device).to(self.setup.dtype),
            torch.full((batch,), 0.5, **factory),
            features,
            torch.ones(features.shape[:2], dtype=torch.long, device=device),
            torch.full((batch,), 6.0, **factory),
            patch,
        )

    def flops(self, shape: tuple, patch: PatchSize, batch: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            self.meta_dit(*self.dit_args(shape, patch, batch, "meta"))
        return counter.get_total_flops()

    def encode_text(self):
        self.text_encoder.hidden_state(self.ids, torch.ones_like(self.ids))

    def sample_call(self, args: tuple):
        self.dit(*args)

    def decode(self, shape: tuple):
        decode_latent(self.vae, torch.randn(shape, dtype=self.setup.dtype, device=self.device))

    def place(self, on_device: str):
        """Only the model ``on_device`` (dit, text_encoder, vae) on the device, or every one ("all")."""
        for name in ("dit", "text_encoder", "vae"):
            getattr(self, name).to(self.device if on_device in (name, "all") else "cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def time_video(bench: Bench, video: tuple, peak: Optional[float], repeats: int) -> dict:
    """Seconds and FLOP/s per (patch, batch) call the presets make at this video size, and each preset's estimate."""
    width, height, asked = video
    frames = nearest_valid_frames(asked, bench.dit.patch_sizes)
    shape = latent_shape(width, height, frames)
    calls = {name: model_calls(PRESETS[name]) for name in PRESET_PAIR}
    keys = sorted(set().union(*calls.values()))
    args = {key: bench.dit_args(shape, *key, bench.device) for key in keys}
    seconds = device_seconds({key: lambda key=key: bench.sample_call(args[key]) for key in keys}, bench.device, repeats)
    rows = {}
    for key in keys:
        flops = bench.flops(shape, *key)
        rows[key] = dict(
            patch=str(key[0]), batch=key[1], seconds=seconds[key], tflop=flops / 1e12,
            tflops=flops / seconds[key] / 1e12, share_of_peak=None if peak is None else flops / seconds[key] / peak,
        )  # fmt: skip
    estimates = {name: sum(n * rows[key]["seconds"] for key, n in counts.items()) for name, counts in calls.items()}
    tflop = {name: sum(n * rows[key]["tflop"] for key, n in counts.items()) for name, counts in calls.items()}
    single, multi = PRESET_PAIR
    return dict(
        video=(width, height, frames),
        asked_frames=asked,
        latent=shape,
        rows=list(rows.values()),
        calls={name: {f"{p} x{b}": n for (p, b), n in counts.items()} for name, counts in calls.items()},
        estimates=estimates,
        multi_over_single=estimates[multi] / estimates[single],
        tflop=tflop,
        multi_over_single_flops=tflop[multi] / tflop[single],
    )


def measure_memory(bench: Bench, video: tuple) -> dict:
    """Each stage with only its model on the device (offload), the sampling stage also with every model resident;
    the resident text and decode stages are their offloaded peaks plus the other models' weights (allocated bytes
    add up: those weights would only sit there)."""
    width, height, asked = video
    shape = latent_shape(width, height, nearest_valid_frames(asked, bench.dit.patch_sizes))
    calls = model_calls(PRESETS[PRESET_PAIR[1]])
    batch = max(b for p, b in calls if p == PatchSize(1, 2))
    weights = {name: weight_bytes(getattr(bench, name)) for name in ("dit", "text_encoder", "vae")}
    stages = dict(
        text=("text_encoder", bench.encode_text),
        sampling=("dit", lambda: bench.sample_call(bench.dit_args(shape, PatchSize(1, 2), batch, bench.device))),
        decode=("vae", lambda: bench.decode(shape)),
    )
    bench.place("all")
    _, resident_sampling = stage_peak(stages["sampling"][1], bench.device)
    seconds, offloaded = {}, {}
    for stage, (model, fn) in stages.items():
        bench.place(model)
        seconds[stage], offloaded[stage] = stage_peak(fn, bench.device)
    others = {stage: sum(b for name, b in weights.items() if name != model) for stage, (model, _) in stages.items()}
    resident = {s: None if peak is None else peak + others[s] for s, peak in offloaded.items()}
    return dict(
        video=(width, height, shape[2] * 4),
        sampling_batch=batch,
        weights=weights,
        seconds=seconds,
        offloaded=offloaded,
        resident=resident,
        resident_sampling_measured=resident_sampling,
    )


def print_video(video: dict):
    width, height, frames = video["video"]
    note = f" ({video['asked_frames']} asked: not a valid frame count)" if frames != video["asked_frames"] else ""
    print(f"{width}x{height}x{frames}{note}, latent {tuple(video['latent'])}:")
    print(f"  {'patch':>5} {'batch':>5} {'s per call':>11} {'TFLOP':>9} {'TFLOP/s':>8} {'of peak':>8}")
    for row in video["rows"]:
        share = "n/a" if row["share_of_peak"] is None else f"{row['share_of_peak']:.0%}"
        print(
            f"  {row['patch']:>5} {row['batch']:>5} {row['seconds']:>11.4f} {row['tflop']:>9.3g} "
            f"{row['tflops']:>8.2f} {share:>8}"
        )
    for preset, seconds in video["estimates"].items():
        print(
            f"  {preset}: {video['calls'][preset]} -> {seconds:.2f} s sampling (estimate), "
            f"{video['tflop'][preset]:.4g} TFLOP"
        )
    print(
        f"  multi-scale / single-scale = {video['multi_over_single']:.3f} in time, "
        f"{video['multi_over_single_flops']:.3f} in FLOPs",
        flush=True,
    )


def print_memory(memory: dict):
    def gib(value):
        return "n/a" if value is None else f"{value / GIB:.2f}"

    width, height, frames = memory["video"]
    batch = memory["sampling_batch"]
    print(f"peak memory allocated, GiB, at {width}x{height}x{frames} (sampling: 1x2 at batch {batch}):")
    print("  weights: " + ", ".join(f"{name} {gib(b)}" for name, b in memory["weights"].items()))
    for stage in ("text", "sampling", "decode"):
        print(
            f"  {stage:>8}: offloaded {gib(memory['offloaded'][stage])}, resident {gib(memory['resident'][stage])} "
            f"({memory['seconds'][stage]:.2f} s)"
        )
    print(f"  sampling with every model resident, measured: {gib(memory['resident_sampling_measured'])}", flush=True)


@torch.no_grad()
def run_gpu_benchmark(tiny: bool = False, repeats: Optional[int] = None, device: Optional[torch.device] = None) -> dict:
    """The released configs on CUDA (3 timed calls each), or (``tiny``) tiny configs on the CPU (5)."""
    repeats = repeats or (5 if tiny else 3)
    setup = TINY_SETUP if tiny else RELEASED_SETUP
    device = torch.device(device or ("cpu" if tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("bench --gpu needs a CUDA GPU (none is visible); bench --gpu --tiny runs its code on the CPU")
    started = time.perf_counter()
    name, peak = bf16_peak_flops(device)
    peak_text = f"{peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "unknown peak"
    print(f"GPU benchmark on {name} ({peak_text}); dim {setup.dit.dim}, {setup.dit.n_layers} layers, {setup.dtype}")
    bench = Bench(setup, device)
    videos = []
    for video in setup.videos:
        videos.append(time_video(bench, video, peak, repeats))
        print_video(videos[-1])
    memory = measure_memory(bench, setup.memory_video)
    print_memory(memory)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return dict(device=name, peak_flops=peak, videos=videos, memory=memory)
