"""The benchmarks' code (lumina_core/bench): the memory estimate, the GPU benchmark on tiny configs on the CPU, compile
against eager and sequence parallel (slow), and the command line's bench options."""

import itertools
import math

import pytest
import torch
from tiny_models import TINY

from lumina_core.__main__ import main
from lumina_core.bench import dit, gpu, memory
from lumina_core.models.nextdit import RELEASED, PatchSize
from lumina_core.request import RELEASED_PATCH_SIZES, latent_shape, video_size_problems
from lumina_core.sampling import PRESETS


def test_fp8_stores_matrices_in_one_byte_and_the_rest_in_bf16():
    weights = memory.released_weights()
    for w in weights.values():
        assert w.bytes(fp8=True) == w.bytes() - w.matrix_params
    dit = weights["dit"]
    assert dit.params == sum(p.numel() for p in RELEASED.build(device="meta").parameters())
    assert 0.5 <= dit.bytes(fp8=True) / dit.bytes() < 0.51  # nearly every DiT parameter is in a matrix


def test_attention_counts_on_the_cpu_as_on_the_gpu():
    """FlopCounterMode counted SDPA's CPU kernel as 0 FLOPs; with the bench's formula it is 4 x queries x keys x width,
    what torch counts for the CUDA kernels and the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    dit.count_cpu_attention()
    dit.count_cpu_attention()  # idempotent
    query, key = torch.randn(1, 4, 96, 16), torch.randn(1, 4, 40, 16)
    for device in ("cpu", "meta"):
        with FlopCounterMode(display=False) as counter:
            torch.nn.functional.scaled_dot_product_attention(query.to(device), key.to(device), key.to(device))
        assert counter.get_total_flops() == 4 * 96 * 40 * 16 * 4, device


def test_tokens_follow_the_latent_and_the_patch():
    _, _, frames, height, width = latent_shape(*memory.VIDEO)
    assert memory.dit_tokens() == frames * (height // 2) * (width // 2)
    assert memory.dit_tokens(patch="2x4") * 8 == memory.dit_tokens()  # twice the frames, twice the side per token


def test_the_activation_arithmetic_matches_a_real_forwards_live_tensors():
    _, _, frames, height, width = memory.CHECK_LATENT
    tokens = frames * (height // 2) * (width // 2)
    estimate = memory.dit_activation_bytes(memory.CHECK_CONFIG, tokens, memory.CHECK_LATENT[0])
    assert memory.tracked_activation_bytes() == pytest.approx(estimate, rel=0.01)


def test_offload_tiling_and_fp8_never_add_memory():
    weights = memory.released_weights()
    for fp8, tiled in itertools.product((False, True), repeat=2):
        resident = memory.stage_peaks(weights, fp8=fp8, offload=False, tiled=tiled)
        offloaded = memory.stage_peaks(weights, fp8=fp8, offload=True, tiled=tiled)
        assert all(offloaded[stage] < resident[stage] for stage in resident)
    bf16 = memory.stage_peaks(weights, fp8=False, offload=True, tiled=True)
    fp8 = memory.stage_peaks(weights, fp8=True, offload=True, tiled=True)
    assert bf16["sampling"] - fp8["sampling"] == pytest.approx(weights["dit"].matrix_params / memory.GIB)
    untiled = memory.stage_peaks(weights, fp8=False, offload=True, tiled=False)
    assert untiled["decode"] > bf16["decode"]


def test_frame_counts_round_to_the_nearest_the_vae_takes():
    frames = gpu.nearest_valid_frames(121, RELEASED_PATCH_SIZES)
    assert frames == 120 and video_size_problems(768, 512, frames) == []
    assert gpu.nearest_valid_frames(125, RELEASED_PATCH_SIZES) == 128
    assert gpu.nearest_valid_frames(96, RELEASED_PATCH_SIZES) == 96


@pytest.mark.parametrize(
    "name, peak",
    [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
     ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA GeForce RTX 4090", None)],
)  # fmt: skip
def test_card_peaks_by_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert gpu.bf16_peak_flops(torch.device("cuda")) == (name, peak)


def test_model_calls_count_every_step_and_guidance_pass():
    for name in gpu.PRESET_PAIR:
        config = PRESETS[name]
        calls = gpu.model_calls(config)
        assert sum(calls.values()) == config.steps - 1
        assert {batch for _, batch in calls} == {1, 2}  # CFG until t = 0.2, then the positive pass alone
    assert set(patch for patch, _ in gpu.model_calls(PRESETS["f24F96R960"])) == {PatchSize(1, 2)}
    embedded = PRESETS["embedded"]  # skip-layer guidance from t = 0.5: one more call of one pass on those steps
    skipping = sum(1 for t in embedded.times()[:-1] if t >= 0.5)
    calls = gpu.model_calls(embedded)
    assert sum(calls.values()) == embedded.steps - 1 + skipping and calls[PatchSize(1, 2), 1] == skipping > 0


def test_gpu_benchmark_runs_its_code_on_tiny_configs(capsys):
    result = gpu.run_gpu_benchmark(tiny=True, repeats=1)
    assert result["peak_flops"] is None
    for video in result["videos"]:
        rows = {(row["patch"], row["batch"]): row for row in video["rows"]}
        for row in rows.values():
            assert math.isfinite(row["seconds"]) and row["seconds"] > 0 and row["tflop"] > 0
            assert row["share_of_peak"] is None
        assert rows["1x2", 2]["tflop"] == pytest.approx(2 * rows["1x2", 1]["tflop"])
        assert rows["2x4", 2]["tflop"] < rows["2x2", 2]["tflop"] < rows["1x2", 2]["tflop"]
        for preset, counts in video["calls"].items():
            by_key = {tuple(key.split(" x")): n for key, n in counts.items()}
            expected = sum(n * rows[patch, int(batch)]["seconds"] for (patch, batch), n in by_key.items())
            assert video["estimates"][preset] == pytest.approx(expected)
        assert video["multi_over_single_flops"] < 0.5
        assert (
            video_size_problems(*video["video"], patch_sizes=[PatchSize(1, 2), PatchSize(2, 2), PatchSize(2, 4)]) == []
        )
    assert result["videos"][1]["video"][2] == 24  # 25 frames asked: not a count the VAE takes
    assert all(b > 0 for b in result["memory"]["weights"].values())
    assert result["memory"]["offloaded"] == dict(text=None, sampling=None, decode=None)  # no CUDA allocator
    assert capsys.readouterr().out.count("multi-scale / single-scale") == 2


def test_bench_refuses_tiny_without_gpu(capsys):
    assert main(["bench", "--tiny"]) == 2
    assert "--tiny goes with --gpu" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_blocks_match_eager_within_1e_4():
    from lumina_core.bench.compile import TOLERANCE, run_compile_benchmark

    torch._dynamo.reset()  # compiled entries of earlier tests would count against the recompile limit
    result = run_compile_benchmark(quick=True, config=TINY, latent=(2, 16, 4, 16, 16))
    assert result["within_tolerance"] and TOLERANCE == 1e-4
    for row in result["rows"]:
        assert row["max_difference"] <= TOLERANCE and 0 < row["max_difference"] + row["magnitude"]
        assert math.isfinite(row["speedup"]) and row["speedup"] > 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did compile, not fall back to eager


@pytest.mark.slow
def test_parallel_benchmark_gives_one_process_outputs():
    from lumina_core.bench.parallel import run_parallel_benchmark

    result = run_parallel_benchmark(quick=True, config=TINY, latent=(2, 16, 2, 16, 24))
    for row in result["rows"]:
        assert row["max_difference"] <= 1e-5 and row["two_processes"] > 0


def test_every_bench_part_names_a_function_that_exists():
    """``bench --part X`` looks its function up by name: a renamed function would fail only when that part is run."""
    import importlib

    from lumina_core.__main__ import BENCH_PARTS, build_parser

    for name, part in BENCH_PARTS.items():
        module = importlib.import_module(f"lumina_core.bench.{part.module}")
        assert callable(getattr(module, part.function)), name
        assert build_parser().parse_args(["bench", "--part", name]).part == name


@pytest.mark.slow
def test_windows_benchmark_measures_64_frames_against_16_in_fresh_processes():
    from lumina_core.bench.windows import run_windows_benchmark

    result = run_windows_benchmark()
    assert result["windows"] == 7
    for run in (result["short"], result["long"]):
        assert run["peak_bytes"] >= run["baseline_bytes"] > 0 and run["sampling_seconds"] > 0
    assert result["long"]["frames"] == 64 and result["short"]["frames"] == 16
    assert result["time_ratio"] > 0 and result["memory_ratio"] > 0
