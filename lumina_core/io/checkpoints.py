"""Loading Lumina-Video checkpoints safely, exactly, and without two copies in memory.

Accepted: a ``.safetensors`` file (ours carry the config in their metadata), the released
``consolidated.00-of-01.pth`` pickle (read with ``torch.load(weights_only=True)``), or the
released folder holding it and ``model_args.pth``. The config comes from, in order: the
safetensors metadata, ``model_args.pth`` beside the weights, or the tensor shapes.
"""

import ctypes
import functools
import json
import mmap
import os
import pickle
import struct
import sys
import types
import zipfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open

from ..models.nextdit import FACTORIES, RELEASED, MultiScaleNextDiT, NextDiTConfig
from ..models.text import TinyTextEncoder, TinyTextEncoderConfig
from .safetensors_writer import DTYPE_NAMES, TensorSpec, write_safetensors

CONFIG_METADATA_KEY = "lumina_video_config"
TEXT_CONFIG_METADATA_KEY = "lumina_text_encoder_config"
CONDITIONING_METADATA_KEY = "lumina_video_conditioning"
"""safetensors metadata of a DiT fine-tuned with per-token timesteps: "timestep" (``conditioning.MECHANISMS``)."""
WRAPPER_PREFIXES = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
GEMMA2_KEY = "layers.0.post_feedforward_layernorm.weight"  # what tells Gemma-2 from other decoders, as ComfyUI does
RELEASED_ARGS = "model_args.pth"  # the released folder's training arguments, beside the weights
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6: a zip archive
LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)  # how older torch.save files begin
FIX = "Download it again (or re-export it, if you made it)."
# Not recoverable from tensor shapes: the released training recipe's values (train_exps/f8F32R256).
RECIPE_DEFAULTS = dict(rope_theta=RELEASED.rope_theta, t_scale=RELEASED.t_scale, motion_scale=RELEASED.motion_scale)
# What the upstream model's constructor uses when model_args.pth leaves a value out.
UPSTREAM_CONSTRUCTOR_DEFAULTS = dict(rope_theta=10000.0, t_scale=1.0, motion_scale=1.0)


class CheckpointError(ValueError):
    """A checkpoint that can't be loaded; the message names the file and what to do."""


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (memory-mapped where the format allows) and string metadata of a weights file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        with open_safetensors(path) as handle:
            metadata = handle.metadata() or {}
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    if path.suffix in PICKLE_SUFFIXES:
        loaded = safe_torch_load(path)
        for nested in ("model", "state_dict", "module"):
            if isinstance(loaded, dict) and isinstance(loaded.get(nested), dict):
                loaded = loaded[nested]
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise CheckpointError(
                f"{path}: expected a state dict (a mapping of names to tensors), found {type(loaded).__name__}"
            )
        return dict(loaded), {}
    raise CheckpointError(f"{path}: unknown weights format {path.suffix!r}; use .safetensors or the released .pth")


def _damaged(path: Path, problem: str) -> CheckpointError:
    """The error for a file cut short or not what its name says: "<file> <problem>. <the fix>"."""
    return CheckpointError(f"{path} {problem}. {FIX}")


def _read_header(path: Path) -> tuple[dict, int]:
    """(header, the size in bytes the header says the file has) of a .safetensors file; no tensor is read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    size = path.stat().st_size
    if size < 8:
        raise _damaged(path, f"has {size} bytes, too few for a .safetensors file")
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8:
            raise _damaged(
                path,
                f"is not a readable .safetensors file (or is cut off in its header): its first 8 bytes say the header "
                f"has {length} bytes, but the file has {size}",
            )
        text = handle.read(length)
    try:
        header = json.loads(text)
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise _damaged(path, "is not a readable .safetensors file: its header is not a table of tensors") from None
    return header, 8 + length + max(ends, default=0)


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file, read without loading a tensor: each tensor's dtype, shape and
    data_offsets by name, and the string metadata under "__metadata__"."""
    return _read_header(path)[0]


@contextmanager
def open_safetensors(path: Path, device="cpu"):
    """``safe_open`` for every loader of the engine. The header is checked first, so a truncated or damaged file
    raises a CheckpointError naming it, what is wrong and the fix, not safetensors' bare "header too large"."""
    path = Path(path)
    _, expected = _read_header(path)
    size = path.stat().st_size
    if size < expected:
        raise _damaged(path, f"is truncated: its header says the file has {expected} bytes, but it has {size}")
    try:
        handle = safe_open(str(path), framework="pt", device=str(device))
    except SafetensorError as error:
        raise _damaged(path, f"is not a readable .safetensors file ({error})") from None
    with handle:
        yield handle


