"""Command line: python -m lumina_core {generate,info,convert,bench} ..."""

import argparse
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
RELEASED_VIDEO = (1248, 704, 96, 24.0)  # the reference's f24R960 size: width, height, frames, fps


def seconds_since_process_start() -> float:
    """Wall time since this process started (Linux: /proc), so that a total includes the interpreter's start-up and
    every import; elsewhere, since this module was imported."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - IMPORTED


IMPORTED = time.perf_counter()


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


@dataclass(frozen=True)
class BenchPart:
    """One part of ``bench``: its function in ``lumina_core.bench.<module>``, and what its gate checks (the name of
    the target, and the key of the function's result that says whether it was met), if it has one."""

    module: str
    function: str
    gate: Optional[tuple[str, str]] = None
    takes_quick: bool = True

    def run(self, quick: bool):
        from importlib import import_module

        run = getattr(import_module(f"{__package__}.bench.{self.module}"), self.function)
        return run(quick=quick) if self.takes_quick else run()


BENCH_PARTS = {
    "demo": BenchPart("demo", "run_demo_benchmark"),
    "cache": BenchPart("cache", "run_cache_benchmark"),
    "compile": BenchPart(
        "compile", "run_compile_benchmark", ("compiled outputs within 1e-4 of eager", "within_tolerance")
    ),
    "parallel": BenchPart("parallel", "run_parallel_benchmark"),
    "dit": BenchPart("dit", "run_dit_benchmark"),
    "embedded": BenchPart(
        "embedded", "run_embedded_benchmark", ("embedded multi-scale / single-scale sampling time", "passed")
    ),
    "vae": BenchPart("vae", "run_vae_benchmark"),
    "windows": BenchPart(
        "windows", "run_windows_benchmark", ("64 frames in windows: time and peak memory against 16", "passed")
    ),
    "memory": BenchPart("memory", "run_memory_estimate", takes_quick=False),
    "convert": BenchPart("convert", "run_convert_benchmark", ("converter peak memory / output size", "passed")),
}
NOT_IN_ALL = ("convert",)  # at the released size it writes ~14 GB to a temporary folder


def cmd_bench(args):
    if args.tiny and not args.gpu:
        raise ValueError("--tiny goes with --gpu (the GPU benchmark's code on tiny configs, on the CPU)")
    if args.gpu:
        from .bench.gpu import run_gpu_benchmark

        run_gpu_benchmark(tiny=args.tiny)
        return
    names = [name for name in BENCH_PARTS if name not in NOT_IN_ALL] if args.part == "all" else [args.part]
    missed = []
    for name in names:
        part = BENCH_PARTS[name]
        result = part.run(args.quick)
        if part.gate is not None and not result[part.gate[1]]:
            missed.append(part.gate[0])
    if missed and args.gate:
        raise SystemExit(f"bench: target missed: {', '.join(missed)}")


def block_indices(text: str) -> tuple[int, ...]:
    """'--skip-layers -1' or '3,4' -> (-1,) or (3, 4)."""
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of block indices: write them comma-separated, e.g. '-1' or '3,4'"
        ) from None
    return indices


