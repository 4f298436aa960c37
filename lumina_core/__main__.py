"""Command line: python -m lumina_core {generate,info,convert,bench} ..."""

import argparse
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cmd_info(args):
    from .io.checkpoints import load_nextdit

    model, config, notes = load_nextdit(args.checkpoint, device="meta")
    params = sum(p.numel() for p in model.parameters())
    dtypes = Counter(str(p.dtype).replace("torch.", "") for p in model.parameters())
    print(f"{args.checkpoint}: Multi-scale Next-DiT, {params:,} parameters, dtypes {dict(dtypes)}")
    for key, value in asdict(config).items():
        print(f"  {key} = {value}")
    for note in notes:
        print(f"  note: {note}")


def cmd_convert(args):
    from .io.checkpoints import convert

    config, notes = convert(args.src, args.dst, DTYPES[args.dtype] if args.dtype else None)
    for note in notes:
        print(f"note: {note}")
    print(
        f"wrote {args.dst} (dim {config.dim}, {config.n_layers} layers, dtype {args.dtype or 'as stored'}); "
        "no model_args.pth needed to load it"
    )


def cmd_bench(args):
    missed = []
    if args.part in ("dit", "all"):
        from .bench.dit import run_dit_benchmark

        run_dit_benchmark(quick=args.quick)
    if args.part in ("embedded", "all"):
        from .bench.embedded import run_embedded_benchmark

        if not run_embedded_benchmark(quick=args.quick)["passed"]:
            missed.append("embedded multi-scale / single-scale sampling time")
    if args.part in ("vae", "all"):
        from .bench.vae import run_vae_benchmark

        run_vae_benchmark(quick=args.quick)
    if missed and args.gate:
        raise SystemExit(f"bench: target missed: {', '.join(missed)}")