def checkpoint_kind(path: Path) -> Optional[str]:
    """What a weights file holds, from its header alone: "dit", "text_encoder" (the tiny toy-world encoder),
    "gemma2", "v2a", "vae", or None (another model's file). Ours say it in their metadata; the released DiT, Gemma-2
    and a diffusers CogVideoX VAE by their key names.

    A pickle can't be looked into without unpickling it; the pickles this pack loads are the released DiT's weights
    and its training arguments (``model_args.pth``: None). Raises CheckpointError when the header can't be read.
    The answer is kept per file version (size, modification time): the loaders ask on every listing of their folders.
    """
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        return None if path.name == RELEASED_ARGS else "dit"
    stat = path.stat() if path.is_file() else None
    return _header_kind(str(path), stat and stat.st_size, stat and stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _header_kind(path: str, size: Optional[int], mtime_ns: Optional[int]) -> Optional[str]:
    """checkpoint_kind of a .safetensors file, read once per (path, size, mtime); errors are not kept."""
    from ..models import v2a, vae  # here, not at the top: both import this module

    header = safetensors_header(Path(path))
    metadata = header.get("__metadata__") or {}
    ours = {
        CONFIG_METADATA_KEY: "dit",
        TEXT_CONFIG_METADATA_KEY: "text_encoder",
        v2a.CONFIG_METADATA_KEY: "v2a",
        vae.CONFIG_METADATA_KEY: "vae",
    }
    for key, kind in ours.items():
        if key in metadata:
            return kind
    names = {bare_key(key) for key in header}
    if any(name.startswith("all_x_embedder.") for name in names):
        return "dit"
    if any(name.endswith(GEMMA2_KEY) for name in names):
        return "gemma2"
    return "vae" if set(vae.DIFFUSERS_KEYS) <= names else None


def _torch_file_problem(path: Path) -> Optional[str]:
    """What shows from its first bytes (and, for a zip, its directory) that ``path`` is no whole torch.save file."""
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_MAGIC))
    if not head:
        return "is empty"
    if head.startswith(ZIP_MAGIC):
        return None if zipfile.is_zipfile(path) else "is truncated: the zip archive torch.save writes has lost its end"
    if head == LEGACY_MAGIC:
        return None
    return f"is not a zip-format .pth (what torch.save writes) nor a legacy torch pickle; it begins {head[:12]!r}"


def safe_torch_load(path: Path, allowed_globals: tuple = ()):
    """torch.load with weights_only=True: tensors and plain containers, plus ``allowed_globals``; never code."""
    problem = _torch_file_problem(path)
    if problem is not None:
        raise _damaged(path, problem)
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                return torch.load(
                    path, map_location="cpu", weights_only=True
                )  # legacy (non-zip) pickles can't be mapped
    except pickle.UnpicklingError as error:
        if "GLOBAL" not in str(error):  # no code was asked for: the pickle itself is broken
            raise _damaged(path, "is damaged: its pickled data is corrupt") from None
        reason = str(error).split("\n\n")[0].strip() or "it holds objects other than tensors"
        raise CheckpointError(
            f"{path}: refused to unpickle it, because loading it could run code ({reason}). "
            "Only plain tensor checkpoints are read; if you trust the file, convert it to .safetensors yourself."
        ) from None
    except Exception as error:  # a damaged pickle fails in many ways: EOFError, IndexError, struct.error, ...
        raise _damaged(path, f"is damaged: torch.load can't read it ({type(error).__name__}: {error})") from None


