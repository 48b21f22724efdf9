// The live page's script: it polls data.json every second and draws each new snapshot on canvases (the curves,
// the kernels, the probe batch, the feature maps with their channel numbers and colour scales, and the dense
// layers). It is served inline in live.html.
"use strict";
const MAGMA = [[0,0,4],[28,16,68],[79,18,123],[129,37,129],[181,54,122],[229,80,100],[251,135,97],[254,194,135],
               [252,253,191]];
const RDBU = [[5,48,97],[33,102,172],[67,147,195],[146,197,222],[209,229,240],[247,247,247],[253,219,199],
              [244,165,130],[214,96,77],[178,24,43],[103,0,31]];
const BLUE = "#0969da", RED = "#cf222e", GREEN = "#1a7f37", GREY = "#8c959f";
let lastVersion = -1, last = null;

function colour(map, t) {  // t in [0, 1]
  t = Math.min(1, Math.max(0, t)) * (map.length - 1);
  const i = Math.min(map.length - 2, Math.floor(t)), f = t - i;
  return map[i].map((v, k) => Math.round(v + f * (map[i + 1][k] - v)));
}
function bytes(b64) { const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i); return out; }
function fit(canvas) {  // size the drawing buffer to the displayed size
  const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d"); ctx.setTransform(ratio, 0, 0, ratio, 0, 0); ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}
function tile(ctx, values, w, h, x, y, scale, lut) {  // draw w x h values (0..255 levels) as pixels
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) { const c = lut[values[i]];
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255; }
  const off = document.createElement("canvas"); off.width = w; off.height = h;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false; ctx.drawImage(off, x, y, w * scale, h * scale);
}
const LUTS = { magma: [...Array(256).keys()].map(v => colour(MAGMA, v / 255)),
               rdbu: [...Array(256).keys()].map(v => colour(RDBU, v / 255)),
               ink: [...Array(256).keys()].map(v => [255 - v, 255 - v, 255 - v]) };

function ticks(lo, hi, n) {
  const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
  const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}
function logTicks(lo, hi) {  // 1, 2 and 5 times the powers of ten between 10^lo and 10^hi
  const out = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++)
    for (const m of [1, 2, 5]) { const v = +(m * Math.pow(10, k)).toPrecision(1);
      if (Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9) out.push(v); }
  return out;
}
function chart(canvas, series, opts) {
  const [ctx, W, H] = fit(canvas), L = 52, R = 12, T = 8, B = 28;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) { ctx.font = "13px system-ui, sans-serif"; ctx.fillStyle = GREY;
    ctx.fillText("waiting for the first steps...", L, H / 2); return; }
  // on a log scale (opts.log) the axis runs over log10 of the values
  const f = opts.log ? v => Math.log10(Math.max(v, 1e-4)) : v => v;
  let xmax = Math.max(opts.xmax || 0, ...pts.map(p => p[0])), ymin = opts.ymin, ymax = opts.ymax;
  if (ymin === undefined) ymin = Math.min(...pts.map(p => f(p[1])));
  if (ymax === undefined) ymax = Math.max(...pts.map(p => f(p[1])));
  if (ymax <= ymin) ymax = ymin + (opts.log ? 0.5 : 1);
  const room = 0.05 * (ymax - ymin);  // space above the highest point and below the lowest
  if (opts.ymax === undefined) ymax += room;
  if (opts.ymin === undefined) ymin -= room;
  const X = x => L + (W - L - R) * x / Math.max(xmax, 1);
  const Y = y => T + (H - T - B) * (1 - (f(y) - ymin) / (ymax - ymin));
  ctx.font = "11px system-ui, sans-serif"; ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#59636e"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const yTicks = opts.log ? logTicks(ymin, ymax) : ticks(ymin, ymax, 5);
  for (const v of yTicks) { ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W - R, Y(v)); ctx.stroke();
    ctx.fillText(opts.percent ? Math.round(v * 100) + "%" : String(v), L - 6, Y(v)); }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const v of ticks(0, xmax, 6)) ctx.fillText(String(v), X(v), H - B + 6);
  ctx.fillText("step", W - R - 14, H - 12);
  for (const e of opts.epochEnds || []) { ctx.strokeStyle = "#afb8c1"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(X(e), T); ctx.lineTo(X(e), H - B); ctx.stroke(); ctx.setLineDash([]); }
  ctx.strokeStyle = "#8c959f"; ctx.strokeRect(L, T, W - L - R, H - T - B);
  for (const s of series) {
    ctx.strokeStyle = ctx.fillStyle = s.colour; ctx.lineWidth = 2; ctx.beginPath();
    s.points.forEach((p, i) => i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1])));
    if (s.points.length > 1) ctx.stroke();
    if (s.dots || s.points.length === 1) for (const p of s.points) { ctx.beginPath();
      ctx.arc(X(p[0]), Y(p[1]), 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5;
      ctx.stroke(); }
  }
}

