"""Step caching on the embedded default: sampling time and toy-world accuracy, cache on against off.

The measurement of docs/benchmarks.md, Step caching, in one call: both embedded presets, uncached and at each
threshold, sampled as ``generate --cache`` samples (the DiT wrapped, the pipeline unchanged), every variant's
fastest of a few runs with the variants taking turns; then colour, shape and direction accuracy of each variant on
the same held-out prompts.
"""

import dataclasses
import functools

import torch

from .. import embedded
from ..pipeline import encode_prompts
from ..sampling import PRESETS, StepCache
from ..toyworld.evaluate import ACCURACY_KEYS, caption_accuracy, sample_world_latent
from ..toyworld.world import heldout_clips
from .dit import interleaved

THRESHOLDS = (0.0, 0.1, 0.2)


def with_cache(models, preset: str, threshold: float):
    """``models`` with the DiT wrapped in a step cache of ``threshold`` for ``preset``'s time grid (0: unchanged)."""
    if not threshold:
        return models
    return dataclasses.replace(models, dit=StepCache(threshold).wrap(models.dit, PRESETS[preset].times()))


@torch.no_grad()
def run_cache_benchmark(quick: bool = False) -> dict:
    models = embedded.load(with_audio=False)
    prompts, repeats, thresholds = (4, 1, (0.0, 0.2)) if quick else (50, 3, THRESHOLDS)
    captions = [clip.caption for clip in heldout_clips(seed=1, n=prompts)]
    cond, uncond = encode_prompts(models, captions), encode_prompts(models, [""])
    variants = {(preset, t): with_cache(models, preset, t) for preset in embedded.PRESETS for t in thresholds}
    runs = {
        key: functools.partial(sample_world_latent, variant, cond, uncond, 1, PRESETS[key[0]])
        for key, variant in variants.items()
    }
    seconds = interleaved(runs, repeats, summary=min)
    rows = []
    for (preset, t), variant in variants.items():
        calls = variant.dit.full if t else PRESETS[preset].steps - 1  # full calls of the last timed run
        rows.append(
            dict(
                preset=preset,
                threshold=t,
                full_calls=calls,
                seconds=seconds[preset, t],
                time_vs_uncached=seconds[preset, t] / seconds[preset, 0.0],
                **caption_accuracy(variant, captions, preset, 1, prompts),
            )
        )
    print(
        f"step caching, embedded default, {prompts} held-out prompts (seed 1), fastest of {repeats}, "
        f"{torch.get_num_threads()} threads:"
    )
    print(f"  {'preset':<20} {'T':>5} {'full calls':>10} {'time / uncached':>16} " + " ".join(ACCURACY_KEYS))
    for row in rows:
        print(
            f"  {row['preset']:<20} {row['threshold']:>5g} {row['full_calls']:>10} {row['time_vs_uncached']:>16.3f} "
            + " ".join(f"{row[k]:>{len(k)}.2f}" for k in ACCURACY_KEYS)
        )
    return dict(prompts=prompts, rows=rows)
