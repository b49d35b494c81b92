/* Jobs page: queued, running and finished jobs with live progress bars; cancel for operators. */
"use strict";

(() => {
  const { api, poll, el, fmt, replaceChildren, showResult, canAct } = controlRoom;
  const filters = document.getElementById("job-filters");
  const body = document.querySelector("#jobs tbody");
  const result = document.getElementById("action-result");

  function query() {
    const params = new URLSearchParams({ limit: "50" });
    for (const name of ["deployment", "kind", "status"]) if (filters[name].value) params.set(name, filters[name].value);
    return params.toString();
  }

  function row(j) {
    const active = j.status === "queued" || j.status === "running";
    const detail = j.metrics && j.metrics.epoch !== undefined ? ` epoch ${j.metrics.epoch}` : "";
    return el("tr", { "data-job-id": j.id, id: `job-${j.id}` },
      el("th", { scope: "row" }, `${j.kind} #${j.id}`),
      el("td", {}, j.deployment ? el("a", { href: `/deployments/${j.deployment}/`, text: j.deployment }) : "–"),
      el("td", { class: `status status-${j.status}`, text: j.status }),
      el("td", {}, el("progress", { max: "1", value: String(j.progress), "aria-label": `progress of job ${j.id}` }), ` ${fmt.pct(j.progress, 0)}`),
      el("td", { class: "num", text: j.started_at ? fmt.duration(j.started_at, j.finished_at) : active ? "waiting" : "–" }),
      el("td", { text: j.device || "–" }),
      el("td", { class: "small", text: `${j.message || ""}${detail}` }),
      el("td", { class: "hide-narrow small", text: `${fmt.time(j.created_at)}${j.requested_by ? ` by ${j.requested_by}` : ""}` }),
      canAct() ? el("td", {}, active ? el("button", { type: "button", class: "secondary", "data-cancel": j.id, text: "Cancel…" }) : null) : null);
  }

  async function refresh() {
    const response = await api(`/api/v1/jobs?${query()}`);
    if (!response.ok) throw new Error(`jobs: ${response.status}`);
    const jobs = response.data.results.filter((j) => j.kind !== "ping");
    replaceChildren(body, jobs.length ? jobs.map(row)
      : [el("tr", {}, el("td", { colspan: "9", class: "muted", text: "No job matches. Jobs appear when feedback arrives, windows close, or someone starts a retrain." }))]);
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  filters.addEventListener("change", refresh);
  body.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-cancel]");
    if (!button) return;
    const outcome = await controlRoomActions.cancelJob(Number(button.dataset.cancel));
    if (!outcome) return;
    showResult(result, outcome.ok, outcome.text);
    await refresh();
  });
  poll(refresh, 2000);
})();
