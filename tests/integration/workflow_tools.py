"""Workflows in both formats, checked against a server's /object_info.

ComfyUI's backend only runs API-format graphs; the frontend loads UI-format workflows,
whose ``widgets_values`` are positional in the order /object_info lists the widget
inputs (required, then optional), with one extra value after an INT that has
``control_after_generate`` (the frontend's "fixed/increment/randomize" widget).

- ``widget_names(info)``: the widget slots of a node, in that order.
- ``check_api(graph, object_info)``: every problem /prompt's validation would find
  (unknown node types, missing inputs, combo values not in the list, numbers out of
  range, links to missing nodes or of the wrong type), without queueing anything.
- ``api_to_ui(graph, object_info, ...)``: the UI-format workflow (socket inputs,
  links, positions by a left-to-right layout), optionally with a Note.
- ``ui_to_api(workflow, object_info)``: back again, to check the two copies agree.

Command line (the workflows in ``workflows/`` are made from ``workflows/api/`` with it)::

    python -m tests.integration.workflow_tools ui OBJECT_INFO.json workflows/api/X.json workflows/X.json [--note TEXT]
    python -m tests.integration.workflow_tools check OBJECT_INFO.json workflows/api/*.json
    python -m tests.integration.workflow_tools thumbnail OUTPUT.mp4 workflows/X.jpg
    python -m tests.integration.workflow_tools inputs workflows/inputs

``inputs`` writes the conditional workflows' example inputs (copy them into ComfyUI's ``input`` folder): a held-out
toy-world clip (a red circle travelling right) as a video, its first and last frames, a mask of the frame's right
half and one of the band the circle travels along.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUE = "randomize"  # the extra control_after_generate widget in shipped workflows, as in ComfyUI's templates


def _inputs(info: dict) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, optional) of a node's inputs in /object_info order."""
    out = []
    for category in ("required", "optional"):
        spec = info["input"].get(category, {})
        for name in info.get("input_order", {}).get(category, list(spec)):
            entry = spec[name]
            out.append((name, entry[0], entry[1] if len(entry) > 1 else {}, category == "optional"))
    return out


def _is_widget(kind, options: dict) -> bool:
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def combo_options(kind, options: dict) -> list | None:
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        return options.get("options", [])
    return None


def widget_names(info: dict) -> list[str]:
    """Widget slots in widgets_values order; "<name>:control" marks a control_after_generate value."""
    names = []
    for name, kind, options, _ in _inputs(info):
        if _is_widget(kind, options):
            names.append(name)
            if kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
                names.append(name + ":control")
    return names


def socket_inputs(info: dict) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind, options, _ in _inputs(info) if not _is_widget(kind, options)]


def check_value(name: str, kind, options: dict, value) -> str | None:
    choices = combo_options(kind, options)
    if choices is not None:
        return (
            None
            if value in choices
            else f"{name}: {value!r} not in {choices if len(choices) <= 20 else f'list of {len(choices)}'}"
        )
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name}: {value!r} is not an INT"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{name}: {value!r} is not a FLOAT"
    if kind == "STRING" and not isinstance(value, str):
        return f"{name}: {value!r} is not a STRING"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}: {value!r} is not a BOOLEAN"
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return f"{name}: {value} < min {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{name}: {value} > max {options['max']}"
    return None


