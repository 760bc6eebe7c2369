// flowscope dashboard: everything comes from the JSON API (/api/openapi.json).
"use strict";

// What the page shows, for people and for the browser test.
window.flowscope = { ready: false, trafficPoints: 0, queryRows: -1, findings: -1, errors: [], updates: 0, refreshes: 0, sources: {} };

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const sqlString = (s) => "'" + String(s).replace(/'/g, "''") + "'";
const isAddress = (s) => /^[0-9a-fA-F:.]+$/.test(s) && (s.includes(".") || s.includes(":"));

// One convention with the CLI (crates/query/src/units.rs): bytes in decimal SI units
// (1 kB = 1,000 bytes, 1 GB = 10^9), counts with thousands separators.
function human(n, unit) {
  if (n === null || n === undefined) return "-";
  let v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  if (unit !== "bytes") return Math.round(v).toLocaleString("en-US");
  const names = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
  const sign = v < 0 ? "-" : "";
  v = Math.abs(v);
  let i = 0;
  while (v >= 999.95 && i < names.length - 1) { v /= 1000; i++; }
  if (i === 0) return sign + (Number.isInteger(v) ? String(v) : v.toFixed(1)) + " B";
  return sign + v.toFixed(1) + " " + names[i];
}

// Axis ticks: short, and exact for the round values the axis picks (500 MB, 2k).
function tick(n, unit) {
  const names = unit === "bytes" ? ["B", "kB", "MB", "GB", "TB", "PB"] : ["", "k", "M", "G", "T", "P"];
  let v = Math.abs(Number(n));
  let i = 0;
  while (v >= 1000 && i < names.length - 1) { v /= 1000; i++; }
  const text = String(Number(v.toPrecision(3)));
  return (n < 0 ? "-" : "") + text + (unit === "bytes" ? " " : "") + names[i];
}

// Times are UTC everywhere on the page, whatever the browser's zone.
const utcMinute = (secs) => new Date(secs * 1000).toISOString().slice(0, 16).replace("T", " ");
// A time as the API writes it ("2026-11-02T10:05:00Z", "2026-11-02 10:05:00.000"): UTC.
function parseUtc(text) {
  let t = String(text).trim().replace(" ", "T");
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(t)) t += "Z";
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms / 1000;
}
const isTimeText = (v) => typeof v === "string" && /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(v);

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
const state = { lo: null, hi: null, start: null, end: null, bucket: 60, measure: "bytes", custom: null, marks: [] };

function rangeWhere(alias) {
  const p = alias ? alias + "." : "";
  return `${p}start >= ${state.start} AND ${p}start < ${state.end}`;
}

function table(el, columns, rows, opts = {}) {
  if (!rows.length) { el.innerHTML = '<p class="muted">' + esc(opts.empty || "Nothing in this range.") + "</p>"; return; }
  const num = columns.map((_, i) => rows.some((r) => typeof r[i] === "number"));
  let html = "<table><thead><tr>" + columns.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr></thead><tbody>";
  for (const r of rows) {
    html += "<tr>" + r.map((v, i) => {
      const col = columns[i];
      let shown = v === null ? '<span class="muted">-</span>' : esc(opts.format && opts.format[col] ? opts.format[col](v) : v);
      if (v !== null && opts.drill && typeof v === "string" && (isAddress(v) || v.startsWith("eni-"))) {
        shown = `<a class="drill" data-drill="${esc(v)}">${esc(v)}</a>`;
      }
      const cls = [num[i] ? "num" : "", opts.wrap && opts.wrap.includes(col) ? "wrap" : ""].join(" ").trim();
      return `<td class="${cls}">${shown}</td>`;
    }).join("") + "</tr>";
  }
  el.innerHTML = html + "</tbody></table>";
}

const charts = {};
const SEVERITY_COLORS = { critical: "#7b0d1e", high: "#d62828", medium: "#f08c00", low: "#4d7ea8", info: "#6b778a" };

