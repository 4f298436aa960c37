"""The embedded demo's stage timings against its clip's length: the README's command, run as an artist runs it.

Each run is a fresh ``python -m lumina_core generate`` process, so its total includes the interpreter's start-up,
the imports and loading the weights; the stages are those ``generate`` prints on its last line.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO_ARGS = ("--prompt", "a red circle moving left", "--motion", "6", "--seed", "0")  # the README's demo
STAGES = ("text", "sampling", "decode", "sound")


def run_demo(out: Path) -> dict:
    """One run of the demo -> the seconds of its ``timings:`` line, by name."""
    command = [sys.executable, "-m", "lumina_core", "generate", *DEMO_ARGS, "--out", str(out)]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("timings: "))
    return {name: float(seconds) for name, seconds in re.findall(r"(\w+) ([\d.]+) s", line)}


def run_demo_benchmark(quick: bool = False) -> dict:
    runs = 1 if quick else 3
    with tempfile.TemporaryDirectory() as folder:
        timings = [run_demo(Path(folder) / "demo.mp4") for _ in range(runs)]
    best = min(timings, key=lambda t: t["total"])
    model = sum(best[stage] for stage in STAGES)
    print(
        f"embedded demo (generate {' '.join(DEMO_ARGS)}), fastest total of {runs} runs: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in best.items())
    )
    print(
        f"  models {model:.2f} s = {model / best['clip']:.2f} x the clip's {best['clip']:.2f} s; "
        f"whole process {best['total']:.2f} s = {best['total'] / best['clip']:.2f} x"
    )
    return dict(runs=timings, fastest=best, model_seconds=model, model_over_clip=model / best["clip"])