def bare_key(key: str) -> str:
    """A key without the segments torch.compile, activation checkpointing and FSDP insert into key names."""
    for prefix in WRAPPER_PREFIXES:
        key = key.replace(prefix, "")
    return key


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with every key through ``bare_key``."""
    return {bare_key(key): value for key, value in state_dict.items()}


def read_model_args(path: Path) -> dict:
    """The released ``model_args.pth`` (a pickled types.SimpleNamespace) as a dict."""
    args = safe_torch_load(path, allowed_globals=(types.SimpleNamespace,))
    if not isinstance(args, types.SimpleNamespace):
        raise CheckpointError(
            f"{path}: expected the training arguments (a SimpleNamespace), found {type(args).__name__}"
        )
    return vars(args)


def config_from_model_args(args: dict, state_dict: dict[str, torch.Tensor]) -> NextDiTConfig:
    """The config generate.py builds from model_args.pth; feature sizes it takes from elsewhere come from the shapes."""
    inferred, _ = infer_config(state_dict)
    factory = FACTORIES.get(args.get("model"), {})
    return replace(
        inferred,
        **factory,
        qk_norm=bool(args.get("qk_norm", inferred.qk_norm)),
        all_patch_size=tuple(args.get("patch_sizes", inferred.all_patch_size)),
        all_f_patch_size=tuple(args.get("f_patch_sizes", inferred.all_f_patch_size)),
        **{name: float(args.get(name, default)) for name, default in UPSTREAM_CONSTRUCTOR_DEFAULTS.items()},
    )


def infer_config(state_dict: dict[str, torch.Tensor]) -> tuple[NextDiTConfig, list[str]]:
    """Recover the architecture from tensor shapes; returns the config and notes on what was assumed."""
    embedders = sorted(
        k[len("all_x_embedder.") : -len(".weight")]
        for k in state_dict
        if k.startswith("all_x_embedder.") and k.endswith(".weight")
    )
    required = (
        "cap_embedder.1.weight",
        "layers.0.attention.gate",
        "layers.0.attention.wk.weight",
        "layers.0.feed_forward.w1.weight",
    )
    if not embedders or any(k not in state_dict for k in required):
        raise CheckpointError(describe_mismatch(state_dict, expected=None))
    patch_pairs = [tuple(int(v) for v in name.split("-")) for name in embedders]  # (patch, f_patch)
    patch_pairs.sort(key=lambda pair: (pair[0], pair[1]))
    dim, patch_in = state_dict[f"all_x_embedder.{embedders[0]}.weight"].shape
    p, pf = (int(v) for v in embedders[0].split("-"))
    n_heads = state_dict["layers.0.attention.gate"].shape[0]
    head_dim = dim // n_heads
    n_kv_heads = state_dict["layers.0.attention.wk.weight"].shape[0] // head_dim
    n_layers = len({k.split(".")[1] for k in state_dict if k.startswith("layers.")})
    hidden = state_dict["layers.0.feed_forward.w1.weight"].shape[0]
    multiple_of, ffn_dim_multiplier = ffn_settings_for(dim, hidden)
    config = NextDiTConfig(
        all_patch_size=tuple(pair[0] for pair in patch_pairs),
        all_f_patch_size=tuple(pair[1] for pair in patch_pairs),
        in_channels=patch_in // (pf * p * p),
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        multiple_of=multiple_of,
        ffn_dim_multiplier=ffn_dim_multiplier,
        qk_norm="layers.0.attention.q_norm.weight" in state_dict,
        cap_feat_dim=state_dict["cap_embedder.1.weight"].shape[1],
        **RECIPE_DEFAULTS,
    )
    notes = [
        f"inferred from shapes: dim {dim}, {n_layers} layers, {n_heads} heads, {n_kv_heads} kv heads, "
        f"patch sizes {[f'{pf}x{p}' for p, pf in patch_pairs]}, caption features {config.cap_feat_dim}, "
        f"qk_norm {config.qk_norm}",
        "not stored in the file, taken from the released training recipe: "
        + ", ".join(f"{k}={v}" for k, v in RECIPE_DEFAULTS.items()),
    ]
    return config, notes


def ffn_settings_for(dim: int, hidden: int) -> tuple[int, Optional[float]]:
    """(multiple_of, ffn_dim_multiplier) that reproduce a SwiGLU hidden size under the reference's rule."""
    base = int(2 * 4 * dim / 3)
    for multiple_of in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if multiple_of * ((base + multiple_of - 1) // multiple_of) == hidden:
            return multiple_of, None
    multiplier = hidden / base
    if int(multiplier * base) != hidden:
        multiplier = (hidden + 0.5) / base
    return 1, multiplier


def key_differences(state: dict[str, torch.Tensor], expected: dict[str, torch.Size], name=str) -> list[str]:
    """Missing, unexpected and other-shaped keys of ``state`` against ``expected``, counted, a few shown as
    ``name(key)`` (the name the file gives them)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k])
    lines = [
        f"{len(keys)} {label} keys, e.g. {[name(k) for k in keys[:4]]}"
        for label, keys in (("missing", missing), ("unexpected", unexpected))
        if keys
    ]
    if wrong:
        shown = ", ".join(f"{name(k)} {tuple(state[k].shape)} vs {tuple(expected[k])}" for k in wrong[:3])
        lines.append(f"{len(wrong)} keys of other shapes, e.g. {shown}")
    return lines


def describe_mismatch(state_dict: dict[str, torch.Tensor], expected: Optional[dict[str, torch.Size]]) -> str:
    keys = set(state_dict)
    lines = ["these weights are not a Lumina-Video Multi-scale Next-DiT"]
    if any(k.startswith(("noise_refiner.", "context_refiner.", "x_embedder.")) for k in keys):
        lines[0] += " (they look like a Lumina-Image 2.0 NextDiT: load those with ComfyUI's own Load Diffusion Model)"
    if expected is not None:
        lines += key_differences(state_dict, expected)
    else:
        lines.append(f"no all_x_embedder.* / layers.N.attention keys; found e.g. {sorted(keys)[:5]}")
    return "; ".join(lines)


def find_weights(path: Path) -> Path:
    """A file as given, or the consolidated weights inside a released folder."""
    path = Path(path)
    if path.is_dir():
        for name in ("consolidated.00-of-01.safetensors", "consolidated.00-of-01.pth"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no consolidated.00-of-01.safetensors or .pth in this folder")
    return path


def resolve_config(weights: Path, state_dict, metadata: dict[str, str]) -> tuple[NextDiTConfig, list[str]]:
    if CONFIG_METADATA_KEY in metadata:
        return NextDiTConfig.from_json(metadata[CONFIG_METADATA_KEY]), [f"config from {weights.name} metadata"]
    args_path = weights.parent / RELEASED_ARGS
    args = read_model_args(args_path) if args_path.is_file() else None
    try:
        if args is None:
            return infer_config(state_dict)
        return config_from_model_args(args, state_dict), [f"config from {args_path}"]
    except CheckpointError as error:  # the shapes say these are not our weights: name the file
        raise CheckpointError(f"{weights}: {error}") from None


def read_nextdit(path) -> tuple[dict[str, torch.Tensor], NextDiTConfig, list[str]]:
    """A Next-DiT checkpoint's tensors (bare keys, checked against its config's) with the config and notes on where
    the config came from; for code that builds the model its own way (ComfyUI's native model)."""
    weights = find_weights(Path(path))
    state_dict, metadata = read_state_dict(weights)
    state_dict = strip_wrapper_prefixes(state_dict)
    config, notes = resolve_config(weights, state_dict, metadata)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in config.build().state_dict().items()}
    if set(expected) != set(state_dict) or any(state_dict[k].shape != s for k, s in expected.items()):
        raise CheckpointError(f"{weights}: " + describe_mismatch(state_dict, expected))
    return state_dict, config, notes


