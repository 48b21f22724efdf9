// The explorer's script: the drawing pad and the other inputs, one request to /api/predict at a time (a stroke
// that moves while one is out is sent when it returns, never queued up), and the panels drawn from each answer:
// the input the network saw, the probabilities, every layer, one unit's arithmetic, saliency, Grad-CAM, occlusion,
// the sliders, the robustness curves, the PCA map and the confusion matrix. Served inline in explore.html.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token");
const CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                       "#bcbd22", "#17becf"];
const SLIDERS = { rotate: ["rotate (degrees)", 1], shift_x: ["shift right (pixels)", 0.5],
                  shift_y: ["shift down (pixels)", 0.5], scale: ["scale", 0.05],
                  thickness: ["thicker (+) / thinner (−)", 1], noise: ["noise (σ)", 0.02] };
const MAX_MAPS = 64;  // channels of a layer shown
const $ = id => document.getElementById(id);
const state = { model: null, source: null, strokes: [], drawing: false, inFlight: false, pending: false,
                target: null, detail: null, position: null, channel: null, atlas: null, last: null, answered: 0,
                views: [], backdrop: null };

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (TOKEN) headers["X-Cycnn-Token"] = TOKEN;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}
function showError(text) { $("error").textContent = text || ""; }
function classColour(k) { return k < CLASS_COLOURS.length ? CLASS_COLOURS[k] : `hsl(${(k * 137) % 360} 60% 45%)`; }

