"""The streaming converter: exact output, safetensors' own format, no half file, and memory of about one tensor."""

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tiny_models import TINY, randomized

import lumina_core.io.safetensors_writer as writer
from lumina_core.__main__ import build_parser
from lumina_core.bench.convert import QUICK_CONFIG, convert_in_child, write_released_checkpoint
from lumina_core.io.checkpoints import (
    CONFIG_METADATA_KEY,
    _MappedPages,
    convert,
    load_nextdit,
    safe_torch_load,
)
from lumina_core.io.safetensors_writer import TensorSpec, write_safetensors

PREFIX = "_orig_mod."  # torch.compile's, inside every layer's keys as in the released file


def released_folder(folder: Path, model) -> Path:
    """The released layout (fp32 .pth with torch.compile prefixes, model_args.pth) of ``model``'s weights."""
    write_released_checkpoint(folder, TINY)
    state = {
        (f"layers.{k.split('.', 2)[1]}.{PREFIX}{k.split('.', 2)[2]}" if k.startswith("layers.") else k): v
        for k, v in model.state_dict().items()
    }
    torch.save(state, folder / "consolidated.00-of-01.pth")
    return folder


def split(path: Path) -> tuple[bytes, dict, bytes]:
    """(the 8 + N header bytes, the parsed header, the data bytes) of a .safetensors file."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return data[: 8 + length], json.loads(data[8 : 8 + length]), data[8 + length :]


@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16])
def test_converted_weights_equal_the_source(tmp_path, dtype):
    source = randomized().state_dict()
    out = tmp_path / "out.safetensors"
    config, notes = convert(released_folder(tmp_path / "released", randomized()), out, dtype)
    assert config == TINY and any("model_args.pth" in note for note in notes)
    model, loaded, _ = load_nextdit(out)
    assert loaded == TINY
    for name, tensor in model.state_dict().items():
        expected = source[name] if dtype is None else source[name].to(dtype)
        assert tensor.dtype == expected.dtype and torch.equal(tensor, expected), name
    with safe_open(str(out), framework="pt") as handle:
        assert set(handle.keys()) == set(source)
        assert json.loads(handle.metadata()[CONFIG_METADATA_KEY]) == json.loads(TINY.to_json())
    assert not (tmp_path / "out.safetensors.partial").exists()


def test_output_is_what_safetensors_writes(tmp_path):
    """Same header (parsed: save_file orders the metadata keys by hash) and the same data bytes as save_file's."""
    out = tmp_path / "ours.safetensors"
    convert(released_folder(tmp_path / "released", randomized()), out, torch.bfloat16)
    _, header, data = split(out)
    tensors = {name: tensor.to(torch.bfloat16) for name, tensor in randomized().state_dict().items()}
    save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata=header["__metadata__"])
    their_bytes, their_header, their_data = split(tmp_path / "theirs.safetensors")
    assert header == their_header and data == their_data
    assert len(split(out)[0]) == len(their_bytes) and len(their_bytes) % 8 == 0
    with safe_open(str(out), framework="pt") as handle:
        for name in handle.keys():
            assert torch.equal(handle.get_tensor(name), tensors[name])


def test_writer_is_byte_identical_to_save_file_for_every_dtype(tmp_path):
    """With one metadata key (so no hash order) the whole file is save_file's, byte for byte: header, key order,
    padding, JSON escapes, 0-d, empty and non-contiguous tensors."""
    tensors = {str(dtype).removeprefix("torch."): (torch.randn(3, 2) * 50).to(dtype) for dtype in writer.DTYPE_NAMES}
    tensors |= {"scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "transposed": torch.randn(4, 3).t()}
    tensors["é unicode"] = torch.ones(2, dtype=torch.bfloat16)
    metadata = {CONFIG_METADATA_KEY: TINY.to_json() + '\n\t\x01"\\é'}
    specs = {name: TensorSpec(t.dtype, tuple(t.shape)) for name, t in tensors.items()}
    write_safetensors(tmp_path / "ours.safetensors", specs, tensors.__getitem__, metadata=metadata)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "theirs.safetensors"), metadata)
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()


def test_a_safetensors_source_streams_too(tmp_path):
    source = randomized().state_dict()
    save_file({f"{PREFIX}{k}": v for k, v in source.items()}, str(tmp_path / "compiled.safetensors"))
    out = tmp_path / "out.safetensors"
    config, notes = convert(tmp_path / "compiled.safetensors", out, torch.bfloat16)
    assert any("inferred from shapes" in note for note in notes)
    model, _, _ = load_nextdit(out)
    assert all(torch.equal(t, source[name].to(torch.bfloat16)) for name, t in model.state_dict().items())


def test_an_interrupted_conversion_leaves_no_file(tmp_path, monkeypatch):
    released = released_folder(tmp_path / "released", randomized())
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"the previous conversion")
    write_one, calls = writer._write_one, []

    def fails_midway(*args):
        calls.append(args[1])
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C, the worst case: not an Exception
        write_one(*args)

    monkeypatch.setattr(writer, "_write_one", fails_midway)
    with pytest.raises(KeyboardInterrupt):
        convert(released, out, torch.bfloat16)
    assert out.read_bytes() == b"the previous conversion"  # untouched, never half-written
    assert list(tmp_path.glob("*.partial")) == []


def test_released_pages_read_back_and_heap_tensors_are_left_alone(tmp_path):
    """madvise(MADV_DONTNEED) only on the file's own mapping: mapped tensors read back from the file after it,
    memory that isn't the file's is never touched (it would be zeroed)."""
    state = {"a": torch.randn(5000), "b": torch.randn(300, 7)}
    torch.save(state, tmp_path / "w.pth")
    mapped = safe_torch_load(tmp_path / "w.pth")
    pages, heap = _MappedPages(tmp_path / "w.pth"), torch.randn(100_000)
    heap_copy = heap.clone()
    for name in state:
        assert torch.equal(mapped[name], state[name])  # the pages become resident
        pages.release(mapped[name])
        pages.release(heap)
    assert all(torch.equal(mapped[name], state[name]) for name in state)
    assert torch.equal(heap, heap_copy)
    if Path("/proc/self/maps").exists():
        assert pages.ranges, "the file's mapping was not found in /proc/self/maps: pages would stay resident"


def test_bench_has_a_convert_part():
    args = build_parser().parse_args(["bench", "--part", "convert", "--quick"])
    assert (args.part, args.quick) == ("convert", True)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM in /proc/self/status (Linux)")
def test_peak_memory_is_about_one_tensor_not_the_model(tmp_path):
    """A 579 MB fp32 checkpoint (dim 1024, 8 layers) to bf16 (289 MB) in a child process: its peak resident set above
    its own after importing torch and lumina_core stays within 1.2 x the output + 64 MB. The 64 MB: a first
    conversion's one-time costs, measured at 25-40 MB (torch's cast kernels and thread pool on first use, the
    unpickled .pth index, the meta-device model for the key check) plus the largest tensor and its cast (17 MB).
    The old converter (everything cast into one dict, then save_file) took 854 MB here; streaming without giving the
    mapped source pages back, 580 MB: both fail."""
    released = write_released_checkpoint(tmp_path / "released", QUICK_CONFIG)
    run = convert_in_child(released, tmp_path / "out.safetensors", "bf16", timeout=300)
    assert run.output_bytes > 250e6
    assert run.above_baseline <= 1.2 * run.output_bytes + 64 * 2**20, run
