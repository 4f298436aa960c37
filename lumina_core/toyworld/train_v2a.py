"""Training recipe for the embedded video-to-audio model (Lumina-V2A design) on the toy world.

    python -m lumina_core.toyworld.train_v2a --steps 1200 --threads 1

Stage 1 fits the mel autoencoder (KL-regularised reconstruction of toy-world log-mels),
then measures the latent shift/scale that bring its posterior means to zero mean and
unit variance. Stage 2 trains the V2A Next-DiT together with its two frame encoders by
rectified flow (velocity target x1 - x0, t = 0 noise, t = 1 data: the engine's
convention) on toy clips shown at the world's own frame rate, with the autoencoder frozen.
The paper's frame encoders (CLIP, Synchformer) come pretrained and ours do not, so linear
probes on their features also learn the toy world's labels during stage 2 (the shape
from the content features, the bounce frames from the sync features; ``EncoderProbes``,
never exported): a head start for the encoders, not an input of the model.

Captions. The toy world's sound depends only on the shape (pitch) and the bounce times,
both visible in the frames, so the model is made caption-independent: it never sees a
meaningful caption. Each training item gets, at random, the learned null caption
(``P_NULL_CAPTION``), or the null caption with the video dropped too (``P_UNCONDITIONAL``:
CFG's unconditional branch), or else random caption features (isotropic Gaussian
tokens, 1 to ``MAX_RANDOM_CAPTION`` of them) that carry no information, so that the
model learns to ignore whatever caption a caller passes (the tiny text encoder's, say).
The checkpoint therefore needs no text encoder; evaluate with the null caption.

Both stages are seeded (every step draws its batch from a generator seeded by the step
number, so a resumed run matches an uninterrupted one) and resumable: stage 1 checkpoints
to ``--runs/v2a/autoencoder_checkpoint.pt`` and keeps its result in
``--runs/v2a/autoencoder.pt``; stage 2 checkpoints to ``--runs/v2a/checkpoint.pt`` (EMA in
``ema.pt`` beside it) every ``--save-every`` steps. ``--runs`` defaults to ``$LUMINA_VIDEO_RUNS``,
else ``~/.cache/lumina-video/runs``, outside the checkout, so a fresh clone resumes too. Running the
command again resumes; raising ``--steps`` trains on. At the end the EMA weights go to
``--export/v2a.safetensors`` through ``save_v2a`` and ``evaluate_v2a`` scores them on
held-out clips (onset precision/recall/F1 within +-1 video frame, pitch, duration).
"""

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import embedded
from ..models.audio import MelAutoencoder, MelAutoencoderConfig, VocoderConfig, log_mel_spectrogram
from ..models.v2a import V2AConfig, V2AGenerator, resample_to_tokens, save_v2a
from .metrics import SyncScore, audio_visual_sync, detect_onsets
from .train import EMA, Checkpoint, checkpoint_path, default_runs, runs_help, save_whole, warmup_lr
from .world import SHAPE_PITCH_HZ, SHAPES, heldout_clips, sample_clip

TOY_V2A_CONFIG = V2AConfig(
    dim=128,
    n_layers=4,
    n_heads=4,
    multiple_of=32,
    text_dim=64,  # TinyTextEncoder's width, so its captions can be passed (and are ignored)
    visual_dim=64,
    sync_dim=64,
    frame_size=32,
    encoder_width=16,
    autoencoder=MelAutoencoderConfig(latent_channels=8, width=64),
)
"""The embedded size: a quarter of ``V2AConfig()``'s transformer, 32x32 frame encoders, 8 latent channels."""

P_UNCONDITIONAL = 0.1  # video and caption dropped: the unconditional branch of CFG
P_NULL_CAPTION = 0.1  # caption dropped, video kept: what evaluation and callers without a caption use
MAX_RANDOM_CAPTION = 8
AE_KL_WEIGHT = 1e-3
ACTIVE_FRAME_WEIGHT = 10.0
EMA_DECAY = 0.995
PROBE_WEIGHT = 0.3
PITCH_WINDOW_SECONDS = 0.05


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: resuming at any step draws exactly what an uninterrupted run would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# --------------------------------------------------------------------------- data