// --- the input: the drawing pad, uploads, test images ----------------------------------------------------------
const pad = $("pad"), padCtx = pad.getContext("2d");
function redrawPad() {
  padCtx.fillStyle = "#fff"; padCtx.fillRect(0, 0, pad.width, pad.height);
  if (state.backdrop) { const b = state.backdrop, k = Math.min(pad.width / b.width, pad.height / b.height);
    padCtx.imageSmoothingEnabled = true;
    padCtx.drawImage(b, (pad.width - b.width * k) / 2, (pad.height - b.height * k) / 2, b.width * k, b.height * k); }
  padCtx.strokeStyle = padCtx.fillStyle = "#000"; padCtx.lineCap = padCtx.lineJoin = "round";
  for (const s of state.strokes) {
    padCtx.lineWidth = s.width;
    if (s.points.length === 1) { padCtx.beginPath(); padCtx.arc(...s.points[0], s.width / 2, 0, 2 * Math.PI);
      padCtx.fill(); continue; }
    padCtx.beginPath(); padCtx.moveTo(...s.points[0]); for (const p of s.points.slice(1)) padCtx.lineTo(...p);
    padCtx.stroke();
  }
}
function padPoint(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener("pointerdown", e => {
  e.preventDefault(); pad.setPointerCapture(e.pointerId);
  if (!state.source || state.source.kind !== "drawing") { state.strokes = []; state.backdrop = null; }
  state.source = { kind: "drawing" }; state.drawing = true;
  state.strokes.push({ width: +$("pen").value, points: [padPoint(e)] });
  $("source-note").textContent = "your drawing"; redrawPad(); schedule();
});
pad.addEventListener("pointermove", e => {
  if (!state.drawing) return;
  const stroke = state.strokes[state.strokes.length - 1];
  for (const c of (e.getCoalescedEvents ? e.getCoalescedEvents() : [e])) stroke.points.push(padPoint(c));
  redrawPad(); schedule();
});
for (const name of ["pointerup", "pointercancel"])
  pad.addEventListener(name, () => { if (state.drawing) { state.drawing = false; schedule(); } });
$("undo").onclick = () => { if (state.source && state.source.kind === "drawing") state.strokes.pop();
  if (!state.strokes.length) return clearAll(); redrawPad(); schedule(); };
$("clear").onclick = () => clearAll();
function clearAll() {
  state.strokes = []; state.source = null; state.backdrop = null; redrawPad();
  $("top-label").textContent = "?"; $("top-note").textContent = "draw a digit"; document.body.dataset.label = "";
}
function useFile(file) {
  if (!file) return;
  state.source = { kind: "file", file }; state.strokes = [];
  $("source-note").textContent = `uploaded: ${file.name}`;
  const image = new Image(); image.onload = () => { state.backdrop = image; redrawPad(); };
  image.src = URL.createObjectURL(file); schedule();
}
$("upload").onchange = e => useFile(e.target.files[0]);
pad.addEventListener("dragover", e => { e.preventDefault(); pad.classList.add("dropping"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", e => { e.preventDefault(); pad.classList.remove("dropping");
  useFile(e.dataTransfer.files[0]); });
async function loadTest(query) {
  try {
    const t = await api("/api/test-image?" + query);
    state.source = { kind: "pixels", pixels: t.pixels }; state.strokes = [];
    state.backdrop = pixelCanvas(t.pixels, t.shape, true);
    $("test-index").value = t.index;
    const names = state.model.class_names;
    $("source-note").textContent = `test image ${t.index}: a ${names[t.label]}` +
      (t.predicted !== t.label ? ` (the model says ${names[t.predicted]})` : "");
    redrawPad(); schedule();
  } catch (e) { showError(e.message); }
}
$("test-load").onclick = () => loadTest(`index=${encodeURIComponent($("test-index").value)}`);
$("test-random").onclick = () => loadTest("pick=random");
$("test-mistake").onclick = () => loadTest("pick=mistake");
function pixelCanvas(pixels, shape, paper) {  // nested [0, 1] pixels -> a canvas (a gray digit as ink on paper)
  const [c, h, w] = shape, canvas = document.createElement("canvas"); canvas.width = w; canvas.height = h;
  const img = new ImageData(w, h), at = (k, y, x) => c === 1 ? pixels[y][x] : pixels[k][y][x];
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { const i = 4 * (y * w + x);
    for (let k = 0; k < 3; k++) { const v = Math.round(255 * at(c === 1 ? 0 : k, y, x));
      img.data[i + k] = paper && c === 1 ? 255 - v : v; }
    img.data[i + 3] = 255; }
  canvas.getContext("2d").putImageData(img, 0, 0); return canvas;
}

// --- one request at a time -------------------------------------------------------------------------------------
function schedule() { if (state.inFlight) { state.pending = true; return; } send(); }
function body() {
  const s = state.source;
  if (!s || (s.kind === "drawing" && !state.strokes.length)) return Promise.resolve(null);
  if (s.kind === "file") return Promise.resolve({ type: s.file.type || "application/octet-stream", data: s.file });
  if (s.kind === "pixels") return Promise.resolve({ type: "application/json", data: JSON.stringify({ pixels: s.pixels }) });
  return new Promise(resolve => pad.toBlob(blob => resolve({ type: "image/png", data: blob }), "image/png"));
}
function query() {
  const q = new URLSearchParams({ explain: "1", occlusion: state.drawing ? "0" : "1" });
  for (const [name, range] of Object.entries(state.model.transforms)) {
    const v = +$(`slider-${name}`).value; if (v !== range[2]) q.set(name, v); }
  if (state.target !== null) q.set("target", state.target);
  if (state.detail) { q.set("layer", state.detail.layer); q.set("unit", state.detail.unit); }
  if (state.atlas) q.set("atlas", state.atlas.layer);
  return q.toString();
}
async function send() {
  state.inFlight = true; state.pending = false;
  try {
    const b = await body();
    if (b) { const started = performance.now();
      const r = await api("/api/predict?" + query(), { method: "POST", headers: { "Content-Type": b.type }, body: b.data });
      r.roundTrip = performance.now() - started; render(r); showError(""); }
  } catch (e) { showError(e.message); document.body.dataset.error = e.message; }
  finally { state.inFlight = false; if (state.pending) schedule(); }
}

// --- drawing an answer -----------------------------------------------------------------------------------------
function render(r) {
  state.last = r;
  drawSeen(r.input); drawAnswer(r); drawLayers(r.layers);
  if (r.detail) drawDetail(r.detail); else $("detail-panel").hidden = true;
  if (r.detail && state.reveal) { state.reveal = false; $("detail-panel").scrollIntoView({ block: "nearest" }); }
  drawWhy(r);
  if (state.atlas) drawAtlas(r.atlas_point);
  document.body.dataset.answered = ++state.answered; document.body.dataset.label = r.label;
}
function levelsCanvas(canvas, levels, w, h, lut, offset = 0) {  // uint8 levels -> the canvas's own pixels
  canvas.width = w; canvas.height = h; const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) { const c = lut[levels[offset + i]];
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255; }
  canvas.getContext("2d").putImageData(img, 0, 0);
}
function inputCanvas(input) {  // the network's input (uint8, C x H x W) as a canvas of its own size
  const [c, h, w] = input.shape, data = bytes(input.data), canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h; const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) { for (let k = 0; k < 3; k++) img.data[4 * i + k] = data[(c === 1 ? 0 : k) * w * h + i];
    img.data[4 * i + 3] = 255; }
  canvas.getContext("2d").putImageData(img, 0, 0); return canvas;
}
function drawSeen(input) {
  const seen = $("seen"), source = inputCanvas(input); seen.width = source.width; seen.height = source.height;
  seen.getContext("2d").drawImage(source, 0, 0);
  $("seen-caption").textContent = `the ${input.shape[1]}×${input.shape[2]} input the network sees`;
}
function drawAnswer(r) {
  const names = state.model.class_names, p = r.probability_list;
  $("top-label").textContent = r.label;
  $("top-note").textContent = `${percent(p[r.class_index])} sure; answered in ${Math.round(r.roundTrip)} ms ` +
    `(${r.milliseconds.toFixed(1)} ms in the server)` +
    (r.weights && r.weights.step !== undefined ? `; the weights of step ${r.weights.step}` : "");
  const bars = $("bars"); bars.replaceChildren();
  const target = r.target !== undefined ? r.target : r.class_index;
  names.forEach((name, k) => {
    const row = document.createElement("div"); row.className = "row" + (k === r.class_index ? " top" : "") +
      (k === target ? " target" : "");
    row.dataset.class = k; row.title = `explain class ${name}`;
    const label = document.createElement("span"); label.textContent = name;
    const track = document.createElement("div"), bar = document.createElement("div"); bar.className = "bar";
    bar.style.width = (100 * p[k]).toFixed(2) + "%"; track.append(bar);
    const value = document.createElement("span"); value.textContent = percent(p[k]);
    row.append(label, track, value); row.onclick = () => { state.target = k; schedule(); };
    bars.append(row);
  });
}

