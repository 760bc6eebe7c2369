// flowscope dashboard: everything comes from the JSON API (/api/openapi.json).
"use strict";

// What the page shows, for people and for the browser test.
window.flowscope = { ready: false, trafficPoints: 0, queryRows: -1, findings: -1, errors: [], updates: 0, refreshes: 0, sources: {} };

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const sqlString = (s) => "'" + String(s).replace(/'/g, "''") + "'";
const isAddress = (s) => /^[0-9a-fA-F:.]+$/.test(s) && (s.includes(".") || s.includes(":"));

function human(n, unit) {
  if (n === null || n === undefined) return "-";
  const k = unit === "bytes" ? 1024 : 1000;
  const names = unit === "bytes" ? ["B", "KB", "MB", "GB", "TB"] : ["", "k", "M", "G", "T"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= k && i < names.length - 1) { v /= k; i++; }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + (unit === "bytes" ? " " : "") + names[i];
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const resp = await fetch(path, init);
  const json = await resp.json().catch(() => ({ error: "answer was not JSON (" + resp.status + ")" }));
  if (!resp.ok) {
    const err = new Error(json.error || resp.statusText);
    err.position = json.position;
    throw err;
  }
  return json;
}

const sql = (text) => api("/api/sql", { sql: text });

// The time range, in data time: "last hour" means the last hour of records in the lake.
const state = { lo: null, hi: null, start: null, end: null, bucket: 60, measure: "bytes" };

function rangeWhere(alias) {
  const p = alias ? alias + "." : "";
  return `${p}start >= ${state.start} AND ${p}start < ${state.end}`;
}

function table(el, columns, rows, opts = {}) {
  if (!rows.length) { el.innerHTML = '<p class="muted">Nothing in this range.</p>'; return; }
  const num = columns.map((_, i) => rows.some((r) => typeof r[i] === "number"));
  let html = "<table><thead><tr>" + columns.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr></thead><tbody>";
  for (const r of rows) {
    html += "<tr>" + r.map((v, i) => {
      const col = columns[i];
      let shown = v === null ? '<span class="muted">-</span>' : esc(opts.format && opts.format[col] ? opts.format[col](v) : v);
      if (v !== null && opts.drill && typeof v === "string" && (isAddress(v) || v.startsWith("eni-"))) {
        shown = `<a class="drill" data-drill="${esc(v)}">${esc(v)}</a>`;
      }
      return `<td class="${num[i] ? "num" : ""}">${shown}</td>`;
    }).join("") + "</tr>";
  }
  el.innerHTML = html + "</tbody></table>";
}

const charts = {};
function chart(id, title, xs, series, yUnit) {
  const el = $(id);
  if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  el.innerHTML = "";
  if (!xs.length) { el.innerHTML = '<p class="muted">No data in this range.</p>'; return; }
  const colors = ["#2b8a3e", "#d62828", "#1b5fb4", "#f08c00", "#7b2cbf", "#0b7285"];
  const opts = {
    width: Math.max(el.clientWidth, 280),
    height: 240,
    title,
    series: [{}].concat(series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 1.5, fill: colors[i % colors.length] + "22", value: (u, v) => human(v, yUnit) }))),
    axes: [{}, { values: (u, ticks) => ticks.map((t) => human(t, yUnit)), size: 70 }],
  };
  charts[id] = new uPlot(opts, [xs].concat(series.map((s) => s.values)), el);
  return xs.length;
}

window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max($(id).clientWidth, 280), height: 240 });
});

