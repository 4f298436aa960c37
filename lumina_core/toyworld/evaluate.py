"""Quality of the embedded default, measured exactly on the toy world's held-out prompts.

    python -m lumina_core.toyworld.evaluate --clips 100

Held-out prompts combine colours, shapes and directions never seen together in training, or
use caption templates never seen in training. From the decoded frames alone it measures:
colour, shape and direction accuracy per preset (single-scale and multi-scale, with their
sampling times); how measured motion follows the motion-score input (Spearman); how it
follows the gap between positive and negative motion; how the motion runs in time (the share of
clips with at most one still frame at the start, and the median clip's stutter: largest over
median frame-to-frame move), for the DiT's videos under each preset, for the held-out clips
themselves passed through the VAE alone, and for those clips as drawn, so that each fault shows
where it arises; and, for the video-to-audio model, onset sync of the generated sound against the
bounces in the frames. --time-shift samples every preset at one time shift instead of its own ("auto": the
shift ``sampling.auto_time_shift`` gives the toy world's latent).
"""

import argparse
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .. import embedded
from ..bench.dit import interleaved
from ..pipeline import decode_latent, encode_prompts, sample_latent
from ..request import latent_shape
from ..sampling import resolve_time_shift
from ..sampling.presets import PRESETS
from ..sampling.time_shift import time_shift_option
from .metrics import VideoMeasurements, measure_video, score_clip
from .train import clip_batch
from .world import DEFAULT_CONFIG, heldout_clips

ACCURACY_KEYS = ("colour", "shape", "direction")
MOTION_CLIPS = 24
"""Prompts per motion value in the motion sweep, for the README table and for the quality tests alike."""
TARGETS = dict(
    colour=0.95,
    shape=0.90,
    direction=0.90,
    motion_spearman=0.9,
    multiscale_gap=0.03,
    multiscale_time=0.4,
    onset_f1=0.8,
    moving_start=0.95,
    stutter=2.0,
)
TIMING_SOURCES = {
    "embedded": "single-scale",
    "embedded-MultiScale": "multi-scale",
    "vae": "ground truth through the VAE",
    "truth": "ground truth",
}
"""Where the timing rows' clips come from: each preset's videos, the held-out clips encoded and decoded, as drawn."""


def spearman(x, y) -> float:
    """Spearman's rank correlation with average ranks for ties."""

    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="mergesort")
        r = np.empty(len(values))
        r[order] = np.arange(len(values))
        for v in np.unique(values):
            tied = values == v
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def sample_world_latent(models, cond, uncond, seed: int, config, stop: float = 1.0) -> torch.Tensor:
    """One latent per caption of ``cond``, at the toy world's size and length; ``stop`` < 1 ends sampling there (a
    denoising decoder's hand-off)."""
    world = DEFAULT_CONFIG
    return sample_latent(
        models,
        cond,
        uncond,
        world.width,
        world.height,
        world.num_frames,
        seed,
        config,
        batch=cond.features.shape[0],
        stop=stop,
    )


def generate(models, captions, preset: str, seed: int, batch: int, **overrides) -> torch.Tensor:
    """Videos [N, F, H, W, 3] for ``captions`` under a preset (with overrides such as motion=...),
    sampled in batches."""
    config = PRESETS[preset].with_(**overrides)
    uncond = encode_prompts(models, [""])
    frames = []
    for start in range(0, len(captions), batch):
        cond = encode_prompts(models, captions[start : start + batch])
        frames.append(decode_latent(models.vae, sample_world_latent(models, cond, uncond, seed + start, config)))
    return torch.cat(frames)


def accuracy_drop(single: dict, multi: dict) -> float:
    """Multi-scale's worst accuracy drop against single-scale over colour, shape and direction. Rounded
    to 9 places so that float error doesn't decide the target: 0.98 - 0.95 is 3 points, not 0.03000000000000003."""
    return round(max(single[k] - multi[k] for k in ACCURACY_KEYS), 9)


def vae_round_trip(vae, clips, batch: int) -> torch.Tensor:
    """Real clips encoded and decoded by the VAE alone: frames [N, F, H, W, 3] in [0, 1]."""
    with torch.no_grad():
        return torch.cat(
            [
                decode_latent(vae, vae.encode_to_model_latent(clip_batch(clips[start : start + batch]).to(vae.device)))
                for start in range(0, len(clips), batch)
            ]
        )


def timing_summary(measured: list[VideoMeasurements]) -> dict:
    """The share of clips with at most one still frame at the start, the median clip's stutter, and how many clips
    start with each count of still frames. A clip without a track (no shape in two frames) counts as frozen and
    infinitely stuttering."""
    starts = [DEFAULT_CONFIG.num_frames if m.frozen_start is None else m.frozen_start for m in measured]
    stutters = [float("inf") if m.stutter is None else m.stutter for m in measured]
    return dict(
        moving_start=float(np.mean([start <= 1 for start in starts])),
        stutter=float(np.median(stutters)),
        still_frames={int(count): starts.count(count) for count in sorted(set(starts))},
    )