// --- every layer -----------------------------------------------------------------------------------------------
function buildLayers() {
  const box = $("layers"); box.replaceChildren(); state.views = [];
  for (const layer of state.model.layers) {
    const div = document.createElement("div"); div.className = "layer";
    const title = document.createElement("h3");
    title.textContent = `${layer.name}: ${layer.shape.join("×")}`; div.append(title);
    const view = { layer, canvases: [], div };
    if (layer.kind === "maps") {
      const maps = document.createElement("div"); maps.className = "maps";
      const [channels, h, w] = layer.shape, shown = Math.min(channels, MAX_MAPS);
      const size = Math.max(28, Math.min(64, 4 * Math.max(h, w)));
      for (let k = 0; k < shown; k++) {
        const c = document.createElement("canvas"); c.style.width = size + "px"; c.style.height = (size * h / w) + "px";
        c.title = `channel ${k}`; c.dataset.layer = layer.index; c.dataset.channel = k;
        c.onclick = () => chooseMap(layer.index, k); maps.append(c); view.canvases.push(c);
      }
      div.append(maps);
      if (shown < channels) { const n = document.createElement("p"); n.className = "note";
        n.textContent = `the first ${shown} of ${channels} channels`; div.append(n); }
    } else if (layer.kind === "vector") {
      const c = document.createElement("canvas"); c.className = "vector"; div.append(c); view.vector = c;
      c.onclick = e => { const n = layer.shape[0], r = c.getBoundingClientRect();
        chooseUnit(layer.index, Math.min(n - 1, Math.max(0, Math.floor((e.clientX - r.left - 4) / ((r.width - 8) / n))))); };
    } else {
      const n = document.createElement("p"); n.className = "note";
      n.textContent = layer.type === "Flatten" ? "the maps above, read row by row into one vector"
        : "dropout is off when the model answers: the same numbers as the layer above";
      div.append(n);
    }
    box.append(div); state.views.push(view);
  }
}
function drawLayers(layers) {
  for (const entry of layers) {
    const view = state.views[entry.index];
    if (entry.kind === "maps") {
      const data = bytes(entry.data), [, h, w] = entry.shape, lut = entry.signed ? LUTS.rdbu : LUTS.magma;
      view.canvases.forEach((c, k) => {
        levelsCanvas(c, data, w, h, lut, k * h * w);
        c.classList.toggle("selected", !!state.detail && detailSource(state.detail.layer) === entry.index &&
                           state.detail.unit === k);
      });
    } else if (entry.kind === "vector") drawVector(view.vector, entry);
  }
}
function drawVector(canvas, entry) {
  const [ctx, W, H] = fit(canvas), v = entry.values, n = v.length, top = Math.max(1e-12, ...v.map(Math.abs));
  const bw = (W - 8) / n, base = H / 2;
  for (let i = 0; i < n; i++) { const h = (Math.abs(v[i]) / top) * (base - 4);
    const chosen = state.detail && state.detail.layer === entry.index && state.detail.unit === i;
    ctx.fillStyle = chosen ? "#000" : v[i] >= 0 ? BLUE : RED;
    ctx.fillRect(4 + i * bw, v[i] >= 0 ? base - h : base, Math.max(1, bw - (n > 64 ? 0 : 1)), Math.max(h, chosen ? 2 : 0)); }
  ctx.strokeStyle = "#8c959f"; ctx.beginPath(); ctx.moveTo(0, base + 0.5); ctx.lineTo(W, base + 0.5); ctx.stroke();
  canvas.title = `${n} units; largest |value| ${fmt(top)}; ${v.filter(x => x > 0).length} positive`;
}
function detailSource(layer) {  // the layer whose maps a detail view highlights (a ReLU's conv shows on the ReLU)
  const next = state.model.layers[layer + 1];
  return next && next.type === "ReLU" ? layer + 1 : layer;
}
function chooseMap(layer, channel) {
  const layers = state.model.layers;
  if (!layers[layer].detail && layer > 0 && layers[layer - 1].type === "Conv2D") layer -= 1;  // a ReLU: its conv
  if (!layers[layer].detail) return showError(`${layers[layer].name} has no detail view`);
  state.detail = { layer, unit: channel }; state.position = null; state.channel = null; state.reveal = true;
  schedule();
}
function chooseUnit(layer, unit) { state.detail = { layer, unit }; state.position = null; state.reveal = true; schedule(); }

