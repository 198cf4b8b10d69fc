// Sluice's web console: the jobs table, a job's page (dataflow with rates, charts,
// checkpoints, log) and a SQL editor that validates as you type. Plain JS over the REST API
// under /v1/; the page polls once a second.
"use strict";

const POLL_MS = 1000;
const view = document.getElementById("view");
let timer = null;
// The previous poll's counters of the job page, for rates on the graph's edges.
let previous = null;

// ---- API -----------------------------------------------------------------------------------

function token() {
  return localStorage.getItem("sluice-token") || "";
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    document.getElementById("token-bar").hidden = false;
    throw new Error("the server needs a token");
  }
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((value && value.error) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return value;
}

document.getElementById("token-save").addEventListener("click", () => {
  localStorage.setItem("sluice-token", document.getElementById("token").value);
  document.getElementById("token-bar").hidden = true;
  route();
});

// ---- formatting ------------------------------------------------------------------------------

function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(n) {
  return n == null ? "–" : Math.round(n).toLocaleString("en-US");
}
function rate(n) {
  if (n == null) return "–";
  return n >= 10 ? num(n) + "/s" : n.toFixed(1) + "/s";
}
function time(ms) {
  if (ms == null) return "–";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}
function duration(s) {
  if (s == null) return "–";
  if (s >= 3600) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  if (s >= 60) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return s + "s";
}
function bytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MB";
  if (n >= 1 << 10) return (n / 1024).toFixed(1) + " kB";
  return n + " B";
}
function status(s) {
  return `<span class="status ${esc(s)}">${esc(s)}</span>`;
}

// ---- routing ---------------------------------------------------------------------------------

