// AesRM product page: pick renders, rank them (/v1/group/upload), compare two side by side
// (/v1/pair/upload + synced playback), and ask for an explanation (/v1/explain/upload, polled).
// Plain JS, no build step: the gateway serves this file as-is.
"use strict";

const DIMS = ["VA", "VF", "VP"];
const $ = (sel) => document.querySelector(sel);
const state = { files: [], urls: [], results: null, aggregation: "bradley_terry", pair: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const sigmoid = (x) => 1 / (1 + Math.exp(-x));
const fmt = (x, d = 3) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));

function setStatus(text, kind = "") {
  const s = $("#status");
  s.textContent = text;
  s.className = "status " + kind;
}

// When the gateway has API keys on, the page asks for one once (kept for this tab only).
async function api(method, url, body) {
  const key = sessionStorage.getItem("aesrm-key");
  const res = await fetch(url, { method, body, headers: key ? { Authorization: "Bearer " + key } : {} });
  if (res.status === 401 && !api.asked) {
    api.asked = true;
    const k = window.prompt("This AesRM server needs an API key:");
    if (k) { sessionStorage.setItem("aesrm-key", k.trim()); return api(method, url, body); }
  }
  let data = null;
  try { data = await res.json(); } catch (_) { /* non-JSON error page */ }
  if (!res.ok) {
    const err = (data && data.error) || { code: "http_" + res.status, message: res.statusText };
    const e = new Error(`${err.code}: ${err.message}`);
    e.code = err.code; e.status = res.status;
    throw e;
  }
  return data;
}

// ---------------------------------------------------------------- model badge
async function loadModel() {
  const m = $("#model");
  try {
    const info = await api("GET", "/v1/model");
    m.textContent = `${info.id} ${info.version} · ${info.backend} · ${info.frames}×${info.height}×${info.width}`;
    if (!info.trained) m.append(el("span", { class: "badge warn" }, "untrained weights: scores not meaningful"));
    m.classList.add("ok");
  } catch (e) {
    m.textContent = "service not ready: " + e.message;
    m.classList.add("bad");
  }
}

// ---------------------------------------------------------------- candidates
function addFiles(list) {
  for (const f of list) {
    if (state.files.some((g) => g.name === f.name && g.size === f.size)) continue;
    state.files.push(f);
    state.urls.push(URL.createObjectURL(f));
  }
  renderCandidates();
}

function removeFile(i) {
  URL.revokeObjectURL(state.urls[i]);
  state.files.splice(i, 1);
  state.urls.splice(i, 1);
  renderCandidates();
}

function renderCandidates() {
  const ul = $("#candidates");
  ul.replaceChildren(...state.files.map((f, i) => el("li", {},
    el("span", { class: "fname" }, f.name),
    el("span", { class: "muted" }, `${(f.size / 1024).toFixed(0)} KiB`),
    el("button", { class: "ghost small", title: "remove", onclick: () => removeFile(i) }, "×"))));
  $("#rank").disabled = state.files.length < 2;
  setStatus(state.files.length < 2 ? "Choose at least two renders." : `${state.files.length} renders ready.`);
}

// ---------------------------------------------------------------- ranking
async function rank() {
  const agg = $("#aggregation").value;
  const form = new FormData();
  state.files.forEach((f, i) => form.append("videos", f, f.name));
  form.append("options", JSON.stringify({ aggregation: agg, both_orders: $("#both-orders").checked }));
  $("#rank").disabled = true;
  setStatus(`Scoring ${state.files.length} renders (${state.files.length * (state.files.length - 1) / 2} pairs)...`, "busy");
  const t0 = performance.now();
  try {
    const res = await api("POST", "/v1/group/upload", form);
    state.results = res;
    state.aggregation = agg;
    renderRanking(res);
    setStatus(`Ranked in ${((performance.now() - t0) / 1000).toFixed(1)} s.`, "ok");
  } catch (e) {
    setStatus("Ranking failed: " + e.message, "error");
  } finally {
    $("#rank").disabled = state.files.length < 2;
  }
}

// Bar width in [0, 1]: win-rate values already are; BT/logit values go through a sigmoid.
const barValue = (v) => (state.aggregation === "win_rate" ? v : sigmoid(v));

