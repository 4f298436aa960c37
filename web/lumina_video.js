// Lumina-Video nodes in the ComfyUI frontend.
//
// - Lumina-Video Sampler: a strip under the widgets shows which patch size runs on which
//   step (2x4 / 2x2 / 1x2 ...) and the steps where CFG is on, computed from the node's
//   steps, time_shift, cfg_cutoff and patch schedule with the engine's rules
//   (lumina_core/sampler.py: time_grid, value_at, parse_time_aware).
// - Lumina-Video Motion Score: a chart of the positive and negative motion over time,
//   the gap between them shaded, and what that gap means.
// The saved video (with its sound) plays on the Save Video node through ComfyUI's own
// video preview.
//
// All text is drawn on the canvas; nothing here builds HTML.

import { app } from "../../scripts/app.js";

// --------------------------------------------------------------------------- the engine's rules

const f32 = Math.fround;

// Presets' patch schedules, as lumina_core/pipeline.py ALL_PRESETS (and sampler.PRESETS).
export const PRESET_SCHEDULES = {
  "embedded": "1x2",
  "embedded-MultiScale": ["2x4", [0.25, "2x2"], [0.45, "1x2"]],
  "f24F96R960": "1x2",
  "f24F96R960-MultiScale": ["2x4", [0.03, "2x2"], [0.125, "1x2"]],
  "f16F64R512": "1x2",
  "f16F64R512-MultiScale": ["2x4", [0.075, "2x2"], [0.3, "1x2"]],
  "1x2": "1x2",
  "2x2": "2x2",
  "2x4": "2x4",
};

// torch.linspace(0, 1, steps) in float32, then t / (t + s - s*t): the reference's shifted grid.
export function timeGrid(steps, shift) {
  const n = Math.max(2, Math.floor(steps));
  const s = f32(shift);
  const step = f32(1 / (n - 1));
  const halfway = Math.floor(n / 2);
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = i < halfway ? f32(step * i) : f32(1 - f32(step * (n - i - 1)));
    out.push(f32(t / f32(f32(t + s) - f32(s * t))));
  }
  return out;
}

// A time-aware value at time t: v0 until t reaches thr1, then v1, ... (switch once t >= thr).
export function valueAt(schedule, t) {
  if (!Array.isArray(schedule)) return schedule;
  let value = schedule[0];
  for (const [threshold, next] of schedule.slice(1)) {
    if (t < threshold) break;
    value = next;
  }
  return value;
}

// Python literal of the reference's form -> nested arrays: "2x4", ("2x4", (0.03, "2x2")), [ ... ].
export function parseTimeAware(text) {
  const source = String(text).trim();
  if (/^\d+x\d+$/i.test(source)) return source.toLowerCase();
  const tokens = source.match(/"[^"]*"|'[^']*'|[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|[()[\],]|\S+/gi) || [];
  let pos = 0;
  const fail = (why) => { throw new Error(why); };
  const parse = () => {
    const token = tokens[pos++];
    if (token === undefined) fail("unexpected end");
    if (token === "(" || token === "[") {
      const close = token === "(" ? ")" : "]";
      const items = [];
      while (tokens[pos] !== close) {
        items.push(parse());
        if (tokens[pos] === ",") pos++;
        else if (tokens[pos] !== close) fail(`expected ',' or '${close}'`);
      }
      pos++;
      return items;
    }
    if (/^["']/.test(token)) return token.slice(1, -1);
    const number = Number(token);
    if (!Number.isNaN(number)) return number;
    return fail(`can't read ${token}`);
  };
  const value = parse();
  if (pos !== tokens.length) fail("text after the value");
  const check = (v) => {
    if (typeof v !== "string" || !/^\d+x\d+$/i.test(v)) fail(`${JSON.stringify(v)} is not a patch size like "1x2"`);
  };
  if (!Array.isArray(value)) {
    check(value);
    return value;
  }
  check(value[0]);
  let last = -Infinity;
  for (const pair of value.slice(1)) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "number") fail("each switch is (t, \"FxP\")");
    if (pair[0] < 0 || pair[0] > 1 || pair[0] < last) fail("switch times must increase within [0, 1]");
    last = pair[0];
    check(pair[1]);
  }
  return value;
}

// The patch size of every model call (steps - 1 of them), as SamplingConfig.patch_schedule().
export function patchSchedule(steps, shift, schedule) {
  return timeGrid(steps, shift).slice(0, -1).map((t) => String(valueAt(schedule, t)).toLowerCase());
}

export function cfgSchedule(steps, shift, cfg, cutoff) {
  return timeGrid(steps, shift).slice(0, -1).map((t) => (cfg !== 0 && (cutoff >= 1 || t < cutoff)));
}