def sampling_config(args):
    """The preset named by --preset, whole, with the per-step options given on the command line
    as explicit overrides."""
    from .sampling import parse_time_aware, preset

    changes = {}
    for name, kind in (("cfg", float), ("motion", float), ("neg_motion", float), ("motion_cfg", float), ("patch", str)):
        text = getattr(args, name)
        if text is not None:
            changes[name] = parse_time_aware(text, f"--{name.replace('_', '-')}", kind)
    for name in ("steps", "time_shift", "solver"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    return preset(args.preset).with_(**changes)


def cmd_generate(args):
    from tqdm import tqdm

    from . import embedded
    from .io.media import write_video
    from .pipeline import decode_latent, encode_prompts, generate_audio, sample_latent
    from .request import check_video_size

    config = sampling_config(args)
    models = embedded.load(where=args.models, with_audio=not args.no_audio)
    check_video_size(args.width, args.height, args.frames, 1, models.dit.patch_sizes, models.size_limits)
    models.text_encoder.check_prompt(args.prompt, "--prompt")
    models.text_encoder.check_prompt(args.negative_prompt, "--negative-prompt")
    cond = encode_prompts(models, [args.prompt])
    uncond = encode_prompts(models, [args.negative_prompt])
    with tqdm(total=config.steps - 1, desc="sampling", unit="step") as bar:

        def on_step(step, total, patch, x):
            bar.set_postfix(patch=str(patch))
            bar.update(1)

        latent = sample_latent(
            models, cond, uncond, args.width, args.height, args.frames, args.seed, config, callback=on_step
        )
    frames = decode_latent(models.vae, latent)[0]
    audio, sample_rate = None, None
    if models.v2a is not None:
        with tqdm(total=args.audio_steps - 1, desc="sound", unit="step") as bar:
            waveform, sample_rate = generate_audio(
                models, frames[None], args.fps, args.seed, steps=args.audio_steps, callback=lambda *a: bar.update(1)
            )
        audio = waveform[0]
    path = write_video(args.out, frames, args.fps, audio=audio, sample_rate=sample_rate)
    sound = f", sound {audio.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz" if audio is not None else ", no sound"
    print(f"wrote {path}: {frames.shape[0]} frames of {args.width}x{args.height} at {args.fps} fps{sound}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core",
        description="Lumina-Video engine: generate video with sound, inspect and convert checkpoints, benchmark.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print a checkpoint's config, parameter count and dtype")
    info.add_argument(
        "checkpoint",
        help="a .safetensors / .pth file, or the released folder (consolidated.00-of-01.pth + model_args.pth)",
    )
    info.set_defaults(run=cmd_info)

    convert = commands.add_parser(
        "convert", help="rewrite a checkpoint as .safetensors with its config in the metadata"
    )
    convert.add_argument("src", help="a .pth / .safetensors file or the released folder")
    convert.add_argument("dst", help="output .safetensors path")
    convert.add_argument(
        "--dtype", choices=sorted(DTYPES), help="cast floating-point tensors (default: keep as stored)"
    )
    convert.set_defaults(run=cmd_convert)

    from . import embedded
    from .sampling import DEFAULT_PRESET, PRESETS, SOLVERS, format_time_aware
    from .toyworld.world import DEFAULT_CONFIG as TOY_WORLD

    default = PRESETS[DEFAULT_PRESET]
    generate = commands.add_parser(
        "generate",
        help="text to video with sound, with the embedded default models",
        description="Generate a video with sound. A preset sets every sampling value; the options below override "
        "single values. Per-step settings accept the reference's time-aware form, e.g. --cfg '(4, (0.6, 0))' "
        f"(guidance until t = 0.6) or --patch '{format_time_aware(default.patch)}' ({DEFAULT_PRESET}'s schedule).",
    )
    generate.add_argument("--prompt", required=True, help='what to show, e.g. "a red circle moving left"')
    generate.add_argument("--negative-prompt", default="", help="what to steer away from (default: empty)")
    generate.add_argument("--out", default="demo.mp4", help="output .mp4 or .webm (default demo.mp4)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--preset", choices=list(PRESETS), default=DEFAULT_PRESET, help=f"sampling preset (default {DEFAULT_PRESET})"
    )
    generate.add_argument("--steps", type=int, help="time-grid points (model calls + 1); default from the preset")
    generate.add_argument(
        "--time-shift", type=float, help="shift of the time grid towards noise; default from the preset"
    )
    generate.add_argument(
        "--cfg", help="CFG scale in the reference's convention (out = cond + cfg*(cond-uncond)); 0 turns it off"
    )
    generate.add_argument(
        "--motion",
        help="motion score of the positive pass; larger = faster (the embedded default's trained range is %g-%g)"
        % TOY_WORLD.speed_range,
    )
    generate.add_argument(
        "--neg-motion", help="motion score of the negative pass; a larger gap to --motion gives more motion"
    )
    generate.add_argument(
        "--motion-cfg",
        help="motion guidance: a third pass adds this x (cond - cond without its motion score), "
        "so --motion sets the speed more firmly; 0 is the reference's sampling (default from the preset)",
    )
    generate.add_argument("--patch", help="patch schedule: one scale ('1x2' for single-scale) or a time-aware schedule")
    generate.add_argument("--solver", choices=SOLVERS, help="ODE solver (default from the preset)")
    generate.add_argument("--width", type=int, default=embedded.WIDTH)
    generate.add_argument("--height", type=int, default=embedded.HEIGHT)
    generate.add_argument("--frames", type=int, default=embedded.FRAMES, help="a multiple of 8")
    generate.add_argument("--fps", type=float, default=embedded.FPS)
    generate.add_argument("--audio-steps", type=int, default=25, help="video-to-audio sampling steps")
    generate.add_argument("--no-audio", action="store_true", help="skip video-to-audio")
    generate.add_argument(
        "--models", type=Path, help="folder with dit/text_encoder/vae/v2a .safetensors (default: the embedded default)"
    )
    generate.set_defaults(run=cmd_generate)

    bench = commands.add_parser("bench", help="benchmarks: ratios measured in one run")
    bench.add_argument("--part", choices=("dit", "embedded", "vae", "all"), default="all")
    bench.add_argument("--quick", action="store_true", help="fewer repeats and steps (for smoke tests)")
    bench.add_argument("--gate", action="store_true", help="exit with status 1 when a gated ratio misses its target")
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
