"""The "auto" time shift: anchored on the reference's presets at their own sizes, rising with the token count, and
the command line's --time-shift auto."""

import pytest

from lumina_core.__main__ import build_parser, main, sampling_config
from lumina_core.models.nextdit import PatchSize
from lumina_core.request import RELEASED_PATCH_SIZES, latent_shape
from lumina_core.sampling import AUTO, auto_time_shift, parse_time_shift, preset, resolve_time_shift, token_count
from lumina_core.sampling.time_shift import AUTO_SHIFT_ANCHORS

TOY_LATENT = latent_shape(64, 64, 16)  # the embedded default's size: [1, 16, 4, 8, 8]


def test_the_anchors_are_the_reference_presets_at_their_own_sizes():
    sizes = {"f16F64R512": (672, 384, 64), "f24F96R960": (1248, 704, 96)}
    assert [name for _, name in AUTO_SHIFT_ANCHORS] == list(sizes)
    for tokens, name in AUTO_SHIFT_ANCHORS:
        assert token_count(latent_shape(*sizes[name]), RELEASED_PATCH_SIZES) == tokens
        assert auto_time_shift(tokens) == pytest.approx(preset(name).time_shift, abs=1e-12)
        assert auto_time_shift(tokens) == preset(f"{name}-MultiScale").time_shift
    assert auto_time_shift(16_128) == 8.0 and auto_time_shift(82_368) == 24.0


def test_auto_shift_rises_with_the_token_count_and_stays_positive():
    counts = [1, 64, 1_000, 16_128, 40_000, 82_368, 200_000, 1_048_576]
    shifts = [auto_time_shift(n) for n in counts]
    assert all(a < b for a, b in zip(shifts, shifts[1:]))
    assert shifts[0] > 4.1
    assert auto_time_shift(64) == pytest.approx(4.1198, abs=1e-4)  # the toy world
    assert shifts[-1] == pytest.approx(257.38, abs=0.01)  # 2048x2048x256, the largest video the pack accepts


@pytest.mark.parametrize("tokens", [0, -5, 3.5, True, "64"])
def test_auto_shift_refuses_what_is_not_a_token_count(tokens):
    with pytest.raises(ValueError, match="positive whole token count"):
        auto_time_shift(tokens)


def test_tokens_are_counted_at_the_finest_patch():
    patches = [PatchSize(2, 4), PatchSize(1, 2), PatchSize(2, 2)]
    assert token_count(TOY_LATENT, patches) == 4 * 4 * 4
    assert token_count((24, 88, 156), [PatchSize(2, 4)]) == 12 * 22 * 39
    with pytest.raises(ValueError, match="patch sizes"):
        token_count(TOY_LATENT, [])
    assert resolve_time_shift(AUTO, TOY_LATENT, patches) == auto_time_shift(64)
    assert resolve_time_shift(7, TOY_LATENT, patches) == 7.0


@pytest.mark.parametrize("text, value", [("auto", AUTO), (" AUTO ", AUTO), ("3.5", 3.5), ("24", 24.0)])
def test_a_time_shift_is_a_positive_number_or_auto(text, value):
    assert parse_time_shift(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", ""])
def test_other_time_shifts_are_refused_with_the_choices(text):
    with pytest.raises(ValueError, match="must be a positive number or 'auto'"):
        parse_time_shift(text)


def test_the_command_line_reads_auto_and_resolves_it_from_the_latent():
    parser = build_parser()
    args = parser.parse_args(["generate", "--prompt", "a red circle", "--time-shift", "auto"])
    assert args.time_shift == AUTO
    toy_patches = [PatchSize(1, 2), PatchSize(2, 2), PatchSize(2, 4)]
    assert sampling_config(args, "embedded", TOY_LATENT, toy_patches).time_shift == auto_time_shift(64)
    released = latent_shape(1248, 704, 96)
    assert sampling_config(args, "f24F96R960", released, RELEASED_PATCH_SIZES).time_shift == 24.0
    args = parser.parse_args(["generate", "--prompt", "a red circle", "--time-shift", "5"])
    assert sampling_config(args, "embedded", TOY_LATENT, toy_patches).time_shift == 5.0
    args = parser.parse_args(["generate", "--prompt", "a red circle"])
    assert sampling_config(args, "embedded", TOY_LATENT, toy_patches).time_shift == preset("embedded").time_shift


def test_the_command_line_refuses_a_bad_time_shift(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--prompt", "a red circle", "--time-shift", "fast"])
    assert "--time-shift: time shift 'fast' must be a positive number or 'auto'" in capsys.readouterr().err


def test_generate_with_auto_time_shift_says_the_shift(tmp_path, capsys):
    out = tmp_path / "auto.mp4"
    command = ["generate", "--prompt", "a red circle moving left", "--time-shift", "auto", "--steps", "3"]
    assert main([*command, "--no-audio", "--out", str(out)]) == 0
    assert "time shift 4.12 (auto, from the token count)" in capsys.readouterr().out
    assert out.is_file()
