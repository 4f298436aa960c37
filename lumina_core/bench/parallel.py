"""Sequence parallel on the CPU: 2 gloo processes against 1, on the DiT benchmark's model.

Each of the 2 processes runs one thread; the single process runs once with one thread (the same cores' worth of
work per process) and once with as many threads as torch takes by default (the fair baseline: the same machine).
Per patch size: each one's fastest forward, the forwards of all three taking turns within each process, and the
largest difference between the 2-process output and the single process's.
"""

import functools
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

from .. import parallel
from .dit import BENCH_CONFIG, BENCH_LATENT, bench_model, forward_args, interleaved

WORLD = 2


def forwards(config, latent: tuple, repeats: int) -> tuple[dict, dict]:
    """(fastest seconds, output) of one forward at each patch size, in this process's mode."""
    model, cond = bench_model(config)
    calls = {str(p): functools.partial(model, *forward_args(cond, latent, p)) for p in model.patch_sizes}
    seconds = interleaved(calls, repeats, summary=min)
    return seconds, {name: call() for name, call in calls.items()}


@torch.no_grad()
def _worker(rank: int, port: int, out_dir: str, config, latent: tuple, repeats: int):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    parallel.init_from_env()
    try:
        torch.save(forwards(config, latent, repeats), Path(out_dir) / f"rank{rank}.pt")
    finally:
        parallel.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@torch.no_grad()
def run_parallel_benchmark(quick: bool = False, config=BENCH_CONFIG, latent: tuple = BENCH_LATENT) -> dict:
    repeats = 2 if quick else 5
    threads = torch.get_num_threads()
    single = {}
    try:
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            single[n] = forwards(config, latent, repeats)
    finally:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(free_port(), out_dir, config, latent, repeats), nprocs=WORLD, join=True)
        seconds, outputs = torch.load(Path(out_dir) / "rank0.pt")
    rows = []
    for scale, two in seconds.items():
        expected = single[1][1][scale]
        rows.append(
            dict(
                scale=scale,
                two_processes=two,
                **{f"one_process_{n}_threads": s[scale] for n, (s, _) in single.items()},
                max_difference=float((outputs[scale] - expected).abs().max()),
                magnitude=float(expected.abs().max()),
            )
        )
    print(
        f"sequence parallel, {WORLD} gloo processes of 1 thread against 1 process: dim {config.dim}, "
        f"{config.n_layers} layers, latent {latent}, fp32, fastest of {repeats}"
    )
    print(f"  {'scale':>6} " + " ".join(f"{f'2 procs / 1 proc {n} thr':>22}" for n in single) + "  max |diff| (of max)")
    for row in rows:
        ratios = " ".join(f"{row['two_processes'] / row[f'one_process_{n}_threads']:>22.3f}" for n in single)
        print(f"  {row['scale']:>6} {ratios}  {row['max_difference']:.2e} ({row['magnitude']:.1f})")
    return dict(rows=rows, threads=sorted(single))
