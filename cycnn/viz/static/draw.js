// What the pages share (the live page and the explorer): colour maps, base64 bytes, canvases sized to their
// display, tiles of quantized maps, line charts with their ticks, colour scales and percentages. Served inline,
// before the page's own script.
"use strict";
const MAGMA = [[0,0,4],[28,16,68],[79,18,123],[129,37,129],[181,54,122],[229,80,100],[251,135,97],[254,194,135],
               [252,253,191]];
const RDBU = [[5,48,97],[33,102,172],[67,147,195],[146,197,222],[209,229,240],[247,247,247],[253,219,199],
              [244,165,130],[214,96,77],[178,24,43],[103,0,31]];
const BLUE = "#0969da", RED = "#cf222e", GREEN = "#1a7f37", GREY = "#8c959f";

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
const TILE = { canvas: null, images: {} };  // one scratch canvas and one ImageData per tile size, reused
function tile(ctx, values, w, h, x, y, scale, lut) {  // draw w x h values (0..255 levels) as pixels
  const key = `${w}x${h}`, img = TILE.images[key] || (TILE.images[key] = new ImageData(w, h)), data = img.data;
  for (let i = 0; i < w * h; i++) { const c = lut[values[i]];
    data[4 * i] = c[0]; data[4 * i + 1] = c[1]; data[4 * i + 2] = c[2]; data[4 * i + 3] = 255; }
  const off = TILE.canvas || (TILE.canvas = document.createElement("canvas"));
  if (off.width !== w || off.height !== h) { off.width = w; off.height = h; }
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
  const xmin = opts.xmin || 0;
  let xmax = Math.max(opts.xmax || 0, ...pts.map(p => p[0])), ymin = opts.ymin, ymax = opts.ymax;
  if (ymin === undefined) ymin = Math.min(...pts.map(p => f(p[1])));
  if (ymax === undefined) ymax = Math.max(...pts.map(p => f(p[1])));
  if (ymax <= ymin) ymax = ymin + (opts.log ? 0.5 : 1);
  const room = 0.05 * (ymax - ymin);  // space above the highest point and below the lowest
  if (opts.ymax === undefined) ymax += room;
  if (opts.ymin === undefined) ymin -= room;
  const X = x => L + (W - L - R) * (x - xmin) / Math.max(xmax - xmin, 1e-9);
  const Y = y => T + (H - T - B) * (1 - (f(y) - ymin) / (ymax - ymin));
  ctx.font = "11px system-ui, sans-serif"; ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#59636e"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const yTicks = opts.log ? logTicks(ymin, ymax) : ticks(ymin, ymax, 5);
  for (const v of yTicks) { ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W - R, Y(v)); ctx.stroke();
    ctx.fillText(opts.percent ? Math.round(v * 100) + "%" : String(v), L - 6, Y(v)); }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const v of ticks(xmin, xmax, 6)) ctx.fillText(String(v), X(v), H - B + 6);
  ctx.fillText(opts.xlabel || "step", W - R - 14, H - 12);
  (opts.markers || []).forEach((m, k) => { ctx.strokeStyle = ctx.fillStyle = m.colour; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(X(m.x), T); ctx.lineTo(X(m.x), H - B); ctx.stroke();
    if (m.label) { ctx.textAlign = "left"; ctx.textBaseline = "top";  // staggered: changes close together stay legible
      ctx.fillText(m.label, X(m.x) + 3, T + 2 + 13 * (k % 4)); } });
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
function fmt(v) {  // a number in three significant digits, or in exponent form when it is very large or small
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : +v.toPrecision(3);
}
