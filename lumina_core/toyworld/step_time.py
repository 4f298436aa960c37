"""How long one DiT training step takes at other toy sizes, against the shipped size, in one run.

    python -m lumina_core.toyworld.step_time --sizes 128x4,192x6,256x8 --latent 8,16

A step is what ``train dit`` does per batch (forward, backward, AdamW), on random latents and
caption features, the scales taking turns 1x2, 2x2, 1x2, 2x4; the first steps are warm-up and not
timed. Ratios are to the first size on the first latent size, measured in the same run.
"""

import argparse
import time

import torch

from .train import TOY_HEAD_DIM, toy_dit_config

SCALE_TURNS = ((1, 2), (2, 2), (1, 2), (2, 4))


def step_seconds(width: int, depth: int, latent: int, batch: int, steps: int, warmup: int = 4) -> tuple[float, int]:
    """Mean seconds per timed training step, and the model's parameter count."""
    model = toy_dit_config(width, depth).build(device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.in_channels, 4, latent, latent, generator=generator)  # (B, C, latent frames, H, W)
    cap_feats = torch.randn(batch, 8, model.cap_feat_dim, generator=generator)
    cap_mask = torch.ones(batch, 8, dtype=torch.bool)
    timed = []
    for step in range(warmup + steps):
        patch = SCALE_TURNS[step % len(SCALE_TURNS)]
        start = time.perf_counter()
        v = model(
            x,
            torch.rand(batch, generator=generator),
            cap_feats,
            cap_mask,
            torch.rand(batch, generator=generator) * 6,
            patch,
        )
        optimizer.zero_grad(set_to_none=True)
        v.square().mean().backward()
        optimizer.step()
        if step >= warmup:
            timed.append(time.perf_counter() - start)
    return sum(timed) / len(timed), sum(p.numel() for p in model.parameters())


def size_list(text: str) -> list[tuple[int, int]]:
    """ "128x4,192x6" -> [(128, 4), (192, 6)] (width x depth; a bad entry becomes a usage error naming it)."""
    sizes = []
    for spec in text.split(","):
        width, _, depth = spec.partition("x")
        if not (width.isdigit() and depth.isdigit() and int(width) % TOY_HEAD_DIM == 0 and int(width) and int(depth)):
            raise argparse.ArgumentTypeError(
                f"size {spec!r} must be written WIDTHxDEPTH with the width a multiple of {TOY_HEAD_DIM}, "
                "e.g. 128x4,192x6"
            )
        sizes.append((int(width), int(depth)))
    return sizes


def latent_list(text: str) -> list[int]:
    """ "8,16" -> [8, 16]."""
    if not all(part.isdigit() and int(part) for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"latent sizes {text!r} must be positive whole numbers, e.g. 8,16")
    return [int(part) for part in text.split(",")]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.step_time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=size_list,
        default=[(128, 4), (192, 6), (256, 8)],
        help="WIDTHxDEPTH,... (default 128x4,192x6,256x8; the first is the reference)",
    )
    parser.add_argument(
        "--latent",
        type=latent_list,
        default=[8],
        help="latent heights/widths, e.g. 8,16 (default 8: 64 px frames through the 8x VAE)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per size (default 12)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = None
    for latent in args.latent:
        for width, depth in args.sizes:
            seconds, params = step_seconds(width, depth, latent, args.batch, args.steps)
            reference = reference or seconds
            print(
                f"{width} wide x {depth} layers, {latent}x{latent} latents: {params / 1e6:.2f} M parameters "
                f"({params * 4 / 1e6:.1f} MB fp32), {seconds * 1000:.0f} ms/step, {seconds / reference:.2f}x the first",
                flush=True,
            )


if __name__ == "__main__":
    main()
