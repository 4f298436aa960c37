"""The released weights end to end from the command line: small random configs of the three released architectures,
written in their released formats (the DiT's folder with a .pth and model_args.pth, a Hugging Face Gemma-2 folder with
config.json and tokenizer.model beside ComfyUI-layout weights, the diffusers VAE folder), found in one folder by their
contents and run on the CPU."""

import json
from dataclasses import asdict, replace

import pytest
from safetensors.torch import save_file
from test_checkpoint import released_layout
from test_gemma import MICRO as GEMMA
from test_gemma import randomized as random_gemma
from test_gemma import save_comfy_layout, sentencepiece_model
from test_vae import MICRO as VAE
from test_vae import randomized as random_vae
from tiny_models import TINY, randomized

from lumina_core.__main__ import main
from lumina_core.io.media import read_video
from lumina_core.released import find_released, kind_of

ARGS = ["--prompt", "a red circle moving left", "--width", "64", "--height", "64", "--frames", "8", "--steps", "3"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A folder as a user fills it: the released DiT folder, Gemma-2 and the VAE under names of their own."""
    folder = tmp_path_factory.mktemp("models")
    dit_folder = folder / "Lumina-Video-f24R960"
    dit_folder.mkdir()
    released_layout(dit_folder, randomized(replace(TINY, cap_feat_dim=GEMMA.hidden_size)))
    gemma_folder = folder / "gemma-2"  # a tiny Gemma's shapes don't tell its head size: its config.json does
    gemma_folder.mkdir()
    (gemma_folder / "config.json").write_text(json.dumps({"model_type": "gemma2", **asdict(GEMMA)}))
    gemma = gemma_folder / "my_gemma.safetensors"
    save_comfy_layout(random_gemma(), gemma)
    (gemma_folder / "tokenizer.model").write_bytes(sentencepiece_model())
    vae = folder / "vae"
    vae.mkdir()
    weights = {k: v.contiguous() for k, v in random_vae().state_dict().items()}
    save_file(weights, str(vae / "diffusion_pytorch_model.safetensors"))
    (vae / "config.json").write_text(json.dumps(VAE.to_dict()))
    return folder


def test_the_three_models_are_found_by_their_contents(released):
    files = find_released(released)
    assert (files.dit.name, files.text_encoder.name, files.vae.name, files.v2a) == (
        "Lumina-Video-f24R960",
        "gemma-2",
        "vae",
        None,
    )
    assert kind_of(released / "Lumina-Video-f24R960" / "model_args.pth") is None


def test_generate_with_the_released_architectures(released, tmp_path, capsys):
    out = tmp_path / "released.mp4"
    assert main(["generate", "--models", str(released), "--out", str(out), *ARGS]) == 0
    video = read_video(out)
    assert video.frames.shape == (8, 64, 64, 3) and video.fps == 24 and video.audio is None
    printed = capsys.readouterr()
    assert "preset f24F96R960-MultiScale" in printed.out, "the released model's default preset is the reference's"
    assert "no video-to-audio model" in printed.err


def test_separate_paths_and_offload_give_the_same_video(released, tmp_path):
    files = find_released(released)
    together, apart = tmp_path / "together.mp4", tmp_path / "apart.mp4"
    assert main(["generate", "--models", str(released), "--out", str(together), "--seed", "3", *ARGS]) == 0
    paths = ["--dit", str(files.dit), "--text-encoder", str(files.text_encoder), "--vae", str(files.vae)]
    assert main(["generate", *paths, "--offload", "--out", str(apart), "--seed", "3", *ARGS]) == 0
    # the same frames up to the H.264 encoder, whose threads make the files differ by a few levels
    assert (read_video(together).frames - read_video(apart).frames).abs().mean() < 0.01


def test_a_folder_without_gemma_says_what_is_missing(released, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "Lumina-Video-f24R960").symlink_to(released / "Lumina-Video-f24R960")
    (partial / "vae").symlink_to(released / "vae")  # the DiT and the VAE, no Gemma-2
    assert main(["generate", "--models", str(partial), "--out", str(tmp_path / "x.mp4"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "lacks Gemma-2-2B" in err and "gemma_2_2b_fp16.safetensors" in err and "--text-encoder" in err


def test_a_dit_folder_without_model_args_says_the_config_was_inferred(released, tmp_path, capsys):
    files = find_released(released)
    bare = tmp_path / "bare_dit"
    bare.mkdir()
    (bare / "consolidated.00-of-01.pth").symlink_to(files.dit / "consolidated.00-of-01.pth")
    paths = ["--dit", str(bare), "--text-encoder", str(files.text_encoder), "--vae", str(files.vae)]
    assert main(["generate", *paths, "--out", str(tmp_path / "bare.mp4"), *ARGS]) == 0
    assert "inferred" in capsys.readouterr().err