@dataclass
class ClipBank:
    """Training clips held in memory: frames pre-resized to the encoders' size, log-mels, shapes."""

    frames: torch.Tensor  # [N, F, 3, S, S] float16 in [0, 1]
    log_mels: torch.Tensor  # [N, n_mels, M] float32
    shapes: torch.Tensor  # [N] long, index into SHAPES
    bounces: (
        torch.Tensor
    )  # [N, F] float32: each bounce split between the two frames around it (see frame_bounce_targets)
    fps: float

    def __len__(self) -> int:
        return self.frames.shape[0]

    def frames_at(self, index: torch.Tensor) -> torch.Tensor:
        return self.frames[index].float()


def clip_frames(clips) -> torch.Tensor:
    """Toy clips -> frames [B, F, 3, H, W] in [0, 1], the V2A generator's input."""
    return torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3)


def frame_bounce_targets(event_times, frames: int, fps: float) -> torch.Tensor:
    """[frames] soft labels: a bounce at frame position p (seconds * fps) gives 1 - frac(p) to frame floor(p)
    and frac(p) to the next."""
    targets = torch.zeros(frames)
    for seconds in event_times:
        position = seconds * fps
        first = min(int(math.floor(position)), frames - 1)
        share = position - first
        targets[first] += 1 - share
        if share > 0 and first + 1 < frames:
            targets[first + 1] += share
    return targets.clamp(max=1)


def build_bank(seed: int, n: int, config: V2AConfig, chunk: int = 64) -> ClipBank:
    """``n`` training clips (``sample_clip(seed, i, "train")``), a chunk at a time so full-size frames never pile up.

    The frames are resized to ``config.frame_size`` exactly as the encoders resize them
    (resizing again to the same size is the identity), so training sees what inference sees.
    """
    frames, mels, shapes, bounces, fps = [], [], [], [], None
    for start in tqdm(range(0, n, chunk), desc="rendering clips", leave=False):
        clips = [sample_clip(seed, i, "train") for i in range(start, min(n, start + chunk))]
        fps = float(clips[0].fps)
        resized = F.interpolate(
            clip_frames(clips).flatten(0, 1), size=(config.frame_size,) * 2, mode="bilinear", antialias=True
        )
        frames.append(resized.unflatten(0, (len(clips), -1)).clamp(0, 1).half())
        audio = torch.from_numpy(np.stack([c.audio for c in clips]))
        mels.append(log_mel_spectrogram(audio, config.mel))
        shapes += [SHAPES.index(c.shape) for c in clips]
        bounces += [frame_bounce_targets(c.event_times, len(c.frames), fps) for c in clips]
    return ClipBank(torch.cat(frames), torch.cat(mels), torch.tensor(shapes), torch.stack(bounces), fps)


# --------------------------------------------------------------------------- stage 1: mel autoencoder


def autoencoder_loss(autoencoder: MelAutoencoder, log_mel: torch.Tensor, generator: torch.Generator):
    """(loss, reconstruction L1, KL) of one batch: L1 + MSE on normalised log-mels from a posterior sample,
    plus a small KL.

    The toy world is mostly silence, so mel frames with sound in them (any band more than
    1 nat above silence) weigh ``ACTIVE_FRAME_WEIGHT`` times more: otherwise the clicks'
    spectra, which carry the pitch, are the last thing the autoencoder learns.
    """
    config = autoencoder.config
    mean, logvar = autoencoder.posterior(log_mel)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator).to(mean)
    recon = autoencoder.decoder(z)
    target = F.pad(log_mel, (0, recon.shape[-1] - log_mel.shape[-1]), value=config.mel.silence)
    weight = 1 + (ACTIVE_FRAME_WEIGHT - 1) * (target > config.mel.silence + 1).any(dim=1, keepdim=True).float()
    weight = weight / weight.mean()
    target = (target - config.mel_mean) / config.mel_std
    error = recon - target
    l1 = (error.abs() * weight).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    return l1 + (error.pow(2) * weight).mean() + AE_KL_WEIGHT * kl, l1, kl


