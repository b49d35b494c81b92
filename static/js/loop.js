/* The loop's alerts as a banner (queues without a consumer, unhealthy workers, jobs waiting, lags),
   and on a deployment's page its label-to-memory and window lags. Reads GET /api/v1/loop. */
"use strict";

(() => {
  const { api, poll, el, fmt, replaceChildren } = controlRoom;
  const banner = document.getElementById("loop-alerts");
  if (!banner) return;
  const page = document.getElementById("deployment");
  const slug = page ? page.dataset.slug : null;

  function lagText(count, age) {
    if (!count) return "none";
    return `${fmt.int(count)} (oldest ${age < 120 ? `${Math.round(age)} s` : `${(age / 60).toFixed(1)} min`})`;
  }

  async function refresh() {
    const response = await api(banner.dataset.url);
    if (!response.ok) throw new Error(`loop: ${response.status}`);
    const data = response.data;
    // On a deployment's page: the loop-wide alerts and this deployment's own, not other deployments' lags.
    const alerts = data.alerts.filter((a) => !slug || !a.topic.startsWith("lag:") || a.topic === `lag:${slug}`);
    replaceChildren(banner.querySelector("ul"), alerts.map((a) =>
      el("li", { class: `loop-${a.level}`, "data-topic": a.topic, text: a.message })));
    banner.hidden = alerts.length === 0;
    if (slug) {
      const lag = data.deployments.find((d) => d.slug === slug);
      if (lag) {
        document.getElementById("lag-pending").textContent = lagText(lag.pending_labels, lag.pending_age_s);
        document.getElementById("lag-unwindowed").textContent = lagText(lag.unwindowed_labels, lag.unwindowed_age_s);
      }
    }
  }

  poll(refresh, 10000);
})();
