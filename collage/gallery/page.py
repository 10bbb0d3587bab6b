"""The gallery page: one self-contained HTML file (style, data and script inline; thumbnails beside it).

Overlays are SVG laid over each <img>: the SVG's viewBox is the sample's canvas in json pixels and both
it and the image are letterboxed the same way (`object-fit: contain` / `xMidYMid meet`), so a json
coordinate lands on the same image pixel at any displayed size. Overlay colours are fixed and pure so a
screenshot test can find them (see tests/test_gallery.py).
"""

from __future__ import annotations

import json
from html import escape

PANEL_PX = 200  # the displayed side of each image panel (CSS px)

# The overlay palette: pure colours, chosen for contrast, named once here for the page and the tests.
OVERLAY_COLOURS = {
    "handle": (255, 0, 0),      # drag point in the source
    "target": (0, 0, 255),      # where it lands in the target
    "arrow": (255, 255, 0),     # the arrow between them
    "object": (0, 255, 0),      # objects[].bbox
    "focus": (0, 229, 255),     # the object the task is about (dragged, edited, the subject)
    "box": (255, 0, 255),       # segdet `boxes`
}


def _css_rgb(name: str) -> str:
    return "rgb({}, {}, {})".format(*OVERLAY_COLOURS[name])


STYLE = """
:root { --panel: %(panel)spx; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, sans-serif; color: #1d1d1f; background: #f3f3f5; }
header { position: sticky; top: 0; z-index: 5; background: #fff; border-bottom: 1px solid #ddd; padding: 8px 14px;
  display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; }
header h1 { font-size: 15px; margin: 0 10px 0 0; }
header label { display: inline-flex; gap: 4px; align-items: center; }
header input[type=search] { width: 220px; }
#shown, #flag-count { color: #555; }
button { cursor: pointer; }
#summary { padding: 6px 14px; }
#summary > details > summary { cursor: pointer; font-weight: 600; }
.run { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; margin: 8px 0; }
.run h2 { font-size: 14px; margin: 0 0 2px; word-break: break-all; }
.run .config { color: #555; margin-bottom: 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 14px 24px; }
#grid { padding: 6px 14px 40px; display: flex; flex-direction: column; gap: 10px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; display: flex; gap: 12px;
  content-visibility: auto; contain-intrinsic-size: auto 250px; }
.card[hidden] { display: none; }
.card.flagged { border-color: #d33; box-shadow: 0 0 0 2px #f3b6b6; }
.panels { display: flex; gap: 6px; flex: none; }
.panel { margin: 0; }
.panel figcaption { text-align: center; color: #666; font-size: 11px; }
.frame { position: relative; width: var(--panel); height: var(--panel); background: #3a3a3a; overflow: visible; }
.frame img { display: block; width: 100%%; height: 100%%; object-fit: contain; }
.frame.empty { display: flex; align-items: center; justify-content: center; background: #e4e4e7; color: #888; }
.frame.undecodable { color: #a3321f; font-weight: 600; text-align: center; padding: 8px;
  background: repeating-linear-gradient(45deg, #f8e3dd, #f8e3dd 8px, #fcefeb 8px, #fcefeb 16px); }
svg.ov { position: absolute; left: 0; top: 0; width: 100%%; height: 100%%; overflow: visible; pointer-events: none; }
body.no-overlays svg.ov, body.no-overlays .legend { visibility: hidden; }
.ov rect.box { fill: none; stroke-width: 2px; vector-effect: non-scaling-stroke; }
.ov rect.object { stroke: %(object)s; }
.ov rect.focus { stroke: %(focus)s; }
.ov rect.det { stroke: %(box)s; }
.ov rect.dash { stroke-dasharray: 5 4; }
.ov text { fill: #fff; stroke: #000; stroke-width: 2px; paint-order: stroke; vector-effect: non-scaling-stroke;
  font-family: system-ui, sans-serif; }
.ov .drag line { stroke: %(arrow)s; stroke-width: 2px; vector-effect: non-scaling-stroke; stroke-linecap: butt; }
.ov .drag polygon { fill: %(arrow)s; }
.ov .drag circle.handle { fill: %(handle)s; }
.ov .drag circle.target { fill: %(target)s; }
.legend { position: absolute; left: 3px; bottom: 3px; max-width: calc(var(--panel) - 6px); max-height: 60%%;
  overflow: auto; background: rgba(255,255,255,0.88); border-radius: 3px; padding: 2px 4px; font-size: 10px; }
.legend div { display: flex; align-items: center; gap: 4px; white-space: nowrap; }
.legend i { display: inline-block; width: 10px; height: 10px; border: 1px solid #555; flex: none; }
.meta { min-width: 0; flex: 1; display: flex; flex-direction: column; gap: 4px; }
.meta .ids { color: #555; font-size: 12px; word-break: break-all; }
.meta .ids b { color: #1d1d1f; }
.meta .prompt, .meta .caption { margin: 0; }
.meta .caption .badge { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 8px; background: #e3e8f5;
  color: #234; margin-right: 4px; }
.meta .notes { color: #666; font-size: 11px; }
.meta .issues { color: #a3321f; font-size: 11px; }
.card.damaged { border-color: #e3a08c; }
#problems { padding: 6px 14px 0; }
#problems details { background: #fff5f2; border: 1px solid #e3a08c; border-radius: 6px; padding: 6px 10px; }
#problems summary { cursor: pointer; font-weight: 600; color: #a3321f; }
#problems table { border-collapse: collapse; margin-top: 6px; width: 100%%; }
#problems th, #problems td { text-align: left; vertical-align: top; padding: 2px 10px 2px 0; border-top: 1px solid #f1d3ca; }
#problems td.file, #problems td.key { word-break: break-all; }
#problems td.kind { white-space: nowrap; }
.flag { margin-top: auto; display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.flag input { flex: 1; min-width: 120px; }
.card.flagged .flag-btn { background: #d33; color: #fff; border-color: #a11; }
""" % {"panel": PANEL_PX, **{name: _css_rgb(name) for name in OVERLAY_COLOURS}}

