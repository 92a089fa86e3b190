// samtrack viewer: draws the daemon's previews and masks, turns clicks and drags into prompts.
// Messages from the server: binary = one daemon message (protocol v1: topic, header, mask frames),
// text = a reply to one of our requests, or {"type": "viewer"} with the daemon's state.
// A daemon may serve several streams: the page shows one (picked in the header, or ?stream=NAME) and
// names it in every request. Concepts ("track every X") are added and removed in the side panel; the objects a
// detector found carry their concept's text and score, and are drawn faint and dashed while tentative; their
// lifecycle events arrive as text messages {"type": "event"} and are logged (concepts.js: the panel and the log).
"use strict";

const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                 [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [255, 225, 25]];
const MASK_ALPHA = 120;       // mask fill opacity (0-255): the picture stays visible under it
// A mask carried by motion from a key frame is drawn unlike the model's: fainter, striped, its box dashed.
const MOTION_ALPHA = 80;      // its fill opacity
const MOTION_STRIPE = 6;      // every this many diagonal pixels, one stripe is left clear
const RATE_WINDOW_MS = 20000; // rates are measured over the answers of the last 20 s: a 0.2 fps model still reads
const DRAG_PX = 6;            // a pointer that moves further than this (screen px) draws a box, not a click
const KEEP_RESULTS = 64;      // results remembered by frame, to pair with previews that arrive later
const NO_PREVIEW_MS = 2000;   // results without previews for this long: draw masks on black, say why
const LATENCY_SAMPLES = 30;   // glass-to-mask shown as the median of the last few frames (first answers only)
// An object a concept found, not confirmed yet, is drawn fainter than a confirmed one, its box dashed and dotted.
const TENTATIVE_ALPHA = 50;   // its fill opacity
const TENTATIVE_DASH = [2, 3]; // its box's dash pattern (screen px): unlike motion's longer dashes

const $ = (id) => document.getElementById(id);
const canvas = $("view"), ctx = canvas.getContext("2d");
const query = new URLSearchParams(location.search);
const token = query.get("token");
let stream = query.get("stream");  // the stream shown and prompted; null until the first result names one
const streams = new Set();
const results = new Map();    // frame -> {header, overlay}
let ws = null, retryMs = 500, nextRequest = 1;
const pending = new Map();    // request id -> {op, resolve}
let shown = {frame: null, bitmap: null, result: null};
let lastPreviewAt = 0, lastSeq = null, lost = 0;
let objects = [], selected = null;
const arrivals = [], keyArrivals = [], latencies = [];  // times of frames shown, of key frames' model answers
const modelFrames = new Set();  // recent frames the model answered (a prompt's revision is no new key frame)
let drag = null;

const colour = (id) => PALETTE[((id % PALETTE.length) + PALETTE.length) % PALETTE.length];

function setState(state, message) {
  $("state").dataset.state = state;
  $("state").textContent = state;
  $("state-message").textContent = message || "";
}

function showError(text, code) {
  const e = $("error");
  e.textContent = text;
  e.dataset.code = code || "";
  e.classList.add("shown");
}

function clearError() {
  $("error").classList.remove("shown");
  $("error").textContent = "";
}

// --- connection -------------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { retryMs = 500; };
  ws.onmessage = (ev) => (typeof ev.data === "string" ? onText(JSON.parse(ev.data)) : onDaemonMessage(ev.data));
  ws.onclose = () => {
    for (const [, p] of pending) p.resolve(null);
    pending.clear();
    setState("disconnected", `lost the viewer server at ${location.host}; reconnecting in ${retryMs / 1000} s`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}

function onText(msg) {
  if (msg.type === "viewer") {
    setState(msg.state, msg.message);
    return;
  }
  if (msg.type === "event") {
    if (msg.stream === stream) logEvent(msg);
    return;
  }
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  if (!msg.ok && p.quiet) {
    // a background query failed: nothing the user asked for
  } else if (!msg.ok) {
    showError(`${p.op} rejected: ${msg.error.code}: ${msg.error.message}`, msg.error.code);
  } else {
    clearError();
    if (msg.result && Array.isArray(msg.result.objects) && typeof msg.result.objects[0] !== "number") {
      updateObjects(msg.result.objects);
    }
  }
  p.resolve(msg);
}

// quiet: a failure is not shown (a background query, e.g. concepts of a daemon without a detector)
function request(op, args, quiet) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    if (!quiet) showError(`${op} not sent: not connected to the viewer server (reconnecting)`, "disconnected");
    return Promise.resolve(null);
  }
  const id = nextRequest++;
  ws.send(JSON.stringify({id, op, args: stream ? {...args, stream} : args || {}}));
  return new Promise((resolve) => pending.set(id, {op, resolve, quiet}));
}