// --- one unit's arithmetic -------------------------------------------------------------------------------------
function valuesCanvas(values, h, w, offset = 0) {  // float values -> a canvas, magma (or red-blue when signed)
  let top = 1e-12, signed = false;
  for (let i = 0; i < h * w; i++) { const v = values[offset + i]; top = Math.max(top, Math.abs(v)); if (v < 0) signed = true; }
  const levels = new Uint8Array(h * w);
  for (let i = 0; i < h * w; i++) { const v = values[offset + i] / top;
    levels[i] = Math.round(signed ? (v + 1) * 127.5 : v * 255); }
  const c = document.createElement("canvas"); levelsCanvas(c, levels, w, h, signed ? LUTS.rdbu : LUTS.magma); return c;
}
function mapFigure(values, h, w, offset, caption, box, onPoint) {  // a scaled map with a highlight rectangle
  const scale = Math.max(2, Math.floor(168 / Math.max(h, w))), canvas = document.createElement("canvas");
  canvas.className = "map"; canvas.width = w * scale; canvas.height = h * scale;
  const ctx = canvas.getContext("2d"); ctx.imageSmoothingEnabled = false;
  ctx.drawImage(valuesCanvas(values, h, w, offset), 0, 0, w * scale, h * scale);
  if (box) { ctx.strokeStyle = "#00e5ff"; ctx.lineWidth = 2;
    ctx.strokeRect(box[1] * scale + 1, box[0] * scale + 1, box[3] * scale - 2, box[2] * scale - 2); }
  if (onPoint) { const pick = e => { const r = canvas.getBoundingClientRect();
      onPoint(Math.floor((e.clientY - r.top) / r.height * h), Math.floor((e.clientX - r.left) / r.width * w)); };
    canvas.onmousemove = pick; canvas.onclick = pick; }
  const fig = document.createElement("figure"), cap = document.createElement("figcaption"); cap.textContent = caption;
  fig.append(canvas, cap); return fig;
}
function numberTable(rows, win) {  // a grid of numbers, coloured by sign, ``win`` [r, c] outlined
  const t = document.createElement("table"); t.className = "numbers";
  const top = Math.max(1e-12, ...rows.flat().map(Math.abs));
  rows.forEach((row, r) => { const tr = t.insertRow(); row.forEach((v, c) => { const td = tr.insertCell();
    td.textContent = fmt(v); const a = Math.min(1, Math.abs(v) / top) * 0.55;
    td.style.background = v >= 0 ? `rgba(207,34,46,${a})` : `rgba(9,105,218,${a})`;
    if (win && win[0] === r && win[1] === c) td.className = "win"; }); });
  return t;
}
function labelled(node, text) { const fig = document.createElement("figure"), cap = document.createElement("figcaption");
  cap.textContent = text; fig.append(node, cap); return fig; }