@dataclass
class Report:
    clips: int
    accuracy: dict = field(default_factory=dict)  # preset -> {colour, shape, direction}
    sampling_seconds: dict = field(default_factory=dict)
    motion: dict = field(default_factory=dict)
    audio: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)  # TIMING_SOURCES key -> timing_summary
    time_shift: Optional[float] = None  # every preset's, where it was overridden

    def checks(self) -> dict:
        single, multi = self.accuracy["embedded"], self.accuracy["embedded-MultiScale"]
        out = {f"{k} accuracy (multi-scale)": (multi[k], TARGETS[k], multi[k] >= TARGETS[k]) for k in ACCURACY_KEYS}
        out.update(
            {f"{k} accuracy (single-scale)": (single[k], TARGETS[k], single[k] >= TARGETS[k]) for k in ACCURACY_KEYS}
        )
        worst_gap = accuracy_drop(single, multi)
        out["multi-scale accuracy drop vs single (worst)"] = (
            worst_gap,
            TARGETS["multiscale_gap"],
            worst_gap <= TARGETS["multiscale_gap"],
        )
        ratio = self.sampling_seconds["embedded-MultiScale"] / self.sampling_seconds["embedded"]
        out["multi-scale / single-scale sampling time"] = (
            ratio,
            TARGETS["multiscale_time"],
            ratio <= TARGETS["multiscale_time"],
        )
        out["motion input vs measured (Spearman)"] = (
            self.motion["spearman"],
            TARGETS["motion_spearman"],
            self.motion["spearman"] >= TARGETS["motion_spearman"],
        )
        gaps = self.motion["by_negative"]
        monotone = all(a >= b for a, b in zip(gaps.values(), list(gaps.values())[1:]))
        out["larger pos/neg gap -> more motion"] = (monotone, True, monotone)
        for source, summary in self.timing.items():
            label = TIMING_SOURCES[source]
            out[f"clips with <= 1 still frame at the start ({label})"] = (
                summary["moving_start"],
                TARGETS["moving_start"],
                summary["moving_start"] >= TARGETS["moving_start"],
            )
            out[f"median-clip stutter, max / median move ({label})"] = (
                summary["stutter"],
                TARGETS["stutter"],
                summary["stutter"] <= TARGETS["stutter"],
            )
        if self.audio:
            out["onset F1 (+-1 frame)"] = (
                self.audio["f1"],
                TARGETS["onset_f1"],
                self.audio["f1"] >= TARGETS["onset_f1"],
            )
            out["audio duration == frames/fps (share of clips)"] = (
                self.audio["duration_exact"],
                1.0,
                self.audio["duration_exact"] == 1.0,
            )
        return out


def preset_scores(models, captions, preset, seed, batch, **overrides) -> list:
    """Each caption's video under ``preset`` (with ``overrides``), scored against the caption (``ClipScore``)."""
    frames = generate(models, captions, preset, seed, batch, **overrides)
    return [score_clip(f.numpy(), c, embedded.FPS) for f, c in zip(frames, captions)]


def accuracy(scores) -> dict:
    return {k: float(np.mean([getattr(s, f"{k}_correct") for s in scores])) for k in ACCURACY_KEYS}


def caption_accuracy(models, captions, preset, seed, batch) -> dict:
    return accuracy(preset_scores(models, captions, preset, seed, batch))


def real_clip_timing(vae, clips, batch) -> dict:
    """``timing_summary`` of the held-out clips through the VAE alone (``vae``) and as drawn (``truth``)."""
    through_vae = vae_round_trip(vae, clips, batch)
    return dict(
        vae=timing_summary([measure_video(f.numpy(), c.fps) for f, c in zip(through_vae, clips)]),
        truth=timing_summary([measure_video(c.frames, c.fps) for c in clips]),
    )


def sampling_seconds(models, captions, seed: int, repeats: int = 5, **overrides) -> dict:
    """Each preset's sampling time for one batch of ``captions`` (with ``overrides``): the fastest of ``repeats``
    runs, the presets interleaved so that load on a shared machine hits both alike (single runs varied by a
    quarter)."""
    cond, uncond = encode_prompts(models, captions), encode_prompts(models, [""])
    runs = {
        preset: functools.partial(sample_world_latent, models, cond, uncond, seed, config)
        for preset, config in ((name, PRESETS[name].with_(**overrides)) for name in embedded.PRESETS)
    }
    return interleaved(runs, repeats, summary=min)