// --------------------------------------------------------------------------- drawing helpers

const SCALE_COLOURS = { "2x4": "#3b6fb6", "2x2": "#2f9e8f", "1x2": "#d08a2c" };
const OTHER_COLOURS = ["#8e5bb5", "#b5475b", "#6b8e23", "#777"];
const STRIP_HEIGHT = 74;
const CHART_HEIGHT = 96;

function widgetValue(node, name) {
  return node.widgets?.find((w) => w.name === name)?.value;
}

function colourFor(scale, seen) {
  if (SCALE_COLOURS[scale]) return SCALE_COLOURS[scale];
  if (!seen.has(scale)) seen.set(scale, OTHER_COLOURS[seen.size % OTHER_COLOURS.length]);
  return seen.get(scale);
}

function runs(values) {
  const out = [];
  values.forEach((value, i) => {
    const last = out[out.length - 1];
    if (last && last.value === value) last.count++;
    else out.push({ value, start: i, count: 1 });
  });
  return out;
}

function samplerSchedule(node) {
  const steps = Number(widgetValue(node, "steps") ?? 30);
  const shift = Number(widgetValue(node, "time_shift") ?? 3);
  const cfg = Number(widgetValue(node, "cfg") ?? 0);
  const cutoff = Number(widgetValue(node, "cfg_cutoff") ?? 1);
  const choice = widgetValue(node, "patch_schedule");
  let schedule = PRESET_SCHEDULES[choice];
  let error = null;
  if (choice === "custom") {
    try {
      schedule = parseTimeAware(widgetValue(node, "custom_schedule") ?? "");
    } catch (e) {
      error = `custom_schedule: ${e.message}`;
    }
  }
  if (schedule === undefined && !error) error = `unknown schedule ${choice}`;
  if (error) return { error };
  return { steps, patches: patchSchedule(steps, shift, schedule), cfgOn: cfgSchedule(steps, shift, cfg, cutoff) };
}

function drawStrip(ctx, node, width, y) {
  const margin = 15;
  const w = width - 2 * margin;
  ctx.save();
  ctx.fillStyle = "#1c1c1c";
  ctx.fillRect(margin, y + 2, w, STRIP_HEIGHT - 4);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  const info = samplerSchedule(node);
  if (info.error) {
    ctx.fillStyle = "#e66";
    ctx.fillText(info.error.slice(0, 80), margin + 6, y + STRIP_HEIGHT / 2);
    ctx.restore();
    return;
  }
  const n = info.patches.length;
  const cell = w / Math.max(n, 1);
  const seen = new Map();
  const barY = y + 20;
  const barH = 22;
  for (const run of runs(info.patches)) {
    ctx.fillStyle = colourFor(run.value, seen);
    ctx.fillRect(margin + run.start * cell, barY, Math.max(run.count * cell - 1, 1), barH);
    const label = `${run.value} ×${run.count}`;
    if (ctx.measureText(label).width + 6 < run.count * cell) {
      ctx.fillStyle = "#fff";
      ctx.fillText(label, margin + run.start * cell + 4, barY + barH / 2);
    }
  }
  // CFG on these steps (the negative pass runs): a thin line under the strip
  ctx.fillStyle = "#c9c9c9";
  for (const run of runs(info.cfgOn)) {
    if (run.value) ctx.fillRect(margin + run.start * cell, barY + barH + 4, run.count * cell, 3);
  }
  const cfgSteps = info.cfgOn.filter(Boolean).length;
  ctx.fillStyle = "#bbb";
  ctx.fillText(`patch schedule: ${n} model steps, noise → video`, margin + 4, y + 10);
  const counts = runs([...info.patches].sort()).map((r) => `${r.value}: ${r.count}`).join("  ");
  ctx.fillText(`${counts}   CFG on ${cfgSteps}/${n} (line)`, margin + 4, y + STRIP_HEIGHT - 12);
  ctx.restore();
}

// The sampler a motion node feeds, if any (to show the gap in steps).
function connectedSampler(node) {
  const links = node.outputs?.[0]?.links ?? [];
  for (const id of links) {
    const link = node.graph?.links?.get ? node.graph.links.get(id) : node.graph?.links?.[id];
    const target = link && node.graph.getNodeById(link.target_id);
    if (target?.comfyClass === "LuminaVideoSampler" || target?.type === "LuminaVideoSampler") return target;
  }
  return null;
}

function gapMeaning(gap) {
  if (gap > 0.05) return "more motion (larger gap: more, but lower quality)";
  if (gap < -0.05) return "less motion than average";
  return "no push: the model's average motion";
}

