"""Smoke tests of the training recipes on random-weight embedded files: the scale cycle, resume, where runs go,
and ``all`` training the set in order and resuming it."""

from pathlib import Path

import pytest
import torch
from toy_weights import write_random_embedded

from lumina_core import embedded
from lumina_core.models.nextdit import MultiScaleNextDiT, PatchSize
from lumina_core.toyworld import train, train_v2a


@pytest.fixture(autouse=True)
def default_runs_in_tmp(tmp_path, monkeypatch):
    """A run that forgets --runs lands in the test's folder, never in ~/.cache."""
    monkeypatch.setenv(train.RUNS_ENV, str(tmp_path / "default-runs"))


@pytest.fixture(autouse=True)
def one_thread():
    """The recipe's --threads would otherwise outlive the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(tmp_path, *args):
    train.main(
        [
            *args,
            "--threads",
            "1",
            "--save-every",
            "1",
            "--runs",
            str(tmp_path / "runs"),
            "--export",
            str(tmp_path / "export"),
        ]
    )


def test_dit_steps_follow_the_scale_cycle_and_resume(tmp_path, monkeypatch):
    write_random_embedded(tmp_path / "export")
    used = []
    forward = MultiScaleNextDiT.forward

    def recording_forward(self, x, t, cap_feats, cap_mask, motion_score, patch):
        used.append(str(PatchSize(*patch)))
        return forward(self, x, t, cap_feats, cap_mask, motion_score, patch)

    monkeypatch.setattr(MultiScaleNextDiT, "forward", recording_forward)
    dit_args = ("dit", "--clips", "4", "--batch", "2", "--scale-cycle", "1x2,2x4,1x2")
    run(tmp_path, *dit_args, "--steps", "4")
    assert used == ["1x2", "2x4", "1x2", "1x2"]
    assert torch.load(tmp_path / "runs" / "dit" / "checkpoint.pt", weights_only=True)["step"] == 4

    used.clear()
    run(tmp_path, *dit_args, "--steps", "5")
    assert used == ["2x4"]  # step 4 of the cycle, resumed rather than restarted


def test_export_now_writes_the_last_checkpoints_ema_and_trains_nothing(tmp_path):
    from safetensors.torch import load_file

    write_random_embedded(tmp_path / "export")
    dit_args = ("dit", "--clips", "4", "--batch", "2", "--steps")
    with pytest.raises(SystemExit, match="holds no checkpoint to export yet"):
        run(tmp_path, *dit_args, "10", "--export-now")
    run(tmp_path, *dit_args, "2")
    (tmp_path / "export" / "dit.safetensors").unlink()
    run(tmp_path, *dit_args, "10", "--export-now")
    assert torch.load(tmp_path / "runs" / "dit" / "checkpoint.pt", weights_only=True)["step"] == 2
    shadow = torch.load(tmp_path / "runs" / "dit" / "ema.pt", weights_only=True)["dit"]
    exported = load_file(tmp_path / "export" / "dit.safetensors")
    assert exported.keys() == shadow.keys() and all(torch.equal(exported[k], shadow[k]) for k in shadow)


def test_scale_cycle_must_name_the_models_patch_sizes(tmp_path):
    write_random_embedded(tmp_path / "export")
    with pytest.raises(SystemExit, match=r"--scale-cycle names 1x4, which the model lacks"):
        run(tmp_path, "dit", "--clips", "2", "--batch", "2", "--steps", "1", "--scale-cycle", "1x2,1x4")


def test_dit_without_latents_or_a_vae_to_encode_them_names_the_fix(tmp_path):
    with pytest.raises(
        SystemExit,
        match=r"no .*latents.pt to train on and no .*vae.safetensors to encode clips with: copy the VAE there",
    ):
        run(tmp_path, "dit", "--clips", "2", "--batch", "2", "--steps", "1")
    assert not (tmp_path / "runs" / "dit").exists()


def test_scale_cycle_syntax_errors_are_usage_errors(capsys):
    with pytest.raises(SystemExit):
        train.main(["dit", "--steps", "1", "--scale-cycle", "1x2,bad"])
    assert "argument --scale-cycle: patch size 'bad' must be written '{temporal}x{spatial}'" in capsys.readouterr().err


def test_word_dropout_leaves_words_out_in_order_and_is_seeded():
    caption = "a red circle moving left"
    assert train.drop_words(caption, 0.0, torch.Generator().manual_seed(0)) == caption
    partial = [train.drop_words(caption, 0.5, torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert partial == [train.drop_words(caption, 0.5, torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert any(p != caption for p in partial)
    for p in partial:  # what is left is the caption's words, in the caption's order
        words = iter(caption.split())
        assert all(word in words for word in p.split())


def test_word_dropout_must_be_a_probability(capsys):
    with pytest.raises(SystemExit):
        train.main(["dit", "--steps", "1", "--word-dropout", "1.5"])
    assert "argument --word-dropout: 1.5 is not a probability in [0, 1)" in capsys.readouterr().err


def test_decoder_stage_trains_only_the_decoder_on_the_dits_predictions(tmp_path, monkeypatch):
    from lumina_core.models.vae import load_vae

    write_random_embedded(tmp_path / "export")
    before = load_vae(tmp_path / "export" / "vae.safetensors").state_dict()
    used = []
    forward = MultiScaleNextDiT.forward

    def recording_forward(self, x, t, cap_feats, cap_mask, motion_score, patch):
        used.append((str(PatchSize(*patch)), t.min().item()))
        return forward(self, x, t, cap_feats, cap_mask, motion_score, patch)

    monkeypatch.setattr(MultiScaleNextDiT, "forward", recording_forward)
    run(tmp_path, "decoder", "--steps", "2", "--batch", "1", "--decoder-dit-share", "1")
    assert [patch for patch, _ in used] == ["1x2", "1x2"]  # every step decodes a prediction, at the finest patch size
    assert all(t >= 0.5 for _, t in used)
    after = load_vae(tmp_path / "export" / "vae.safetensors").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder"))
    assert torch.load(tmp_path / "runs" / "decoder" / "checkpoint.pt", weights_only=True)["step"] == 2


def test_decoder_still_group_share_decodes_clips_held_still_within_latent_frames(tmp_path, monkeypatch):
    """--decoder-still-group-share 1: every step encodes the clips redrawn still within each latent frame (4
    frames) and decodes that, the clips as drawn the target; the DiT is not called."""
    write_random_embedded(tmp_path / "export")
    groups = []
    held = train.still_group_frames
    monkeypatch.setattr(train, "still_group_frames", lambda clip, group: groups.append(group) or held(clip, group))
    monkeypatch.setattr(MultiScaleNextDiT, "forward", lambda *args: pytest.fail("the DiT was called"))
    run(
        tmp_path,
        "decoder",
        "--steps",
        "2",
        "--batch",
        "2",
        "--decoder-still-group-share",
        "1",
        "--decoder-dit-share",
        "0",
    )
    assert groups == [4] * 4


def test_decoder_latent_source_shares_split_the_same_steps(capsys):
    with pytest.raises(SystemExit):
        train.main(["decoder", "--steps", "1", "--decoder-still-group-share", "0.6"])
    err = capsys.readouterr().err
    assert "--decoder-dit-share 0.5, --decoder-still-group-share 0.6: shares of the same steps" in err


def test_temporal_difference_loss_sees_a_still_start_and_weights_the_first_steps():
    frames = torch.linspace(-1, 1, 16).view(1, 1, 16, 1, 1).expand(1, 3, 16, 4, 4)  # [B, 3, F, H, W], steady motion
    assert train.temporal_difference_loss(frames + 0.3, frames, 3.0) < 1e-6  # an offset keeps every difference
    still_start = frames.clone()
    still_start[:, :, : train.STILL_GROUP_FRAMES] = frames[
        :, :, train.STILL_GROUP_FRAMES - 1 : train.STILL_GROUP_FRAMES
    ]
    still_end = frames.clone()
    still_end[:, :, -train.STILL_GROUP_FRAMES :] = frames[:, :, -train.STILL_GROUP_FRAMES :][:, :, :1]
    assert train.temporal_difference_loss(still_start, frames, 0.0) == pytest.approx(
        train.temporal_difference_loss(still_end, frames, 0.0).item()
    )
    assert train.temporal_difference_loss(still_start, frames, 3.0) > train.temporal_difference_loss(
        still_end, frames, 3.0
    )


def test_decoder_stage_adds_the_temporal_loss_when_weighted(tmp_path, monkeypatch):
    write_random_embedded(tmp_path / "export")
    weights = []
    loss = train.temporal_difference_loss
    monkeypatch.setattr(
        train,
        "temporal_difference_loss",
        lambda recon, frames, early: weights.append(early) or loss(recon, frames, early),
    )
    run(tmp_path, "decoder", "--steps", "1", "--batch", "1", "--decoder-dit-share", "0")
    assert weights == []
    write_random_embedded(tmp_path / "weighted" / "export")
    run(
        tmp_path / "weighted",
        "decoder",
        "--steps",
        "1",
        "--batch",
        "1",
        "--temporal-weight",
        "2",
        "--temporal-early-weight",
        "5",
    )
    assert weights == [5.0]


def test_latent_frame_difference_loss_counts_only_error_that_changes_between_latent_frames():
    steady = torch.full((2, 4, 4, 3, 3), 0.5)  # [B, C, F, h, w]: the same error in every latent frame
    assert train.latent_frame_difference_loss(steady) == 0
    jump = steady.clone()
    jump[:, :, 2:] = -0.5  # a jump between latent frames 1 and 2 only: 1 on one of the three steps
    assert train.latent_frame_difference_loss(jump) == pytest.approx(1 / 3)
    kept_first = torch.ones_like(jump)
    kept_first[:, :, :2] = 0  # latent frames 0-1 given clean: the step into frame 2 leaves the loss
    assert train.latent_frame_difference_loss(jump, kept_first) == 0
    kept_last = torch.ones_like(jump)
    kept_last[:, :, 3] = 0  # frame 3 given: steps 0-1 and 1-2 count, the jump is one of two
    assert train.latent_frame_difference_loss(jump, kept_last) == pytest.approx(1 / 2)


@pytest.mark.parametrize("share", ["0", "0.5"])
def test_dit_stage_adds_the_latent_frame_difference_loss_when_weighted(tmp_path, monkeypatch, share):
    write_random_embedded(tmp_path / "export")
    masks = []
    loss = train.latent_frame_difference_loss
    monkeypatch.setattr(
        train, "latent_frame_difference_loss", lambda error, mask=None: masks.append(mask) or loss(error, mask)
    )
    dit_args = ("dit", "--clips", "2", "--batch", "2", "--steps", "1", "--conditioning-share", share)
    run(tmp_path, *dit_args)
    assert masks == []
    write_random_embedded(tmp_path / "weighted" / "export")
    run(tmp_path / "weighted", *dit_args, "--dit-temporal-weight", "2")
    assert len(masks) == 1 and (masks[0] is None) == (share == "0")


def test_rope_time_in_frames_is_trained_and_exported(tmp_path):
    from lumina_core.io.checkpoints import load_nextdit

    write_random_embedded(tmp_path / "export")
    dit_args = ("dit", "--clips", "2", "--batch", "2", "--steps", "1")
    run(tmp_path, *dit_args, "--from-export", "--rope-time-in-frames")
    assert load_nextdit(tmp_path / "export" / "dit.safetensors")[1].rope_time_in_frames
    write_random_embedded(tmp_path / "again" / "export")
    run(tmp_path / "again", *dit_args, "--rope-time-in-frames")  # from scratch
    model, config, _ = load_nextdit(tmp_path / "again" / "export" / "dit.safetensors")
    assert config.rope_time_in_frames and model.rope_time_in_frames


def test_temporal_weights_must_not_be_negative(capsys):
    with pytest.raises(SystemExit):
        train.main(["decoder", "--steps", "1", "--temporal-weight", "-1"])
    assert "loss weights can't be negative" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["dit", "--steps", "1", "--dit-temporal-weight", "-1"])
    assert "loss weights can't be negative" in capsys.readouterr().err


def test_decoder_dit_share_must_be_a_share(capsys):
    with pytest.raises(SystemExit):
        train.main(["decoder", "--steps", "1", "--decoder-dit-share", "2"])
    assert "argument --decoder-dit-share: 2.0 is not a share in [0, 1]" in capsys.readouterr().err


def test_decoder_noise_max_trains_a_denoising_decoder_on_noisy_latents(tmp_path, monkeypatch):
    """--decoder-noise-max switches the noise-level input on and decodes latents taken back to levels within it;
    the encoder stays as it was."""
    from lumina_core.models.vae import CogVideoXVAE, load_vae

    write_random_embedded(tmp_path / "export")
    before = load_vae(tmp_path / "export" / "vae.safetensors").state_dict()
    levels = []
    decode = CogVideoXVAE.decode_model_latent

    def recording_decode(self, z, latent_frames_per_chunk=2, noise_level=0.0):
        levels.append(torch.as_tensor(noise_level).flatten().tolist())
        return decode(self, z, latent_frames_per_chunk, noise_level)

    monkeypatch.setattr(CogVideoXVAE, "decode_model_latent", recording_decode)
    run(tmp_path, "decoder", "--steps", "3", "--batch", "4", "--decoder-dit-share", "0", "--decoder-noise-max", "0.2")
    assert len(levels) == 3 and all(len(step) == 4 and all(0 <= x <= 0.2 for x in step) for step in levels)
    assert any(x > 0 for step in levels for x in step)
    after = load_vae(tmp_path / "export" / "vae.safetensors")
    assert after.config.decoder_timestep_conditioning
    assert all(torch.equal(before[k], after.state_dict()[k]) for k in before if k.startswith("encoder"))
    with pytest.raises(SystemExit):
        train.main(["decoder", "--steps", "1", "--decoder-noise-max", "1"])


def test_dit_from_export_fine_tunes_the_exported_weights(tmp_path):
    from lumina_core.io.checkpoints import read_state_dict

    write_random_embedded(tmp_path / "export")
    before = {
        name: read_state_dict(tmp_path / "export" / name)[0] for name in ("dit.safetensors", "text_encoder.safetensors")
    }
    run(tmp_path, "dit", "--from-export", "--clips", "2", "--batch", "2", "--steps", "1")
    for name, state in before.items():
        after, _ = read_state_dict(tmp_path / "export" / name)
        changes = [(after[k] - state[k]).abs().max().item() for k in state]
        assert 0 < max(changes) < 1e-2, name  # one step away from the exported weights (EMA 0.999), not a fresh init
    assert torch.load(tmp_path / "runs" / "dit" / "checkpoint.pt", weights_only=True)["step"] == 1


def test_random_keep_draws_each_layout_leaves_something_to_generate_and_keeps_the_rest_plain():
    keep = train.random_keep(2000, (4, 8, 8), 0.5, torch.Generator().manual_seed(0))
    conditioned = keep.flatten(1).amax(1) > 0
    assert 0.45 < conditioned.float().mean() < 0.55
    assert bool((keep.flatten(1).amin(1) < 1).all())  # never everything given
    hard = keep[conditioned].flatten(1).amax(1) == 1
    assert 0.7 < hard.float().mean() < 0.8  # three in four at strength 1, the rest soft
    frames_only = keep[conditioned & (keep.amax(dim=(2, 3)) == keep.amin(dim=(2, 3))).all(1)]
    first_only = (frames_only[:, 0, 0, 0] > 0) & (frames_only[:, 1:, 0, 0] == 0).all(1)
    assert first_only.any()  # image-to-video among the layouts
    box = keep[conditioned & (keep.amax(dim=(2, 3)) != keep.amin(dim=(2, 3))).any(1)]
    assert len(box) and bool((box[:, :1] == box).all())  # a box holds over every frame


def test_conditioning_share_trains_per_cell_times_and_marks_the_export(tmp_path, monkeypatch):
    from lumina_core.io.checkpoints import trained_conditioning

    write_random_embedded(tmp_path / "export")
    times = []
    forward = MultiScaleNextDiT.forward

    def recording_forward(self, x, t, cap_feats, cap_mask, motion_score, patch):
        times.append(t)
        return forward(self, x, t, cap_feats, cap_mask, motion_score, patch)

    monkeypatch.setattr(MultiScaleNextDiT, "forward", recording_forward)
    assert trained_conditioning(tmp_path / "export" / "dit.safetensors") == "replace"
    run(tmp_path, "dit", "--from-export", "--clips", "4", "--batch", "4", "--steps", "2", "--conditioning-share", "1")
    assert all(t.ndim == 4 and bool((t == 1).any()) and bool((t < 1).any()) for t in times)
    assert trained_conditioning(tmp_path / "export" / "dit.safetensors") == "timestep"


def test_conditioning_share_must_be_a_share(capsys):
    with pytest.raises(SystemExit):
        train.main(["dit", "--steps", "1", "--conditioning-share", "1.5"])
    assert "--conditioning-share: 1.5 is not a share in [0, 1]" in capsys.readouterr().err


def test_dit_width_and_depth_size_a_model_trained_from_scratch(tmp_path):
    from lumina_core.io.checkpoints import load_nextdit

    write_random_embedded(tmp_path / "export")
    run(tmp_path, "dit", "--clips", "2", "--batch", "2", "--steps", "1", "--dit-width", "64", "--dit-depth", "3")
    model, config, _ = load_nextdit(tmp_path / "export" / "dit.safetensors")
    assert (config.dim, config.n_layers, config.n_heads, config.n_kv_heads) == (64, 3, 2, 1)
    assert len(model.layers) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("--dit-width", "100"), "the width must be a multiple of 32"),
        (("--dit-depth", "0"), "the depth at least 1"),
        (("--from-export", "--dit-depth", "6"), "--from-export keeps the exported DiT's size"),
    ],
)
def test_dit_size_errors_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit):
        train.main(["dit", "--steps", "1", *args])
    assert message in capsys.readouterr().err


def test_step_time_reports_each_size_against_the_first(capsys):
    from lumina_core.toyworld import step_time

    step_time.main(["--sizes", "32x1,64x2", "--batch", "2", "--steps", "1", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("32 wide x 1 layers, 8x8 latents") and lines[0].endswith("1.00x the first")
    assert lines[1].startswith("64 wide x 2 layers, 8x8 latents")


@pytest.mark.parametrize(
    "args, message",
    [
        (("--sizes", "128by4"), "size '128by4' must be written WIDTHxDEPTH"),
        (("--sizes", "128"), "size '128' must be written WIDTHxDEPTH"),
        (("--sizes", "128x4,100x4"), "size '100x4' must be written WIDTHxDEPTH with the width a multiple of 32"),
        (("--latent", "8,x"), "latent sizes '8,x' must be positive whole numbers"),
    ],
)
def test_step_time_syntax_errors_are_usage_errors(args, message, capsys):
    from lumina_core.toyworld import step_time

    with pytest.raises(SystemExit):
        step_time.main(list(args))
    assert message in capsys.readouterr().err


def test_runs_default_outside_the_checkout_unless_told(tmp_path, monkeypatch):
    parsers = dict(
        train=lambda *extra: train.build_parser().parse_args(["vae", "--steps", "1", *extra]),
        v2a=lambda *extra: train_v2a.build_parser().parse_args(["--steps", "1", *extra]),
    )
    monkeypatch.delenv(train.RUNS_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, parse in parsers.items():
        assert parse().runs == tmp_path / "home" / ".cache" / "lumina-video" / "runs", name
    monkeypatch.setenv(train.RUNS_ENV, str(tmp_path / "elsewhere"))
    for name, parse in parsers.items():
        assert parse().runs == tmp_path / "elsewhere", name
        assert parse("--runs", "mine").runs == Path("mine"), name
    for parser in (train.build_parser(), train_v2a.build_parser()):
        help_text = " ".join(parser.format_help().split())
        assert "$LUMINA_VIDEO_RUNS" in help_text and "~/.cache/lumina-video/runs" in help_text


@pytest.mark.parametrize(
    "args, message",
    [
        (("all", "--steps", "5"), "all runs RECIPE's options; --steps set one stage"),
        (("all", "--batch", "2", "--lr", "0.1"), "--batch, --lr set one stage"),
        (("vae",), "the vae stage needs --steps"),
        (("dit", "--steps", "1", "--smoke"), "--smoke goes with all"),
    ],
)
def test_all_takes_the_recipe_and_one_stage_its_steps(args, message, capsys):
    with pytest.raises(SystemExit):
        train.main(list(args))
    assert message in capsys.readouterr().err


class Interrupted(Exception):
    """A training run stopped from outside (Ctrl-C, a lost machine)."""


def test_all_trains_the_set_in_order_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    runs, export = tmp_path / "runs", tmp_path / "export"
    calls, interrupt = [], ["decoder"]

    def recorded(stage, function):
        def run_recorded(args):
            calls.append((stage, train.Checkpoint(train.checkpoint_path(args.runs, stage)).step()))
            if stage in interrupt:
                raise Interrupted
            return function(args)

        return run_recorded

    for stage in ("vae", "dit", "decoder"):
        monkeypatch.setattr(train, f"train_{stage}", recorded(stage, getattr(train, f"train_{stage}")))
    monkeypatch.setattr(train_v2a, "run", recorded("v2a", train_v2a.run))

    def run_all():
        calls.clear()
        train.main(["all", "--smoke", "--threads", "1", "--runs", str(runs), "--export", str(export)])

    with pytest.raises(Interrupted):  # stopped as the decoder begins
        run_all()
    assert calls == [("vae", 0), ("dit", 0), ("decoder", 0)]
    interrupt.clear()
    calls.clear()
    decoder = ["decoder", "--steps", "1", "--batch", "1", "--threads", "1", "--runs", str(runs)]
    train.main([*decoder, "--export", str(runs / "export")])  # one step of the decoder, then stopped

    run_all()
    assert calls == [("decoder", 1), ("v2a", 0)]  # finished stages skipped, the decoder resumed
    for stage in ("vae", "dit", "decoder", "v2a"):
        assert train.Checkpoint(train.checkpoint_path(runs, stage)).step() == 2, stage
    exported = {name: (export / name).read_bytes() for name in embedded.FILES.values()}
    assert all(exported[name] == (runs / "export" / name).read_bytes() for name in exported)

    run_all()
    assert calls == []
    assert exported == {name: (export / name).read_bytes() for name in embedded.FILES.values()}


def test_handoff_measures_a_denoising_decoder_beside_the_shipped_one(tmp_path, capsys):
    """``toyworld.handoff`` on a denoising decoder fresh from the shipped VAE (its new layers at no effect): the
    candidate's row at level 0 reads as the shipped decoder's, a hand-off row names its model calls, and a VAE
    without the noise-level input is refused by name."""
    from lumina_core.models.vae import save_vae
    from lumina_core.toyworld import handoff

    vae = embedded.load(with_audio=False).vae
    save_vae(train.with_decoder_options(vae, decoder_timestep_conditioning=True), tmp_path / "denoising.safetensors")
    handoff.main([str(tmp_path / "denoising.safetensors"), "--clips", "2", "--levels", "0.1"])
    lines = capsys.readouterr().out.splitlines()
    shipped, level_zero = (line.split(": ", 1)[1] for line in lines[:2])
    assert shipped == level_zero
    assert "embedded, candidate, hand-off at 0.1 (28 calls): {'colour'" in lines[2]
    save_vae(vae, tmp_path / "plain.safetensors")
    with pytest.raises(SystemExit):
        handoff.main([str(tmp_path / "plain.safetensors"), "--clips", "1"])
    assert "is not a denoising decoder" in capsys.readouterr().err


def test_flow_loss_compares_dits_on_the_same_clips(tmp_path, capsys):
    """Two folders holding the same DiT read the same losses; a folder without a DiT is refused by name."""
    from lumina_core.toyworld import flow_loss

    write_random_embedded(tmp_path / "random")
    flow_loss.main(["embedded", str(tmp_path / "random"), str(embedded.folder()), "--clips", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "flow loss at the finest patch size, 3 clips per set"
    shipped, random_weights, again = (line.split("): ", 1)[1] for line in lines[1:])
    assert shipped == again and shipped != random_weights
    assert "fresh training clips" in shipped and "held-out clips" in shipped
    with pytest.raises(SystemExit):
        flow_loss.main([str(tmp_path / "nothing"), "--clips", "1"])
    assert "no DiT in" in capsys.readouterr().err


def test_compile_trains_compiled_blocks_into_the_same_checkpoint_keys(tmp_path):
    from safetensors import safe_open

    dit_args = ("dit", "--clips", "2", "--batch", "2", "--scale-cycle", "2x4", "--dit-width", "32", "--dit-depth", "1")
    for run_name in ("eager", "compiled"):
        write_random_embedded(tmp_path / run_name / "export")
    run(tmp_path / "eager", *dit_args, "--steps", "1")
    torch._dynamo.reset()
    run(tmp_path / "compiled", *dit_args, "--steps", "1", "--compile")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the blocks ran compiled, not eager

    def keys(root):
        with safe_open(root / "export" / "dit.safetensors", "pt") as f:
            return set(f.keys())

    assert keys(tmp_path / "compiled") == keys(tmp_path / "eager")  # no torch.compile prefixes in the export
    checkpoint = torch.load(tmp_path / "compiled" / "runs" / "dit" / "checkpoint.pt", weights_only=True)
    assert not [key for key in checkpoint["modules"]["dit"] if "_orig_mod" in key]
    run(tmp_path / "compiled", *dit_args, "--steps", "2")  # an eager run resumes the compiled one
    assert torch.load(tmp_path / "compiled" / "runs" / "dit" / "checkpoint.pt", weights_only=True)["step"] == 2
