"""Training recipes for the embedded default: tiny models of the real classes, on the toy world.

    python -m lumina_core.toyworld.train vae --steps 1800 --batch 2 --vae-crop 64 --foreground-weight 5
    python -m lumina_core.toyworld.train dit --steps 2400 --clips 3000
    python -m lumina_core.toyworld.train dit --from-export --steps 12500 --runs runs/ft   # fine-tune the export
    python -m lumina_core.toyworld.train dit --from-export --conditioning-share 0.5 ...  # per-token timesteps
    python -m lumina_core.toyworld.train decoder --steps 2400 --batch 2   # then the VAE decoder on its predictions
    python -m lumina_core.toyworld.train_v2a --steps 2000    # the video-to-audio model (its own module)
    python -m lumina_core.toyworld.train all                 # the whole set in order, resumable (RECIPE)

Each stage is seeded, checkpoints to ``--runs/<stage>/checkpoint.pt`` every ``--save-every``
steps and resumes from there when run again, and exports its final weights (EMA for the
generators) as safetensors with the config in the metadata into ``--export`` (by default
the package's ``embedded/`` folder), where the loaders of real weights read them.

Runs live outside the checkout by default (``$LUMINA_VIDEO_RUNS``, else
``~/.cache/lumina-video/runs``), so a fresh clone on the same machine resumes them.
``all`` trains the VAE, the DiT with its text encoder, the VAE decoder on the DiT's
predictions and the V2A model in that order (the decoder needs the DiT), each exporting into
``<runs>/export``; it skips a stage whose checkpoint is at its final step and resumes the one in
progress, then copies the set to ``--export``.
"""

import argparse
import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from .. import embedded
from ..io.checkpoints import (
    CONDITIONING_METADATA_KEY,
    CONFIG_METADATA_KEY,
    TEXT_CONFIG_METADATA_KEY,
    load_nextdit,
    load_text_encoder,
    trained_conditioning,
)
from ..models.nextdit import NextDiTConfig, PatchSize
from ..models.text import TinyTextEncoder, TinyTextEncoderConfig
from ..models.vae import CogVideoXVAE, CogVideoXVAEConfig, load_vae, psnr, save_vae
from ..pipeline import compile_blocks
from .world import DEFAULT_CONFIG, VOCABULARY, still_group_frames, train_clips

TOY_DIT_CONFIG = NextDiTConfig(
    all_patch_size=(2, 2, 4),
    all_f_patch_size=(1, 2, 2),
    in_channels=16,
    dim=128,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    multiple_of=32,
    qk_norm=True,
    cap_feat_dim=64,
    rope_theta=256.0,
    t_scale=1000.0,
    motion_scale=20.0,
)
TOY_TEXT_CONFIG = TinyTextEncoderConfig(vocabulary=VOCABULARY, dim=64)
# Coarse patch sizes serve the noisy start of sampling, so they train on times shifted towards noise
# (the paper trains each scale with its own shift; ours are smaller because the toy latents are tiny).
TRAIN_TIME_SHIFT = {(1, 2): 1.0, (2, 2): 2.0, (2, 4): 4.0}
MOTION_DROPOUT, CAPTION_DROPOUT = 0.3, 0.1
RUNS_ENV = "LUMINA_VIDEO_RUNS"
RUNS_HOME = "~/.cache/lumina-video/runs"

RECIPE = (
    ("vae", "--steps 2400 --batch 2 --vae-crop 64 --foreground-weight 3"),
    (
        "dit",
        "--steps 65000 --clips 10000 --batch 32 --lr 5e-4 --seed 2024 --dit-width 192 --dit-depth 6 "
        "--scale-cycle 1x2,2x2,1x2,2x4 --word-dropout 0.2 --conditioning-share 0.3 --rope-time-in-frames",
    ),
    ("decoder", "--steps 2400 --batch 2 --lr 3e-4 --seed 11 --foreground-weight 3"),
    ("v2a", "--steps 3400"),
)
"""``all``'s stages in order with their options: the shipped weights' last settings of each stage, run from scratch
(docs/embedded-default.md has the commands that made the shipped weights)."""
SMOKE_RECIPE = (
    ("vae", "--steps 2 --batch 1 --vae-full-steps 1"),
    ("dit", "--steps 2 --clips 2 --batch 2"),
    ("decoder", "--steps 2 --batch 1"),
    ("v2a", "--steps 2 --ae-steps 2 --batch 2 --clips 4 --eval-clips 0 --tiny"),
)
"""``all --smoke``: the chain at two steps a stage on a few clips, to try it end to end in a minute or two."""
STAGE_EXPORTS = dict(vae=("vae",), dit=("dit", "text_encoder"), decoder=("vae",), v2a=("v2a",))
"""The embedded files (``embedded.FILES`` keys) each stage writes into its --export folder."""


TOY_HEAD_DIM = TOY_DIT_CONFIG.dim // TOY_DIT_CONFIG.n_heads
STILL_GROUP_FRAMES = 4
"""Video frames the first latent frame decodes to, all equal (the decoder's causal padding repeats its first frame)."""


