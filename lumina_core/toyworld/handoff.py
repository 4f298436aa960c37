"""A denoising decoder against the shipped one on the evaluation's held-out prompts (issue 27, LTX-Video's decoder):

    python -m lumina_core.toyworld.handoff ~/.cache/lumina-video/candidates/denoising-decoder/vae.safetensors

For each preset the shipped DiT samples the prompts once to the end, and once to each hand-off time 1 - level;
rows: the shipped decoder on the full run; the candidate on the full run (level 0); the candidate finishing each
hand-off (the sampler stopped at 1 - level); and, as LTX-Video's pipelines do, the candidate on the full run noised
back to the level (``--renoise``). Each row: colour, shape and direction accuracy, the share of clips with at most
one still frame at the start, the median clip's stutter, and the DiT calls the sampler made.
"""

import argparse
from pathlib import Path

import torch

from .. import embedded
from ..models.vae import load_vae
from ..sampling.presets import PRESETS
from ..sampling.solvers import handoff_times
from .decoder_timing import decoded_accuracy, dit_latents, timing_rows
from .world import heldout_clips


def renoised(latents: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    """Clean latents taken back along the flow path to noise ``level`` with seeded noise."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    return (1 - level) * latents + level * noise


def row(vae, latents, captions, level: float) -> dict:
    """Scores of ``latents`` decoded by ``vae`` at ``level``."""
    scores, frames = decoded_accuracy(vae, latents, captions, level)
    timing = timing_rows(frames, embedded.FPS)
    return {
        **scores,
        "moving_start": round(timing["moving_start"], 2),
        "stutter": timing["stutter"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lumina_core.toyworld.handoff", description=__doc__)
    parser.add_argument("candidate", type=Path, help="the candidate vae.safetensors, a denoising decoder")
    parser.add_argument("--clips", type=int, default=50, help="held-out prompts per preset (default 50)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="hand-off noise levels")
    parser.add_argument("--renoise", action="store_true", help="also the full run noised back to each level")
    parser.add_argument("--seed", type=int, default=0, help="held-out seed (the evaluation's is 0)")
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args(argv)
    models = embedded.load(with_audio=False)
    candidate = load_vae(args.candidate).eval()
    if not candidate.config.decoder_timestep_conditioning:
        parser.error(f"{args.candidate} is not a denoising decoder (no decoder_timestep_conditioning)")
    if not torch.equal(models.vae.encoder.conv_in.conv.weight, candidate.encoder.conv_in.conv.weight):
        parser.error(f"{args.candidate} has another encoder: the shipped DiT's latents are not its latents")
    captions = [clip.caption for clip in heldout_clips(args.seed, args.clips)]
    for preset in embedded.PRESETS:
        calls = len(PRESETS[preset].times()) - 1
        full = dit_latents(models, captions, preset, args.seed, args.batch, 1.0)
        print(f"{preset}, shipped decoder, full run ({calls} calls): {row(models.vae, full, captions, 0.0)}")
        print(f"{preset}, candidate, full run, level 0: {row(candidate, full, captions, 0.0)}")
        for level in args.levels:
            stopped = dit_latents(models, captions, preset, args.seed, args.batch, 1.0 - level)
            steps = len(handoff_times(PRESETS[preset].times(), 1.0 - level)) - 1
            scores = row(candidate, stopped, captions, level)
            print(f"{preset}, candidate, hand-off at {level} ({steps} calls): {scores}")
            if args.renoise:
                again = renoised(full, level, args.seed)
                print(f"{preset}, candidate, full run noised to {level}: {row(candidate, again, captions, level)}")


if __name__ == "__main__":
    main()