function position(d) {  // the output position shown: the one chosen, or the map's largest value
  const [oh, ow] = d.output.shape;
  if (state.position && state.position[0] < oh && state.position[1] < ow) return state.position;
  const v = d.output.values, best = v.indexOf(Math.max(...v)); return [Math.floor(best / ow), best % ow];
}
function drawDetail(d) {
  $("detail-panel").hidden = false; const box = $("detail"); box.replaceChildren();
  const name = state.model.layers[d.layer].name;
  if (d.type === "dense") return drawDenseDetail(d, name, box);
  const [r, c] = position(d), [oh, ow] = d.output.shape, repaint = (y, x) => {
    state.position = [y, x]; drawDetail(d); };
  const row = document.createElement("div"); row.className = "row"; box.append(row);
  const out = d.output.values[r * ow + c];
  if (d.type === "pool") {
    const [h, w] = d.input.shape, [ph, pw] = d.pool_size, [sh, sw] = d.stride, top = r * sh, left = c * sw;
    $("detail-title").textContent = `Max pooling at work: ${name}, channel ${d.unit}, output (${r}, ${c})`;
    const cells = [...Array(ph).keys()].map(i => [...Array(pw).keys()].map(j => d.input.values[(top + i) * w + left + j]));
    const flat = cells.flat(), k = flat.indexOf(Math.max(...flat));
    row.append(mapFigure(d.input.values, h, w, 0, `its input, channel ${d.unit} (${h}×${w}); the window in cyan`,
                         [top, left, ph, pw]),
               labelled(numberTable(cells, [Math.floor(k / pw), k % pw]), `the ${ph}×${pw} window; the winner outlined`),
               mapFigure(d.output.values, oh, ow, 0, "the output map: hover or click to move", [r, c, 1, 1], repaint));
    box.append(equation(`max of the window = <b>${fmt(Math.max(...flat))}</b>; the map holds ${fmt(out)} at (${r}, ${c})`));
    return scrubber(box, oh, ow, r, c, repaint);
  }
  const [C, H, W] = d.input.shape, [, kh, kw] = d.kernel.shape, s = d.stride, p = d.padding;
  const at = (ch, y, x) => y < 0 || x < 0 || y >= H || x >= W ? 0 : d.input.values[(ch * H + y) * W + x];
  const partial = [], patches = [];
  for (let ch = 0; ch < C; ch++) { let sum = 0; const patch = [];
    for (let i = 0; i < kh; i++) { patch.push([]); for (let j = 0; j < kw; j++) {
      const v = at(ch, r * s - p + i, c * s - p + j); patch[i].push(v); sum += v * d.kernel.values[(ch * kh + i) * kw + j]; } }
    partial.push(sum); patches.push(patch); }
  const ch = state.channel !== null && state.channel < C ? state.channel
    : partial.indexOf(partial.reduce((a, b) => Math.abs(b) > Math.abs(a) ? b : a, 0));
  const kernel = patches[ch].map((line, i) => line.map((_, j) => d.kernel.values[(ch * kh + i) * kw + j]));
  const products = patches[ch].map((line, i) => line.map((v, j) => v * kernel[i][j]));
  $("detail-title").textContent = `The convolution at work: ${name}, filter ${d.unit}, output (${r}, ${c})`;
  row.append(mapFigure(d.input.values, H, W, ch * H * W, `its input, channel ${ch} of ${C}; the patch in cyan` +
                       (p ? ` (padded by ${p})` : ""), [r * s - p, c * s - p, kh, kw]),
             labelled(numberTable(patches[ch]), "the input patch"), labelled(numberTable(kernel), `× the kernel (filter ${d.unit}, channel ${ch})`),
             labelled(numberTable(products), `= the products, summing to ${fmt(partial[ch])}`),
             mapFigure(d.output.values, oh, ow, 0, "the output map: hover or click to move", [r, c, 1, 1], repaint));
  const total = partial.reduce((a, b) => a + b, 0), z = total + d.bias;
  box.append(equation((C > 1 ? `sum over channel ${ch}: ${fmt(partial[ch])}; over all ${C} channels: ` : "sum: ") +
    `<b>${fmt(total)}</b> + bias ${fmt(d.bias)} = <b>${fmt(z)}</b>` +
    (d.relu ? ` → ReLU → <b>${fmt(Math.max(0, z))}</b>` : "") + `; the map holds ${fmt(out)} at (${r}, ${c})`));
  if (C > 1) box.append(channelPicker(partial, ch, d));
  scrubber(box, oh, ow, r, c, repaint);
}
function equation(html) { const e = document.createElement("p"); e.className = "equation"; e.innerHTML = html;
  e.id = "detail-equation"; return e; }
