"""Quality gates of the shipped style LoRA on the embedded DiT (docs/style-lora.md has the 100-prompt sweep).

On held-out prompts, with the embedded multi-scale preset: strength 0 gives the base model's videos exactly, the
sway style rises with the strength, and colour and direction still follow the prompt (>= 0.95) at every strength.
"""

import pytest

from lumina_core import embedded
from lumina_core.lora import load_lora
from lumina_core.toyworld.style import monotonic, strength_sweep
from lumina_core.toyworld.world import heldout_clips

pytestmark = pytest.mark.quality

CLIPS = 24
STRENGTHS = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def sweep():
    models = embedded.load(with_audio=False)
    lora = load_lora(embedded.PACKAGE_DIR / embedded.STYLE_LORA, models.dit.state_dict())
    captions = [clip.caption for clip in heldout_clips(seed=1, n=CLIPS)]
    return strength_sweep(models, lora, captions, STRENGTHS, seed=1, batch=CLIPS)


def test_strength_zero_is_the_base_model_exactly(sweep):
    assert sweep[0.0]["max_abs_diff_from_base"] == 0.0


def test_the_style_rises_with_the_strength(sweep):
    scores = [sweep[s]["mean_score"] for s in STRENGTHS]
    assert monotonic(scores) and scores[-1] > scores[0], scores


@pytest.mark.parametrize("strength", STRENGTHS)
@pytest.mark.parametrize("key", ["colour", "direction"])
def test_colour_and_direction_follow_the_prompt_at_every_strength(sweep, strength, key):
    assert sweep[strength][key] >= 0.95, sweep[strength]
