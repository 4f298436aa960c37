"""Command line: python -m lumina_core {generate,info,convert,bench} ..."""

import argparse
from collections import Counter
from dataclasses import asdict
from pathlib import Path
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


def cmd_generate(args):
    from tqdm import tqdm

    from .media import write_video
    from .pipeline import ALL_PRESETS, EMBEDDED_DIR, check_video_size, decode_latent, encode_prompts, generate_audio, load_embedded, sample_latent
    from .sampler import parse_time_aware

    models = load_embedded(folder=args.models or EMBEDDED_DIR, with_audio=not args.no_audio)
    check_video_size(args.width, args.height, args.frames, models.dit, models.embedded)
    unknown = models.text_encoder.unknown_words(args.prompt)
    if unknown:
        print(f"warning: the embedded text encoder doesn't know {unknown}; it knows {sorted(models.text_encoder.index)}", file=sys.stderr)
    config = ALL_PRESETS[args.preset]
    changes = {"solver": args.solver}
    for name, text, kind in (("cfg", args.cfg, float), ("motion", args.motion, float), ("neg_motion", args.neg_motion, float), ("motion_cfg", args.motion_cfg, float), ("patch", args.patch, str)):
        if text is not None:
            changes[name] = parse_time_aware(text, f"--{name.replace('_', '-')}", kind)
    if args.steps is not None:
        changes["steps"] = args.steps
    config = config.with_(**changes)
    cond = encode_prompts(models, [args.prompt])
    uncond = encode_prompts(models, [args.negative_prompt])
    with tqdm(total=config.steps - 1, desc="sampling", unit="step") as bar:
        def on_step(step, total, scale, x):
            bar.set_postfix(patch=f"{scale[0]}x{scale[1]}")
            bar.update(1)

        latent = sample_latent(models, cond, uncond, args.width, args.height, args.frames, args.seed, config, callback=on_step)
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
    parser = argparse.ArgumentParser(prog="python -m lumina_core", description="Lumina-Video engine: generate video with sound, inspect and convert checkpoints, benchmark.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print a checkpoint's config, parameter count and dtype")
    info.add_argument("checkpoint", help="a .safetensors / .pth file, or the released folder (consolidated.00-of-01.pth + model_args.pth)")
    info.set_defaults(run=cmd_info)

    convert = commands.add_parser("convert", help="rewrite a checkpoint as .safetensors with its config in the metadata")
    convert.add_argument("src", help="a .pth / .safetensors file or the released folder")
    convert.add_argument("dst", help="output .safetensors path")
    convert.add_argument("--dtype", choices=sorted(DTYPES), help="cast floating-point tensors (default: keep as stored)")
    convert.set_defaults(run=cmd_convert)

    from .pipeline import ALL_PRESETS, EMBEDDED_FPS
    from .toyworld.world import DEFAULT_CONFIG as TOY_WORLD

    generate = commands.add_parser(
        "generate", help="text to video with sound, with the embedded default models",
        description="Generate a video with sound. Per-step settings accept the reference's time-aware form, "
        "e.g. --cfg '(4, (0.6, 0))' (guidance until t = 0.6) or --patch '(\"2x4\", (0.25, \"2x2\"), (0.45, \"1x2\"))'.",
    )
    generate.add_argument("--prompt", required=True, help='what to show, e.g. "a red circle moving left"')
    generate.add_argument("--negative-prompt", default="", help="what to steer away from (default: empty)")
    generate.add_argument("--out", default="demo.mp4", help="output .mp4 or .webm (default demo.mp4)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--preset", choices=sorted(ALL_PRESETS), default="embedded-MultiScale", help="sampling preset (default embedded-MultiScale)")
    generate.add_argument("--steps", type=int, help="time-grid points (model calls + 1); default from the preset")
    generate.add_argument("--cfg", help="CFG scale in the reference's convention (out = cond + cfg*(cond-uncond)); 0 turns it off")
    generate.add_argument("--motion", help="motion score of the positive pass; larger = faster (the embedded default's trained range is %g-%g)" % TOY_WORLD.speed_range)
    generate.add_argument("--neg-motion", help="motion score of the negative pass; a larger gap to --motion gives more motion")
    generate.add_argument(
        "--motion-cfg",
        help="motion guidance: a third pass adds this x (cond - cond without its motion score), so --motion sets the speed "
        "more firmly; 0 is the reference's sampling (default from the preset)",
    )
    generate.add_argument("--patch", help="patch schedule: one scale ('1x2' for single-scale) or a time-aware schedule")
    generate.add_argument("--solver", choices=("euler", "midpoint", "heun"), default="euler")
    generate.add_argument("--width", type=int, default=64)
    generate.add_argument("--height", type=int, default=64)
    generate.add_argument("--frames", type=int, default=16, help="a multiple of 8")
    generate.add_argument("--fps", type=float, default=EMBEDDED_FPS)
    generate.add_argument("--audio-steps", type=int, default=25, help="video-to-audio sampling steps")
    generate.add_argument("--no-audio", action="store_true", help="skip video-to-audio")
    generate.add_argument("--models", type=Path, help="folder with dit/text_encoder/vae/v2a .safetensors (default: the embedded default)")
    generate.set_defaults(run=cmd_generate)

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
