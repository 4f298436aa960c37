"""VAE benchmark: decode time and peak memory, ours against diffusers, tiled against untiled.

Every comparison is a ratio of runs made in the same call on the same machine, with
one thread (on a shared 2-core machine a multi-threaded op waits for a busy core, and
the times measure the neighbours):

* time: both implementations hold the same random weights and decode the same latent,
  turn about, after a warm-up; the ratio is of the fastest runs.
* peak memory: each decode runs in a fresh subprocess that builds the model, decodes
  once to warm up, resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` <- 5,
  Linux) and decodes again; the peak above the resident memory before that decode is
  its peak memory, output included. glibc is told to mmap every block over 64 KiB, so a
  freed activation leaves the resident set at once and the peak is that of live tensors.

The 1248x704x96 estimate (24x88x156 latents, bf16, default 48x48 tiles): a tiled decode
holds one tile's chunk of two latent frames, its causal cache and the output, whatever
the video size. The tile's working memory is measured for the CogVideoX-2b architecture
(random weights, bf16) at a few small tiles, with the frame-slicing budget of the
convolutions scaled by the same factor as the tile's pixel count, so every layer slices
exactly as it would at 384x384 px and the working memory is a line in the pixel count.
The line, read at 384x384, plus the weights and the output tensor is the estimate.
CPU figures include oneDNN's copies of conv inputs into its blocked layout; a GPU adds
its CUDA context and allocator slack instead.
"""

import functools
import json
import os
import subprocess
import sys
from typing import Callable, Optional

import numpy as np
import torch

from ..models import vae as vae_module
from ..models.vae import DEFAULT_TILE_LATENT_HW as DEFAULT_TILE
from ..models.vae import CogVideoXVAE, CogVideoXVAEConfig, frames_for, psnr
from .dit import interleaved

BENCH_CONFIG = CogVideoXVAEConfig.tiny()
BENCH_LATENT = (1, 16, 4, 32, 32)  # 16 frames at 256x256
BENCH_TILE, BENCH_OVERLAP = (16, 16), 4  # 9 tiles over BENCH_LATENT
FULL_VIDEO_LATENT = (1, 16, 24, 88, 156)  # 96 frames at 704x1248
MIB = 2**20


# -- measurement -------------------------------------------------------------------------


def _read_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset VmHWM to the current resident set; return that resident set in bytes."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _read_status("VmRSS")


def peak_rss_measurable() -> bool:
    return os.path.exists("/proc/self/clear_refs")


def diffusers_available() -> bool:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def build_pair(
    config: CogVideoXVAEConfig, dtype: torch.dtype = torch.float32, seed: int = 0, with_diffusers: bool = True
):
    """(ours, diffusers' or None) with the same random weights, drawn by ours."""
    torch.manual_seed(seed)
    ours = CogVideoXVAE(config).requires_grad_(False).eval()
    ref = None
    if with_diffusers:
        from diffusers import AutoencoderKLCogVideoX

        ref = AutoencoderKLCogVideoX.from_config(config.to_dict())
        ref.load_state_dict(ours.state_dict())
        ref = ref.requires_grad_(False).eval()
        if dtype != torch.float32:
            ref = ref.to(dtype)
    return ours.to(dtype), ref