def check_api(graph: dict, object_info: dict) -> list[str]:
    """Problems /prompt would report for this API-format graph (empty list: valid)."""
    problems = []
    for node_id, node in graph.items():
        kind = node.get("class_type")
        if kind not in object_info:
            problems.append(f"node {node_id}: unknown node type {kind!r}")
            continue
        info = object_info[kind]
        inputs = node.get("inputs", {})
        known = {name for name, *_ in _inputs(info)}
        for extra in sorted(set(inputs) - known):
            problems.append(f"node {node_id} ({kind}): unknown input {extra!r}")
        for name, in_kind, options, optional in _inputs(info):
            if name not in inputs:
                if not optional:
                    problems.append(f"node {node_id} ({kind}): required input {name!r} missing")
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2 or str(value[0]) not in graph:
                    problems.append(f"node {node_id} ({kind}): {name} links to missing node {value!r}")
                    continue
                source = graph[str(value[0])]
                outputs = object_info.get(source["class_type"], {}).get("output", [])
                if value[1] >= len(outputs):
                    problems.append(
                        f"node {node_id} ({kind}): {name} links to output {value[1]} of {source['class_type']}, "
                        f"which has {len(outputs)}"
                    )
                    continue
                out_kind = outputs[value[1]]
                expected = "COMBO" if isinstance(in_kind, list) else in_kind
                if out_kind != expected and "*" not in (out_kind, expected):
                    problems.append(
                        f"node {node_id} ({kind}): {name} expects {expected}, gets {out_kind} from node {value[0]}"
                    )
                continue
            problem = check_value(name, in_kind, options, value)
            if problem:
                problems.append(f"node {node_id} ({kind}): {problem}")
    return problems


def _layout(graph: dict) -> dict[str, int]:
    """Column of each node: the length of the longest chain of links leading to it."""
    depth: dict[str, int] = {}

    def visit(node_id: str, seen=()) -> int:
        if node_id in depth:
            return depth[node_id]
        if node_id in seen:
            raise ValueError(f"the graph has a cycle through node {node_id}")
        parents = [str(v[0]) for v in graph[node_id]["inputs"].values() if isinstance(v, list)]
        depth[node_id] = 1 + max((visit(p, seen + (node_id,)) for p in parents), default=-1)
        return depth[node_id]

    for node_id in graph:
        visit(node_id)
    return depth


# Room for what the pack's nodes draw under their widgets (web/lumina_video.js, previews).
EXTRA_HEIGHT = {"LuminaVideoSampler": 74 + 150, "LuminaVideoMotionScore": 100, "LuminaVideoSaveVideo": 300}


def _node_size(info: dict, values: dict) -> list[int]:
    width = 340
    height = 46 + 26 * max(len(socket_inputs(info)), len(info.get("output", [])))
    height += EXTRA_HEIGHT.get(info.get("name"), 0)
    for name in widget_names(info):
        base = name.split(":")[0]
        options = dict(((n, o) for n, _, o, _ in _inputs(info)))[base]
        multiline = options.get("multiline")
        height += 110 if multiline else 26
        if multiline:
            width = 420
    return [width, height]


