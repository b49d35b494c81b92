/* Overview: every deployment's health, traffic, latest AUCs, memory and sparkline; active jobs. */
"use strict";

(() => {
  const { api, poll, el, fmt, badge, replaceChildren, sparkline } = controlRoom;
  const table = document.getElementById("deployments");
  const body = table.querySelector("tbody");

  function row(d) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    const last = d.sparkline.compensated.filter((v) => v !== null).slice(-1)[0];
    svg.setAttribute("aria-label", `AUC over the last ${d.sparkline.compensated.length} windows, latest compensated ${fmt.num(last)}`);
    sparkline(svg, [
      { values: d.sparkline.base, cls: "base" },
      { values: d.sparkline.compensated, cls: "compensated" },
    ]);
    const w = d.latest_window;
    const health = badge(d.health);
    health.title = d.health_reasons.join("; ");
    return el("tr", { "data-slug": d.slug },
      el("td", {},
        el("a", { href: `/deployments/${d.slug}/`, text: d.name }), " ",
        el("code", { class: "small muted", text: d.slug }),
        d.status === "paused" ? el("div", { class: "status-paused small", text: "⏸ adaptation paused" }) : null,
        d.serving === "external" ? el("div", { class: "muted small", text: "external model" }) : null),
      el("td", {}, d.live_version ? `v${d.live_version}` : el("span", { class: "muted", text: "none" })),
      el("td", { class: "health" }, health),
      el("td", { class: "num epm", text: fmt.num(d.events_per_minute, 1) }),
      el("td", { class: "num auc-base", text: fmt.num(w && w.base_auc) }),
      el("td", { class: "num auc-comp", text: fmt.num(w && w.compensated_auc) }),
      el("td", { class: "num memory-size", text: fmt.int(d.memory_size) }),
      el("td", { class: "hide-narrow" }, svg));
  }

  function job(j) {
    return el("li", { "data-job-id": j.id },
      el("a", { href: `/jobs/#job-${j.id}`, text: `${j.kind} #${j.id}` }),
      j.deployment ? ` on ${j.deployment}` : "", " · ",
      el("span", { class: `status-${j.status}`, text: j.status }), " ",
      el("progress", { max: "1", value: String(j.progress), "aria-label": `progress of job ${j.id}` }),
      ` ${fmt.pct(j.progress, 0)}`,
      j.message ? el("span", { class: "muted small", text: ` ${j.message}` }) : null);
  }

  async function refresh() {
    const response = await api(table.dataset.url);
    if (!response.ok) throw new Error(`overview: ${response.status}`);
    const data = response.data;
    replaceChildren(body, data.deployments.map(row));
    document.getElementById("no-deployments").hidden = data.deployments.length > 0;
    table.hidden = data.deployments.length === 0;
    const jobs = document.getElementById("running-jobs");
    replaceChildren(jobs, data.active_jobs.length
      ? data.active_jobs.map(job)
      : [el("li", { class: "muted", text: "No job is queued or running. Retrains start from a deployment's page or by the policy." })]);
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  poll(refresh, 5000);
})();
