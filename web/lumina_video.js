// Lumina-Video nodes in the ComfyUI frontend.
//
// - Lumina-Video Sampler: a strip under the widgets shows which patch size runs on which
//   step (2x4 / 2x2 / 1x2 ...) and the steps where CFG is on.
// - Lumina-Video Motion Score: a chart of the positive and negative motion over the steps of
//   the sampler it feeds, the gap between them shaded, and what that gap means.
// Neither knows a preset or a schedule rule: the server works out what a node's widgets will
// run (POST /lumina_video/plan, answered by the engine's own preset table and time grid) and
// this file draws the answer.
// - Lumina-Video Save Video: the saved video (with its sound) plays on the node through ComfyUI's
//   own video preview, which shows one video; for a batch, the other videos are added beside it.
//
// All text is drawn on the canvas; the only elements made here are those extra <video>s.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// --------------------------------------------------------------------------- the server's plan

const SAMPLER_WIDGETS = ["preset", "steps", "cfg", "cfg_cutoff", "time_shift", "renorm", "patch_schedule", "custom_schedule", "solver"];
const MOTION_WIDGETS = ["motion", "negative_motion_start", "negative_motion_after", "switch_t", "motion_guidance", "motion_guidance_until"];

function widgetValues(node, names) {
  const out = {};
  for (const name of names) {
    const widget = node?.widgets?.find((w) => w.name === name);
    if (widget !== undefined) out[name] = widget.value;
  }
  return out;
}

// The plan for these widgets: {times, patch, cfg, motion, neg_motion, motion_guidance, skip_guidance} or {error}.
// Answers are cached by their request; a new request is sent once the widgets change, and the node
// is redrawn when it arrives (null until then).
const plans = new Map();

export function requestPlan(sampler, motion, onArrival) {
  const body = JSON.stringify({ sampler, motion });
  const known = plans.get(body);
  if (known) return known.plan;
  const entry = { plan: null };
  plans.set(body, entry);
  if (plans.size > 200) plans.delete(plans.keys().next().value);
  api
    .fetchApi("/lumina_video/plan", { method: "POST", headers: { "Content-Type": "application/json" }, body })
    .then((response) => response.json())
    .then((plan) => {
      entry.plan = plan;
      onArrival?.();
    })
    .catch((error) => {
      entry.plan = { error: `no plan from the server (${error.message ?? error})` };
      onArrival?.();
    });
  return null;
}

function redraw(node) {
  return () => node.setDirtyCanvas?.(true, true);
}

// --------------------------------------------------------------------------- drawing helpers

const SCALE_COLOURS = { "2x4": "#3b6fb6", "2x2": "#2f9e8f", "1x2": "#d08a2c" };
const OTHER_COLOURS = ["#8e5bb5", "#b5475b", "#6b8e23", "#777"];
const STRIP_HEIGHT = 74;
const CHART_HEIGHT = 96;

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

function drawStrip(ctx, node, width, y) {
  const margin = 15;
  const w = width - 2 * margin;
  ctx.save();
  ctx.fillStyle = "#1c1c1c";
  ctx.fillRect(margin, y + 2, w, STRIP_HEIGHT - 4);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  const plan = requestPlan(widgetValues(node, SAMPLER_WIDGETS), null, redraw(node));
  if (!plan || plan.error) {
    ctx.fillStyle = plan ? "#e66" : "#bbb";
    ctx.fillText(plan ? plan.error.slice(0, 80) : "…", margin + 6, y + STRIP_HEIGHT / 2);
    ctx.restore();
    return;
  }
  const info = { patches: plan.patch, cfgOn: plan.cfg.map((c) => c !== 0) };
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
  const sampler = connectedSampler(node);
  const plan = requestPlan(sampler ? widgetValues(sampler, SAMPLER_WIDGETS) : {}, widgetValues(node, MOTION_WIDGETS), redraw(node));
  ctx.save();
  ctx.fillStyle = "#1c1c1c";
  ctx.fillRect(margin, y + 2, w, CHART_HEIGHT - 4);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  if (!plan || plan.error) {
    ctx.fillStyle = plan ? "#e66" : "#bbb";
    ctx.fillText(plan ? plan.error.slice(0, 80) : "…", margin + 6, y + CHART_HEIGHT / 2);
    ctx.restore();
    return;
  }
  const n = plan.times.length;
  const values = [...plan.motion, ...plan.neg_motion];
  const top = Math.max(...values, 1) * 1.15;
  const bottom = Math.min(0, ...values);
  const chartY = y + 16;
  const chartH = CHART_HEIGHT - 36;
  const yOf = (v) => chartY + chartH - ((v - bottom) / (top - bottom)) * chartH;
  const xOf = (i) => margin + (i / Math.max(n, 1)) * w;
  // gap, shaded
  ctx.fillStyle = "rgba(208,138,44,0.35)";
  for (let i = 0; i < n; i++) {
    const a = yOf(plan.motion[i]);
    const b = yOf(plan.neg_motion[i]);
    ctx.fillRect(xOf(i), Math.min(a, b), xOf(i + 1) - xOf(i) + 0.5, Math.abs(a - b));
  }
  const line = (colour, series) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    series.forEach((v, i) => {
      ctx.lineTo(xOf(i), yOf(v));
      ctx.lineTo(xOf(i + 1), yOf(v));
    });
    ctx.stroke();
  };
  line("#8fd18f", plan.motion);
  line("#e07a7a", plan.neg_motion);
  // motion guidance: a band along the chart's top over the steps where its third pass runs
  const guided = plan.motion_guidance.map((g, i) => g !== 0 && plan.motion[i] >= 0);
  ctx.fillStyle = "#6fa8dc";
  guided.forEach((on, i) => on && ctx.fillRect(xOf(i), chartY, xOf(i + 1) - xOf(i) + 0.5, 3));
  const first = (series) => series[0];
  const last = (series) => series[n - 1];
  ctx.fillStyle = "#8fd18f";
  ctx.fillText(`motion ${first(plan.motion)}`, margin + 4, y + 9);
  ctx.fillStyle = "#e07a7a";
  ctx.fillText(`negative ${first(plan.neg_motion)} → ${last(plan.neg_motion)}`, margin + 90, y + 9);
  const guidedSteps = guided.filter(Boolean).length;
  if (guidedSteps) {
    ctx.fillStyle = "#6fa8dc";
    ctx.fillText(`guidance ${Math.max(...plan.motion_guidance)} on ${guidedSteps} steps`, margin + 200, y + 9);
  }
  const gapStart = first(plan.motion) - first(plan.neg_motion);
  const gapEnd = last(plan.motion) - last(plan.neg_motion);
  const earlySteps = plan.motion.filter((m, i) => m - plan.neg_motion[i] === gapStart).length;
  const source = sampler ? "" : ` (${plan.preset})`;
  ctx.fillStyle = "#ccc";
  ctx.fillText(`gap ${gapStart.toFixed(2)} for ${earlySteps} of ${n} steps${source}, then ${gapEnd.toFixed(2)}`, margin + 4, y + CHART_HEIGHT - 20);
  ctx.fillText(gapMeaning(gapStart), margin + 4, y + CHART_HEIGHT - 8);
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