// Findings as dashed lines at their first-seen time, a triangle on top.
function drawMarks(u) {
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  let drawn = 0;
  ctx.save();
  for (const m of state.marks) {
    const x = Math.round(u.valToPos(m.t, "x", true));
    if (x < left || x > left + width) continue;
    ctx.strokeStyle = ctx.fillStyle = SEVERITY_COLORS[m.severity] || "#6b778a";
    ctx.lineWidth = Math.max(1, devicePixelRatio);
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    const s = 5 * devicePixelRatio;
    ctx.setLineDash([]);
    ctx.beginPath(); ctx.moveTo(x - s, top); ctx.lineTo(x + s, top); ctx.lineTo(x, top + s * 1.6); ctx.closePath(); ctx.fill();
    drawn++;
  }
  ctx.restore();
  window.flowscope.markers = drawn;
}

// A chart of series over UTC time. A series with `right: true` has its own axis on the right
// (REJECT beside ACCEPT, which is orders of magnitude larger). `opts.marks` draws the findings;
// `opts.select(start, end)` is called with the range the user drags across.
function chart(id, title, xs, series, yUnit, opts = {}) {
  const el = $(id);
  if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  el.innerHTML = "";
  if (!xs.length) { el.innerHTML = '<p class="muted">No data in this range.</p>'; return; }
  const colors = ["#2b8a3e", "#d62828", "#1b5fb4", "#f08c00", "#7b2cbf", "#0b7285"];
  const right = series.some((s) => s.right);
  const axisFont = "12px system-ui, sans-serif";
  const axes = [
    // 24-hour UTC ticks; the date where it changes (and on the first tick).
    { label: "time (UTC)", labelSize: 18, font: axisFont, labelFont: axisFont, values: (u, ticks) => ticks.map((t, i) => {
      const text = utcMinute(t);
      return i === 0 || text.slice(0, 10) !== utcMinute(ticks[i - 1]).slice(0, 10) ? text.slice(5, 10) + " " + text.slice(11) : text.slice(11);
    }) },
    { scale: "y", label: opts.leftLabel || "", labelSize: opts.leftLabel ? 18 : 0, font: axisFont, labelFont: axisFont,
      values: (u, ticks) => ticks.map((t) => tick(t, yUnit)), size: 62 },
  ];
  if (right) {
    axes.push({ scale: "r", side: 1, label: opts.rightLabel || "", labelSize: opts.rightLabel ? 18 : 0, font: axisFont, labelFont: axisFont,
      stroke: colors[1], grid: { show: false }, values: (u, ticks) => ticks.map((t) => tick(t, yUnit)), size: 62 });
  }
  const hooks = {};
  if (opts.marks) hooks.draw = [drawMarks];
  if (opts.select) {
    hooks.setSelect = [(u) => {
      if (u.select.width < 8) return;
      const a = u.posToVal(u.select.left, "x");
      const b = u.posToVal(u.select.left + u.select.width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      opts.select(Math.floor(a), Math.ceil(b));
    }];
  }
  const uopts = {
    width: Math.max(el.clientWidth, 280),
    height: 240,
    title,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    cursor: { drag: { x: Boolean(opts.select), y: false, setScale: false } },
    scales: right ? { y: { auto: true }, r: { auto: true } } : { y: { auto: true } },
    series: [{ label: "time (UTC)", value: (u, v) => (v === null || v === undefined ? "-" : utcMinute(v) + " UTC") }].concat(series.map((s, i) => ({
      label: s.label + (s.right ? " (right axis)" : ""), scale: s.right ? "r" : "y",
      stroke: colors[i % colors.length], width: 1.5, fill: colors[i % colors.length] + "22", value: (u, v) => human(v, yUnit),
    }))),
    axes,
    hooks,
  };
  charts[id] = new uPlot(uopts, [xs].concat(series.map((s) => s.values)), el);
  return xs.length;
}

window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max($(id).clientWidth, 280), height: 240 });
});

async function bounds() {
  const r = await sql('SELECT min(start) AS lo, max("end") AS hi, count(*) AS n FROM flows');
  const [lo, hi] = r.rows[0];
  state.lo = lo; state.hi = hi;
  $("lake-span").textContent = lo === null ? "empty lake" : `${utcMinute(lo)} – ${utcMinute(hi)} UTC`;
}

function setRange() {
  const choice = $("range").value;
  if (state.lo === null) { state.start = 0; state.end = 1; return; }
  state.end = state.hi + 1;
  state.start = choice === "all" ? state.lo : Math.max(state.lo, state.hi - Number(choice));
  if (choice === "custom" && state.custom) { state.start = state.custom.start; state.end = state.custom.end; }
  window.flowscope.range = [state.start, state.end];
  const span = Math.max(state.end - state.start, 60);
  state.bucket = Math.max(60, Math.ceil(span / 120 / 60) * 60);
}