def motion_response(models, captions, seed, batch, values=None, gaps=(0.0, 2.0, 4.0, 6.0), **overrides) -> dict:
    """Measured motion for a sweep of motion inputs (negative pass: no motion condition), and for pos/neg gaps.

    ``values`` default to every whole speed of the world's trained range. The gap sweep runs the
    positive pass at the top of that range and the negative pass ``gaps`` below it, clipped to the
    range's bottom: the model never saw a motion score outside the range (6 against 0 reads as 6 against 1).
    """
    low, high = DEFAULT_CONFIG.speed_range
    values = values or tuple(float(v) for v in range(math.ceil(low), math.floor(high) + 1))
    negatives = sorted({max(float(low), high - gap) for gap in gaps}, reverse=True)
    inputs, measured, by_value = [], [], {}
    for value in values:
        frames = generate(models, captions, "embedded", seed, batch, motion=value, neg_motion=-1.0, **overrides)
        motions = [measure_video(f.numpy(), embedded.FPS).motion for f in frames]
        inputs += [value] * len(motions)
        measured += motions
        by_value[value] = float(np.nanmean(motions))
    by_negative = {}
    for negative in negatives:
        frames = generate(
            models, captions, "embedded", seed, batch, motion=float(high), neg_motion=negative, **overrides
        )
        by_negative[high - negative] = float(
            np.nanmean([measure_video(f.numpy(), embedded.FPS).motion for f in frames])
        )
    valid = ~np.isnan(measured)
    by_negative = dict(sorted(by_negative.items(), reverse=True))
    return dict(
        spearman=spearman(np.array(inputs)[valid], np.array(measured)[valid]),
        by_value=by_value,
        by_negative=by_negative,
    )


def evaluate(
    n_clips: int = 100,
    seed: int = 0,
    batch: int = 50,
    motion_clips: int = MOTION_CLIPS,
    audio: bool = True,
    time_shift=None,
) -> Report:
    """``time_shift``: None for each preset's own, or a shift (or "auto") for every preset and the motion sweep."""
    models = embedded.load(with_audio=audio)
    clips = heldout_clips(seed, n_clips)
    captions = [clip.caption for clip in clips]
    report = Report(clips=n_clips)
    overrides = {}
    if time_shift is not None:
        world = latent_shape(DEFAULT_CONFIG.width, DEFAULT_CONFIG.height, DEFAULT_CONFIG.num_frames)
        report.time_shift = resolve_time_shift(time_shift, world, models.dit.patch_sizes)
        overrides["time_shift"] = report.time_shift
    for preset in embedded.PRESETS:
        scores = preset_scores(models, captions, preset, seed, batch, **overrides)
        report.accuracy[preset] = accuracy(scores)
        report.timing[preset] = timing_summary([score.measured for score in scores])
    report.timing.update(real_clip_timing(models.vae, clips, batch))
    report.sampling_seconds = sampling_seconds(models, captions[:batch], seed, **overrides)
    report.motion = motion_response(models, captions[:motion_clips], seed, batch, **overrides)
    if audio and models.v2a is not None:
        from .train_v2a import evaluate_v2a

        report.audio = evaluate_v2a(models.v2a, n_clips, seed)
    return report


def print_report(report: Report):
    print(f"embedded default on {report.clips} held-out toy-world prompts")
    if report.time_shift is not None:
        print(f"every preset at time shift {report.time_shift:.4g} instead of its own")
    checks = report.checks()
    width = max(map(len, checks))
    print(f"{'check':<{width}} {'measured':>10} {'target':>8}")
    for name, (value, target, ok) in checks.items():
        fmt = (lambda v: f"{v:.3f}") if isinstance(value, float) else str
        print(f"{name:<{width}} {fmt(value):>10} {fmt(target):>8}  {'met' if ok else 'missed'}")
    print("measured motion by motion input:", {k: round(v, 2) for k, v in report.motion["by_value"].items()})
    print("measured motion by pos-neg gap:", {k: round(v, 2) for k, v in report.motion["by_negative"].items()})
    for source, summary in report.timing.items():
        print(f"clips by still frames at the start ({TIMING_SOURCES[source]}):", summary["still_frames"])


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--clips", type=int, default=100, help="held-out prompts per preset (at least 100 for the README table)"
    )
    parser.add_argument(
        "--motion-clips", type=int, default=MOTION_CLIPS, help="prompts per motion value in the motion sweep"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--time-shift",
        type=time_shift_option,
        help="sample every preset (and the motion sweep) at this time shift instead of its own; 'auto': from the "
        "toy world's token count (sampling.auto_time_shift)",
    )
    args = parser.parse_args(argv)
    report = evaluate(
        args.clips, args.seed, args.batch, args.motion_clips, audio=not args.no_audio, time_shift=args.time_shift
    )
    print_report(report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                dict(checks={k: [v[0], v[1], v[2]] for k, v in report.checks().items()}, **vars(report)),
                handle,
                indent=2,
                default=str,
            )
    return 0 if all(ok for _, _, ok in report.checks().values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
