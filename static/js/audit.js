/* Audit log (filterable, paged, live) and the release timeline of the chosen deployment. */
"use strict";

(() => {
  const { api, poll, el, fmt, replaceChildren } = controlRoom;
  const filters = document.getElementById("audit-filters");
  const PAGE = 50;
  let offset = 0;

  function params() {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    for (const name of ["deployment", "actor", "action"]) if (filters[name].value) query.set(name, filters[name].value);
    return query;
  }

  function versions(a) {
    if (a.from_version && a.to_version) return `v${a.from_version} → v${a.to_version}`;
    if (a.to_version) return `→ v${a.to_version}`;
    if (a.from_version) return `v${a.from_version}`;
    return "–";
  }

  async function loadAudit() {
    const response = await api(`/api/v1/audit?${params()}`);
    if (!response.ok) throw new Error(`audit: ${response.status}`);
    const { results, count } = response.data;
    replaceChildren(document.querySelector("#audit tbody"), results.length
      ? results.map((a) => el("tr", { "data-entry-id": a.id, "data-action": null },
        el("td", { text: fmt.time(a.created_at) }),
        el("td", {}, a.deployment ? el("a", { href: `/deployments/${a.deployment}/`, text: a.deployment }) : "–"),
        el("td", { text: a.actor }), el("td", { class: `audit-${a.action}`, text: a.action_label }),
        el("td", { text: versions(a) }), el("td", { text: a.reason || "–" })))
      : [el("tr", {}, el("td", { colspan: "6", class: "muted", text: "Nothing matches these filters yet." }))]);
    document.getElementById("audit-page").textContent = count ? `${offset + 1}–${offset + results.length} of ${fmt.int(count)}` : "";
    document.getElementById("audit-prev").disabled = offset === 0;
    document.getElementById("audit-next").disabled = offset + PAGE >= count;
  }

  async function loadReleases() {
    const slug = filters.deployment.value;
    const list = document.getElementById("releases");
    if (!slug) { list.replaceChildren(); return; }
    const response = await api(`/api/v1/deployments/${slug}/releases?limit=50`);
    if (!response.ok) throw new Error(`releases: ${response.status}`);
    replaceChildren(list, response.data.results.length
      ? response.data.results.map((r) => el("li", { class: `kind-${r.kind}`, "data-release-id": r.id },
        el("strong", { text: `v${r.version}` }), ` ${r.kind} by ${r.actor}`,
        el("div", { class: "muted", text: `${fmt.time(r.started_at)} → ${r.ended_at ? fmt.time(r.ended_at) : "now"}` }),
        r.reason ? el("div", { text: `“${r.reason}”` }) : null))
      : [el("li", { class: "muted", text: "No release yet: the first version put live opens one." })]);
  }

  filters.addEventListener("change", () => {
    offset = 0;
    history.replaceState(null, "", `?${new URLSearchParams([...new FormData(filters)].filter(([, v]) => v))}`);
    loadAudit();
    loadReleases();
  });
  document.getElementById("audit-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadAudit(); });
  document.getElementById("audit-next").addEventListener("click", () => { offset += PAGE; loadAudit(); });
  poll(async () => { await Promise.all([loadAudit(), loadReleases()]); }, 5000);
})();