// --- daemon messages --------------------------------------------------------------------------------

function unpack(buf) {
  const dv = new DataView(buf), n = dv.getUint32(0, true), parts = [];
  let off = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const len = dv.getUint32(4 + 4 * i, true);
    parts.push(new Uint8Array(buf, off, len));
    off += len;
  }
  return parts;
}

function knowStream(name) {
  if (streams.has(name)) return;
  streams.add(name);
  const option = document.createElement("option");
  option.value = option.textContent = name;
  $("stream").append(option);
  $("stream-picker").hidden = streams.size < 2;
  if (stream === null) {
    stream = name;
    refreshConcepts();  // the concepts the daemon already holds for it
  }
  $("stream").value = stream;
}

function pickStream(name) {
  stream = name;
  results.clear();
  shown = {frame: null, bitmap: null, result: null};
  lastSeq = null; lost = 0; arrivals.length = 0; keyArrivals.length = 0; latencies.length = 0;
  modelFrames.clear();
  selected = null;
  updateObjects([]);
  $("events").replaceChildren();
  showConcepts([]);
  refreshConcepts();
  clearError();
  draw();
}

function onDaemonMessage(buf) {
  const parts = unpack(buf);
  const header = JSON.parse(new TextDecoder().decode(parts[1]));
  knowStream(header.stream);
  if (header.stream !== stream) return;
  if (header.type === "result") onResult(header, parts.slice(2));
  else if (header.type === "preview") onPreview(header, parts[2]);
  else if (header.type === "end") setState("ended", `the stream ended (${header.reason}) after frame ${header.frame}`);
}

