"""CogVideoX VAE: parity with diffusers, the frame rule, chunking, tiling, loading, bad input."""

import json

import pytest
import torch
from damaged_files import assert_names_file_and_fix, damaged_copies
from safetensors.torch import save_file

import lumina_core.models.vae as vae_module
from lumina_core.io.checkpoints import CheckpointError
from lumina_core.models.vae import (
    CogVideoXVAE,
    CogVideoXVAEConfig,
    FrameCountError,
    VAEInputError,
    VAEWeightsError,
    frames_for,
    latent_frames_for,
    load_vae,
    psnr,
    save_vae,
)

MICRO = CogVideoXVAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4)
DIFFUSERS_MISSING = (
    "diffusers is not installed (pip install -r requirements-dev.txt): parity with AutoencoderKLCogVideoX NOT checked"
)


def randomized(config: CogVideoXVAEConfig = MICRO, seed: int = 0) -> CogVideoXVAE:
    """Random weights, norm affines included (left at 1/0 they would hide a swapped scale and shift)."""
    torch.manual_seed(seed)
    vae = CogVideoXVAE(config).eval()
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if "norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    return vae


def noise(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are small: on 2 shared cores, waking a second thread per op costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def micro():
    return randomized()


@pytest.fixture(scope="module")
def reference(micro):
    diffusers = pytest.importorskip("diffusers", reason=DIFFUSERS_MISSING)
    ref = diffusers.AutoencoderKLCogVideoX.from_config(MICRO.to_dict()).eval()
    ref.load_state_dict(micro.state_dict(), strict=True)
    return ref


# -- parity with diffusers -------------------------------------------------------------------


def test_keys_and_shapes_match_diffusers_for_cogvideox_2b():
    diffusers = pytest.importorskip("diffusers", reason=DIFFUSERS_MISSING)
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLCogVideoX.from_config(CogVideoXVAEConfig.cogvideox_2b().to_dict())
    ours = CogVideoXVAE(CogVideoXVAEConfig.cogvideox_2b(), device="meta")
    expected = {k: v.shape for k, v in ref.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    assert len(expected) == 436


@pytest.mark.parametrize("latent_frames", [1, 2, 4])
def test_decode_matches_diffusers(micro, reference, latent_frames):
    latent = noise(1, 16, latent_frames, 3, 5)
    with torch.no_grad():
        expected = reference.decode(latent).sample
        ours = micro.decode_model_latent(micro.to_model_latent(latent))
    assert ours.shape == expected.shape == (1, 3, frames_for(latent_frames), 24, 40)
    assert (ours - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("frames", [1, 8, 16])
def test_encode_matches_diffusers(micro, reference, frames):
    video = noise(1, 3, frames, 24, 40).clamp(-1, 1)
    with torch.no_grad():
        expected = reference.encode(video).latent_dist
        posterior = micro.encode_posterior(video)
        z_model = micro.encode_to_model_latent(video)
    assert posterior.mean.shape == expected.mean.shape == (1, 16, latent_frames_for(frames), 3, 5)
    assert (posterior.mean - expected.mean).abs().max().item() < 1e-4
    assert (posterior.logvar - expected.logvar).abs().max().item() < 1e-4
    assert torch.allclose(z_model, expected.mean * 1.15258426, atol=1e-4)


def test_diffusers_frame_counts_are_the_ones_the_docstring_gives(reference):
    """The counts the frame rule keeps out, as diffusers produces them (8x8 px keeps this fast)."""
    with torch.no_grad():
        encoded = {f: reference.encode(noise(1, 3, f, 8, 8)).latent_dist.mean.shape[2] for f in (8, 9, 12, 13, 16, 17)}
        decoded = {k: reference.decode(noise(1, 16, k, 1, 1)).sample.shape[2] for k in (1, 2, 3, 4, 5)}
    assert encoded == {8: 2, 9: 3, 12: 3, 13: 4, 16: 4, 17: 5}
    assert decoded == {1: 1, 2: 8, 3: 9, 4: 16, 5: 17}
    # so 12 -> 3 -> 9 and 13 -> 4 -> 16 lose frames; the rule keeps 8 -> 2 -> 8 and 16 -> 4 -> 16


# -- the frame rule --------------------------------------------------------------------------


def test_frame_rule():
    assert latent_frames_for(96) == 24 and frames_for(24) == 96
    assert latent_frames_for(16) == 4 and frames_for(4) == 16
    assert latent_frames_for(1) == 1 and frames_for(1) == 1
    for latents in [1] + list(range(2, 40, 2)):
        assert latent_frames_for(frames_for(latents)) == latents
    for frames in (0, 4, 12, 49, 97, -8):
        with pytest.raises(FrameCountError, match="multiple of 8"):
            latent_frames_for(frames)
    for latents in (0, 3, 13, -2):
        with pytest.raises(FrameCountError, match="even number"):
            frames_for(latents)
    with pytest.raises(FrameCountError, match="use 8 or 16 frames"):
        latent_frames_for(12)
    with pytest.raises(FrameCountError, match="use 2 or 4 latent frames"):
        frames_for(3)


@pytest.mark.parametrize("frames", [1, 8, 16])
def test_encode_decode_round_trips_frame_counts(micro, frames):
    with torch.no_grad():
        z = micro.encode_to_model_latent(noise(1, 3, frames, 16, 24))
        out = micro.decode_model_latent(z)
    assert z.shape == (1, 16, latent_frames_for(frames), 2, 3)
    assert out.shape == (1, 3, frames, 16, 24)


# -- chunking and tiling ---------------------------------------------------------------------


def test_temporal_chunks_and_frame_slices_do_not_change_the_result(micro, monkeypatch):
    latent, video = noise(1, 16, 6, 2, 3), noise(1, 3, 24, 16, 24)
    with torch.no_grad():
        by_pairs = micro.decode_model_latent(latent, latent_frames_per_chunk=2)
        at_once = micro.decode_model_latent(latent, latent_frames_per_chunk=6)
        by_groups = micro.encode_posterior(video, frames_per_chunk=8).mean
        whole = micro.encode_posterior(video, frames_per_chunk=24).mean
        monkeypatch.setattr(vae_module, "FRAME_SLICE_BYTES", 1)  # every convolution one frame at a time
        sliced = micro.decode_model_latent(latent, latent_frames_per_chunk=6)
        sliced_encode = micro.encode_posterior(video, frames_per_chunk=24).mean
    assert torch.allclose(at_once, by_pairs, atol=1e-5)
    assert torch.allclose(whole, by_groups, atol=1e-5)
    assert torch.allclose(sliced, by_pairs, atol=1e-5)
    assert torch.allclose(sliced_encode, by_groups, atol=1e-5)
    # the causal cache matters: the second pair decoded without the first's is different
    with torch.no_grad():
        alone = micro.decode_model_latent(latent[:, :, 2:4])
    assert (alone - by_pairs[:, :, 8:16]).abs().max() > 1e-2


def test_lookahead_decoder_moves_within_the_first_latent_frame(micro):
    """The shipped decoder draws the 4 frames of latent frame 0 alike; with decoder_lookahead (same weights) they
    differ, chunked decoding (the next latent frame taken from the next chunk) equals decoding at once, and the
    default config decodes as before."""
    from dataclasses import replace

    latent = noise(1, 16, 6, 2, 3)
    ahead = CogVideoXVAE(replace(micro.config, decoder_lookahead=True)).eval()
    ahead.load_state_dict(micro.state_dict())
    with torch.no_grad():
        plain = micro.decode_model_latent(latent, latent_frames_per_chunk=6)
        by_pairs = ahead.decode_model_latent(latent, latent_frames_per_chunk=2)
        at_once = ahead.decode_model_latent(latent, latent_frames_per_chunk=6)
    assert (plain[:, :, 1:4] - plain[:, :, :1]).abs().max() < 1e-6, "the causal decoder's first frames are alike"
    assert (by_pairs[:, :, 1:4] - by_pairs[:, :, :1]).abs().max() > 1e-3
    assert torch.allclose(by_pairs, at_once, atol=1e-5)
    assert CogVideoXVAEConfig.from_diffusers_config(ahead.config.to_dict()).decoder_lookahead


def test_denoising_decoder_reads_the_noise_level(micro, tmp_path):
    """A denoising decoder (decoder_timestep_conditioning) starts as the decoder it was made from at every level,
    then draws a noisier latent differently once its modulation is trained; one level or one per latent; chunked,
    tiled with one tile and reloaded decodes agree; a plain decoder refuses noisy latents, naming the input."""
    from dataclasses import replace

    from lumina_core.toyworld.train import with_decoder_options

    latent = noise(2, 16, 4, 2, 3)
    denoising = with_decoder_options(micro, decoder_timestep_conditioning=True).eval()
    with torch.no_grad():
        plain = micro.decode_model_latent(latent)
        assert torch.equal(denoising.decode_model_latent(latent, noise_level=0.3), plain)
        for name, param in denoising.named_parameters():
            if ".time_" in name:
                param.copy_(0.5 * noise(*param.shape, seed=len(name)))
        clean = denoising.decode_model_latent(latent, noise_level=0.0)
        noisy = denoising.decode_model_latent(latent, noise_level=0.3)
        mixed = denoising.decode_model_latent(latent, noise_level=torch.tensor([0.0, 0.3]))
        by_pairs = denoising.decode_model_latent(latent, latent_frames_per_chunk=2, noise_level=0.3)
        tiled = denoising.decode_model_latent_tiled(latent, tile_latent_hw=(4, 4), overlap=1, noise_level=0.3)
    assert (noisy - clean).abs().max() > 1e-3
    assert torch.allclose(mixed[0], clean[0], atol=1e-6) and torch.allclose(mixed[1], noisy[1], atol=1e-6)
    assert torch.allclose(by_pairs, noisy, atol=1e-5) and torch.allclose(tiled, noisy, atol=1e-5)
    save_vae(denoising, tmp_path / "denoising.safetensors")
    reloaded = load_vae(tmp_path / "denoising.safetensors")
    assert reloaded.config == replace(micro.config, decoder_timestep_conditioning=True)
    with torch.no_grad():
        assert torch.equal(reloaded.decode_model_latent(latent, noise_level=0.3), noisy)
    with pytest.raises(VAEInputError, match="noise_level 0.1: this VAE's decoder has no noise-level input"):
        micro.decode_model_latent(latent, noise_level=0.1)
    with pytest.raises(VAEInputError, match=r"noise_level 1.5: give one level in \[0, 1\]"):
        denoising.decode_model_latent(latent, noise_level=1.5)


def test_tiled_decode_is_close_to_untiled():
    torch.manual_seed(0)
    vae = CogVideoXVAE(CogVideoXVAEConfig.tiny()).eval()  # the embedded default's architecture, random weights
    latent = noise(1, 16, 2, 24, 24)
    with torch.no_grad():
        untiled = vae.decode_model_latent(latent)
        tiled = vae.decode_model_latent_tiled(latent, tile_latent_hw=(16, 16), overlap=4)
    assert tiled.shape == untiled.shape
    assert psnr(tiled, untiled) > 40


def test_tiling_of_odd_sizes_and_a_single_tile(micro):
    latent = noise(1, 16, 2, 9, 7)
    with torch.no_grad():
        untiled = micro.decode_model_latent(latent)
        one_tile = micro.decode_model_latent_tiled(latent, tile_latent_hw=(16, 16), overlap=4)
        uneven = micro.decode_model_latent_tiled(latent, tile_latent_hw=(6, 5), overlap=2)  # last tiles shifted back
    assert torch.allclose(one_tile, untiled, atol=1e-5)  # one tile is the untiled decode
    assert uneven.shape == untiled.shape and psnr(uneven, untiled) > 20  # tiny tiles: GroupNorm sees little


def test_tile_blend_weights_cover_every_pixel_once():
    starts = vae_module.tile_starts(156, 48, 8)
    assert starts == [0, 40, 80, 108]
    total = torch.zeros(156)
    for i, start in enumerate(starts):
        total[start : start + 48] += vae_module.edge_ramp(48, 8, i > 0, i < len(starts) - 1)
    assert total.min() > 0.9 and total.max() < 2.1  # normalised per pixel, so any positive cover works
    assert vae_module.edge_ramp(48, 8, True, True)[[0, 24, 47]].tolist() == pytest.approx([1 / 16, 1.0, 1 / 16])


# -- dtypes, devices, gradients ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_decode(micro, dtype):
    latent = noise(1, 16, 2, 2, 3)
    with torch.no_grad():
        full = micro.decode_model_latent(latent)
        low_vae = randomized().to(dtype)
        low = low_vae.decode_model_latent(latent)  # a float32 latent is cast to the module's dtype
        low_tiled = low_vae.decode_model_latent_tiled(latent.to(dtype), tile_latent_hw=(2, 2), overlap=1)
    assert low.dtype == low_tiled.dtype == low_vae.dtype == dtype and low.device == low_vae.device
    assert psnr(low.float(), full) > 25


def test_gradients_flow_for_training():
    vae = randomized()
    video = noise(1, 3, 8, 16, 16)
    latent = vae.encode_posterior(video).sample(torch.Generator().manual_seed(0))
    loss = (vae.decode_model_latent(vae.to_model_latent(latent)) - video).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in vae.parameters()]
    assert all(g is not None for g in grads) and all(torch.isfinite(g).all() for g in grads)


# -- bad input -------------------------------------------------------------------------------


def test_bad_inputs_name_the_problem_and_the_fix(micro):
    with pytest.raises(VAEInputError, match=r"\[batch, 16, latent_frames"):
        micro.decode_model_latent(torch.zeros(1, 4, 2, 4, 4))
    with pytest.raises(FrameCountError, match="3 latent frames.*even"):
        micro.decode_model_latent(torch.zeros(1, 16, 3, 4, 4))
    with pytest.raises(FrameCountError, match="12 video frames"):
        micro.encode_to_model_latent(torch.zeros(1, 3, 12, 16, 16))
    with pytest.raises(VAEInputError, match="multiples of 8"):
        micro.encode_to_model_latent(torch.zeros(1, 3, 8, 20, 16))
    with pytest.raises(VAEInputError, match="expected \\[batch, 3"):
        micro.encode_to_model_latent(torch.zeros(1, 8, 16, 16))
    with pytest.raises(VAEInputError, match="overlap"):
        micro.decode_model_latent_tiled(torch.zeros(1, 16, 2, 4, 4), tile_latent_hw=(4, 4), overlap=4)
    with pytest.raises(VAEInputError, match="even"):
        micro.decode_model_latent(torch.zeros(1, 16, 2, 4, 4), latent_frames_per_chunk=3)


# -- config and loading ----------------------------------------------------------------------


def test_config_round_trips_through_the_diffusers_form():
    real = CogVideoXVAEConfig.cogvideox_2b()
    assert CogVideoXVAEConfig.from_diffusers_config(real.to_dict()) == real
    assert real.spatial_compression == 8 and real.scaling_factor == 1.15258426
    published = {  # THUDM/CogVideoX-2b vae/config.json
        "_class_name": "AutoencoderKLCogVideoX",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 256, 512],
        "down_block_types": ["CogVideoXDownBlock3D"] * 4,
        "force_upcast": True,
        "in_channels": 3,
        "latent_channels": 16,
        "latents_mean": None,
        "latents_std": None,
        "layers_per_block": 3,
        "norm_eps": 1e-06,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_height": 480,
        "sample_width": 720,
        "scaling_factor": 1.15258426,
        "shift_factor": None,
        "temporal_compression_ratio": 4,
        "up_block_types": ["CogVideoXUpBlock3D"] * 4,
        "use_post_quant_conv": False,
        "use_quant_conv": False,
    }
    assert CogVideoXVAEConfig.from_diffusers_config(published) == real
    tiny = CogVideoXVAEConfig.tiny()
    assert (tiny.latent_channels, tiny.spatial_compression, tiny.temporal_compression_ratio) == (16, 8, 4)
    with pytest.raises(ValueError, match="use_quant_conv"):
        CogVideoXVAEConfig.from_diffusers_config({**published, "use_quant_conv": True})


def test_save_and_load_round_trip(tmp_path, micro):
    path = tmp_path / "vae.safetensors"
    save_vae(micro, path)
    loaded = load_vae(path)
    assert loaded.config == MICRO
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), micro.state_dict().values()))
    latent = noise(1, 16, 2, 2, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode_model_latent(latent), micro.decode_model_latent(latent))
    half = load_vae(path, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_load_builds_on_meta_and_never_initialises_weights(tmp_path, micro, monkeypatch):
    path = tmp_path / "vae.safetensors"
    save_vae(micro, path)
    initialised = []
    original = torch.nn.init.kaiming_uniform_
    monkeypatch.setattr(
        torch.nn.init, "kaiming_uniform_", lambda t, *a, **k: initialised.append(t.device.type) or original(t, *a, **k)
    )
    loaded = load_vae(path)
    assert initialised and set(initialised) == {"meta"}
    assert not any(p.is_meta for p in loaded.parameters())
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_load_reads_sibling_config_json_then_shapes(tmp_path):
    wide = CogVideoXVAEConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=2, scaling_factor=0.7)
    state = CogVideoXVAE(wide, device="meta").state_dict()
    tensors = {k: torch.zeros(v.shape) for k, v in state.items()}
    folder = tmp_path / "vae"
    folder.mkdir()
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    inferred = load_vae(folder).config  # no config: shapes, CogVideoX-2b's values for the rest
    assert inferred == CogVideoXVAEConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=2)
    (folder / "config.json").write_text(json.dumps(wide.to_dict()))
    assert load_vae(folder).config == wide
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    assert load_vae(folder).config == inferred  # another model's config.json is not ours to read


