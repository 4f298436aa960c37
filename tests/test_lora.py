"""LoRA files for the Next-DiT: the layout ComfyUI reads, exact merging, refusals, and generate --lora."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_models import TINY, randomized

from lumina_core import embedded, lora
from lumina_core.__main__ import main
from lumina_core.toyworld.train_lora import TARGETS, add_adapters

INPUTS_SEED = 3


def random_lora(model, seed: int, rank=4, alpha=2.0, targets=("attention", "feed_forward"), config=TINY):
    """A LoRA with random A and B for the ``targets`` linears of ``model`` (whose config is ``config``)."""
    generator = torch.Generator().manual_seed(seed)
    modules = {
        path: module
        for path, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name in path for name in targets)
    }
    return lora.LoRA(
        down={p: torch.randn(rank, m.in_features, generator=generator) * 0.3 for p, m in modules.items()},
        up={p: torch.randn(m.out_features, rank, generator=generator) * 0.3 for p, m in modules.items()},
        alpha=dict.fromkeys(modules, alpha),
        metadata=lora.lora_metadata(config.to_json(), rank, "test", "random deltas"),
    )


def inputs(model, patch=(1, 2), batch=2):
    generator = torch.Generator().manual_seed(INPUTS_SEED)
    x = torch.randn(batch, model.in_channels, 2, 8, 8, generator=generator)
    t = torch.rand(batch, generator=generator)
    caption = torch.randn(batch, 5, model.cap_feat_dim, generator=generator)
    mask = torch.ones(batch, 5, dtype=torch.bool)
    return x, t, caption, mask, torch.tensor([2.0, -1.0]), patch


def test_the_file_has_comfyuis_generic_layout_and_reads_back(tmp_path):
    model = randomized()
    original = random_lora(model, seed=1)
    path = original.save(tmp_path / "style.safetensors")
    with safe_open(str(path), "pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    module = "layers.0.attention.wq"
    assert {f"diffusion_model.{module}.lora_A.weight", f"diffusion_model.{module}.lora_B.weight"} <= keys
    assert f"diffusion_model.{module}.alpha" in keys
    assert all(key.startswith("diffusion_model.") for key in keys)
    assert metadata[lora.FORMAT_KEY] == "1" and metadata[lora.BASE_CONFIG_KEY] == TINY.to_json()
    assert metadata[lora.RANK_KEY] == "4" and metadata[lora.NAME_KEY] == "test"

    loaded = lora.load_lora(path, model.state_dict())
    assert loaded.modules == original.modules and loaded.alpha == original.alpha
    for m in original.modules:
        assert torch.equal(loaded.down[m], original.down[m]) and torch.equal(loaded.up[m], original.up[m])
    assert loaded.down[module].shape == (4, 64) and loaded.up[module].shape == (64, 4)


@pytest.mark.parametrize("prefix", ["", "transformer.", "model."])
def test_other_prefixes_and_a_missing_alpha_read_the_same(tmp_path, prefix):
    model = randomized()
    original = random_lora(model, seed=1, rank=4, alpha=4.0)
    tensors = {
        prefix + key.removeprefix(lora.PREFIX): value
        for key, value in original.state_dict().items()
        if not key.endswith(lora.ALPHA)
    }
    loaded = lora.from_state_dict(tensors)
    assert loaded.alpha == original.alpha  # alpha defaults to the rank
    assert all(torch.equal(loaded.delta(m), original.delta(m)) for m in original.modules)


def test_strength_zero_is_the_base_model_bit_for_bit():
    model = randomized()
    base_out = model(*inputs(model))
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    style = random_lora(model, seed=1)
    lora.apply(model, [(style, 0.0)])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base_state.items())
    assert torch.equal(model(*inputs(model)), base_out)
    merged = lora.merge(base_state, [(style, 0.0)])
    assert all(merged[k] is base_state[k] for k in base_state)


def test_strength_s_adds_s_times_the_delta_exactly():
    model = randomized()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    base_out = model(*inputs(model))
    style = random_lora(model, seed=1)
    strength = 0.7
    lora.apply(model, [(style, strength)])
    changed = 0
    for key, weight in model.state_dict().items():
        module = key.removesuffix(".weight")
        if module in style.modules:
            down, up = style.down[module], style.up[module]
            expected = base_state[key] + strength * (style.alpha[module] / down.shape[0]) * (up @ down)
            assert torch.equal(weight, expected), key
            changed += 1
        else:
            assert torch.equal(weight, base_state[key]), key
    assert changed == len(style.modules) > 0
    assert not torch.allclose(model(*inputs(model)), base_out, atol=1e-3)


def test_merged_weights_give_what_the_training_adapters_compute():
    """The file's A/B orientation is the adapters': a merged model matches the unmerged adapters' forward."""
    model, adapted = randomized(), randomized()
    adapters = add_adapters(adapted, ("attention", "feed_forward", "adaln", "final"), rank=4, alpha=2.0, seed=5)
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for adapter in adapters.values():
            adapter.up.copy_(torch.randn(adapter.up.shape, generator=generator) * 0.3)
    style = lora.LoRA(
        down={p: a.down.detach() for p, a in adapters.items()},
        up={p: a.up.detach() for p, a in adapters.items()},
        alpha=dict.fromkeys(adapters, 2.0),
    )
    lora.apply(model, [(style, 1.0)])
    torch.testing.assert_close(model(*inputs(model)), adapted(*inputs(adapted)), rtol=1e-4, atol=1e-4)
    assert set(adapters) >= {"layers.1.adaLN_modulation.1", "all_final_layer.4-2.linear", "layers.0.feed_forward.w2"}
    assert len(TARGETS) == 4


