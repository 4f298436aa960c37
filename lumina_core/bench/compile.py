"""torch.compile of the DiT's blocks (``generate --compile``) against eager, on the DiT benchmark's model.

Per patch size: the largest output difference, the first compiled call's time (compiling included), the
forward time of each (median, interleaved) and the number of forwards after which compiling has paid for itself.
"""

import copy
import math
import time

import torch

from ..pipeline import compile_blocks
from .dit import BENCH_CONFIG, BENCH_LATENT, bench_model, forward_args, interleaved

TOLERANCE = 1e-4  # the bound on |compiled - eager|, fp32


@torch.no_grad()
def run_compile_benchmark(quick: bool = False, config=BENCH_CONFIG, latent: tuple = BENCH_LATENT) -> dict:
    repeats = 2 if quick else 5
    eager, cond = bench_model(config)
    compiled = compile_blocks(copy.deepcopy(eager))
    rows = []
    for patch in eager.patch_sizes:
        args = forward_args(cond, latent, patch)
        expected = eager(*args)
        start = time.perf_counter()
        difference = float((compiled(*args) - expected).abs().max())  # compiles (or recompiles) for these shapes
        first = time.perf_counter() - start
        seconds = interleaved({"eager": lambda a=args: eager(*a), "compiled": lambda a=args: compiled(*a)}, repeats)
        saved = seconds["eager"] - seconds["compiled"]
        rows.append(
            dict(
                scale=str(patch),
                max_difference=difference,
                magnitude=float(expected.abs().max()),
                first_call_seconds=first,
                speedup=seconds["eager"] / seconds["compiled"],
                pays_after=math.ceil(first / saved) if saved > 0 else math.inf,
                **seconds,
            )
        )
    print(
        f"compile: torch.compile of each of the {config.n_layers} blocks (inductor) against eager, dim {config.dim}, "
        f"latent {latent}, fp32, {torch.get_num_threads()} threads"
    )
    print(f"{'scale':>6} {'max |diff|':>11} {'first call s':>13} {'eager / compiled':>17} {'pays after':>11}")
    for row in rows:
        pays = f"{row['pays_after']} calls" if math.isfinite(row["pays_after"]) else "never"
        print(
            f"{row['scale']:>6} {row['max_difference']:>11.2e} {row['first_call_seconds']:>13.1f} "
            f"{row['speedup']:>17.3f} {pays:>11}"
        )
    within = all(row["max_difference"] <= TOLERANCE for row in rows)
    print(f"outputs within {TOLERANCE:g} of eager: {'yes' if within else 'NO'}")
    return dict(rows=rows, within_tolerance=within)
