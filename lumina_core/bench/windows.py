"""Long-video benchmark: what 64 frames in fused windows cost against 16 frames, in time and in peak memory.

Each length runs in a fresh child process (as ``bench/convert.py`` does, for the same reason: ``VmHWM`` is the new
process image's own peak, ``ru_maxrss`` would carry the parent's): the embedded default is loaded, a prompt encoded,
the peak resident set read (the baseline), then the clip sampled (64 frames: windows of the trained 16 frames
overlapping by half, as ``generate`` plans them) and decoded, and the peak read again. Targets (issue 25): sampling
time at 64 frames at most 1.2 x the window count times one 16-frame sample, and peak memory above the baseline at 64
frames at most 1.3 x that at 16.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from .. import embedded
from ..sampling import PRESETS, WindowPlan, window_spans

LONG = 64
TIME_TARGET = 1.2
MEMORY_TARGET = 1.3
PLAN = WindowPlan(4, 2)  # the trained 16 frames (4 latent frames) a window, overlapping by half

CHILD = """
import sys, time
import torch
from lumina_core import embedded
from lumina_core.pipeline import decode_latent, encode_prompts, sample_latent
from lumina_core.sampling import PRESETS, WindowPlan

def high_water_mark():  # VmHWM: this process image's peak resident set, in KiB
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

torch.set_num_threads(int(sys.argv[2]))
frames = int(sys.argv[1])
models = embedded.load(with_audio=False)
cond, uncond = encode_prompts(models, ["a red circle moving left"]), encode_prompts(models, [""])
windows = WindowPlan(4, 2) if frames > embedded.FRAMES else None
config = PRESETS[embedded.PRESET]
sample_latent(models, cond, uncond, embedded.WIDTH, embedded.HEIGHT, embedded.FRAMES, 0, config)  # warm-up
baseline = high_water_mark()
start = time.perf_counter()
with torch.no_grad():
    latent = sample_latent(models, cond, uncond, embedded.WIDTH, embedded.HEIGHT, frames, 0, config, windows=windows)
    sampled = time.perf_counter()
    decode_latent(models.vae, latent)
print("WINDOWS_RUN", baseline, high_water_mark(), sampled - start, time.perf_counter() - sampled, flush=True)
"""


class LengthRun(NamedTuple):
    frames: int
    baseline_bytes: int
    peak_bytes: int
    sampling_seconds: float
    decode_seconds: float

    @property
    def above_baseline(self) -> int:
        return self.peak_bytes - self.baseline_bytes


def run_length(frames: int, threads: int, timeout: float = 600) -> LengthRun:
    """Sample and decode ``frames`` frames with the embedded default in a fresh child process, and measure it."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-c", CHILD, str(frames), str(threads)]
    child = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=timeout)
    marker = [line.split() for line in child.stdout.splitlines() if line.startswith("WINDOWS_RUN ")]
    if child.returncode != 0 or not marker:
        raise RuntimeError(f"the {frames}-frame run failed in the child ({child.returncode}):\n{child.stderr}")
    _, baseline, peak, sampling, decode = marker[-1]
    return LengthRun(frames, int(baseline) * 1024, int(peak) * 1024, float(sampling), float(decode))


def run_windows_benchmark(quick: bool = False) -> dict:
    """Time and peak memory of 64 frames in windows against 16 frames; prints the ratios, returns the figures."""
    import torch

    threads = torch.get_num_threads()
    short, long = run_length(embedded.FRAMES, threads), run_length(LONG, threads)
    align = max(p.temporal for p in PRESETS[embedded.PRESET].patch_sizes())
    windows = len(window_spans(LONG // 4, PLAN, 0, align))
    time_ratio = long.sampling_seconds / (windows * short.sampling_seconds)
    memory_ratio = long.above_baseline / max(short.above_baseline, 1)
    print(
        f"windows: {LONG} frames sampled in {long.sampling_seconds:.2f} s = {time_ratio:.2f} x ({windows} windows x "
        f"{embedded.FRAMES} frames in {short.sampling_seconds:.2f} s; target <= {TIME_TARGET}); peak memory above "
        f"the loaded models {long.above_baseline / 2**20:.0f} MiB against {short.above_baseline / 2**20:.0f} MiB "
        f"= {memory_ratio:.2f} x (target <= {MEMORY_TARGET}); decode {long.decode_seconds:.2f} s against "
        f"{short.decode_seconds:.2f} s"
    )
    return dict(
        time_ratio=time_ratio,
        memory_ratio=memory_ratio,
        windows=windows,
        short=short._asdict(),
        long=long._asdict(),
        passed=time_ratio <= TIME_TARGET and memory_ratio <= MEMORY_TARGET,
    )
