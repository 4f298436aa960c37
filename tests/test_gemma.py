"""Gemma-2 text encoder: parity with transformers' Gemma2Model, both key layouts, the tokenizer, bad files."""

import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lumina_core.io.checkpoints import CheckpointError
from lumina_core.models.gemma import (
    GEMMA2_2B,
    Gemma2Config,
    Gemma2Model,
    Gemma2TextEncoder,
    GemmaTokenizer,
    infer_gemma2_config,
    load_gemma2,
    load_gemma_tokenizer,
)
from lumina_core.models.text import SYSTEM_PROMPT

EMBEDDED_DIT = Path(__file__).resolve().parents[1] / "lumina_core" / "embedded" / "dit.safetensors"
TRANSFORMERS_MISSING = (
    "transformers is not installed (pip install -r requirements-dev.txt): parity with Gemma2Model NOT checked"
)
# 12 tokens against a window of 4: the even (sliding) layers see less than the odd ones. Query scale 24, not head_dim.
MICRO = Gemma2Config(
    vocab_size=300,
    hidden_size=96,
    intermediate_size=160,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    query_pre_attn_scalar=24,
    attn_logit_softcapping=5.0,
    sliding_window=4,
)
LENGTHS = (12, 7)  # a batch of two, the second right-padded
WORDS = "a red green blue circle square moving left right up down".split()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomized(config: Gemma2Config = MICRO, seed: int = 0) -> Gemma2Model:
    """Random weights large enough that the soft-cap bites (scores beyond the cap) and the norms are not 1."""
    torch.manual_seed(seed)
    model = Gemma2Model(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 0.3 if "norm" in name else 1.0 if "embed" in name else 1.8 / param.shape[-1] ** 0.5
            param.copy_(scale * torch.randn_like(param))
    return model.requires_grad_(False)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [2, 12] (pad 0 after the second's 7 tokens) and mask [2, 12]."""
    ids = torch.randint(
        4, MICRO.vocab_size, (len(LENGTHS), max(LENGTHS)), generator=torch.Generator().manual_seed(seed)
    )
    mask = (torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS)[:, None]).long()
    return ids * mask, mask


def max_diff_at_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a.float() - b.float())[mask.bool()].abs().max().item()


def reference(config: Gemma2Config, model: Gemma2Model):
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_MISSING)
    values = {k: v for k, v in asdict(config).items()}
    ref = transformers.Gemma2Model(transformers.Gemma2Config(**values, attn_implementation="eager")).eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref


