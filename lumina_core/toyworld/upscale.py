"""Larger frames than the model was trained for, measured on the toy world's held-out prompts.

    python -m lumina_core.toyworld.upscale --clips 50

The embedded default draws 64x64. Three ways to 128x128, each from the same held-out prompts and seeds under the
embedded-MultiScale preset:

- bicubic: the 64x64 video scaled up, nothing redrawn (the baseline);
- refine from t (Lumiere's super-resolution stage as a refine pass, ``pipeline.refine``): the scaled video encoded
  at 128x128 and redrawn from time t in spatial tiles of 64x64 overlapping by half, fused by MultiDiffusion, for
  each start time in ``STARTS``;
- tiles from noise: 128x128 sampled from noise in the same tiles, no 64x64 video first.

Each is read as the evaluation reads 64x64 clips (colour, shape; the reads are size-independent) and for seams: the
mean absolute step between neighbouring pixel columns and rows on the lines where tiles meet (every 32 px, where
tile borders fall as the tiles shift) over the same mean on every other line (1 = no seam).
"""

import argparse
import json

import numpy as np
import torch

from .. import embedded
from ..pipeline import decode_latent, encode_prompts, refine, sample_latent
from ..request import VAE_SPATIAL
from ..sampling.presets import PRESETS
from ..sampling.windows import WindowPlan
from .metrics import detect_colour, detect_shape
from .world import DEFAULT_CONFIG, heldout_clips

PRESET = "embedded-MultiScale"
SCALE = 2
STARTS = (0.6, 0.7, 0.8, 0.9)
TILES = WindowPlan(4, 2, tile=(8, 8), tile_overlap=4)
"""The trained 64x64 (8x8 latent pixels) a tile, overlapping by half; frames whole (16, the trained length)."""
TARGETS = {"colour": 0.95, "shape drop": 0.05, "seam ratio": 1.5}


def seam_ratio(videos: torch.Tensor, spacing: int = 4 * VAE_SPATIAL) -> float:
    """Mean |step| across the lines every ``spacing`` px over the mean across all other lines, both directions;
    videos [N, F, H, W, 3]."""
    steps_x = (videos[:, :, :, 1:] - videos[:, :, :, :-1]).abs().mean(dim=(0, 1, 2, 4))  # [W-1]: between x-1 and x
    steps_y = (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))  # [H-1]
    ratios = []
    for steps in (steps_x, steps_y):
        border = torch.zeros(len(steps), dtype=torch.bool)
        border[spacing - 1 :: spacing] = True
        ratios.append(float(steps[border].mean() / steps[~border].mean()))
    return max(ratios)


def reads(videos: torch.Tensor, clips) -> dict:
    return {
        "colour": float(np.mean([detect_colour(v.numpy()) == c.colour for v, c in zip(videos, clips)])),
        "shape": float(np.mean([detect_shape(v.numpy()) == c.shape for v, c in zip(videos, clips)])),
        "seam ratio": seam_ratio(videos),
    }


def evaluate(n_clips: int = 50, seed: int = 0, batch: int = 25, starts=STARTS, from_noise: bool = True) -> dict:
    """name -> reads (colour, shape, seam ratio) of every way, on ``n_clips`` held-out prompts (``from_noise``:
    also tiles from noise, the costliest way)."""
    models = embedded.load(with_audio=False)
    clips = heldout_clips(seed, n_clips)
    config, world = PRESETS[PRESET], DEFAULT_CONFIG
    uncond = encode_prompts(models, [""])
    big = (SCALE * world.width, SCALE * world.height, world.num_frames)
    ways = {"64x64": [], "bicubic": [], **({"tiles from noise": []} if from_noise else {})}
    ways.update({f"refine from t={t}": [] for t in starts})
    with torch.no_grad():
        for start in range(0, n_clips, batch):
            part = clips[start : start + batch]
            cond = encode_prompts(models, [c.caption for c in part])
            args = (seed + start, config, len(part))
            small = decode_latent(models.vae, sample_latent(models, cond, uncond, world.width, world.height,
                                                             world.num_frames, *args))  # fmt: skip
            ways["64x64"].append(small)
            scaled = torch.nn.functional.interpolate(
                small.permute(0, 1, 4, 2, 3).flatten(0, 1), scale_factor=SCALE, mode="bicubic"
            )
            ways["bicubic"].append(scaled.clamp(0, 1).unflatten(0, small.shape[:2]).permute(0, 1, 3, 4, 2))
            if from_noise:
                latent = sample_latent(models, cond, uncond, *big, *args, windows=TILES)
                ways["tiles from noise"].append(decode_latent(models.vae, latent))
            for t in starts:
                refined = refine(models, small, cond, uncond, config, SCALE, t, seed + start, TILES)
                ways[f"refine from t={t}"].append(decode_latent(models.vae, refined))
    return {name: reads(torch.cat(videos), clips) for name, videos in ways.items()}


def checks(report: dict, way: str) -> dict:
    """name -> (measured, target, met) for one way against the issue's targets (shape: at most 5 points under
    64x64's)."""
    figures = report[way]
    drop = report["64x64"]["shape"] - figures["shape"]
    return {
        "colour": (figures["colour"], TARGETS["colour"], figures["colour"] >= TARGETS["colour"]),
        "shape drop from 64x64": (drop, TARGETS["shape drop"], drop <= TARGETS["shape drop"] + 1e-9),
        "seam ratio": (figures["seam ratio"], TARGETS["seam ratio"], figures["seam ratio"] <= TARGETS["seam ratio"]),
    }


def best_start(report: dict) -> float:
    """The refine start time with the best shape among those meeting the colour and seam targets (else all)."""
    refined = {float(name.split("=")[1]): name for name in report if name.startswith("refine")}
    meeting = [
        t for t, name in refined.items() if checks(report, name)["colour"][2] and checks(report, name)["seam ratio"][2]
    ]
    return max(meeting or refined, key=lambda t: (report[refined[t]]["shape"], t))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.upscale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clips", type=int, default=50, help="held-out prompts (50 for docs/long-videos.md)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report = evaluate(args.clips, args.seed, args.batch)
    print(f"128x128 from the embedded default ({PRESET}), {args.clips} held-out prompts")
    print(f"{'way':<22} {'colour':>7} {'shape':>7} {'seam ratio':>11}")
    for name, figures in report.items():
        print(f"{name:<22} {figures['colour']:>7.2f} {figures['shape']:>7.2f} {figures['seam ratio']:>11.2f}")
    best = best_start(report)
    verdicts = checks(report, f"refine from t={best}")
    print(f"best refine start: t = {best}")
    for name, (value, target, met) in verdicts.items():
        print(
            f"  {name}: {value:.3f} (target {'<=' if name != 'colour' else '>='} {target}) {'met' if met else 'missed'}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(report=report, best_start=best, checks=verdicts), handle, indent=2)
    return 0 if all(met for _, _, met in verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