def sampling_config(args, preset_name: str, latent_shape: tuple, patch_sizes):
    """The preset, whole, with the per-step options given on the command line as explicit overrides. --time-shift
    auto is the auto shift of ``latent_shape``, the latent the model sees at once, at its finest of ``patch_sizes``."""
    from .sampling import parse_time_aware, preset, resolve_time_shift
    from .sampling.presets import TIME_AWARE_KINDS

    changes = {}
    for name, kind in TIME_AWARE_KINDS.items():
        text = getattr(args, name)
        if text is not None:
            changes[name] = parse_time_aware(text, f"--{name.replace('_', '-')}", kind)
    for name in ("steps", "solver", "skip_layers"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.time_shift is not None:
        changes["time_shift"] = resolve_time_shift(args.time_shift, latent_shape, patch_sizes)
    return preset(preset_name).with_(**changes)


def wants_released(args) -> bool:
    """Released weights (--dit/--text-encoder/--vae, or a --models folder of them) rather than the embedded default
    (no model options, or a --models folder holding a toy-world export: its tiny text encoder tells)."""
    from .io.checkpoints import checkpoint_kind

    if args.dit or args.text_encoder or args.vae:
        return True
    if args.models is None:
        return False
    tiny = args.models / "text_encoder.safetensors"
    return not (tiny.is_file() and checkpoint_kind(tiny) == "text_encoder")


def load_models(args, device: torch.device, dtype: torch.dtype):
    """(models, preset name, default video size (width, height, frames, fps)) for this run."""
    from . import embedded
    from .sampling.presets import RELEASED_DEFAULT_PRESET

    if not wants_released(args):
        models = embedded.load(device=device, where=args.models, with_audio=not args.no_audio)
        return models, embedded.PRESET, (embedded.WIDTH, embedded.HEIGHT, embedded.FRAMES, embedded.FPS)
    from .released import ReleasedFiles, find_released, load_released

    found = find_released(args.models) if args.models else None
    files = ReleasedFiles(
        dit=args.dit or (found and found.dit),
        text_encoder=args.text_encoder or (found and found.text_encoder),
        vae=args.vae or (found and found.vae),
        v2a=None if args.no_audio else args.v2a or (found and found.v2a),
    )
    missing = [option for option, path in (("--dit", files.dit), ("--text-encoder", files.text_encoder),
                                           ("--vae", files.vae)) if path is None]  # fmt: skip
    if missing:
        raise ValueError(f"the released weights need {', '.join(missing)} too (or --models FOLDER holding them)")
    models, notes = load_released(files, dtype=dtype, device=device)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if models.v2a is None and not args.no_audio:
        print("note: no video-to-audio model given, so the video has no sound (no V2A weights have been published; "
              "--v2a FILE adds one)", file=sys.stderr)  # fmt: skip
    return models, RELEASED_DEFAULT_PRESET, RELEASED_VIDEO


def lora_option(text: str):
    """argparse type of --lora: PATH[:STRENGTH] -> (path, strength)."""
    from .lora import parse_spec

    try:
        return parse_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def apply_loras(dit, specs, verbose: bool):
    """Merge each --lora (path, strength) into the DiT's weights; every file is checked against the DiT first."""
    from .lora import NAME_KEY, apply, load_lora

    loras = []
    for path, strength in specs:
        try:
            loras.append((load_lora(path, dit.state_dict()), strength))
        except (ValueError, FileNotFoundError) as error:
            raise ValueError(f"--lora: {error}") from None
    apply(dit, loras)
    if verbose:
        for (path, _), (lora, strength) in zip(specs, loras):
            style = lora.metadata.get(NAME_KEY, "no style name")
            print(f"LoRA {path} ({style}, {len(lora.modules)} layers) at strength {strength:g}")


def keyframe_option(text: str):
    """argparse type of --keyframe: PATH:FRAME -> (path, frame)."""
    from .conditioning import parse_keyframe

    try:
        return parse_keyframe(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def conditioning_for(args, models, width: int, height: int, frames: int):
    """The --image/--keyframe/--video/--mask/--denoise task as a ``conditioning.Conditioning``, or None; held the
    --conditioning way, by default the way the DiT was trained for."""
    from .conditioning import from_files

    mechanism = args.conditioning or models.conditioning
    if mechanism == "timestep" and models.conditioning != "timestep":
        raise ValueError(
            "--conditioning timestep: these DiT weights were not fine-tuned with per-token timesteps (their file has "
            "no lumina_video_conditioning metadata), so known frames marked clean would confuse them; use "
            "--conditioning replace, which works with any weights"
        )
    return from_files(
        models.vae,
        width,
        height,
        frames,
        image=args.image,
        image_frame=args.image_frame,
        keyframes=args.keyframe,
        video=args.video,
        mask=args.mask,
        denoise=args.denoise,
        mechanism=mechanism,
    )


def window_plan(args, models, frames: int, trained: int):
    """The --window/--overlap/--fuse plan (video frames -> latent frames), or None for one pass over the clip.

    Windows come on by themselves for a clip longer than the model takes (``longest_window``): the model's trained
    length, overlapping by half.
    """
    from .pipeline import longest_window
    from .sampling.windows import plan_in_video_frames

    limit = longest_window(models.dit, models.size_limits)
    if args.window is None and args.overlap is None and frames <= limit:
        return None
    window = args.window if args.window is not None else min(trained, limit)
    overlap = args.overlap if args.overlap is not None else window // 16 * 8
    return plan_in_video_frames(window, overlap, args.fuse, limit, names=("--window", "--overlap"))


def tile_plan(args, models, width: int, height: int) -> Optional[dict]:
    """The --tile/--tile-overlap spatial tiles as ``WindowPlan`` fields (latent), or None for whole frames.

    Tiles come on by themselves for frames larger than the model takes (the embedded default's 64x64): tiles of that
    size, overlapping by half.
    """
    from .sampling.windows import tiles_in_pixels

    limits = models.size_limits
    if args.tile is None:
        if not limits or (width <= limits["width"][1] and height <= limits["height"][1]):
            return None
        tile = (min(height, limits["height"][1]), min(width, limits["width"][1]))
    else:
        tile = tuple(args.tile)
    overlap = args.tile_overlap if args.tile_overlap is not None else min(tile) // 16 * 8
    return tiles_in_pixels(*tile, overlap, limits, names=("--tile", "--tile-overlap"))


def with_tiles(windows, tiles: Optional[dict], frames: int):
    """The frame-window plan (or one window over the clip) with the spatial tiles of ``tile_plan`` added."""
    from dataclasses import replace

    from .request import latent_frames_for
    from .sampling import WindowPlan

    if tiles is None:
        return windows
    return replace(windows or WindowPlan(latent_frames_for(frames), 0), **tiles)


@contextmanager
def on_device(module, device: torch.device, offload: bool):
    """Run a stage with ``module`` on ``device``; with offload, it waits on the CPU before and after."""
    if offload and module is not None:
        module.to(device)
    try:
        yield
    finally:
        if offload and module is not None:
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def cmd_generate(args):
    from tqdm import tqdm

    from . import parallel
    from .io.media import write_video
    from .pipeline import compile_blocks, decode_latent, encode_prompts, generate_audio, refine, sample_latent
    from .request import VAE_SPATIAL, check_video_size, latent_shape
    from .sampling import AUTO, StepCache, window_spans
    from .sampling.windows import tiles_in_pixels

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    parallel.init_from_env(device)  # under torchrun: every rank samples, its share of the DiT's tokens; rank 0 writes
    lead = parallel.rank() == 0
    dtype = DTYPES[args.dtype] if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    models, preset_name, (width, height, frames, fps) = load_models(
        args, torch.device("cpu") if args.offload else device, dtype
    )
    trained_frames = frames
    apply_loras(models.dit, args.lora, lead)
    if args.compile:
        compile_blocks(models.dit)
    preset_name = args.preset or preset_name
    width, height, frames, fps = (args.width or width, args.height or height, args.frames or frames, args.fps or fps)
    windows = window_plan(args, models, frames, trained_frames)
    window = 4 * windows.length if windows is not None and frames > 4 * windows.length else None
    windows = with_tiles(windows, tile_plan(args, models, width, height), frames)
    tile = None if windows is None else windows.tile_pixels
    check_video_size(width, height, frames, 1, models.dit.patch_sizes, models.size_limits, window=window, tile=tile)
    if args.upscale < 1:
        raise ValueError(f"--upscale {args.upscale} must be a whole factor of at least 1 (2 doubles width and height)")
    if not 0 < args.refine_start < 1:
        raise ValueError(f"--refine-start {args.refine_start} must lie in (0, 1): 0 is noise, 1 the video itself")
    check_video_size(
        args.upscale * width, args.upscale * height, frames, 1, models.dit.patch_sizes, None, window=window
    )
    shape = latent_shape(*(tile[::-1] if tile else (width, height)), window or frames)
    config = sampling_config(args, preset_name, shape, models.dit.patch_sizes)
    if hasattr(models.text_encoder, "check_prompt"):  # the embedded default's encoder knows only its world's words
        models.text_encoder.check_prompt(args.prompt, "--prompt")
        models.text_encoder.check_prompt(args.negative_prompt, "--negative-prompt")
    with on_device(models.vae, device, args.offload):
        known = conditioning_for(args, models, width, height, frames)
    if lead:
        print(f"preset {preset_name}, {width}x{height}, {frames} frames at {fps:g} fps, seed {args.seed}, {device}")
        if args.time_shift == AUTO:
            print(f"time shift {config.time_shift:.3g} (auto, from the token count)")
        if window is not None:
            align = max(p.temporal for p in config.patch_sizes())
            spans = " ".join(f"{a}-{b - 1}" for a, b in window_spans(frames // 4, windows, 0, align))
            moves = f"shifted {align} a step" if windows.shift and windows.stride > align else "not shifted"
            print(f"windows: {window} frames overlapping by {4 * windows.overlap}, {windows.fuse} fuse; latent frames "
                  f"{spans} at the first step, {moves}")  # fmt: skip
        if tile is not None:
            print(f"tiles: {tile[1]}x{tile[0]} overlapping by {VAE_SPATIAL * windows.tile_overlap} px, fused")
        if args.upscale > 1:
            print(f"upscale: {args.upscale}x to {args.upscale * width}x{args.upscale * height} by a refine pass from "
                  f"t = {args.refine_start:g} in tiles of {width}x{height} overlapping by half")  # fmt: skip
    stages = {}
    started = time.perf_counter()
    with on_device(models.text_encoder, device, args.offload):
        cond = encode_prompts(models, [args.prompt])
        uncond = encode_prompts(models, [args.negative_prompt])
    stages["text"], started = time.perf_counter() - started, time.perf_counter()
    with (
        on_device(models.dit, device, args.offload),
        tqdm(total=config.steps - 1, desc="sampling", unit="step", disable=not lead) as bar,
    ):

        def on_step(step, total, patch, x):
            bar.total = total  # video-to-video starts later on the time grid
            bar.set_postfix(patch=str(patch))
            bar.update(1)

        cache = StepCache(args.cache)
        latent = sample_latent(
            models,
            cond,
            uncond,
            width,
            height,
            frames,
            args.seed,
            config,
            callback=on_step,
            cache=cache,
            known=known,
            windows=windows,
        )
    parallel.close()
    if not lead:
        return
    stages["sampling"], started = time.perf_counter() - started, time.perf_counter()
    if args.upscale > 1:
        with on_device(models.vae, device, args.offload), on_device(models.dit, device, args.offload):
            small = decode_latent(models.vae, latent.to(device, dtype))
            plan = with_tiles(windows, tiles_in_pixels(height, width, min(height, width) // 16 * 8), frames)
            latent = refine(models, small, cond, uncond, config, args.upscale, args.refine_start, args.seed, plan)
        width, height = args.upscale * width, args.upscale * height
        stages["refine"], started = time.perf_counter() - started, time.perf_counter()
    with on_device(models.vae, device, args.offload):
        video = decode_latent(models.vae, latent.to(device, dtype))[0].cpu()
    stages["decode"], started = time.perf_counter() - started, time.perf_counter()
    audio, sample_rate = None, None
    if models.v2a is not None:
        with (
            on_device(models.v2a, device, args.offload),
            tqdm(total=args.audio_steps - 1, desc="sound", unit="step") as bar,
        ):
            waveform, sample_rate = generate_audio(
                models,
                video[None].to(device),
                fps,
                args.seed,
                steps=args.audio_steps,
                callback=lambda *a: bar.update(1),
            )
        audio = waveform[0].float().cpu()
    stages["sound"] = time.perf_counter() - started
    path = write_video(args.out, video, fps, audio=audio, sample_rate=sample_rate)
    sound = f", sound {audio.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz" if audio is not None else ", no sound"
    print(f"wrote {path}: {video.shape[0]} frames of {width}x{height} at {fps:g} fps{sound}")
    stages.update(total=seconds_since_process_start(), clip=video.shape[0] / fps)
    print("timings: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items()))


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
    from .sampling import DEFAULT_PRESET, FUSES, PRESETS, REFINE_START, SOLVERS, format_time_aware
    from .sampling.time_shift import time_shift_option
    from .toyworld.world import DEFAULT_CONFIG as TOY_WORLD

    default = PRESETS[DEFAULT_PRESET]
    generate = commands.add_parser(
        "generate",
        help="text to video with sound: the embedded default, or the released weights",
        description="Generate a video with sound. Without model options it runs the embedded default (tiny toy-world "
        "models, CPU, seconds); --models FOLDER (or --dit, --text-encoder, --vae) runs the released weights: the "
        "Lumina-Video-f24R960 DiT, Gemma-2-2B and the CogVideoX VAE, found in the folder by their contents. A preset "
        "sets every sampling value (default: the embedded default's, or the reference's f24F96R960-MultiScale for "
        "released weights); the options below override single values. Per-step settings accept the reference's "
        "time-aware form, e.g. --cfg '(4, (0.6, 0))' (guidance until t = 0.6) or "
        f"--patch '{format_time_aware(default.patch)}' ({DEFAULT_PRESET}'s schedule).",
    )
    generate.add_argument("--prompt", required=True, help='what to show, e.g. "a red circle moving left"')
    generate.add_argument("--negative-prompt", default="", help="what to steer away from (default: empty)")
    generate.add_argument("--out", default="demo.mp4", help="output .mp4 or .webm (default demo.mp4)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--preset", choices=list(PRESETS), help=f"sampling preset (default {DEFAULT_PRESET}, or f24F96R960-MultiScale)"
    )
    generate.add_argument("--steps", type=int, help="time-grid points (model calls + 1); default from the preset")
    generate.add_argument(
        "--time-shift",
        type=time_shift_option,
        help="shift of the time grid towards noise; 'auto' sets it from the tokens the model sees (the latent, or "
        "one window of it, at the finest patch size), through the reference's two presets at their own sizes (8 at "
        "672x384x64, 24 at 1248x704x96; docs/native.md); default from the preset",
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
    generate.add_argument(
        "--skip-guidance",
        help="skip-layer guidance (LTX-Video's STG): a fourth pass runs the model without --skip-layers and the "
        "output moves this x away from it, sharpening what those blocks add; 0 is the reference's sampling "
        "(default from the preset; a time-aware value such as '(0, (0.5, 1))' starts it at t = 0.5); "
        "--upscale's refine pass runs without it",
    )
    generate.add_argument(
        "--skip-layers",
        type=block_indices,
        help="the blocks skip-layer guidance leaves out, comma-separated indices, negative from the end "
        "(default from the preset: -1, the last block)",
    )
    generate.add_argument("--patch", help="patch schedule: one scale ('1x2' for single-scale) or a time-aware schedule")
    generate.add_argument("--solver", choices=SOLVERS, help="ODE solver (default from the preset)")
    generate.add_argument(
        "--cache",
        type=float,
        default=0.0,
        help="step caching: skip the DiT's blocks on a step while the summed relative change of their input since "
        "the last full step stays under this threshold (0: off; see docs/benchmarks.md, Step caching)",
    )
    w, h, f, fps = RELEASED_VIDEO
    sizes = f"embedded default {embedded.WIDTH}x{embedded.HEIGHT}, {embedded.FRAMES} frames at {embedded.FPS} fps"
    sizes += f"; released {w}x{h}, {f} frames at {fps:g} fps"
    generate.add_argument("--width", type=int, help=f"video width in pixels, a multiple of 32 (default: {sizes})")
    generate.add_argument("--height", type=int, help="video height in pixels, a multiple of 32")
    generate.add_argument("--frames", type=int, help="number of frames, a multiple of 8")
    generate.add_argument("--fps", type=float, help="frames per second of the file")
    windows = generate.add_argument_group(
        "long videos and large frames",
        "a clip longer than the model takes (embedded default: %d-%d frames) is sampled in overlapping windows, "
        "frames larger than it takes (embedded default: 64x64) in overlapping tiles, whose predictions are fused at "
        "every step (MultiDiffusion); both on by themselves beyond the limits" % embedded.SIZES["frames"],
    )
    windows.add_argument(
        "--window", type=int, help="video frames per window, a multiple of 8 (default: the model's trained length)"
    )
    windows.add_argument("--overlap", type=int, help="video frames shared by neighbouring windows (default: half)")
    windows.add_argument("--fuse", choices=FUSES, default="pyramid", help="how overlapping windows are weighed")
    windows.add_argument(
        "--tile",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="sample frames in spatial tiles of this many pixels, fused the same way (on by itself beyond the "
        "model's size: the embedded default's 64x64)",
    )
    windows.add_argument("--tile-overlap", type=int, help="pixels shared by neighbouring tiles (default: half)")
    windows.add_argument(
        "--upscale",
        type=int,
        default=1,
        help="2 (or more): draw the video at --width x --height, then redraw it that many times larger by a refine "
        "pass in tiles (Lumiere's super-resolution stage; docs/long-videos.md)",
    )
    windows.add_argument(
        "--refine-start",
        type=float,
        default=REFINE_START,
        help=f"the refine pass's start time, 0 (noise) to 1 (the video) (default {REFINE_START}, the best measured)",
    )
    generate.add_argument("--audio-steps", type=int, default=25, help="video-to-audio sampling steps")
    generate.add_argument("--no-audio", action="store_true", help="skip video-to-audio")
    generate.add_argument(
        "--models",
        type=Path,
        help="folder with the released weights (the Lumina-Video-f24R960 folder, gemma_2_2b_fp16.safetensors, the "
        "CogVideoX VAE; any names), or a toy-world export (dit/text_encoder/vae/v2a.safetensors)",
    )
    generate.add_argument("--dit", type=Path, help="the released DiT: its folder, the .pth or a converted .safetensors")
    generate.add_argument("--text-encoder", type=Path, help="Gemma-2-2B: ComfyUI's .safetensors or the HF folder")
    generate.add_argument(
        "--vae", type=Path, help="the CogVideoX VAE: diffusion_pytorch_model.safetensors or its folder"
    )
    generate.add_argument("--v2a", type=Path, help="a video-to-audio model (.safetensors); none has been published")
    generate.add_argument(
        "--lora",
        action="append",
        default=[],
        type=lora_option,
        metavar="PATH[:STRENGTH]",
        help="merge a LoRA into the DiT at STRENGTH (default 1; 0 leaves the model exactly as it is); repeatable. "
        "The embedded default has lumina_core/embedded/style_lora.safetensors (docs/style-lora.md)",
    )
    given = generate.add_argument_group(
        "conditioning",
        "what is given of the video, held in place while the rest is generated (replacement; works with any "
        "weights). Images, videos and masks of another size are scaled to cover --width x --height and "
        "centre-cropped. The VAE keeps 4 video frames per latent frame: an image at frame N holds frames "
        "4*(N//4) to 4*(N//4)+3, which come back as 4 nearly equal frames",
    )
    given.add_argument("--image", type=Path, help="image-to-video: an image the video shows at --image-frame")
    given.add_argument(
        "--image-frame", type=int, help="the video frame --image is (default 0; frame N lies in latent frame N // 4)"
    )
    given.add_argument(
        "--keyframe",
        action="append",
        default=[],
        type=keyframe_option,
        metavar="PATH:FRAME",
        help="an image at video frame FRAME; repeatable, one per group of 4 frames (e.g. first.png:0 last.png:15)",
    )
    given.add_argument(
        "--video",
        type=Path,
        help="a video: with --denoise, video-to-video; with --mask, inpainting; with --frames longer than it, "
        "extension (its frames start the longer video)",
    )
    given.add_argument(
        "--denoise",
        type=float,
        help="with --video: how much is redrawn, in (0, 1]; sampling starts at t = 1 - S from the video's latent "
        "(1 is text-to-video with the same seed)",
    )
    given.add_argument(
        "--mask",
        type=Path,
        help="white = regenerate: with --video (inpainting), a greyscale image for every frame or a mask video; "
        "with --image (cinemagraph), where the still image moves",
    )
    given.add_argument(
        "--conditioning",
        choices=("replace", "timestep"),
        help="how the given parts are held: replace (training-free, any weights) or timestep (per-token timesteps, "
        "LTX-Video's; for a DiT fine-tuned for them); default: what the DiT was trained for",
    )
    generate.add_argument("--device", help="where the models run (default: cuda when available, else cpu)")
    generate.add_argument(
        "--dtype", choices=sorted(DTYPES), help="weights' precision (default: bf16 on a GPU, else fp32)"
    )
    generate.add_argument(
        "--offload", action="store_true", help="keep the models on the CPU and move each to --device only for its stage"
    )
    generate.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the DiT's blocks: the first steps at each patch size compile (about a minute on a CPU); "
        "off by default, since on the CPU it pays only after tens of large-model calls (docs/benchmarks.md, Compile)",
    )
    generate.set_defaults(run=cmd_generate)

    bench = commands.add_parser(
        "bench",
        help="benchmarks: ratios measured in one run",
        description="Benchmarks, measured in one run on this machine (docs/benchmarks.md). 'all' runs every part "
        "but convert: the demo's stage timings, step caching, compile, sequence parallel, the DiT's throughput, "
        "multi-scale against single-scale, the VAE, the memory estimate. --gpu runs the released architecture "
        "with random weights on a CUDA GPU instead.",
    )
    bench.add_argument(
        "--part",
        choices=(*BENCH_PARTS, "all"),
        default="all",
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats and steps (for smoke tests)")
    bench.add_argument(
        "--gpu",
        action="store_true",
        help="time the released configs (random weights, bf16) on one CUDA GPU: seconds per step at each patch "
        "size, multi-scale against single-scale, TFLOP/s against the card's peak, peak memory with and without "
        "offload (a few minutes on an H100)",
    )
    bench.add_argument("--tiny", action="store_true", help="with --gpu: the same code on tiny configs, on the CPU")
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
