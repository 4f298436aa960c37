"""What an artist sees of a batch and of the pack's templates, in the real frontend (screenshots for docs/)."""

from __future__ import annotations

import json
from pathlib import Path

from .test_frontend import APP, fit_view, load_workflow

REPO = Path(__file__).resolve().parents[2]
SOUND_WORKFLOW = REPO / "workflows" / "Lumina-Video text to video with sound, embedded toy model.json"
PACK_WORKFLOWS = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))


def test_a_batch_of_two_shows_two_videos_with_sound(page, screenshots, comfy_workdir, tmp_path):
    workflow = json.loads(SOUND_WORKFLOW.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "LuminaVideoEmptyLatent":
            node["widgets_values"][3] = 2  # batch_size
        if node["type"] == "LuminaVideoSaveVideo":
            node["widgets_values"][2] = "batch_page/clip"  # filename_prefix
    path = tmp_path / "lumina_video_batch_of_two.json"
    path.write_text(json.dumps(workflow))
    assert load_workflow(page, path)["missing"] == []
    fit_view(page)
    page.evaluate(f"await {APP}.queuePrompt(0, 1); return true;")
    page.wait_for(
        f"""(() => {{
            {APP}.graph.setDirtyCanvas(true, true);
            const node = {APP}.graph.nodes.find((n) => n.type === 'LuminaVideoSaveVideo');
            const videos = [...(node?.videoContainer?.querySelectorAll('video') ?? [])];
            return videos.length === 2 && videos.every((v) => v.readyState >= 2);
        }})()""",
        timeout=240,
    )
    shown = page.evaluate(
        f"""
        const node = {APP}.graph.nodes.find((n) => n.type === 'LuminaVideoSaveVideo');
        return [...node.videoContainer.querySelectorAll('video')].map((v) => [decodeURIComponent(v.src), v.duration]);
        """
    )
    assert [("clip_00001_" in src, "clip_00002_" in src) for src, _ in shown] == [(True, False), (False, True)]
    assert all(abs(duration - 2.0) < 0.1 for _, duration in shown), "each preview is one 2-second video"
    saved = sorted(p.name for p in (comfy_workdir.output / "batch_page").glob("clip_*.mp4"))
    assert saved == ["clip_00001_.mp4", "clip_00002_.mp4"]
    fit_view(page)
    page.screenshot(screenshots / "batch_of_two.png")


def test_template_browser_lists_the_packs_workflows_with_thumbnails(page, screenshots):
    templates = page.evaluate("return await (await fetch('/workflow_templates')).json();")
    (module,) = [name for name, files in templates.items() if "Lumina-Video text to video, embedded toy model" in files]
    assert sorted(templates[module]) == PACK_WORKFLOWS
    page.evaluate(
        f"""
        await {APP}.extensionManager.command.execute('Comfy.BrowseTemplates');
        await new Promise((r) => setTimeout(r, 1500));
        const entry = [...document.querySelectorAll('.p-listbox-option, li, button, a, span')]
            .find((e) => e.textContent.trim() === {json.dumps(module)});
        entry?.click();
        await new Promise((r) => setTimeout(r, 1500));
        return true;
        """,
        timeout=30,
    )
    page.screenshot(screenshots / "template_browser.png")
    shown = page.evaluate(
        """
        // The grid draws the cards in view (and loads more on scrolling): scroll it through, noting what it drew.
        const dialog = [...document.querySelectorAll('.p-dialog')].find((d) => d.textContent.includes('Template'));
        const scrollers = [...dialog.querySelectorAll('*')].filter((e) => e.scrollHeight > e.clientHeight + 10);
        const seen = { text: '', thumbnails: {} };
        for (let i = 0; i < 40; i++) {
            seen.text += dialog.textContent;
            for (const img of dialog.querySelectorAll('img')) {
                if (img.src.startsWith('blob:') && img.naturalWidth > 0) {
                    seen.thumbnails[img.alt || img.src] = img.naturalWidth;
                }
            }
            scrollers.forEach((e) => { e.scrollTop += e.clientHeight / 2; });
            await new Promise((r) => setTimeout(r, 250));
        }
        return { text: seen.text, thumbnails: Object.values(seen.thumbnails) };
        """,
        timeout=60,
    )
    assert all(stem in shown["text"] for stem in PACK_WORKFLOWS), shown["text"][:500]
    assert len(shown["thumbnails"]) >= len(PACK_WORKFLOWS) and all(w > 0 for w in shown["thumbnails"]), shown
    page.evaluate("document.querySelectorAll('.p-dialog-close-button').forEach((b) => b.click()); return true;")
