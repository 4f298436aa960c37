"""Browser tier: the real ComfyUI frontend in headless Chromium, with this pack.

Runs when COMFYUI_ROOT names a ComfyUI checkout (as the integration tier) and a
Chromium is installed (CHROMIUM=/path, else chromium / chromium-browser /
google-chrome on PATH; Debian: apt-get install chromium). Otherwise every test here
is skipped and the summary says so.

The ComfyUI server and its work directory are the integration tier's fixtures.
Screenshots go to LUMINA_VIDEO_SCREENSHOTS (default: out/browser/ in the repository).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from integration import conftest as integration_conftest
from integration.tier import TierSkip

from .cdp import Chromium

# The integration tier's fixtures, shared: pytest finds a conftest's fixtures by the names bound in it.
comfy_workdir = integration_conftest.comfy_workdir
embedded_weights = integration_conftest.embedded_weights
comfy_server = integration_conftest.comfy_server
comfy_client = integration_conftest.comfy_client

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIER = TierSkip(HERE, "browser tests")


def chromium_executable() -> str | None:
    explicit = os.environ.get("CHROMIUM", "").strip()
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_collection_modifyitems(config, items):
    missing = []
    if not os.environ.get("COMFYUI_ROOT", "").strip():
        missing.append("COMFYUI_ROOT=/path/to/ComfyUI (it is not set)")
    if chromium_executable() is None:
        missing.append("a Chromium (none found; apt-get install chromium, or set CHROMIUM=/path)")
    if missing:
        TIER.skip(items, "NOT RUN: the browser tests need " + "; ".join(missing))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    TIER.report(terminalreporter)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("LUMINA_VIDEO_SCREENSHOTS") or REPO / "out" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    chromium = Chromium(chromium_executable(), tmp_path_factory.mktemp("chromium") / "profile", width=1920, height=1080)
    chromium.start()
    try:
        yield chromium
    finally:
        chromium.stop()


@pytest.fixture(scope="session")
def page(browser, comfy_server, comfy_client):
    # A fresh user directory would greet us with the template browser; say the tour is done.
    # Keep text readable when a whole workflow is zoomed to fit the window, and hide the minimap.
    for setting, value in (
        ("Comfy.TutorialCompleted", True),
        ("LiteGraph.Canvas.MinFontSizeForLOD", 1),
        ("LiteGraph.Canvas.LowQualityRenderingZoomThreshold", 0.1),
        ("Comfy.Minimap.Visible", False),
    ):
        comfy_client.post_json("/settings/" + setting, value)
    page = browser.page()
    page.navigate(comfy_server.url)
    page.wait_for(
        "window.comfyAPI?.app?.app?.graph && window.LiteGraph?.registered_node_types?.LuminaVideoSampler", timeout=120
    )
    try:
        yield page
    finally:
        page.close()
