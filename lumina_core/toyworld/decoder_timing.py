"""A candidate VAE decoder beside the shipped one, on the evaluation's held-out clips (issue 27):

    python -m lumina_core.toyworld.decoder_timing ~/.cache/lumina-video/candidates/decoder-temporal/vae.safetensors

For each decoder: real clips through the VAE alone (reconstruction PSNR, the share of clips with at most
one still frame at the start, the median clip's stutter, where the largest move falls), then the shipped
DiT's latents for the same prompts, sampled once per preset and decoded by each (the same rows, and colour,
shape and direction accuracy). The candidate must keep the shipped encoder, so the DiT's latents stay its own.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from .. import embedded
from ..models.vae import load_vae, psnr
from ..pipeline import decode_latent, encode_prompts
from ..sampling.presets import PRESETS
from .evaluate import accuracy, sample_world_latent, timing_summary
from .metrics import centroid_steps, measure_video, score_clip
from .train import clip_batch
from .world import heldout_clips


def timing_rows(frames: torch.Tensor, fps) -> dict:
    """Videos [N, F, H, W, 3] -> the share with at most one still frame at the start, clips by still frames at the
    start, the median clip's stutter, and how many clips have their largest move at each step (frame k to k + 1)."""
    summary = timing_summary([measure_video(f.numpy(), fps) for f in frames])
    steps = [centroid_steps(f.numpy()) for f in frames]
    largest = np.bincount([int(s.argmax()) for s in steps if s is not None], minlength=frames.shape[1] - 1)
    return dict(
        moving_start=summary["moving_start"],
        still_frames=summary["still_frames"],
        stutter=round(summary["stutter"], 2),
        largest_step_at=largest.tolist(),
    )


def decoded_accuracy(vae, latents: torch.Tensor, captions, noise_level: float = 0.0) -> tuple[dict, torch.Tensor]:
    """``latents`` decoded by ``vae`` (at ``noise_level``) and scored against ``captions``: (colour, shape and
    direction accuracy rounded to 2 places, frames [N, F, H, W, 3])."""
    frames = decode_latent(vae, latents, noise_level=noise_level)
    scores = accuracy([score_clip(f.numpy(), c, embedded.FPS) for f, c in zip(frames, captions)])
    return {key: round(value, 2) for key, value in scores.items()}, frames


def round_trip(vae, clips, batch: int) -> tuple:
    """Held-out clips through ``vae``: (frames [N, F, H, W, 3] in [0, 1], PSNR in dB against the clips)."""
    truth = clip_batch(clips)
    with torch.no_grad():
        decoded = torch.cat(
            [
                vae.decode_model_latent(vae.encode_to_model_latent(truth[s : s + batch]))
                for s in range(0, len(clips), batch)
            ]
        )
    return ((decoded.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1), psnr(decoded, truth)


def dit_latents(models, captions, preset: str, seed: int, batch: int, stop: float = 1.0) -> torch.Tensor:
    """The shipped DiT's model-space latents for ``captions`` under ``preset``, as the evaluation samples them
    (``stop`` < 1: sampled only to that time)."""
    uncond = encode_prompts(models, [""])
    return torch.cat(
        [
            sample_world_latent(
                models, encode_prompts(models, captions[s : s + batch]), uncond, seed + s, PRESETS[preset], stop
            )
            for s in range(0, len(captions), batch)
        ]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lumina_core.toyworld.decoder_timing", description=__doc__)
    parser.add_argument("candidate", type=Path, help="the candidate vae.safetensors")
    parser.add_argument("--clips", type=int, default=100, help="held-out clips for the VAE alone")
    parser.add_argument("--dit-clips", type=int, default=100, help="prompts per preset for the DiT (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="held-out seed (the evaluation's is 0)")
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args(argv)
    models = embedded.load(with_audio=False)
    decoders = dict(shipped=models.vae, candidate=load_vae(args.candidate).eval())
    if not torch.equal(
        decoders["shipped"].encoder.conv_in.conv.weight, decoders["candidate"].encoder.conv_in.conv.weight
    ):
        raise SystemExit(f"{args.candidate} has another encoder: the shipped DiT's latents are not its latents")
    clips = heldout_clips(args.seed, args.clips)
    for name, vae in decoders.items():
        frames, reconstruction_db = round_trip(vae, clips, args.batch)
        print(f"VAE alone, {name}: PSNR {reconstruction_db:.2f} dB, {timing_rows(frames, embedded.FPS)}")
    captions = [clip.caption for clip in heldout_clips(args.seed, args.dit_clips)]
    for preset in embedded.PRESETS if captions else ():
        latents = dit_latents(models, captions, preset, args.seed, args.batch)
        for name, vae in decoders.items():
            rounded, frames = decoded_accuracy(vae, latents, captions)
            print(f"DiT {preset}, {name} decoder: {rounded}, {timing_rows(frames, embedded.FPS)}")


if __name__ == "__main__":
    main()
