import os
import struct
import types
import zipfile
from dataclasses import replace

import pytest
import torch
from damaged_files import assert_names_file_and_fix, damaged_copies
from safetensors.torch import save_file
from tiny_models import TINY, randomized
from toy_weights import embedded_dir_for_tests

from lumina_core import PatchSize
from lumina_core.__main__ import main
from lumina_core.io.checkpoints import (
    CheckpointError,
    checkpoint_kind,
    infer_config,
    load_nextdit,
    load_text_encoder,
    read_state_dict,
    safetensors_header,
    strip_wrapper_prefixes,
)
from lumina_core.models.vae import DIFFUSERS_KEYS


def released_layout(tmp_path, model, prefix="_orig_mod."):
    """The released folder: a fp32 consolidated .pth with torch.compile prefixes, plus model_args.pth."""
    state = {
        (f"layers.{k.split('.', 2)[1]}.{prefix}{k.split('.', 2)[2]}" if k.startswith("layers.") else k): v
        for k, v in model.state_dict().items()
    }
    torch.save(state, tmp_path / "consolidated.00-of-01.pth")
    args = types.SimpleNamespace(
        model="tiny",
        qk_norm=True,
        patch_sizes=[2, 2, 4],
        f_patch_sizes=[1, 2, 2],
        rope_theta=256.0,
        t_scale=1000.0,
        motion_scale=20.0,
        lr=1e-4,
        data_path="/data/video.yaml",
    )
    torch.save(args, tmp_path / "model_args.pth")
    return tmp_path


def forward(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 8, 8, generator=g)
    cap = torch.randn(1, 4, TINY.cap_feat_dim, generator=g)
    return model(x, torch.tensor([0.4]), cap, torch.ones(1, 4), torch.tensor([5.0]), PatchSize(1, 2))


def test_released_folder_loads_exactly(tmp_path):
    source = randomized()
    model, config, notes = load_nextdit(released_layout(tmp_path, source))
    assert config == TINY
    assert any("model_args.pth" in n for n in notes)
    assert torch.equal(forward(model), forward(source))


def test_wrapper_prefixes_are_stripped():
    state = {
        "layers.0._checkpoint_wrapped_module._orig_mod.attention.wq.weight": 1,
        "_fsdp_wrapped_module.pad_token": 2,
    }
    assert strip_wrapper_prefixes(state) == {"layers.0.attention.wq.weight": 1, "pad_token": 2}


def test_config_is_inferred_from_shapes_without_model_args(tmp_path):
    config = replace(TINY, n_kv_heads=4, all_patch_size=(2, 4), all_f_patch_size=(1, 2), qk_norm=False)
    source = randomized(config)
    save_file(source.state_dict(), str(tmp_path / "bare.safetensors"))
    model, loaded, notes = load_nextdit(tmp_path / "bare.safetensors")
    assert loaded == replace(config, rope_theta=256.0, t_scale=1000.0, motion_scale=20.0)
    assert any("inferred from shapes" in n for n in notes) and any("rope_theta=256.0" in n for n in notes)


def test_feed_forward_size_is_recovered_for_other_multipliers():
    config = replace(TINY, multiple_of=1, ffn_dim_multiplier=1.3)
    inferred, _ = infer_config(config.build(device="meta").state_dict())
    assert (
        inferred.build(device="meta").layers[0].feed_forward.w1.weight.shape
        == config.build(device="meta").layers[0].feed_forward.w1.weight.shape
    )