function channelPicker(partial, chosen, d) {
  const label = document.createElement("label"); label.className = "note"; label.textContent = "input channel shown: ";
  const select = document.createElement("select"); select.id = "detail-channel";
  partial.forEach((v, k) => { const o = new Option(`${k}: contributes ${fmt(v)}`, k, false, k === chosen); select.add(o); });
  select.onchange = () => { state.channel = +select.value; drawDetail(d); };
  label.append(select); return label;
}
function scrubber(box, oh, ow, r, c, repaint) {  // a slider over every output position, and a play button
  const tools = document.createElement("div"); tools.className = "tools";
  const range = document.createElement("input"); range.type = "range"; range.min = 0; range.max = oh * ow - 1;
  range.value = r * ow + c; range.id = "detail-position"; range.style.width = "240px";
  range.oninput = () => repaint(Math.floor(range.value / ow), range.value % ow);
  const play = document.createElement("button"); play.type = "button"; play.textContent = "Slide over the image";
  play.onclick = () => { let k = 0; clearInterval(state.playing);
    state.playing = setInterval(() => { if (k >= oh * ow) return clearInterval(state.playing);
      repaint(Math.floor(k / ow), k % ow); k += 1; }, 60); };
  tools.append("position ", range, play); box.append(tools);
}
function drawDenseDetail(d, name, box) {
  $("detail-title").textContent = `A dense unit at work: ${name}, unit ${d.unit}` +
    (d.layer === state.model.layers.length - 1 ? ` (the score of class ${state.model.class_names[d.unit]})` : "");
  const t = document.createElement("table"); t.className = "numbers";
  t.insertRow().append(...["input", "value", "× weight", "= product"].map(h => { const th = document.createElement("th");
    th.textContent = h; return th; }));
  for (const k of d.contributions) { const tr = t.insertRow();
    const where = k.position ? `channel ${k.position[0]} at (${k.position[1]}, ${k.position[2]})` : `unit ${k.input}`;
    [where, fmt(k.value), fmt(k.weight), fmt(k.product)].forEach(v => { tr.insertCell().textContent = v; }); }
  box.append(labelled(t, `its ${d.contributions.length} largest contributions of ${d.inputs}`));
  box.append(equation(`positive terms ${fmt(d.sum_positive)}, negative terms ${fmt(d.sum_negative)}, + bias ` +
    `${fmt(d.bias)} = <b>${fmt(d.pre_activation)}</b>` + (d.relu ? ` → ReLU → <b>${fmt(d.output)}</b>` : "")));
}

// --- why this answer -------------------------------------------------------------------------------------------
function overlay(canvas, input, heat, smooth) {  // the input in grey, the heat map over it
  const size = 196; canvas.width = canvas.height = size; const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false; ctx.globalAlpha = 1; ctx.drawImage(inputCanvas(input), 0, 0, size, size);
  ctx.fillStyle = "rgba(255,255,255,0.35)"; ctx.fillRect(0, 0, size, size);
  if (!heat) return;
  const [h, w] = heat.shape.slice(-2), levels = bytes(heat.data), off = document.createElement("canvas");
  off.width = w; off.height = h; const img = new ImageData(w, h), lut = heat.signed ? LUTS.rdbu : LUTS.magma;
  for (let i = 0; i < w * h; i++) { const c = lut[levels[i]], a = heat.signed ? Math.abs(levels[i] - 127.5) / 127.5 : levels[i] / 255;
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = Math.round(230 * Math.sqrt(a)); }
  off.getContext("2d").putImageData(img, 0, 0); ctx.imageSmoothingEnabled = smooth; ctx.drawImage(off, 0, 0, size, size);
}
function drawWhy(r) {
  const names = state.model.class_names, target = r.target !== undefined ? r.target : r.class_index;
  $("why-title").textContent = `Why "${names[target]}"` + (target === r.class_index ? " (the answer)" :
    ` (the answer is "${r.label}")`) + ": click a class's bar to ask about another";
  overlay($("saliency"), r.input, r.saliency, false);
  overlay($("gradcam"), r.input, r.gradcam, true);
  $("gradcam-caption").textContent = r.gradcam ? `Grad-CAM on ${r.gradcam.name} (${r.gradcam.shape.join("×")}): ` +
    "where the last convolution's maps that raise the class's score are active" : "Grad-CAM: this model has no convolution";
  if (r.occlusion) { overlay($("occlusion"), r.input, r.occlusion, false);
    $("occlusion-caption").textContent = `occlusion: how much the probability of "${names[r.occlusion.target]}" ` +
      `(${percent(r.occlusion.base)}) falls when a ${r.occlusion.patch}×${r.occlusion.patch} patch is hidden ` +
      `(red: falls, blue: rises; at most ${fmt(r.occlusion.limit)})`; }
}

// --- how sure, under change ------------------------------------------------------------------------------------
function buildSliders() {
  const box = $("sliders"); box.replaceChildren();
  for (const [name, [least, most, neutral]] of Object.entries(state.model.transforms)) {
    const [text, step] = SLIDERS[name] || [name, (most - least) / 100];
    const label = document.createElement("label"); label.textContent = text; label.htmlFor = `slider-${name}`;
    const input = document.createElement("input"); Object.assign(input, { type: "range", id: `slider-${name}`,
      min: name === "scale" ? 0.5 : least, max: name === "scale" ? 2 : most, step, value: neutral });
    const value = document.createElement("span"); value.textContent = neutral;
    input.oninput = () => { value.textContent = input.value; schedule(); markCurves(); };
    box.append(label, input, value);
  }
}
$("reset-sliders").onclick = () => { for (const [name, range] of Object.entries(state.model.transforms)) {
  const s = $(`slider-${name}`); s.value = range[2]; s.nextSibling.textContent = range[2]; } schedule(); markCurves(); };
