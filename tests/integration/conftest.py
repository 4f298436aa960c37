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
                 temp/, the YAML and the server log.
  comfy_server   ComfyServer, started and ready.
  comfy_client   ComfyClient for that server.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from .comfy_server import ComfyClient, ComfyError, ComfyServer, make_workdir

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

SKIP_REASON = (
    "NOT RUN: the ComfyUI integration tests need a ComfyUI checkout. "
    "Set COMFYUI_ROOT=/path/to/ComfyUI (and COMFYUI_PYTHON=/path/to/its/python "
    "if ComfyUI's packages are not in this Python) to run them."
)

_skipped_here = 0


def _comfyui_root() -> str:
    return os.environ.get("COMFYUI_ROOT", "").strip()


def pytest_collection_modifyitems(config, items):
    global _skipped_here
    if _comfyui_root():
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(marker)
            _skipped_here += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _skipped_here:
        terminalreporter.write_line(
            "WARNING: %d ComfyUI integration tests were NOT RUN (COMFYUI_ROOT is not set); "
            "set COMFYUI_ROOT=/path/to/ComfyUI to run them." % _skipped_here,
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def comfy_workdir(tmp_path_factory):
    pack_dir = Path(os.environ.get("LUMINA_VIDEO_PACK_DIR") or REPO_ROOT)
    return make_workdir(tmp_path_factory.mktemp("comfyui"), pack_dir)


@pytest.fixture(scope="session")
def comfy_server(comfy_workdir):
    root = _comfyui_root()
    if not root:
        pytest.skip(SKIP_REASON)
    server = ComfyServer(
        comfyui_root=Path(root),
        python=os.environ.get("COMFYUI_PYTHON") or sys.executable,
        workdir=comfy_workdir,
        extra_args=shlex.split(os.environ.get("COMFYUI_EXTRA_ARGS", "")),
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
