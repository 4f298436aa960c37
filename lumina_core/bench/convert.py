"""Converter benchmark: the peak memory of ``python -m lumina_core convert`` against the size of the file it writes.

A random-weight checkpoint in the released layout (a fp32 ``consolidated.00-of-01.pth`` written by torch.save, plus
``model_args.pth``) goes into a temporary folder; it is converted to bf16 and to fp32, each in a fresh child process
running the command line's own ``main``. The child reads its peak resident set (``VmHWM`` in /proc/self/status)
after importing torch and lumina_core and again after converting; the difference is the conversion's peak memory,
counted against the output file's size (target: at most 1.2). Not ``ru_maxrss``: Linux carries the parent's peak
into a child across exec (subprocess starts children with vfork, so the child's ``ru_maxrss`` begins at the peak of
whatever launched it: 0.84 GB for a 0.23 GB child here), while ``VmHWM`` belongs to the new process image alone.
The source's pages are dropped from the page cache before each run (``posix_fadvise``), so the seconds include
reading it from disk, as a first conversion would.

The released size (``RELEASED``, 1.77 B parameters) needs ~7.1 GB of memory to build the checkpoint (tensors are made
one at a time, but torch.save takes them all at once) and ~14 GB of disk at once; ``--quick`` takes a config of
0.58 GB (dim 1024, 8 layers).
"""

import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from ..models.nextdit import FACTORIES, RELEASED, NextDiTConfig

QUICK_CONFIG = NextDiTConfig(dim=1024, n_layers=8, cap_feat_dim=1024)
TARGET = 1.2  # peak memory above the post-import baseline, as a multiple of the output file's size
GB = 1e9

CHILD = """
import sys, time
import torch
from lumina_core.__main__ import main
import lumina_core.io.checkpoints

def high_water_mark():  # VmHWM: this process image's peak resident set, in KiB
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

baseline = high_water_mark()
start = time.perf_counter()
status = main(["convert", *sys.argv[1:]])
print("CONVERT_RUN", baseline, high_water_mark(), time.perf_counter() - start, flush=True)
sys.exit(status)
"""


class ConvertRun(NamedTuple):
    seconds: float
    baseline_bytes: int  # the child's peak resident set after its imports, before converting
    peak_bytes: int  # the child's peak resident set over its whole life
    output_bytes: int

    @property
    def above_baseline(self) -> int:
        return self.peak_bytes - self.baseline_bytes

    @property
    def ratio(self) -> float:
        return self.above_baseline / self.output_bytes


def write_released_checkpoint(folder: Path, config: NextDiTConfig = RELEASED, seed: int = 0) -> Path:
    """A random-weight checkpoint laid out as the released folder, its tensors made one at a time from the shapes of
    a meta-device model (no second copy while building)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = {name: tensor.shape for name, tensor in config.build().state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        state[name] = torch.empty(shape).normal_(0.0, 0.02, generator=generator)
    torch.save(state, folder / "consolidated.00-of-01.pth")
    del state
    model = next((name for name, values in FACTORIES.items() if _matches(config, values)), "custom")
    args = types.SimpleNamespace(
        model=model,
        qk_norm=config.qk_norm,
        patch_sizes=list(config.all_patch_size),
        f_patch_sizes=list(config.all_f_patch_size),
        rope_theta=config.rope_theta,
        t_scale=config.t_scale,
        motion_scale=config.motion_scale,
    )
    torch.save(args, folder / "model_args.pth")
    return folder


def _matches(config: NextDiTConfig, values: dict) -> bool:
    return all(getattr(config, key) == value for key, value in values.items())


def convert_in_child(src: Path, dst: Path, dtype: Optional[str] = None, timeout: float = 3600) -> ConvertRun:
    """Run ``python -m lumina_core convert src dst [--dtype dtype]`` in a fresh process and measure it."""
    command = [sys.executable, "-c", CHILD, str(src), str(dst), *(["--dtype", dtype] if dtype else [])]
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    child = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=timeout)
    marker = [line.split() for line in child.stdout.splitlines() if line.startswith("CONVERT_RUN ")]
    if child.returncode != 0 or not marker:
        raise RuntimeError(
            f"convert failed in the child (exit status {child.returncode}):\n{child.stdout}{child.stderr}"
        )
    _, baseline_kib, peak_kib, seconds = marker[-1]
    kib = 1024
    return ConvertRun(float(seconds), int(baseline_kib) * kib, int(peak_kib) * kib, Path(dst).stat().st_size)


def _drop_from_page_cache(path: Path):
    """Ask the kernel to forget the file's cached pages, so the next read comes from the disk (synced first: dirty
    pages, as torch.save leaves them, can't be dropped)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_convert_benchmark(quick: bool = False, workdir: Optional[Path] = None) -> dict:
    config = QUICK_CONFIG if quick else RELEASED
    with tempfile.TemporaryDirectory(prefix="lumina_convert_bench_", dir=workdir) as folder:
        folder = Path(folder)
        start = time.perf_counter()
        released = write_released_checkpoint(folder / "released", config)
        source = released / "consolidated.00-of-01.pth"
        print(
            f"converter: random-weight released-layout checkpoint, dim {config.dim}, {config.n_layers} layers, "
            f"{source.stat().st_size / GB:.2f} GB fp32 .pth (written in {time.perf_counter() - start:.0f} s)"
        )
        runs = {}
        for dtype in ("bf16", "fp32"):
            _drop_from_page_cache(source)
            runs[dtype] = run = convert_in_child(released, folder / f"converted_{dtype}.safetensors", dtype)
            (folder / f"converted_{dtype}.safetensors").unlink()
            print(
                f"  --dtype {dtype}: output {run.output_bytes / GB:.2f} GB, peak RSS above the post-import baseline "
                f"{run.above_baseline / GB:.3f} GB = {run.ratio:.3f} x the output (target <= {TARGET}: "
                f"{'met' if run.ratio <= TARGET else 'MISSED'}); baseline {run.baseline_bytes / GB:.3f} GB, "
                f"{run.seconds:.1f} s"
            )
    passed = all(run.ratio <= TARGET for run in runs.values())
    return dict(runs=runs, target=TARGET, passed=passed)
