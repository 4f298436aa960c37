"""Where the VAE's still start comes from: what latent frame 0 knows, and what the decoder can draw from it.

    python -m lumina_core.toyworld.still_start --clips 600

Two measurements on held-out clips (issue 27):

- the probe: a ridge regression from latent frame 0 (the encoder's summary of frames 0-3) to the shape's
  box centre at frame 0, at frame 3 and to the move between them, fitted on two thirds of the clips and
  scored (R^2) on the rest; a move R^2 near 1 says the encoder keeps the motion within frames 0-3;
- the decoder's reach: the largest difference between decoded frames 0-3, for the shipped decoder and for
  decoders with every weight perturbed; zero for all says no decoder weights can draw motion there.
"""

import argparse

import numpy as np
import torch

from .. import embedded
from .train import clip_batch
from .world import heldout_clips

LATENT_FRAMES_PER_GROUP = 4
"""Video frames per latent frame: latent frame 0 covers frames 0-3."""


def first_latent_frames(vae, clips, batch: int = 50) -> torch.Tensor:
    """Clips -> latent frame 0 of each, flattened: [N, 16 * h * w] (model space)."""
    with torch.no_grad():
        return torch.cat(
            [
                vae.encode_to_model_latent(clip_batch(clips[s : s + batch]))[:, :, 0].flatten(1)
                for s in range(0, len(clips), batch)
            ]
        )


def ridge_r2(features: np.ndarray, targets: np.ndarray, train: int, alpha: float) -> float:
    """R^2 on rows [train:] of a ridge regression fitted on rows [:train]; targets [N, D], pooled over D."""
    mean_x, mean_y = features[:train].mean(0), targets[:train].mean(0)
    x, y = features[:train] - mean_x, targets[:train] - mean_y
    weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)
    predicted = (features[train:] - mean_x) @ weights + mean_y
    residual = ((targets[train:] - predicted) ** 2).sum()
    return float(1 - residual / ((targets[train:] - targets[train:].mean(0)) ** 2).sum())


def probe(vae, clips, alpha: float) -> dict:
    """Held-out R^2 of latent frame 0 -> centre at frame 0, at frame 3, and the move from 0 to 3; and of the true
    centre at frame 0 -> the move, the share of the move that position alone explains."""
    features = first_latent_frames(vae, clips).double().numpy()
    start = np.stack([c.positions[0] for c in clips])
    end = np.stack([c.positions[LATENT_FRAMES_PER_GROUP - 1] for c in clips])
    train = 2 * len(clips) // 3
    targets = dict(centre_frame_0=start, centre_frame_3=end, move_0_to_3=end - start)
    scores = {name: ridge_r2(features, value, train, alpha) for name, value in targets.items()}
    # The world draws a start that leaves room to move, so where the shape starts already tells part of the move.
    scores["move_0_to_3 from the true frame-0 centre alone"] = ridge_r2(start, end - start, train, 1e-6)
    return scores


def first_group_spread(vae, frames: torch.Tensor) -> float:
    """Largest absolute difference between decoded frames 0-3 and decoded frame 0."""
    with torch.no_grad():
        decoded = vae.decode_model_latent(vae.encode_to_model_latent(frames))
    group = decoded[:, :, :LATENT_FRAMES_PER_GROUP]
    return float((group - group[:, :, :1]).abs().max())


def perturbed_decoder_spreads(vae, frames: torch.Tensor, trials: int, scale: float, seed: int) -> list:
    """``first_group_spread`` with every decoder weight w replaced by w + scale * std(w) * noise, per trial."""
    original = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    spreads = []
    for _ in range(trials):
        with torch.no_grad():
            for name, weight in vae.decoder.state_dict().items():
                noise = torch.randn(weight.shape, generator=generator)
                weight.copy_(original[name] + scale * (original[name].std() if weight.numel() > 1 else 1) * noise)
        spreads.append(first_group_spread(vae, frames))
    vae.decoder.load_state_dict(original)
    return spreads


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lumina_core.toyworld.still_start", description=__doc__)
    parser.add_argument("--clips", type=int, default=600, help="held-out clips for the probe")
    parser.add_argument("--seed", type=int, default=3, help="held-out seed (the evaluation's is 0, the tests' 1)")
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge penalty")
    parser.add_argument("--trials", type=int, default=5, help="perturbed decoders")
    args = parser.parse_args(argv)
    vae = embedded.load(with_audio=False).vae
    clips = heldout_clips(args.seed, args.clips)
    for name, r2 in probe(vae, clips, args.alpha).items():
        print(f"probe R^2, {name}: {r2:.3f}")
    frames = clip_batch(clips[:8])
    print(
        f"decoded frames 0-3, largest difference from frame 0 (shipped decoder): {first_group_spread(vae, frames):.2e}"
    )
    spreads = perturbed_decoder_spreads(vae, frames, args.trials, 0.5, args.seed)
    print(f"the same with every decoder weight perturbed by 0.5 std ({args.trials} decoders): {max(spreads):.2e}")
    with torch.no_grad():
        decoded = vae.decode_model_latent(vae.encode_to_model_latent(frames))
    later = (decoded[:, :, 4:8] - decoded[:, :, 4:5]).abs().max()
    print(f"for comparison, decoded frames 4-7, largest difference from frame 4 (shipped): {later:.2e}")


if __name__ == "__main__":
    main()
