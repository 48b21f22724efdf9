// The live page's script: it polls data.json every second and draws each new snapshot on canvases (the curves,
// the kernels, the probe batch, the feature maps with their channel numbers and colour scales, and the dense
// layers). It is served inline in live.html.
"use strict";
let lastVersion = -1, last = null;
function drawKernels(d) {
  const k = d.kernels, canvas = document.getElementById("kernels");
  if (!k) { const [ctx] = fit(canvas); ctx.fillText("this model has no convolution layer", 10, 20); return; }
  document.getElementById("kernels-title").textContent = `First-layer kernels: ${k.count} of ${k.h}×${k.w}` +
    (k.rgb ? " in colour (mid-gray: 0; each colour its weights' sign)" : k.in_channels > 1 ? " (summed over input channels)" : "");
  const cols = Math.min(k.count, k.count <= 32 ? 8 : 16), rows = Math.ceil(k.count / cols);
  canvas.style.height = "auto";
  const W = canvas.clientWidth, scale = Math.max(2, Math.min(20, Math.floor((W - 8 * cols) / cols / k.w)));
  canvas.style.height = (rows * (k.h * scale + 4)) + "px";
  const [ctx] = fit(canvas), limit = Math.max(1e-12, ...(k.rgb || k.values).map(Math.abs));
  for (let c = 0; c < k.count; c++) {
    const x = (c % cols) * (k.w * scale + 8), y = Math.floor(c / cols) * (k.h * scale + 4);
    if (k.rgb) { colourKernel(ctx, k, c, limit, x, y, scale); continue; }
    const levels = k.values.slice(c * k.h * k.w, (c + 1) * k.h * k.w).map(v => Math.round((v / limit + 1) * 127.5));
    tile(ctx, levels, k.w, k.h, x, y, scale, LUTS.rdbu);
  }
}
function colourKernel(ctx, k, c, limit, x, y, scale) {  // kernel c of a colour layer: (w / limit + 1) / 2 per channel
  const n = k.h * k.w, img = new ImageData(k.w, k.h);
  for (let i = 0; i < n; i++) { for (let ch = 0; ch < 3; ch++)
    img.data[4 * i + ch] = Math.round((k.rgb[(c * 3 + ch) * n + i] / limit + 1) * 127.5);
    img.data[4 * i + 3] = 255; }
  const off = document.createElement("canvas"); off.width = k.w; off.height = k.h; off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false; ctx.drawImage(off, x, y, k.w * scale, k.h * scale);
}
function drawKernelGradients(d) {  // what the probe image alone would change in the first-layer kernels
  const k = (d.probe_gradients || {}).kernels, canvas = document.getElementById("kernel-grads");
  if (!k) return;
  const cols = Math.min(k.count, k.count <= 32 ? 8 : 16), rows = Math.ceil(k.count / cols);
  canvas.style.height = "auto";
  const W = canvas.clientWidth, scale = Math.max(2, Math.min(12, Math.floor((W - 8 * cols) / cols / k.w)));
  canvas.style.height = (rows * (k.h * scale + 4)) + "px";
  const [ctx] = fit(canvas), limit = Math.max(1e-30, ...k.values.map(Math.abs));
  for (let c = 0; c < k.count; c++) {
    const levels = k.values.slice(c * k.h * k.w, (c + 1) * k.h * k.w).map(v => Math.round((v / limit + 1) * 127.5));
    tile(ctx, levels, k.w, k.h, (c % cols) * (k.w * scale + 8), Math.floor(c / cols) * (k.h * scale + 4), scale,
         LUTS.rdbu);
  }
}
function drawBatch(d) {
  const p = d.probe, canvas = document.getElementById("batch"), pixels = bytes(p.pixels), n = p.count;
  const cols = Math.min(n, 8), rows = Math.ceil(n / cols), W = canvas.clientWidth;
  const cell = Math.floor(W / cols), scale = Math.max(1, Math.min(3, Math.floor((cell - 12) / p.w)));
  const rowHeight = p.h * scale + 36;
  canvas.style.height = rows * rowHeight + "px";
  const [ctx] = fit(canvas); ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "center";
  for (let i = 0; i < n; i++) {
    const x = (i % cols) * cell + (cell - p.w * scale) / 2, y = Math.floor(i / cols) * rowHeight + 16;
    picture(ctx, pixels, i, p, x, y, scale);
    const right = p.predicted[i] === p.labels[i];
    ctx.strokeStyle = ctx.fillStyle = right ? GREEN : RED; ctx.lineWidth = right ? 1 : 3;
    ctx.strokeRect(x, y, p.w * scale, p.h * scale);
    ctx.fillText(`${d.class_names[p.predicted[i]]}  ${Math.round(100 * p.confidence[i])}%`, x + p.w * scale / 2, y - 4);
    if (!right) ctx.fillText(`true ${d.class_names[p.labels[i]]}`, x + p.w * scale / 2, y + p.h * scale + 14);
  }
}
function picture(ctx, pixels, i, p, x, y, scale) {  // probe image i: gray as ink on paper, colour as it is
  const n = p.h * p.w, channels = p.channels || 1;
  if (channels === 1) return tile(ctx, pixels.subarray(i * n, (i + 1) * n), p.w, p.h, x, y, scale, LUTS.ink);
  const img = new ImageData(p.w, p.h), base = i * 3 * n;
  for (let k = 0; k < n; k++) { for (let c = 0; c < 3; c++) img.data[4 * k + c] = pixels[base + c * n + k];
    img.data[4 * k + 3] = 255; }
  const off = document.createElement("canvas"); off.width = p.w; off.height = p.h; off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false; ctx.drawImage(off, x, y, p.w * scale, p.h * scale);
}
function drawMaps(d) {
  const box = document.getElementById("maps"); box.replaceChildren();
  const p = d.probe, fig = document.createElement("figure"), c = document.createElement("canvas");
  c.style.width = (p.w * 4) + "px"; c.style.height = (p.h * 4) + "px"; fig.append(c);
  const cap = document.createElement("figcaption");
  cap.textContent = `probe: test image (label ${d.class_names[p.labels[0]]})`;
  fig.append(cap); box.append(fig);
  const [ctx] = fit(c); picture(ctx, bytes(p.pixels), 0, p, 0, 0, 4);
  for (const m of d.maps) {
    const f = document.createElement("figure"), canvas = document.createElement("canvas"), data = bytes(m.data);
    const cols = Math.ceil(Math.sqrt(m.shown * 2)), rows = Math.ceil(m.shown / cols);
    const scale = Math.max(1, Math.round(40 / Math.max(m.h, m.w)));
    canvas.style.width = cols * (m.w * scale + 2) + "px"; canvas.style.height = rows * (m.h * scale + 2) + "px";
    f.append(canvas); const caption = document.createElement("figcaption");
    caption.textContent = `${m.layer}: ${m.channels} × ${m.h}×${m.w}` +
      (m.shown < m.channels ? ` (first ${m.shown})` : "");
    const bar = document.createElement("canvas"); bar.style.width = "180px"; bar.style.height = "26px";
    f.append(caption, bar); box.append(f);
    const [ctx] = fit(canvas), lut = m.signed ? LUTS.rdbu : LUTS.magma;
    ctx.font = "9px system-ui, sans-serif"; ctx.textBaseline = "top";
    for (let k = 0; k < m.shown; k++) {
      const x = (k % cols) * (m.w * scale + 2), y = Math.floor(k / cols) * (m.h * scale + 2);
      tile(ctx, data.subarray(k * m.h * m.w, (k + 1) * m.h * m.w), m.w, m.h, x, y, scale, lut);
      if (m.h * scale >= 20) channelLabel(ctx, String(k), x, y);
    }
    scaleBar(bar, lut, m.signed, m.limit);
    const g = ((d.probe_gradients || {}).maps || []).find(x => x.layer === m.layer);
    if (g) gradientFigure(box, g, cols, scale);
  }
}
function gradientFigure(box, g, cols, scale) {  // the loss's gradient with respect to a layer's maps, beside them
  const f = document.createElement("figure"), canvas = document.createElement("canvas"), data = bytes(g.data);
  const rows = Math.ceil(g.shown / cols);
  canvas.style.width = cols * (g.w * scale + 2) + "px"; canvas.style.height = rows * (g.h * scale + 2) + "px";
  const caption = document.createElement("figcaption");
  caption.textContent = `its gradient (d loss / d output) for the probe: red raises the loss, blue lowers it; ±${fmt(g.limit)}`;
  f.append(canvas, caption); box.append(f); const [ctx] = fit(canvas);  // (sized once it is on the page)
  for (let k = 0; k < g.shown; k++)
    tile(ctx, data.subarray(k * g.h * g.w, (k + 1) * g.h * g.w), g.w, g.h, (k % cols) * (g.w * scale + 2),
         Math.floor(k / cols) * (g.h * scale + 2), scale, LUTS.rdbu);
}

