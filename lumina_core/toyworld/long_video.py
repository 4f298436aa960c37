"""Long videos on the toy world: 64 frames (four times the trained 16) in fused windows against naive chunking.

    python -m lumina_core.toyworld.long_video --clips 50

Held-out prompts, the embedded default, its default preset. Each clip j has the seed ``seed + 4 j``:

- windows: one 64-frame latent sampled in fused overlapping windows of the trained length (16 frames = 4 latent
  frames, overlapping by half, ``sampling/windows.py``) from that seed's noise;
- naive chunking: four independent 16-frame clips from seeds ``seed + 4 j + k`` (k = 0..3), concatenated;
- the 16-frame baseline: naive chunk 0, the trained length from the clip's own seed.

Per clip, from the pixels (``metrics.py``), with the clip cut into quarters of 16 frames: colour and shape read
the same (and not none) in every quarter; the prompted direction in the first quarter; the shape shows in every
frame; the per-quarter speed's std / mean; the stutter (largest frame-to-frame move over the median) of the
whole clip, and the largest move at the chunks' joins (frames 15|16, 31|32, 47|48) over the median. Sound: the
video-to-audio model on each windowed clip, whole; its length against frames / fps, and its onsets against the
bounces seen in the clip within +-1 frame (F1, pooled). Cost: one 64-frame windowed sample's time against the
window count times one 16-frame sample's time, both at batch 1.
"""

import argparse
import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import embedded
from ..pipeline import decode_latent, encode_prompts, generate_audio
from ..request import latent_shape
from ..sampling import PRESETS, WindowPlan, make_noise, sample, window_spans
from .metrics import (
    SyncScore,
    audio_visual_sync,
    centroid_steps,
    detect_colour,
    detect_direction,
    detect_shape,
    measure_motion,
    segment,
    stutter,
)
from .world import DEFAULT_CONFIG as WORLD
from .world import heldout_clips, parse_caption

FRAMES = 64
CHUNKS = 4
SEEDS_PER_CLIP = CHUNKS
TARGETS = dict(
    colour_steady=(">=", 0.95),
    shape_steady=(">=", 0.95),
    direction_first_quarter=(">=", 0.9),
    in_frame=(">=", 1.0),
    speed_cv_median=("<=", 0.2),
    stutter_median=("<=", 2.0),
)
SOUND_TARGETS = dict(onset_f1=(">=", 0.8), duration_exact=(">=", 1.0))


