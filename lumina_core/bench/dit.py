"""Benchmarks that print ratios measured in one run (absolute times on a shared CPU are noise).

DiT: forward time per patch size, model FLOPs per forward (counted by torch's FlopCounterMode, with attention
counted on the CPU too: ``count_cpu_attention``), achieved FLOP/s as a share of this machine's matmul peak measured
in the same run, and multi-scale sampling time over single-scale sampling time at equal steps.
"""

import statistics
import time
from collections import Counter

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from ..models.nextdit import NextDiTConfig
from ..models.text import TextCondition
from ..sampling import PRESETS, make_noise, sample

BENCH_CONFIG = NextDiTConfig(dim=512, n_layers=4, n_heads=8, n_kv_heads=4, cap_feat_dim=256, multiple_of=256)
BENCH_LATENT = (1, 16, 8, 32, 32)  # a 256x256, 32-frame video
CAPTION_TOKENS = 24


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    return interleaved({"fn": fn}, repeats)["fn"]


def interleaved(fns: dict, repeats: int, summary=statistics.median) -> dict:
    """``summary`` (median by default) of each function's wall times after one warm-up call each,
    measured round-robin so drift on a shared machine hits all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: summary(t) for name, t in times.items()}


def matmul_peak(dtype=torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """Achieved FLOP/s of one large square matmul: the ceiling a transformer forward can approach."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size**3 / timed(lambda: a @ b, repeats)


def bench_model(config: NextDiTConfig = BENCH_CONFIG, seed: int = 0):
    """A random-weight model of ``config`` (fp32, CPU) and a caption of CAPTION_TOKENS tokens for it."""
    torch.manual_seed(seed)
    model = config.build().eval().requires_grad_(False)
    model.initialize_weights(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero gates and modulation, so every branch does real work
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    cond = TextCondition(
        torch.randn(1, CAPTION_TOKENS, config.cap_feat_dim), torch.ones(1, CAPTION_TOKENS, dtype=torch.long)
    )
    return model, cond


def forward_args(cond: TextCondition, latent: tuple, patch) -> tuple:
    """One model call's arguments: seeded noise of shape ``latent``, t = 0.5, motion score 6, the caption."""
    batch = latent[0]
    cond = cond.repeat_to(batch)
    t, motion = torch.full((batch,), 0.5), torch.full((batch,), 6.0)
    return make_noise(latent, 0), t, cond.features, cond.mask, motion, patch


def count_cpu_attention() -> None:
    """Give FlopCounterMode the formula it lacks for SDPA's CPU flash kernel (torch 2.13 counts
    ``aten._scaled_dot_product_flash_attention_for_cpu`` as 0 FLOPs, the CUDA kernels as 4 N M D): without it the
    DiT's attention, 40 % of its FLOPs at 1x2 on the benchmark's latent, went uncounted and the share of the peak
    read low. Registering is idempotent and only adds the missing entry."""
    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if kernel in flop_registry:
        return

    @register_flop_formula(kernel)
    def flash_attention_for_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


def forward_rows(model, cond, repeats: int, peak: float, latent: tuple = BENCH_LATENT) -> list[dict]:
    count_cpu_attention()
    calls, flops = {}, {}
    for patch in model.patch_sizes:
        args = forward_args(cond, latent, patch)
        calls[str(patch)] = lambda args=args: model(*args)
        with FlopCounterMode(display=False) as counter:
            model(*args)
        flops[str(patch)] = counter.get_total_flops()
    seconds = interleaved(calls, repeats)
    base = seconds["1x2"]
    return [
        dict(
            scale=name,
            seconds=seconds[name],
            gflops=flops[name] / 1e9,
            share_of_peak=flops[name] / seconds[name] / peak,
            time_vs_1x2=seconds[name] / base,
        )
        for name in calls
    ]


def sampling_ratio(model, cond, steps: int, repeats: int, latent: tuple = BENCH_LATENT) -> dict:
    """Multi-scale over single-scale sampling time at equal steps, both with the f24F96R960 CFG and motion settings."""
    noise = make_noise(latent, 1)
    single = PRESETS["f24F96R960"].with_(steps=steps)
    multi = PRESETS["f24F96R960-MultiScale"].with_(steps=steps)
    times = interleaved(
        {
            "single": lambda: sample(model, noise, cond, cond, single),
            "multi": lambda: sample(model, noise, cond, cond, multi),
        },
        repeats,
    )
    counts = Counter(map(str, multi.patch_schedule()))
    return dict(steps=steps, multi_over_single=times["multi"] / times["single"], schedule=dict(counts), **times)


@torch.no_grad()
def run_dit_benchmark(quick: bool = False) -> dict:
    repeats = 2 if quick else 5
    model, cond = bench_model()
    peak = matmul_peak(repeats=repeats)
    rows = forward_rows(model, cond, repeats, peak)
    ratio = sampling_ratio(model, cond, steps=10 if quick else 24, repeats=1 if quick else 2)
    c = BENCH_CONFIG
    print(
        f"DiT benchmark: dim {c.dim}, {c.n_layers} layers, {c.n_heads}/{c.n_kv_heads} heads, latent {BENCH_LATENT}, "
        f"{torch.get_num_threads()} threads, fp32; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(f"{'scale':>6} {'GFLOP/fwd':>10} {'time vs 1x2':>12} {'share of matmul peak':>21}")
    for row in rows:
        print(f"{row['scale']:>6} {row['gflops']:>10.1f} {row['time_vs_1x2']:>12.3f} {row['share_of_peak']:>20.0%}")
    print(
        f"sampling, {ratio['steps']} steps, CFG as the f24F96R960 presets: multi-scale / single-scale time = "
        f"{ratio['multi_over_single']:.3f} (schedule {ratio['schedule']})"
    )
    return dict(peak_flops=peak, forward=rows, sampling=ratio)
