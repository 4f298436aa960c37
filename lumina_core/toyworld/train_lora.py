"""Train the style LoRA: low-rank adapters on the frozen embedded DiT, learning the sway style.

    python -m lumina_core.toyworld.train_lora --steps 3000 --rank 8

Swaying training clips (``style.STYLE``) are encoded once by the frozen embedded VAE; then only the
adapters train (on the attention, feed-forward and adaLN linears of every block and the final
layers, by default), with the DiT stage's loss and time sampling: rectified flow on the latents,
each patch size in turn on times shifted as for the base model, caption, word and motion dropout.
The style is not captioned: the adapters learn it for every prompt, so strength 0 is the base
model and strength 1 the style. The run checkpoints to ``--runs`` every ``--save-every`` steps,
resumes from there when run again, and exports the EMA of the adapters as a LoRA file
(``lumina_core/lora.py``) to ``--export``.
"""

import argparse
import math
import re
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .. import embedded
from ..io.checkpoints import load_nextdit
from ..lora import LoRA, lora_metadata
from . import style
from .train import (
    CAPTION_DROPOUT,
    EMA,
    MOTION_DROPOUT,
    TRAIN_TIME_SHIFT,
    Checkpoint,
    clip_batch,
    default_runs,
    drop_words,
    patch_list,
    save_whole,
    shifted_times,
    warmup_lr,
)
from .world import sample_clip

TARGETS = {
    "attention": r"layers\.\d+\.attention\.w(q|k|v|o|k_y|v_y)",
    "feed_forward": r"layers\.\d+\.feed_forward\.w[123]",
    "adaln": r"layers\.\d+\.adaLN_modulation\.1",
    "final": r"all_final_layer\.[^.]+\.linear",
}
"""The Linear layers each ``--targets`` name adapts, as module-path patterns."""


class LoRAAdapter(nn.Module):
    """The trainable low-rank pair of one Linear: x -> (alpha / rank) * B(A(x)). B starts at zero, so training
    starts from the base model."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        factory = dict(dtype=linear.weight.dtype, device=linear.weight.device)
        down = torch.randn(rank, linear.in_features, generator=generator) / math.sqrt(linear.in_features)
        self.down = nn.Parameter(down.to(**factory))  # A [rank, in]
        self.up = nn.Parameter(torch.zeros(linear.out_features, rank, **factory))  # B [out, rank]
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(F.linear(x, self.down), self.up) * self.scale


class AdaptedLinear(nn.Module):
    """A frozen Linear plus its adapter's output."""

    def __init__(self, linear: nn.Linear, adapter: LoRAAdapter):
        super().__init__()
        self.linear, self.adapter = linear, adapter

    def forward(self, x):
        return self.linear(x) + self.adapter(x)


def add_adapters(model: nn.Module, targets, rank: int, alpha: float, seed: int) -> dict[str, LoRAAdapter]:
    """Wrap every Linear of ``model`` whose path matches a ``TARGETS`` pattern named in ``targets`` (in place);
    returns the adapters by module path, in the model's order."""
    pattern = re.compile("|".join(f"(?:{TARGETS[name]})" for name in targets))
    generator = torch.Generator().manual_seed(seed)
    paths = [
        path for path, module in model.named_modules() if isinstance(module, nn.Linear) and pattern.fullmatch(path)
    ]
    adapters = {}
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        linear = getattr(parent, name)
        adapters[path] = LoRAAdapter(linear, rank, alpha, generator)
        setattr(parent, name, AdaptedLinear(linear, adapters[path]))
    return adapters


def export_lora(paths, shadow: dict, rank: int, alpha: float, dit_config_json: str) -> LoRA:
    """A LoRA of the adapters' (EMA) weights; ``shadow`` is the adapters' ModuleList state ("0.down", "0.up", ...)."""
    return LoRA(
        down={path: shadow[f"{i}.down"].detach().clone() for i, path in enumerate(paths)},
        up={path: shadow[f"{i}.up"].detach().clone() for i, path in enumerate(paths)},
        alpha=dict.fromkeys(paths, float(alpha)),
        metadata=lora_metadata(dit_config_json, rank, style.NAME, style.DESCRIPTION),
    )


def encode_styled(vae, n: int, seed: int, device, batch: int = 32) -> dict:
    """Model-space latents, captions and motion scores of ``n`` swaying training clips."""
    latents, captions, motion = [], [], []
    with torch.no_grad():
        for start in tqdm(range(0, n, batch), desc="encoding swaying clips"):
            clips = [sample_clip(seed, i, "train", style.STYLE) for i in range(start, min(n, start + batch))]
            latents.append(vae.encode_to_model_latent(clip_batch(clips).to(device)).cpu())
            captions += [c.caption for c in clips]
            motion += [c.motion_score for c in clips]
    return dict(latents=torch.cat(latents), captions=captions, motion=torch.tensor(motion))


