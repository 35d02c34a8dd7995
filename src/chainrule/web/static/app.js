// chainrule serve: the page's script. Plain JavaScript, no libraries, no build step.
// It talks to the JSON API described in the README; every number it shows comes from there.
"use strict";

const $ = (id) => document.getElementById(id);
// For tests and the curious: the time from the end of each stroke to its
// probabilities on screen, in milliseconds (performance.now in this page).
window.chainrule = { latencies: [], predictions: 0 };

// -- helpers -------------------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  if (!response.ok) throw new Error(data && data.error ? data.error : `HTTP ${response.status}`);
  return data;
}

// Text for innerHTML: names come from model files, which the page does not trust.
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function percent(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }

// A grey (or signed) picture into a canvas: values in [lo, hi] to black..white.
function paintGrey(canvas, values, width, height, lo, hi, x0 = 0, y0 = 0, scale = 1) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const span = hi - lo || 1;
  for (let i = 0; i < width * height; i++) {
    const g = Math.max(0, Math.min(255, Math.round(255 * (values[i] - lo) / span)));
    image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = g;
    image.data[4 * i + 3] = 255;
  }
  if (scale === 1) { ctx.putImageData(image, x0, y0); return; }
  const tmp = document.createElement("canvas");
  tmp.width = width; tmp.height = height;
  tmp.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, x0, y0, width * scale, height * scale);
}

// -- pages and models ------------------------------------------------------------------------

function showPage() {
  const page = location.hash === "#train" ? "train" : "draw";
  $("page-draw").hidden = page !== "draw";
  $("page-train").hidden = page !== "train";
  $("tab-draw").classList.toggle("active", page === "draw");
  $("tab-train").classList.toggle("active", page === "train");
}
window.addEventListener("hashchange", showPage);