def default_runs() -> Path:
    """Where runs go without --runs: $LUMINA_VIDEO_RUNS, else ~/.cache/lumina-video/runs (outside any checkout)."""
    return Path(os.environ.get(RUNS_ENV) or RUNS_HOME).expanduser()


def checkpoint_path(runs: Path, stage: str) -> Path:
    """A stage's resumable training state (``Checkpoint``); its step tells ``all`` whether the stage is finished."""
    return runs / stage / "checkpoint.pt"


def toy_dit_config(width: int, depth: int) -> NextDiTConfig:
    """The toy DiT at another size, with ``TOY_DIT_CONFIG``'s head width and query/key-value head ratio."""
    heads = width // TOY_HEAD_DIM
    kv_heads = max(1, heads * TOY_DIT_CONFIG.n_kv_heads // TOY_DIT_CONFIG.n_heads)
    return replace(TOY_DIT_CONFIG, dim=width, n_layers=depth, n_heads=heads, n_kv_heads=kv_heads)


def save_whole(state, path: Path):
    """torch.save to a partial file, then replace ``path``: a run stopped mid-write leaves the last whole file."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


class Checkpoint:
    """Resumable training state in one file: modules, optimizer, step and RNG, read back with weights_only=True."""

    def __init__(self, path: Path):
        self.path = path

    def step(self) -> int:
        """The step saved here, 0 with no checkpoint."""
        if not self.path.is_file():
            return 0
        return torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)["step"]

    def load(self, modules: dict, optimizer) -> int:
        if not self.path.is_file():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed {self.path} at step {state['step']}")
        return state["step"]

    def save(self, modules: dict, optimizer, step: int):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = dict(
            modules={n: m.state_dict() for n, m in modules.items()},
            optimizer=optimizer.state_dict(),
            step=step,
            torch_rng=torch.get_rng_state(),
        )
        save_whole(state, self.path)


def clip_batch(clips) -> torch.Tensor:
    """Toy clips -> frames [B, 3, F, H, W] in [-1, 1], the VAE's input."""
    return frames_batch([c.frames for c in clips])


def frames_batch(videos) -> torch.Tensor:
    """Videos [F, H, W, 3] in [0, 1] (numpy) -> frames [B, 3, F, H, W] in [-1, 1], the VAE's input."""
    return torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3) * 2 - 1


