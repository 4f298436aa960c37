"""Peak memory of loading the released DiT as a native ComfyUI MODEL, with fp8 weights against bf16.

Each weight dtype loads in a fresh child process, through the pack's native load path
(``nodes._comfy_model.native_model``, ComfyUI's model building and ``comfy.ops`` layers, on the CPU), from a state
dict of random values made tensor by tensor from the released config built on the meta device. The figure is the
peak resident memory (``ru_maxrss``) minus the peak after the imports, so it counts the input state dict and the
model's weights and nothing ComfyUI or torch hold anyway::

    COMFYUI_ROOT=/path/to/ComfyUI /path/to/comfy/python -m tests.integration.native_load_memory

By default the input state dict is in the weight dtype being loaded (as an fp8 or a bf16 checkpoint file would
give it); ``--input bf16`` loads a bf16 state dict into both. Prints each run's figures and the fp8 / bf16 ratio of
the peaks; ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEIGHT_DTYPES = ("fp8_e4m3fn", "bf16")
CONFIGS = ("released", "check")
"""released: the Lumina-Video-f24R960 DiT (about 2B parameters; about 8 GiB at the bf16 peak); check: a small
config for a quick run of the same code."""
GIB = 2**30


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(config_name: str, weight_dtype_name: str, input_dtype_name: str) -> dict:
    """One load in this process: ComfyUI's modules and the pack imported first, then the state dict and the model."""
    from tests.integration.inprocess import load_comfyui_and_pack

    load_comfyui_and_pack(os.environ["COMFYUI_ROOT"])
    import torch
    from lumina_video.lumina_core.bench.memory import CHECK_CONFIG
    from lumina_video.lumina_core.models.nextdit import RELEASED
    from lumina_video.nodes._comfy_model import native_model

    dtypes = {"fp8_e4m3fn": torch.float8_e4m3fn, "bf16": torch.bfloat16}
    weight_dtype = dtypes[weight_dtype_name]
    input_dtype = weight_dtype if input_dtype_name == "target" else dtypes[input_dtype_name]
    config = RELEASED if config_name == "released" else CHECK_CONFIG
    torch.set_grad_enabled(False)
    shapes = {name: tensor.shape for name, tensor in config.build(device="meta").state_dict().items()}
    after_imports = peak_rss_bytes()

    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for name, shape in shapes.items():  # bf16 values, cast one tensor at a time: randn has no fp8 kernel
        state_dict[name] = torch.randn(shape, generator=generator, dtype=torch.bfloat16).to(input_dtype)
    after_state_dict = peak_rss_bytes()
    cpu = torch.device("cpu")
    model = native_model(config, state_dict, 24.0, weight_dtype, cpu, cpu)
    peak = peak_rss_bytes()

    dit = model.model.diffusion_model
    parameter_bytes = sum(p.numel() * p.element_size() for p in dit.parameters())
    by_dtype = {}
    for p in dit.parameters():
        key = str(p.dtype).replace("torch.", "")
        by_dtype[key] = by_dtype.get(key, 0) + p.numel()
    return dict(
        config=config_name,
        weight_dtype=weight_dtype_name,
        input_dtype=str(input_dtype).replace("torch.", ""),
        parameters=sum(p.numel() for p in dit.parameters()),
        parameters_by_dtype=by_dtype,
        parameter_bytes=parameter_bytes,
        input_bytes=sum(t.numel() * t.element_size() for t in state_dict.values()),
        rss_after_imports=after_imports,
        state_dict_rss=after_state_dict - after_imports,
        peak_rss=peak - after_imports,
    )


def run_child(config_name: str, weight_dtype_name: str, input_dtype_name: str) -> dict:
    """``measure`` in a fresh interpreter, so that neither load sees the other's memory."""
    command = [sys.executable, "-m", "tests.integration.native_load_memory", "--config", config_name]
    command += ["--input", input_dtype_name, "--child", weight_dtype_name]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{weight_dtype_name} load failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(config_name: str = "released", input_dtype_name: str = "target") -> dict:
    """Both loads, each in its own process, and the fp8 / bf16 ratios of their peaks and parameter bytes."""
    runs = {name: run_child(config_name, name, input_dtype_name) for name in WEIGHT_DTYPES}
    fp8, bf16 = runs["fp8_e4m3fn"], runs["bf16"]
    return dict(
        runs=runs,
        peak_ratio=fp8["peak_rss"] / bf16["peak_rss"],
        parameter_bytes_ratio=fp8["parameter_bytes"] / bf16["parameter_bytes"],
    )


def print_comparison(result: dict) -> None:
    for name, run in result["runs"].items():
        print(
            f"{name:>10}: {run['parameters']:,} parameters {run['parameters_by_dtype']}, "
            f"{run['parameter_bytes'] / GIB:.2f} GiB of weights; input state dict {run['input_dtype']} "
            f"{run['input_bytes'] / GIB:.2f} GiB; peak RSS above the imports {run['peak_rss'] / GIB:.2f} GiB "
            f"(state dict alone {run['state_dict_rss'] / GIB:.2f} GiB; RSS after imports "
            f"{run['rss_after_imports'] / GIB:.2f} GiB)"
        )
    print(f"fp8 / bf16 peak: {result['peak_ratio']:.3f}; parameter bytes: {result['parameter_bytes_ratio']:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.native_load_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        choices=CONFIGS,
        default="released",
        help="released: the Lumina-Video-f24R960 DiT (default); check: a small config, a quick run of the same code",
    )
    parser.add_argument(
        "--input",
        choices=("target", "bf16"),
        default="target",
        help="the input state dict's dtype: the weight dtype loaded (default) or bf16 for both loads",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", choices=WEIGHT_DTYPES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not os.environ.get("COMFYUI_ROOT"):
        parser.error("set COMFYUI_ROOT to a ComfyUI checkout (and run this with its Python)")
    if args.child:
        print(json.dumps(measure(args.config, args.child, args.input)))
        return 0
    result = compare(args.config, args.input)
    print_comparison(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
