"""The DiT's flow loss on clips it never trained on, for DiTs of any size side by side (issue 27's capacity question):

    python -m lumina_core.toyworld.flow_loss embedded ~/.cache/lumina-video/runs/big192/export

Each folder holds a ``dit.safetensors`` and its ``text_encoder.safetensors`` (``embedded``: the package's). Every
DiT sees the same clips, encoded once by the package's VAE, at the same flow times and noise, at the finest patch
size with captions and measured motion scores: fresh clips of the training combinations (new draws, not the ones
trained on) and held-out clips (combinations and caption templates never trained on). The loss is the training
stage's, the mean squared error of the predicted velocity x1 - x0; lower is a better fit. A model that generalises
pays little more on held-out clips than on fresh ones.
"""

import argparse
from pathlib import Path

import torch

from .. import embedded
from ..io.checkpoints import load_nextdit, load_text_encoder
from .train import clip_batch
from .world import heldout_clips, train_clips

FRESH_SEED = 900_001
"""Training combinations drawn at a seed no training run here used (the runs draw from 0, 11, 1234 and 2024 up)."""


def clip_sets(n: int, seed: int) -> dict:
    return {"fresh training clips": train_clips(FRESH_SEED + seed, n), "held-out clips": heldout_clips(seed, n)}


@torch.no_grad()
def encoded(vae, clips, batch: int = 32) -> torch.Tensor:
    """Model-space latents [N, 16, F/4, h, w] of ``clips``."""
    return torch.cat(
        [vae.encode_to_model_latent(clip_batch(clips[s : s + batch])) for s in range(0, len(clips), batch)]
    )


@torch.no_grad()
def flow_loss(dit, text_encoder, clips, latents: torch.Tensor, seed: int, batch: int = 32) -> float:
    """Mean velocity MSE over ``clips`` at seeded uniform times and noise (the same for every model)."""
    generator = torch.Generator().manual_seed(seed)
    times = torch.rand(len(clips), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    finest = min(dit.patch_sizes, key=lambda patch: patch.temporal * patch.spatial)
    total = 0.0
    for s in range(0, len(clips), batch):
        x1, x0, t = latents[s : s + batch], noise[s : s + batch], times[s : s + batch]
        xt = t.view(-1, 1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1, 1)) * x0
        cond = text_encoder.encode([clip.caption for clip in clips[s : s + batch]])
        motion = torch.tensor([clip.motion_score for clip in clips[s : s + batch]])
        velocity = dit(xt, t, cond.features, cond.mask, motion, finest)
        total += float(((velocity - (x1 - x0)) ** 2).mean(dim=(1, 2, 3, 4)).sum())
    return total / len(clips)


def folder_of(name: str) -> Path:
    return embedded.folder() if name == "embedded" else Path(name).expanduser()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.flow_loss",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folders", nargs="+", help="folders with dit.safetensors and text_encoder.safetensors")
    parser.add_argument("--clips", type=int, default=256, help="clips per set (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = {name: folder_of(name) for name in args.folders}
    missing = [
        f"{name} ({path / 'dit.safetensors'})"
        for name, path in folders.items()
        if not (path / "dit.safetensors").is_file()
    ]
    if missing:
        parser.error(f"no DiT in {', '.join(missing)}: give export folders (train dit --export) or 'embedded'")
    vae = embedded.load(with_audio=False).vae
    sets = {label: (clips, encoded(vae, clips)) for label, clips in clip_sets(args.clips, args.seed).items()}
    print(f"flow loss at the finest patch size, {args.clips} clips per set")
    for name, path in folders.items():
        dit, config, _ = load_nextdit(path / "dit.safetensors")
        text = load_text_encoder(path / "text_encoder.safetensors")
        losses = {label: flow_loss(dit, text, clips, latents, args.seed) for label, (clips, latents) in sets.items()}
        size = f"dim {config.dim} x {config.n_layers} layers"
        print(f"{name} ({size}): " + ", ".join(f"{label} {loss:.4f}" for label, loss in losses.items()))


if __name__ == "__main__":
    main()
