// The search-tree page: runs a search on this server and draws its tree as it grows (from the
// /solve event stream with stream_tree), or shows a saved tree (file, ?tree=URL, or the tree
// embedded by `rstar solve --html`). Plain JS and SVG: no library, no build step, works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const DX = 26, DY = 64, R = 7;   // horizontal slot per leaf, vertical gap per depth, node radius
const LABELS_UNDER = 600;        // above this many visible nodes, draw no per-node labels (measured)

const state = {
  nodes: new Map(),      // id -> node, as Tree.to_dict writes them
  winner: new Set(),     // ids on the chosen trajectory
  collapsed: new Set(),  // ids whose subtree is folded
  selected: null,
  result: null,          // the final result, when there is one
  view: { x: 40, y: 30, k: 1 },
  controller: null,
  pending: false,
};

// ------------------------------------------------------------------ tree data

function upsert(list) {
  for (const n of list || []) state.nodes.set(n.id, n);
  schedule();
}

function q(n) { return n.visits ? n.value_sum / n.visits : 0; }

function childrenOf() {
  const kids = new Map();
  for (const n of state.nodes.values()) {
    if (n.parent === null || n.parent === undefined) continue;
    if (!kids.has(n.parent)) kids.set(n.parent, []);
    kids.get(n.parent).push(n.id);
  }
  for (const list of kids.values()) list.sort((a, b) => a - b);
  return kids;
}

function pathTo(id) {
  const ids = [];
  for (let n = state.nodes.get(id); n; n = state.nodes.get(n.parent)) {
    ids.push(n.id);
    if (n.parent === null || n.parent === undefined) break;
  }
  return ids;
}

function setWinner(ids) {
  state.winner = new Set();
  for (const id of ids) for (const p of pathTo(id)) state.winner.add(p);
}

// Leaves take consecutive slots in depth-first order; a parent sits over its children.
// Iterative, so trees of any depth lay out without recursion limits.
function layout(kids) {
  const pos = new Map();
  let slot = 0, hidden = 0;
  const root = state.nodes.has(0) ? 0 : Math.min(...state.nodes.keys());
  const stack = [[root, false]];
  while (stack.length) {
    const [id, done] = stack.pop();
    const n = state.nodes.get(id);
    const ch = state.collapsed.has(id) ? [] : (kids.get(id) || []);
    if (state.collapsed.has(id)) hidden += countBelow(id, kids);
    if (!ch.length) { pos.set(id, { x: slot++ * DX, y: n.depth * DY }); continue; }
    if (done) {
      const first = pos.get(ch[0]), last = pos.get(ch[ch.length - 1]);
      pos.set(id, { x: (first.x + last.x) / 2, y: n.depth * DY });
      continue;
    }
    stack.push([id, true]);
    for (let i = ch.length - 1; i >= 0; i--) stack.push([ch[i], false]);
  }
  return { pos, hidden };
}

function countBelow(id, kids) {
  let count = 0;
  const stack = [...(kids.get(id) || [])];
  while (stack.length) { const c = stack.pop(); count++; stack.push(...(kids.get(c) || [])); }
  return count;
}

// ------------------------------------------------------------------ drawing

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" }[c]));
}

function fmt(x, digits = 2) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }

function schedule() {
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(() => { state.pending = false; render(); });
}