SCRIPT = r"""
(function () {
  "use strict";
  const G = window.GALLERY;
  const NS = "http://www.w3.org/2000/svg";
  const STORE = "collage-gallery-flags:" + G.id;
  const REASONS = ["wrong label", "wrong mask", "wrong points", "wrong boxes", "wrong prompt", "unusable image", "other"];
  const $ = (sel) => document.querySelector(sel);
  const cards = [];
  let flags = {};
  try { flags = JSON.parse(localStorage.getItem(STORE) || "{}") || {}; } catch (e) { flags = {}; }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function arrow(svg, p, u) {
    const [x0, y0, x1, y1] = p;
    const r = 3.5 * u, head = 8 * u;
    const dx = x1 - x0, dy = y1 - y0, len = Math.hypot(dx, dy);
    const g = svgEl("g", {class: "drag"});
    if (len > r + head) {
      const ux = dx / len, uy = dy / len;
      const tipX = x1 - ux * r, tipY = y1 - uy * r;
      const baseX = tipX - ux * head, baseY = tipY - uy * head;
      g.appendChild(svgEl("line", {x1: x0, y1: y0, x2: baseX, y2: baseY}));
      g.appendChild(svgEl("polygon", {points: [tipX, tipY, baseX - uy * head * 0.5, baseY + ux * head * 0.5,
                                               baseX + uy * head * 0.5, baseY - ux * head * 0.5].join(" ")}));
    }
    g.appendChild(svgEl("circle", {class: "handle", cx: x0, cy: y0, r: r}));
    g.appendChild(svgEl("circle", {class: "target", cx: x1, cy: y1, r: r}));
    svg.appendChild(g);
  }

  function overlay(s, role) {
    const boxes = s.boxes[role] || [];
    const pts = (role === "src" || role === "tgt") ? s.pts : [];
    if (!boxes.length && !pts.length) return null;
    const u = Math.max(s.w, s.h) / G.panel;  // json pixels per displayed pixel
    const svg = svgEl("svg", {class: "ov", viewBox: "0 0 " + s.w + " " + s.h, preserveAspectRatio: "xMidYMid meet"});
    for (const [x0, y0, x1, y1, label, kind] of boxes) {
      const rect = svgEl("rect", {class: "box " + kind, x: x0, y: y0, width: x1 - x0, height: y1 - y0});
      svg.appendChild(rect);
      if (label) {
        const text = svgEl("text", {x: x0 + 2 * u, y: y0 + 11 * u, "font-size": 10 * u});
        text.textContent = label;
        svg.appendChild(text);
      }
    }
    for (const p of pts) arrow(svg, p, u);
    return svg;
  }

  function legend(s) {
    const box = el("div", {class: "legend"});
    if (s.legendTitle) box.appendChild(el("div", {}, s.legendTitle));
    for (const item of s.legend) {
      const row = el("div");
      const swatch = el("i");
      swatch.style.background = "rgb(" + item.rgb.join(",") + ")";
      row.append(swatch, document.createTextNode(item.name));
      box.appendChild(row);
    }
    return box;
  }

  function panel(s, role, label) {
    const fig = el("figure", {class: "panel", "data-role": role});
    const frame = el("div", {class: "frame"});
    if (s.img[role]) {
      frame.appendChild(el("img", {src: s.img[role], loading: "lazy", decoding: "async", alt: label + " of " + s.key}));
      const svg = overlay(s, role);
      if (svg) frame.appendChild(svg);
      if (role === "cond" && s.legend && s.legend.length) frame.appendChild(legend(s));
    } else if (s.bad[role]) {  // the member is there but does not decode: say so, do not hide it
      frame.classList.add("empty", "undecodable");
      frame.textContent = "undecodable " + label;
      frame.title = s.bad[role];
    } else {
      frame.classList.add("empty");
      frame.textContent = "no " + label;
    }
    fig.append(frame, el("figcaption", {}, label));
    return fig;
  }

  function setFlagged(card, s, on) {
    const btn = card.querySelector(".flag-btn");
    if (on) {
      flags[s.fid] = {key: s.key, reason: card.querySelector(".reason").value, note: card.querySelector(".note").value};
    } else {
      delete flags[s.fid];
    }
    card.classList.toggle("flagged", on);
    btn.textContent = on ? "Unflag" : "Flag as bad";
    try { localStorage.setItem(STORE, JSON.stringify(flags)); } catch (e) { /* private mode: flags live until reload */ }
    $("#flag-count").textContent = Object.keys(flags).length + " flagged";
  }

  function card(s) {
    const node = el("article", {class: "card", id: "card-" + s.id, "data-key": s.key, "data-task": s.task,
                                "data-op": s.op, "data-caption-source": s.cs});
    const panels = el("div", {class: "panels"});
    panels.append(panel(s, "src", "source"), panel(s, "tgt", "target"), panel(s, "mask", "mask overlay"),
                  panel(s, "cond", "condition"));
    const meta = el("div", {class: "meta"});
    const ids = el("div", {class: "ids"});
    ids.append(el("b", {class: "key"}, s.key), document.createTextNode(" · " + s.task + "/" + s.op + " · " + s.w + "×" + s.h +
               " · shard "), el("span", {class: "shard", title: s.shardPath}, s.shard), document.createTextNode(" · "),
               el("a", {href: s.json, target: "_blank", class: "json-link"}, "full json"));
    const prompt = el("p", {class: "prompt"});
    prompt.append(el("b", {}, "prompt: "), document.createTextNode(s.prompt));
    const caption = el("p", {class: "caption"});
    caption.append(el("span", {class: "badge caption-source"}, s.cs), document.createTextNode(s.caption));
    meta.append(ids, prompt, caption);
    if (s.notes.length) meta.appendChild(el("div", {class: "notes"}, s.notes.join(" · ")));
    if (s.issues.length) {
      node.classList.add("damaged");
      meta.appendChild(el("div", {class: "issues"}, "problems: " + s.issues.join(" · ")));
    }
    const flag = el("div", {class: "flag"});
    const btn = el("button", {class: "flag-btn", type: "button"}, "Flag as bad");
    const reason = el("select", {class: "reason", "aria-label": "reason"});
    for (const r of REASONS) reason.appendChild(el("option", {value: r}, r));
    const note = el("input", {class: "note", type: "text", placeholder: "note (optional)", "aria-label": "note"});
    flag.append(btn, reason, note);
    meta.appendChild(flag);
    node.append(panels, meta);
    const saved = flags[s.fid];
    if (saved) {
      if (REASONS.includes(saved.reason)) reason.value = saved.reason;
      note.value = saved.note || "";
    }
    btn.addEventListener("click", () => setFlagged(node, s, !flags[s.fid]));
    const update = () => { if (flags[s.fid]) setFlagged(node, s, true); };
    reason.addEventListener("change", update);
    note.addEventListener("input", update);
    if (saved) setFlagged(node, s, true);
    return node;
  }

  function fillSelect(select, values, all) {
    const keep = select.value;
    select.textContent = "";
    select.appendChild(el("option", {value: ""}, all));
    for (const [value, count] of values) select.appendChild(el("option", {value: value}, value + " (" + count + ")"));
    select.value = values.some(([v]) => v === keep) ? keep : "";
  }
  function counted(list) {
    const counts = new Map();
    for (const v of list) counts.set(v, (counts.get(v) || 0) + 1);
    return [...counts.entries()].sort((a, b) => a[0] < b[0] ? -1 : 1);
  }

  function applyFilters() {
    const task = $("#f-task").value, op = $("#f-op").value, source = $("#f-source").value;
    const query = $("#f-search").value.trim().toLowerCase(), onlyFlagged = $("#f-flagged").checked;
    let shown = 0;
    for (const {s, node} of cards) {
      const ok = (!task || s.task === task) && (!op || s.op === op) && (!source || s.cs === source) &&
                 (!query || s.hay.includes(query)) && (!onlyFlagged || !!flags[s.fid]);
      node.hidden = !ok;
      if (ok) shown += 1;
    }
    $("#shown").textContent = shown + " of " + cards.length + " shown";
  }

  function flagRows() {
    const rows = [];
    for (const {s} of cards) {
      const f = flags[s.fid];
      if (f) rows.push({key: s.key, reason: f.note ? f.reason + ": " + f.note : f.reason, task: s.task, op: s.op,
                        shard: s.shardPath});
    }
    return rows;
  }
  function csvField(value) {
    const text = String(value);
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], {type: type}));
    const a = el("a", {href: url, download: name});
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function start() {
    const grid = $("#grid");
    const fragment = document.createDocumentFragment();
    for (const s of G.samples) {
      s.hay = (s.prompt + "\n" + s.caption + "\n" + s.key).toLowerCase();
      const node = card(s);
      cards.push({s: s, node: node});
      fragment.appendChild(node);
    }
    grid.appendChild(fragment);
    fillSelect($("#f-task"), counted(G.samples.map((s) => s.task)), "all tasks");
    const fillOps = () => {
      const task = $("#f-task").value;
      fillSelect($("#f-op"), counted(G.samples.filter((s) => !task || s.task === task).map((s) => s.op)), "all ops");
    };
    fillOps();
    fillSelect($("#f-source"), counted(G.samples.map((s) => s.cs)), "all caption sources");
    $("#f-task").addEventListener("change", () => { fillOps(); applyFilters(); });
    for (const id of ["#f-op", "#f-source", "#f-flagged"]) $(id).addEventListener("change", applyFilters);
    $("#f-search").addEventListener("input", applyFilters);
    $("#f-overlays").addEventListener("change", (e) => document.body.classList.toggle("no-overlays", !e.target.checked));
    $("#export-json").addEventListener("click", () =>
      download("flags.json", JSON.stringify(flagRows(), null, 1) + "\n", "application/json"));
    $("#export-csv").addEventListener("click", () => {
      const lines = ["key,reason,task,op,shard"].concat(
        flagRows().map((r) => [r.key, r.reason, r.task, r.op, r.shard].map(csvField).join(",")));
      download("flags.csv", lines.join("\n") + "\n", "text/csv");
    });
    $("#clear-flags").addEventListener("click", () => {
      for (const {s, node} of cards) if (flags[s.fid]) setFlagged(node, s, false);
      applyFilters();
    });
    $("#flag-count").textContent = Object.keys(flags).filter((id) => cards.some((c) => c.s.fid === id)).length + " flagged";
    applyFilters();
    document.body.dataset.ready = "1";
  }
  start();
})();
"""

