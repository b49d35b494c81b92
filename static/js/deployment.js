/* Deployment page: adaptation curve with markers, drift and detector grids, memory, recent actions,
   settings and controls. Everything refreshes in place by polling the REST API. */
"use strict";

(() => {
  const { api, poll, el, fmt, badge, replaceChildren, showResult, canAct } = controlRoom;
  const root = document.getElementById("deployment");
  const slug = root.dataset.slug;
  const base = `/api/v1/deployments/${slug}`;
  let versions = JSON.parse(document.getElementById("versions-data").textContent);
  let live = null;
  let curve = null;
  const GRID_WINDOWS = 16;
  const MARKERS = {
    retrain: { label: "Retrain", style: "triangle", colour: "#009e73" },
    promotion: { label: "Promotion", style: "rectRot", colour: "#0072b2" },
    rollback: { label: "Rollback", style: "crossRot", colour: "#d55e00" },
  };

  // --- adaptation curve --------------------------------------------------------------------------
  const metricSelect = document.getElementById("metric");
  const canvas = document.getElementById("curve-chart");

  /* Dashed vertical lines at the markers, drawn under the datasets. */
  const markerLines = {
    id: "markerLines",
    beforeDatasetsDraw(chart) {
      const { ctx, chartArea, scales } = chart;
      for (const marker of chart.$markers || []) {
        const x = scales.x.getPixelForValue(marker.position - 0.5);
        if (x < chartArea.left || x > chartArea.right) continue;
        ctx.save();
        ctx.strokeStyle = MARKERS[marker.kind].colour;
        ctx.setLineDash(marker.kind === "rollback" ? [2, 3] : [6, 4]);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(x, chartArea.top);
        ctx.lineTo(x, chartArea.bottom);
        ctx.stroke();
        ctx.restore();
      }
    },
  };

  function points(metric) {
    const w = curve.windows;
    return {
      base: w[`base_${metric}`].map((y, i) => ({ x: i, y })),
      compensated: w[`compensated_${metric}`].map((y, i) => ({ x: i, y })),
    };
  }

  function markerPoints(kind, metric) {
    const w = curve.windows;
    const series = w[`compensated_${metric}`];
    return curve.markers.filter((m) => m.kind === kind).map((m) => {
      // On the curve at the first window after the change (or the last one, for a change after it).
      const i = Math.min(m.position, series.length - 1);
      return { x: m.position - 0.5, y: i >= 0 ? series[i] ?? w[`base_${metric}`][i] : null, marker: m };
    });
  }

  let chart = null;
  function drawCurve() {
    const metric = metricSelect.value;
    const empty = curve.windows.id.length === 0;
    document.getElementById("curve-empty").hidden = !empty;
    canvas.parentElement.hidden = empty;
    const data = points(metric);
    const datasets = [
      { label: "Base", data: data.base, borderColor: "#d55e00", backgroundColor: "#d55e00", borderDash: [6, 4], pointRadius: 0, pointStyle: "line", borderWidth: 1.5, spanGaps: true },
      { label: "Compensated", data: data.compensated, borderColor: "#0072b2", backgroundColor: "#0072b2", pointRadius: 0, pointStyle: "line", borderWidth: 2, spanGaps: true },
      ...Object.entries(MARKERS).map(([kind, style]) => ({
        type: "scatter", label: style.label, data: markerPoints(kind, metric), pointStyle: style.style,
        pointRadius: 8, pointHoverRadius: 10, borderColor: style.colour, backgroundColor: style.colour, borderWidth: 2,
      })),
    ];
    const n = curve.windows.id.length;
    if (chart) {
      chart.data.datasets.forEach((dataset, i) => { dataset.data = datasets[i].data; });
      chart.$markers = curve.markers;
      chart.options.scales.x.max = Math.max(n, 1);
      chart.update("none");
    } else {
      chart = new Chart(canvas, {
        type: "line",
        data: { datasets },
        plugins: [markerLines],
        options: {
          animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
          interaction: { mode: "nearest", intersect: false },
          scales: {
            x: { type: "linear", min: -0.5, max: Math.max(n, 1), title: { display: true, text: "window (end of its events)" },
              ticks: { maxTicksLimit: 8, callback: (value) => tickLabel(value) } },
            y: { title: { display: true, text: metricSelect.selectedOptions[0].textContent } },
          },
          plugins: {
            legend: { position: "bottom", labels: { usePointStyle: true } },
            tooltip: { callbacks: { title: tooltipTitle, label: tooltipLabel } },
          },
        },
      });
      chart.$markers = curve.markers;
    }
    chart.options.scales.y.title.text = metricSelect.selectedOptions[0].textContent;
    chart.update("none");
    const latest = n ? `latest window #${curve.windows.id[n - 1]}: base ${fmt.num(curve.windows[`base_${metric}`][n - 1])}, compensated ${fmt.num(curve.windows[`compensated_${metric}`][n - 1])}` : "";
    document.getElementById("curve-summary").textContent = n ? `${n} windows, ${curve.markers.length} changes; ${latest}.` : "";
  }

  function tickLabel(value) {
    const i = Math.round(value);
    if (!curve || i < 0 || i >= curve.windows.end.length || Math.abs(value - i) > 1e-6) return "";
    return new Date(curve.windows.end[i]).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "2-digit" });
  }

  function tooltipTitle(items) {
    const item = items[0];
    if (item.raw.marker) return `${item.raw.marker.label} (${fmt.time(item.raw.marker.at)})`;
    const i = item.raw.x;
    const w = curve.windows;
    return `Window #${w.id[i]} · v${w.version[i] ?? "–"} · ends ${fmt.time(w.end[i])}`;
  }

  function tooltipLabel(item) {
    if (item.raw.marker) return item.raw.marker.reason ? `why: ${item.raw.marker.reason}` : item.dataset.label;
    const i = item.raw.x;
    const extra = item.datasetIndex === 1 ? ` (${curve.windows.n_labeled[i]} labels, memory ${curve.windows.memory_size[i]})` : "";
    return `${item.dataset.label}: ${fmt.num(item.raw.y, 4)}${extra}`;
  }

  async function loadCurve() {
    const response = await api(`${base}/curve`);
    if (!response.ok) throw new Error(`curve: ${response.status}`);
    curve = response.data;
    drawCurve();
    await Promise.all([loadDrift(), loadDetectorGrid()]);
  }
  metricSelect.addEventListener("change", () => curve && drawCurve());

  // --- drift grid and detectors ------------------------------------------------------------------
  const SYMBOL = { ok: "✓", warn: "!", drift: "✕" };

  function gridHeader(label, ends, ids) {
    return el("thead", {}, el("tr", {}, el("th", { scope: "col", text: label }),
      ids.map((id, i) => el("th", { scope: "col", title: `window #${id}, ends ${fmt.time(ends[i])}`, text: String(i - ids.length + 1 || "now") }))));
  }

  function rowLabel(row) {
    return row.column_kind === "feature" || row.column === row.column_kind ? row.column : `${row.column} (${row.column_kind})`;
  }

  async function loadDrift() {
    const table = document.getElementById("drift-grid");
    const w = curve.windows;
    const n = w.id.length;
    if (!n) {
      replaceChildren(table, el("tbody", {}, el("tr", {}, el("td", { class: "muted", text: "No window yet: drift is measured per closed window." }))));
      return;
    }
    const first = Math.max(0, n - GRID_WINDOWS);
    const ids = w.id.slice(first);
    // A second of slack: the curve's timestamps went through a float; rows of an older window are ignored below.
    const since = new Date(Date.parse(w.end[first]) - 1000).toISOString();
    const response = await api(`${base}/drift?since=${encodeURIComponent(since)}&limit=5000`);
    if (!response.ok) throw new Error(`drift: ${response.status}`);
    const cells = new Map();
    const columns = new Map();
    for (const row of response.data.results) {
      const key = `${row.column_kind}:${row.column}`;
      columns.set(key, row);
      const id = `${key}@${row.window}`;
      const previous = cells.get(id);
      // Several tests of one column: show the worst band.
      if (!previous || ["ok", "warn", "drift"].indexOf(row.level) > ["ok", "warn", "drift"].indexOf(previous.level)) cells.set(id, row);
    }
    if (!columns.size) {
      replaceChildren(table, el("tbody", {}, el("tr", {}, el("td", { class: "muted", text: "No drift tests in these windows (the version has no reference yet)." }))));
      return;
    }
    const order = ["prediction", "label", "error", "feature"];
    const keys = [...columns.keys()].sort((a, b) => order.indexOf(a.split(":")[0]) - order.indexOf(b.split(":")[0]) || a.localeCompare(b));
    const rows = keys.map((key) => el("tr", {},
      el("th", { scope: "row", text: rowLabel(columns.get(key)) }),
      ids.map((id) => {
        const cell = cells.get(`${key}@${id}`);
        if (!cell) return el("td", { class: "muted", text: "·", title: "not tested" });
        const p = cell.p_value === null ? "" : `, p=${fmt.num(cell.p_value, 4)}`;
        return el("td", { class: `band-cell band-${cell.level}`, title: `${cell.column}: ${cell.level} (${cell.method} ${fmt.num(cell.statistic, 4)}${p}, threshold ${fmt.num(cell.threshold, 3)})`, text: SYMBOL[cell.level] });
      })));
    replaceChildren(table, gridHeader("column", w.end.slice(first), ids), el("tbody", {}, rows));
  }

  async function loadDetectorGrid() {
    const table = document.getElementById("detector-grid");
    const response = await api(`${base}/detectors/signals?order=desc&limit=${GRID_WINDOWS}`);
    if (!response.ok) throw new Error(`signals: ${response.status}`);
    const windows = response.data.results.slice().reverse();
    if (!windows.length) {
      replaceChildren(table, el("tbody", {}, el("tr", {}, el("td", { class: "muted", text: "No window yet: detectors step once per closed window." }))));
      return;
    }
    const rowsByKey = new Map();
    for (const stream of ["raw", "compensated"]) {
      for (const w of windows) {
        for (const kind of Object.keys((w.signals || {})[stream] || {})) rowsByKey.set(`${stream}:${kind}`, [stream, kind]);
      }
    }
    const rows = [...rowsByKey.values()].map(([stream, kind]) => el("tr", {},
      el("th", { scope: "row", text: `${kind} · ${stream}` }),
      windows.map((w) => {
        const s = ((w.signals || {})[stream] || {})[kind];
        if (!s) return el("td", { class: "muted", text: "·" });
        const level = s.drift ? "drift" : s.warning ? "warn" : "ok";
        const symbol = s.drift ? "✕" : s.warning ? "!" : "·";
        return el("td", { class: `band-cell${level === "ok" ? "" : ` band-${level}`}`, title: `${kind} on ${stream} error: ${s.drift ? `drift (${(s.detections || []).length} detections)` : s.warning ? "warning" : "quiet"}`, text: symbol });
      })));
    replaceChildren(table, gridHeader("detector · error", windows.map((w) => w.end), windows.map((w) => w.window)), el("tbody", {}, rows));
  }

  async function loadDetectorState() {
    const response = await api(`${base}/detectors`);
    if (!response.ok) throw new Error(`detectors: ${response.status}`);
    const node = document.getElementById("detectors");
    const streams = response.data.streams || [];
    replaceChildren(node, streams.length
      ? streams.map((s) => el("p", {}, el("strong", { text: `${s.stream} error: ` }), badge(s.drift ? "drift" : s.warning ? "warn" : "ok"), " ",
        s.detectors.map((d) => `${d.detector} ${d.n_detections}× in ${fmt.int(d.n_seen)}`).join(" · ")))
      : [el("p", { class: "muted", text: "The detectors have not seen any error of the live version yet." })]);
  }

  // --- memory and samples ------------------------------------------------------------------------
  let samplesOffset = 0;
  const SAMPLES_PAGE = 10;
  let lastRevision = null;

  async function loadMemory() {
    const response = await api(`${base}/memory`);
    if (!response.ok) throw new Error(`memory: ${response.status}`);
    const m = response.data;
    const support = m.support;
    const items = [
      ["Kind", m.memory_kind], ["Size", `${fmt.int(m.size)} / ${fmt.int(m.capacity)}`], ["Revision", fmt.int(m.revision)],
      ["Pending labels", fmt.int(m.pending_labels)], ["Compensation", m.compensation_enabled ? "on" : "off"],
      ["k · λ · τ", `${m.k} · ${m.compensation_lambda} · ${m.compensation_tau}`],
      ["Support (latest events)", !support ? "–" : support.events === 0 ? "no event served by this version yet"
        : `${fmt.pct(support.hit_rate)} of ${support.events} with neighbours`],
      ["Label balance", m.label_balance.map((b) => `${b.name} ${fmt.pct(b.share, 0)}`).join(" · ") || "–"],
    ];
    replaceChildren(document.getElementById("memory-stats"), items.map(([k, v]) => el("div", {}, el("dt", { class: "muted", text: k }), el("dd", { class: "flush", text: v }))));
    document.getElementById("memory-revision").textContent = fmt.int(m.revision);
    if (m.revision !== lastRevision) {
      lastRevision = m.revision;
      if (samplesOffset === 0) await loadSamples();
    }
  }

  async function loadSamples() {
    // The live version's memory: every version keeps its own (a rollback brings its memory back).
    const version = live ? `&version=${live}` : "";
    const response = await api(`${base}/samples?limit=${SAMPLES_PAGE}&offset=${samplesOffset}${version}`);
    if (!response.ok) throw new Error(`samples: ${response.status}`);
    const { results, count } = response.data;
    const body = document.querySelector("#samples tbody");
    replaceChildren(body, results.length
      ? results.map((s) => el("tr", {}, el("td", {}, el("code", { text: s.event ?? "–" })), el("td", { text: s.version ? `v${s.version}` : "–" }),
        el("td", { text: String(s.label) }), el("td", { class: "num", text: fmt.num(s.base_score) }), el("td", { class: "num", text: fmt.int(s.revision) }),
        el("td", { text: fmt.time(s.written_at) }), el("td", { text: s.active ? "yes" : "evicted" })))
      : [el("tr", {}, el("td", { colspan: "7", class: "muted", text: "The memory is empty: it fills as feedback (labels) arrives." }))]);
    document.getElementById("samples-page").textContent = count ? `${samplesOffset + 1}–${samplesOffset + results.length} of ${fmt.int(count)}` : "";
    document.getElementById("samples-prev").disabled = samplesOffset === 0;
    document.getElementById("samples-next").disabled = samplesOffset + SAMPLES_PAGE >= count;
  }
  document.getElementById("samples-prev").addEventListener("click", () => { samplesOffset = Math.max(0, samplesOffset - SAMPLES_PAGE); loadSamples(); });
  document.getElementById("samples-next").addEventListener("click", () => { samplesOffset += SAMPLES_PAGE; loadSamples(); });

  // --- state, versions and recent actions --------------------------------------------------------
  async function loadVersions() {
    const list = await api(`${base}/versions?limit=200`);
    if (!list.ok) throw new Error(`versions: ${list.status}`);
    versions = list.data.results.map((v) => ({ number: v.number, status: v.status, origin: v.origin, created_at: v.created_at }));
  }

  async function loadState() {
    const detail = await api(base);
    if (!detail.ok) throw new Error(`deployment: ${detail.status}`);
    const d = detail.data;
    const now = d.live_version ? d.live_version.number : null;
    // Another version went live: its memory is the one to browse now.
    if (now !== live) { live = now; lastRevision = null; samplesOffset = 0; }
    document.getElementById("live-version").textContent = live ? `v${live}` : "none";
    document.getElementById("deployment-status").textContent = d.status === "paused" ? "Paused (serving, not adapting)" : d.status[0].toUpperCase() + d.status.slice(1);
    const pause = document.querySelector('[data-action="pause"]');
    const resume = document.querySelector('[data-action="resume"]');
    if (pause) { pause.hidden = d.status === "paused"; resume.hidden = d.status !== "paused"; }
  }

  async function loadAudit() {
    const response = await api(`/api/v1/audit?deployment=${slug}&limit=8`);
    if (!response.ok) throw new Error(`audit: ${response.status}`);
    const list = document.getElementById("recent-audit");
    replaceChildren(list, response.data.results.length
      ? response.data.results.map((a) => el("li", { "data-entry-id": a.id, class: `kind-${a.action}` },
        el("strong", { text: a.action_label }), a.to_version ? ` → v${a.to_version}` : "", ` by ${a.actor} · ${fmt.time(a.created_at)}`,
        a.reason ? el("div", { class: "muted", text: `“${a.reason}”` }) : null))
      : [el("li", { class: "muted", text: "Nothing done to this deployment yet." })]);
  }

  // --- controls and settings ---------------------------------------------------------------------
  const result = document.getElementById("action-result");
  document.querySelectorAll("#controls [data-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      await Promise.all([loadState(), loadVersions()]);
      const outcome = await controlRoomActions.run(slug, button.dataset.action, versions, live);
      if (!outcome) return;
      showResult(result, outcome.ok, outcome.text);
      await Promise.all([loadState(), loadAudit(), loadMemory(), loadCurve(), loadDetectorState()]);
    });
  });

  const form = document.getElementById("settings-form");
  const initial = {};
  for (const input of form.querySelectorAll("[name]")) if (input.name !== "reason") initial[input.name] = valueOf(input);

  function valueOf(input) {
    if (input.type === "checkbox") return input.checked;
    if (input.type === "number") return input.value === "" ? null : Number(input.value);
    return input.value;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!canAct()) return;
    form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
    const changes = {};
    for (const input of form.querySelectorAll("[name]")) {
      if (input.name === "reason") continue;
      const value = valueOf(input);
      if (value !== initial[input.name]) changes[input.name] = value;
    }
    const status = document.getElementById("settings-result");
    if (!Object.keys(changes).length) { showResult(status, true, "Nothing changed."); return; }
    const reason = form.querySelector("[name=reason]").value.trim();
    const response = await api(base, { method: "PATCH", body: { ...changes, reason } });
    if (response.ok) {
      Object.assign(initial, changes);
      showResult(status, true, `Saved: ${Object.entries(changes).map(([k, v]) => `${k} = ${v}`).join(", ")}.`);
      await loadAudit();
      return;
    }
    const errors = (response.data && response.data.errors) || {};
    for (const [field, messages] of Object.entries(errors)) {
      const node = form.querySelector(`.field-error[data-field="${field}"]`);
      if (node) node.textContent = [].concat(messages).join(" ");
    }
    showResult(status, false, controlRoom.errorText(response));
  });

  loadState().finally(() => {
    poll(loadMemory, 5000);
    poll(loadState, 10000);
  });
  poll(loadCurve, 15000);
  poll(loadAudit, 5000);
  poll(loadDetectorState, 15000);
})();
