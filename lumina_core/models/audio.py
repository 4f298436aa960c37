"""Audio for the video-to-audio model: log-mel spectrograms, the mel autoencoder, vocoders.

The chain is the one Lumina-V2A describes (waveform -> STFT mel -> audio VAE latents ->
Next-DiT; back through the VAE decoder and a vocoder), with our own small parts:

- ``MelConfig``: AudioLDM's front end (16 kHz, 1024-point STFT, hop 160 = 100 mel frames/s,
  64 slaney mel bands over 0-8 kHz, magnitude, natural log floored at 1e-5), the one the
  paper's audio VAE and HiFi-GAN were trained on.
- ``MelAutoencoder``: a KL-regularised 1D-conv autoencoder over time, mel bands as channels:
  [B, 64, M] -> latents [B, 16, M/4] (25 latent frames/s) and back.
- ``Vocoder``: one interface, log-mel -> waveform of an exact length. ``GriffinLimVocoder``
  needs no weights and is the default; ``HiFiGANVocoder`` is a small learned generator
  for when one has been trained.

No torchaudio: STFT and its inverse are ``torch.stft``/``torch.istft``; the mel filterbank
is librosa's slaney construction written out here.
"""

import math
from abc import ABCMeta, abstractmethod
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class MelConfig:
    """How waveforms become log-mel spectrograms (AudioLDM's settings by default)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5

    def __post_init__(self):
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"hop_length {self.hop_length} is longer than n_fft {self.n_fft}; the STFT would skip samples"
            )
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"mel range {self.f_min}-{self.f_max} Hz must lie within 0-{self.sample_rate / 2} Hz")

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def silence(self) -> float:
        """The log-mel value of silence."""
        return math.log(self.log_floor)

    def frames_for(self, samples: int) -> int:
        """Mel frames of a waveform of ``samples`` (centred STFT: frame m is centred on sample m * hop)."""
        return samples // self.hop_length + 1


def hz_to_slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = hz / (200.0 / 3)
    logarithmic = 15.0 + torch.log(torch.clamp(hz, min=1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(hz >= 1000.0, logarithmic, linear)


def slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * (200.0 / 3)
    logarithmic = 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return torch.where(mel >= 15.0, logarithmic, linear)


def mel_filterbank(config: MelConfig, device=None) -> torch.Tensor:
    """[n_mels, n_fft/2 + 1] float32 triangular filters, area-normalised (librosa's ``norm="slaney"``)."""
    fft_hz = torch.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1, dtype=torch.float64, device=device)
    edges = torch.tensor([config.f_min, config.f_max], dtype=torch.float64, device=device)
    mel_lo, mel_hi = hz_to_slaney_mel(edges)
    band_hz = slaney_mel_to_hz(
        torch.linspace(float(mel_lo), float(mel_hi), config.n_mels + 2, dtype=torch.float64, device=device)
    )
    widths = band_hz.diff()
    ramps = band_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0)
    weights = weights * (2.0 / (band_hz[2:] - band_hz[:-2]))[:, None]
    return weights.float()


