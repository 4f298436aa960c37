"""The real ComfyUI frontend: the pack's workflows load, run and preview; the web extension draws.

Each UI workflow is loaded as a user would (``app.loadGraphData``, what drag-and-drop
calls): no node may be missing, and the prompt the frontend builds from it
(``app.graphToPrompt``) must equal the API-format copy in workflows/api/. The embedded
workflow with sound is queued from the page; the saved video must appear on the Save
node, playable, with its sound track. The schedule the web extension draws comes from the
server, and must be the engine's for every preset. Screenshots land in the screenshots folder.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lumina_core.sampling import PRESETS, value_at

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
APP = "window.comfyAPI.app.app"
SOUND_WORKFLOW = REPO / "workflows" / "Lumina-Video text to video with sound, embedded toy model.json"


def load_workflow(page, path: Path) -> dict:
    """Load a UI workflow like drag-and-drop does; report node types the frontend doesn't know and open dialogs."""
    workflow = json.loads(path.read_text())
    return page.evaluate(
        f"""
        const app = {APP};
        await app.loadGraphData({json.dumps(workflow)}, true, true, {json.dumps(path.name)});
        await new Promise((r) => setTimeout(r, 300));
        const nodes = app.graph.nodes;
        const missing = nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
        const dialogs = [...document.querySelectorAll('.p-dialog')].map((d) => d.textContent.slice(0, 300));
        const canvasWidgets = nodes.flatMap(
            (n) => (n.widgets || []).filter((w) => w.name?.startsWith('lumina_')).map((w) => w.name)
        );
        return {{ count: nodes.length, missing, dialogs, canvasWidgets }};
        """,
        timeout=60,
    )


def fit_view(page) -> None:
    page.evaluate(
        f"""
        const app = {APP};
        const nodes = app.graph.nodes;
        const xs = nodes.flatMap((n) => [n.pos[0], n.pos[0] + n.size[0]]);
        const ys = nodes.flatMap((n) => [n.pos[1] - 30, n.pos[1] + n.size[1]]);
        const [w, h] = [
            app.canvas.canvas.width / (window.devicePixelRatio || 1),
            app.canvas.canvas.height / (window.devicePixelRatio || 1)
        ];
        const scale = Math.min(
            w / (Math.max(...xs) - Math.min(...xs) + 80), (h - 60) / (Math.max(...ys) - Math.min(...ys) + 80), 1.2
        );
        app.canvas.ds.scale = scale;
        app.canvas.ds.offset = [-Math.min(...xs) + 40 / scale, -Math.min(...ys) + 60 / scale];
        app.canvas.setDirty(true, true);
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        return true;
        """
    )


def test_extension_is_loaded(page):
    names = page.evaluate(f"return {APP}.extensions.map((e) => e.name);")
    assert "LuminaVideo.Widgets" in names
    assert not [m for m in page.console if "lumina" in m.lower() and m.startswith(("error", "exception"))]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_loads_and_builds_its_api_prompt(page, path, screenshots):
    loaded = load_workflow(page, path)
    assert loaded["missing"] == [], f"missing node types {loaded['missing']}"
    assert not [d for d in loaded["dialogs"] if "missing" in d.lower()], loaded["dialogs"]
    types = [node["type"] for node in json.loads(path.read_text())["nodes"]]
    drawn = {"LuminaVideoMotionScore": "lumina_motion_gap", "LuminaVideoSampler": "lumina_patch_schedule"}
    assert sorted(loaded["canvasWidgets"]) == sorted(drawn[kind] for kind in types if kind in drawn)
    prompt = page.evaluate(f"return (await {APP}.graphToPrompt()).output;")
    for (
        node
    ) in prompt.values():  # Load Video's preview widget: the frontend sends its empty value, the server ignores it
        node["inputs"].pop("video-preview", None)
    api = json.loads((REPO / "workflows" / "api" / path.name).read_text())
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()} == {
        k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()
    }
    fit_view(page)
    page.screenshot(screenshots / f"loaded_{path.stem}.png")