def trained_conditioning(path) -> str:
    """The conditioning mechanism a DiT file was trained for: its ``CONDITIONING_METADATA_KEY``, else "replace",
    which needs no training (the released weights)."""
    weights = find_weights(Path(path))
    if weights.suffix != ".safetensors":
        return "replace"
    with open_safetensors(weights) as handle:
        return (handle.metadata() or {}).get(CONDITIONING_METADATA_KEY, "replace")


def load_nextdit(
    path, dtype: Optional[torch.dtype] = None, device="cpu"
) -> tuple[MultiScaleNextDiT, NextDiTConfig, list[str]]:
    """Build the model on the meta device and adopt the file's tensors (assign=True): one copy in memory.

    Returns the model in eval mode, its config, and notes on where the config came from.
    """
    state_dict, config, notes = read_nextdit(path)
    with torch.device("meta"):
        model = config.build()
    model.load_state_dict(state_dict, strict=True, assign=True)
    del state_dict
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return model, config, notes


def convert(src, dst, dtype: Optional[torch.dtype] = None) -> tuple[NextDiTConfig, list[str]]:
    """Rewrite a checkpoint as .safetensors with its config in the metadata, streaming: the header is computed from
    the shapes, then each tensor is read from the memory-mapped source, cast, written and let go, so the peak memory
    is about one tensor's, whatever the model's size (docs/benchmarks.md, "Converter")."""
    weights = find_weights(Path(src))
    with _lazy_state_dict(weights) as (state_dict, metadata, source):
        config, notes = resolve_config(weights, state_dict, metadata)
        with torch.device("meta"):
            expected = {k: v.shape for k, v in config.build().state_dict().items()}
        if set(expected) != set(state_dict):
            raise CheckpointError(f"{weights}: " + describe_mismatch(state_dict, expected))
        specs = {
            k: TensorSpec(dtype if dtype is not None and v.is_floating_point() else v.dtype, tuple(v.shape))
            for k, v in state_dict.items()
        }
        pages, reading = _MappedPages(weights), {}

        def load(name: str) -> torch.Tensor:
            reading[name] = source(name)
            return reading[name].to(specs[name].dtype)

        def done(name: str):
            pages.release(reading.pop(name))

        output = {CONFIG_METADATA_KEY: config.to_json(), "format": "pt"}
        write_safetensors(dst, specs, load, metadata=output, done=done)
    return config, notes