function route() {
  clearInterval(timer);
  previous = null;
  const hash = location.hash || "#/";
  const job = hash.match(/^#\/jobs\/([\w-]+)/);
  if (job) return showJob(job[1]);
  if (hash === "#/new") return showEditor();
  return showJobs();
}
window.addEventListener("hashchange", route);

function every(f) {
  f();
  timer = setInterval(f, POLL_MS);
}

// ---- jobs table ------------------------------------------------------------------------------

function showJobs() {
  view.innerHTML = `
    <div class="head"><div><h1>Jobs</h1><div class="sub">Updated every second</div></div></div>
    <div class="card"><table id="jobs">
      <thead><tr><th>Id</th><th>Name</th><th>Status</th><th class="num">Uptime</th>
      <th class="num">Rows in</th><th class="num">In</th><th class="num">Out</th>
      <th class="num">Lag</th><th>Watermark</th><th class="num">Last checkpoint</th></tr></thead>
      <tbody></tbody></table></div>`;
  every(async () => {
    let jobs;
    try {
      jobs = await api("GET", "/v1/jobs");
    } catch (e) {
      view.querySelector("tbody").innerHTML = `<tr><td colspan="10" class="empty">${esc(e.message)}</td></tr>`;
      return;
    }
    const rows = jobs.slice().reverse().map((j) => `
      <tr class="job" data-id="${esc(j.id)}" data-status="${esc(j.status)}">
        <td><a href="#/jobs/${esc(j.id)}">${esc(j.id)}</a></td><td>${esc(j.name)}</td>
        <td>${status(j.status)}</td><td class="num">${duration(j.uptime_s)}</td>
        <td class="num rows-in">${num(j.rows_in)}</td><td class="num">${rate(j.rows_in_per_s)}</td>
        <td class="num">${rate(j.rows_out_per_s)}</td><td class="num">${num(j.lag)}</td>
        <td>${time(j.watermark_ms)}</td>
        <td class="num">${j.checkpoint ? j.checkpoint.age_s + " s ago" : "–"}</td>
      </tr>`);
    view.querySelector("tbody").innerHTML = rows.length
      ? rows.join("")
      : `<tr><td colspan="10" class="empty">No jobs yet. <a href="#/new">Submit one</a>.</td></tr>`;
    view.querySelectorAll("tr.job").forEach((tr) =>
      tr.addEventListener("click", () => (location.hash = "#/jobs/" + tr.dataset.id)));
  });
}

// ---- one job ---------------------------------------------------------------------------------

function showJob(id) {
  view.innerHTML = `
    <div class="head">
      <div><h1 id="job-name">…</h1><div class="sub"><span id="job-status"></span> <span id="job-id">${esc(id)}</span></div></div>
      <div class="actions">
        <button class="button" id="stop" title="Take a savepoint and stop: resumable">Stop</button>
        <button class="button" id="drain" title="Emit every open window, then stop">Stop &amp; drain</button>
        <button class="button danger" id="cancel" title="Stop at once; a resume restores the last checkpoint">Cancel</button>
        <button class="button primary" id="resume">Resume</button>
        <button class="button danger" id="delete">Delete</button>
      </div>
    </div>
    <div id="job-error"></div>
    <div class="stats" id="stats"></div>
    <div class="card"><h2>Dataflow</h2><div class="graph" id="dataflow"></div></div>
    <div class="card"><h2>Last minutes</h2><div class="charts" id="charts"></div></div>
    <div class="card"><h2>Checkpoints</h2><div id="checkpoints"></div></div>
    <div class="card"><h2>Log</h2><pre class="log" id="log"></pre></div>
    <div class="card"><h2>SQL</h2><pre class="sql" id="job-sql"></pre></div>`;
  const act = (path, body) => async () => {
    try {
      await api("POST", `/v1/jobs/${id}/${path}`, body);
    } catch (e) {
      alert(e.message);
    }
  };
  document.getElementById("stop").onclick = act("stop", { mode: "savepoint" });
  document.getElementById("drain").onclick = act("stop", { mode: "drain" });
  document.getElementById("cancel").onclick = act("stop", { mode: "cancel" });
  document.getElementById("resume").onclick = act("resume");
  document.getElementById("delete").onclick = async () => {
    if (!confirm("Delete this job and its checkpoints?")) return;
    await api("DELETE", `/v1/jobs/${id}`);
    location.hash = "#/";
  };
  let polls = 0;
  every(async () => {
    let job;
    try {
      job = await api("GET", `/v1/jobs/${id}`);
    } catch (e) {
      document.getElementById("job-error").innerHTML = `<div class="card error-box">${esc(e.message)}</div>`;
      return;
    }
    renderJob(job);
    // Checkpoints change at most every few seconds.
    if (polls++ % 3 === 0) renderCheckpoints(id);
  });
}

function renderJob(job) {
  const active = ["CREATED", "RUNNING", "RESTARTING"].includes(job.status);
  document.title = `${job.name} · Sluice`;
  document.getElementById("job-name").textContent = job.name;
  const st = document.getElementById("job-status");
  st.innerHTML = status(job.status);
  st.dataset.status = job.status;
  for (const b of ["stop", "drain", "cancel"]) document.getElementById(b).disabled = !active;
  document.getElementById("resume").disabled = active;
  document.getElementById("job-error").innerHTML = job.error
    ? `<div class="card error-box">${esc(job.error)}</div>` : "";
  const c = job.checkpoint;
  const stats = [
    ["Rows in", num(job.rows_in), "rows-in"],
    ["Rows out", num(job.rows_out), "rows-out"],
    ["In", rate(job.rows_in_per_s)],
    ["Out", rate(job.rows_out_per_s)],
    ["Watermark (UTC)", job.watermark_ms == null ? "–" : time(job.watermark_ms).slice(11)],
    ["Lag", num(job.lag)],
    ["Uptime", duration(job.uptime_s)],
    ["Last checkpoint", c ? `#${c.id} · ${c.age_s} s ago` : "–"],
  ];
  document.getElementById("stats").innerHTML = stats.map(([label, value, id]) =>
    `<div class="stat"><div class="label">${label}</div><div class="value"${id ? ` id="${id}"` : ""}>${esc(value)}</div></div>`).join("");
  const now = Date.now();
  if (job.dataflow) {
    document.getElementById("dataflow").innerHTML = graph(job.dataflow, previous && {
      flow: previous.flow, seconds: (now - previous.at) / 1000,
    });
    previous = { flow: job.dataflow, at: now };
  } else {
    document.getElementById("dataflow").innerHTML = `<div class="notice">Not running in this server since it started; resume it to see its dataflow.</div>`;
  }
  document.getElementById("charts").innerHTML = charts(job.history || []);
  const log = document.getElementById("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = (job.log || []).join("\n") || "(nothing logged yet)";
  if (atEnd) log.scrollTop = log.scrollHeight;
  document.getElementById("job-sql").textContent = job.sql;
}

async function renderCheckpoints(id) {
  let list;
  try {
    list = await api("GET", `/v1/jobs/${id}/checkpoints`);
  } catch (e) {
    return;
  }
  const el = document.getElementById("checkpoints");
  if (!el) return;
  if (!list.length) {
    el.innerHTML = `<div class="notice">None yet.</div>`;
    return;
  }
  const now = Date.now();
  el.innerHTML = `<table><thead><tr><th>Id</th><th>Kind</th><th class="num">Age</th>
    <th class="num">Took</th><th class="num">Size</th><th class="num">Staged rows</th></tr></thead><tbody>` +
    list.slice().reverse().slice(0, 10).map((c) => `<tr><td>${c.id}</td><td>${esc(c.kind)}</td>
      <td class="num">${duration(Math.max(0, Math.round((now - c.created_ms) / 1000)))}</td>
      <td class="num">${c.duration_ms} ms</td><td class="num">${bytes(c.bytes)}</td>
      <td class="num">${num(c.staged_rows)}</td></tr>`).join("") + `</tbody></table>`;
}

// ---- the dataflow graph --------------------------------------------------------------------

const NODE_W = 178, NODE_H = 54, GAP_X = 58, GAP_Y = 22;

function clip(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// What each operator reads (`{source: i}` or `{operator: j}`), and where it goes: a branch
// starting at a source gets a lane (a row) of its own, an operator reading others sits in the
// lane of the first and a column after all of them (a union's or join's branches meet there).
function layout(p) {
  const lane = [], col = [];
  let lanes = 0;
  p.operators.forEach((o, j) => {
    const reads = o.reads || [j === 0 ? { source: p.source } : { operator: j - 1 }];
    const ops = reads.filter((r) => r.operator != null).map((r) => r.operator);
    if (ops.length === 0) {
      lane[j] = lanes++;
      col[j] = 0;
    } else {
      lane[j] = lane[ops[0]];
      col[j] = 1 + Math.max(...ops.map((i) => col[i]));
    }
  });
  return { lane, col, lanes: Math.max(1, lanes), width: Math.max(0, ...col.map((c) => c + 1)) };
}

// Sources in the first column, each pipeline's operators in lanes (a chain is one row), its
// sinks last; edges carry the rows per second that crossed them since the previous poll.
function graph(flow, before) {
  const perSecond = (now, then) =>
    before && then != null && before.seconds > 0 ? Math.max(0, (now - then) / before.seconds) : null;
  const nodes = [], edges = [];
  const layouts = flow.pipelines.map(layout);
  // The edge from a first stage's last operator into the second stage's first.
  const fromStage = (k, to) => {
    const ops = flow.pipelines[k].operators, last = ops.length - 1;
    const was = before && before.flow.pipelines[k] && before.flow.pipelines[k].operators[last];
    return { from: `p${k}o${last}`, to, rate: perSecond(ops[last].rows_out, was && was.rows_out) };
  };
  const rows = flow.pipelines.map((p, k) => Math.max(layouts[k].lanes, p.name.split(", ").length));
  let y = 0;
  const pipelineY = rows.map((n) => {
    const top = y;
    y += n * (NODE_H + GAP_Y);
    return top;
  });
  const height = Math.max(y, flow.sources.length * (NODE_H + GAP_Y));
  // A second stage goes on in the columns after its first stage's.
  const offset = [];
  flow.pipelines.forEach((p, k) => {
    const stage = p.operators.length && (p.operators[0].reads || []).find((r) => r.stage != null);
    offset[k] = stage ? offset[stage.stage] + layouts[stage.stage].width : 0;
  });
  const columns = 2 + Math.max(0, ...layouts.map((l, k) => offset[k] + l.width));
  const x = (col) => 10 + col * (NODE_W + GAP_X);
  flow.sources.forEach((s, i) => {
    // Beside the lanes that read it (the pipelines', when they have no operators).
    const ys = [];
    flow.pipelines.forEach((p, k) => {
      p.operators.forEach((o, j) => {
        const reads = o.reads || [j === 0 ? { source: p.source } : { operator: j - 1 }];
        if (reads.some((r) => r.source === i)) {
          ys.push(pipelineY[k] + layouts[k].lane[j] * (NODE_H + GAP_Y));
        }
      });
      if (!p.operators.length && p.source === i) ys.push(pipelineY[k]);
    });
    const top = ys.length ? (Math.min(...ys) + Math.max(...ys)) / 2 : i * (NODE_H + GAP_Y);
    const was = before && before.flow.sources[i];
    nodes.push({ id: `s${i}`, kind: "source", x: x(0), y: top, title: s.name,
      figures: `${num(s.rows_in)} in` + (s.lag != null ? ` · lag ${num(s.lag)}` : "") + (s.bad_records ? ` · ${num(s.bad_records)} bad` : ""),
      rate: perSecond(s.rows_in, was && was.rows_in) });
  });
  flow.pipelines.forEach((p, k) => {
    const was = before && before.flow.pipelines[k];
    const { lane, col } = layouts[k];
    const outRate = [];
    p.operators.forEach((o, j) => {
      const id = `p${k}o${j}`;
      const prev = was && was.operators[j];
      nodes.push({ id, kind: o.state_id ? "stateful" : "operator", x: x(1 + offset[k] + col[j]),
        y: pipelineY[k] + lane[j] * (NODE_H + GAP_Y), title: o.name, state: o.state_id,
        figures: `${num(o.rows_in)} in · ${num(o.rows_out)} out` + (o.buffered_rows ? ` · ${num(o.buffered_rows)} held` : "") + (o.late_rows ? ` · ${num(o.late_rows)} late` : "") });
      const reads = o.reads || [j === 0 ? { source: p.source } : { operator: j - 1 }];
      reads.forEach((r) => {
        edges.push(r.stage != null ? fromStage(r.stage, id) : {
          from: r.source != null ? `s${r.source}` : `p${k}o${r.operator}`,
          to: id,
          rate: r.source != null ? nodes.find((n) => n.id === `s${r.source}`).rate : outRate[r.operator],
        });
      });
      outRate[j] = perSecond(o.rows_out, prev && prev.rows_out);
    });
    const from = p.operators.length ? `p${k}o${p.operators.length - 1}` : `s${p.source}`;
    // A first stage has no sinks: its rows go on to the second stage.
    const tables = p.downstream != null ? [] : p.name.split(", ");
    const sinkRate = perSecond(p.rows_out, was && was.rows_out);
    tables.forEach((t, n) => {
      const id = `p${k}t${n}`;
      nodes.push({ id, kind: "sink", x: x(columns - 1), y: pipelineY[k] + n * (NODE_H + GAP_Y),
        title: t, figures: `${num(p.rows_out / tables.length)} out` + (p.backpressure > 0.5 ? " · backpressured" : "") });
      edges.push({ from, to: id, rate: sinkRate == null ? null : sinkRate / tables.length });
    });
  });
  const at = Object.fromEntries(nodes.map((n) => [n.id, n]));
  const svgEdges = edges.map((e) => {
    const a = at[e.from], b = at[e.to];
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    return `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}"/>` +
      `<text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 - 5}" text-anchor="middle">${e.rate == null ? "" : esc(rate(e.rate))}</text>`;
  }).join("");
  const svgNodes = nodes.map((n) => `
    <g class="node ${n.kind}" data-id="${n.id}" transform="translate(${n.x},${n.y})">
      <title>${esc(n.title)}${n.state ? "\nstate: " + esc(n.state) : ""}</title>
      <rect width="${NODE_W}" height="${NODE_H}" rx="6"/>
      <text class="title" x="10" y="21">${esc(clip(n.title, 25))}</text>
      <text class="figures" x="10" y="40">${esc(clip(n.figures, 30))}</text>
    </g>`).join("");
  const width = x(columns - 1) + NODE_W + 10;
  return `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
      <path d="M0,0 L10,5 L0,10 z" fill="#9aa4b5"/></marker></defs>${svgEdges}${svgNodes}</svg>`;
}

// ---- charts ----------------------------------------------------------------------------------

function charts(samples) {
  const inRate = samples.slice(1).map((s, i) => ({
    at: s.at_ms, v: (s.rows_in - samples[i].rows_in) / Math.max(0.001, (s.at_ms - samples[i].at_ms) / 1000),
  }));
  const delay = samples.filter((s) => s.watermark_ms != null)
    .map((s) => ({ at: s.at_ms, v: Math.max(0, (s.at_ms - s.watermark_ms) / 1000) }));
  const lag = samples.filter((s) => s.lag != null).map((s) => ({ at: s.at_ms, v: s.lag }));
  return chart("Rows in per second", inRate, (v) => num(v)) +
    chart("Watermark behind wall clock (s)", delay, (v) => duration(Math.round(v))) +
    chart("Consumer lag (records)", lag, (v) => num(v));
}

function chart(label, points, fmt) {
  const W = 400, H = 110, P = 6;
  if (points.length < 2) {
    return `<div class="chart"><div class="label">${esc(label)}</div><svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">
      <text x="${W / 2}" y="${H / 2}" text-anchor="middle">not enough samples yet</text></svg></div>`;
  }
  const t0 = points[0].at, t1 = points[points.length - 1].at;
  const max = Math.max(...points.map((p) => p.v), 1);
  const line = points.map((p) =>
    `${(P + ((p.at - t0) / Math.max(1, t1 - t0)) * (W - 2 * P)).toFixed(1)},${(H - P - (p.v / max) * (H - 2 * P - 12)).toFixed(1)}`).join(" ");
  const last = points[points.length - 1].v;
  return `<div class="chart"><div class="label">${esc(label)}: <b>${esc(fmt(last))}</b></div>
    <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none"><polyline points="${line}"/>
    <text x="${P}" y="12">max ${esc(fmt(max))}</text>
    <text x="${W - P}" y="${H - P}" text-anchor="end">last ${duration(Math.round((t1 - t0) / 1000))}</text></svg></div>`;
}

// ---- the SQL editor --------------------------------------------------------------------------

const EXAMPLE = `-- A job: tables, then an INSERT INTO a sink.
CREATE TABLE telemetry (
  vehicle_id STRING,
  ts TIMESTAMP(3),
  speed_kmh DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH ('connector' = 'fleet-sim', 'vehicles' = '50', 'rows-per-second' = '200');

CREATE TABLE speed_per_minute (
  vehicle_id STRING, window_start TIMESTAMP(3), avg_speed DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO speed_per_minute
SELECT vehicle_id, window_start, AVG(speed_kmh)
FROM TABLE(TUMBLE(TABLE telemetry, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY vehicle_id, window_start, window_end;
`;

function showEditor() {
  view.innerHTML = `
    <div class="head"><div><h1>New job</h1><div class="sub">Checked as you type; submit runs it on this server.</div></div></div>
    <div class="card">
      <div class="form-row">
        <label>Name<input id="job-name-input" placeholder="fleet-trips" size="28"></label>
        <label>Variables (KEY=VALUE per line)<textarea id="variables" rows="2" cols="48" placeholder="CLICKHOUSE_URL=http://clickhouse:8123"></textarea></label>
      </div>
      <div class="editor">
        <div class="gutter" id="gutter"></div>
        <div class="area"><div class="mark" id="mark" hidden></div>
          <textarea id="sql" spellcheck="false" wrap="off"></textarea></div>
      </div>
      <div id="validation" data-state="idle"></div>
      <button class="button primary" id="submit">Submit</button>
    </div>`;
  const sql = document.getElementById("sql");
  sql.value = localStorage.getItem("sluice-draft") || EXAMPLE;
  let pending = null, seq = 0, badLine = null;
  const gutter = document.getElementById("gutter");
  const mark = document.getElementById("mark");
  const lines = () => {
    const n = sql.value.split("\n").length;
    gutter.innerHTML = Array.from({ length: n }, (_, i) =>
      i + 1 === badLine ? `<span class="bad">${i + 1}</span>` : String(i + 1)).join("\n");
    gutter.scrollTop = sql.scrollTop;
    if (badLine) {
      mark.hidden = false;
      mark.style.top = 10 + (badLine - 1) * 20 - sql.scrollTop + "px";
    } else {
      mark.hidden = true;
    }
  };
  const body = () => ({
    sql: sql.value,
    name: document.getElementById("job-name-input").value.trim() || undefined,
    variables: Object.fromEntries(document.getElementById("variables").value.split("\n")
      .map((l) => l.trim()).filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")).trim(), l.slice(l.indexOf("=") + 1)])),
  });
  const validation = document.getElementById("validation");
  const validate = async () => {
    const mine = ++seq;
    try {
      await api("POST", "/v1/validate", body());
      if (mine !== seq) return;
      badLine = null;
      validation.dataset.state = "ok";
      validation.textContent = "✓ valid";
    } catch (e) {
      if (mine !== seq) return;
      showError(e.message);
    }
    lines();
  };
  // `job.sql:3:14: message`: mark line 3 and show the line with a caret under column 14.
  const showError = (message) => {
    const at = message.match(/:(\d+):(\d+)/);
    badLine = at ? Number(at[1]) : null;
    validation.dataset.state = "error";
    validation.dataset.line = badLine || "";
    let detail = "";
    if (at) {
      const text = sql.value.split("\n")[badLine - 1] || "";
      detail = `<pre>${esc(text)}\n${" ".repeat(Math.max(0, Number(at[2]) - 1))}^</pre>`;
    }
    // The server's message repeats the line with its caret; ours is drawn below.
    validation.innerHTML = `✗ ${esc(message.split("\n")[0])}${detail}`;
  };
  const changed = () => {
    localStorage.setItem("sluice-draft", sql.value);
    lines();
    clearTimeout(pending);
    pending = setTimeout(validate, 300);
  };
  sql.addEventListener("input", changed);
  sql.addEventListener("scroll", lines);
  document.getElementById("variables").addEventListener("input", changed);
  document.getElementById("submit").addEventListener("click", async () => {
    try {
      const job = await api("POST", "/v1/jobs", body());
      location.hash = "#/jobs/" + job.id;
    } catch (e) {
      showError(e.message);
      lines();
    }
  });
  lines();
  validate();
}

route();