# -- parity with transformers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("softcap", [MICRO.attn_logit_softcapping, None], ids=["softcap", "sdpa"])
def test_hidden_states_match_transformers(softcap, tmp_path):
    """Every entry of hidden_states, and [-2] (Lumina-Video's) through ComfyUI's and Hugging Face's layouts (a file
    with "model." and the tokenizer inside; save_pretrained's folder; shards with a tied lm_head), at the real tokens;
    fp32."""
    config = replace(MICRO, attn_logit_softcapping=softcap)
    model = randomized(config)
    ref = reference(config, model)
    ids, mask = batch()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(expected) == config.num_hidden_layers + 1
    for index in range(-len(expected), 0):
        assert max_diff_at_tokens(model.hidden_state(ids, mask, index), expected[index], mask) < 1e-4, index

    comfy = tmp_path / "comfy" / "gemma_2_2b_fp16.safetensors"  # ComfyUI's layout: "model." + the tokenizer inside
    comfy.parent.mkdir()
    state = {f"model.{k}": v.contiguous() for k, v in ref.state_dict().items()}
    save_file({**state, "spiece_model": torch.arange(16, dtype=torch.uint8)}, str(comfy))
    hf = tmp_path / "hf"  # transformers' own writer: model.safetensors (no prefix) and config.json
    ref.save_pretrained(hf)
    sharded = tmp_path / "hf_causal_lm"  # Gemma2ForCausalLM's names ("model." + a tied lm_head) in two shards
    sharded.mkdir()
    (sharded / "config.json").write_text((hf / "config.json").read_text())
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    shards = {"model-00001-of-00002.safetensors": list(state)[:7], "model-00002-of-00002.safetensors": list(state)[7:]}
    for name, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(sharded / name))
    index = {"weight_map": {k: name for name, keys in shards.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    for loaded in (load_gemma2(comfy, config=config), load_gemma2(hf), load_gemma2(sharded)):
        assert loaded.config == config
        diff = max_diff_at_tokens(loaded.hidden_state(ids, mask, -2), expected[-2], mask)
        print(f"hidden_states[-2] max abs difference to transformers (fp32, softcap {softcap}): {diff:.2e}")
        assert diff < 1e-4


def test_window_softcap_and_padding_matter():
    """The parity test would catch a missing window, soft-cap or padding mask: each changes the real tokens."""
    model = randomized()
    ids, mask = batch()
    base = model.hidden_state(ids, mask)
    for change in (dict(sliding_window=None), dict(attn_logit_softcapping=None), dict(query_pre_attn_scalar=32)):
        other = Gemma2Model(replace(MICRO, **change)).eval()
        other.load_state_dict(model.state_dict())
        assert max_diff_at_tokens(other.hidden_state(ids, mask), base, mask) > 1e-2, change
    # padding: the second prompt alone gives what it gives in the padded batch
    alone = model.hidden_state(ids[1:, : LENGTHS[1]], mask[1:, : LENGTHS[1]])
    assert max_diff_at_tokens(alone, base[1:, : LENGTHS[1]], mask[1:, : LENGTHS[1]]) < 1e-5
    assert torch.isfinite(base).all()  # padded queries whose window holds only padding don't turn NaN


def test_hidden_state_minus_two_skips_the_last_layer():
    model = randomized()
    calls = []
    for i, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
    ids, mask = batch()
    model.hidden_state(ids, mask, -2)
    assert calls == [0, 1, 2]
    with pytest.raises(IndexError):
        model.hidden_state(ids, mask, -6)


def test_released_config_and_inference_from_shapes():
    assert (GEMMA2_2B.vocab_size, GEMMA2_2B.hidden_size, GEMMA2_2B.intermediate_size) == (256000, 2304, 9216)
    assert (GEMMA2_2B.num_hidden_layers, GEMMA2_2B.num_attention_heads, GEMMA2_2B.num_key_value_heads) == (26, 8, 4)
    assert (GEMMA2_2B.head_dim, GEMMA2_2B.query_pre_attn_scalar, GEMMA2_2B.attn_logit_softcapping) == (256, 256, 50)
    assert (GEMMA2_2B.sliding_window, GEMMA2_2B.rope_theta, GEMMA2_2B.rms_norm_eps) == (4096, 10000, 1e-6)
    assert [GEMMA2_2B.is_sliding(i) for i in range(4)] == [True, False, True, False]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Gemma2Model(GEMMA2_2B).state_dict().items()}
    assert infer_gemma2_config(shapes) == GEMMA2_2B
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 2_614_341_888  # Gemma-2-2B's parameter count


def test_released_config_matches_transformers_defaults():
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_MISSING)
    values = transformers.Gemma2Config().to_dict()
    assert Gemma2Config.from_hf(values) == GEMMA2_2B
    assert values["layer_types"][:2] == ["sliding_attention", "full_attention"]


# -- loading: bad files -----------------------------------------------------------------------------------------------


def save_comfy_layout(model: Gemma2Model, path: Path, drop: str = "") -> Path:
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items() if not (drop and k.startswith(drop))}
    save_file(state, str(path))
    return path


def test_another_models_file_names_keys():
    with pytest.raises(CheckpointError) as error:
        load_gemma2(EMBEDDED_DIT)
    message = str(error.value)
    assert "dit.safetensors" in message and "not a Gemma-2 decoder" in message
    assert "model.embed_tokens.weight" in message and "all_final_layer" in message  # what it lacks, what it has