def decoder_for(
    impl: str, model, tile: Optional[tuple[int, int]], overlap: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """VAE-space latent -> frames, each implementation called the way it is meant to be."""
    if impl == "ours":
        if tile is None:
            return lambda latent: model.decode_model_latent(model.to_model_latent(latent))
        return lambda latent: model.decode_model_latent_tiled(model.to_model_latent(latent), tile, overlap)
    sample_per_latent = 2 ** (len(model.config.block_out_channels) - 1)

    def decode(latent):
        if tile is None:
            model.disable_tiling()
        else:
            model.enable_tiling(
                tile_sample_min_height=tile[0] * sample_per_latent,
                tile_sample_min_width=tile[1] * sample_per_latent,
                tile_overlap_factor_height=overlap / tile[0],
                tile_overlap_factor_width=overlap / tile[1],
            )
        return model.decode(latent).sample

    return decode


def bench_latent(shape, dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _child() -> None:
    """Subprocess entry for ``measure_peak_memory``: the job as JSON on stdin, the result as JSON on stdout."""
    job = json.load(sys.stdin)
    torch.set_num_threads(1)
    if job["frame_slice_bytes"]:
        vae_module.FRAME_SLICE_BYTES = job["frame_slice_bytes"]
    dtype = getattr(torch, job["dtype"])
    config = CogVideoXVAEConfig.from_diffusers_config(job["config"])
    ours, ref = build_pair(config, dtype, with_diffusers=job["impl"] == "diffusers")
    model = ours if ref is None else ref
    del ours
    decode = decoder_for(job["impl"], model, tuple(job["tile"]) if job["tile"] else None, job["overlap"])
    latent = bench_latent(job["latent"], dtype)
    with torch.no_grad():
        decode(latent)
        before = _reset_peak_rss()
        frames = decode(latent)
        peak = _read_status("VmHWM") - before
    json.dump({"peak_bytes": peak, "output_bytes": frames.numel() * frames.element_size()}, sys.stdout)


@functools.lru_cache(maxsize=None)
def measure_peak_memory(
    impl: str,
    config: CogVideoXVAEConfig,
    latent_shape: tuple[int, ...],
    dtype: str = "float32",
    tile: Optional[tuple[int, int]] = None,
    overlap: int = 0,
    frame_slice_bytes: Optional[int] = None,
) -> dict:
    """Peak memory of one decode, measured in a fresh subprocess: {"peak_bytes", "output_bytes"}."""
    job = dict(
        impl=impl,
        config=config.to_dict(),
        latent=list(latent_shape),
        dtype=dtype,
        tile=tile,
        overlap=overlap,
        frame_slice_bytes=frame_slice_bytes,
    )
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root
    result = subprocess.run(
        [sys.executable, "-c", "from lumina_core.bench.vae import _child; _child()"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"peak-memory measurement {job} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


# -- the benchmark -----------------------------------------------------------------------


def _row(name: str, value, unit: str, note: str = "") -> dict:
    return {"name": name, "value": value, "unit": unit, "note": note}


def _describe(latent_shape) -> str:
    _, _, t, h, w = latent_shape
    return f"latent {t}x{h}x{w} -> {frames_for(t)} frames at {8 * w}x{8 * h}"


def compare_with_diffusers(repeats: int, have_diffusers: bool, can_measure_memory: bool) -> list[dict]:
    """Time, parity and tiled-vs-untiled fidelity, measured in this process; peak memory in subprocesses.

    Times are 1-thread wall times, the fastest of ``repeats`` runs taken in turns.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours, ref = build_pair(BENCH_CONFIG, with_diffusers=have_diffusers)
        latent = bench_latent(BENCH_LATENT)
        decoders = {
            "ours": decoder_for("ours", ours, None, 0),
            "ours tiled": decoder_for("ours", ours, BENCH_TILE, BENCH_OVERLAP),
        }
        if have_diffusers:
            decoders["diffusers"] = decoder_for("diffusers", ref, None, 0)
            decoders["diffusers tiled"] = decoder_for("diffusers", ref, BENCH_TILE, BENCH_OVERLAP)
        with torch.no_grad():
            # Fastest run per decoder: the least disturbed by other load on the machine.
            times = interleaved(
                {name: functools.partial(decode, latent) for name, decode in decoders.items()}, repeats, summary=min
            )
            frames = {name: decode(latent) for name, decode in decoders.items()}
    finally:
        torch.set_num_threads(threads)

    peaks = {}
    if can_measure_memory:
        for impl in ("ours", "diffusers") if have_diffusers else ("ours",):
            for tile, suffix in ((None, ""), (BENCH_TILE, " tiled")):
                peak = measure_peak_memory(
                    impl, BENCH_CONFIG, BENCH_LATENT, tile=tile, overlap=BENCH_OVERLAP if tile else 0
                )
                peaks[impl + suffix] = peak["peak_bytes"]

    def ratio(numerator: dict, a: str, b: str, unit: str = "s") -> tuple:
        scale = 1 if unit == "s" else MIB
        return numerator[a] / numerator[b], "x", f"{numerator[a] / scale:.2f} vs {numerator[b] / scale:.2f} {unit}"

    def max_abs(a: str, b: str) -> float:
        return (frames[a] - frames[b]).abs().max().item()

    setup = (
        f"tiny config, {_describe(BENCH_LATENT)}, fp32, tiles {BENCH_TILE[0]}x{BENCH_TILE[1]} overlap {BENCH_OVERLAP}"
    )
    measures = [  # (name, what it needs, () -> (value, unit, note))
        (
            "parity with diffusers (max abs)",
            {"diffusers"},
            lambda: (
                max_abs("ours", "diffusers"),
                "",
                f"same weights and latent: {setup}; times: 1 thread, fastest of {repeats}",
            ),
        ),
        ("decode time ours/diffusers, untiled", {"diffusers"}, lambda: ratio(times, "ours", "diffusers")),
        ("decode time ours/diffusers, tiled", {"diffusers"}, lambda: ratio(times, "ours tiled", "diffusers tiled")),
        ("decode time tiled/untiled (ours)", set(), lambda: ratio(times, "ours tiled", "ours")),
        (
            "peak memory ours/diffusers, untiled",
            {"diffusers", "memory"},
            lambda: ratio(peaks, "ours", "diffusers", "MiB"),
        ),
        (
            "peak memory ours/diffusers, tiled",
            {"diffusers", "memory"},
            lambda: ratio(peaks, "ours tiled", "diffusers tiled", "MiB"),
        ),
        ("peak memory untiled/tiled (ours)", {"memory"}, lambda: ratio(peaks, "ours", "ours tiled", "MiB")),
        (
            "tiled vs untiled PSNR (ours)",
            set(),
            lambda: (
                psnr(frames["ours tiled"], frames["ours"]),
                "dB",
                f"max abs {max_abs('ours tiled', 'ours'):.3f}; GroupNorm statistics are per tile",
            ),
        ),
        (
            "tiled vs untiled PSNR (diffusers)",
            {"diffusers"},
            lambda: (
                psnr(frames["diffusers tiled"], frames["diffusers"]),
                "dB",
                f"max abs {max_abs('diffusers tiled', 'diffusers'):.3f}; its own blending",
            ),
        ),
    ]
    missing = {need for need, present in (("diffusers", have_diffusers), ("memory", can_measure_memory)) if not present}
    return [
        _row(name, *measure()) if not needs & missing else _skipped(name, needs & missing)
        for name, needs, measure in measures
    ]


SKIP_REASONS = {
    "diffusers": "diffusers is not installed (pip install diffusers)",
    "memory": "peak memory is read from Linux's /proc/self (absent here)",
}


def _skipped(name: str, missing: set) -> dict:
    return _row(name, None, "", "skipped: " + "; ".join(SKIP_REASONS[m] for m in sorted(missing)))


def memory_scaling(sides: tuple[int, ...]) -> list[dict]:
    """Peak memory of ours, untiled and tiled, as the latent grows: tiled stays flat but for the output."""
    rows = []
    for side in sides:
        shape = BENCH_LATENT[:3] + (side, side)
        untiled = measure_peak_memory("ours", BENCH_CONFIG, shape)
        tiled = measure_peak_memory("ours", BENCH_CONFIG, shape, tile=BENCH_TILE, overlap=BENCH_OVERLAP)
        output = untiled["output_bytes"] / MIB
        rows.append(
            _row(
                f"peak memory untiled, {_describe(shape)}",
                untiled["peak_bytes"] / MIB,
                "MiB",
                f"output {output:.0f} MiB",
            )
        )
        rows.append(
            _row(
                f"peak memory tiled {BENCH_TILE[0]}x{BENCH_TILE[1]}, {_describe(shape)}",
                tiled["peak_bytes"] / MIB,
                "MiB",
                f"working memory without the output: {(tiled['peak_bytes'] - tiled['output_bytes']) / MIB:.0f} MiB",
            )
        )
    return rows


def full_video_estimate(sides: tuple[int, ...]) -> list[dict]:
    """Peak memory of decoding 24x88x156 latents in bf16 with CogVideoX-2b and the default tiles, from small tiles."""
    config = CogVideoXVAEConfig.cogvideox_2b()
    tile_pixels = (8 * DEFAULT_TILE[0]) * (8 * DEFAULT_TILE[1])
    pixels, working = [], []
    for side in sides:
        p = (8 * side) ** 2
        shape = (1, config.latent_channels, 4, side, side)  # two chunks, so the causal cache is live
        scaled_budget = max(1, vae_module.FRAME_SLICE_BYTES * p // tile_pixels)
        result = measure_peak_memory("ours", config, shape, dtype="bfloat16", frame_slice_bytes=scaled_budget)
        pixels.append(p)
        working.append(result["peak_bytes"] - result["output_bytes"])
    per_pixel, intercept = np.polyfit(pixels, working, 1)
    residual = max(
        abs(intercept + per_pixel * p - w) / w for p, w in zip(pixels, working)
    )  # worst relative miss of the line

    _, latent_channels, t, h, w = FULL_VIDEO_LATENT
    weights = sum(p.numel() for p in CogVideoXVAE(config, device="meta").parameters()) * 2
    output = 3 * frames_for(t) * 8 * h * 8 * w * 2
    tile_working = intercept + per_pixel * tile_pixels
    untiled_working = intercept + per_pixel * (8 * h) * (8 * w)
    sizes = ", ".join(f"{8 * s}x{8 * s}" for s in sides)
    return [
        _row(
            "CogVideoX-2b decode working memory per output pixel",
            per_pixel / 1024,
            "KiB/px",
            f"bf16, two latent frames per chunk; line through tiles of {sizes} px"
            + (f", worst residual {residual:.1%}" if len(sides) > 2 else ""),
        ),
        _row(
            f"est. peak 1248x704x96 bf16, tiled {DEFAULT_TILE[0]}x{DEFAULT_TILE[1]}",
            (weights + output + tile_working) / 2**30,
            "GiB",
            f"weights {weights / 2**30:.2f} + output {output / 2**30:.2f} + "
            f"one {8 * DEFAULT_TILE[0]}x{8 * DEFAULT_TILE[1]} px tile "
            f"{tile_working / 2**30:.2f} GiB (goal < 12)",
        ),
        _row(
            "est. peak 1248x704x96 bf16, untiled",
            (weights + output + untiled_working) / 2**30,
            "GiB",
            "same line read at 704x1248 px",
        ),
    ]


def print_table(rows: list[dict]) -> None:
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        value = row["value"]
        shown = "-" if value is None else f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
        print(f"{row['name']:<{width}}  {shown:>9} {row['unit']:<6} {row['note']}")


def run_vae_benchmark(quick: bool = False) -> list[dict]:
    """Decode time and peak memory, ours vs diffusers and tiled vs untiled, plus the 1248x704x96 estimate.

    ``quick`` takes one timed run per decoder and fewer memory points (a few minutes on 2 cores).
    """
    have_diffusers, can_measure_memory = diffusers_available(), peak_rss_measurable()
    rows = compare_with_diffusers(1 if quick else 3, have_diffusers, can_measure_memory)
    if can_measure_memory:
        rows += memory_scaling((16, 32) if quick else (16, 32, 48))
        rows += full_video_estimate((4, 8) if quick else (4, 8, 12))
    else:
        rows += [_skipped("peak memory scaling and the 1248x704x96 estimate", {"memory"})]
    print_table(rows)
    return rows