function bar(value, dim) {
  const w = Math.max(0, Math.min(1, barValue(value)));
  return el("div", { class: "bar-wrap", title: `${dim}: ${fmt(value)}` },
    el("div", { class: `bar ${dim}`, style: `width:${(w * 100).toFixed(1)}%`, dataset: { value: String(value) } }),
    el("span", { class: "bar-label" }, fmt(value, 2)));
}

function renderRanking(res) {
  const ok = res.results.filter((r) => !r.error).sort((a, b) => b.reward - a.reward);
  const bad = res.results.filter((r) => r.error);
  const rows = [...ok, ...bad].map((r, n) => {
    const file = state.files[r.index];
    const name = r.id || (file && file.name) || `#${r.index}`;
    if (r.error) {
      return el("tr", { class: "error", dataset: { index: r.index } },
        el("td", {}, "–"), el("td", {}),
        el("td", {}, el("span", { class: "fname" }, name)),
        el("td", { colspan: 4 }, el("span", { class: "err-code" }, r.error.code), " ", r.error.message));
    }
    const box = el("input", { type: "checkbox", class: "pick", dataset: { index: r.index }, "aria-label": "compare " + name });
    box.checked = n < 2;
    box.addEventListener("change", updateCompare);
    return el("tr", { class: "ok", dataset: { index: r.index, reward: r.reward } },
      el("td", { class: "rank" }, n + 1),
      el("td", {}, box),
      el("td", {}, el("span", { class: "fname" }, name)),
      el("td", { class: "reward" }, fmt(r.reward)),
      ...DIMS.map((d) => el("td", {}, bar(r.dimensions ? r.dimensions[d] : 0, d))));
  });
  $("#ranking tbody").replaceChildren(...rows);
  $("#summary").textContent = `${res.aggregation}, ${res.pairs_scored} pair scores, ` +
    `${res.cache_hits} cached, ${fmt(res.timings_ms.total_ms, 0)} ms` + (bad.length ? `, ${bad.length} failed` : "");
  $("#legend-agg").textContent = res.aggregation === "win_rate" ? "mean P(beats each other render)"
    : "Bradley-Terry logit, mapped through a sigmoid";
  $("#results").hidden = false;
  updateCompare();
}

function picked() {
  return [...document.querySelectorAll("input.pick:checked")].map((b) => Number(b.dataset.index));
}

function updateCompare() {
  $("#compare").disabled = picked().length !== 2;
}

// ---------------------------------------------------------------- side by side
async function compare() {
  const [ia, ib] = picked();
  const va = $("#video-a"), vb = $("#video-b");
  state.pair = { a: ia, b: ib };
  va.src = state.urls[ia];
  vb.src = state.urls[ib];
  $("#name-a").textContent = "A: " + state.files[ia].name;
  $("#name-b").textContent = "B: " + state.files[ib].name;
  $("#explanation").hidden = true;
  $("#pair").hidden = false;
  $("#pair").scrollIntoView({ behavior: "smooth" });
  const scores = $("#pair-scores");
  scores.replaceChildren(el("p", { class: "muted" }, "Scoring the pair..."));
  const form = new FormData();
  form.append("a", state.files[ia], state.files[ia].name);
  form.append("b", state.files[ib], state.files[ib].name);
  try {
    const r = await api("POST", "/v1/pair/upload", form);
    scores.replaceChildren(el("h3", {}, "P(A preferred over B)"),
      ...[...DIMS, "overall"].map((d) => preferenceRow(d, r.preference[d])));
    scores.dataset.overall = r.preference.overall;
  } catch (e) {
    scores.replaceChildren(el("p", { class: "error-text" }, "Pair scoring failed: " + e.message));
  }
}

// A centred bar: right of the middle favours A, left favours B.
function preferenceRow(dim, p) {
  const left = p >= 0.5 ? 50 : p * 100, width = Math.abs(p - 0.5) * 100;
  return el("div", { class: "pref-row", dataset: { dim } },
    el("span", { class: "pref-dim" }, dim),
    el("div", { class: "pref-track" }, el("div", { class: "pref-mid" }),
      el("div", { class: `pref-fill ${p >= 0.5 ? "a" : "b"}`, style: `left:${left}%;width:${width}%` })),
    el("span", { class: "pref-val" }, `${(p * 100).toFixed(1)}% ${p >= 0.5 ? "A" : "B"}`));
}