$("robustness").onclick = async () => {
  const button = $("robustness"); button.disabled = true; button.textContent = "computing on the test set…";
  try { state.curves = await api("/api/robustness"); markCurves(); }
  catch (e) { showError(e.message); }
  finally { button.disabled = false; button.textContent = "Robustness curves on the test set"; }
};
function markCurves() {
  if (!state.curves) return;
  const box = $("curves"); box.replaceChildren();
  for (const [name, curve] of Object.entries(state.curves)) {
    const fig = document.createElement("figure"); fig.style.margin = "0"; const canvas = document.createElement("canvas");
    const cap = document.createElement("figcaption"); cap.textContent = `accuracy against ${(SLIDERS[name] || [name])[0]}`;
    fig.append(canvas, cap); box.append(fig);
    const slider = $(`slider-${name}`), values = curve.values;
    chart(canvas, [{ colour: BLUE, dots: true, points: values.map((v, i) => [v, curve.accuracy[i]]) }],
          { xmin: values[0], xmax: values[values.length - 1], ymin: 0, ymax: 1, percent: true, xlabel: "",
            markers: slider ? [{ x: +slider.value, colour: RED }] : [] });
  }
  $("curves").dataset.drawn = "1";
}

// --- where it sits: the PCA map --------------------------------------------------------------------------------
function buildAtlas() {
  const select = $("atlas-layer"); select.replaceChildren(new Option("the input", -1));
  const layers = state.model.layers.filter(l => l.kind !== "same");
  for (const l of layers) select.add(new Option(l.name, l.index));
  const hidden = layers.filter(l => l.index < state.model.layers.length - 1);
  select.value = hidden.length ? hidden[hidden.length - 1].index : -1;
  select.onchange = () => loadAtlas(+select.value);
}
async function loadAtlas(layer) {
  $("atlas-note").textContent = "computing…";
  try { const a = await api(`/api/atlas?layer=${layer}`); state.atlas = a;
    $("atlas-note").textContent = `PC1 ${percent(a.explained[0])} and PC2 ${percent(a.explained[1] || 0)} of the variance`;
    drawAtlas(null); schedule(); }
  catch (e) { $("atlas-note").textContent = e.message; }
}
function drawAtlas(point) {
  const canvas = $("atlas"), a = state.atlas; if (!a) return;
  if (point) state.atlasPoint = point;
  const [ctx, W, H] = fit(canvas), xs = a.points.map(p => p[0]), ys = a.points.map(p => p[1]);
  const here = state.atlasPoint; if (here) { xs.push(here[0]); ys.push(here[1]); }
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys), m = 12;
  const X = v => m + (W - 2 * m) * (v - x0) / (x1 - x0 || 1), Y = v => H - m - (H - 2 * m) * (v - y0) / (y1 - y0 || 1);
  state.atlasScreen = a.points.map(p => [X(p[0]), Y(p[1]), p[3]]);
  ctx.globalAlpha = 0.65;
  for (const p of a.points) { ctx.fillStyle = classColour(p[2]); ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.6, 0, 2 * Math.PI); ctx.fill(); }
  ctx.globalAlpha = 1; const names = state.model.class_names;
  if (names.length <= 10) { ctx.font = "11px system-ui, sans-serif";
    names.forEach((n, k) => { ctx.fillStyle = classColour(k); ctx.fillRect(W - 86, 8 + 14 * k, 9, 9);
      ctx.fillStyle = "#31373d"; ctx.fillText(n.slice(0, 12), W - 72, 16 + 14 * k); }); }
  if (here) star(ctx, X(here[0]), Y(here[1]));
}
function star(ctx, x, y) {
  ctx.beginPath(); for (let k = 0; k < 10; k++) { const r = k % 2 ? 4 : 10, t = Math.PI / 5 * k - Math.PI / 2;
    ctx.lineTo(x + r * Math.cos(t), y + r * Math.sin(t)); }
  ctx.closePath(); ctx.fillStyle = "#000"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.stroke();
}
$("atlas").onclick = e => {
  if (!state.atlasScreen) return; const r = $("atlas").getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
  let best = null, distance = 64;
  for (const p of state.atlasScreen) { const d = (p[0] - x) ** 2 + (p[1] - y) ** 2; if (d < distance) { distance = d; best = p[2]; } }
  if (best !== null) loadTest(`index=${best}`);
};

