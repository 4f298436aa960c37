"""The sway style that the shipped style LoRA teaches the embedded DiT, and how much of it a video shows.

    python -m lumina_core.toyworld.style roundtrip --clips 100   # the measure on drawn clips and through the VAE
    python -m lumina_core.toyworld.style sweep --clips 100       # the LoRA's strength sweep on held-out prompts

The style: the shape sways across its travel, ``SWAY`` px along a sine of ``SWAY_PERIOD`` frames
(``WorldConfig.sway``), everything else as in the plain world. Looks such as a patterned or tinted
background or hollow shapes would be more of a style, but the embedded VAE does not keep them: its
decoder was trained on plain grey backgrounds and filled shapes, and paints those back
(docs/style-lora.md). Where the shape is, it keeps.

The measure reads the swing from the pixels alone. The shape's centroid across its travel (the
metrics' segmentation) is fitted by least squares with ``a + b t + c sin(2 pi t / period) + d
cos(...)``; ``c``, the swing in the style's phase, is the sway in pixels (a drift or a tilted path
goes into ``b``). The style score is ``c / SWAY`` clipped to [0, 1] (0: the plain look, 1: the full
style), and a clip is styled when ``c`` is at least half of ``SWAY``. The fit leaves out the first
``FIT_FROM_FRAME`` frames: the embedded VAE decodes its first latent frame as four equal frames
(docs/embedded-default.md), which can't show a swing.
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .. import embedded
from ..lora import LoRA, load_lora, merge
from .metrics import ArrayLike, as_frames, centroid_track, score_clip
from .world import DEFAULT_CONFIG, DIRECTION_VECTORS, heldout_clips, parse_caption

SWAY, SWAY_PERIOD = 4.0, 8.0
STYLE = replace(DEFAULT_CONFIG, sway=SWAY, sway_period=SWAY_PERIOD)
"""The toy world in the sway style, the style LoRA's training clips."""
NAME = "sway"
DESCRIPTION = (
    f"the shape sways {SWAY:g} px across its travel, one swing every {SWAY_PERIOD:g} frames "
    "(lumina_core/toyworld/style.py)"
)
FIT_FROM_FRAME = 4
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
ACCURACY_KEYS = ("colour", "shape", "direction")


def sway_amplitude(frames: ArrayLike, direction: str) -> float:
    """The swing in pixels across ``direction``'s axis, in the style's phase (0 for a plain clip, ``SWAY`` for a
    drawn swaying one); NaN when fewer than five frames after ``FIT_FROM_FRAME`` show the shape."""
    track = centroid_track(as_frames(frames))
    across = track[:, 1] if DIRECTION_VECTORS[direction][0] else track[:, 0]
    time_ = np.arange(len(across), dtype=np.float64)
    shown = ~np.isnan(across)
    shown[:FIT_FROM_FRAME] = False
    if shown.sum() < 5:
        return float("nan")
    phase = 2 * np.pi * time_ / SWAY_PERIOD
    basis = np.stack([np.ones_like(time_), time_, np.sin(phase), np.cos(phase)], axis=1)
    coefficients = np.linalg.lstsq(basis[shown], across[shown], rcond=None)[0]
    return float(coefficients[2])


def style_score(amplitude: float) -> float:
    """0 (the plain look) .. 1 (the full style) from ``sway_amplitude``; a clip with no shape scores 0."""
    return 0.0 if np.isnan(amplitude) else float(np.clip(amplitude / SWAY, 0.0, 1.0))


def is_styled(amplitude: float) -> bool:
    return bool(amplitude >= SWAY / 2)


@dataclass
class StyleReading:
    """The style measure over a set of clips."""

    clips: int
    mean_score: float
    styled: float  # share of clips read as styled
    mean_sway_px: float

    @classmethod
    def of(cls, amplitudes: Sequence[float]) -> "StyleReading":
        amplitudes = np.asarray(amplitudes, dtype=np.float64)
        return cls(
            clips=len(amplitudes),
            mean_score=float(np.mean([style_score(a) for a in amplitudes])),
            styled=float(np.mean([is_styled(a) for a in amplitudes])),
            mean_sway_px=float(np.nanmean(amplitudes)),
        )


def roundtrip(vae, n_clips: int, seed: int, batch: int = 25) -> dict:
    """The measure on held-out clips, plain and swaying (the same draws), as drawn and after the VAE's
    encode-decode round trip, with the metrics' colour/shape/direction accuracy of each set."""
    from ..pipeline import decode_latent
    from .train import clip_batch

    out = {}
    for look, config in (("plain", DEFAULT_CONFIG), (NAME, STYLE)):
        clips = heldout_clips(seed, n_clips, config)
        decoded = []
        with torch.no_grad():
            for start in range(0, n_clips, batch):
                latent = vae.encode_to_model_latent(clip_batch(clips[start : start + batch]))
                decoded.append(decode_latent(vae, latent).numpy())
        for stage, videos in (("drawn", [c.frames for c in clips]), ("vae", np.concatenate(decoded))):
            out[f"{look}, {stage}"] = read_clips(videos, [c.caption for c in clips])
    return out