function syncPlayers() {
  const va = $("#video-a"), vb = $("#video-b");
  $("#play").addEventListener("click", async () => {
    if (va.paused) {
      vb.currentTime = va.currentTime;
      await Promise.allSettled([va.play(), vb.play()]);
      $("#play").textContent = "Pause both";
    } else {
      va.pause(); vb.pause();
      $("#play").textContent = "Play both";
    }
  });
  $("#restart").addEventListener("click", () => { va.currentTime = 0; vb.currentTime = 0; });
  $("#seek").addEventListener("input", (ev) => {
    const f = ev.target.value / 1000;
    for (const v of [va, vb]) if (v.duration) v.currentTime = f * v.duration;
  });
  va.addEventListener("timeupdate", () => {
    if (va.duration) $("#seek").value = Math.round((va.currentTime / va.duration) * 1000);
    if (!va.paused && Math.abs(vb.currentTime - va.currentTime) > 0.15) vb.currentTime = va.currentTime;
  });
  // Pausing either player (e.g. with its own controls) pauses both.
  for (const [x, y] of [[va, vb], [vb, va]]) x.addEventListener("pause", () => { if (!y.paused) y.pause(); });
}

// ---------------------------------------------------------------- explanation
async function explain() {
  const box = $("#explanation");
  const { a, b } = state.pair;
  box.hidden = false;
  box.replaceChildren(el("p", { class: "muted" }, "Explanation queued..."));
  const form = new FormData();
  form.append("a", state.files[a], state.files[a].name);
  form.append("b", state.files[b], state.files[b].name);
  try {
    const job = await api("POST", "/v1/explain/upload", form);  // may be a reused, finished job
    const poll = () => api("GET", `/v1/explain/${encodeURIComponent(job.job_id)}`);
    let info = await poll();
    const deadline = Date.now() + 180000;
    while (!["succeeded", "failed", "cancelled", "expired"].includes(info.status)) {
      if (Date.now() > deadline) throw new Error("explanation timed out");
      box.firstChild.textContent = `Explanation ${info.status}...`;
      await new Promise((r) => setTimeout(r, 400));
      info = await poll();
    }
    if (info.status !== "succeeded") throw new Error(info.error ? `${info.error.code}: ${info.error.message}` : info.status);
    renderExplanation(info.result, state.files[a].name, state.files[b].name);
  } catch (e) {
    box.replaceChildren(el("p", { class: "error-text" }, "Explanation failed: " + e.message));
  }
}

function verdictCell(v, names) {
  const who = v.verdict === "tie" || v.verdict === "withheld" ? v.verdict : `${v.verdict} (${names[v.verdict]})`;
  return el("span", { class: `verdict ${v.verdict}` }, who);
}

function renderExplanation(r, nameA, nameB) {
  const names = { A: nameA, B: nameB };
  const row = (label, v, cls = "") => el("tr", { class: cls }, el("td", {}, label), el("td", {}, verdictCell(v, names)),
    el("td", {}, `${(v.confidence * 100).toFixed(0)}%`), el("td", {}, fmt(v.p_a)));
  const table = el("table", { class: "verdicts" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "verdict"), el("th", {}, "confidence"), el("th", {}, "P(A>B)"))),
    el("tbody", {}, row("overall", r.overall, "strong"),
      ...Object.entries(r.dimensions).map(([d, v]) => row(d, v, "strong")),
      ...r.criteria.map((c) => row(`${c.dimension} / ${c.name}`, c, "crit"))));
  $("#explanation").replaceChildren(
    el("h3", {}, "Why"), table,
    el("pre", { class: "reasoning" }, r.reasoning),
    el("p", { class: "muted small" }, `${r.source} · ${r.model.id} ${r.model.version} · ${r.disclaimer}`));
}

// ---------------------------------------------------------------- wiring
function init() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (ev) => { addFiles(ev.target.files); ev.target.value = ""; });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); addFiles(ev.dataTransfer.files); });
  $("#rank").addEventListener("click", rank);
  $("#clear").addEventListener("click", () => {
    while (state.files.length) removeFile(0);
    $("#results").hidden = true; $("#pair").hidden = true;
  });
  $("#compare").addEventListener("click", compare);
  $("#explain").addEventListener("click", explain);
  syncPlayers();
  renderCandidates();
  loadModel();
}

init();