BODY = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<link rel="icon" href="data:,">
<style>%(style)s</style>
</head>
<body>
<header>
  <h1>%(title)s</h1>
  <label>task <select id="f-task"></select></label>
  <label>op <select id="f-op"></select></label>
  <label>caption <select id="f-source"></select></label>
  <label><input id="f-search" type="search" placeholder="search prompts, captions, keys"></label>
  <label><input id="f-flagged" type="checkbox"> flagged only</label>
  <label><input id="f-overlays" type="checkbox" checked> overlays</label>
  <span id="shown"></span>
  <span id="flag-count"></span>
  <button id="export-json" type="button">Export flags.json</button>
  <button id="export-csv" type="button">Export flags.csv</button>
  <button id="clear-flags" type="button">Clear flags</button>
</header>
%(problems)s<section id="summary"><details open><summary>Summary: %(summary_line)s</summary>%(summary)s</details></section>
<main id="grid"></main>
<script>window.GALLERY = %(data)s;</script>
<script>%(script)s</script>
</body>
</html>
"""


def script_json(data) -> str:
    """JSON safe inside a <script> element (no `</script>` or `<!--` can end it early)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c").replace(
        "\u2028", "\\u2028").replace("\u2029", "\\u2029")


MAX_PROBLEM_ROWS = 500  # a badly damaged run lists its first problems, then how many more
OPEN_PROBLEM_ROWS = 20  # longer lists start folded, so the cards stay in view