def read_clips(videos, captions: Sequence[str]) -> dict:
    """Style reading and caption accuracy of videos [N, F, H, W, 3] made for ``captions``."""
    amplitudes, correct = [], []
    for frames, caption in zip(videos, captions):
        frames = as_frames(frames)
        amplitudes.append(sway_amplitude(frames, parse_caption(caption).direction))
        score = score_clip(frames, caption, embedded.FPS)
        correct.append([getattr(score, f"{key}_correct") for key in ACCURACY_KEYS])
    accuracy = dict(zip(ACCURACY_KEYS, np.mean(correct, axis=0).tolist()))
    return dict(asdict(StyleReading.of(amplitudes)), **accuracy)


def strength_sweep(
    models,
    lora: LoRA,
    captions: Sequence[str],
    strengths: Sequence[float] = STRENGTHS,
    seed: int = 0,
    batch: int = 50,
    preset: str = "embedded-MultiScale",
) -> dict:
    """Videos for ``captions`` from the base DiT and from the DiT with ``lora`` merged at each strength (same seeds):
    the style reading and caption accuracy at each, the largest pixel difference from the base's videos, and the
    sampling seconds. The DiT's weights are the base's again afterwards."""
    from .evaluate import generate

    dit = models.dit
    base = {key: value.clone() for key, value in dit.state_dict().items()}
    started = time.perf_counter()
    base_videos = generate(models, list(captions), preset, seed, batch)
    rows = {"base": dict(read_clips(base_videos, captions), seconds=time.perf_counter() - started)}
    try:
        for strength in strengths:
            dit.load_state_dict(merge(base, [(lora, strength)]))
            started = time.perf_counter()
            videos = generate(models, list(captions), preset, seed, batch)
            rows[strength] = dict(
                read_clips(videos, captions),
                max_abs_diff_from_base=float((videos - base_videos).abs().max()),
                seconds=time.perf_counter() - started,
            )
    finally:
        dit.load_state_dict(base)
    return rows


def monotonic(values: Sequence[float]) -> bool:
    return all(b >= a for a, b in zip(values, values[1:]))


COLUMNS = dict(
    mean_score="style", styled="styled", mean_sway_px="sway px", colour="colour", shape="shape",
    direction="direction", max_abs_diff_from_base="vs base", seconds="seconds",
)  # fmt: skip
"""Printed columns: a reading's key -> its heading."""


def print_rows(title: str, rows: dict):
    print(title)
    print(f"{'':<16}" + "".join(f"{heading:>10}" for heading in COLUMNS.values()))
    for name, row in rows.items():
        cells = "".join(f"{row[key]:>10.4f}" if key in row else f"{'':>10}" for key in COLUMNS)
        print(f"{str(name):<16}{cells}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.style",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("check", choices=("roundtrip", "sweep"))
    parser.add_argument("--clips", type=int, default=100, help="held-out prompts (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--lora",
        type=Path,
        default=embedded.PACKAGE_DIR / embedded.STYLE_LORA,
        help="sweep: the LoRA file (default: the shipped style LoRA)",
    )
    parser.add_argument(
        "--strengths",
        type=lambda text: [float(s) for s in text.split(",")],
        default=list(STRENGTHS),
        help="sweep: comma-separated strengths (default 0,0.25,0.5,0.75,1)",
    )
    parser.add_argument("--preset", default="embedded-MultiScale", help="sweep: sampling preset")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips {args.clips}: give at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    models = embedded.load(with_audio=False)
    if args.check == "roundtrip":
        rows = roundtrip(models.vae, args.clips, args.seed)
        print_rows(f"style measure on {args.clips} held-out clips, as drawn and through the embedded VAE", rows)
        passed = True
    else:
        lora = load_lora(args.lora, models.dit.state_dict())
        captions = [clip.caption for clip in heldout_clips(args.seed, args.clips)]
        rows = strength_sweep(models, lora, captions, args.strengths, args.seed, args.batch, args.preset)
        print_rows(f"{args.lora.name} on {args.clips} held-out prompts, {args.preset}", rows)
        swept = [rows[s] for s in args.strengths]
        passed = monotonic([row["mean_score"] for row in swept]) and all(
            min(row["colour"], row["direction"]) >= 0.95 for row in swept
        )
        if 0.0 in rows:
            passed &= rows[0.0]["max_abs_diff_from_base"] == 0.0
        targets = "strength 0 = base exactly, style rising with strength, colour and direction >= 0.95"
        print(f"targets ({targets}): {'met' if passed else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in rows.items()}, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