def api_to_ui(
    graph: dict, object_info: dict, note: str | None = None, title: str | None = None, sizes: dict | None = None
) -> dict:
    """The UI-format workflow for an API-format graph (node ids and values kept)."""
    depth = _layout(graph)
    links, nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    column_y: dict[int, int] = {}
    order = sorted(graph, key=lambda k: (depth[k], int(k)))
    positions = {}
    x = 0
    widths = {}
    for column in sorted(set(depth.values())):
        ids = [k for k in order if depth[k] == column]
        y = 0
        col_width = 0
        for node_id in ids:
            info = object_info[graph[node_id]["class_type"]]
            size = (sizes or {}).get(node_id) or _node_size(info, graph[node_id]["inputs"])
            positions[node_id] = ([x, y], size)
            y += size[1] + 60
            col_width = max(col_width, size[0])
        widths[column] = col_width
        column_y[column] = y
        x += col_width + 60

    for node_id in order:
        node = graph[node_id]
        info = object_info[node["class_type"]]
        inputs = []
        for slot, (name, kind) in enumerate(socket_inputs(info)):
            link = None
            value = node["inputs"].get(name)
            if isinstance(value, list):
                link = len(links) + 1
                source_id, source_slot = int(value[0]), int(value[1])
                out_kind = object_info[graph[str(source_id)]["class_type"]]["output"][source_slot]
                links.append([link, source_id, source_slot, int(node_id), slot, out_kind])
                out_links.setdefault((source_id, source_slot), []).append(link)
            inputs.append({"name": name, "type": kind, "link": link})
        values = []
        for name in widget_names(info):
            if name.endswith(":control"):
                values.append(CONTROL_VALUE)
            else:
                values.append(node["inputs"][name])
        pos, size = positions[node_id]
        nodes.append(
            {
                "id": int(node_id),
                "type": node["class_type"],
                "pos": pos,
                "size": size,
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": inputs,
                "outputs": [],
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": values,
                **({"title": node["_meta"]["title"]} if node.get("_meta", {}).get("title") else {}),
            }
        )
    for entry in nodes:
        info = object_info[entry["type"]]
        entry["outputs"] = [
            {"name": name, "type": kind, "links": out_links.get((entry["id"], slot), []), "slot_index": slot}
            for slot, (kind, name) in enumerate(zip(info["output"], info["output_name"]))
        ]
    for index, node_id in enumerate(order):  # execution order, as the frontend stores it
        next(n for n in nodes if n["id"] == int(node_id))["order"] = index
    last_id = max(int(k) for k in graph)
    if note:
        last_id += 1
        nodes.append(
            {
                "id": last_id,
                "type": "Note",
                "pos": [0, max(column_y.values())],
                "size": [widths[0] + 60 + widths.get(1, 340), 160],
                "flags": {},
                "order": len(nodes),
                "mode": 0,
                "inputs": [],
                "outputs": [],
                "properties": {},
                "widgets_values": [note],
                "color": "#432",
                "bgcolor": "#653",
            }
        )
    workflow = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "lumina-video/" + (title or json.dumps(graph, sort_keys=True)))),
        "revision": 0,
        "last_node_id": last_id,
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}},
        "version": 0.4,
    }
    return workflow


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format graph a UI-format workflow stands for (Notes and other frontend-only nodes dropped)."""
    links = {link[0]: link for link in workflow["links"]}
    graph = {}
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            if node["type"] in ("Note", "MarkdownNote"):
                continue
            raise KeyError(f"node {node['id']}: {node['type']} is not in /object_info")
        info = object_info[node["type"]]
        inputs = {}
        names = widget_names(info)
        values = node.get("widgets_values", [])
        if len(values) != len(names):
            raise ValueError(
                f"node {node['id']} ({node['type']}): {len(values)} widget values for {len(names)} widgets {names}"
            )
        for name, value in zip(names, values):
            if not name.endswith(":control"):
                inputs[name] = value
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        graph[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return graph


def thumbnail(frames, out: Path, count: int = 4, tile: int = 192) -> Path:
    """A .jpg strip of ``count`` evenly spaced frames ([F, H, W, 3] in 0..1), each ``tile`` px high."""
    import numpy as np
    from PIL import Image

    frames = np.asarray(frames, dtype=np.float32)
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    height, width = frames.shape[1:3]
    scale = tile / height
    size = (max(1, round(width * scale)), tile)
    gap = 4
    strip = Image.new("RGB", (len(picks) * (size[0] + gap) - gap, tile), (24, 24, 24))
    for i, index in enumerate(picks):
        picture = Image.fromarray((frames[index].clip(0, 1) * 255).round().astype(np.uint8))
        strip.paste(picture.resize(size, Image.NEAREST if scale >= 2 else Image.BICUBIC), (i * (size[0] + gap), 0))
    out = Path(out)
    strip.save(out, quality=90)
    return out


EXAMPLE_CLIP = 9
"""Held-out clip 9 of seed 0: "a red circle travels right", the conditional workflows' example."""