// COCO compressed RLE (docs/protocol.md) -> run lengths, column-major, background first.
function rleRuns(bytes) {
  const runs = [];
  let p = 0;
  while (p < bytes.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = bytes[p] - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

function paintMask(data, w, h, runs, rgb, moved, tentative) {
  let pos = 0;
  const alpha = tentative ? TENTATIVE_ALPHA : moved ? MOTION_ALPHA : MASK_ALPHA;
  for (let r = 0; r < runs.length; r++) {
    if (r % 2 === 1) {
      for (let i = pos; i < pos + runs[r]; i++) {
        const x = (i / h) | 0, y = i - x * h, o = (y * w + x) * 4;
        if (moved && (x + y) % MOTION_STRIPE === 0) continue;
        data[o] = rgb[0]; data[o + 1] = rgb[1]; data[o + 2] = rgb[2]; data[o + 3] = alpha;
      }
    }
    pos += runs[r];
  }
}

function rate(times) {
  return times.length > 1 ? (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000) : null;
}

function onResult(header, masks) {
  if (lastSeq !== null && header.seq > lastSeq + 1) lost += header.seq - lastSeq - 1;
  lastSeq = header.seq;
  const now = performance.now(), revision = header.revision || 0;
  if (revision === 0) arrivals.push(now);  // a frame's first answer: a frame shown
  if ((header.source || "model") === "model" && !modelFrames.has(header.frame)) {  // a key frame (not a prompt's)
    keyArrivals.push(now);
    modelFrames.add(header.frame);
    if (modelFrames.size > KEEP_RESULTS) modelFrames.delete(modelFrames.values().next().value);
  }
  for (const t of [arrivals, keyArrivals]) while (t.length > 2 && now - t[0] > RATE_WINDOW_MS) t.shift();
  if (revision === 0) {
    // capture -> publish on the daemon's clock, then publish -> now on the wall clock (same host, or NTP);
    // the microsecond fields, since the nanosecond ones exceed 2^53 and JSON.parse rounds them
    latencies.push((header.publish_us - header.capture_us) / 1e3 + (Date.now() - header.publish_unix_us / 1e3));
    if (latencies.length > LATENCY_SAMPLES) latencies.shift();
  }
  const moved = header.source === "motion";

  const w = header.width, h = header.height;
  const overlay = document.createElement("canvas");
  overlay.width = w; overlay.height = h;
  const octx = overlay.getContext("2d"), img = octx.createImageData(w, h);
  for (const o of header.objects) {
    if (o.mask) paintMask(img.data, w, h, rleRuns(masks[o.mask.frame]), colour(o.id), moved, o.status === "tentative");
  }
  octx.putImageData(img, 0, 0);
  const result = {header, overlay};
  results.set(header.frame, result);  // a frame's newest answer replaces its earlier ones (revision)
  if (results.size > KEEP_RESULTS) results.delete(results.keys().next().value);
  if (shown.frame === null || header.frame >= shown.frame) updateObjects(header.objects);
  updateStats(header);
  if (header.frame === shown.frame) {
    show(header.frame, shown.bitmap, result);  // the frame on screen answered again: its newest answer
  } else if (now - lastPreviewAt > NO_PREVIEW_MS && (shown.frame === null || header.frame > shown.frame)) {
    $("notice").textContent = "no previews from the daemon: masks are drawn on black. " +
      "Start it with --preview-every 1 (or output.preview_every = 1) to see the picture.";
    show(header.frame, null, result);
  }
}

function onPreview(header, jpeg) {
  lastPreviewAt = performance.now();
  $("notice").textContent = "";
  createImageBitmap(new Blob([jpeg], {type: "image/jpeg"})).then((bitmap) => {
    if (shown.frame !== null && header.frame < shown.frame) return;  // decoded out of order
    let result = results.get(header.frame);
    if (!result) {  // its result was lost: the newest earlier one is the best guess
      for (const [f, r] of results) if (f <= header.frame) result = r;
    }
    show(header.frame, bitmap, result || null);
  });
}

function show(frame, bitmap, result) {
  if (shown.bitmap && shown.bitmap !== bitmap) shown.bitmap.close();
  shown = {frame, bitmap, result};
  const h = result && result.header;
  $("frame").textContent = frame;
  $("frame-source").textContent = !h || h.source !== "motion" ? ""
    : h.key_frame === null ? " (no model masks yet)" : ` (moved from ${h.key_frame})`;
  draw();
}

function draw() {
  const {bitmap, result} = shown;
  const w = bitmap ? bitmap.width : result ? result.header.width : canvas.width;
  const h = bitmap ? bitmap.height : result ? result.header.height : canvas.height;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, w, h);
  if (bitmap) ctx.drawImage(bitmap, 0, 0);
  const px = canvas.width / (canvas.getBoundingClientRect().width || canvas.width);  // frame px per screen px
  if (result) {
    ctx.drawImage(result.overlay, 0, 0);
    ctx.font = `bold ${13 * px}px system-ui, sans-serif`;
    const moved = result.header.source === "motion";
    for (const o of result.header.objects) {
      if (!o.bbox) continue;
      const [r, g, b] = colour(o.id), [x0, y0, x1, y1] = o.bbox;
      ctx.strokeStyle = `rgb(${r},${g},${b})`;
      ctx.lineWidth = (o.id === selected ? 3 : 1.5) * px;
      const tentative = o.status === "tentative";
      ctx.setLineDash(tentative ? TENTATIVE_DASH.map((d) => d * px) : moved ? [6 * px, 4 * px] : []);
      ctx.strokeRect(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
      ctx.setLineDash([]);
      const label = objectLabel(o) + (tentative ? " ?" : "") + (moved ? " moved" : "");
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(x0, Math.max(0, y0 - 16 * px), ctx.measureText(label).width + 6 * px, 16 * px);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x0 + 3 * px, Math.max(12 * px, y0 - 4 * px));
    }
  }
  if (drag && drag.box) {
    ctx.setLineDash([5 * px, 4 * px]);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5 * px;
    const [x0, y0, x1, y1] = boxOf(drag);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
}

// "#3 forklift 0.82" for an object a concept found (its detection's score), "#1 0.9" for a clicked one (SAM's)
function objectLabel(o) {
  if (typeof o.label !== "string") return `#${o.id} ${o.score.toFixed(1)}`;
  const score = typeof o.detection_score === "number" ? ` ${o.detection_score.toFixed(2)}` : "";
  return `#${o.id} ${o.label}${score}`;
}

function fpsText(r) {
  return r === null ? "-" : r < 1 ? r.toFixed(2) : r.toFixed(1);
}

function updateStats(header) {
  $("fps").textContent = fpsText(rate(arrivals));
  $("model-fps").textContent = fpsText(rate(keyArrivals));
  $("dropped").textContent = `${header.dropped} source` + (lost ? `, ${lost} in transit` : "");
  const sorted = [...latencies].sort((a, b) => a - b);
  if (sorted.length) $("latency").textContent = `${sorted[sorted.length >> 1].toFixed(0)} ms`;
}

function updateObjects(list) {
  objects = list;
  $("selected").textContent = selected === null ? "none (a click creates a new object)"
    : objects.some((o) => o.id === selected) ? `#${selected}` : `#${selected} (new: click or drag to create it)`;
  const ul = $("objects");
  ul.replaceChildren(...list.map((o) => {
    const li = document.createElement("li"), [r, g, b] = colour(o.id);
    li.dataset.id = o.id;
    li.style.setProperty("--c", `rgb(${r},${g},${b})`);
    li.className = (o.id === selected ? "selected " : "") + (o.present ? "present" : "absent") +
      (o.status ? " " + o.status : "");
    li.textContent = `${objectLabel(o)}  ${o.present ? "present" : "absent"}` + (o.status ? `  ${o.status}` : "") +
      `  ${o.area} px`;
    li.onclick = () => select(o.id);
    return li;
  }));
}

// --- prompting --------------------------------------------------------------------------------------

function select(id) {
  selected = id;
  updateObjects(objects);
}

const newId = () => Math.max(0, ...objects.map((o) => o.id), selected ?? 0) + 1;

function toFrame(ev) {
  const rect = canvas.getBoundingClientRect();
  const x = (ev.clientX - rect.left) * (canvas.width / rect.width);
  const y = (ev.clientY - rect.top) * (canvas.height / rect.height);
  return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
}

function boxOf(d) {
  return [Math.min(d.start[0], d.end[0]), Math.min(d.start[1], d.end[1]),
          Math.max(d.start[0], d.end[0]), Math.max(d.start[1], d.end[1])];
}

canvas.addEventListener("pointerdown", (ev) => {
  if (shown.frame === null) return showError("nothing to prompt on yet: no frame has arrived", "no_frame");
  canvas.setPointerCapture(ev.pointerId);
  drag = {start: toFrame(ev), end: toFrame(ev), screen: [ev.clientX, ev.clientY], frame: shown.frame,
          negative: ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey, box: false};
});

canvas.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  drag.end = toFrame(ev);
  drag.box = drag.box || Math.hypot(ev.clientX - drag.screen[0], ev.clientY - drag.screen[1]) > DRAG_PX;
  draw();
});