// The Sampler's custom_schedule text matters only while patch_schedule is "custom": hide it otherwise.
export function syncCustomSchedule(node) {
  const choice = node.widgets?.find((w) => w.name === "patch_schedule");
  const text = node.widgets?.find((w) => w.name === "custom_schedule");
  if (!choice || !text) return;
  const hidden = choice.value !== "custom";
  if (!!text.hidden === hidden) return;
  text.hidden = hidden;
  // The frontend skips a hidden widget when drawing but still lays it out: give it no height while hidden.
  if (!("ownComputeSize" in text)) text.ownComputeSize = text.computeSize; // often undefined: the default size
  text.computeSize = hidden ? () => [0, -4] : text.ownComputeSize;
  node.setSize([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas?.(true, true);
}

function watchCustomSchedule(node) {
  const choice = node.widgets?.find((w) => w.name === "patch_schedule");
  if (!choice) return;
  const callback = choice.callback;
  choice.callback = function () {
    const result = callback?.apply(this, arguments);
    syncCustomSchedule(node);
    return result;
  };
  syncCustomSchedule(node);
}

function chain(prototype, method, after) {
  const original = prototype[method];
  prototype[method] = function () {
    const result = original?.apply(this, arguments);
    after(this);
    return result;
  };
}

// ComfyUI's preview plays the first video a node saved; a batch saves one per item. Once the preview is up, add
// the others beside it, as players like it, so every video of the batch can be watched on the node.
function viewURL(entry) {
  const query = new URLSearchParams({ filename: entry.filename, subfolder: entry.subfolder ?? "", type: entry.type ?? "output" });
  return api.apiURL(`/view?${query}`);
}

export function showEveryVideo(node, entries, triesLeft = 100) {
  if (!entries || entries.length < 2) return;
  const first = node.videoContainer?.querySelector("video");
  if (!first || !first.src.includes(encodeURIComponent(entries[0].filename))) {
    if (triesLeft > 0) setTimeout(() => showEveryVideo(node, entries, triesLeft - 1), 100);
    return;
  }
  const container = node.videoContainer;
  container.style.display = "grid";
  container.style.gridTemplateColumns = `repeat(${Math.min(entries.length, 2)}, 1fr)`;
  container.style.gap = "4px";
  for (const entry of entries.slice(1)) {
    const video = first.cloneNode(false);
    video.src = viewURL(entry);
    video.title = entry.filename;
    container.appendChild(video);
  }
  first.title = entries[0].filename;
}

app.registerExtension({
  name: "LuminaVideo.Widgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name === "LuminaVideoSaveVideo") {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        const result = onExecuted?.apply(this, arguments);
        showEveryVideo(this, message?.images);
        return result;
      };
      return;
    }
    const drawers = {
      LuminaVideoSampler: ["lumina_patch_schedule", STRIP_HEIGHT, drawStrip],
      LuminaVideoMotionScore: ["lumina_motion_gap", CHART_HEIGHT, drawMotion],
    };
    const entry = drawers[nodeData?.name];
    if (!entry) return;
    chain(nodeType.prototype, "onNodeCreated", (node) => addCanvasWidget(node, ...entry));
    if (nodeData.name === "LuminaVideoSampler") {
      chain(nodeType.prototype, "onNodeCreated", watchCustomSchedule);
      chain(nodeType.prototype, "onConfigure", syncCustomSchedule); // a loaded workflow sets the values afterwards
    }
  },
});