function drawKernels(d) {
  const k = d.kernels, canvas = document.getElementById("kernels");
  if (!k) { const [ctx] = fit(canvas); ctx.fillText("this model has no convolution layer", 10, 20); return; }
  document.getElementById("kernels-title").textContent =
    `First-layer kernels: ${k.count} of ${k.h}×${k.w}` + (k.in_channels > 1 ? " (summed over input channels)" : "");
  const cols = Math.min(k.count, k.count <= 32 ? 8 : 16), rows = Math.ceil(k.count / cols);
  canvas.style.height = "auto";
  const W = canvas.clientWidth, scale = Math.max(2, Math.min(20, Math.floor((W - 8 * cols) / cols / k.w)));
  canvas.style.height = (rows * (k.h * scale + 4)) + "px";
  const [ctx] = fit(canvas), limit = Math.max(1e-12, ...k.values.map(Math.abs));
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
    tile(ctx, pixels.subarray(i * p.h * p.w, (i + 1) * p.h * p.w), p.w, p.h, x, y, scale, LUTS.ink);
    const right = p.predicted[i] === p.labels[i];
    ctx.strokeStyle = ctx.fillStyle = right ? GREEN : RED; ctx.lineWidth = right ? 1 : 3;
    ctx.strokeRect(x, y, p.w * scale, p.h * scale);
    ctx.fillText(`${d.class_names[p.predicted[i]]}  ${Math.round(100 * p.confidence[i])}%`, x + p.w * scale / 2, y - 4);
    if (!right) ctx.fillText(`true ${d.class_names[p.labels[i]]}`, x + p.w * scale / 2, y + p.h * scale + 14);
  }
}
function drawMaps(d) {
  const box = document.getElementById("maps"); box.replaceChildren();
  const p = d.probe, fig = document.createElement("figure"), c = document.createElement("canvas");
  c.style.width = (p.w * 4) + "px"; c.style.height = (p.h * 4) + "px"; fig.append(c);
  const cap = document.createElement("figcaption");
  cap.textContent = `probe: test image (label ${d.class_names[p.labels[0]]})`;
  fig.append(cap); box.append(fig);
  const [ctx] = fit(c); tile(ctx, bytes(p.pixels).subarray(0, p.h * p.w), p.w, p.h, 0, 0, 4, LUTS.ink);
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
  }
}
function channelLabel(ctx, text, x, y) {  // the channel's number in the tile's corner, white on dark
  ctx.fillStyle = "rgba(0,0,0,0.55)"; ctx.fillRect(x, y, ctx.measureText(text).width + 3, 10);
  ctx.fillStyle = "#fff"; ctx.fillText(text, x + 1.5, y + 0.5);
}
function scaleBar(canvas, lut, signed, limit) {  // the colour scale of a layer's maps, with its values
  const [ctx, W] = fit(canvas), left = 14, width = W - 2 * left;
  for (let v = 0; v < 256; v++) { const c = lut[v]; ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
    ctx.fillRect(left + v * width / 256, 0, width / 256 + 0.5, 10); }
  ctx.strokeStyle = "#8c959f"; ctx.strokeRect(left, 0, width, 10);
  ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#59636e"; ctx.textBaseline = "top";
  ctx.textAlign = "center"; const top = String(+Number(limit).toPrecision(3));
  ctx.fillText(signed ? `−${top}` : "0", left, 13); ctx.fillText(top, left + width, 13);
  if (signed) ctx.fillText("0", left + width / 2, 13);
}
function percent(p) {  // as the pictures write it: 99.2%, 0.6%, 0.03%, <0.01%
  if (p >= 0.1) return (100 * p).toFixed(1) + "%";
  return p >= 1e-4 ? +(100 * p).toPrecision(2) + "%" : "<0.01%";
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
  const ends = d.epoch_records.map(e => e.step), xmax = d.steps_total || 0;
  const val = d.epoch_records.filter(e => e.val_loss !== undefined);
  chart(document.getElementById("loss"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[1]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_loss]) }], { log: true, xmax, epochEnds: ends });
  chart(document.getElementById("accuracy"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[2]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_accuracy]) }],
    { ymin: Math.max(0, Math.floor(10 * Math.min(1, ...d.curve.map(p => p[2]), ...val.map(e => e.val_accuracy))) / 10),
      ymax: 1, percent: true, xmax, epochEnds: ends });
  drawKernels(d); drawBatch(d); drawMaps(d); drawDense(d);
  document.title = `cycnn live: step ${d.step} (${d.status})`;
  document.body.dataset.drawnStep = d.step;
  document.body.dataset.status = d.status;
}
async function poll() {
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
  setTimeout(poll, wait);
}
window.addEventListener("resize", () => { if (last) draw(last); });
poll();