def page_plan(page, sampler: dict, motion=None) -> dict:
    """The plan the extension draws, fetched the way it fetches it (requestPlan, then the server's route)."""
    return page.evaluate(
        f"""
        const m = await import('/extensions/lumina_video/lumina_video.js');
        let plan = m.requestPlan({json.dumps(sampler)}, {json.dumps(motion)});
        for (let i = 0; !plan && i < 100; i++) {{
            await new Promise((r) => setTimeout(r, 50));
            plan = m.requestPlan({json.dumps(sampler)}, {json.dumps(motion)});
        }}
        return plan;
        """,
        timeout=30,
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_strip_draws_each_presets_schedule_from_the_engine(page, name):
    """The strip's patch sizes and CFG steps are the engine's for the preset, with no override set."""
    plan = page_plan(page, {"preset": name})
    config = PRESETS[name]
    assert plan["patch"] == [str(p) for p in config.patch_schedule()]
    assert plan["cfg"] == [float(value_at(config.cfg, t)) for t in config.times()[:-1]]


def test_a_fresh_sampler_node_runs_its_whole_preset(page):
    """A Sampler node dropped on the canvas, its preset chosen, plans the preset's schedule: 22 / 4 / 3 calls at
    2x4 / 2x2 / 1x2 for embedded-MultiScale, and the preset's motion guidance on the Motion Score chart."""
    widgets = page.evaluate(
        f"""
        const node = LiteGraph.createNode('LuminaVideoSampler');
        {APP}.graph.add(node);
        node.widgets.find((w) => w.name === 'preset').value = 'embedded-MultiScale';
        const values = Object.fromEntries(
            node.widgets.filter((w) => w.name && !w.name.startsWith('lumina_')).map((w) => [w.name, w.value])
        );
        {APP}.graph.remove(node);
        return values;
        """
    )
    plan = page_plan(page, widgets)
    assert Counter(plan["patch"]) == {"2x4": 22, "2x2": 4, "1x2": 3}
    motion = page.evaluate(
        """
        const node = LiteGraph.createNode('LuminaVideoMotionScore');
        const values = Object.fromEntries(
            node.widgets.filter((w) => w.name && !w.name.startsWith('lumina_')).map((w) => [w.name, w.value])
        );
        return values;
        """
    )
    guided = page_plan(page, widgets, motion)["motion_guidance"]
    config = PRESETS["embedded-MultiScale"]
    assert guided == [float(value_at(config.motion_cfg, t)) for t in config.times()[:-1]]


def test_strip_reports_a_bad_custom_schedule(page):
    plan = page_plan(page, {"preset": "embedded", "patch_schedule": "custom", "custom_schedule": '("2x4", (0.5'})
    assert "custom_schedule" in plan["error"]


def test_embedded_workflow_runs_from_the_page_and_plays(page, screenshots, comfy_workdir):
    loaded = load_workflow(page, SOUND_WORKFLOW)
    assert loaded["missing"] == []
    fit_view(page)  # the frontend builds a node's preview when it draws the node: keep them all on screen
    page.evaluate(f"await {APP}.queuePrompt(0, 1); return true;")
    page.wait_for(
        f"""(() => {{
            {APP}.graph.setDirtyCanvas(true, true);
            const node = {APP}.graph.nodes.find((n) => n.type === 'LuminaVideoSaveVideo');
            const video = node?.videoContainer?.querySelector('video');
            return video && video.readyState >= 2 && video.src.includes('embedded_sound');
        }})()""",
        timeout=180,
    )
    state = page.evaluate(
        f"""
        const node = {APP}.graph.nodes.find((n) => n.type === 'LuminaVideoSaveVideo');
        const video = node.videoContainer.querySelector('video');
        video.muted = true;
        await video.play();
        await new Promise((r) => setTimeout(r, 1200));
        video.pause();
        return {{ src: video.src, duration: video.duration, width: video.videoWidth, height: video.videoHeight,
                 controls: video.controls, audioBytes: video.webkitAudioDecodedByteCount,
                 videoBytes: video.webkitVideoDecodedByteCount }};
        """,
        timeout=60,
    )
    assert "/view?" in state["src"] and "type=output" in state["src"]
    assert abs(state["duration"] - 2.0) < 0.1 and (state["width"], state["height"]) == (64, 64) and state["controls"]
    assert state["videoBytes"] > 0 and state["audioBytes"] > 0, state
    saved = sorted((comfy_workdir.output / "lumina_video").glob("embedded_sound_*.mp4"))
    assert saved, "the file the preview plays is in the output folder"
    fit_view(page)
    shot = page.screenshot(screenshots / "ran_Lumina-Video text to video with sound, embedded toy model.png")
    assert shot.stat().st_size > 10_000


def test_custom_schedule_shows_only_when_chosen(page):
    """The Sampler's custom_schedule field is hidden, and takes no room, while a preset or a single scale is chosen."""
    states = page.evaluate(
        f"""
        const app = {APP};
        const node = LiteGraph.createNode('LuminaVideoSampler');
        app.graph.add(node);
        const ds = app.canvas.ds;
        node.pos = [100 / ds.scale - ds.offset[0], 100 / ds.scale - ds.offset[1]];  // on screen, so it is laid out
        const widget = (name) => node.widgets.find((w) => w.name === name);
        const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        const state = async (value) => {{
            app.canvas.setDirty(true, true);
            await frame();
            return [value, !!widget('custom_schedule').hidden, widget('solver').y - widget('patch_schedule').y];
        }};
        const states = [await state(widget('patch_schedule').value)];
        for (const value of ['custom', '2x4']) {{
            widget('patch_schedule').value = value;
            widget('patch_schedule').callback(value);
            states.push(await state(value));
        }}
        app.graph.remove(node);
        return states;
        """
    )
    assert [(value, hidden) for value, hidden, _ in states] == [("preset", True), ("custom", False), ("2x4", True)]
    assert states[1][2] > states[0][2] == states[2][2], f"the field takes room only while shown: {states}"


def test_released_workflows_offer_their_model_downloads(page, screenshots, tmp_path):
    """The Gemma-2 and VAE loaders of a released-weights workflow name their file, its download and its folder
    (properties.models), so ComfyUI's Missing Models dialog lists what is absent. (The DiT is a .pth plus
    model_args.pth, which the dialog can't download: the Model Loader's own download switch fetches both.) The
    test's ComfyUI holds placeholders named like the released files, so a copy with the names changed stands in for
    a fresh install."""
    path = WORKFLOWS[[p.stem for p in WORKFLOWS].index("Lumina-Video text to video, released weights, multi-scale")]
    workflow = json.loads(path.read_text())
    expected = []
    for node in workflow["nodes"]:
        for model in node.get("properties", {}).get("models", []):
            assert model["name"] in node["widgets_values"] and model["url"].startswith("https://huggingface.co/")
            missing = "missing_" + model["name"].replace("/", "_")
            node["widgets_values"][node["widgets_values"].index(model["name"])] = missing
            model["name"] = missing
            expected.append(missing)
    assert len(expected) == 2, "Gemma-2 and the VAE"
    renamed = tmp_path / "lumina_video_fresh_install.json"
    renamed.write_text(json.dumps(workflow))
    load_workflow(page, renamed)
    dialog = page.evaluate(
        "return [...document.querySelectorAll('.p-dialog')].map((d) => d.textContent)"
        ".find((t) => t.includes('Missing'));"
    )
    assert dialog and all(name in dialog for name in expected), dialog
    page.screenshot(screenshots / "missing_models_dialog.png")
    page.evaluate("document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click()); return true;")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_fits_a_1920x1080_screen_in_groups(page, path, screenshots):
    """Opened as saved (its own view), every node is on screen in a 1920x1080 window, and every node but the note
    sits in a group."""
    load_workflow(page, path)
    layout = page.evaluate(
        f"""
        const app = {APP};
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        const ds = app.canvas.ds;
        const rect = app.canvas.canvas.getBoundingClientRect();
        const screen = (x, y) => [(x + ds.offset[0]) * ds.scale, (y + ds.offset[1]) * ds.scale];
        const nodes = app.graph.nodes.map((n) => ({{
            type: n.type,
            corners: [
                screen(n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT),
                screen(n.pos[0] + n.size[0], n.pos[1] + n.size[1]),
            ],
            grouped: app.graph.groups.some((g) => g.isPointInside ? g.isPointInside(n.pos[0] + 5, n.pos[1] + 5)
                : (n.pos[0] >= g._bounding[0] && n.pos[1] >= g._bounding[1]
                   && n.pos[0] <= g._bounding[0] + g._bounding[2] && n.pos[1] <= g._bounding[1] + g._bounding[3])),
        }}));
        return {{ width: rect.width, height: rect.height, window: [window.innerWidth, window.innerHeight], nodes,
                  groups: app.graph.groups.length }};
        """
    )
    assert layout["window"][0] <= 1920 and layout["window"][1] <= 1080
    for node in layout["nodes"]:
        (x0, y0), (x1, y1) = node["corners"]
        assert 0 <= x0 and x1 <= layout["width"] and 0 <= y0 and y1 <= layout["height"], (
            node,
            layout["width"],
            layout["height"],
        )
        assert node["grouped"] or node["type"] == "Note", node["type"]
    assert layout["groups"] >= 3
    page.screenshot(screenshots / f"opened_{path.stem}.png")