@contextmanager
def _lazy_state_dict(weights: Path):
    """(tensors by bare key, metadata, a function from bare key to the tensor) of a weights file, reading no tensor
    data: a .safetensors file's tensors are meta-device stand-ins from its header until asked for; a zip .pth's are
    memory-mapped by torch.load (a legacy pickle's are read whole, as torch can't map them)."""
    if weights.suffix != ".safetensors":
        state_dict, metadata = read_state_dict(weights)
        state_dict = strip_wrapper_prefixes(state_dict)
        yield state_dict, metadata, state_dict.__getitem__
        return
    header = safetensors_header(weights)
    metadata = header.pop("__metadata__", None) or {}
    names = {bare_key(key): key for key in header}
    dtypes = {name: dtype for dtype, name in DTYPE_NAMES.items()}
    unknown = sorted({entry["dtype"] for entry in header.values()} - set(dtypes))
    if unknown:
        raise CheckpointError(f"{weights}: tensors of dtype {', '.join(unknown)} can't be converted")
    stand_ins = {
        bare: torch.empty(header[key]["shape"], dtype=dtypes[header[key]["dtype"]], device="meta")
        for bare, key in names.items()
    }
    with open_safetensors(weights) as handle:
        yield stand_ins, metadata, lambda bare: handle.get_tensor(names[bare])


class _MappedPages:
    """Gives back the resident pages of a memory-mapped weights file once a tensor's bytes have been written.

    torch.load(mmap=True) and safe_open map the file, and every page a read touches stays in the process's resident
    set until the mapping closes: streaming the released 7.1 GB .pth would still peak at 7.1 GB of RSS.
    madvise(MADV_DONTNEED) takes the pages out of the mapping (they stay in the page cache; a later read faults them
    back in from the file, as these mappings are never written). It is applied only to addresses that
    /proc/self/maps shows inside a mapping of this very file, never to heap memory (where it would zero the data):
    a legacy pickle read into memory, or a system without /proc or madvise, simply keeps its pages.
    """

    def __init__(self, path: Path):
        self.path = os.path.realpath(path)
        self.ranges: Optional[list[tuple[int, int]]] = None  # read at the first release, once the file is mapped

    def _mapped_ranges(self) -> list[tuple[int, int]]:
        ranges = []
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    fields = line.rstrip("\n").split(maxsplit=5)
                    if len(fields) == 6 and fields[5] == self.path:
                        begin, end = (int(value, 16) for value in fields[0].split("-"))
                        ranges.append((begin, end))
        except OSError:
            pass
        return ranges

    def release(self, tensor: torch.Tensor):
        if self.ranges is None:
            self.ranges = self._mapped_ranges() if _madvise is not None else []
        if tensor.is_contiguous():
            begin, size = tensor.data_ptr(), tensor.numel() * tensor.element_size()
        else:
            begin, size = tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes()
        for low, high in self.ranges:
            if low <= begin and begin + size <= high:
                start = max(low, begin - begin % mmap.PAGESIZE)
                end = min(high, -(-(begin + size) // mmap.PAGESIZE) * mmap.PAGESIZE)
                _madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)
                return


def _libc_madvise():
    """libc's madvise, or None where there is none (or no MADV_DONTNEED): then mapped pages are simply kept."""
    if not hasattr(mmap, "MADV_DONTNEED") or not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return function


_madvise = _libc_madvise()


def load_text_encoder(path, dtype=None, device="cpu") -> TinyTextEncoder:
    """The tiny text encoder from a .safetensors file holding its config in the metadata."""
    path = Path(path)
    state, metadata = read_state_dict(path)
    if TEXT_CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: not a tiny text encoder (no {TEXT_CONFIG_METADATA_KEY} metadata)")
    with torch.device("meta"):
        encoder = TinyTextEncoder(TinyTextEncoderConfig.from_json(metadata[TEXT_CONFIG_METADATA_KEY]))
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
