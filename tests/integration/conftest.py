"""Integration tier: a real ComfyUI server on 127.0.0.1 with this pack loaded.

Runs only when COMFYUI_ROOT names a ComfyUI checkout; otherwise every test in
this directory is skipped, and the terminal summary says so.

Environment:
  COMFYUI_ROOT             ComfyUI checkout to start (required to run).
  COMFYUI_PYTHON           Python that runs ComfyUI (default: this Python).
  COMFYUI_STARTUP_TIMEOUT  seconds to wait for /object_info (default 300).
  COMFYUI_EXTRA_ARGS       more arguments for main.py (shell-split).
  LUMINA_VIDEO_PACK_DIR    pack directory to load (default: this repository).

The server is started with --cpu on a free port of 127.0.0.1, loads only this
pack (other custom nodes of the checkout are disabled), keeps its user
directory and database out of the checkout, and logs to comfyui.log in the
work directory.

Fixtures (session scope, one server for the whole run):
  comfy_workdir  Workdir: custom_nodes/ with the pack linked in, models/<folder>
                 (registered first in ComfyUI's search order), input/, output/,
                 temp/, the YAML and the server log. The model folders hold the
                 embedded default's files under other names (models/lumina_video/toy/,
                 models/vae/toy_vae.safetensors, models/lumina_video/toy_v2a.safetensors)
                 and empty placeholders named like the released files the shipped
                 workflows use (they are validated, never run).
  embedded_weights  (folder, real): the embedded default's four files; the trained
                 ones from lumina_core/embedded when present, else random-weight
                 files of the same format (the server then reads them through
                 LUMINA_VIDEO_EMBEDDED_DIR).
  comfy_server   ComfyServer, started and ready.
  comfy_client   ComfyClient for that server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from .comfy_server import ComfyClient, ComfyError, ComfyServer, make_workdir
from .tier import TierSkip

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

SKIP_REASON = (
    "NOT RUN: the ComfyUI integration tests need a ComfyUI checkout. "
    "Set COMFYUI_ROOT=/path/to/ComfyUI (and COMFYUI_PYTHON=/path/to/its/python "
    "if ComfyUI's packages are not in this Python) to run them."
)

TIER = TierSkip(HERE, "ComfyUI integration tests")


def _comfyui_root() -> str:
    return os.environ.get("COMFYUI_ROOT", "").strip()


def pytest_collection_modifyitems(config, items):
    if not _comfyui_root():
        TIER.skip(items, SKIP_REASON)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    TIER.report(terminalreporter)


# Names the shipped released-weights workflows use; empty files make them valid choices.
RELEASED_PLACEHOLDERS = {
    "text_encoders": "gemma_2_2b_fp16.safetensors",
    "vae": "cogvideox_2b_vae.safetensors",
}


@pytest.fixture(scope="session")
def embedded_weights(tmp_path_factory):
    from toy_weights import embedded_dir_for_tests

    return embedded_dir_for_tests(tmp_path_factory.mktemp("embedded"))


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


@pytest.fixture(scope="session")
def comfy_workdir(tmp_path_factory, embedded_weights):
    pack_dir = Path(os.environ.get("LUMINA_VIDEO_PACK_DIR") or REPO_ROOT)
    wd = make_workdir(tmp_path_factory.mktemp("comfyui"), pack_dir)
    embedded, _ = embedded_weights
    _link(embedded / "dit.safetensors", wd.model_dir("lumina_video") / "toy" / "dit.safetensors")
    _link(embedded / "text_encoder.safetensors", wd.model_dir("lumina_video") / "toy" / "text_encoder.safetensors")
    _link(embedded / "v2a.safetensors", wd.model_dir("lumina_video") / "toy_v2a.safetensors")
    _link(embedded / "vae.safetensors", wd.model_dir("vae") / "toy_vae.safetensors")
    for folder, name in RELEASED_PLACEHOLDERS.items():
        (wd.model_dir(folder) / name).write_bytes(b"")
    for example in (REPO_ROOT / "workflows" / "inputs").iterdir():  # the conditional workflows' Load Image/Video
        shutil.copy(example, wd.input / example.name)
    return wd


@pytest.fixture(scope="session")
def comfy_server(comfy_workdir, embedded_weights):
    root = _comfyui_root()
    if not root:
        pytest.skip(SKIP_REASON)
    server = ComfyServer(
        comfyui_root=Path(root),
        python=os.environ.get("COMFYUI_PYTHON") or sys.executable,
        workdir=comfy_workdir,
        extra_args=shlex.split(os.environ.get("COMFYUI_EXTRA_ARGS", "")),
        extra_env={} if embedded_weights[1] else {"LUMINA_VIDEO_EMBEDDED_DIR": str(embedded_weights[0])},
    )
    try:
        server.start()
        server.wait_ready(timeout=float(os.environ.get("COMFYUI_STARTUP_TIMEOUT", "300")))
    except ComfyError as e:
        server.stop()
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def comfy_client(comfy_server):
    client = ComfyClient(comfy_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def comfy_inprocess(embedded_weights):
    """ComfyUI's modules in this process and the pack imported as ComfyUI imports it (``inprocess.py``): for tests
    that call the nodes directly. The embedded default is read from ``embedded_weights``."""
    root = _comfyui_root()
    if not root:
        pytest.skip(SKIP_REASON)
    from .inprocess import load_comfyui_and_pack

    folder, real = embedded_weights
    patch = pytest.MonkeyPatch()
    if not real:
        patch.setenv("LUMINA_VIDEO_EMBEDDED_DIR", str(folder))
    try:
        yield load_comfyui_and_pack(root)
    finally:
        patch.undo()