function drawMotion(ctx, node, width, y) {
  const margin = 15;
  const w = width - 2 * margin;
  const motion = Number(widgetValue(node, "motion") ?? 6);
  const negStart = Number(widgetValue(node, "negative_motion_start") ?? 2);
  const negAfter = Number(widgetValue(node, "negative_motion_after") ?? 6);
  const switchT = Number(widgetValue(node, "switch_t") ?? 0.05);
  const guidance = Number(widgetValue(node, "motion_guidance") ?? 0);
  const guidanceUntil = Number(widgetValue(node, "motion_guidance_until") ?? 1);
  const sampler = connectedSampler(node);
  let grid = null;
  if (sampler) {
    grid = timeGrid(Number(widgetValue(sampler, "steps") ?? 30), Number(widgetValue(sampler, "time_shift") ?? 3)).slice(0, -1);
  }
  const negAt = (t) => (t < switchT ? negStart : negAfter);
  const n = grid ? grid.length : 100;
  const timeOf = (i) => (grid ? grid[i] : i / (n - 1));
  const top = Math.max(motion, negStart, negAfter, 1) * 1.15;
  const bottom = Math.min(0, motion, negStart, negAfter);
  const chartY = y + 16;
  const chartH = CHART_HEIGHT - 36;
  const yOf = (v) => chartY + chartH - ((v - bottom) / (top - bottom)) * chartH;
  const xOf = (i) => margin + (i / Math.max(n - 1, 1)) * w;

  ctx.save();
  ctx.fillStyle = "#1c1c1c";
  ctx.fillRect(margin, y + 2, w, CHART_HEIGHT - 4);
  // gap, shaded
  ctx.fillStyle = "rgba(208,138,44,0.35)";
  for (let i = 0; i < n - 1; i++) {
    const neg = negAt(timeOf(i));
    const a = yOf(motion);
    const b = yOf(neg);
    ctx.fillRect(xOf(i), Math.min(a, b), xOf(i + 1) - xOf(i) + 0.5, Math.abs(a - b));
  }
  const line = (colour, valueOf) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      const v = valueOf(timeOf(i));
      if (i === 0) ctx.moveTo(xOf(i), yOf(v));
      else ctx.lineTo(xOf(i), yOf(v));
    }
    ctx.stroke();
  };
  line("#8fd18f", () => motion);
  line("#e07a7a", negAt);
  // motion guidance: a band along the chart's top over the steps where its third pass runs
  if (guidance > 0) {
    ctx.fillStyle = "#6fa8dc";
    for (let i = 0; i < n - 1; i++) {
      if (timeOf(i) < guidanceUntil) ctx.fillRect(xOf(i), chartY, xOf(i + 1) - xOf(i) + 0.5, 3);
    }
  }
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillStyle = "#8fd18f";
  ctx.fillText(`motion ${motion}`, margin + 4, y + 9);
  ctx.fillStyle = "#e07a7a";
  ctx.fillText(`negative ${negStart} → ${negAfter}`, margin + 90, y + 9);
  if (guidance > 0) {
    ctx.fillStyle = "#6fa8dc";
    ctx.fillText(`guidance ${guidance} to t ${guidanceUntil}`, margin + 200, y + 9);
  }
  const earlySteps = grid ? grid.filter((t) => t < switchT).length : null;
  const where = grid ? `for ${earlySteps} of ${grid.length} steps` : `until t = ${switchT}`;
  ctx.fillStyle = "#ccc";
  ctx.fillText(`gap ${(motion - negStart).toFixed(2)} ${where}, then ${(motion - negAfter).toFixed(2)}`, margin + 4, y + CHART_HEIGHT - 20);
  ctx.fillText(gapMeaning(motion - negStart), margin + 4, y + CHART_HEIGHT - 8);
  ctx.restore();
}

function addCanvasWidget(node, name, height, draw) {
  const widget = {
    type: "lumina_video_canvas",
    name,
    value: null,
    serialize: false, // not part of the saved workflow's widgets_values
    options: { serialize: false }, // nor of the prompt sent to the server
    draw(ctx, drawNode, width, y) {
      draw(ctx, drawNode, width, y);
    },
    computeSize(width) {
      return [width, height];
    },
  };
  node.addCustomWidget(widget);
  const size = node.computeSize();
  node.setSize([Math.max(node.size[0], size[0]), Math.max(node.size[1], size[1])]);
  return widget;
}

app.registerExtension({
  name: "LuminaVideo.Widgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const drawers = {
      LuminaVideoSampler: ["lumina_patch_schedule", STRIP_HEIGHT, drawStrip],
      LuminaVideoMotionScore: ["lumina_motion_gap", CHART_HEIGHT, drawMotion],
    };
    const entry = drawers[nodeData?.name];
    if (!entry) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addCanvasWidget(this, ...entry);
      return result;
    };
  },
});
