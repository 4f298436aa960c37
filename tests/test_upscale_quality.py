"""Large frames on the toy world (lumina_core/toyworld/upscale.py): 128x128 by the refine pass from its default start
time, a small run. The figures and the 50-prompt run are in docs/long-videos.md; a missed target is a strict xfail
with the figure measured."""

import pytest

from lumina_core import embedded
from lumina_core.sampling import REFINE_START
from lumina_core.toyworld.upscale import checks, evaluate

pytestmark = [pytest.mark.quality, pytest.mark.skipif(not embedded.available(), reason="no embedded default")]

CLIPS = 12
MISSES = {
    "seam ratio": "1.67 on 12 prompts (1.69 before the presets' skip-layer guidance, 1.66 on 50 then; "
    "docs/long-videos.md)"
}
"""target name -> the figure measured at CLIPS prompts where the embedded default misses it (the DiT of eceba34; the
192 x 6 DiT before it met the seam ratio on these prompts)."""


@pytest.fixture(scope="module")
def verdicts():
    return checks(evaluate(CLIPS, starts=(REFINE_START,), from_noise=False), f"refine from t={REFINE_START}")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=MISSES[name])] if name in MISSES else [])
        for name in ("colour", "shape drop from 64x64", "seam ratio")
    ],
)
def test_the_refine_pass_meets_the_target(verdicts, name):
    value, target, met = verdicts[name]
    assert met, f"{name}: {value:.3f}, target {target}"