function render() {
  const g = $("viewport");
  if (!state.nodes.size) { g.innerHTML = ""; $("counts").textContent = ""; return; }
  const kids = childrenOf();
  const { pos, hidden } = layout(kids);
  const labels = pos.size < LABELS_UNDER;
  const parts = [];
  for (const [id, p] of pos) {
    const n = state.nodes.get(id);
    const pp = pos.get(n.parent);
    if (!pp) continue;
    const win = state.winner.has(id) && state.winner.has(n.parent) ? " winner" : "";
    const my = (pp.y + p.y) / 2;
    parts.push(`<path class="edge${win}" d="M${pp.x},${pp.y}C${pp.x},${my} ${p.x},${my} ${p.x},${p.y}"/>`);
  }
  for (const [id, p] of pos) {
    const n = state.nodes.get(id);
    const cls = ["node", n.parent === null || n.parent === undefined ? "root" : n.status];
    if (state.winner.has(id)) cls.push("winner");
    if (state.selected === id) cls.push("selected");
    let text = "";
    if (labels) {
      const sub = n.visits ? `${n.visits} · ${fmt(q(n))}` : "";
      text = `<text x="${R + 3}" y="-2">${esc(sub)}</text>`;
      if (n.prm_score !== null && n.prm_score !== undefined) {
        text += `<text x="${R + 3}" y="10">ppm ${fmt(n.prm_score)}</text>`;
      }
      if (n.answer) text += `<text class="answer" x="-4" y="${R + 14}">${esc(n.answer.slice(0, 14))}</text>`;
    }
    const hasKids = (kids.get(id) || []).length > 0;
    const fold = hasKids ? `<text class="fold" data-fold="${id}" x="${-R - 12}" y="4">${state.collapsed.has(id) ? "+" : "−"}</text>` : "";
    parts.push(`<g class="${cls.join(" ")}" data-id="${id}" transform="translate(${p.x},${p.y})">` +
      `<circle r="${R}"><title>#${id} ${esc(n.status)}</title></circle>${text}${fold}</g>`);
  }
  g.innerHTML = parts.join("");
  applyView();
  const invalid = [...state.nodes.values()].filter((n) => n.status === "invalid").length;
  $("counts").textContent = `${state.nodes.size} nodes (${invalid} invalid)` +
    (hidden ? `, ${hidden} folded` : "") + (labels ? "" : "; labels hidden at this size");
  if (state.selected !== null) showNode(state.selected, false);
}

function applyView() {
  const { x, y, k } = state.view;
  $("viewport").setAttribute("transform", `translate(${x},${y}) scale(${k})`);
}

function fit() {
  const g = $("viewport"), svg = $("tree");
  if (!g.firstChild) return;
  const box = g.getBBox(), w = svg.clientWidth, h = svg.clientHeight;
  const k = Math.min(2, 0.92 * Math.min(w / Math.max(box.width, 1), h / Math.max(box.height, 1)));
  state.view = { k, x: (w - box.width * k) / 2 - box.x * k, y: 20 - box.y * k };
  applyView();
}

// ------------------------------------------------------------------ panels

function field(dl, name, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt"); dt.textContent = name;
  const dd = document.createElement("dd"); dd.textContent = value;
  dl.append(dt, dd);
}

function block(parent, title, text) {
  if (!text) return;
  const h = document.createElement("h2"); h.textContent = title;
  const pre = document.createElement("pre"); pre.textContent = text;
  parent.append(h, pre);
}

function showNode(id, scroll = true) {
  const n = state.nodes.get(id);
  if (!n) return;
  state.selected = id;
  const box = $("details");
  box.replaceChildren();
  const h = document.createElement("h2");
  h.textContent = n.parent === null || n.parent === undefined ? "Root (the problem)" : `Node #${id}: step ${n.depth}`;
  const dl = document.createElement("dl");
  field(dl, "state", n.status + (n.final ? " (final step)" : "") + (n.exhausted ? ", exhausted" : ""));
  field(dl, "visits", n.visits);
  field(dl, "Q", fmt(q(n), 3));
  field(dl, "PPM score", n.prm_score === null ? null : fmt(n.prm_score, 3));
  field(dl, "reward", n.reward === null ? null : fmt(n.reward, 3));
  field(dl, "answer", n.answer);
  field(dl, "correct", n.correct === null || n.correct === undefined ? null : String(n.correct));
  field(dl, "tokens", n.tokens || null);
  field(dl, "on the chosen path", state.winner.has(id) ? "yes" : null);
  box.append(h, dl);
  if (n.parent === null || n.parent === undefined) block(box, "Problem", state.problem || "");
  block(box, "Reasoning", n.reasoning);
  if (!n.reasoning && !n.code) block(box, "Text", n.text);  // a step that did not parse
  block(box, "Code", n.code);
  if (n.code) block(box, "Output", n.output || (n.error ? "" : "(the code printed nothing)"));
  block(box, "Error", n.error);
  block(box, "Answer text", n.answer_text);
  if (scroll) box.scrollIntoView({ block: "nearest" });
  for (const el of document.querySelectorAll(".node.selected")) el.classList.remove("selected");
  const el = document.querySelector(`.node[data-id="${id}"]`);
  if (el) el.classList.add("selected");
}

