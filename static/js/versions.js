/* Versions page: lineage, flip reports (NFR/PFR/NFI with intervals, gate verdict, per-class chart,
   flipped examples), promote/roll back a version, and compare two versions (an evaluation job). */
"use strict";

(() => {
  const { api, poll, el, fmt, replaceChildren, showResult, canAct } = controlRoom;
  const root = document.getElementById("versions-page");
  const slug = root.dataset.slug;
  const base = `/api/v1/deployments/${slug}`;
  const details = new Map();
  const charts = new Map();
  let versions = [];
  let live = null;
  const result = document.getElementById("action-result");
  const classes = JSON.parse(document.getElementById("classes-data").textContent) || [];

  function auc(v) {
    const m = v.metrics || {};
    return m.val_auc ?? m.auc ?? m.validation_auc ?? null;
  }

  function versionRow(v) {
    const action = v.status === "live" ? null
      : v.status === "candidate" || v.status === "rejected"
        ? el("button", { type: "button", class: "secondary", "data-action": "promote", "data-version": v.number, text: "Promote…" })
        : el("button", { type: "button", class: "secondary", "data-action": "rollback", "data-version": v.number, text: "Roll back to…" });
    // Either end may be missing (an upload's spec may give one alone).
    const range = v.data_start || v.data_end ? `${fmt.time(v.data_start)} → ${fmt.time(v.data_end)}` : "–";
    return el("tr", { "data-version": v.number },
      el("th", { scope: "row" }, `v${v.number}`, v.status === "live" ? el("span", { class: "band band-ok beside", text: "live" }) : null),
      el("td", { text: v.parent ? `v${v.parent}` : "–" }),
      el("td", { class: `status-${v.status}`, text: v.status }),
      el("td", { text: v.origin }),
      el("td", { class: "num", text: fmt.num(auc(v)) }),
      el("td", { class: "hide-narrow small", text: range }),
      el("td", { class: "small", text: fmt.time(v.created_at) }),
      canAct() ? el("td", {}, action) : null);
  }

  async function loadVersions() {
    const response = await api(`${base}/versions?limit=200`);
    if (!response.ok) throw new Error(`versions: ${response.status}`);
    versions = response.data.results;
    const liveRow = versions.find((v) => v.status === "live");
    live = liveRow ? liveRow.number : null;
    replaceChildren(document.querySelector("#lineage tbody"), versions.length
      ? versions.map(versionRow)
      : [el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No version yet: upload one with POST /api/v1/deployments/<slug>/versions." }))]);
  }

  function interval(value, low, high) {
    return `${fmt.pct(value, 2)} [${fmt.pct(low, 2)}, ${fmt.pct(high, 2)}]`;
  }

  function reportCard(r) {
    const verdict = r.gate_passed === null ? el("span", { class: "muted", text: "no gate" })
      : el("span", { class: r.gate_passed ? "verdict-pass" : "verdict-fail", text: r.gate_passed ? "✓ gate passed" : "✕ gate failed" });
    const canvasId = `per-class-${r.id}`;
    const figures = [
      ["n (labeled events)", fmt.int(r.n)],
      ["Accuracy", `${fmt.pct(r.old_accuracy, 2)} → ${fmt.pct(r.new_accuracy, 2)}`],
      ["AUC", `${fmt.num(r.old_auc, 4)} → ${fmt.num(r.new_auc, 4)}`],
      ["NFR (negative flips)", interval(r.nfr, r.nfr_low, r.nfr_high)],
      ["PFR (positive flips)", interval(r.pfr, r.pfr_low, r.pfr_high)],
      ["NFI", fmt.num(r.nfi, 3)], ["Relative NFR", fmt.num(r.relative_nfr, 3)],
      ["Disagreement", fmt.pct(r.disagreement, 2)], ["McNemar p", fmt.num(r.mcnemar_p, 4)],
    ];
    return el("article", { class: "card flip-report", "data-report-id": r.id },
      el("div", { class: "row spread" },
        el("h3", { text: `v${r.old_version} → v${r.new_version}` }), verdict,
        el("span", { class: "muted small", text: `${fmt.time(r.created_at)}${r.job ? ` · job #${r.job}` : ""}` })),
      (r.gate_reasons || []).length ? el("ul", { class: "small" }, r.gate_reasons.map((reason) => el("li", { text: reason }))) : null,
      el("div", { class: "grid" },
        el("dl", { class: "form-grid small" }, figures.map(([k, v]) => el("div", {}, el("dt", { class: "muted", text: k }), el("dd", { class: "flush", text: v })))),
        el("div", {},
          el("div", { class: "chart-box small" }, el("canvas", { id: canvasId, class: "per-class-chart", role: "img", "aria-label": `Flips per class, v${r.old_version} to v${r.new_version}` })),
          el("p", { class: "small" }, el("strong", { text: "Flipped examples: " }),
            (r.example_event_ids || []).length ? (r.example_event_ids || []).slice(0, 12).map((id) => el("code", { text: `${id} ` })) : el("span", { class: "muted", text: "none" })))));
  }

  function drawPerClass(r) {
    const canvas = document.getElementById(`per-class-${r.id}`);
    if (!canvas) return;
    const rows = r.per_class || [];
    const label = (row) => classes[row.label] ?? String(row.label);
    charts.get(r.id)?.destroy();
    charts.set(r.id, new Chart(canvas, {
      type: "bar",
      data: {
        labels: rows.map(label),
        datasets: [
          { label: "Negative flips", data: rows.map((row) => row.negative_flips), backgroundColor: "#d55e00", borderColor: "#d55e00", borderWidth: 1 },
          { label: "Positive flips", data: rows.map((row) => row.positive_flips), backgroundColor: "#56b4e9", borderColor: "#0072b2", borderWidth: 1, borderDash: [4, 2] },
        ],
      },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } },
        scales: { x: { title: { display: true, text: "true class" } }, y: { beginAtZero: true, title: { display: true, text: "events" } } } },
    }));
  }

  async function loadReports() {
    const response = await api(`${base}/flip-reports?limit=10`);
    if (!response.ok) throw new Error(`flip reports: ${response.status}`);
    const list = response.data.results;
    await Promise.all(list.filter((r) => !details.has(r.id)).map(async (r) => {
      const detail = await api(`${base}/flip-reports/${r.id}`);
      if (detail.ok) details.set(r.id, detail.data);
    }));
    const container = document.getElementById("flip-reports");
    const shown = [...container.querySelectorAll("article.flip-report")].map((a) => Number(a.dataset.reportId));
    const ids = list.map((r) => r.id).filter((id) => details.has(id));
    if (shown.join() === ids.join()) return; // unchanged: keep the charts as they are
    charts.forEach((chart) => chart.destroy());
    charts.clear();
    replaceChildren(container, ids.length ? ids.map((id) => reportCard(details.get(id)))
      : [el("p", { class: "empty", text: "No flip report yet. A retrain produces one when its candidate is evaluated; or compare two versions above." })]);
    ids.forEach((id) => drawPerClass(details.get(id)));
  }

  document.getElementById("lineage").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const picked = Number(button.dataset.version);
    const ordered = [versions.find((v) => v.number === picked), ...versions.filter((v) => v.number !== picked)].filter(Boolean);
    const outcome = await controlRoomActions.run(slug, button.dataset.action, ordered, live);
    if (!outcome) return;
    showResult(result, outcome.ok, outcome.text);
    await loadVersions();
  });

  const compare = document.getElementById("compare-form");
  if (compare) {
    compare.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { old: Number(compare.old.value), new: Number(compare.new.value), reason: compare.reason.value.trim() };
      const out = document.getElementById("compare-result");
      const response = await api(`${base}/compare`, { method: "POST", body });
      if (!response.ok) { showResult(out, false, controlRoom.errorText(response)); return; }
      showResult(out, true, `Evaluation v${body.old} vs v${body.new} queued as job #${response.data.id}. `);
      out.append(el("a", { href: `/jobs/#job-${response.data.id}`, text: "Follow it on the Jobs page" }));
    });
  }

  poll(loadVersions, 10000);
  poll(loadReports, 10000);
})();