def stft(waveform: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """[B, T] float -> complex64 [B, n_fft/2 + 1, T // hop + 1]; centred frames, zero padding past the ends."""
    window = torch.hann_window(config.n_fft, device=waveform.device)
    return torch.stft(
        waveform.float(),
        config.n_fft,
        config.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def istft(spectrum: torch.Tensor, config: MelConfig, length: int) -> torch.Tensor:
    """complex [B, n_fft/2 + 1, M] -> [B, length] float32, the inverse of ``stft``."""
    window = torch.hann_window(config.n_fft, device=spectrum.device)
    return torch.istft(spectrum, config.n_fft, config.hop_length, window=window, center=True, length=length)


def log_mel_spectrogram(waveform: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Waveform [B, T] or [B, 1, T] in [-1, 1] -> log-mel [B, n_mels, T // hop + 1] float32."""
    if waveform.ndim == 3:
        if waveform.shape[1] != 1:
            raise ValueError(f"waveform has {waveform.shape[1]} channels; mix it down to mono first ([B, 1, T])")
        waveform = waveform[:, 0]
    if waveform.ndim != 2 or waveform.shape[-1] == 0:
        raise ValueError(f"waveform must be [B, T] or [B, 1, T] with T > 0 samples, got shape {tuple(waveform.shape)}")
    magnitude = stft(waveform, config).abs()
    mel = torch.einsum("mf,bft->bmt", mel_filterbank(config, waveform.device), magnitude)
    return torch.log(torch.clamp(mel, min=config.log_floor))


# --------------------------------------------------------------------------- autoencoder


@dataclass(frozen=True)
class MelAutoencoderConfig:
    """Sizes of ``MelAutoencoder``, with the mel front end it was trained on.

    ``mel_mean``/``mel_std`` bring log-mels (silence = log 1e-5 = -11.5, loud bands ~ +2)
    to roughly unit range before the first conv. ``latent_shift``/``latent_scale`` bring the
    posterior means to roughly zero mean, unit variance for the flow model; a trainer
    measures them on its data after fitting the autoencoder (1 and 0 mean "not measured").
    """

    mel: MelConfig = MelConfig()
    latent_channels: int = 16
    time_downsample: int = 4
    width: int = 128
    blocks_per_level: int = 1
    mel_mean: float = -5.0
    mel_std: float = 4.0
    latent_shift: float = 0.0
    latent_scale: float = 1.0

    def __post_init__(self):
        if self.time_downsample < 1 or self.time_downsample & (self.time_downsample - 1):
            raise ValueError(f"time_downsample must be a power of two, got {self.time_downsample}")

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.mel.frame_rate / self.time_downsample

    def latent_frames_for(self, mel_frames: int) -> int:
        return -(-mel_frames // self.time_downsample)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MelAutoencoderConfig":
        values = dict(values)
        check_fields(cls, values, "mel autoencoder")
        if "mel" in values:
            check_fields(MelConfig, values["mel"], "mel")
            values["mel"] = MelConfig(**values["mel"])
        return cls(**values)


def check_fields(cls, values: dict, what: str):
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields {sorted(unknown)}")


class ChannelNorm(nn.Module):
    """LayerNorm over channels at each time step of [B, C, T].

    Unlike GroupNorm it keeps the autoencoder local in time: a sound encodes the same
    whatever else is in the clip, and however long the clip is.
    """

    def __init__(self, channels: int, dtype=None, device=None):
        super().__init__()
        self.norm = nn.LayerNorm(channels, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ResidualBlock1d(nn.Module):
    """norm-SiLU-conv3 twice, plus the input."""

    def __init__(self, channels: int, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.body = nn.Sequential(
            ChannelNorm(channels, **factory),
            nn.SiLU(),
            nn.Conv1d(channels, channels, 3, padding=1, **factory),
            ChannelNorm(channels, **factory),
            nn.SiLU(),
            nn.Conv1d(channels, channels, 3, padding=1, **factory),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MelEncoder(nn.Module):
    """Normalised log-mel [B, n_mels, M] -> posterior mean and log-variance [B, 2 * C_lat, M / down]."""

    def __init__(self, config: MelAutoencoderConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        width = config.width
        layers = [nn.Conv1d(config.mel.n_mels, width, 3, padding=1, **factory)]
        for _ in range(int(math.log2(config.time_downsample))):
            layers += [ResidualBlock1d(width, **factory) for _ in range(config.blocks_per_level)]
            layers.append(nn.Conv1d(width, width, 4, stride=2, padding=1, **factory))
        layers += [ResidualBlock1d(width, **factory) for _ in range(config.blocks_per_level)]
        layers += [
            ChannelNorm(width, **factory),
            nn.SiLU(),
            nn.Conv1d(width, 2 * config.latent_channels, 3, padding=1, **factory),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MelDecoder(nn.Module):
    """Latents [B, C_lat, N] -> normalised log-mel [B, n_mels, N * down]."""

    def __init__(self, config: MelAutoencoderConfig, dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        width = config.width
        layers = [nn.Conv1d(config.latent_channels, width, 3, padding=1, **factory)]
        for _ in range(int(math.log2(config.time_downsample))):
            layers += [ResidualBlock1d(width, **factory) for _ in range(config.blocks_per_level)]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(width, width, 3, padding=1, **factory)]
        layers += [ResidualBlock1d(width, **factory) for _ in range(config.blocks_per_level)]
        layers += [
            ChannelNorm(width, **factory),
            nn.SiLU(),
            nn.Conv1d(width, config.mel.n_mels, 3, padding=1, **factory),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class MelAutoencoder(nn.Module):
    """Log-mel [B, n_mels, M] <-> audio latents [B, C_lat, ceil(M / down)], the space the V2A model works in.

    The encoder gives a diagonal Gaussian posterior (KL-regularised in training, as the
    AudioLDM VAE); ``encode`` returns its mean, shifted and scaled to the flow model's
    unit range. A mel length that isn't a multiple of ``time_downsample`` is padded with
    silence at the end before encoding.
    """

    def __init__(self, config: MelAutoencoderConfig = MelAutoencoderConfig(), dtype=None, device=None):
        super().__init__()
        self.config = config
        self.encoder = MelEncoder(config, dtype=dtype, device=device)
        self.decoder = MelDecoder(config, dtype=dtype, device=device)

    def posterior(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log-mel [B, n_mels, M] -> (mean, logvar) [B, C_lat, ceil(M / down)], unscaled; for training."""
        config = self.config
        if log_mel.ndim != 3 or log_mel.shape[1] != config.mel.n_mels:
            raise ValueError(f"log-mel must be [B, {config.mel.n_mels}, frames], got shape {tuple(log_mel.shape)}")
        pad = config.latent_frames_for(log_mel.shape[-1]) * config.time_downsample - log_mel.shape[-1]
        log_mel = F.pad(log_mel, (0, pad), value=config.mel.silence)
        dtype = self.encoder.layers[0].weight.dtype
        moments = self.encoder(((log_mel - config.mel_mean) / config.mel_std).to(dtype))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, n_mels, M] -> latents [B, C_lat, ceil(M / down)], the posterior mean in model units."""
        mean, _ = self.posterior(log_mel)
        return (mean - self.config.latent_shift) * self.config.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C_lat, N] in model units -> log-mel [B, n_mels, N * down] float32."""
        config = self.config
        if latents.ndim != 3 or latents.shape[1] != config.latent_channels:
            raise ValueError(f"latents must be [B, {config.latent_channels}, N], got shape {tuple(latents.shape)}")
        dtype = self.decoder.layers[0].weight.dtype
        z = latents / config.latent_scale + config.latent_shift
        return self.decoder(z.to(dtype)).float() * config.mel_std + config.mel_mean


# --------------------------------------------------------------------------- vocoders


class Vocoder(nn.Module, metaclass=ABCMeta):
    """log-mel [B, n_mels, M] (``MelConfig``'s layout) -> waveform [B, 1, length] float32 in [-1, 1].

    ``length`` is asked for explicitly so that every vocoder returns exactly the audio the
    caller's timing needs; M must cover it (M >= length // hop + 1), frames past that are ignored.
    """

    def __init__(self, mel: MelConfig):
        super().__init__()
        self.mel = mel

    @abstractmethod
    def forward(self, log_mel: torch.Tensor, length: int) -> torch.Tensor: ...

    def frames_for_length(self, log_mel: torch.Tensor, length: int) -> torch.Tensor:
        """The mel frames that make ``length`` samples, after checking there are enough."""
        if log_mel.ndim != 3 or log_mel.shape[1] != self.mel.n_mels:
            raise ValueError(f"log-mel must be [B, {self.mel.n_mels}, frames], got shape {tuple(log_mel.shape)}")
        if length < 1 or log_mel.shape[-1] < self.mel.frames_for(length):
            raise ValueError(
                f"{log_mel.shape[-1]} mel frames can't make {length} samples; "
                f"they need {self.mel.frames_for(length)} frames"
            )
        return log_mel[..., : self.mel.frames_for(length)]


class GriffinLimVocoder(Vocoder):
    """Phase recovery by fast Griffin-Lim (Perraudin et al. 2013): no weights, so it is the honest default.

    The mel magnitudes are lifted to linear STFT magnitudes by non-negative least squares
    (``magnitude_iterations`` multiplicative updates), then ``iterations`` rounds of STFT consistency with
    ``momentum`` find a phase. Phases start at zero, so the result is deterministic.
    Intelligible but phasey; a trained ``HiFiGANVocoder`` sounds better once one exists.
    """

    def __init__(self, mel: MelConfig, iterations: int = 32, momentum: float = 0.99, magnitude_iterations: int = 50):
        super().__init__(mel)
        if iterations < 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"Griffin-Lim needs iterations >= 0 and 0 <= momentum < 1, got {iterations} and {momentum}"
            )
        self.iterations = iterations
        self.momentum = momentum
        self.magnitude_iterations = magnitude_iterations

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, n_mels, M] -> non-negative STFT magnitudes [B, n_fft/2 + 1, M].

        Non-negative least squares by multiplicative updates (Lee & Seung), started from the
        filterbank's transpose: on tones it lands far closer than the clamped pseudo-inverse,
        which rings into negative bins and then loses them to the clamp.
        """
        filterbank = mel_filterbank(self.mel, log_mel.device)
        mel = torch.exp(log_mel.float())
        target = torch.einsum("mf,bmt->bft", filterbank, mel)
        magnitude = target
        for _ in range(self.magnitude_iterations):
            rebuilt_mel = torch.einsum("mf,bft->bmt", filterbank, magnitude)
            magnitude = magnitude * target / (torch.einsum("mf,bmt->bft", filterbank, rebuilt_mel) + 1e-10)
            magnitude = magnitude.clamp(min=1e-12)  # keeps empty bins out of denormal (slow) floats
        return magnitude

    def forward(self, log_mel: torch.Tensor, length: int) -> torch.Tensor:
        magnitude = self.linear_magnitude(self.frames_for_length(log_mel, length))
        phase = torch.ones_like(magnitude, dtype=torch.complex64)
        previous = torch.zeros_like(phase)
        for _ in range(self.iterations):
            rebuilt = stft(istft(magnitude * phase, self.mel, length), self.mel)
            phase = rebuilt - previous * (self.momentum / (1 + self.momentum))
            phase = phase / (phase.abs() + 1e-16)
            previous = rebuilt
        waveform = istft(magnitude * phase, self.mel, length)
        return waveform.clamp(-1, 1)[:, None]


class HiFiGANResBlock(nn.Module):
    """HiFi-GAN's multi-dilation residual block (type 1): per dilation, a dilated and a plain conv."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], dtype=None, device=None):
        super().__init__()
        factory = dict(dtype=dtype, device=device)
        self.dilated = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2, **factory)
            for d in dilations
        )
        self.plain = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2, **factory) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, 0.1)), 0.1))
        return x


class HiFiGANVocoder(Vocoder):
    """A small HiFi-GAN V1-style generator: transposed-conv upsampling by ``hop`` with multi-receptive-field blocks.

    Untrained here (weight norm, the discriminators and the losses belong to a trainer).
    ``upsample_rates`` must multiply to the hop length; the output is cut or zero-padded
    to ``length`` (it makes M * hop samples for M frames).
    """

    def __init__(
        self,
        mel: MelConfig,
        width: int = 128,
        upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2),
        resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11),
        resblock_dilations: tuple[int, ...] = (1, 3, 5),
        dtype=None,
        device=None,
    ):
        super().__init__(mel)
        if math.prod(upsample_rates) != mel.hop_length:
            raise ValueError(
                f"HiFi-GAN upsample rates {tuple(upsample_rates)} multiply to {math.prod(upsample_rates)}, "
                f"not the hop {mel.hop_length}"
            )
        if width % 2 ** len(upsample_rates):
            raise ValueError(
                f"HiFi-GAN width {width} must halve {len(upsample_rates)} times "
                f"(a multiple of {2 ** len(upsample_rates)})"
            )
        factory = dict(dtype=dtype, device=device)
        self.conv_pre = nn.Conv1d(mel.n_mels, width, 7, padding=3, **factory)
        self.upsamples = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = width
        for rate in upsample_rates:
            kernel = 2 * rate
            padding = (kernel - rate + 1) // 2  # with output_padding: exactly `rate` samples per input frame
            self.upsamples.append(
                nn.ConvTranspose1d(
                    channels,
                    channels // 2,
                    kernel,
                    rate,
                    padding,
                    output_padding=2 * padding - (kernel - rate),
                    **factory,
                )
            )
            channels //= 2
            self.resblocks.append(
                nn.ModuleList(
                    HiFiGANResBlock(channels, k, tuple(resblock_dilations), **factory) for k in resblock_kernel_sizes
                )
            )
        self.conv_post = nn.Conv1d(channels, 1, 7, padding=3, **factory)

    def forward(self, log_mel: torch.Tensor, length: int) -> torch.Tensor:
        x = self.conv_pre(self.frames_for_length(log_mel, length).to(self.conv_pre.weight.dtype))
        for upsample, blocks in zip(self.upsamples, self.resblocks):
            x = upsample(F.leaky_relu(x, 0.1))
            x = sum(block(x) for block in blocks) / len(blocks)
        waveform = torch.tanh(self.conv_post(F.leaky_relu(x))).float()
        waveform = waveform[..., :length]
        return F.pad(waveform, (0, length - waveform.shape[-1]))


@dataclass(frozen=True)
class VocoderConfig:
    """Which vocoder a V2A checkpoint decodes with, and its settings.

    ``kind="griffin_lim"`` uses ``iterations``/``momentum`` and has no weights;
    ``kind="hifigan"`` uses ``width``/``upsample_rates`` and its weights travel in the checkpoint.
    """

    kind: str = "griffin_lim"
    iterations: int = 32
    momentum: float = 0.99
    width: int = 128
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)

    def __post_init__(self):
        if self.kind not in VOCODER_KINDS:
            raise ValueError(f"vocoder kind {self.kind!r} is not one of {VOCODER_KINDS}")

    @property
    def vocoder_class(self) -> type:
        return GriffinLimVocoder if self.kind == "griffin_lim" else HiFiGANVocoder

    def build(self, mel: MelConfig, dtype=None, device=None) -> Vocoder:
        if self.kind == "griffin_lim":
            return GriffinLimVocoder(mel, self.iterations, self.momentum)
        return HiFiGANVocoder(mel, self.width, self.upsample_rates, dtype=dtype, device=device)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VocoderConfig":
        values = dict(values)
        check_fields(cls, values, "vocoder")
        if "upsample_rates" in values:
            values["upsample_rates"] = tuple(values["upsample_rates"])
        return cls(**values)


VOCODER_KINDS = ("griffin_lim", "hifigan")