// --- the confusion matrix --------------------------------------------------------------------------------------
async function loadConfusion() {
  try { const c = await api("/api/confusion"); state.confusion = c; drawConfusion(c); }
  catch (e) { $("confusion").textContent = e.message; }
}
function drawConfusion(c) {
  const names = state.model.class_names, t = document.createElement("table"); t.className = "confusion";
  const head = t.insertRow(); head.append(document.createElement("th"));
  for (const n of names) { const th = document.createElement("th"); th.textContent = n; head.append(th); }
  c.matrix.forEach((row, i) => { const tr = t.insertRow(), th = document.createElement("th"); th.textContent = names[i];
    tr.append(th);
    row.forEach((count, j) => { const td = tr.insertCell(); td.textContent = count; td.dataset.cell = `${i},${j}`;
      td.className = count === 0 ? "empty" : i === j ? "diagonal" : "off";
      if (count) td.onclick = () => { t.querySelectorAll(".chosen").forEach(x => x.classList.remove("chosen"));
        td.classList.add("chosen"); showCell(i, j); }; }); });
  const note = document.createElement("p"); note.className = "note";
  note.textContent = `${c.images.toLocaleString()} test images, accuracy ${(100 * c.accuracy).toFixed(2)}%`;
  $("confusion").replaceChildren(t, note);
}
async function showCell(i, j) {
  const names = state.model.class_names, indices = state.confusion.cells[i][j], shown = indices.slice(0, 120);
  const box = $("gallery"), title = document.createElement("p"); title.className = "note";
  title.textContent = `${indices.length} images of ${names[i]} read as ${names[j]}` +
    (indices.length > shown.length ? ` (the first ${shown.length})` : "") + ":";
  box.replaceChildren(title);
  try {
    const g = await api(`/api/test-images?indices=${shown.join(",")}`), [c, h, w] = g.shape;
    for (const im of g.images) {
      const fig = document.createElement("figure"), canvas = document.createElement("canvas");
      if (c === 1) levelsCanvas(canvas, bytes(im.data), w, h, LUTS.ink);  // a digit as ink on paper
      else { const colour = inputCanvas({ shape: g.shape, data: im.data }); canvas.width = w; canvas.height = h;
        canvas.getContext("2d").drawImage(colour, 0, 0); }
      const cap = document.createElement("figcaption"); cap.textContent = `#${im.index}`;
      fig.append(canvas, cap); fig.title = `test image ${im.index}: explore it`; fig.dataset.index = im.index;
      fig.onclick = () => loadTest(`index=${im.index}`); box.append(fig);
    }
  } catch (e) { showError(e.message); }
}

// --- start -----------------------------------------------------------------------------------------------------
async function start() {
  try { state.model = await api("/api/model"); } catch (e) { return showError(`cannot reach the explorer: ${e.message}`); }
  const m = state.model;
  if ($("explore-title")) { $("explore-title").textContent = m.title || "a model"; document.title = `cycnn explore: ${m.title}`; }
  $("summary").textContent = `${m.layers.length} layers, ${m.parameters.toLocaleString()} parameters, ` +
    `input ${m.input_shape.join("×")}, ${m.class_names.length} classes` +
    (m.test_set ? `; test set: ${m.test_set.source} (${m.test_set.images.toLocaleString()} images)` : "; no test set");
  buildLayers(); buildSliders(); redrawPad();
  if (m.test_set) { buildAtlas(); $("test-index").max = m.test_set.images - 1;
    if (m.live) liveButtons(); else { loadConfusion(); loadAtlas(+$("atlas-layer").value); } }
  else { for (const id of ["test-tools", "atlas-panel", "confusion-panel", "robustness"]) $(id).hidden = true; }
  if (m.live) { $("explore-section").hidden = false; setInterval(refresh, LIVE_REFRESH_MS); }
  document.body.dataset.ready = "1";
}
// During training (the live page) the weights change under the explorer: the current input is asked again every
// few seconds, and the test-set panels are computed when asked for (on the weights of that moment), so that a page
// nobody touches costs the training nothing.
const LIVE_REFRESH_MS = 2000;
function refresh() { if (state.source && !state.inFlight && !state.drawing) schedule(); }
function liveButtons() {
  const confusion = document.createElement("button"); confusion.type = "button"; confusion.id = "confusion-now";
  confusion.textContent = "Compute it on the weights now"; confusion.onclick = loadConfusion;
  $("confusion").replaceChildren(confusion);
  const atlas = document.createElement("button"); atlas.type = "button"; atlas.textContent = "Map it now";
  atlas.onclick = () => loadAtlas(+$("atlas-layer").value); $("atlas-layer").after(" ", atlas);
}
window.addEventListener("resize", () => { if (state.last) render(state.last); });
start();
