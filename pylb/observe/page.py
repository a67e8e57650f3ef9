"""The stats page: one HTML document that updates itself.

Owns: ``PAGE``, the HTML at ``/`` of the stats port: every listener, service
and backend (state, health, in-flight and total requests, responses and
errors by class, p50/p99 latency) and the last discovery and health events,
drawn by a small inline script that fetches ``stats.json`` every second and
redraws the tables in place (no reload). Must not know: how statistics are
gathered. Invariants: nothing is fetched from anywhere else (no CDN, no font,
no image); names from containers are set as text, never as HTML.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pylb statistics</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em 2em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
#summary { color: #555; }
table { border-collapse: collapse; background: #fff; min-width: 60%; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; white-space: nowrap; }
th { background: #eee; }
td.text, th.text { text-align: left; }
td.state { font-weight: bold; text-align: center; }
tr.up td.state { background: #c8f0c8; }
tr.down td.state { background: #f6c1c1; }
tr.draining td.state { background: #f8e3a8; }
#events td { text-align: left; }
.stale { color: #b00; }
</style>
</head>
<body>
<h1>pylb</h1>
<div id="summary">loading...</div>
<h2>Listeners</h2>
<table id="listeners"><thead><tr><th class="text">listener</th><th>requests</th><th>2xx</th><th>3xx</th>
<th>4xx</th><th>5xx</th><th>errors</th><th>bytes in</th><th>bytes out</th><th>p50 ms</th><th>p99 ms</th></tr></thead>
<tbody></tbody></table>
<h2>Services</h2>
<table id="services"><thead><tr><th class="text">service</th><th>backends up</th><th>in flight</th>
<th>responses</th><th>2xx</th><th>4xx</th><th>5xx</th><th>errors</th><th>retries</th><th>p50 ms</th><th>p99 ms</th>
</tr></thead><tbody></tbody></table>
<h2>Backends</h2>
<table id="backends"><thead><tr><th class="text">service</th><th class="text">backend</th><th class="text">name</th>
<th>state</th><th>health</th><th>in flight</th><th>requests</th><th>failures</th><th>2xx</th><th>5xx</th><th>errors</th>
<th>p50 ms</th><th>p99 ms</th></tr></thead><tbody></tbody></table>
<h2>Errors by class</h2>
<table id="errors"><thead><tr><th class="text">class</th><th>count</th></tr></thead><tbody></tbody></table>
<h2>Last events</h2>
<table id="events"><thead><tr><th class="text">time</th><th class="text">kind</th><th class="text">what</th></tr>
</thead><tbody></tbody></table>
<script>
"use strict";
function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "-" : String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
}
function errors(figures) {
  return Object.values(figures.errors).reduce((a, b) => a + b, 0);
}
function fill(id, rows, draw) {
  const body = document.querySelector("#" + id + " tbody");
  const fresh = document.createElement("tbody");
  for (const row of rows) fresh.appendChild(draw(row));
  body.replaceWith(fresh);
}
function render(data) {
  const started = new Date(data.started * 1000).toLocaleString();
  document.getElementById("summary").textContent =
    data.state + " since " + started + "; " + data.workers + " worker" + (data.workers === 1 ? "" : "s") +
    "; " + data.connections + " connections; " + data.requests + " requests; " + data.in_flight + " in flight" +
    (data.observing ? "" : " (per-class figures and latency: off)");
  fill("listeners", data.listeners, (l) => {
    const tr = document.createElement("tr");
    cell(tr, l.name, "text"); cell(tr, l.requests); cell(tr, l.responses["2xx"]); cell(tr, l.responses["3xx"]);
    cell(tr, l.responses["4xx"]); cell(tr, l.responses["5xx"]); cell(tr, errors(l)); cell(tr, l.bytes_in);
    cell(tr, l.bytes_out); cell(tr, l.latency.p50); cell(tr, l.latency.p99);
    return tr;
  });
  fill("services", data.services, (s) => {
    const tr = document.createElement("tr");
    cell(tr, s.name + (s.default ? " (default)" : ""), "text"); cell(tr, s.up + "/" + s.backends);
    cell(tr, s.in_flight); cell(tr, s.records); cell(tr, s.responses["2xx"]); cell(tr, s.responses["4xx"]);
    cell(tr, s.responses["5xx"]); cell(tr, errors(s)); cell(tr, s.retries); cell(tr, s.latency.p50);
    cell(tr, s.latency.p99);
    return tr;
  });
  fill("backends", data.backends, (b) => {
    const tr = document.createElement("tr");
    tr.className = b.state;
    tr.dataset.backend = b.address;
    cell(tr, b.service || "-", "text"); cell(tr, b.address, "text"); cell(tr, b.name || "-", "text");
    cell(tr, b.state, "state"); cell(tr, b.health); cell(tr, b.in_flight); cell(tr, b.requests);
    cell(tr, b.failures); cell(tr, b.responses["2xx"]); cell(tr, b.responses["5xx"]); cell(tr, errors(b));
    cell(tr, b.latency.p50); cell(tr, b.latency.p99);
    return tr;
  });
  fill("errors", Object.entries(data.totals.errors), ([kind, count]) => {
    const tr = document.createElement("tr");
    cell(tr, kind, "text"); cell(tr, count);
    return tr;
  });
  fill("events", data.events.slice().reverse(), (e) => {
    const tr = document.createElement("tr");
    cell(tr, new Date(e.time * 1000).toLocaleTimeString()); cell(tr, e.kind + (e.worker ? " " + e.worker : ""));
    cell(tr, e.text);
    return tr;
  });
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}
async function poll() {
  try {
    // From the origin (never from a URL that holds user:password@, which fetch refuses): the
    // browser adds the Basic credentials it has for this origin.
    const where = location.origin + location.pathname.replace(/[^/]*$/, "") + "stats.json";
    const answer = await fetch(where, {cache: "no-store", credentials: "same-origin"});
    if (!answer.ok) throw new Error(answer.status + " " + answer.statusText);
    render(await answer.json());
    document.getElementById("summary").classList.remove("stale");
  } catch (err) {
    const summary = document.getElementById("summary");
    summary.classList.add("stale");
    summary.textContent = "stats unavailable: " + err.message;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""
