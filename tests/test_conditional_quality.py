"""Conditional generation on held-out toy-world clips: the targets of issue 24.

The same measurements as ``python -m lumina_core.toyworld.conditional --clips 12`` (docs/conditional.md), held the
embedded DiT's own way (per-token timesteps). Targets the embedded default misses are strict xfails with the figure
measured on these 12 clips: the test still asserts the unlowered target, and the change that meets one fails here
until its record is updated. Most misses sit at the embedded VAE's own round trip, which the measurement prints
beside them.
"""

import pytest

from lumina_core.toyworld.conditional import TARGETS, checks, evaluate

pytestmark = pytest.mark.quality

CLIPS = 12
MISSED = {  # with the embedded presets' skip-layer guidance (2026-12-08)
    "image-to-video: frame 0 PSNR (dB)": "28.2 dB on 12 clips; the VAE's round trip of the still image is 29.0 dB",
    "image-to-video: prompted direction accuracy": "0.67 on 12 clips",
    "image-to-video: clips with at most one still frame at the start": "0.17 on 12 clips; the VAE's round trip of "
    "real clips: 0.51",
    "keyframes: last frame PSNR (dB)": "24.5 dB on 12 clips",
    "keyframes: median-clip stutter (max / median move)": "4.70 on 12 clips",
    "extension: given frames PSNR (dB)": "21.6 dB on 12 clips, at the VAE's round trip of those frames",
    "extension: shape kept": "0.83 on 12 clips",
    "extension: direction continues": "0.75 on 12 clips",
    "extension: clips without a jump at the seam": "0.08 on 12 clips",
    "inpainting: outside PSNR, worst frame (dB)": "18.4 dB on 12 clips, under the VAE's round trip of the clip",
    "inpainting: prompted colour inside": "0.08 on 12 clips with the 192 x 6 DiT (met by the 128 x 4 DiT before "
    "2026-12-07: 0.89 on 100)",
    "inpainting: clips whose path is continuous": "0.17 on 12 clips",
    "cinemagraph: shape kept": "0.92 on 12 clips",
}


@pytest.fixture(scope="module")
def verdicts():
    return checks(evaluate(CLIPS))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=MISSED[name])) if name in MISSED else name
        for name in TARGETS
    ],
)
def test_conditional_target(verdicts, name):
    value, target, met = verdicts[name]
    assert met, f"{name}: measured {value}, target {target}"
