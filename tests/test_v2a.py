"""The video-to-audio model: timing by construction, resampling, sampling, checkpoints, input errors."""

import math

import pytest
import torch
from damaged_files import assert_names_file_and_fix, damaged_copies
from safetensors import safe_open
from safetensors.torch import save_file

from lumina_core.io.checkpoints import CheckpointError
from lumina_core.models.audio import GriffinLimVocoder, HiFiGANVocoder, MelAutoencoderConfig, VocoderConfig
from lumina_core.models.text import TextCondition
from lumina_core.models.v2a import (
    AudioTimeline,
    ConvFrameEncoder,
    FrameEncoder,
    V2AConfig,
    V2AGenerator,
    load_v2a,
    resample_to_tokens,
    save_v2a,
)

TINY = V2AConfig(
    dim=32,
    n_layers=2,
    n_heads=2,
    multiple_of=16,
    text_dim=16,
    visual_dim=16,
    sync_dim=8,
    frame_size=16,
    encoder_width=4,
    autoencoder=MelAutoencoderConfig(latent_channels=4, width=16),
    vocoder=VocoderConfig(iterations=4),
)
SAMPLE_RATE = TINY.mel.sample_rate


@pytest.fixture(scope="module")
def generator() -> V2AGenerator:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return V2AGenerator(TINY).eval().requires_grad_(False)


def caption(batch: int = 1, length: int = 3, seed: int = 0) -> TextCondition:
    features = torch.randn(batch, length, TINY.text_dim, generator=torch.Generator().manual_seed(seed))
    return TextCondition(features, torch.ones(batch, length, dtype=torch.long))