def example_inputs(folder: Path) -> list[Path]:
    """The conditional workflows' example inputs (see the module docstring), written into ``folder``."""
    import numpy as np
    from PIL import Image

    from lumina_core.io.media import write_video
    from lumina_core.toyworld.conditional import lane
    from lumina_core.toyworld.world import DEFAULT_CONFIG, heldout_clips

    clip = heldout_clips(0, EXAMPLE_CLIP + 1)[EXAMPLE_CLIP]
    folder.mkdir(parents=True, exist_ok=True)

    def png(name: str, pixels) -> Path:
        picture = (np.clip(np.asarray(pixels, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(picture).save(folder / name)
        return folder / name

    right_half = np.zeros((DEFAULT_CONFIG.height, DEFAULT_CONFIG.width), dtype=np.float32)
    right_half[:, DEFAULT_CONFIG.width // 2 :] = 1
    return [
        write_video(folder / "lumina_video_red_circle.mp4", clip.frames, DEFAULT_CONFIG.fps),
        png("lumina_video_red_circle.png", clip.frames[0]),
        png("lumina_video_red_circle_last.png", clip.frames[-1]),
        png("lumina_video_right_half.png", right_half),
        png("lumina_video_lane.png", lane(clip).numpy()),
    ]


SCALE_COLOURS = {"2x4": (59, 111, 182), "2x2": (47, 158, 143), "1x2": (208, 138, 44)}  # as web/lumina_video.js


def schedule_card(title: str, lines: list[str], patches: list[str], out: Path, size=(768, 288)) -> Path:
    """A .jpg card for a workflow that can't run here: title, facts, and its patch schedule as the sampler draws it."""
    from PIL import Image, ImageDraw, ImageFont

    card = Image.new("RGB", size, (28, 28, 30))
    draw = ImageDraw.Draw(card)
    big, small = ImageFont.load_default(size=30), ImageFont.load_default(size=18)
    draw.text((28, 22), title, font=big, fill=(235, 235, 235))
    for i, line in enumerate(lines):
        draw.text((28, 72 + 26 * i), line, font=small, fill=(190, 190, 190))
    left, top, width, height = 28, size[1] - 78, size[0] - 56, 34
    cell = width / len(patches)
    start = 0
    for i in range(1, len(patches) + 1):
        if i == len(patches) or patches[i] != patches[start]:
            x0, x1 = left + start * cell, left + i * cell - 2
            draw.rectangle([x0, top, x1, top + height], fill=SCALE_COLOURS.get(patches[start], (120, 120, 120)))
            label = f"{patches[start]} x{i - start}"
            if draw.textlength(label, font=small) + 10 < x1 - x0:
                draw.text((x0 + 6, top + 7), label, font=small, fill=(255, 255, 255))
            start = i
    draw.text((left, top + height + 8), "patch size per step, noise -> video", font=small, fill=(150, 150, 150))
    out = Path(out)
    card.save(out, quality=90)
    return out


def strip_meta(graph: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in graph.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.workflow_tools",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ui = sub.add_parser("ui", help="write the UI-format workflow for an API-format graph")
    ui.add_argument("object_info", type=Path)
    ui.add_argument("api", type=Path)
    ui.add_argument("out", type=Path)
    ui.add_argument("--note", help="text of a Note node placed under the graph")
    thumb = sub.add_parser("thumbnail", help="a .jpg strip of frames of a video (e.g. a workflow's output)")
    thumb.add_argument("video", type=Path)
    thumb.add_argument("out", type=Path)
    inputs = sub.add_parser("inputs", help="write the conditional workflows' example inputs into a folder")
    inputs.add_argument("folder", type=Path)
    check = sub.add_parser("check", help="validate API-format graphs against /object_info")
    check.add_argument("object_info", type=Path)
    check.add_argument("graphs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "thumbnail":
        from lumina_core.io.media import read_video

        thumbnail(read_video(args.video).frames.numpy(), args.out)
        return 0
    if args.command == "inputs":
        for path in example_inputs(args.folder):
            print(path)
        return 0
    object_info = json.loads(args.object_info.read_text())
    if args.command == "ui":
        graph = json.loads(args.api.read_text())
        problems = check_api(strip_meta(graph), object_info)
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        workflow = api_to_ui(graph, object_info, note=args.note, title=args.api.stem)
        args.out.write_text(json.dumps(workflow, indent=2) + "\n")
        return 0
    status = 0
    for path in args.graphs:
        problems = check_api(strip_meta(json.loads(path.read_text())), object_info)
        print(f"{path}: {'ok' if not problems else ''}")
        for problem in problems:
            print("  " + problem)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