async function bounds() {
  const r = await sql('SELECT min(start) AS lo, max("end") AS hi, count(*) AS n FROM flows');
  const [lo, hi] = r.rows[0];
  state.lo = lo; state.hi = hi;
  $("lake-span").textContent = lo === null ? "empty lake" :
    `${new Date(lo * 1000).toISOString().slice(0, 16).replace("T", " ")} – ${new Date(hi * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function setRange() {
  const choice = $("range").value;
  if (state.lo === null) { state.start = 0; state.end = 1; return; }
  state.end = state.hi + 1;
  state.start = choice === "all" ? state.lo : Math.max(state.lo, state.hi - Number(choice));
  const span = Math.max(state.end - state.start, 60);
  state.bucket = Math.max(60, Math.ceil(span / 120 / 60) * 60);
}

async function traffic(targetId, where, title) {
  const b = state.bucket;
  const r = await sql(`SELECT start / ${b} * ${b} AS t, action, sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS records
    FROM flows WHERE ${rangeWhere()} AND action IS NOT NULL${where ? " AND (" + where + ")" : ""} GROUP BY 1, 2 ORDER BY 1`);
  const m = state.measure;
  const idx = r.columns.indexOf(m);
  const first = Math.floor(state.start / b) * b;
  const xs = [];
  for (let t = first; t < state.end; t += b) xs.push(t);
  const series = { ACCEPT: new Array(xs.length).fill(0), REJECT: new Array(xs.length).fill(0) };
  for (const row of r.rows) {
    const i = Math.round((row[0] - first) / b);
    if (i >= 0 && i < xs.length && series[row[1]]) series[row[1]][i] += row[idx];
  }
  chart(targetId, title + " (" + m + " per " + b / 60 + " min)", xs,
    [{ label: "ACCEPT", values: series.ACCEPT }, { label: "REJECT", values: series.REJECT }], m === "bytes" ? "bytes" : "");
  return r.rows.length;
}

async function tiles() {
  const r = await sql(`SELECT count(*) AS records, sum(bytes) AS bytes, sum(packets) AS packets,
    sum(CASE WHEN action = 'REJECT' THEN 1 ELSE 0 END) AS rejected, count(DISTINCT interface_id) AS interfaces,
    count(DISTINCT srcaddr) AS sources FROM flows WHERE ${rangeWhere()}`);
  const [records, bytes, packets, rejected, interfaces, sources] = r.rows[0];
  const t = [["Records", human(records)], ["Bytes", human(bytes, "bytes")], ["Packets", human(packets)],
    ["Rejected records", human(rejected) + (records ? ` (${(100 * rejected / records).toFixed(1)} %)` : "")],
    ["Interfaces", human(interfaces)], ["Source addresses", human(sources)]];
  $("tiles").innerHTML = t.map(([k, v]) => `<div class="tile"><span class="muted">${k}</span><b>${esc(v)}</b></div>`).join("");
}

async function talkers() {
  const r = await sql(`SELECT srcaddr, dstaddr, sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS records
    FROM flows WHERE ${rangeWhere()} GROUP BY 1, 2 ORDER BY bytes DESC NULLS LAST LIMIT 15`);
  table($("talkers"), r.columns, r.rows, { drill: true, format: { bytes: (v) => human(v, "bytes") } });
}

async function rejectedPorts() {
  const r = await sql(`SELECT dstport, protocol_name(protocol) AS protocol, count(*) AS records, count(DISTINCT srcaddr) AS sources
    FROM flows WHERE action = 'REJECT' AND ${rangeWhere()} GROUP BY 1, 2 ORDER BY records DESC LIMIT 15`);
  table($("rejected-ports"), r.columns, r.rows);
}

async function findings() {
  const r = await api(`/api/findings?start=${state.start}&end=${state.end}`);
  window.flowscope.findings = r.findings.length;
  const el = $("findings");
  const note = r.up_to_date ? "" : '<p class="muted">The detections are catching up with the latest records.</p>';
  if (!r.findings.length) { el.innerHTML = note + '<p class="muted">No findings in this range.</p>'; return; }
  el.innerHTML = note + r.findings.map((f, i) => `
    <div class="finding ${esc(f.severity)} ${esc(f.state || "")}">
      <span class="sev">${esc(f.severity)}</span>${f.state ? `<span class="state">${esc(f.state)}</span>` : ""}<b>${esc(f.detection)}</b>
      <span class="muted">${esc(f.technique ? f.technique.id + " " + f.technique.name : "")} · ${esc(f.first_seen)} – ${esc(f.last_seen)}</span>
      <div>${esc(f.summary)}</div>
      <div>${[f.src, f.dst].filter(Boolean).map((a) => `<a class="drill" data-drill="${esc(a)}">${esc(a)}</a>`).join(" → ")}${f.dst_port !== null && f.dst_port !== undefined ? " port " + esc(f.dst_port) : ""}</div>
      <details><summary>Evidence</summary>
        <pre>${esc(JSON.stringify(f.evidence.figures, null, 1))}</pre>
        ${f.evidence.sample && f.evidence.sample.length ? "<pre>" + esc(f.evidence.sample.join("\n")) + "</pre>" : ""}
        <pre>${esc(f.evidence.sql)}</pre>
        <button type="button" data-sql="${i}">Open in the query box</button>
      </details>
    </div>`).join("");
  el.querySelectorAll("button[data-sql]").forEach((b) => b.addEventListener("click", () => {
    document.querySelector('input[name=lang][value=sql]').checked = true;
    $("query").value = r.findings[Number(b.dataset.sql)].evidence.sql;
    $("query").scrollIntoView({ behavior: "smooth" });
    runQuery();
  }));
}

async function diagnoses() {
  const r = await api(`/api/diagnose?start=${state.start}&end=${state.end}`);
  const cols = ["interface_id", "src", "dst", "dst_port", "cause", "records", "fix"];
  table($("diagnoses"), cols, r.diagnoses.slice(0, 50).map((d) => cols.map((c) => d[c])), { drill: true });
}

async function alarms() {
  const r = await api("/api/alarms");
  const el = $("alarms");
  if (!r.alarms.length) { el.innerHTML = '<p class="muted">No alarms configured (start the server with --alarms FILE).</p>'; return; }
  el.innerHTML = "<table><thead><tr><th>Alarm</th><th>State</th><th>Metric</th><th>Condition</th><th>Last change</th></tr></thead><tbody>" +
    r.alarms.map((a) => {
      const op = { GreaterThanOrEqualToThreshold: ">=", GreaterThanThreshold: ">", LessThanThreshold: "<", LessThanOrEqualToThreshold: "<=" }[a.comparison_operator] || a.comparison_operator;
      const last = a.last_transition;
      return `<tr><td>${esc(a.alarm_name)}</td><td class="state-${esc(a.state)}">${esc(a.state)}</td><td>${esc(a.metric)}</td>
        <td>${esc(a.statistic)} ${esc(op)} ${esc(a.threshold)} for ${esc(a.datapoints_to_alarm)} of ${esc(a.evaluation_periods)} × ${esc(a.period)} s</td>
        <td>${last ? esc(last.timestamp + ": " + last.reason) : '<span class="muted">none yet</span>'}</td></tr>`;
    }).join("") + "</tbody></table>";
}

async function drill(what) {
  const isEni = what.startsWith("eni-");
  const where = isEni ? `interface_id = ${sqlString(what)}` : `(srcaddr = ${sqlString(what)} OR dstaddr = ${sqlString(what)})`;
  $("drill").hidden = false;
  $("drill-title").textContent = (isEni ? "Interface " : "Address ") + what;
  $("drill").scrollIntoView({ behavior: "smooth" });
  await traffic("drill-chart", where, what);
  const peers = isEni
    ? await sql(`SELECT srcaddr, dstaddr, sum(bytes) AS bytes, count(*) AS records, sum(CASE WHEN action = 'REJECT' THEN 1 ELSE 0 END) AS rejected
        FROM flows WHERE ${rangeWhere()} AND ${where} GROUP BY 1, 2 ORDER BY bytes DESC NULLS LAST LIMIT 20`)
    : await sql(`SELECT CASE WHEN srcaddr = ${sqlString(what)} THEN dstaddr ELSE srcaddr END AS peer, sum(bytes) AS bytes, count(*) AS records,
        sum(CASE WHEN action = 'REJECT' THEN 1 ELSE 0 END) AS rejected FROM flows WHERE ${rangeWhere()} AND ${where} GROUP BY 1 ORDER BY bytes DESC NULLS LAST LIMIT 20`);
  table($("drill-peers"), peers.columns, peers.rows, { drill: true, format: { bytes: (v) => human(v, "bytes") } });
  const ports = await sql(`SELECT dstport, protocol_name(protocol) AS protocol, action, count(*) AS records, sum(bytes) AS bytes
    FROM flows WHERE ${rangeWhere()} AND ${where} GROUP BY 1, 2, 3 ORDER BY records DESC LIMIT 20`);
  table($("drill-ports"), ports.columns, ports.rows, { format: { bytes: (v) => human(v, "bytes") } });
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a.drill");
  if (a) { e.preventDefault(); drill(a.dataset.drill).catch(report); }
});
$("drill-close").addEventListener("click", () => { $("drill").hidden = true; });

async function runQuery() {
  const text = $("query").value;
  const lang = document.querySelector("input[name=lang]:checked").value;
  $("query-error").hidden = true;
  $("query-status").textContent = "running…";
  try {
    const r = lang === "sql" ? await api("/api/sql", { sql: text })
      : await api("/api/insights", { query: text, start: state.start, end: state.end });
    $("query-status").textContent = `${r.rows.length} row(s)${r.truncated ? " (more not shown)" : ""} in ${r.elapsed_ms.toFixed(0)} ms`;
    table($("query-result"), r.columns, r.rows, { drill: true });
    window.flowscope.queryRows = r.rows.length;
    // A chart when the first column is numeric (a time or a bucket) and others are too.
    const numeric = r.columns.map((_, i) => r.rows.length > 0 && r.rows.every((row) => row[i] === null || typeof row[i] === "number"));
    const ys = numeric.map((n, i) => (n && i > 0 ? i : -1)).filter((i) => i > 0);
    if (r.rows.length > 1 && numeric[0] && ys.length) {
      const sorted = r.rows.slice().sort((a, b) => a[0] - b[0]);
      chart("query-chart", "", sorted.map((row) => row[0]), ys.map((i) => ({ label: r.columns[i], values: sorted.map((row) => row[i]) })), "");
    } else {
      if (charts["query-chart"]) { charts["query-chart"].destroy(); delete charts["query-chart"]; }
      $("query-chart").innerHTML = "";
    }
  } catch (err) {
    $("query-status").textContent = "";
    let msg = err.message;
    if (err.position) {
      const line = text.split("\n")[err.position.line - 1] || "";
      msg += `\n(line ${err.position.line}, column ${err.position.column})\n${line}\n${" ".repeat(Math.max(err.position.column - 1, 0))}^`;
    }
    $("query-result").innerHTML = "";
    if (charts["query-chart"]) { charts["query-chart"].destroy(); delete charts["query-chart"]; }
    $("query-chart").innerHTML = "";
    $("query-error").textContent = msg;
    $("query-error").hidden = false;
    window.flowscope.queryRows = -1;
  }
}
$("run").addEventListener("click", runQuery);
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runQuery(); });

function report(err) {
  window.flowscope.errors.push(String(err.message || err));
  console.error(err);
}

async function refresh() {
  window.flowscope.ready = false;
  window.flowscope.refreshes += 1;
  try {
    await bounds();
    setRange();
    const points = await traffic("traffic", "", "Traffic");
    window.flowscope.trafficPoints = points;
    await Promise.all([tiles(), talkers(), rejectedPorts(), alarms()].map((p) => p.catch(report)));
    await Promise.all([findings(), diagnoses()].map((p) => p.catch(report)));
  } catch (err) {
    report(err);
  }
  window.flowscope.ready = true;
}

$("range").addEventListener("change", refresh);
$("refresh").addEventListener("click", refresh);
$("measure").addEventListener("change", () => { state.measure = $("measure").value; traffic("traffic", "", "Traffic").catch(report); });
setInterval(() => alarms().catch(report), 15000);

// Live: the server sends an update when records, findings, alarms or sources change; the page
// follows without being reloaded (at most one refresh every 5 s).
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function showSources(sources) {
  const names = Object.keys(sources || {});
  window.flowscope.sources = sources || {};
  if (!names.length) return;
  const cols = ["source", "records", "rejected", "errors", "behind", "last error"];
  table($("sources"), cols, names.map((n) => {
    const s = sources[n];
    return [n, s.records, s.rejected, s.errors, ago(s.lag_seconds), s.last_error];
  }), { format: { records: (v) => human(v), rejected: (v) => human(v), errors: (v) => human(v) } });
}

const live = { generation: null, runs: null, timer: null, busy: false, last: 0 };
function followLive() {
  if (!window.EventSource) { $("live").textContent = ""; return; }
  const events = new EventSource("/api/live");
  events.addEventListener("update", (e) => {
    const u = JSON.parse(e.data);
    window.flowscope.updates += 1;
    window.flowscope.generation = u.generation;
    $("live").textContent = "live · " + new Date().toISOString().slice(11, 19) + " UTC";
    showSources(u.sources);
    const changed = live.generation !== null && (u.generation !== live.generation || u.findings.runs !== live.runs);
    live.generation = u.generation;
    live.runs = u.findings.runs;
    if (changed && !live.timer) {
      const wait = Math.max(0, 5000 - (Date.now() - live.last));
      live.timer = setTimeout(async () => {
        live.timer = null;
        live.last = Date.now();
        await refresh();
      }, wait);
    }
  });
  events.onerror = () => { $("live").textContent = "reconnecting…"; };
}

followLive();
refresh();