def test_wrong_size_names_the_mismatch(tmp_path):
    file = save_comfy_layout(randomized(), tmp_path / "micro.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_gemma2(file, config=GEMMA2_2B)
    message = str(error.value)
    assert "micro.safetensors" in message and "keys of other shapes" in message
    assert "model.embed_tokens.weight (300, 96) vs (256000, 2304)" in message
    assert "242 missing keys" in message  # layers 4 to 25, 11 tensors each
    assert load_gemma2(file, config=MICRO).config == MICRO  # the right config loads it


def test_missing_layer_names_its_keys(tmp_path):
    file = save_comfy_layout(randomized(), tmp_path / "holey.safetensors", drop="layers.1.")
    with pytest.raises(CheckpointError) as error:
        load_gemma2(file, config=MICRO)
    message = str(error.value)
    assert "11 missing keys" in message and "model.layers.1.input_layernorm.weight" in message


def test_dtype_on_load(tmp_path):
    model = randomized()
    file = save_comfy_layout(model, tmp_path / "micro.safetensors")
    loaded = load_gemma2(file, dtype=torch.bfloat16, config=MICRO)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    ids, mask = batch()
    diff = max_diff_at_tokens(loaded.hidden_state(ids, mask), model.hidden_state(ids, mask), mask)
    assert diff < 0.1 * model.hidden_state(ids, mask).abs().max()  # bf16 follows fp32


# -- tokenizer --------------------------------------------------------------------------------------------------------


def write_tokenizer_json(folder: Path) -> Path:
    """A word-level tokenizer with Gemma's special ids (pad 0, eos 1, bos 2, unk 3) and, as Gemma's tokenizer.json,
    a post-processor that adds <bos> (the wrapper must not add a second)."""
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed (pip install tokenizers)")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def test_tokenizer_json_bos_padding_truncation(tmp_path):
    tokenizer = GemmaTokenizer.from_tokenizer_json(write_tokenizer_json(tmp_path))
    ids, mask = tokenizer(["a red circle moving left", "blue square", "purple"], max_tokens=5)
    assert ids.tolist() == [[2, 4, 5, 8, 10], [2, 7, 9, 0, 0], [2, 3, 0, 0, 0]]  # <bos> once, first; <unk>; padded
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    ids, mask = tokenizer(["a red circle"], max_tokens=256, pad_to_multiple_of=8)
    assert ids.shape == (1, 8) and mask.sum() == 4


def test_missing_tokenizer_says_what_and_where(tmp_path):
    file = save_comfy_layout(randomized(), tmp_path / "gemma_2_2b_fp16.safetensors")
    with pytest.raises(CheckpointError) as error:
        Gemma2TextEncoder.from_file(file, config=MICRO)
    message = str(error.value)
    for part in ("tokenizer.json", "tokenizer.model", str(tmp_path), "google/gemma-2-2b", "spiece_model"):
        assert part in message
    assert "ComfyUI ships no Gemma tokenizer" in message


def sentencepiece_model() -> bytes:
    """A tiny BPE sentencepiece model with Gemma's special ids, as ComfyUI's spiece_model tensor holds one."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is not installed (pip install sentencepiece)")
    lines = [f"{a} {b} {c} moving {d}" for a, b, c, d in zip(WORDS, WORDS[3:], WORDS[1:], WORDS[2:])] * 10
    lines += [SYSTEM_PROMPT] * 10
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buffer, vocab_size=80, model_type="bpe", pad_id=0, eos_id=1,
        bos_id=2, unk_id=3, minloglevel=2,
    )  # fmt: skip
    return buffer.getvalue()


def test_sentencepiece_inside_comfy_file(tmp_path):
    proto = sentencepiece_model()
    file = tmp_path / "gemma_2_2b_fp16.safetensors"
    state = {f"model.{k}": v.contiguous() for k, v in randomized().state_dict().items()}
    save_file({**state, "spiece_model": torch.frombuffer(bytearray(proto), dtype=torch.uint8)}, str(file))
    tokenizer = load_gemma_tokenizer(file)
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_proto=proto).encode("a red circle")
    ids, mask = tokenizer(["a red circle"])
    assert ids[0].tolist() == [2, *pieces] and mask.all()
    encoder = Gemma2TextEncoder.from_file(file, config=MICRO)
    assert encoder.encode(["a red circle"]).features.shape[-1] == MICRO.hidden_size


# -- the text encoder -------------------------------------------------------------------------------------------------


def test_text_encoder_system_prompt_mask_and_features(tmp_path):
    write_tokenizer_json(tmp_path)
    model = randomized(replace(MICRO, vocab_size=len(WORDS) + 4))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma2", **asdict(model.config)}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    encoder = Gemma2TextEncoder.from_file(tmp_path)  # a folder: tokenizer.json, config.json, model.safetensors
    assert encoder.feature_dim == MICRO.hidden_size
    prompts = ["a red circle moving left", "blue"]
    ids, mask = encoder.tokenize(prompts)
    system = len(SYSTEM_PROMPT.split())  # word-level: one token per word of the system prompt
    assert mask.sum(1).tolist() == [1 + system + 5, 1 + system + 1] and ids.shape[1] % 8 == 0
    cond = encoder.encode(prompts)
    assert cond.features.shape == (2, ids.shape[1], MICRO.hidden_size) and torch.equal(cond.mask, mask)
    expected = model.hidden_state(ids, mask, -2)
    assert max_diff_at_tokens(cond.features, expected, mask) < 1e-5
    assert (cond.features[~mask.bool()] == 0).all()
    truncated = Gemma2TextEncoder(encoder.model, encoder.tokenizer, max_tokens=10)
    assert truncated.tokenize(prompts)[1].sum(1).tolist() == [10, 10]
