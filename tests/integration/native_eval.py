"""The toy-world evaluation through ComfyUI's native sampler chain, beside the engine's sampler on the same prompts.

Runs ComfyUI in this process (its modules, no server), the pack loaded as a package, the embedded default as a
native MODEL: SamplerCustomAdvanced's path (comfy.sample.sample_custom, euler) with Lumina-Video Multi-Scale,
Guidance and Scheduler, against ``lumina_core.sampling.sample``, on held-out captions and seeds::

    COMFYUI_ROOT=/path/to/ComfyUI /path/to/comfy/python -m tests.integration.native_eval --clips 100
"""

from __future__ import annotations

import argparse
import os
import sys

from tests.integration.inprocess import EngineView, load_comfyui_and_pack, text_condition


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=100, help="held-out captions (seed i for caption i)")
    parser.add_argument("--preset", default="embedded-MultiScale")
    args = parser.parse_args(argv)
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        parser.error("set COMFYUI_ROOT to a ComfyUI checkout")
    pack = load_comfyui_and_pack(root)

    import comfy.sample
    import comfy.samplers
    import torch
    from lumina_video.lumina_core.pipeline import decode_latent
    from lumina_video.lumina_core.sampling import make_noise, preset, sample, scale_and_cutoff
    from lumina_video.lumina_core.toyworld.metrics import detect_colour, detect_direction, detect_shape
    from lumina_video.lumina_core.toyworld.world import heldout_clips, parse_caption
    from lumina_video.nodes import loaders, native, text

    torch.set_grad_enabled(False)
    model = loaders.LuminaVideoModelLoader.execute("embedded (toy world, CPU)").result[0]
    patched = native.LuminaVideoMultiScale.execute(model, args.preset).result[0]
    patched = native.LuminaVideoGuidance.execute(patched, args.preset).result[0]
    sigmas = native.LuminaVideoScheduler.execute(args.preset).result[0]
    config = preset(args.preset)
    cfg = scale_and_cutoff(config.cfg)[0] + 1
    vae = pack.lumina_core.embedded.load(with_audio=False).vae
    reference = EngineView(model.model.diffusion_model)

    right = {"native": [0, 0, 0], "engine": [0, 0, 0]}
    differences, same_reads = [], 0
    clips = heldout_clips(seed=1, n=args.clips)
    for index, clip in enumerate(clips):
        positive, negative = text.LuminaVideoTextEncode.execute(model, clip.caption, "").result
        latent = torch.zeros(1, 16, 4, 8, 8)
        noise = make_noise(latent.shape, index)
        sampled = {
            "native": comfy.sample.sample_custom(
                patched, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas, positive, negative, latent,
                disable_pbar=True, seed=index,
            ),
            "engine": sample(
                reference, noise, text_condition(positive),
                text_condition(negative), config,
            ),
        }  # fmt: skip
        differences.append((sampled["native"] - sampled["engine"]).abs().max().item())
        wanted = parse_caption(clip.caption)
        reads = {}
        for name, latent_out in sampled.items():
            frames = decode_latent(vae, latent_out)[0]
            reads[name] = (detect_colour(frames), detect_shape(frames), detect_direction(frames))
            for i, (read, want) in enumerate(zip(reads[name], (wanted.colour, wanted.shape, wanted.direction))):
                right[name][i] += read == want
        same_reads += reads["native"] == reads["engine"]
    n = len(clips)
    print(f"{n} held-out captions, preset {args.preset}, seeds 0..{n - 1}")
    for name, counts in right.items():
        print(f"{name:7s} colour {counts[0] / n:.2f}  shape {counts[1] / n:.2f}  direction {counts[2] / n:.2f}")
    print(f"same reads on {same_reads} of {n}; max abs latent difference {max(differences):.2e} (median "
          f"{sorted(differences)[n // 2]:.2e})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