def warmup_lr(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


TOY_VAE_CONFIG = CogVideoXVAEConfig(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8)


def shape_windows(clips, frames: torch.Tensor, size: int, length: int, generator) -> torch.Tensor:
    """[B, 3, F, H, W] -> [B, 3, length, size, size]: a window per clip that starts on an 8-frame group and is
    centred (with jitter) on where the shape is, so nearly every window shows it.

    Random windows mostly show plain background, and a VAE trained on them learns to draw only that.
    """
    b, _, f, h, w = frames.shape
    windows = []
    for clip, video in zip(clips, frames):
        t = int(torch.randint(0, (f - length) // 8 + 1, (1,), generator=generator)) * 8
        x, y = clip.positions[t : t + length].mean(axis=0)
        jx, jy = (torch.randint(-size // 4, size // 4 + 1, (2,), generator=generator)).tolist()
        left = min(max(int(round(x)) - size // 2 + jx, 0), w - size)
        top = min(max(int(round(y)) - size // 2 + jy, 0), h - size)
        windows.append(video[:, t : t + length, top : top + size, left : left + size])
    return torch.stack(windows)


def reconstruction_loss(
    recon: torch.Tensor, frames: torch.Tensor, background: torch.Tensor, foreground_weight: float
) -> torch.Tensor:
    """L1 + MSE with pixels that differ from the plain background weighted up (the shape is a few % of a frame)."""
    foreground = ((frames - background.view(1, 3, 1, 1, 1)).abs().sum(dim=1, keepdim=True) > 0.1).float()
    weight = 1 + foreground_weight * foreground
    error = recon - frames
    return ((error.abs() + error.pow(2)) * weight).sum() / (weight.sum() * 3)


def temporal_difference_loss(recon: torch.Tensor, frames: torch.Tensor, early_weight: float) -> torch.Tensor:
    """L1 between the decoded and the true frame-to-frame differences [B, 3, F-1, H, W], the steps into frames 1-4
    weighted ``1 + early_weight``: the reconstruction loss alone lets the first latent frame's still frames sit at
    the group's mean position, which leaves a jump out of them (issue 27)."""
    error = (recon.diff(dim=2) - frames.diff(dim=2)).abs()
    weight = torch.ones(error.shape[2], device=error.device)
    weight[:STILL_GROUP_FRAMES] += early_weight
    return (error * weight.view(1, 1, -1, 1, 1)).mean() * error.shape[2] / weight.sum()


def latent_frame_difference_loss(error: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean square of the velocity error's change from each latent frame to the next, error [B, C, F, h, w] (mask
    alike: 1 where the loss counts). It weighs the part of the error that differs between latent frames, which
    shows in the decoded video as uneven motion (a jump at a latent-frame border), more than the flow loss does."""
    change = error[:, :, 1:] - error[:, :, :-1]
    if mask is None:
        return (change**2).mean()
    pairs = mask[:, :, 1:] * mask[:, :, :-1]
    return (change**2 * pairs).sum() / pairs.sum().clamp(min=1)


def train_vae(args):
    """Reconstruction (L1 + MSE) with a small KL term; afterwards the latent scale is set so model-space latents
    have unit variance.

    Most steps see windows around the shape (8 frames of 32x32: an eighth of a clip, because
    conv3d backward is what a CPU spends its time on); the last ``--vae-full-steps`` see whole
    clips, so GroupNorm's statistics and the causal cache between 8-frame groups are the
    ones inference will meet.
    """
    torch.manual_seed(args.seed)
    vae = CogVideoXVAE(TOY_VAE_CONFIG).to(args.device)
    exported_path = args.export / "vae.safetensors"
    if args.vae_init:
        vae.load_state_dict(load_vae(args.vae_init).state_dict())
    if args.vae_freeze_encoder:
        # The DiT trains on this encoder's latents: keep them (and their scale) fixed, improve only the decoder.
        frozen = load_vae(exported_path)
        scale = frozen.config.scaling_factor
        vae.load_state_dict(frozen.state_dict())
        vae.encoder.requires_grad_(False)
    lr = args.lr or 2e-3
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    checkpoint = Checkpoint(checkpoint_path(args.runs, "vae"))
    start = checkpoint.load({"vae": vae}, optimizer)
    generator = torch.Generator().manual_seed(args.seed + start)
    background = torch.tensor(DEFAULT_CONFIG.background, device=args.device) * 2 - 1
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="vae")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, lr, 50, args.steps)
        clips = train_clips(args.seed * 1_000_003 + step, args.batch)
        frames = clip_batch(clips)
        if step < args.steps - args.vae_full_steps:
            frames = shape_windows(clips, frames, args.vae_crop, args.vae_crop_frames, generator)
        frames = frames.to(args.device)
        posterior = vae.encode_posterior(frames)
        recon = vae.decode_model_latent(vae.to_model_latent(posterior.sample(generator=None)))
        kl = 0.5 * (posterior.mean.pow(2) + posterior.logvar.exp() - 1 - posterior.logvar).mean()
        loss = reconstruction_loss(recon, frames, background, args.foreground_weight) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.4f}", kl=f"{kl.item():.2f}")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            checkpoint.save({"vae": vae}, optimizer, step + 1)
    vae.eval()
    with torch.no_grad():
        frames = clip_batch(train_clips(args.seed + 7, 32)).to(args.device)
        latents = vae.encode_posterior(frames).mode()
        reconstruction_db = psnr(vae.decode_model_latent(vae.to_model_latent(latents)), frames)
    if not args.vae_freeze_encoder:
        scale = 1.0 / latents.std().item()
    exported = CogVideoXVAE(replace(TOY_VAE_CONFIG, scaling_factor=scale))
    exported.load_state_dict(vae.state_dict())
    args.export.mkdir(parents=True, exist_ok=True)
    save_vae(exported, exported_path)
    print(
        f"exported {exported_path}: reconstruction PSNR {reconstruction_db:.1f} dB on 32 clips, "
        f"latent std {latents.std():.3f} -> scaling_factor {scale:.4f}"
    )


def encode_dataset(vae, n: int, seed: int, device, batch: int = 32) -> dict:
    """Model-space latents, captions and motion scores of ``n`` training clips."""
    latents, captions, motion = [], [], []
    with torch.no_grad():
        for start in tqdm(range(0, n, batch), desc="encoding clips"):
            clips = [c for c in train_clips(seed + start, min(batch, n - start))]
            latents.append(vae.encode_to_model_latent(clip_batch(clips).to(device)).cpu())
            captions += [c.caption for c in clips]
            motion += [c.motion_score for c in clips]
    return dict(latents=torch.cat(latents), captions=captions, motion=torch.tensor(motion))


def drop_words(caption: str, p: float, generator) -> str:
    """``caption`` with each word left out with probability p.

    The DiT sums the pooled caption with the motion score, so with few templates the template
    words can come to set the speed, and an unseen template moves the motion. Partial captions
    teach it that they don't: held-out Spearman 0.684 -> 0.81 (README). It did not help shape.
    """
    words = caption.split()
    keep = torch.rand(len(words), generator=generator) >= p
    return " ".join(w for w, k in zip(words, keep.tolist()) if k)


def shifted_times(n: int, shift: float, generator) -> torch.Tensor:
    t = torch.rand(n, generator=generator)
    return t / (t + shift - shift * t)


KEEP_LAYOUTS = ("first frame", "last frame", "first and last", "leading frames", "random frames", "box")
"""What a conditioned training sample keeps of its latent: image-to-video, its end, keyframes, extension, random
keyframes, and a spatial box over all frames (inpainting and cinemagraphs: the outside kept)."""


def random_keep(batch: int, grid: tuple[int, int, int], share: float, generator) -> torch.Tensor:
    """Per-cell conditioning weights [B, K, h, w] for training with per-token timesteps: for ``share`` of the
    samples a ``KEEP_LAYOUTS`` layout drawn uniformly, at strength 1 (three in four) or uniform in [0.3, 1); the
    rest keep nothing (plain text-to-video). Box edges fall on even cells, the finer patches' grid."""
    frames, height, width = grid
    keep = torch.zeros(batch, frames, height, width)
    for item in range(batch):
        if torch.rand(1, generator=generator) >= share:
            continue
        layout = KEEP_LAYOUTS[int(torch.randint(len(KEEP_LAYOUTS), (1,), generator=generator))]
        if layout == "first frame":
            keep[item, 0] = 1
        elif layout == "last frame":
            keep[item, -1] = 1
        elif layout == "first and last":
            keep[item, [0, -1]] = 1
        elif layout == "leading frames":
            keep[item, : int(torch.randint(1, frames, (1,), generator=generator))] = 1
        elif layout == "random frames":
            chosen = torch.rand(frames, generator=generator) < 0.5
            chosen[int(torch.randint(frames, (1,), generator=generator))] = False  # something left to generate
            keep[item, chosen] = 1
        else:
            top, left = (2 * int(torch.randint(n // 2, (1,), generator=generator)) for n in (height, width))
            bottom = top + 2 * int(torch.randint(1, (height - top) // 2 + 1, (1,), generator=generator))
            right = left + 2 * int(torch.randint(1, (width - left) // 2 + 1, (1,), generator=generator))
            keep[item] = 1
            keep[item, :, top:bottom, left:right] = 0  # the box is generated, the rest kept
        if torch.rand(1, generator=generator) < 0.25:
            keep[item] *= 0.3 + 0.7 * torch.rand(1, generator=generator)
    return keep


class EMA:
    """Exponential moving average of a module's parameters (the exported weights)."""

    def __init__(self, module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module):
        with torch.no_grad():
            for k, v in module.state_dict().items():
                self.shadow[k].lerp_(v, 1 - self.decay) if v.is_floating_point() else self.shadow[k].copy_(v)


def train_dit(args):
    """Rectified flow on VAE latents, all patch sizes, motion and caption dropout; text encoder trained jointly.
    From scratch, or with ``--from-export`` fine-tuning the DiT and text encoder found in ``--export``."""
    torch.manual_seed(args.seed)
    conditioning = "timestep" if args.conditioning_share else "replace"
    if args.from_export:
        if trained_conditioning(args.export / "dit.safetensors") == "timestep":
            conditioning = "timestep"  # a fine-tune of a fine-tune keeps what it was trained for
        model, dit_config, _ = load_nextdit(args.export / "dit.safetensors", device=args.device)
        text = load_text_encoder(args.export / "text_encoder.safetensors", device=args.device)
        model, text = model.train().requires_grad_(True), text.train().requires_grad_(True)
        if args.rope_time_in_frames:  # switched on for the fine-tune; a DiT that has it keeps it
            dit_config = replace(dit_config, rope_time_in_frames=True)
            model.rope_time_in_frames = True
    else:
        dit_config = replace(
            toy_dit_config(args.dit_width, args.dit_depth), rope_time_in_frames=args.rope_time_in_frames
        )
        model = dit_config.build(device=args.device)
        model.initialize_weights(torch.Generator().manual_seed(args.seed))
        text = TinyTextEncoder(TOY_TEXT_CONFIG, device=args.device)
    if args.compile:
        compile_blocks(model)  # in place: the state dict keeps its keys, so checkpoints and exports are unchanged
    modules = {"dit": model, "text": text}
    params = list(model.parameters()) + list(text.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr or 5e-4, weight_decay=0.0, betas=(0.9, 0.95))
    checkpoint = Checkpoint(checkpoint_path(args.runs, "dit"))
    start = checkpoint.load(modules, optimizer)
    emas = {name: EMA(m, 0.999) for name, m in modules.items()}
    ema_path = args.runs / "dit" / "ema.pt"
    if start and ema_path.is_file():
        for name, shadow in torch.load(ema_path, weights_only=True).items():
            emas[name].shadow = shadow
    if args.export_now:
        if not start:
            raise SystemExit(f"--export-now: {checkpoint.path} holds no checkpoint to export yet")
        print(f"EMA weights at step {start} of {args.steps}")
        export_dit(emas, args.export, dit_config, text.config, conditioning)
        return

    data_path = args.runs / "dit" / "latents.pt"
    if data_path.is_file():
        data = torch.load(data_path, weights_only=True)
    else:
        vae_path = args.export / "vae.safetensors"
        if not vae_path.is_file():
            raise SystemExit(
                f"no {data_path} to train on and no {vae_path} to encode clips with: copy the VAE there "
                f"(cp {embedded.PACKAGE_DIR / embedded.FILES['vae']} {args.export}/) "
                "or link latents.pt from an earlier run"
            )
        vae = load_vae(vae_path, device=args.device).eval()
        data = encode_dataset(vae, args.clips, args.seed, args.device)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        save_whole(data, data_path)
        del vae
    latents, captions, motion = data["latents"], data["captions"], data["motion"]
    print(f"{len(captions)} clips, latent {tuple(latents.shape[1:])}, latent std {latents.std():.3f}")

    generator = torch.Generator().manual_seed(args.seed + start)
    scales = args.scale_cycle or model.patch_sizes
    missing = [str(patch) for patch in scales if patch not in model.patch_sizes]
    if missing:
        have = ", ".join(map(str, model.patch_sizes))
        raise SystemExit(f"--scale-cycle names {', '.join(missing)}, which the model lacks; it has {have}")
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="dit")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, args.lr or 5e-4, 300, args.steps)
        index = torch.randint(len(captions), (args.batch,), generator=generator)
        patch = scales[step % len(scales)]
        x1 = latents[index].to(args.device)
        x0 = torch.randn(x1.shape, generator=generator).to(args.device)
        t = shifted_times(args.batch, TRAIN_TIME_SHIFT[patch], generator).to(args.device)
        if args.conditioning_share:  # per-token timesteps: kept cells ahead of t, clean where kept at strength 1
            keep = random_keep(args.batch, tuple(x1.shape[2:]), args.conditioning_share, generator).to(args.device)
            t = keep.maximum(t.view(-1, 1, 1, 1))  # [B, K, h, w]
            generated = (t < 1)[:, None].float().expand_as(x1)  # the loss leaves out what is given clean
        at = t.view(-1, 1, 1, 1, 1) if t.ndim == 1 else t[:, None]  # broadcast over [B, C, K, h, w]
        xt = at * x1 + (1 - at) * x0
        prompts = ["" if torch.rand(1, generator=generator) < CAPTION_DROPOUT else captions[i] for i in index.tolist()]
        if args.word_dropout:
            prompts = [drop_words(prompt, args.word_dropout, generator) for prompt in prompts]
        scores = torch.where(torch.rand(args.batch, generator=generator) < MOTION_DROPOUT, -1.0, motion[index]).to(
            args.device
        )
        cond = text.encode(prompts)
        v = model(xt, t, cond.features, cond.mask, scores, patch)
        error = v - (x1 - x0)
        if args.conditioning_share:
            loss = (error**2 * generated).sum() / generated.sum()
        else:
            loss = (error**2).mean()
        if args.dit_temporal_weight:
            loss = loss + args.dit_temporal_weight * latent_frame_difference_loss(
                error, generated if args.conditioning_share else None
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        for name, m in modules.items():
            emas[name].update(m)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            checkpoint.save(modules, optimizer, step + 1)
            save_whole({n: e.shadow for n, e in emas.items()}, ema_path)  # --export-now never reads half a file
    export_dit(emas, args.export, dit_config, text.config, conditioning)


def export_dit(
    emas: dict, folder: Path, dit_config: NextDiTConfig, text_config: TinyTextEncoderConfig, conditioning: str
):
    """The EMA weights as safetensors; a DiT trained with per-token timesteps says so in its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {CONFIG_METADATA_KEY: dit_config.to_json(), "format": "pt"}
    if conditioning == "timestep":
        metadata[CONDITIONING_METADATA_KEY] = conditioning
    save_file(
        {k: v.contiguous() for k, v in emas["dit"].shadow.items()},
        str(folder / "dit.safetensors"),
        metadata=metadata,
    )
    save_file(
        {k: v.contiguous() for k, v in emas["text"].shadow.items()},
        str(folder / "text_encoder.safetensors"),
        metadata={TEXT_CONFIG_METADATA_KEY: text_config.to_json(), "format": "pt"},
    )
    print(f"exported {folder / 'dit.safetensors'} and {folder / 'text_encoder.safetensors'}")


def one_step_predictions(models, clips, latents: torch.Tensor, generator) -> torch.Tensor:
    """The DiT's one-step estimates of ``latents`` [B, 16, F, h, w] (model space) from noise levels t in [0.5, 1),
    conditioned on each clip's caption and measured motion, at the finest patch size, without guidance."""
    t = 0.5 + 0.5 * torch.rand(latents.shape[0], generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    t_ = t.view(-1, 1, 1, 1, 1).to(latents.device)
    xt = t_ * latents + (1 - t_) * noise.to(latents.device)
    cond = models.text_encoder.encode([clip.caption for clip in clips])
    motion = torch.tensor([clip.motion_score for clip in clips], device=latents.device)
    finest = min(models.dit.patch_sizes, key=lambda patch: patch.temporal * patch.spatial)
    velocity = models.dit(xt, t.to(latents.device), cond.features, cond.mask, motion, finest)
    return xt + (1 - t_) * velocity


def with_decoder_options(vae: CogVideoXVAE, **options: bool) -> CogVideoXVAE:
    """The same VAE, weights and all, with decoder options switched on (``decoder_lookahead``: one latent frame of
    look-ahead; ``decoder_timestep_conditioning``: a noise-level input, its new layers starting at no effect). The
    encoder and its latents are unchanged; the decoder then learns to use what it was given."""
    changed = CogVideoXVAE(replace(vae.config, **options)).to(next(vae.parameters()).device)
    missing, unexpected = changed.load_state_dict(vae.state_dict(), strict=False)
    if unexpected or any(".time_" not in key for key in missing):
        raise ValueError(f"{options} changed more than the decoder's new layers: {missing[:4]} {unexpected[:4]}")
    return changed


def noisy_latents(latents: torch.Tensor, noise_max: float, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [B, 16, F, h, w] (model space) taken back along the flow path to noise levels in [0, noise_max]
    (a quarter of them left clean), as a sampler stopped at t = 1 - level hands them to a denoising decoder.
    -> (noisy latents, levels [B])."""
    levels = noise_max * torch.rand(latents.shape[0], generator=generator)
    levels[torch.rand(latents.shape[0], generator=generator) < 0.25] = 0.0
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    level = levels.view(-1, 1, 1, 1, 1).to(latents.device)
    return (1 - level) * latents + level * noise, levels


def train_decoder(args):
    """Fine-tune the exported VAE's decoder, encoder frozen, on whole clips: on a share ``--decoder-dit-share``
    of steps it decodes the exported DiT's one-step predictions of the clip's latent instead of the latent.

    Generated latents sit off the encoder's manifold, and a decoder that has seen only encoder
    latents draws them as rounded blobs (a latent-space classifier read the right shape in 79 %
    of generated latents whose frames showed it in 57 %). Learning to draw the clip from the DiT's
    estimates of its latent teaches the decoder what those latents mean. The encoder, and so the
    latent space the DiT was trained on, does not change.
    """
    torch.manual_seed(args.seed)
    models = embedded.load(device=args.device, where=args.export, with_audio=False)
    options = dict(decoder_lookahead=args.decoder_lookahead, decoder_timestep_conditioning=args.decoder_noise_max > 0)
    switched_on = {name: True for name, wanted in options.items() if wanted and not getattr(models.vae.config, name)}
    if switched_on:
        models.vae = with_decoder_options(models.vae, **switched_on)
    vae = models.vae.train().requires_grad_(False)
    vae.decoder.requires_grad_(True)
    lr = args.lr or 3e-4
    optimizer = torch.optim.AdamW(vae.decoder.parameters(), lr=lr, weight_decay=0.0)
    checkpoint = Checkpoint(checkpoint_path(args.runs, "decoder"))
    start = checkpoint.load({"vae": vae}, optimizer)
    generator = torch.Generator().manual_seed(args.seed + start)
    background = torch.tensor(DEFAULT_CONFIG.background, device=args.device) * 2 - 1
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="decoder")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, lr, 50, args.steps)
        clips = train_clips(args.seed * 1_000_003 + step, args.batch)
        frames = clip_batch(clips).to(args.device)
        with torch.no_grad():
            source = torch.rand(1, generator=generator).item()
            if args.decoder_dit_share <= source < args.decoder_dit_share + args.decoder_still_group_share:
                group = vae.config.temporal_compression_ratio  # the frames of one latent frame
                latents = vae.encode_to_model_latent(
                    frames_batch([still_group_frames(c, group) for c in clips]).to(args.device)
                )
            else:
                latents = vae.encode_to_model_latent(frames)
                if source < args.decoder_dit_share:
                    latents = one_step_predictions(models, clips, latents, generator)
            levels = 0.0
            if args.decoder_noise_max > 0:
                latents, levels = noisy_latents(latents, args.decoder_noise_max, generator)
        recon = vae.decode_model_latent(latents, noise_level=levels)
        loss = reconstruction_loss(recon, frames, background, args.foreground_weight)
        if args.temporal_weight:
            loss = loss + args.temporal_weight * temporal_difference_loss(recon, frames, args.temporal_early_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            checkpoint.save({"vae": vae}, optimizer, step + 1)
    save_vae(vae.eval(), args.export / "vae.safetensors")
    print(
        f"exported {args.export / 'vae.safetensors'} (decoder fine-tuned on the DiT's predictions, encoder unchanged)"
    )


def patch_list(text: str) -> list[PatchSize]:
    """ "1x2,2x4" -> [PatchSize(1, 2), PatchSize(2, 4)], for argparse (a bad entry becomes a usage error naming it)."""
    try:
        return [PatchSize.parse(spec) for spec in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def runs_help(what: str) -> str:
    return f"{what} (default ${RUNS_ENV} if set, else {RUNS_HOME}; here {default_runs()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=("vae", "dit", "decoder", "all"))
    parser.add_argument("--steps", type=int, help="training steps (required for one stage; all takes RECIPE's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, help="peak learning rate (default per stage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=6000, help="training clips to encode for the DiT stage")
    parser.add_argument("--vae-crop", type=int, default=32, help="crop size for most VAE steps")
    parser.add_argument("--vae-crop-frames", type=int, default=8, help="frames per crop (a multiple of 8)")
    parser.add_argument(
        "--foreground-weight", type=float, default=20.0, help="extra loss weight of shape pixels in VAE training"
    )
    parser.add_argument(
        "--vae-init", type=Path, help="start the VAE from these weights instead of from scratch (fine-tuning)"
    )
    parser.add_argument(
        "--vae-freeze-encoder",
        action="store_true",
        help="train only the decoder of the exported VAE (its latents stay valid for a DiT trained on them)",
    )
    parser.add_argument("--vae-full-steps", type=int, default=60, help="final VAE steps on whole frames")
    parser.add_argument(
        "--scale-cycle",
        type=patch_list,
        help="DiT stage: the patch sizes its steps cycle through, e.g. 1x2,2x2,1x2,2x4 "
        "(default: each of the model's once)",
    )
    parser.add_argument(
        "--word-dropout",
        type=float,
        default=0.0,
        help="DiT stage: leave each caption word out with this probability (partial captions; default 0)",
    )
    parser.add_argument(
        "--conditioning-share",
        type=float,
        default=0.0,
        help="DiT stage: share of samples given a random conditioning (first/last/leading/random frames or a box "
        "kept) with per-token timesteps, kept cells clean and out of the loss; 0 (default) trains text-to-video only",
    )
    parser.add_argument(
        "--from-export",
        action="store_true",
        help="DiT stage: fine-tune the DiT and text encoder in --export "
        "instead of training from scratch (a new --runs folder)",
    )
    parser.add_argument(
        "--dit-width",
        type=int,
        default=TOY_DIT_CONFIG.dim,
        help=f"DiT stage from scratch: model width, a multiple of {TOY_HEAD_DIM} "
        f"(default {TOY_DIT_CONFIG.dim}, the shipped size)",
    )
    parser.add_argument(
        "--dit-depth",
        type=int,
        default=TOY_DIT_CONFIG.n_layers,
        help=f"DiT stage from scratch: transformer layers (default {TOY_DIT_CONFIG.n_layers}, the shipped size)",
    )
    parser.add_argument(
        "--dit-temporal-weight",
        type=float,
        default=0.0,
        help="DiT stage: weight of a squared loss on the velocity error's change between latent frames "
        "(default 0: the flow loss alone)",
    )
    parser.add_argument(
        "--rope-time-in-frames",
        action="store_true",
        help="DiT stage: temporal RoPE positions in latent frames at every patch size (NextDiTConfig."
        "rope_time_in_frames; switched on with --from-export) instead of the released model's patch-grid units",
    )
    parser.add_argument(
        "--decoder-dit-share",
        type=float,
        default=0.5,
        help="decoder stage: share of steps that decode the DiT's one-step predictions "
        "instead of the encoder's latents (default 0.5)",
    )
    parser.add_argument(
        "--decoder-still-group-share",
        type=float,
        default=0.0,
        help="decoder stage: share of steps that decode the latent of the clip redrawn with the shape still within "
        "each latent frame (at its mean position), the clip as drawn the target: the motion within a latent frame "
        "then has to come from its neighbours (default 0)",
    )
    parser.add_argument(
        "--temporal-weight",
        type=float,
        default=0.0,
        help="decoder stage: weight of an L1 loss on frame-to-frame differences (default 0: none)",
    )
    parser.add_argument(
        "--decoder-lookahead",
        action="store_true",
        help="decoder stage: switch on the decoder's look-ahead of one latent frame (CogVideoXVAEConfig."
        "decoder_lookahead) before training, so the frames of one latent frame can differ",
    )
    parser.add_argument(
        "--decoder-noise-max",
        type=float,
        default=0.0,
        help="decoder stage: train a denoising decoder (CogVideoXVAEConfig.decoder_timestep_conditioning, switched "
        "on if off) on latents taken back to noise levels up to this (0 clean, 1 noise; default 0: clean latents, "
        "no noise-level input)",
    )
    parser.add_argument(
        "--temporal-early-weight",
        type=float,
        default=3.0,
        help=f"decoder stage: extra weight of that loss on the steps into frames 1-{STILL_GROUP_FRAMES} (default 3)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="DiT stage: torch.compile the DiT's blocks (steps 1.06x faster at 192 x 6 on a CPU after about a minute "
        "of compiling; needs a C++ compiler there); checkpoints are the same either way",
    )
    parser.add_argument(
        "--export-now",
        action="store_true",
        help="DiT stage: export the EMA weights of the last checkpoint into --export and stop, to evaluate a run in "
        "progress (the same command without it carries on training)",
    )
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--runs", type=Path, default=default_runs(), help=runs_help("checkpoints and caches"))
    parser.add_argument("--export", type=Path, default=embedded.PACKAGE_DIR, help="where the final safetensors go")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--smoke", action="store_true", help="with all: two steps a stage on a few clips, to try the chain end to end"
    )
    return parser


ALL_OPTIONS = ("stage", "runs", "export", "device", "threads", "save_every", "smoke")
"""What ``all`` takes from its command line; every other option comes from the recipe."""


def check_args(parser: argparse.ArgumentParser, args):
    """Usage errors that argparse can't see by itself."""
    if args.stage == "all":
        given = [
            f"--{name.replace('_', '-')}"
            for name, value in vars(args).items()
            if name not in ALL_OPTIONS and value != parser.get_default(name)
        ]
        if given:
            parser.error(f"all runs RECIPE's options; {', '.join(given)} set one stage (run that stage on its own)")
        return
    if args.steps is None:
        parser.error(f"the {args.stage} stage needs --steps")
    if args.smoke:
        parser.error("--smoke goes with all")
    if not 0 <= args.word_dropout < 1:
        parser.error(
            f"argument --word-dropout: {args.word_dropout} is not a probability in [0, 1); "
            "0.2 is what the README's runs used"
        )
    if not 0 <= args.conditioning_share <= 1:
        parser.error(f"argument --conditioning-share: {args.conditioning_share} is not a share in [0, 1]")
    if not 0 <= args.decoder_dit_share <= 1:
        parser.error(f"argument --decoder-dit-share: {args.decoder_dit_share} is not a share in [0, 1]")
    if not 0 <= args.decoder_still_group_share <= 1 - args.decoder_dit_share:
        parser.error(
            f"--decoder-dit-share {args.decoder_dit_share}, --decoder-still-group-share "
            f"{args.decoder_still_group_share}: shares of the same steps, each at least 0 and together at most 1"
        )
    if not 0 <= args.decoder_noise_max < 1:
        parser.error(f"argument --decoder-noise-max: {args.decoder_noise_max} is not a noise level in [0, 1)")
    if args.dit_temporal_weight < 0:
        parser.error(f"--dit-temporal-weight {args.dit_temporal_weight}: loss weights can't be negative")
    if args.temporal_weight < 0 or args.temporal_early_weight < 0:
        parser.error(
            f"--temporal-weight {args.temporal_weight} --temporal-early-weight {args.temporal_early_weight}: "
            "loss weights can't be negative"
        )
    if args.dit_width < TOY_HEAD_DIM or args.dit_width % TOY_HEAD_DIM or args.dit_depth < 1:
        parser.error(
            f"--dit-width {args.dit_width} --dit-depth {args.dit_depth}: "
            f"the width must be a multiple of {TOY_HEAD_DIM} and the depth at least 1"
        )
    resized = (args.dit_width, args.dit_depth) != (TOY_DIT_CONFIG.dim, TOY_DIT_CONFIG.n_layers)
    if args.from_export and resized:
        parser.error(
            "--dit-width and --dit-depth size a DiT trained from scratch; --from-export keeps the exported DiT's size"
        )


def run_stage(args):
    start = time.time()
    {"vae": train_vae, "dit": train_dit, "decoder": train_decoder}[args.stage](args)
    print(f"{args.stage}: {time.time() - start:.0f} s")


def train_all(args):
    """The recipe's stages in order, each exporting into ``<runs>/export``: a stage whose checkpoint is at its final
    step and whose files are there is skipped, the others train (resuming from their checkpoints); then the set is
    copied to ``--export``. Staging the files in the runs folder keeps a finished stage's output with its
    checkpoint, so a fresh checkout resumes with the stages that came before, not with the shipped weights."""
    from . import train_v2a

    staged = args.runs / "export"
    shared = ["--runs", str(args.runs), "--export", str(staged), "--save-every", str(args.save_every)]
    shared += ["--threads", str(args.threads)] if args.threads else []
    for stage, options in SMOKE_RECIPE if args.smoke else RECIPE:
        if stage == "v2a":
            stage_args = train_v2a.build_parser().parse_args([*options.split(), *shared])
        else:
            stage_args = build_parser().parse_args([stage, *options.split(), *shared, "--device", args.device])
        checkpoint = checkpoint_path(args.runs, stage)
        step = Checkpoint(checkpoint).step()
        if step >= stage_args.steps and all((staged / embedded.FILES[kind]).is_file() for kind in STAGE_EXPORTS[stage]):
            print(f"all: {stage} finished ({checkpoint} at step {step}), skipped")
            continue
        print(f"all: {stage} from step {step} of {stage_args.steps}")
        if stage == "v2a":
            train_v2a.run(stage_args)
        else:
            run_stage(stage_args)
    args.export.mkdir(parents=True, exist_ok=True)
    for name in embedded.FILES.values():
        shutil.copyfile(staged / name, args.export / name)
    print(f"all: copied {', '.join(embedded.FILES.values())} from {staged} to {args.export}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == "all":
        train_all(args)
    else:
        run_stage(args)


if __name__ == "__main__":
    main()