def test_two_loras_add():
    model = randomized()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    first, second = random_lora(model, seed=1), random_lora(model, seed=2, rank=2, targets=("attention",))
    lora.apply(model, [(first, 0.5), (second, -1.5)])
    for module in first.modules:
        key = module + ".weight"
        expected = base_state[key] + 0.5 * first.delta(module)
        if module in second.modules:
            expected = expected + -1.5 * second.delta(module)
        assert torch.equal(model.state_dict()[key], expected), key
    assert torch.equal(lora.merge(base_state, [(first, 0.5), (second, -1.5)])[key], model.state_dict()[key])


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.6, 1.0])
def test_model_merge_simple_between_base_and_merged_is_the_lora_at_that_strength(ratio):
    """ComfyUI's ModelMergeSimple (ratio * model1 + (1 - ratio) * model2, per weight) between a model with the LoRA
    merged at 1 and the base equals the LoRA at strength ratio: Lumiere's style interpolation."""
    model = randomized()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    style = random_lora(model, seed=1)
    full = lora.merge(base, [(style, 1.0)])
    interpolated = {k: ratio * full[k] + (1 - ratio) * base[k] for k in base}
    at_strength = lora.merge(base, [(style, ratio)])
    assert max((interpolated[k] - at_strength[k]).abs().max().item() for k in base) <= 1e-6
    assert any(not torch.equal(full[k], base[k]) for k in base)


def test_a_lora_for_another_model_is_refused_naming_keys_and_shapes(tmp_path):
    other = replace(TINY, dim=128, n_heads=4)
    path = random_lora(randomized(other), seed=1, config=other).save(tmp_path / "other.safetensors")
    model = randomized()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as caught:
        lora.load_lora(path, model.state_dict())
    message = str(caught.value)
    assert str(path) in message and "was made for another model" in message
    assert "diffusion_model.layers.0.attention.wk" in message and "[64, 128]" in message and "[32, 64]" in message
    assert '"dim": 128' in message  # the model it was made for, from its metadata
    with pytest.raises(ValueError, match="made for another model"):
        lora.apply(model, [(lora.load_lora(path), 1.0)])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base_state.items())


def test_a_lora_naming_layers_the_model_lacks_is_refused():
    model = randomized()
    style = random_lora(model, seed=1)
    style.down["layers.7.attention.wq"] = style.down["layers.0.attention.wq"]
    style.up["layers.7.attention.wq"] = style.up["layers.0.attention.wq"]
    style.alpha["layers.7.attention.wq"] = 2.0
    with pytest.raises(ValueError, match=r"diffusion_model\.layers\.7\.attention\.wq: the model has no such Linear"):
        lora.merge(model.state_dict(), [(style, 1.0)])


