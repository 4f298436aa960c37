"""Fit the embedded VAE's latent-to-RGB preview projection (``embedded.PREVIEW``) on toy-world clips.

    python -m lumina_core.toyworld.fit_preview --clips 200 --heldout 100 --seed 0

Least squares from each model-space latent pixel (the VAE's encoder, as ``train.encode_dataset`` encodes
clips for the DiT) to the mean colour of the video pixels it covers: its 8x8 pixels over the 4 frames of its
latent frame (the encoder averages frames in pairs twice, so latent frame k stands for frames 4k..4k+3), in
RGB 0..1. It prints the projection as Python to paste into ``embedded.py`` and its error on held-out clips,
next to the principal-component preview's after the best affine map of each of its channels onto RGB
(fitted on those same held-out clips, so the comparison favours the fallback, if anything).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .. import embedded
from ..models.vae import load_vae
from ..preview import LatentRGB, pca_rgb
from .train import clip_batch
from .world import sample_clip

FRAMES_PER_LATENT, PIXELS_PER_LATENT = 4, 8
DECIMALS = 4


def clips_of(split: str, n: int, seed: int) -> list:
    return [sample_clip(seed, index, split) for index in range(n)]


def encode(vae, clips, batch: int = 16) -> torch.Tensor:
    """Clips -> model-space latents [N, C, K, h, w], the posterior mean, as the DiT trains on them."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(clips), batch):
            parts.append(vae.encode_to_model_latent(clip_batch(clips[start : start + batch])).float())
    return torch.cat(parts)


def latent_targets(clips) -> torch.Tensor:
    """Clips -> the mean colour under each latent pixel, [N, 3, K, h, w] in 0..1."""
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))  # [N, F, H, W, 3]
    n, f, height, width, _ = frames.shape
    t, s = FRAMES_PER_LATENT, PIXELS_PER_LATENT
    blocks = frames.reshape(n, f // t, t, height // s, s, width // s, s, 3).mean(dim=(2, 4, 6))  # [N, K, h, w, 3]
    return blocks.permute(0, 4, 1, 2, 3)


def rows(x: torch.Tensor) -> torch.Tensor:
    """[N, C, K, h, w] -> one row per latent pixel, [N*K*h*w, C]."""
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def least_squares(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs [M, C], targets [M, 3] -> (factors [C, 3], bias [3]) minimising |inputs @ factors + bias - targets|^2."""
    design = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1).double()  # [M, C+1]
    solution = torch.linalg.lstsq(design, targets.double(), driver="gelsd").solution  # [C+1, 3]
    return solution[:-1].float(), solution[-1].float()


def fit(latents: torch.Tensor, targets: torch.Tensor, decimals: int = DECIMALS) -> LatentRGB:
    """latents [N, C, K, h, w], targets [N, 3, K, h, w] -> the projection, rounded as it will be stored."""
    factors, bias = least_squares(rows(latents), rows(targets))
    return LatentRGB.from_tensors(factors.double().round(decimals=decimals), bias.double().round(decimals=decimals))


def scores(predicted: torch.Tensor, targets: torch.Tensor) -> dict:
    """predicted, targets [M, 3] in 0..1 -> mean absolute error in 0..255 and R^2 of each channel."""
    residual = ((predicted - targets) ** 2).sum(0)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    return dict(mae=255 * (predicted - targets).abs().mean().item(), r2=(1 - residual / total).tolist())


def projection_scores(projection: LatentRGB, latents: torch.Tensor, targets: torch.Tensor) -> dict:
    """The preview's colours (clamped to 0..1, as shown) against the targets."""
    return scores(projection.apply(rows(latents).T).T.clamp(0, 1), rows(targets))


def affine_per_channel(shown: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """shown, wanted [M, 3] -> shown with each channel mapped to the same channel of wanted by its best a * x + b."""
    mapped = []
    for c in range(3):
        a, b = least_squares(shown[:, c : c + 1], wanted[:, c : c + 1])  # [1, 1], [1]
        mapped.append(shown[:, c] * a[0, 0] + b[0])
    return torch.stack(mapped, dim=1)


def pca_scores(latents: torch.Tensor, targets: torch.Tensor, mix: bool = False) -> dict:
    """The principal-component preview of each clip after the best affine map of each of its channels onto
    R, G, B; with ``mix``, of all three onto each (a 3x3 map: the components' order and mixing are arbitrary)."""
    shown = rows(torch.stack([pca_rgb(latent) for latent in latents]))  # [M, 3]
    wanted = rows(targets)
    if mix:
        factors, bias = least_squares(shown, wanted)
        mapped = shown @ factors + bias
    else:
        mapped = affine_per_channel(shown, wanted)
    return scores(mapped.clamp(0, 1), wanted)


def as_python(projection: LatentRGB, decimals: int = DECIMALS) -> str:
    """The projection as a constant to paste into ``embedded.py``."""
    rows_text = "\n".join(
        "        (" + ", ".join(f"{v:.{decimals}f}" for v in row) + ")," for row in projection.factors
    )
    bias = ", ".join(f"{v:.{decimals}f}" for v in projection.bias)
    return f"PREVIEW = LatentRGB(\n    factors=(\n{rows_text}\n    ),\n    bias=({bias}),\n)"


def describe(name: str, result: dict) -> str:
    r2 = " ".join(f"{channel} {value:.3f}" for channel, value in zip("RGB", result["r2"]))
    return f"{name:<40} MAE {result['mae']:5.2f} / 255   R^2 {r2}"


def report(projection: LatentRGB, latents: torch.Tensor, targets: torch.Tensor, stored: Optional[LatentRGB]):
    print(describe("fitted projection (held-out)", projection_scores(projection, latents, targets)))
    if stored == projection:
        print("(embedded.PREVIEW holds exactly this projection)")
    elif stored is not None:
        print(describe("stored embedded.PREVIEW (held-out)", projection_scores(stored, latents, targets)))
    print(describe("PCA preview, best affine (held-out)", pca_scores(latents, targets)))
    print(describe("PCA preview, best 3x3 affine (held-out)", pca_scores(latents, targets, mix=True)))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.fit_preview",
        description="Fit the latent-to-RGB projection of the sampler's preview for the embedded VAE (least squares "
        "from model-space latent pixels to the mean colour of the 8x8 pixels x 4 frames each covers) and print it, "
        "to paste into lumina_core/embedded.py as PREVIEW, with its error on held-out clips against the PCA "
        "preview's.",
    )
    parser.add_argument("--clips", type=int, default=200, help="training-split clips to fit on (default 200)")
    parser.add_argument("--heldout", type=int, default=100, help="held-out-split clips to score on (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="toy-world seed of both splits (default 0)")
    parser.add_argument(
        "--vae", type=Path, default=None, help="VAE .safetensors (default: the embedded one, lumina_core/embedded)"
    )
    parser.add_argument("--batch", type=int, default=16, help="clips encoded at a time (default 16)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> LatentRGB:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    vae = load_vae(args.vae or embedded.file("vae")).eval()
    train, heldout = clips_of("train", args.clips, args.seed), clips_of("heldout", args.heldout, args.seed)
    projection = fit(encode(vae, train, args.batch), latent_targets(train))
    print(
        f"# python -m lumina_core.toyworld.fit_preview --clips {args.clips} --heldout {args.heldout} --seed {args.seed}"
    )
    print(as_python(projection))
    stored = embedded.PREVIEW if args.vae is None else None
    report(projection, encode(vae, heldout, args.batch), latent_targets(heldout), stored)
    print(f"({time.perf_counter() - started:.0f} s)")
    return projection


if __name__ == "__main__":
    main()