def test_weights_of_another_vae_are_refused_by_name(tmp_path, micro):
    sd_vae = {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "decoder.conv_out.weight": torch.zeros(3, 128, 3, 3)}
    path = tmp_path / "sd_vae.safetensors"
    save_file(sd_vae, str(path))
    with pytest.raises(VAEWeightsError, match="not a CogVideoX VAE.*encoder.conv_in.conv.weight"):
        load_vae(path)
    save_file(sd_vae, str(path), metadata={vae_module.CONFIG_METADATA_KEY: json.dumps(MICRO.to_dict())})
    with pytest.raises(VAEWeightsError, match=r"missing keys.*unexpected keys \['decoder.conv_out.weight'"):
        load_vae(path)
    other = tmp_path / "other.safetensors"
    save_file(
        {k: v.contiguous() for k, v in micro.state_dict().items()},
        str(other),
        metadata={vae_module.CONFIG_METADATA_KEY: json.dumps(CogVideoXVAEConfig.tiny().to_dict())},
    )
    with pytest.raises(VAEWeightsError, match="has shape"):
        load_vae(other)
    save_file({k: v.contiguous() for k, v in micro.state_dict().items()}, str(other))
    with pytest.raises(VAEWeightsError, match="config.json"):
        load_vae(other)  # group count of 4 cannot be inferred from shapes


def test_damaged_vae_files_name_the_file_and_the_fix(tmp_path, micro):
    good = tmp_path / "vae.safetensors"
    save_vae(micro, good)
    for path, what in damaged_copies(good, tmp_path / "damaged"):
        with pytest.raises(CheckpointError) as error:
            load_vae(path)
        assert_names_file_and_fix(error.value, path, what)
    folder = tmp_path / "damaged"  # the diffusers folder form reads diffusion_pytorch_model.safetensors
    (folder / "half.safetensors").rename(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model.safetensors is truncated"):
        load_vae(folder)
    with pytest.raises(CheckpointError, match=r"vae.pth: the CogVideoX VAE is read from .safetensors files"):
        load_vae(tmp_path / "vae.pth")