function drawDense(d) {
  const box = document.getElementById("dense"); box.replaceChildren();
  for (const layer of d.dense) {
    const title = document.createElement("h2"), canvas = document.createElement("canvas");
    const v = layer.values, n = v.length, best = v.indexOf(Math.max(...v));
    const ranked = [...v.keys()].sort((a, b) => v[b] - v[a]).slice(0, 3)
      .map(i => `${d.class_names[i]} ${percent(v[i])}`);
    title.textContent = layer.probabilities
      ? `${layer.layer} → softmax: predicted ${ranked[0]}` +
        (ranked.length > 1 ? `; runners-up ${ranked.slice(1).join(", ")}` : "")
      : `${layer.layer}: ${n} units, ${Math.round(100 * v.filter(x => x > 0).length / n)}% active`;
    canvas.style.height = "110px"; box.append(title, canvas);
    const [ctx, W, H] = fit(canvas), top = Math.max(1e-12, ...v.map(Math.abs)), bw = (W - 8) / n;
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
    const base = layer.probabilities ? H - 16 : H - 4, height = base - 14;
    for (let i = 0; i < n; i++) {
      const h = (layer.probabilities ? v[i] : Math.abs(v[i]) / top) * height;
      ctx.fillStyle = layer.probabilities ? (i === best ? GREEN : GREY) : (v[i] >= 0 ? BLUE : RED);
      const width = layer.probabilities ? bw * 0.6 : Math.max(1, bw - 1);
      ctx.fillRect(4 + i * bw + (layer.probabilities ? bw * 0.2 : 0), base - h, width, h);
      if (layer.probabilities) { ctx.fillStyle = "#31373d"; ctx.fillText(d.class_names[i], 4 + (i + 0.5) * bw, H - 3);
        if (v[i] >= 0.01) ctx.fillText(Math.round(100 * v[i]) + "%", 4 + (i + 0.5) * bw, base - h - 3); }
    }
    ctx.strokeStyle = "#8c959f"; ctx.beginPath(); ctx.moveTo(0, base + 0.5); ctx.lineTo(W, base + 0.5); ctx.stroke();
  }
}
function eventMarkers(events) {  // the run's changes as vertical lines on the curves
  const colours = { lr: "#8250df", dropout: "#bc4c00", delay: GREY, paused: "#9a6700", resumed: GREEN };
  return events.filter(e => e.change !== "resumed").map(e => ({ x: e.step, colour: colours[e.change] || GREY,
    label: e.change === "paused" ? "paused" : `${e.change} ${fmt(e.from)}→${fmt(e.to)}` }));
}
async function control(command) {
  const note = document.getElementById("control-note");
  try {
    const response = await fetch("api/control", { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify(command) });
    const answer = await response.json();
    note.textContent = response.ok ? `${command.action}: done` + (answer.paused ? " (paused)" : "") : answer.error;
    note.style.color = response.ok ? "" : RED; pollSoon();
  } catch (e) { note.textContent = `the run's server did not answer (${e.message})`; note.style.color = RED; }
}
function drawControls(d) {
  const panel = document.getElementById("controls-panel");
  panel.hidden = !d.controls || ["finished", "stopped", "failed"].includes(d.status);
  if (panel.hidden) return;
  document.getElementById("pause").disabled = d.status === "paused";
  document.getElementById("resume").disabled = document.getElementById("step").disabled = d.status !== "paused";
  const lr = document.getElementById("lr"); if (document.activeElement !== lr) lr.value = +d.lr.toPrecision(4);
  document.getElementById("dropout-control").hidden = d.dropout === null;
  const dropout = document.getElementById("dropout");
  if (d.dropout !== null && document.activeElement !== dropout) dropout.value = d.dropout;
  const delay = document.getElementById("delay"); if (document.activeElement !== delay) delay.value = d.delay;
  document.getElementById("delay-value").textContent = d.delay ? `${d.delay} s per step` : "off";
}
function setupControls() {
  const $ = id => document.getElementById(id);
  $("pause").onclick = () => control({ action: "pause" });
  $("resume").onclick = () => control({ action: "resume" });
  $("step").onclick = () => control({ action: "step" });
  $("set-lr").onclick = () => control({ action: "set", lr: Number($("lr").value) });
  $("set-dropout").onclick = () => control({ action: "set", dropout: Number($("dropout").value) });
  $("delay").onchange = () => control({ action: "set", delay: Number($("delay").value) });
}
function bandChart(canvas, points) {  // percentiles [p0, p10, p25, p50, p75, p90, p100] per step, as bands
  const [ctx, W, H] = fit(canvas), L = 44, R = 6, T = 6, B = 18;
  if (!points.length) return;
  const lo = Math.min(...points.map(p => p[1][0])), hi = Math.max(...points.map(p => p[1][6]));
  const x0 = points[0][0], x1 = Math.max(points[points.length - 1][0], x0 + 1);
  const X = x => L + (W - L - R) * (x - x0) / (x1 - x0), Y = y => T + (H - T - B) * (1 - (y - lo) / ((hi - lo) || 1));
  for (const [a, b, alpha] of [[0, 6, 0.18], [1, 5, 0.3], [2, 4, 0.45]]) {
    ctx.fillStyle = `rgba(9,105,218,${alpha})`; ctx.beginPath();
    points.forEach((p, i) => i ? ctx.lineTo(X(p[0]), Y(p[1][b])) : ctx.moveTo(X(p[0]), Y(p[1][b])));
    for (let i = points.length - 1; i >= 0; i--) ctx.lineTo(X(points[i][0]), Y(points[i][1][a]));
    ctx.closePath(); ctx.fill(); }
  ctx.strokeStyle = BLUE; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach((p, i) => i ? ctx.lineTo(X(p[0]), Y(p[1][3])) : ctx.moveTo(X(p[0]), Y(p[1][3]))); ctx.stroke();
  ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#59636e"; ctx.textAlign = "right";
  ctx.fillText(fmt(hi), L - 4, T + 8); ctx.fillText(fmt(lo), L - 4, H - B); ctx.textAlign = "center";
  ctx.fillText(`step ${x0}`, L + 24, H - 4); ctx.fillText(String(x1), W - R - 12, H - 4);
}
function drawBands(boxId, vitals, field, names) {
  const box = document.getElementById(boxId), keys = Object.keys((vitals[vitals.length - 1] || {})[field] || {});
  if (box.dataset.keys !== keys.join()) { box.replaceChildren(); box.dataset.keys = keys.join();
    for (const key of keys) { const f = document.createElement("figure"), c = document.createElement("canvas");
      const cap = document.createElement("figcaption"); cap.textContent = `${names[+key.split(".")[0]]}, ${key}`;
      c.dataset.key = key; f.append(c, cap); box.append(f); } }
  for (const c of box.querySelectorAll("canvas"))
    bandChart(c, vitals.filter(v => v[field][c.dataset.key]).map(v => [v.step, v[field][c.dataset.key]]));
}
function drawVitals(d) {
  const vitals = d.vitals || [], colours = [BLUE, RED, GREEN, "#8250df", "#bc4c00", GREY];
  drawBands("weight-bands", vitals, "weights", d.layers); drawBands("grad-bands", vitals, "grads", d.layers);
  const keys = Object.keys((vitals[vitals.length - 1] || {}).update_ratio || {});
  chart(document.getElementById("ratios"), keys.map((k, i) => ({ colour: colours[i % colours.length],
    points: vitals.filter(v => v.update_ratio[k]).map(v => [v.step, v.update_ratio[k]]) })),
    { log: true, xmax: d.steps_total || 0, markers: eventMarkers(d.events || []) });
  document.getElementById("ratios-note").textContent = "‖ΔW‖ / ‖W‖ of one step per snapshot (about 1e-3 is " +
    "healthy): " + keys.map((k, i) => `${["blue", "red", "green", "purple", "orange", "grey"][i % 6]} ${k}`).join(", ");
  const layers = Object.keys((vitals[vitals.length - 1] || {}).dead || {});
  chart(document.getElementById("dead"), layers.map((k, i) => ({ colour: colours[i % colours.length],
    points: vitals.filter(v => v.dead[k] !== undefined).map(v => [v.step, v.dead[k]]) })),
    { ymin: 0, ymax: 1, percent: true, xmax: d.steps_total || 0 });
  document.getElementById("dead-note").textContent = "per ReLU layer, on the measured step's batch: " +
    layers.map((k, i) => `${["blue", "red", "green", "purple", "orange", "grey"][i % 6]} ${k}`).join(", ");
}
function draw(d) {
  document.getElementById("title").textContent = d.title || "a CNN learning";
  const pct = d.steps_total ? Math.min(100, 100 * d.step / d.steps_total) : 0;
  document.querySelector("#bar div").style.width = pct + "%";
  let text = `step ${d.step}` + (d.steps_total ? ` of ${d.steps_total}` : "") + `, epoch ${d.epoch} of ${d.epochs}`;
  if (d.images_per_s) text += `, ${Math.round(d.images_per_s).toLocaleString()} images/s`;
  text += `, ${d.elapsed_s.toFixed(0)} s, ${d.parameters.toLocaleString()} parameters`;
  if (d.test_accuracy !== undefined) text += `; test accuracy ${(100 * d.test_accuracy).toFixed(2)}%`;
  document.getElementById("status").innerHTML = `<span class="badge ${d.status}">${d.status}</span>`;
  document.getElementById("status").append(text);
  const ends = d.epoch_records.map(e => e.step), xmax = d.steps_total || 0, markers = eventMarkers(d.events || []);
  const val = d.epoch_records.filter(e => e.val_loss !== undefined);
  chart(document.getElementById("loss"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[1]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_loss]) }], { log: true, xmax, epochEnds: ends, markers });
  chart(document.getElementById("accuracy"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[2]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_accuracy]) }],
    { ymin: Math.max(0, Math.floor(10 * Math.min(1, ...d.curve.map(p => p[2]), ...val.map(e => e.val_accuracy))) / 10),
      ymax: 1, percent: true, xmax, epochEnds: ends, markers });
  drawKernels(d); drawKernelGradients(d); drawBatch(d); drawMaps(d); drawDense(d); drawControls(d); drawVitals(d);
  document.title = `cycnn live: step ${d.step} (${d.status})`;
  document.body.dataset.drawnStep = d.step;
  document.body.dataset.status = d.status;
}
let pollTimer = null, polling = false, pollAgain = false;
async function poll() {
  if (polling) { pollAgain = true; return; }
  polling = true; clearTimeout(pollTimer);
  let wait = 1000;
  try {
    const response = await fetch("data.json", { cache: "no-store" });
    const d = await response.json();
    document.getElementById("conn").textContent = "";
    if (!d.curve) document.getElementById("status").textContent = "the run is starting...";
    else if (d.version !== lastVersion) { lastVersion = d.version; last = d; draw(d); }
    if (d.status === "finished" || d.status === "stopped" || d.status === "failed") wait = 3000;
  } catch (e) {
    if (last) document.getElementById("conn").textContent = "the run's server has stopped: this is its last state";
    else document.getElementById("status").textContent = "waiting for the training run...";
    wait = 5000;
  }
  polling = false;
  pollTimer = setTimeout(poll, pollAgain ? 0 : wait); pollAgain = false;
}
function pollSoon() { setTimeout(poll, 150); }  // after a command: its effect, without waiting for the next poll
window.addEventListener("resize", () => { if (last) draw(last); });
setupControls();
poll();