def test_model_weights_are_not_a_lora(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "dit.safetensors"
    save_file({k: v.contiguous() for k, v in randomized().state_dict().items()}, str(path))
    with pytest.raises(ValueError, match="is not a LoRA in the layout diffusion_model.M.lora_A.weight"):
        lora.load_lora(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"C:\x\y.safetensors:0.5", (Path(r"C:\x\y.safetensors"), 0.5)),
        (r"C:\x\y.safetensors", (Path(r"C:\x\y.safetensors"), 1.0)),
        ("a.safetensors", (Path("a.safetensors"), 1.0)),
        ("loras/a.safetensors:-1.25", (Path("loras/a.safetensors"), -1.25)),
        ("a.safetensors:0", (Path("a.safetensors"), 0.0)),
        ("/tmp/odd:name.safetensors", (Path("/tmp/odd:name.safetensors"), 1.0)),
    ],
)
def test_lora_specs_split_at_the_last_colon_only_before_a_number(text, expected):
    assert lora.parse_spec(text) == expected


def test_a_strength_that_is_not_finite_is_refused_by_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--prompt", "a red circle", "--lora", "a.safetensors:nan", "--out", str(tmp_path / "x.mp4")])
    assert "argument --lora: 'a.safetensors:nan': the strength 'nan' is not a finite number" in capsys.readouterr().err


def embedded_dit_lora(seed: int) -> lora.LoRA:
    """A random LoRA that fits the embedded DiT."""
    from lumina_core.io.checkpoints import load_nextdit

    dit, config, _ = load_nextdit(embedded.file("dit"))
    return random_lora(dit, seed=seed, rank=2, config=config)


def test_generate_with_a_lora_for_another_model_stops_before_sampling(tmp_path, capsys):
    path = random_lora(randomized(), seed=1).save(tmp_path / "tiny.safetensors")
    out = tmp_path / "x.mp4"
    args = ["generate", "--prompt", "a red circle moving left", "--no-audio", "--out", str(out)]
    assert main([*args, "--lora", f"{path}:0.5"]) == 2
    captured = capsys.readouterr()
    assert "--lora: " in captured.err and "was made for another model" in captured.err
    assert "diffusion_model.layers.0.attention.wq" in captured.err and "sampling" not in captured.err
    assert not out.exists()
    assert main([*args, "--lora", str(tmp_path / "missing.safetensors")]) == 2
    assert "--lora: " in capsys.readouterr().err


def test_generate_applies_repeated_loras(tmp_path, capsys):
    first, second = (
        embedded_dit_lora(1).save(tmp_path / "a.safetensors"),
        embedded_dit_lora(2).save(tmp_path / "b.safetensors"),
    )
    out = tmp_path / "styled.mp4"
    argv = ["generate", "--prompt", "a red circle moving left", "--no-audio", "--steps", "4", "--out", str(out)]
    assert main([*argv, "--lora", f"{first}:0.5", "--lora", str(second)]) == 0
    printed = capsys.readouterr().out
    assert f"LoRA {first} (test, " in printed and "at strength 0.5" in printed
    assert f"LoRA {second} (test, " in printed and "at strength 1" in printed
    assert out.is_file()


def test_a_lora_with_unpaired_or_mismatched_halves_is_refused():
    tensors = random_lora(randomized(), seed=1).state_dict()
    del tensors["diffusion_model.layers.0.attention.wq.lora_B.weight"]
    tensors["diffusion_model.layers.1.attention.wq.lora_B.weight"] = torch.zeros(64, 3)
    with pytest.raises(ValueError) as caught:
        lora.from_state_dict(tensors, source="half.safetensors")
    message = str(caught.value)
    assert message.startswith("half.safetensors: 2 modules lack a lora_A [rank, in] and lora_B [out, rank] pair")
    assert "'layers.0.attention.wq': [(4, 64)]" in message and "'layers.1.attention.wq': [(4, 64), (64, 3)]" in message