def clip(batch: int = 1, frames: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, frames, 3, 12, 20, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fps", [8, 16, 24, 25, 30, 60, 29.97])
def test_audio_lasts_exactly_as_long_as_the_video(generator, fps):
    frames = 10
    audio = generator.generate(clip(frames=frames), fps, caption(), steps=2, cfg=0)
    expected = round(frames * SAMPLE_RATE / fps)
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.waveform.shape == (1, 1, expected)
    assert audio.waveform.dtype == torch.float32
    assert torch.isfinite(audio.waveform).all() and audio.waveform.abs().max() <= 1


def test_timeline_covers_the_clip():
    for frames, fps in ((1, 8), (10, 60), (97, 24), (48, 29.97)):
        timeline = AudioTimeline.for_clip(frames, fps, TINY.autoencoder)
        assert timeline.samples == round(frames * SAMPLE_RATE / fps)
        starts, ends = timeline.token_spans()
        assert starts[0] <= 0 and ends[-1] >= timeline.samples / SAMPLE_RATE
        assert timeline.tokens == math.ceil((timeline.samples // 160 + 1) / 4)
        weights = timeline.frame_to_token_weights()
        assert torch.allclose(weights.sum(dim=1), torch.ones(timeline.tokens, dtype=torch.float64))
        assert (weights.sum(dim=0) > 0).all(), "a frame reaches no token"


def test_resampling_aligns_clips_at_different_frame_rates():
    """The same flash (0.4-0.6 s of a 1 s clip) at 30 fps and at 15 fps gives the same token features."""

    def flash(fps):
        times = torch.arange(fps) / fps
        values = ((times >= 0.4) & (times < 0.6)).float()
        return resample_to_tokens(values.view(1, fps, 1), AudioTimeline.for_clip(fps, fps, TINY.autoencoder))

    at_30, at_15 = flash(30), flash(15)
    assert at_30.shape == at_15.shape == (1, 26, 1)
    assert torch.allclose(at_30, at_15, atol=1e-6)
    peak = int(at_30[0, :, 0].argmax())
    assert 0.4 <= peak / TINY.token_rate <= 0.6


def test_last_frame_reaches_the_audio(generator):
    """An event on the very last frame changes the last tokens' features and the generated sound."""
    frames = clip(frames=12)
    changed = frames.clone()
    changed[:, -1] = 1 - changed[:, -1]
    timeline = generator.timeline(12, 24)
    with torch.no_grad():
        visual, sync = generator.video_features(frames, 24, timeline)
        visual2, sync2 = generator.video_features(changed, 24, timeline)
    assert not torch.allclose(sync[:, -1], sync2[:, -1])
    assert not torch.allclose(visual[:, -1], visual2[:, -1])
    assert torch.allclose(visual[:, 0], visual2[:, 0]), "the first token sees only the first frames"
    a = generator.generate(frames, 24, caption(), steps=3, cfg=0).waveform
    b = generator.generate(changed, 24, caption(), steps=3, cfg=0).waveform
    assert not torch.allclose(a, b)


def test_random_weights_end_to_end_with_guidance(generator):
    steps_seen = []
    audio = generator.generate(
        clip(batch=2, frames=9),
        12,
        caption(),
        steps=4,
        seed=5,
        cfg=3.5,
        renorm=2.0,
        callback=lambda step, total, t, x: steps_seen.append((step, total, x.shape)),
    )
    samples = round(9 * SAMPLE_RATE / 12)
    assert audio.waveform.shape == (2, 1, samples)
    assert torch.isfinite(audio.waveform).all() and audio.waveform.abs().max() <= 1
    assert audio.waveform.std() > 0
    assert [s[:2] for s in steps_seen] == [(1, 3), (2, 3), (3, 3)]
    assert steps_seen[0][2] == (2, TINY.autoencoder.latent_channels, generator.timeline(9, 12).tokens)
    with_negative = generator.generate(
        clip(batch=2, frames=9), 12, caption(), steps=4, seed=5, negative_text=caption(length=1, seed=9)
    )
    assert not torch.allclose(with_negative.waveform, audio.waveform)


def test_seeded_and_batch_independent(generator):
    frames = clip(batch=2, frames=6)
    text = caption(batch=2)
    first = generator.generate(frames, 24, text, steps=3, seed=7).waveform
    again = generator.generate(frames, 24, text, steps=3, seed=7).waveform
    other = generator.generate(frames, 24, text, steps=3, seed=8).waveform
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    alone = generator.generate(
        frames[1:], 24, TextCondition(text.features[1:], text.mask[1:]), steps=3, seed=8
    ).waveform
    assert torch.allclose(alone[0], first[1], atol=1e-4), "item i depends only on seed + i"


def test_caption_padding_is_masked(generator):
    timeline = generator.timeline(6, 24)
    latents = torch.randn(1, 4, timeline.tokens)
    visual, sync = torch.randn(1, timeline.tokens, TINY.visual_dim), torch.randn(1, timeline.tokens, TINY.sync_dim)
    text = caption(length=3)
    padded = torch.cat([text.features, torch.randn(1, 4, TINY.text_dim) * 50], dim=1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0]])
    t = torch.tensor([0.3])
    with torch.no_grad():
        out = generator.dit(latents, t, visual, sync, text.features, text.mask)
        out_padded = generator.dit(latents, t, visual, sync, padded, mask)
    assert out.shape == latents.shape
    assert torch.allclose(out, out_padded, atol=1e-5)


def test_bad_inputs_name_the_input(generator):
    text = caption()
    with pytest.raises(ValueError, match="frames"):
        generator.generate(clip(frames=0), 24, text)
    with pytest.raises(ValueError, match="frames"):
        generator.generate(clip()[0].permute(0, 2, 3, 1), 24, text)  # ComfyUI's IMAGE layout
    with pytest.raises(ValueError, match="frames"):
        generator.generate((clip() * 255).to(torch.uint8), 24, text)
    for fps in (0, -24, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match="fps"):
            generator.generate(clip(), fps, text)
    with pytest.raises(ValueError, match="text"):
        generator.generate(clip(batch=3), 24, caption(batch=2))
    with pytest.raises(ValueError, match="negative_text"):
        generator.generate(clip(batch=3), 24, text, negative_text=caption(batch=2))
    with pytest.raises(ValueError, match="steps"):
        generator.generate(clip(), 24, text, steps=1)
    too_long = TINY.max_audio_tokens / TINY.token_rate + 1
    with pytest.raises(ValueError, match="at most"):
        generator.timeline(int(too_long * 8), 8)


def test_config_json_round_trip():
    assert V2AConfig.from_json(TINY.to_json()) == TINY
    assert V2AConfig.from_json(V2AConfig().to_json()) == V2AConfig()
    with pytest.raises(ValueError, match="unknown"):
        V2AConfig.from_json('{"dimension": 3}')


def test_save_load_round_trip(generator, tmp_path):
    path = tmp_path / "v2a.safetensors"
    save_v2a(path, generator)
    loaded = load_v2a(path)
    assert loaded.config == TINY
    assert isinstance(loaded.vocoder, GriffinLimVocoder)
    expected = generator.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    a = generator.generate(clip(), 16, caption(), steps=3).waveform
    b = loaded.generate(clip(), 16, caption(), steps=3).waveform
    assert torch.equal(a, b)
    assert next(load_v2a(path, dtype=torch.bfloat16).dit.parameters()).dtype == torch.bfloat16


def test_learned_vocoder_travels_in_the_checkpoint(tmp_path):
    config = TINY.with_(vocoder=VocoderConfig(kind="hifigan", width=32))
    generator = V2AGenerator(config)
    path = tmp_path / "hifigan.safetensors"
    save_v2a(path, generator)
    loaded = load_v2a(path)
    assert isinstance(loaded.vocoder, HiFiGANVocoder)
    assert torch.equal(loaded.vocoder.conv_post.weight, generator.vocoder.conv_post.weight)


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_v2a(tmp_path / "missing.safetensors")
    pickle_file = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, pickle_file)
    with pytest.raises(CheckpointError, match=".safetensors"):
        load_v2a(pickle_file)
    video = tmp_path / "video.safetensors"
    save_file({"w": torch.zeros(1)}, str(video), metadata={"lumina_video_config": "{}"})
    with pytest.raises(CheckpointError, match="video model"):
        load_v2a(video)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="readable"):
        load_v2a(garbage)
    bigger = tmp_path / "bigger.safetensors"
    save_v2a(bigger, V2AGenerator(TINY.with_(n_layers=3)))
    with safe_open(str(bigger), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    save_file(tensors, str(bigger), metadata={"lumina_v2a_config": TINY.to_json()})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_v2a(bigger)


def test_damaged_checkpoints_name_the_file_and_the_fix(generator, tmp_path):
    good = tmp_path / "v2a.safetensors"
    save_v2a(good, generator)
    for path, what in damaged_copies(good, tmp_path / "damaged"):
        with pytest.raises(CheckpointError) as error:
            load_v2a(path)
        assert_names_file_and_fix(error.value, path, what)


class PlainFrameEncoder(FrameEncoder):
    """A stand-in third-party encoder: mean colour per frame, tiled to the feature size."""

    def __init__(self, feature_dim):
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, frames, fps):
        colour = frames.mean(dim=(-2, -1))  # [B, F, 3]
        return colour.repeat_interleave(math.ceil(self.feature_dim / 3), dim=-1)[..., : self.feature_dim]


def test_plugged_encoders_must_fit(tmp_path):
    with pytest.raises(ValueError, match="frame_encoder"):
        V2AGenerator(TINY, frame_encoder=ConvFrameEncoder(TINY.visual_dim + 1, 16, 4))
    plugged = V2AGenerator(TINY, frame_encoder=PlainFrameEncoder(TINY.visual_dim))
    audio = plugged.generate(clip(), 24, caption(), steps=2, cfg=0)
    assert audio.waveform.shape[-1] == round(8 * SAMPLE_RATE / 24)
    with pytest.raises(ValueError, match="frame_encoder"):
        save_v2a(tmp_path / "plugged.safetensors", plugged)
    other_vocoder = V2AGenerator(TINY, vocoder=HiFiGANVocoder(TINY.mel, width=32))
    with pytest.raises(ValueError, match="vocoder"):
        save_v2a(tmp_path / "plugged.safetensors", other_vocoder)
    assert not (tmp_path / "plugged.safetensors").exists()