def problems_panel(headline: str, rows: list[tuple[str, str, str, str, str, str]]) -> str:
    """The problems panel: `headline` (the counts), then one row per problem:
    (label, kind, file name, file path, sample key, what is wrong)."""
    cells = "".join(f'<tr class="problem" data-kind="{escape(kind)}"><td class="kind">{escape(label)}</td>'
                    f'<td class="file" title="{escape(path)}">{escape(name)}</td><td class="key">{escape(key)}</td>'
                    f'<td class="detail">{escape(detail)}</td></tr>'
                    for label, kind, name, path, key, detail in rows[:MAX_PROBLEM_ROWS])
    more = len(rows) - MAX_PROBLEM_ROWS
    if more > 0:
        cells += f'<tr class="more"><td colspan="4">… and {more:,} more</td></tr>'
    folded = "" if len(rows) > OPEN_PROBLEM_ROWS else " open"
    return (f'<section id="problems"><details{folded}><summary>Problems: {escape(headline)}</summary><table>'
            f"<tr><th>problem</th><th>file</th><th>sample</th><th>what is wrong</th></tr>{cells}</table></details></section>")


def render(title: str, data: dict, summary_html: str, summary_line: str, problems_html: str = "") -> str:
    """The page; `problems_html` (from `problems_panel`) sits above the summary when the runs are damaged."""
    return BODY % {"title": escape(title), "style": STYLE, "summary_line": escape(summary_line), "summary": summary_html,
                   "problems": problems_html, "data": script_json(data), "script": SCRIPT}