async function loadModels(select) {
  const data = await api("/api/models");
  const menu = $("model");
  const keep = select || menu.value || data.default;
  menu.innerHTML = "";
  for (const m of data.models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name}: ${m.description}`;
    menu.appendChild(option);
  }
  if (keep && data.models.some((m) => m.name === keep)) menu.value = keep;
  return data;
}
$("model").addEventListener("change", () => { if (hasInk) predict(); });

// -- drawing ----------------------------------------------------------------------------------

const canvas = $("canvas");
const pen = canvas.getContext("2d");
let drawing = false, hasInk = false, last = null, sequence = 0;

function clearCanvas() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  hasInk = false;
}
clearCanvas();

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
          (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  pen.fillStyle = "#000";
  pen.beginPath();
  pen.arc(last[0], last[1], 9, 0, 2 * Math.PI);
  pen.fill();
  hasInk = true;
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  pen.strokeStyle = "#000";
  pen.lineWidth = 18;
  pen.lineCap = pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(last[0], last[1]);
  for (const e of (events.length ? events : [event])) {
    last = point(e);
    pen.lineTo(last[0], last[1]);
  }
  pen.stroke();
});
function endStroke(event) {
  if (!drawing) return;
  drawing = false;
  predict(performance.now());
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// A fresh canvas: the previous drawing's answer goes too.
function resetAnswer() {
  clearCanvas();
  sequence += 1; // an answer still on its way is for the old drawing
  $("prediction").textContent = "?";
  $("error").textContent = "";
  const picture = $("input28").getContext("2d");
  picture.fillStyle = "#000"; picture.fillRect(0, 0, 28, 28);
  for (let d = 0; d < 10; d++) {
    if ($(`bar-${d}`)) { $(`bar-${d}`).firstChild.style.width = "0"; $(`p-${d}`).textContent = ""; }
  }
  showInside(undefined);
  $("inside-title").textContent = "draw something";
}
$("clear").addEventListener("click", resetAnswer);

async function predict(strokeEnd = performance.now()) {
  const mine = ++sequence;
  const body = { image: canvas.toDataURL("image/png") };
  if ($("model").value) body.model = $("model").value;
  try {
    const result = await api("/api/predict", body);
    if (mine !== sequence) return; // a newer stroke's answer is on its way
    showPrediction(result);
    // Probabilities are in the page; the next frame puts them on screen.
    requestAnimationFrame(() => {
      const ms = performance.now() - strokeEnd;
      window.chainrule.latencies.push(ms);
      window.chainrule.predictions += 1;
      $("latency").textContent = `${ms.toFixed(0)} ms from stroke to answer (server ${result.milliseconds} ms)`;
    });
    $("error").textContent = "";
  } catch (error) {
    if (mine === sequence) $("error").textContent = error.message;
  }
}

function showPrediction(result) {
  paintGrey($("input28"), result.input.values, 28, 28, 0, 1);
  const bars = $("bars");
  if (!bars.children.length) {
    for (let d = 0; d < 10; d++) {
      bars.insertAdjacentHTML("beforeend",
        `<span>${d}</span><div class="bar" id="bar-${d}"><div></div></div><span id="p-${d}"></span>`);
    }
  }
  result.probabilities.forEach((p, d) => {
    const bar = $(`bar-${d}`);
    bar.firstChild.style.width = `${(100 * p).toFixed(1)}%`;
    bar.classList.toggle("best", d === result.prediction);
    $(`p-${d}`).textContent = percent(p);
  });
  $("prediction").textContent = String(result.prediction);
  showInside(result.inside);
}

function showInside(inside) {
  const view = $("inside");
  const ctx = view.getContext("2d");
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, view.width, view.height);
  if (inside === undefined) return;
  if (!inside) { $("inside-title").textContent = "this model has no hidden layer"; return; }
  const v = inside.values;
  const hi = Math.max(...v.map(Math.abs)) || 1;
  if (inside.kind === "maps") {
    const [c, h, w] = inside.shape;
    const cols = Math.ceil(Math.sqrt(c)), cell = Math.floor(view.width / cols);
    const scale = Math.max(1, Math.floor((cell - 2) / Math.max(h, w)));
    for (let k = 0; k < c; k++) {
      paintGrey(view, v.slice(k * h * w, (k + 1) * h * w), w, h, 0, hi,
                (k % cols) * cell, Math.floor(k / cols) * cell, scale);
    }
    $("inside-title").textContent = `layer ${inside.layer}, ${inside.name}: ${c} feature maps of the first convolution`;
  } else {
    const n = v.length, cols = Math.ceil(Math.sqrt(n)), cell = view.width / cols;
    for (let i = 0; i < n; i++) {
      const a = v[i] / hi;
      // positive: warm, negative (tanh): cool, zero: dark
      ctx.fillStyle = a >= 0 ? `rgb(${Math.round(255 * a)},${Math.round(200 * a)},40)`
                             : `rgb(40,${Math.round(-120 * a)},${Math.round(-255 * a)})`;
      ctx.fillRect((i % cols) * cell + 1, Math.floor(i / cols) * cell + 1, cell - 2, cell - 2);
    }
    const active = v.filter((a) => a > 0).length;
    $("inside-title").textContent = `layer ${inside.layer}, ${inside.name}: ${n} hidden units, ${active} active (brighter = stronger)`;
  }
}

// -- teaching -------------------------------------------------------------------------------

for (let d = 0; d < 10; d++) {
  const b = document.createElement("button");
  b.type = "button"; b.id = `label-${d}`; b.textContent = String(d);
  b.title = `That was a ${d}`;
  b.addEventListener("click", () => labelDrawing(d));
  $("labels").appendChild(b);
}

function showCount(summary) {
  $("digit-count").textContent = `${summary.count} labelled drawings (${summary.train} to train on, ` +
    `${summary.test} held out) in ${summary.folder}`;
}

async function labelDrawing(digit) {
  if (!hasInk) { $("error").textContent = "draw a digit first"; return; }
  try {
    showCount(await api("/api/digits", { image: canvas.toDataURL("image/png"), label: digit }));
    resetAnswer();
  } catch (error) { $("error").textContent = error.message; }
}

$("finetune").addEventListener("click", async () => {
  const button = $("finetune");
  button.disabled = true;
  $("finetune-result").textContent = "fine-tuning...";
  try {
    const r = await api("/api/finetune", { model: $("model").value });
    await loadModels(r.model); // the new model is chosen before the result shows
    const row = (what, key) => `<tr><td>${what}</td><td>${percent(r.before[key])}</td><td>${percent(r.after[key])}</td></tr>`;
    $("finetune-result").innerHTML =
      `<table id="finetune-table"><tr><th>accuracy on</th><th>before</th><th>after</th></tr>` +
      row(`your ${r.digits.mine} digits (trained on)`, "mine") +
      row(`your ${r.digits.mine_held_out} held-out digits`, "mine_held_out") +
      row(`MNIST test (${r.digits.mnist_test})`, "mnist_test") + `</table>` +
      `<p class="muted">saved as <b id="finetuned-name">${escapeHtml(r.model)}</b> (${escapeHtml(r.saved)}); ${escapeHtml(r.from)} is unchanged</p>`;
  } catch (error) {
    $("finetune-result").textContent = error.message;
  } finally { button.disabled = false; }
});

// -- training -----------------------------------------------------------------------------------

const charts = { loss: [], acc: [], epochs: 0 };

function drawChart(canvasId, points, yMin, yMax, color, xLimit) {
  const c = $(canvasId), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  c.dataset.points = String(points.length);
  if (!points.length) return;
  const lo = yMin !== null ? yMin : Math.min(...points.map((p) => p[1]));
  const hi = yMax !== null ? yMax : Math.max(...points.map((p) => p[1]));
  const xMax = Math.max(xLimit || 0, ...points.map((p) => p[0]), 1);
  const pad = 28, w = c.width - pad - 8, h = c.height - 2 * 10;
  const X = (x) => pad + w * x / xMax, Y = (y) => 10 + h * (1 - (y - lo) / ((hi - lo) || 1));
  ctx.strokeStyle = "#ccd"; ctx.fillStyle = "#6b7385"; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(pad, 10); ctx.lineTo(pad, 10 + h); ctx.lineTo(pad + w, 10 + h); ctx.stroke();
  ctx.fillText(hi.toPrecision(3), 0, 14); ctx.fillText(lo.toPrecision(3), 0, 10 + h);
  ctx.strokeStyle = color; ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
  ctx.stroke();
  ctx.fillStyle = color;
  if (points.length < 60) for (const [x, y] of points) { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 7); ctx.fill(); }
}

function drawWeights(weights) {
  const c = $("weights"), ctx = c.getContext("2d");
  ctx.fillStyle = "#808080"; ctx.fillRect(0, 0, c.width, c.height);
  if (!weights) return;
  const bytes = new Uint8Array(weights.hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(weights.hex.substr(2 * i, 2), 16);
  const size = weights.height * weights.width, cols = 8;
  const scale = Math.max(1, Math.floor(c.width / cols / (weights.width + 1)));
  const cell = (weights.width + 1) * scale;
  c.height = Math.ceil(weights.count / cols) * cell;
  ctx.fillStyle = "#808080"; ctx.fillRect(0, 0, c.width, c.height);
  for (let k = 0; k < weights.count; k++) {
    paintGrey(c, bytes.subarray(k * size, (k + 1) * size), weights.width, weights.height, 0, 255,
              (k % cols) * cell, Math.floor(k / cols) * cell, scale);
  }
}

function fmt(v, digits = 3) { return v === null || v === undefined ? "" : Number(v).toPrecision(digits); }

function showHealth(event) {
  const rows = new Map();
  for (const g of event.gradient_norms || []) rows.set(g.layer, { name: g.name, g });
  for (const a of event.activations || []) rows.set(a.layer, { ...(rows.get(a.layer) || {}), name: a.name, a });
  const body = $("health").querySelector("tbody");
  body.innerHTML = "";
  for (const [layer, r] of [...rows.entries()].sort((x, y) => x[0] - y[0])) {
    body.insertAdjacentHTML("beforeend", `<tr><td>${layer} ${escapeHtml(r.name)}</td><td>${r.g ? fmt(r.g.norm) : ""}</td>` +
      `<td>${r.g ? fmt(r.g.ratio) : ""}</td><td>${r.a && r.a.dead !== null ? percent(r.a.dead) : ""}</td>` +
      `<td>${r.a && r.a.saturated !== null ? percent(r.a.saturated) : ""}</td></tr>`);
  }
  $("warnings").innerHTML = "";
  for (const w of event.warnings || []) {
    const li = document.createElement("li"); li.textContent = w; $("warnings").appendChild(li);
  }
}

let currentJob = null, seen = 0, trainedModel = null, testResult = "";

function onEvent(event) {
  if (event.job !== currentJob) {
    if (event.n !== 0) return; // joined mid-way after a reconnect: the replay starts at 0
    currentJob = window.chainrule.job = event.job; seen = 0;
    charts.loss = []; charts.acc = [];
  }
  if (event.n < seen) return; // a replay after reconnecting
  seen = event.n + 1;
  const label = event.kind === "default" ? "default digit model" : event.kind;
  if (event.type === "begin") {
    setRunning(true);
    charts.epochs = event.epochs;
    testResult = "";
    drawWeights(null);
    showHealth({});
    $("weights-epoch").textContent = "";
    drawChart("loss-chart", [], null, null, "#2a6df4");
    drawChart("acc-chart", [], 0, 1, "#1a9e55");
    $("train-status").textContent = `${label}: ${event.epochs} epochs of ${event.steps} steps`;
    $("train-done").hidden = true;
  } else if (event.type === "step") {
    charts.loss.push([event.step, event.loss]);
    if (charts.loss.length % 5 === 1 || charts.loss.length < 50) drawChart("loss-chart", charts.loss, 0, null, "#2a6df4");
    $("train-status").textContent = `${label}: step ${event.step}, loss ${event.loss.toFixed(4)}`;
  } else if (event.type === "epoch") {
    drawChart("loss-chart", charts.loss, 0, null, "#2a6df4");
    if (event.val_accuracy !== undefined) charts.acc.push([event.epoch, event.val_accuracy]);
    drawChart("acc-chart", charts.acc, null, 1, "#1a9e55", charts.epochs);
    $("weights-epoch").textContent = `after epoch ${event.epoch}`;
    drawWeights(event.weights);
    showHealth(event);
    const text = `${label}: epoch ${event.epoch} done in ${event.seconds}s, validation accuracy ${percent(event.val_accuracy)}`;
    $("train-status").textContent = text;
    if (event.kind === "default") { $("banner").hidden = false; $("banner").textContent = `Training the default digit model (first use): ${text}`; }
  } else if (event.type === "test") {
    testResult = `MNIST test accuracy ${percent(event.accuracy)}`;
    $("train-status").textContent += `; ${testResult}`;
  } else if (event.type === "end") {
    setRunning(false);
    if (event.state === "error") { $("train-error").textContent = event.message; return; }
    $("train-status").textContent = `${label} ${event.state === "stopped" ? "stopped; the model trained so far is kept" : "finished"}` +
      (event.model ? ` as ${event.model}` : "") + (testResult ? `; ${testResult}` : "");
    if (event.kind === "default") $("banner").hidden = true;
    if (event.model) {
      trainedModel = event.model;
      $("download-safetensors").href = `/api/models/${encodeURIComponent(event.model)}/download?format=safetensors`;
      $("download-onnx").href = `/api/models/${encodeURIComponent(event.model)}/download?format=onnx`;
      $("train-done").hidden = false;
      loadModels();
    }
  }
}

function setRunning(running) {
  $("start").disabled = running;
  $("stop").disabled = !running;
}

function listen() {
  const source = new EventSource("/api/train/events");
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
}

$("train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("train-error").textContent = "";
  const number = (id) => Number($(id).value);
  const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const previous = $("train-status").textContent;
  $("train-status").textContent = "starting...";
  try {
    await api("/api/train", {
      architecture: $("arch").value, hidden: list("hidden"), channels: list("channels"), activation: $("activation").value,
      optimizer: $("optimizer").value, lr: number("lr"), batch_size: number("batch"),
      epochs: number("epochs"), samples: number("samples"),
    });
  } catch (error) {
    $("train-status").textContent = previous;
    $("train-error").textContent = error.message;
  }
});

$("stop").addEventListener("click", async () => {
  try { await api("/api/train/stop", {}); $("train-status").textContent += " (stopping...)"; }
  catch (error) { $("train-error").textContent = error.message; }
});

$("send-to-draw").addEventListener("click", async () => {
  await loadModels(trainedModel);
  location.hash = "#draw";
});

// -- start -----------------------------------------------------------------------------------

showPage();
loadModels().then((data) => {
  if (!data.models.length && data.training && data.training.kind === "default") {
    $("banner").hidden = false;
    $("banner").textContent = "Training the default digit model (first use); the Train page shows its progress.";
  }
}).catch((error) => { $("error").textContent = error.message; });
api("/api/digits").then(showCount).catch(() => {});
listen();
