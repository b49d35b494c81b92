/* Deployment page: adaptation curve with markers and label-free estimates, the drift severity grid
   with its drill-down, the alarm timeline, detectors, memory, recent actions, settings and controls.
   Everything refreshes in place by polling the REST API. */
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
    const p = curve.pending;
    const n = w.id.length;
    // Label-free estimates exist for AUC and accuracy only; the other metrics get empty series.
    const series = (columns, name, offset) => (columns[name] || []).map((y, i) => ({ x: offset + i, y }));
    return {
      base: w[`base_${metric}`].map((y, i) => ({ x: i, y })),
      compensated: w[`compensated_${metric}`].map((y, i) => ({ x: i, y })),
      estimatedBase: series(w, `estimated_base_${metric}`, 0),
      estimatedCompensated: series(w, `estimated_compensated_${metric}`, 0),
      // The traffic after the last window, one point per window-sized chunk, beyond the realised curve.
      pendingCompensated: series(p, `estimated_compensated_${metric}`, n).map((point, i) => ({ ...point, pending: i })),
      pendingBase: series(p, `estimated_base_${metric}`, n).map((point, i) => ({ ...point, pending: i })),
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
      // Label-free estimates (from the scores alone): dotted, lighter, after the realised series.
      { label: "Estimated base", data: data.estimatedBase, borderColor: "#e69f00", backgroundColor: "#e69f00", borderDash: [2, 3], pointRadius: 0, pointStyle: "line", borderWidth: 1.5, spanGaps: true, estimated: true },
      { label: "Estimated compensated", data: data.estimatedCompensated, borderColor: "#56b4e9", backgroundColor: "#56b4e9", borderDash: [2, 3], pointRadius: 0, pointStyle: "line", borderWidth: 1.5, spanGaps: true, estimated: true },
      { label: "estimated (no labels yet)", data: data.pendingCompensated, borderColor: "#56b4e9", backgroundColor: "#fff", borderDash: [2, 3], pointRadius: 4, pointStyle: "circle", borderWidth: 2, spanGaps: true, estimated: true },
      { label: "estimated base (no labels yet)", data: data.pendingBase, borderColor: "#e69f00", backgroundColor: "#fff", borderDash: [2, 3], pointRadius: 3, pointStyle: "circle", borderWidth: 1.5, spanGaps: true, estimated: true },
    ];
    const n = curve.windows.id.length;
    const xMax = Math.max(n + curve.pending.end.length, 1);
    if (chart) {
      chart.data.datasets.forEach((dataset, i) => { dataset.data = datasets[i].data; });
      chart.$markers = curve.markers;
      chart.options.scales.x.max = xMax;
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
            x: { type: "linear", min: -0.5, max: xMax, title: { display: true, text: "window (end of its events)" },
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
    const pending = curve.pending.end.length;
    const estimated = data.pendingCompensated.length
      ? ` Estimated without labels for the ${fmt.int(curve.pending.n_events.reduce((a, b) => a + b, 0))} events served since: compensated ${fmt.num(data.pendingCompensated.at(-1).y)}.`
      : "";
    document.getElementById("curve-summary").textContent = n || pending
      ? `${n} windows, ${curve.markers.length} changes${pending ? `, ${pending} pending (no labels yet)` : ""}; ${latest}.${estimated}`
      : "";
  }

  function tickLabel(value) {
    const i = Math.round(value);
    if (!curve || Math.abs(value - i) > 1e-6) return "";
    const ends = curve.windows.end.concat(curve.pending.end);
    if (i < 0 || i >= ends.length) return "";
    return new Date(ends[i]).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "2-digit" });
  }

  function tooltipTitle(items) {
    const item = items[0];
    if (item.raw.marker) return `${item.raw.marker.label} (${fmt.time(item.raw.marker.at)})`;
    if (item.raw.pending !== undefined) {
      const j = item.raw.pending;
      return `Not yet a window: ${fmt.int(curve.pending.n_events[j])} events served ${fmt.time(curve.pending.start[j])} – ${fmt.time(curve.pending.end[j])}, no labels yet`;
    }
    const i = item.raw.x;
    const w = curve.windows;
    return `Window #${w.id[i]} · v${w.version[i] ?? "–"} · ends ${fmt.time(w.end[i])}`;
  }

  function tooltipLabel(item) {
    if (item.raw.marker) return item.raw.marker.reason ? `why: ${item.raw.marker.reason}` : item.dataset.label;
    const i = item.raw.x;
    const extra = item.datasetIndex === 1 ? ` (${curve.windows.n_labeled[i]} labels, memory ${curve.windows.memory_size[i]})` : "";
    const how = item.dataset.estimated ? " (estimated from the scores, no labels)" : "";
    return `${item.dataset.label}: ${fmt.num(item.raw.y, 4)}${extra}${how}`;
  }

  async function loadCurve() {
    const response = await api(`${base}/curve`);
    if (!response.ok) throw new Error(`curve: ${response.status}`);
    curve = response.data;
    drawCurve();
    await Promise.all([loadDrift(), loadDetectorGrid(), loadAlarms()]);
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

  /* Severity = statistic / calibrated threshold (1 is the drift boundary): six steps from light to deep red. */
  const SEVERITY_STEPS = [0.5, 0.75, 1, 2, 4];
  function severityClass(severity) {
    if (severity === null || severity === undefined) return "";
    const step = SEVERITY_STEPS.findIndex((edge) => severity < edge);
    return ` sev-${step === -1 ? SEVERITY_STEPS.length : step}`;
  }

  const LEVELS = ["ok", "warn", "drift"];
  /* How bad a test is, for picking a column's worst test and sorting: severity where it is stored. */
  function badness(row) {
    return row.severity ?? LEVELS.indexOf(row.level) * 0.5;
  }
  /* Rows sort by severity x importance in the newest window: a column the model hardly uses matters
     less. Columns without an importance (prediction, label, error) are not discounted. */
  function priority(row) {
    return row ? badness(row) * (row.importance ?? 1) : -1;
  }

  function cellTitle(cell) {
    const p = cell.p_value === null ? "–" : fmt.num(cell.p_value, 4);
    const importance = cell.importance === null || cell.importance === undefined ? "unknown" : fmt.pct(cell.importance);
    return `${rowLabel(cell)} · ${cell.method}: ${cell.level}\nstatistic ${fmt.num(cell.statistic, 4)}, calibrated threshold ${fmt.num(cell.threshold, 4)}, p-value ${p}\nseverity ${fmt.num(cell.severity, 2)}, importance ${importance}, PSI ${fmt.num(cell.psi, 3)}\nclick for the distributions`;
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
      // Several tests of one column: show the worst.
      if (!previous || badness(row) > badness(previous)) cells.set(id, row);
    }
    if (!columns.size) {
      replaceChildren(table, el("tbody", {}, el("tr", {}, el("td", { class: "muted", text: "No drift tests in these windows (the version has no reference yet)." }))));
      return;
    }
    const order = ["prediction", "label", "error", "feature"];
    const newest = ids[ids.length - 1];
    const score = (key) => priority(cells.get(`${key}@${newest}`));
    const keys = [...columns.keys()].sort((a, b) => score(b) - score(a)
      || order.indexOf(a.split(":")[0]) - order.indexOf(b.split(":")[0]) || a.localeCompare(b));
    const rows = keys.map((key) => el("tr", { "data-column": columns.get(key).column, "data-priority": String(score(key)) },
      el("th", { scope: "row", text: rowLabel(columns.get(key)) }),
      ids.map((id) => {
        const cell = cells.get(`${key}@${id}`);
        if (!cell) return el("td", { class: "muted", text: "·", title: "not tested" });
        const title = cellTitle(cell);
        return el("td", { class: `band-cell band-${cell.level}${severityClass(cell.severity)}`, title, "data-severity": cell.severity ?? "" },
          el("button", { type: "button", class: "cell-button", "aria-label": title.replaceAll("\n", "; "), text: SYMBOL[cell.level],
            onclick: () => openDriftDetail(cell) }));
      })));
    replaceChildren(table, gridHeader("column", w.end.slice(first), ids), el("tbody", {}, rows));
  }

  // --- drift drill-down: reference vs current distribution of one column in one window ------------
  const windowDetails = new Map(); // closed windows do not change: one read each
  let histogramChart = null;

  async function windowDetail(id) {
    if (!windowDetails.has(id)) {
      const response = await api(`${base}/windows/${id}`);
      if (!response.ok) throw new Error(`window ${id}: ${response.status}`);
      windowDetails.set(id, response.data);
    }
    return windowDetails.get(id);
  }

  function binLabels(histogram) {
    if (histogram.kind === "categorical") return histogram.categories.map(String);
    const e = histogram.edges;
    const digits = Math.max(0, Math.min(3, 2 - Math.floor(Math.log10(Math.abs(e[e.length - 1] - e[0]) || 1))));
    return e.slice(0, -1).map((lo, i) => `${lo.toFixed(digits)}–${e[i + 1].toFixed(digits)}`);
  }

  async function openDriftDetail(cell) {
    const panel = document.getElementById("drift-detail");
    const detail = await windowDetail(cell.window);
    const metric = (detail.drift_metrics || []).find((m) => m.id === cell.id) || cell;
    panel.hidden = false;
    document.getElementById("drift-detail-title").textContent = `${rowLabel(metric)} in window #${detail.id} (ends ${fmt.time(detail.end)})`;
    document.getElementById("drift-detail-summary").textContent = `${metric.method} ${fmt.num(metric.statistic, 4)} against a calibrated threshold of ${fmt.num(metric.threshold, 4)}: severity ${fmt.num(metric.severity, 2)} (${metric.level}), p-value ${metric.p_value === null ? "–" : fmt.num(metric.p_value, 4)}, importance ${metric.importance === null || metric.importance === undefined ? "unknown" : fmt.pct(metric.importance)}, PSI ${fmt.num(metric.psi, 3)}.`;
    const histogram = metric.histogram || {};
    const canvas = document.getElementById("drift-histogram");
    const empty = !histogram.kind;
    document.getElementById("drift-detail-empty").hidden = !empty;
    canvas.parentElement.hidden = empty;
    if (histogramChart) { histogramChart.destroy(); histogramChart = null; }
    if (!empty) {
      histogramChart = new Chart(canvas, {
        type: "bar",
        data: {
          labels: binLabels(histogram),
          datasets: [
            { label: "Reference (training)", data: histogram.reference, backgroundColor: "#0072b2", borderColor: "#0072b2" },
            { label: "Current (this window)", data: histogram.current, backgroundColor: "#d55e00", borderColor: "#d55e00" },
          ],
        },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          scales: { y: { title: { display: true, text: "share of rows" }, beginAtZero: true },
            x: { title: { display: true, text: histogram.kind === "categorical" ? "category" : "bin" } } },
          plugins: { legend: { position: "bottom" },
            tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fmt.pct(item.raw)}` } } },
        },
      });
    }
    panel.scrollIntoView({ block: "nearest" });
  }
  document.getElementById("drift-detail-close").addEventListener("click", () => {
    document.getElementById("drift-detail").hidden = true;
    if (histogramChart) { histogramChart.destroy(); histogramChart = null; }
  });

  // --- alarm timeline: calibrated alarms first, detector signals as secondary information ----------
  const ALARM_KINDS = { drift_status: "Drift status", retrain_trigger: "Retrain trigger", detector: "Detector" };

  async function loadAlarms() {
    const list = document.getElementById("alarm-timeline");
    const response = await api(`${base}/windows?order=desc&limit=${GRID_WINDOWS}`);
    if (!response.ok) throw new Error(`alarms: ${response.status}`);
    const windows = response.data.results;
    if (!windows.length) {
      replaceChildren(list, el("li", { class: "muted", text: "No window yet: alarms are raised when a window closes." }));
      return;
    }
    replaceChildren(list, windows.map((w) => {
      const alarms = (w.alarms || []).slice().sort((a, b) => Number(b.calibrated) - Number(a.calibrated));
      const calibrated = alarms.filter((a) => a.calibrated);
      const level = calibrated.some((a) => a.level === "drift") ? "drift" : calibrated.some((a) => a.level === "warn") ? "warn" : "ok";
      return el("li", { class: `alarm-window level-${level}`, "data-window": w.id },
        el("div", {}, el("strong", { text: `Window #${w.id}` }), ` · ends ${fmt.time(w.end)}`, w.version ? ` · v${w.version}` : "", " ",
          badge(w.drift_status || "ok"),
          w.loss_cusum === null || w.loss_cusum === undefined ? null : el("span", { class: "muted", text: ` loss CUSUM ${fmt.num(w.loss_cusum, 2)}` })),
        alarms.length
          ? el("ul", { class: "alarms" }, alarms.map((a) => el("li", { class: `alarm ${a.calibrated ? "alarm-calibrated" : "alarm-info"} alarm-${a.level}` },
            el("span", { class: `alarm-level alarm-level-${a.level}`, text: a.level }), " ",
            el(a.calibrated ? "strong" : "span", { text: `${ALARM_KINDS[a.kind] || a.kind}: ` }),
            el("span", { class: "alarm-reason", text: a.reason }),
            a.calibrated ? null : el("span", { class: "muted", text: " (uncalibrated)" }))))
          : el("div", { class: "muted", text: "no alarm" }));
    }));
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
      ["Correction served", gateText(m)],
    ];
    replaceChildren(document.getElementById("memory-stats"), items.map(([k, v]) => el("div", {}, el("dt", { class: "muted", text: k }), el("dd", { class: "flush", text: v }))));
    document.getElementById("memory-revision").textContent = fmt.int(m.revision);
    if (m.revision !== lastRevision) {
      lastRevision = m.revision;
      if (samplesOffset === 0) await loadSamples();
    }
  }

  // The compensation gate: the share of the memory's correction served, learned from the labels.
  function gateText(m) {
    const g = m.gate;
    if (!m.compensation_enabled) return "none (compensation off)";
    if (!g.enabled) return "100% (gate off: full correction)";
    const served = `${fmt.pct(g.served_strength, 0)}`;
    if (g.support < g.min_support) return `${served} (learning: ${fmt.int(g.support)} of ${fmt.int(g.min_support)} labels)`;
    const change = g.loss_change_bound === null ? "" : `; log loss ${g.loss_change >= 0 ? "+" : ""}${fmt.num(g.loss_change)} per label, bound ${fmt.num(g.loss_change_bound)}`;
    const why = g.served_strength === 0 ? "no clear gain at any strength" : `learned from ${fmt.int(g.support)} labels`;
    return `${served} (${why}${change})`;
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