def default_plan(fuse: str = "pyramid") -> WindowPlan:
    """The command line's plan for the embedded default: its trained length, overlapping by half."""
    length = embedded.FRAMES // 4
    return WindowPlan(length, length // 2, fuse)


def noise_for(seeds: list[int], frames: int) -> torch.Tensor:
    """[len(seeds), 16, F/4, 8, 8]: each item the seeded noise ``make_noise`` gives that seed."""
    shape = latent_shape(WORLD.width, WORLD.height, frames, 1)
    return torch.cat([make_noise(shape, seed) for seed in seeds])


def clip_figures(frames: np.ndarray, caption: str) -> dict:
    """The per-clip measurements of a video [F, H, W, 3] cut into CHUNKS quarters."""
    content = parse_caption(caption)
    quarters = np.split(frames, CHUNKS)
    colours = [detect_colour(q) for q in quarters]
    shapes = [detect_shape(q) for q in quarters]
    speeds = np.array([measure_motion(q) for q in quarters])
    steps = centroid_steps(frames)
    median = float(np.median(steps)) if steps is not None else 0.0
    joins = [len(frames) // CHUNKS * k - 1 for k in range(1, CHUNKS)]  # step index i: frame i -> i + 1
    return dict(
        colour_steady=colours[0] is not None and len(set(colours)) == 1,
        colour_prompted=all(c == content.colour for c in colours),
        shape_steady=shapes[0] is not None and len(set(shapes)) == 1,
        shape_prompted=all(s == content.shape for s in shapes),
        direction_first_quarter=detect_direction(quarters[0]) == content.direction,
        in_frame=bool(segment(frames).present.all()),
        speed_cv=float(speeds.std() / speeds.mean()) if speeds.mean() > 0 else float("inf"),
        stutter=stutter(steps) if steps is not None else float("inf"),
        join_jump=float(steps[joins].max()) / median if steps is not None and median > 0 else float("inf"),
    )


def baseline_figures(frames: np.ndarray, caption: str) -> dict:
    """The 16-frame clip's stutter and prompted reads, for comparison."""
    content = parse_caption(caption)
    steps = centroid_steps(frames)
    return dict(
        stutter=stutter(steps) if steps is not None else float("inf"),
        colour_prompted=detect_colour(frames) == content.colour,
        shape_prompted=detect_shape(frames) == content.shape,
        direction=detect_direction(frames) == content.direction,
    )


@dataclass
class Summary:
    """Shares (booleans) and medians (floats) over clips for one method."""

    figures: dict = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[dict]) -> "Summary":
        figures = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            if isinstance(values[0], bool):
                figures[key] = float(np.mean(values))
            else:
                figures[f"{key}_median"] = float(np.median(values))
        return cls(figures)


def met(value: float, target: tuple) -> bool:
    sign, bound = target
    return value >= bound if sign == ">=" else value <= bound


def sampling_cost(models, cond, uncond, config, plan: WindowPlan) -> dict:
    """Seconds of one 64-frame windowed sample and of one 16-frame sample (batch 1), and the window count."""
    align = max(p.temporal for p in config.patch_sizes())
    windows = len(window_spans(FRAMES // 4, plan, 0, align))
    started = time.perf_counter()
    sample(models.dit, noise_for([0], embedded.FRAMES), cond, uncond, config)
    one = time.perf_counter() - started
    started = time.perf_counter()
    sample(models.dit, noise_for([0], FRAMES), cond, uncond, config, windows=plan)
    long = time.perf_counter() - started
    return dict(
        windowed_seconds=long,
        window_seconds=one,
        windows=windows,
        ratio_to_windows_times_one=long / (windows * one),
        seconds_per_frame_windowed=long / FRAMES,
        seconds_per_frame_16=one / embedded.FRAMES,
    )


def evaluate(clips: int, seed: int = 0, batch: int = 4, fuse: str = "pyramid", cost: bool = True) -> dict:
    """Figures of windows, naive chunking and the 16-frame baseline on ``clips`` held-out prompts."""
    models = embedded.load()
    config = PRESETS[embedded.PRESET]
    plan = default_plan(fuse)
    captions = [clip.caption for clip in heldout_clips(seed, clips)]
    uncond = encode_prompts(models, [""])
    rows = dict(windows=[], naive=[], baseline=[])
    sync, exact = SyncScore(0, 0, 0), 0
    for start in range(0, clips, batch):
        group = captions[start : start + batch]
        seeds = [seed + SEEDS_PER_CLIP * j for j in range(start, start + len(group))]
        cond = encode_prompts(models, group)
        long = sample(models.dit, noise_for(seeds, FRAMES), cond, uncond, config, windows=plan)
        windowed = decode_latent(models.vae, long).numpy()
        chunk_seeds = [s + k for s in seeds for k in range(CHUNKS)]
        chunk_cond = encode_prompts(models, [c for c in group for _ in range(CHUNKS)])
        chunks = sample(models.dit, noise_for(chunk_seeds, embedded.FRAMES), chunk_cond, uncond, config)
        chunk_frames = decode_latent(models.vae, chunks).numpy()  # [N * CHUNKS, 16, H, W, 3]
        naive = chunk_frames.reshape(len(group), CHUNKS * embedded.FRAMES, *chunk_frames.shape[2:])
        if models.v2a is not None:
            waveform, rate = generate_audio(models, torch.from_numpy(windowed), embedded.FPS, seeds[0])
            for j in range(len(group)):
                sync = sync + audio_visual_sync(windowed[j], waveform[j, 0].numpy(), rate, embedded.FPS)
                exact += waveform.shape[-1] * embedded.FPS == FRAMES * rate
        for j, caption in enumerate(group):
            rows["windows"].append(clip_figures(windowed[j], caption))
            rows["naive"].append(clip_figures(naive[j], caption))
            rows["baseline"].append(baseline_figures(chunk_frames[CHUNKS * j], caption))
        print(f"{start + len(group)}/{clips} clips", flush=True)
    report = dict(
        clips=clips,
        seed=seed,
        plan=dict(length=plan.length, overlap=plan.overlap, fuse=plan.fuse, shift=plan.shift),
        preset=embedded.PRESET,
        **{name: Summary.of(values).figures for name, values in rows.items()},
    )
    if models.v2a is not None:
        report["sound"] = dict(onset_f1=sync.f1, duration_exact=exact / clips)
    if cost:
        report["cost"] = sampling_cost(models, encode_prompts(models, captions[:1]), uncond, config, plan)
    return report


def checks(report: dict, method: str = "windows") -> dict:
    """target name -> (measured, target, met) for one method's figures."""
    figures = report[method]
    return {name: (figures[name], target, met(figures[name], target)) for name, target in TARGETS.items()}


def print_report(report: dict):
    print(f"{report['clips']} held-out clips, {FRAMES} frames, preset {report['preset']}, plan {report['plan']}")
    print(f"{'figure':26} {'target':>8} {'windows':>9} {'':6} {'naive':>9} {'':6}")
    for name, target in TARGETS.items():
        row = f"{name:26} {target[0]}{target[1]:>6g}"
        for method in ("windows", "naive"):
            value = report[method][name]
            row += f" {value:9.3f} {'met' if met(value, target) else 'missed':6}"
        print(row)
    for name in ("colour_prompted", "shape_prompted", "join_jump_median"):
        print(f"{name:26} {'':>8} {report['windows'][name]:9.3f} {'':6} {report['naive'][name]:9.3f}")
    if "sound" in report:
        sound = report["sound"]
        verdicts = {name: met(sound[name], target) for name, target in SOUND_TARGETS.items()}
        print(f"sound of the windowed clips: onset F1 {sound['onset_f1']:.3f} (>= 0.8: "
              f"{'met' if verdicts['onset_f1'] else 'missed'}), exactly frames / fps long in "
              f"{sound['duration_exact']:.2f} of clips")  # fmt: skip
    base = report["baseline"]
    print(
        f"16-frame baseline: stutter median {base['stutter_median']:.3f}, colour {base['colour_prompted']:.3f}, "
        f"shape {base['shape_prompted']:.3f}, direction {base['direction']:.3f}"
    )
    if "cost" in report:
        c = report["cost"]
        print(
            f"cost: 64 frames windowed {c['windowed_seconds']:.2f} s = {c['ratio_to_windows_times_one']:.2f} x "
            f"({c['windows']} windows x one 16-frame sample {c['window_seconds']:.2f} s); per frame "
            f"{c['seconds_per_frame_windowed']:.3f} s against {c['seconds_per_frame_16']:.3f} s at 16 frames"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.long_video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clips", type=int, default=50, help="held-out prompts (50 for docs/long-videos.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4, help="clips sampled together")
    parser.add_argument("--fuse", choices=("uniform", "pyramid", "gaussian"), default="pyramid")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report = evaluate(args.clips, args.seed, args.batch, args.fuse)
    print_report(report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0 if all(ok for _, _, ok in checks(report).values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