function showAnswers(alternatives, chosen) {
  const box = $("answers");
  box.replaceChildren();
  const h = document.createElement("h2"); h.textContent = "Answers";
  box.append(h);
  if (!alternatives || !alternatives.length) {
    const p = document.createElement("p"); p.className = "hint"; p.textContent = "no answer reached";
    box.append(p);
    return;
  }
  const table = document.createElement("table");
  table.innerHTML = "<tr><th>answer</th><th>trajectories</th><th>score</th></tr>";
  for (const a of alternatives) {
    const tr = document.createElement("tr");
    if (a.answer === chosen) tr.className = "chosen";
    tr.dataset.node = a.node_ids[0];
    for (const v of [a.answer + (a.answer === chosen ? "  ← chosen" : ""), a.count, fmt(a.score, 3)]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    tr.addEventListener("click", () => showNode(a.node_ids[0]));
    table.append(tr);
  }
  box.append(table);
}

// Saved trees carry no alternatives: group their terminal answers the same way.
function answersFromTree() {
  const groups = new Map();
  for (const n of state.nodes.values()) {
    if (n.status !== "terminal" || !n.answer) continue;
    const g = groups.get(n.answer) || { answer: n.answer, count: 0, score: -Infinity, node_ids: [] };
    g.count++; g.node_ids.push(n.id);
    g.score = Math.max(g.score, n.reward ?? q(n));
    groups.set(n.answer, g);
  }
  return [...groups.values()].sort((a, b) => b.score - a.score || b.count - a.count);
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  const box = $("error");
  box.hidden = !text;
  box.textContent = text || "";
}

// ------------------------------------------------------------------ loading

function reset(problem) {
  state.nodes = new Map(); state.winner = new Set(); state.collapsed = new Set();
  state.selected = null; state.result = null; state.problem = problem || "";
  $("details").innerHTML = '<h2>Node</h2><p class="hint">Click a node to see its step.</p>';
  showAnswers([], null);
  showError("");
}

function showResult(r) {
  state.result = r;
  if (r.tree && r.tree.nodes) {
    state.nodes = new Map(r.tree.nodes.map((n) => [n.id, n]));
    if (r.tree.problem) state.problem = r.tree.problem;
  }
  const last = r.steps && r.steps.length ? r.steps[r.steps.length - 1].node_id : null;
  setWinner(last === null ? [] : [last]);
  showAnswers(r.alternatives && r.alternatives.length ? r.alternatives : answersFromTree(), r.answer);
  render();
  fit();
}

// A saved tree: Tree.to_dict ({problem, nodes}), a /solve or `rstar solve --json --tree` result
// ({..., tree}), or a line of a round's trees.jsonl.
function loadSaved(data, name) {
  if (typeof data === "string") {
    const lines = data.split("\n").filter((l) => l.trim());
    data = JSON.parse(lines.length > 1 ? lines[0] : data);
  }
  const tree = data.nodes ? data : data.tree;
  if (!tree || !Array.isArray(tree.nodes)) {
    throw new Error("no tree in it: expected {problem, nodes: [...]} or a result with a 'tree' (rstar solve --json --tree)");
  }
  reset(tree.problem || data.problem);
  $("problem").value = state.problem;
  if (data.tree) { showResult(data); } else {
    state.nodes = new Map(tree.nodes.map((n) => [n.id, n]));
    const alts = answersFromTree();
    setWinner(alts.length ? [alts[0].node_ids[0]] : []);
    showAnswers(alts, alts.length ? alts[0].answer : null);
    render(); fit();
  }
  setStatus(`${name}: ${state.nodes.size} nodes` + (data.answer !== undefined ? `, answer ${data.answer}` : ""));
}

function detailText(status, body) {
  const d = body && (body.detail ?? (body.error && body.error.message) ?? body.message);
  if (Array.isArray(d)) {
    return d.map((e) => `${(e.loc || []).filter((x) => x !== "body").join(".") || "request"}: ${e.msg}`).join("\n");
  }
  return d ? String(d) : `the server answered ${status}`;
}

function onProgress(p) {
  upsert(p.tree_nodes);
  const best = p.best_answer ? `; best answer so far ${p.best_answer} (${fmt(p.best_score)})` : "";
  setStatus(`searching: ${p.rollouts}/${p.rollouts_budget} rollouts, ${p.tokens} tokens, ` +
    `${p.nodes} nodes, ${fmt(p.elapsed_s, 1)} s${best}`);
  if (state.nodes.size < 60) fit();
}

function parseEvent(raw) {
  let event = "message", data = "";
  for (const line of raw.split("\n")) {
    if (line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const key = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (key === "event") event = value;
    else if (key === "data") data += (data ? "\n" : "") + value;
  }
  return { event, data };
}

// A server with API keys (RSTAR_API_KEYS) needs one on /solve; kept for this tab only.
function authHeaders(headers) {
  const key = $("api-key").value.trim();
  if (key) { headers.Authorization = `Bearer ${key}`; sessionStorage.setItem("rstar-api-key", key); }
  return headers;
}

async function solve(ev) {
  ev.preventDefault();
  const problem = $("problem").value;
  reset(problem);
  const rollouts = Number($("rollouts").value);
  const body = { problem, algorithm: $("algorithm").value, budget: { rollouts },
    stream_tree: true, return_tree: true };
  const ctrl = new AbortController();
  state.controller = ctrl;
  $("solve").disabled = true; $("stop").disabled = false;
  setStatus("starting the search…");
  try {
    const res = await fetch("/solve", { method: "POST", signal: ctrl.signal,
      headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body) });
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      showError(`${res.status}: ${detailText(res.status, data)}`);
      setStatus("the server refused the request");
      return;
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replace(/\r\n/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const { event, data } = parseEvent(buf.slice(0, i));
        buf = buf.slice(i + 2);
        if (!data) continue;
        const payload = JSON.parse(data);
        if (event === "progress") onProgress(payload);
        else if (event === "result") {
          showResult(payload);
          setStatus(`done: answer ${payload.answer ?? "none"} (score ${fmt(payload.score)}), ` +
            `${payload.usage.rollouts} rollouts, ${payload.usage.tokens} tokens, ` +
            `${state.nodes.size} nodes, ${fmt(payload.usage.elapsed_s, 1)} s, stopped by ${payload.stopped_by}`);
        } else if (event === "error") {
          showError(`${payload.status}: ${payload.detail}`);
          setStatus("the search failed");
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") setStatus("stopped: the server cancels the search");
    else { showError(`cannot reach the server: ${e.message}`); setStatus("failed"); }
  } finally {
    $("solve").disabled = false; $("stop").disabled = true;
    state.controller = null;
  }
}

// ------------------------------------------------------------------ interaction

function wire() {
  $("api-key").value = sessionStorage.getItem("rstar-api-key") || "";
  $("solve-form").addEventListener("submit", solve);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  // leaving the page ends its search (the server cancels a search whose client went away)
  window.addEventListener("pagehide", () => state.controller && state.controller.abort());
  $("fit").addEventListener("click", fit);
  $("expand-all").addEventListener("click", () => { state.collapsed.clear(); render(); });
  $("open-tree").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try { loadSaved(await file.text(), file.name); }
    catch (err) { showError(`${file.name}: ${err.message}`); }
  });
  const svg = $("tree");
  svg.addEventListener("click", (e) => {
    const fold = e.target.closest("[data-fold]");
    if (fold) { toggle(Number(fold.dataset.fold)); return; }
    const node = e.target.closest(".node");
    if (node) showNode(Number(node.dataset.id));
  });
  svg.addEventListener("dblclick", (e) => {
    const node = e.target.closest(".node");
    if (node) toggle(Number(node.dataset.id));
  });
  svg.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = svg.getBoundingClientRect(), v = state.view;
    const f = Math.exp(-e.deltaY * 0.0015), mx = e.clientX - r.left, my = e.clientY - r.top;
    const k = Math.min(8, Math.max(0.02, v.k * f));
    state.view = { k, x: mx - (mx - v.x) * (k / v.k), y: my - (my - v.y) * (k / v.k) };
    applyView();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (e) => {
    if (e.target.closest(".node")) return;
    drag = { x: e.clientX, y: e.clientY, vx: state.view.x, vy: state.view.y };
    svg.classList.add("panning"); svg.setPointerCapture(e.pointerId);
  });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    state.view.x = drag.vx + e.clientX - drag.x; state.view.y = drag.vy + e.clientY - drag.y;
    applyView();
  });
  svg.addEventListener("pointerup", () => { drag = null; svg.classList.remove("panning"); });
}

function toggle(id) {
  if (state.collapsed.has(id)) state.collapsed.delete(id); else state.collapsed.add(id);
  render();
}

async function start() {
  wire();
  const embedded = document.getElementById("rstar-embedded");
  if (embedded) {   // written by `rstar solve --html`: one search, no server behind it
    $("solve-form").hidden = true;
    loadSaved(JSON.parse(embedded.textContent), "this search");
    return;
  }
  const url = new URLSearchParams(location.search).get("tree");
  if (url) {
    try {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`${res.status}: ${detailText(res.status, await res.json().catch(() => null))}`);
      loadSaved(await res.text(), url);
    } catch (err) { showError(`cannot open ${url}: ${err.message}`); }
  }
}

start();