canvas.addEventListener("pointerup", (ev) => {
  if (!drag) return;
  const d = drag;
  drag = null;
  d.end = toFrame(ev);
  if (d.negative && selected === null) {
    draw();
    return showError("a negative click removes area from an object: select the object first", "no_selection");
  }
  const id = selected ?? newId();
  select(id);
  if (d.box) {
    request("add_box", {object: id, box: boxOf(d), frame: d.frame});
  } else {
    request("add_points", {object: id, points: [d.start], labels: [d.negative ? 0 : 1], frame: d.frame,
                           clear_old_points: false});
  }
  draw();
});

$("stream").onchange = (ev) => pickStream(ev.target.value);
$("new-object").onclick = () => select(newId());
document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement) return;  // typing a concept, not a shortcut
  if (ev.key === "Escape") select(null);
  else if (ev.key === "n") $("new-object").click();
  else if (ev.key === "Delete") $("remove-object").click();
});
$("remove-object").onclick = () => {
  if (selected === null) return showError("select an object in the list to remove it", "no_selection");
  const id = selected;
  request("remove_object", {object: id}).then((r) => {
    if (r && r.ok) { objects = objects.filter((o) => o.id !== id); select(null); }
  });
};
$("reset").onclick = () => request("reset").then((r) => {
  if (r && r.ok) { objects = []; select(null); }
});

connect();
