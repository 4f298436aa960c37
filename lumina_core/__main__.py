"""Command line: python -m lumina_core {info,convert,bench} ..."""

import argparse
from collections import Counter
from dataclasses import asdict
import sys

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cmd_info(args):
    from .checkpoint import load_nextdit

    model, config, notes = load_nextdit(args.checkpoint, device="meta")
    params = sum(p.numel() for p in model.parameters())
    dtypes = Counter(str(p.dtype).replace("torch.", "") for p in model.parameters())
    print(f"{args.checkpoint}: Multi-scale Next-DiT, {params:,} parameters, dtypes {dict(dtypes)}")
    for key, value in asdict(config).items():
        print(f"  {key} = {value}")
    for note in notes:
        print(f"  note: {note}")


def cmd_convert(args):
    from .checkpoint import convert

    config, notes = convert(args.src, args.dst, DTYPES[args.dtype] if args.dtype else None)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.dst} (dim {config.dim}, {config.n_layers} layers, dtype {args.dtype or 'as stored'}); no model_args.pth needed to load it")


def cmd_bench(args):
    if args.part in ("dit", "all"):
        from .bench import run_dit_benchmark

        run_dit_benchmark(quick=args.quick)
    if args.part in ("vae", "all"):
        from .vae_bench import run_vae_benchmark

        run_vae_benchmark(quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lumina_core", description="Lumina-Video engine: inspect and convert checkpoints, benchmark.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print a checkpoint's config, parameter count and dtype")
    info.add_argument("checkpoint", help="a .safetensors / .pth file, or the released folder (consolidated.00-of-01.pth + model_args.pth)")
    info.set_defaults(run=cmd_info)

    convert = commands.add_parser("convert", help="rewrite a checkpoint as .safetensors with its config in the metadata")
    convert.add_argument("src", help="a .pth / .safetensors file or the released folder")
    convert.add_argument("dst", help="output .safetensors path")
    convert.add_argument("--dtype", choices=sorted(DTYPES), help="cast floating-point tensors (default: keep as stored)")
    convert.set_defaults(run=cmd_convert)

    bench = commands.add_parser("bench", help="benchmarks: ratios measured in one run")
    bench.add_argument("--part", choices=("dit", "vae", "all"), default="all")
    bench.add_argument("--quick", action="store_true", help="fewer repeats and steps (for smoke tests)")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