@torch.no_grad()
def posterior_means(autoencoder: MelAutoencoder, log_mels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([autoencoder.posterior(part)[0] for part in log_mels.split(batch)])


def train_autoencoder(args, config: V2AConfig, bank: ClipBank) -> tuple[MelAutoencoderConfig, dict, list]:
    """Stage 1. Returns the autoencoder config with the measured latent shift/scale, its weights, and the loss history.

    The finished stage is kept in ``runs/v2a/autoencoder.pt`` and reused by later runs.
    """
    folder = args.runs / "v2a"
    done = folder / "autoencoder.pt"
    if done.is_file():
        state = torch.load(done, weights_only=True)
        ae_config = MelAutoencoderConfig.from_dict(json.loads(state["config"]))
        print(f"stage 1: using {done} (latent shift {ae_config.latent_shift:.4f}, scale {ae_config.latent_scale:.4f})")
        return ae_config, state["weights"], []
    torch.manual_seed(args.seed)
    autoencoder = MelAutoencoder(config.autoencoder)
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=args.ae_lr, weight_decay=0.0)
    checkpoint = Checkpoint(folder / "autoencoder_checkpoint.pt")
    start = checkpoint.load({"autoencoder": autoencoder}, optimizer)
    history = []
    progress = tqdm(range(start, args.ae_steps), initial=start, total=args.ae_steps, desc="autoencoder", mininterval=10)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, args.ae_lr, min(50, args.ae_steps // 5 + 1), args.ae_steps)
        generator = step_generator(args.seed, step)
        index = torch.randint(len(bank), (args.batch,), generator=generator)
        loss, l1, kl = autoencoder_loss(autoencoder, bank.log_mels[index], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(autoencoder.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
        progress.set_postfix(loss=f"{loss.item():.4f}", l1=f"{l1.item():.4f}", kl=f"{kl.item():.1f}", refresh=False)
        if (step + 1) % args.save_every == 0 or step + 1 == args.ae_steps:
            checkpoint.save({"autoencoder": autoencoder}, optimizer, step + 1)
    autoencoder.eval()
    means = posterior_means(autoencoder, bank.log_mels)
    ae_config = replace(config.autoencoder, latent_shift=means.mean().item(), latent_scale=1.0 / means.std().item())
    weights = autoencoder.state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    save_whole(dict(config=json.dumps(ae_config.to_dict()), weights=weights), done)
    print(
        f"stage 1: latent mean {means.mean().item():.4f}, std {means.std().item():.4f} -> "
        f"shift {ae_config.latent_shift:.4f}, scale {ae_config.latent_scale:.4f}"
    )
    if args.eval_clips:
        measured = MelAutoencoder(ae_config)
        measured.load_state_dict(weights)
        ceiling = evaluate_autoencoder(
            measured.eval(), config.vocoder.build(config.mel), min(40, args.eval_clips), args.seed
        )
        print(
            "stage 1 ceiling (true audio through the autoencoder and vocoder): "
            + ", ".join(f"{k} {v:.3f}" for k, v in ceiling.items())
        )
    return ae_config, weights, history


# --------------------------------------------------------------------------- stage 2: V2A Next-DiT


def training_captions(
    dit, batch: int, null: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Caption features [B, L, text_dim] and mask [B, L]: random tokens, or the learned null caption
    where ``null`` [B] is set."""
    features = torch.randn(batch, MAX_RANDOM_CAPTION, dit.config.text_dim, generator=generator)
    lengths = torch.randint(1, MAX_RANDOM_CAPTION + 1, (batch, 1), generator=generator)
    positions = torch.arange(MAX_RANDOM_CAPTION)[None]
    mask = torch.where(null[:, None], positions == 0, positions < lengths).long()
    features = torch.where(null[:, None, None], dit.null_text.view(1, 1, -1).expand_as(features), features)
    return features, mask


class EncoderProbes(nn.Module):
    """Linear read-outs that give the frame encoders a head start; used in training only, never exported.

    The paper's encoders (CLIP, Synchformer) come pretrained; ours start from scratch, so
    they also learn the toy world's labels directly: the content features, averaged over
    the clip, name the shape (which sets the pitch), and each frame's sync features say
    whether a bounce falls next to that frame.
    """

    def __init__(self, config: V2AConfig):
        super().__init__()
        self.shape = nn.Linear(config.visual_dim, len(SHAPES))
        self.bounce = nn.Linear(config.sync_dim, 1)

    def loss(
        self, visual: torch.Tensor, sync: torch.Tensor, shapes: torch.Tensor, bounces: torch.Tensor
    ) -> torch.Tensor:
        """visual [B, F, visual_dim], sync [B, F, sync_dim] per frame; shapes [B], bounces [B, F] soft labels."""
        shape_loss = F.cross_entropy(self.shape(visual.mean(dim=1)), shapes)
        bounce_loss = F.binary_cross_entropy_with_logits(self.bounce(sync)[..., 0], bounces)
        return shape_loss + bounce_loss


def flow_loss(
    generator: V2AGenerator,
    probes: EncoderProbes,
    bank: ClipBank,
    latents: torch.Tensor,
    batch: int,
    rng: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow loss, probe loss) of one batch. Flow: x_t = t x1 + (1 - t) x0, the model predicts x1 - x0."""
    dit = generator.dit
    index = torch.randint(len(bank), (batch,), generator=rng)
    x1 = latents[index]
    x0 = torch.randn(x1.shape, generator=rng)
    t = torch.rand(batch, generator=rng)
    xt = t.view(-1, 1, 1) * x1 + (1 - t.view(-1, 1, 1)) * x0
    draw = torch.rand(batch, generator=rng)
    unconditional = draw < P_UNCONDITIONAL
    null_caption = draw < P_UNCONDITIONAL + P_NULL_CAPTION
    text, mask = training_captions(dit, batch, null_caption, rng)
    frames = bank.frames_at(index)
    timeline = generator.timeline(frames.shape[1], bank.fps)
    visual = generator.frame_encoder(frames, bank.fps)  # per frame, as video_features computes them
    sync = generator.sync_encoder(frames, bank.fps)
    probe_loss = probes.loss(visual, sync, bank.shapes[index], bank.bounces[index])
    visual, sync = resample_to_tokens(visual, timeline), resample_to_tokens(sync, timeline)
    v = dit(xt, t, visual, sync, text, mask, video_dropped=unconditional)
    return F.mse_loss(v, x1 - x0), probe_loss


def trainable_modules(generator: V2AGenerator) -> dict:
    return {"dit": generator.dit, "frame_encoder": generator.frame_encoder, "sync_encoder": generator.sync_encoder}


def parameter_counts(generator: V2AGenerator) -> dict:
    parts = dict(trainable_modules(generator), autoencoder=generator.autoencoder, vocoder=generator.vocoder)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


def train_generator(args, config: V2AConfig, bank: ClipBank, ae_weights: dict) -> tuple[V2AGenerator, list]:
    """Stage 2. Returns the generator carrying the EMA weights (eval mode) and this run's loss history."""
    torch.manual_seed(args.seed)
    generator = V2AGenerator(config)
    generator.dit.initialize_weights(torch.Generator().manual_seed(args.seed))
    generator.autoencoder.load_state_dict(ae_weights)
    generator.autoencoder.requires_grad_(False).eval()
    with torch.no_grad():
        mel_frames = bank.log_mels.shape[-1]
        latents = torch.cat([generator.autoencoder.encode(part) for part in bank.log_mels.split(256)])
    print(
        f"stage 2: {len(bank)} clips, latents {tuple(latents.shape[1:])} "
        f"from {mel_frames} mel frames, std {latents.std():.3f}"
    )

    probes = EncoderProbes(config)
    modules = dict(trainable_modules(generator), probes=probes)
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    folder = args.runs / "v2a"
    checkpoint = Checkpoint(checkpoint_path(args.runs, "v2a"))
    start = checkpoint.load(modules, optimizer)
    ema = EMA(generator, EMA_DECAY)
    ema_path = folder / "ema.pt"
    if start and ema_path.is_file():
        ema.shadow = torch.load(ema_path, weights_only=True)

    history, probe_history = [], []
    generator.train()
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="v2a", mininterval=10)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, args.lr, min(100, args.steps // 5 + 1), args.steps)
        loss, probe_loss = flow_loss(generator, probes, bank, latents, args.batch, step_generator(args.seed + 1, step))
        optimizer.zero_grad(set_to_none=True)
        (loss + PROBE_WEIGHT * probe_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(generator)
        history.append(loss.item())
        probe_history.append(probe_loss.item())
        progress.set_postfix(
            loss=f"{loss.item():.4f}",
            avg=f"{np.mean(history[-50:]):.4f}",
            probes=f"{np.mean(probe_history[-50:]):.3f}",
            refresh=False,
        )
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            save_whole(ema.shadow, ema_path)
            checkpoint.save(modules, optimizer, step + 1)
    generator.load_state_dict(ema.shadow)
    return generator.eval().requires_grad_(False), history


# --------------------------------------------------------------------------- evaluation


def dominant_frequency(
    audio: np.ndarray, sample_rate: int, start: float, seconds: float = PITCH_WINDOW_SECONDS
) -> float:
    """The strongest frequency (Hz) in a Hann-windowed stretch of ``seconds`` from ``start``,
    between 100 Hz and 4 kHz."""
    first = max(0, int(start * sample_rate))
    segment = audio[first : first + int(seconds * sample_rate)]
    if len(segment) < 16:
        return float("nan")
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n=16384))
    freqs = np.fft.rfftfreq(16384, 1 / sample_rate)
    band = (freqs >= 100) & (freqs <= 4000)
    return float(freqs[band][np.argmax(spectrum[band])])


def nearest_shape(frequency: float) -> Optional[str]:
    """The shape whose pitch is nearest ``frequency`` on a log scale."""
    if not math.isfinite(frequency):
        return None
    return min(SHAPE_PITCH_HZ, key=lambda shape: abs(math.log(frequency / SHAPE_PITCH_HZ[shape])))


@torch.no_grad()
def score_sounds(clips, waveforms, sample_rate: int) -> tuple[SyncScore, int, int]:
    """Onset sync against each clip's frames, plus (onsets at the shape's pitch, onsets checked)."""
    total, right, checked = SyncScore(0, 0, 0), 0, 0
    for clip, waveform in zip(clips, waveforms):
        total += audio_visual_sync(clip.frames, waveform, sample_rate, clip.fps)
        for onset in detect_onsets(waveform, sample_rate):
            checked += 1
            right += nearest_shape(dominant_frequency(waveform, sample_rate, onset)) == clip.shape
    return total, right, checked


def evaluate_v2a(
    generator: V2AGenerator,
    n_clips: int = 100,
    seed: int = 0,
    steps: int = 25,
    cfg: float = 3.5,
    batch: int = 25,
    text_encoder=None,
    progress: bool = False,
) -> dict:
    """Score ``generator`` on ``heldout_clips(seed, n_clips)``: ground-truth frames in, generated audio out.

    - onset precision/recall/F1: ``audio_visual_sync`` (onsets in the generated audio matched
      one-to-one to the bounces seen in the frames, within +-1 video frame), pooled over clips;
    - pitch: the share of detected onsets whose dominant frequency over the next 50 ms is
      nearest (log scale) to the pitch of the clip's shape;
    - duration: the share of clips whose audio has exactly round(frames * sample_rate / fps) samples.

    Captions: the learned null caption, or ``text_encoder.encode(captions)`` (anything with
    that method returning a ``TextCondition`` of the model's ``text_dim``) when given.
    Clip i's noise is seeded ``seed + i``.
    """
    clips = heldout_clips(seed, n_clips)
    total, pitch_right, pitch_checked, exact, seconds = SyncScore(0, 0, 0), 0, 0, 0, 0.0
    for start in tqdm(range(0, n_clips, batch), desc="evaluating", disable=not progress):
        part = clips[start : start + batch]
        frames = clip_frames(part)
        fps = float(part[0].fps)
        if text_encoder is None:
            text = generator.dit.null_text_condition(len(part))
        else:
            text = text_encoder.encode([c.caption for c in part])
        began = time.perf_counter()
        audio = generator.generate(frames, fps, text, steps=steps, seed=seed + start, cfg=cfg)
        seconds += time.perf_counter() - began
        waveforms = audio.waveform[:, 0].numpy()
        exact += sum(
            len(w) == round(len(c.frames) * audio.sample_rate / float(c.fps)) == len(c.audio)
            for c, w in zip(part, waveforms)
        )
        sync, right, checked = score_sounds(part, waveforms, audio.sample_rate)
        total, pitch_right, pitch_checked = total + sync, pitch_right + right, pitch_checked + checked
    return dict(
        clips=n_clips,
        steps=steps,
        cfg=cfg,
        precision=total.precision,
        recall=total.recall,
        f1=total.f1,
        matched=total.matched,
        onsets=total.onsets,
        events=total.events,
        pitch_accuracy=pitch_right / pitch_checked if pitch_checked else float("nan"),
        pitch_onsets=pitch_checked,
        duration_exact=exact / n_clips,
        seconds_per_clip=seconds / n_clips,
    )


@torch.no_grad()
def evaluate_autoencoder(autoencoder: MelAutoencoder, vocoder, n_clips: int = 40, seed: int = 0) -> dict:
    """The ceiling stage 2 works under: held-out clips' true audio -> log-mel -> autoencoder -> vocoder,
    scored as ``evaluate_v2a`` does."""
    clips = heldout_clips(seed, n_clips)
    audio = torch.from_numpy(np.stack([c.audio for c in clips]))
    log_mel = log_mel_spectrogram(audio, autoencoder.config.mel)
    rebuilt = autoencoder.decode(autoencoder.encode(log_mel))[..., : log_mel.shape[-1]]
    waveforms = vocoder(rebuilt, audio.shape[-1])[:, 0].numpy()
    total, right, checked = score_sounds(clips, waveforms, clips[0].sample_rate)
    return dict(
        clips=n_clips,
        log_mel_l1=(rebuilt - log_mel).abs().mean().item(),
        f1=total.f1,
        precision=total.precision,
        recall=total.recall,
        pitch_accuracy=right / checked if checked else float("nan"),
    )


def format_figures(figures: dict) -> str:
    return (
        f"{figures['clips']} held-out clips, steps {figures['steps']}, cfg {figures['cfg']}: "
        f"onset P {figures['precision']:.3f} R {figures['recall']:.3f} F1 {figures['f1']:.3f} "
        f"({figures['matched']} matched, {figures['onsets']} onsets, {figures['events']} bounces); "
        f"pitch {figures['pitch_accuracy']:.3f} of {figures['pitch_onsets']} onsets; "
        f"exact duration {figures['duration_exact']:.0%}; {figures['seconds_per_clip']:.2f} s/clip"
    )


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.train_v2a",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, required=True, help="stage-2 (V2A Next-DiT) training steps")
    parser.add_argument("--ae-steps", type=int, default=400, help="stage-1 (mel autoencoder) steps (default 400)")
    parser.add_argument("--batch", type=int, default=16, help="clips per step, both stages (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="stage-2 peak learning rate (default 1e-3)")
    parser.add_argument("--ae-lr", type=float, default=2e-3, help="stage-1 peak learning rate (default 2e-3)")
    parser.add_argument("--clips", type=int, default=4000, help="training clips held in memory (default 4000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=150, help="checkpoint interval in steps (default 150)")
    parser.add_argument("--runs", type=Path, default=default_runs(), help=runs_help("checkpoints, in <runs>/v2a"))
    parser.add_argument(
        "--export",
        type=Path,
        default=embedded.PACKAGE_DIR,
        help="folder for v2a.safetensors (default the package's embedded/)",
    )
    parser.add_argument("--eval-clips", type=int, default=100, help="held-out clips scored at the end (0: skip)")
    parser.add_argument("--eval-steps", type=int, default=25, help="sampling grid points for the evaluation")
    parser.add_argument(
        "--eval-cfg", type=float, nargs="+", default=[3.5], help="CFG scales to evaluate (engine convention)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (use 1 beside another training job)")
    parser.add_argument("--tiny", action="store_true", help="a very small model, for smoke tests")
    return parser


TINY_V2A_CONFIG = V2AConfig(
    dim=32,
    n_layers=1,
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


def run(args) -> dict:
    """Both stages, the export and the evaluation; returns what happened (losses, figures, paths)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.time()
    config = TINY_V2A_CONFIG if args.tiny else TOY_V2A_CONFIG
    bank = build_bank(args.seed, args.clips, config)
    print(f"{len(bank)} training clips in memory ({time.time() - began:.0f} s)")
    ae_config, ae_weights, ae_history = train_autoencoder(args, config, bank)
    config = replace(config, autoencoder=ae_config)
    generator, history = train_generator(args, config, bank, ae_weights)
    args.export.mkdir(parents=True, exist_ok=True)
    path = args.export / "v2a.safetensors"
    save_v2a(path, generator)
    counts = parameter_counts(generator)
    print(f"exported {path} ({path.stat().st_size / 2**20:.2f} MiB); parameters {counts}")
    print(f"training: {time.time() - began:.0f} s")
    results = dict(ae_history=ae_history, history=history, path=path, parameters=counts, figures=[])
    for cfg in args.eval_cfg if args.eval_clips else []:
        figures = evaluate_v2a(generator, args.eval_clips, seed=args.seed, steps=args.eval_steps, cfg=cfg)
        results["figures"].append(figures)
        print(format_figures(figures), flush=True)
    print(f"total: {time.time() - began:.0f} s")
    return results


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