def train_lora(args):
    torch.manual_seed(args.seed)
    models = embedded.load(device=args.device, where=args.base, with_audio=False)
    dit, text = models.dit, models.text_encoder
    _, dit_config, _ = load_nextdit(embedded.file("dit", args.base), device="meta")  # for the LoRA's metadata
    scales = args.scale_cycle or dit.patch_sizes
    missing = [str(patch) for patch in scales if patch not in dit.patch_sizes]
    if missing:
        have = ", ".join(map(str, dit.patch_sizes))
        raise SystemExit(f"--scale-cycle names {', '.join(missing)}, which the DiT lacks; it has {have}")
    data_path = args.runs / "latents.pt"
    data = torch.load(data_path, weights_only=True) if data_path.is_file() else None
    if data is None or len(data["captions"]) != args.clips:
        data = encode_styled(models.vae, args.clips, args.seed, args.device)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        save_whole(data, data_path)
    latents, captions, motion = data["latents"], data["captions"], data["motion"]
    print(f"{len(captions)} swaying clips, latent {tuple(latents.shape[1:])}")

    adapters = add_adapters(dit, args.targets, args.rank, args.alpha, args.seed)
    trained = nn.ModuleList(adapters.values())
    count = sum(p.numel() for p in trained.parameters())
    print(f"{len(adapters)} adapted linears ({', '.join(args.targets)}), rank {args.rank}: {count:,} parameters")
    optimizer = torch.optim.AdamW(trained.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    checkpoint = Checkpoint(args.runs / "checkpoint.pt")
    start = checkpoint.load({"adapters": trained}, optimizer)
    ema = EMA(trained, args.ema)
    ema_path = args.runs / "ema.pt"
    if start and ema_path.is_file():
        ema.shadow = torch.load(ema_path, weights_only=True)

    generator = torch.Generator().manual_seed(args.seed + start)
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="style lora")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_lr(step, args.lr, args.warmup, args.steps)
        index = torch.randint(len(captions), (args.batch,), generator=generator)
        patch = scales[step % len(scales)]
        x1 = latents[index].to(args.device)
        x0 = torch.randn(x1.shape, generator=generator).to(args.device)
        t = shifted_times(args.batch, TRAIN_TIME_SHIFT[patch], generator).to(args.device)
        xt = t.view(-1, 1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1, 1)) * x0
        prompts = ["" if torch.rand(1, generator=generator) < CAPTION_DROPOUT else captions[i] for i in index.tolist()]
        prompts = [drop_words(prompt, args.word_dropout, generator) for prompt in prompts]
        dropped = torch.rand(args.batch, generator=generator) < MOTION_DROPOUT
        scores = torch.where(dropped, -1.0, motion[index]).to(args.device)
        with torch.no_grad():
            cond = text.encode(prompts)
        loss = F.mse_loss(dit(xt, t, cond.features, cond.mask, scores, patch), x1 - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        optimizer.step()
        ema.update(trained)
        progress.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            checkpoint.save({"adapters": trained}, optimizer, step + 1)
            save_whole(ema.shadow, ema_path)
    lora = export_lora(list(adapters), ema.shadow, args.rank, args.alpha, dit_config.to_json())
    path = lora.save(args.export)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB, {len(lora.modules)} modules, rank {args.rank})")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lumina_core.toyworld.train_lora",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--rank", type=int, default=8, help="adapter rank (default 8)")
    parser.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank, a scale of 1)")
    parser.add_argument(
        "--targets",
        type=lambda text: text.split(","),
        default=list(TARGETS),
        help=f"comma-separated layer groups to adapt, of {', '.join(TARGETS)} (default all)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps (default 100)")
    parser.add_argument("--ema", type=float, default=0.995, help="EMA decay of the exported adapters (default 0.995)")
    parser.add_argument("--clips", type=int, default=3000, help="swaying training clips to encode (default 3000)")
    parser.add_argument(
        "--word-dropout", type=float, default=0.2, help="leave each caption word out with this probability"
    )
    parser.add_argument(
        "--scale-cycle", type=patch_list, help="patch sizes the steps cycle through (default: each of the DiT's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument(
        "--runs",
        type=Path,
        default=default_runs() / "style-lora",
        help=f"checkpoint and encoded clips (default {default_runs() / 'style-lora'})",
    )
    parser.add_argument("--base", type=Path, help="folder of the base models (default: the embedded default's)")
    parser.add_argument(
        "--export",
        type=Path,
        default=embedded.PACKAGE_DIR / embedded.STYLE_LORA,
        help="the LoRA file to write (default: the shipped one)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown:
        parser.error(f"argument --targets: {', '.join(unknown)} unknown; choose from {', '.join(TARGETS)}")
    if args.rank < 1 or args.steps < 1 or args.clips < 1:
        parser.error(f"--rank {args.rank}, --steps {args.steps} and --clips {args.clips} must be at least 1")
    if not 0 <= args.word_dropout < 1:
        parser.error(f"argument --word-dropout: {args.word_dropout} is not a probability in [0, 1)")
    if args.alpha is None:
        args.alpha = float(args.rank)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    train_lora(args)
    print(f"style lora: {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