// A range dragged on the traffic chart becomes the page's time range.
function chooseRange(start, end) {
  if (end - start < 60) return;
  state.custom = { start, end };
  let opt = $("range").querySelector("option[value=custom]");
  if (!opt) { opt = document.createElement("option"); opt.value = "custom"; $("range").appendChild(opt); }
  opt.textContent = `${utcMinute(start)} – ${utcMinute(end).slice(11)} UTC`;
  $("range").value = "custom";
  refresh();
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
  const main = targetId === "traffic";
  chart(targetId, title + " (" + m + " per " + b / 60 + " min, UTC)", xs,
    [{ label: "ACCEPT", values: series.ACCEPT }, { label: "REJECT", values: series.REJECT, right: true }], m === "bytes" ? "bytes" : "",
    { leftLabel: "ACCEPT " + m, rightLabel: "REJECT " + m, marks: main, select: main ? chooseRange : null });
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
    FROM flows WHERE ${rangeWhere()} AND log_status = 'OK' GROUP BY 1, 2 ORDER BY bytes DESC NULLS LAST LIMIT 15`);
  table($("talkers"), r.columns, r.rows, { drill: true, format: { bytes: (v) => human(v, "bytes"), packets: (v) => human(v), records: (v) => human(v) } });
}

async function rejectedPorts() {
  const r = await sql(`SELECT dstport, protocol_name(protocol) AS protocol, count(*) AS records, count(DISTINCT srcaddr) AS sources
    FROM flows WHERE action = 'REJECT' AND ${rangeWhere()} GROUP BY 1, 2 ORDER BY records DESC LIMIT 15`);
  table($("rejected-ports"), r.columns, r.rows, { format: { records: (v) => human(v), sources: (v) => human(v) } });
}

async function findings() {
  const r = await api(`/api/findings?start=${state.start}&end=${state.end}`);
  window.flowscope.findings = r.findings.length;
  state.marks = r.findings.map((f) => ({ t: parseUtc(f.first_seen), severity: f.severity })).filter((m) => m.t !== null);
  if (charts.traffic) charts.traffic.redraw(false, false);
  $("traffic-marks").textContent = state.marks.length ? `▼ ${state.marks.length} finding(s) at their first-seen time · drag across the chart to choose a time range` : "drag across the chart to choose a time range";
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
  // As the CLI's report: misconfigurations listed, internet requests refused on the way in
  // folded into one line (the security groups and ACLs doing their job).
  const inside = r.diagnoses.filter((d) => !d.at_edge);
  const cols = ["interface_id", "src", "dst", "dst_port", "cause", "records", "fix"];
  table($("diagnoses"), cols, inside.slice(0, 50).map((d) => cols.map((c) => d[c])),
    { drill: true, wrap: ["fix"], format: { records: (v) => human(v) }, empty: "No rejected connections inside the VPC or replies in this range." });
  const edge = r.refused_at_edge || { sources: 0, records: 0 };
  $("diagnoses-edge").textContent = edge.sources
    ? `${human(edge.sources)} internet address(es) refused at the edge (${human(edge.records)} records): security groups and NACLs doing their job.`
    : "";
}

async function alarms() {
  const r = await api("/api/alarms");
  const el = $("alarms");
  if (!r.alarms.length) { el.innerHTML = '<p class="muted">No alarms configured (start the server with --alarms FILE).</p>'; return; }
  el.innerHTML = "<div class=\"table-wrap\"><table><thead><tr><th>Alarm</th><th>State</th><th>Metric</th><th>Condition</th><th>Last change</th></tr></thead><tbody>" +
    r.alarms.map((a) => {
      const op = { GreaterThanOrEqualToThreshold: ">=", GreaterThanThreshold: ">", LessThanThreshold: "<", LessThanOrEqualToThreshold: "<=" }[a.comparison_operator] || a.comparison_operator;
      const last = a.last_transition;
      return `<tr><td>${esc(a.alarm_name)}</td><td class="state-${esc(a.state)}">${esc(a.state)}</td><td>${esc(a.metric)}</td>
        <td>${esc(a.statistic)} ${esc(op)} ${esc(a.threshold)} for ${esc(a.datapoints_to_alarm)} of ${esc(a.evaluation_periods)} × ${esc(a.period)} s</td>
        <td class="wrap">${last ? esc(last.timestamp + ": " + last.reason) : '<span class="muted">none yet</span>'}</td></tr>`;
    }).join("") + "</tbody></table></div>";
}

async function drill(what) {
  const isEni = what.startsWith("eni-");
  const where = isEni ? `interface_id = ${sqlString(what)}` : `(srcaddr = ${sqlString(what)} OR dstaddr = ${sqlString(what)})`;
  $("drill").hidden = false;
  $("drill-title").textContent = (isEni ? "Interface " : "Address ") + what;
  $("drill").scrollTop = 0;
  $("drill-close").focus({ preventScroll: true });
  await traffic("drill-chart", where, what);
  const peers = isEni
    ? await sql(`SELECT srcaddr, dstaddr, sum(bytes) AS bytes, count(*) AS records, sum(CASE WHEN action = 'REJECT' THEN 1 ELSE 0 END) AS rejected
        FROM flows WHERE ${rangeWhere()} AND ${where} AND log_status = 'OK' GROUP BY 1, 2 ORDER BY bytes DESC NULLS LAST LIMIT 20`)
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
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("drill").hidden) $("drill").hidden = true; });

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
    queryChart(r);
  } catch (err) {
    $("query-status").textContent = "";
    let msg = err.message;
    if (err.position) {
      const line = text.split("\n")[err.position.line - 1] || "";
      msg += `\n(line ${err.position.line}, column ${err.position.column})\n${line}\n${" ".repeat(Math.max(err.position.column - 1, 0))}^`;
    }
    $("query-result").innerHTML = "";
    queryChart({ columns: [], rows: [] });
    $("query-error").textContent = msg;
    $("query-error").hidden = false;
    window.flowscope.queryRows = -1;
  }
}
$("run").addEventListener("click", runQuery);

// A result over time gets a chart: a time column (Logs Insights' `bin(5m)`, a timestamp) or a
// first column of epoch seconds (SQL's `start / 300 * 300`), numeric columns as series, and a
// text column (`by bin(5m), action`) splitting each into one series per value.
function queryChart(r) {
  const clear = () => {
    if (charts["query-chart"]) { charts["query-chart"].destroy(); delete charts["query-chart"]; }
    $("query-chart").innerHTML = "";
    window.flowscope.queryChart = false;
  };
  const n = r.columns.length;
  if (r.rows.length < 2 || n < 2) return clear();
  const all = (i, f) => r.rows.every((row) => f(row[i]));
  let tcol = r.columns.findIndex((_, i) => all(i, isTimeText));
  let toSecs = parseUtc;
  if (tcol < 0 && all(0, (v) => typeof v === "number" && v >= 1e8 && v < 1e10)) { tcol = 0; toSecs = (v) => v; }
  if (tcol < 0) return clear();
  const ys = [...Array(n).keys()].filter((i) => i !== tcol && all(i, (v) => v === null || typeof v === "number"));
  const keys = [...Array(n).keys()].filter((i) => i !== tcol && !ys.includes(i));
  if (!ys.length || keys.length > 1) return clear();
  const key = keys.length ? keys[0] : -1;
  const times = [...new Set(r.rows.map((row) => toSecs(row[tcol])))].filter((t) => t !== null).sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const groups = key < 0 ? [null] : [...new Set(r.rows.map((row) => String(row[key])))].slice(0, 8);
  const series = [];
  for (const y of ys) {
    for (const g of groups) {
      const values = new Array(times.length).fill(null);
      for (const row of r.rows) {
        if (g !== null && String(row[key]) !== g) continue;
        const i = at.get(toSecs(row[tcol]));
        if (i !== undefined) values[i] = (values[i] || 0) + (row[y] || 0);
      }
      series.push({ label: g === null ? r.columns[y] : `${r.columns[y]} ${g}`, values });
    }
  }
  const unit = ys.every((i) => /bytes/i.test(r.columns[i])) ? "bytes" : "";
  chart("query-chart", "", times, series, unit);
  window.flowscope.queryChart = true;
}
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
  }), { wrap: ["last error"], format: { records: (v) => human(v), rejected: (v) => human(v), errors: (v) => human(v) } });
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