def test_convert_writes_safetensors_that_need_no_model_args(tmp_path):
    source = randomized()
    (tmp_path / "released").mkdir()
    released = released_layout(tmp_path / "released", source)
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(released), str(out), "--dtype", "bf16"]) == 0
    (released / "model_args.pth").unlink()
    tensors, metadata = read_state_dict(out)
    assert "lumina_video_config" in metadata and all(t.dtype == torch.bfloat16 for t in tensors.values())
    model, config, _ = load_nextdit(out, dtype=torch.float32)
    assert config == TINY
    assert (forward(model) - forward(source)).abs().max() < 0.05 * forward(source).abs().max()
    assert not (tmp_path / "converted.safetensors.partial").exists()


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "consolidated.00-of-01.pth"
    torch.save({"pad_token": torch.zeros(2), "evil": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle.*could run code") as error:
        load_nextdit(path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_model_args_with_unexpected_objects_are_refused(tmp_path):
    source = randomized()
    released_layout(tmp_path, source)
    torch.save(types.SimpleNamespace(model="x", hook=os.getcwd), tmp_path / "model_args.pth")
    with pytest.raises(CheckpointError, match="model_args.pth: refused to unpickle"):
        load_nextdit(tmp_path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_damaged_weights_name_the_file_and_the_fix(tmp_path, suffix):
    good = tmp_path / f"dit{suffix}"
    state = randomized().state_dict()
    save_file(state, str(good)) if suffix == ".safetensors" else torch.save(state, good)
    for path, what in damaged_copies(good, tmp_path / "damaged"):
        with pytest.raises(CheckpointError) as error:
            load_nextdit(path)
        assert_names_file_and_fix(error.value, path, what)


def test_damaged_text_encoder_names_the_file_and_the_fix(tmp_path):
    encoder = embedded_dir_for_tests(tmp_path / "embedded")[0] / "text_encoder.safetensors"
    for path, what in damaged_copies(encoder, tmp_path / "damaged"):
        with pytest.raises(CheckpointError) as error:
            load_text_encoder(path)
        assert_names_file_and_fix(error.value, path, what)


def test_damaged_model_args_is_named(tmp_path):
    released_layout(tmp_path, randomized())
    args = tmp_path / "model_args.pth"
    args.write_bytes(args.read_bytes()[:100])
    with pytest.raises(CheckpointError) as error:
        load_nextdit(tmp_path)
    assert_names_file_and_fix(error.value, args, "truncated")


def test_broken_pickles_are_damaged_not_refused(tmp_path):
    """A pickle that fails to parse asks for no code: it is called damaged, not refused as unsafe."""
    state = {"w": torch.zeros(4)}
    legacy = tmp_path / "legacy.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"legacy.pth is damaged: torch.load can't read it .*Download it again"):
        load_nextdit(legacy)

    scrambled = tmp_path / "scrambled.pth"  # a whole zip whose pickle is scrambled (a bad disk, a bad copy)
    torch.save(state, scrambled)
    with zipfile.ZipFile(scrambled) as archive:
        pickled = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
    data = bytearray(scrambled.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[pickled.header_offset + 26 : pickled.header_offset + 30])
    start = pickled.header_offset + 30 + name_length + extra_length  # the pickle's first byte (stored, not deflated)
    data[start + 2 : start + 20] = b"A" * 18
    scrambled.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"scrambled.pth is damaged: its pickled data is corrupt"):
        load_nextdit(scrambled)


def test_checkpoint_kind_reads_the_header_only(tmp_path):
    embedded = embedded_dir_for_tests(tmp_path / "embedded")[0]
    kinds = {name: checkpoint_kind(embedded / f"{name}.safetensors") for name in ("dit", "text_encoder", "vae", "v2a")}
    assert kinds == {"dit": "dit", "text_encoder": "text_encoder", "vae": "vae", "v2a": "v2a"}

    source = randomized()
    released_layout(tmp_path, source)
    assert checkpoint_kind(tmp_path / "consolidated.00-of-01.pth") == "dit"
    assert checkpoint_kind(tmp_path / "model_args.pth") is None
    compiled = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}  # a training export, no metadata
    save_file(compiled, str(tmp_path / "bare_dit.safetensors"))
    assert checkpoint_kind(tmp_path / "bare_dit.safetensors") == "dit"
    save_file({k: torch.zeros(1) for k in DIFFUSERS_KEYS}, str(tmp_path / "diffusers_vae.safetensors"))
    assert checkpoint_kind(tmp_path / "diffusers_vae.safetensors") == "vae"
    others = {"sd_vae": {"encoder.conv_in.weight": torch.zeros(1)}, "lumina2": {"x_embedder.weight": torch.zeros(1)}}
    for name, tensors in others.items():
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        assert checkpoint_kind(tmp_path / f"{name}.safetensors") is None

    copies = dict((path.stem, path) for path, _ in damaged_copies(embedded / "v2a.safetensors", tmp_path / "v2a"))
    header = safetensors_header(copies["header_only"])  # no tensor data in the file: none is read
    assert "lumina_v2a_config" in header.pop("__metadata__")
    assert header and all(set(entry) == {"dtype", "shape", "data_offsets"} for entry in header.values())
    assert checkpoint_kind(copies["half"]) == "v2a"  # truncated, but its header says what it is
    for unreadable in ("empty", "random"):
        with pytest.raises(CheckpointError, match="Download it again"):
            checkpoint_kind(copies[unreadable])


def test_lumina_image_weights_get_a_clear_error(tmp_path):
    lumina2 = {
        "x_embedder.weight": torch.zeros(8, 64),
        "noise_refiner.0.attention.qkv.weight": torch.zeros(24, 8),
        "cap_embedder.1.weight": torch.zeros(8, 32),
        "layers.0.attention.qkv.weight": torch.zeros(24, 8),
    }
    save_file(lumina2, str(tmp_path / "lumina2.safetensors"))
    with pytest.raises(CheckpointError, match="lumina2.safetensors: .*not a Lumina-Video Multi-scale Next-DiT.*Image"):
        load_nextdit(tmp_path / "lumina2.safetensors")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = randomized().state_dict()
    del state["layers.1.attention.wq.weight"]
    state["layers.1.attention.extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"1 missing keys, e.g. \['layers.1.attention.wq.weight'\].*1 unexpected keys"
    ):
        load_nextdit(tmp_path / "broken.safetensors")


def test_info_command(tmp_path, capsys):
    save_file(randomized().state_dict(), str(tmp_path / "m.safetensors"))
    assert main(["info", str(tmp_path / "m.safetensors")]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in randomized().parameters())
    assert f"{params:,} parameters" in out and "dim = 64" in out and "float32" in out


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in ("info", "convert", "bench"))


def test_cli_reports_bad_files_without_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
