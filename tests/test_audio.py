"""Mel front end, mel autoencoder and vocoders of the V2A model."""

import math

import pytest
import torch

from lumina_core.models.audio import (
    GriffinLimVocoder,
    HiFiGANVocoder,
    MelAutoencoder,
    MelAutoencoderConfig,
    MelConfig,
    VocoderConfig,
    log_mel_spectrogram,
    mel_filterbank,
)

MEL = MelConfig()


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * MEL.sample_rate)) / MEL.sample_rate
    return (amplitude * torch.sin(2 * math.pi * frequency * t))[None]


def band_of(frequency: float, filterbank: torch.Tensor) -> int:
    bin_index = round(frequency / (MEL.sample_rate / MEL.n_fft))
    return int(filterbank[:, bin_index].argmax())


def test_filterbank_covers_every_band():
    filterbank = mel_filterbank(MEL)
    assert filterbank.shape == (64, 513)
    assert (filterbank >= 0).all()
    assert (filterbank.sum(dim=1) > 0).all(), "an empty mel band"
    assert filterbank[:, 513 // 2 + 1 :].sum() > 0, "nothing above 4 kHz"


def test_log_mel_frames_and_levels():
    for samples in (160, 1000, 16000):
        mel = log_mel_spectrogram(torch.zeros(2, 1, samples), MEL)
        assert mel.shape == (2, 64, samples // 160 + 1) == (2, 64, MEL.frames_for(samples))
        assert torch.allclose(mel, torch.full_like(mel, MEL.silence))
    mel = log_mel_spectrogram(tone(1000.0), MEL)
    assert int(mel[0, :, 50].argmax()) == band_of(1000.0, mel_filterbank(MEL))


def test_log_mel_refuses_stereo_and_empty():
    with pytest.raises(ValueError, match="mono"):
        log_mel_spectrogram(torch.zeros(1, 2, 100), MEL)
    with pytest.raises(ValueError, match="T > 0"):
        log_mel_spectrogram(torch.zeros(1, 0), MEL)


def test_griffin_lim_round_trip_of_a_tone():
    """mel -> Griffin-Lim -> mel lands close: spectral convergence and log error on the audible bins."""
    wave = tone(440.0)
    mel = log_mel_spectrogram(wave, MEL)
    vocoder = GriffinLimVocoder(MEL)
    out = vocoder(mel, wave.shape[-1])
    assert out.shape == (1, 1, wave.shape[-1])
    assert out.abs().max() <= 1
    rebuilt = log_mel_spectrogram(out, MEL)
    convergence = float((rebuilt.exp() - mel.exp()).norm() / mel.exp().norm())
    audible = mel > MEL.silence + 3
    log_error = float((rebuilt - mel).abs()[audible].mean())
    assert convergence < 0.2, convergence
    assert log_error < 0.8, log_error
    assert int(rebuilt[0, :, 50].argmax()) == int(mel[0, :, 50].argmax())
    assert torch.equal(out, vocoder(mel, wave.shape[-1])), "Griffin-Lim must be deterministic"


def test_vocoders_return_exactly_the_length_asked():
    mel = log_mel_spectrogram(tone(300.0, seconds=0.3), MEL)
    torch.manual_seed(0)
    hifigan = HiFiGANVocoder(MEL, width=32, resblock_kernel_sizes=(3,), resblock_dilations=(1,))
    for vocoder in (GriffinLimVocoder(MEL, iterations=2), hifigan):
        for length in (1, 1000, 4800):
            out = vocoder(mel, length)
            assert out.shape == (1, 1, length)
            assert torch.isfinite(out).all() and out.abs().max() <= 1
        with pytest.raises(ValueError, match="mel frames"):
            vocoder(mel[..., :5], 4800)


def test_hifigan_upsampling_must_match_the_hop():
    with pytest.raises(ValueError, match="hop"):
        HiFiGANVocoder(MEL, upsample_rates=(8, 8, 2, 2))
    with pytest.raises(ValueError, match="halve"):
        HiFiGANVocoder(MEL, width=16)


def test_vocoder_config_builds_either_kind():
    assert isinstance(VocoderConfig().build(MEL), GriffinLimVocoder)
    config = VocoderConfig(kind="hifigan", width=32)
    assert isinstance(config.build(MEL), HiFiGANVocoder)
    assert VocoderConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="kind"):
        VocoderConfig(kind="bigvgan")


def small_autoencoder(**changes) -> MelAutoencoder:
    torch.manual_seed(0)
    return MelAutoencoder(MelAutoencoderConfig(width=16, latent_channels=4, **changes)).eval()


def test_autoencoder_shapes():
    autoencoder = small_autoencoder()
    mel = torch.randn(2, 64, 40) - 5
    mean, logvar = autoencoder.posterior(mel)
    assert mean.shape == logvar.shape == (2, 4, 10)
    latents = autoencoder.encode(mel)
    assert latents.shape == (2, 4, 10)
    assert autoencoder.decode(latents).shape == (2, 64, 40)
    assert autoencoder.encode(torch.randn(1, 64, 41)).shape == (1, 4, 11), "a partial last token is padded, not dropped"
    with pytest.raises(ValueError, match="64"):
        autoencoder.encode(torch.randn(1, 80, 40))
    with pytest.raises(ValueError, match="4"):
        autoencoder.decode(torch.randn(1, 16, 10))


def test_autoencoder_latent_scaling():
    plain, scaled = small_autoencoder(), small_autoencoder(latent_shift=0.5, latent_scale=2.0)
    mel = torch.randn(1, 64, 16) - 5
    assert torch.allclose(scaled.encode(mel), (plain.encode(mel) - 0.5) * 2.0, atol=1e-6)
    latents = torch.randn(1, 4, 4)
    assert torch.allclose(scaled.decode(latents), plain.decode(latents / 2.0 + 0.5), atol=1e-5)


def test_autoencoder_is_local_in_time():
    """Per-time-step norms: a sound encodes the same whatever follows it, far enough away."""
    autoencoder = small_autoencoder()
    first = torch.randn(1, 64, 160) - 5
    alone = autoencoder.encode(first)
    followed = autoencoder.encode(torch.cat([first, torch.randn(1, 64, 80) + 3], dim=-1))
    assert torch.allclose(alone[..., :20], followed[..., :20], atol=1e-5)


def test_autoencoder_config_round_trip():
    config = MelAutoencoderConfig(mel=MelConfig(n_mels=80), latent_channels=8, latent_scale=0.7)
    assert MelAutoencoderConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="power of two"):
        MelAutoencoderConfig(time_downsample=3)
