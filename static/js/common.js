/* Shared helpers of the dashboard pages: REST calls with the session's CSRF token, polling,
   safe DOM building (text only, never HTML from data), formatting and the confirmation dialog. */
"use strict";

const controlRoom = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const role = () => document.body.dataset.role;
  const canAct = () => role() === "operator" || role() === "admin";

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = csrf();
    }
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  /* Calls fn now and then every ms while the tab is visible; shows a banner while the server is away. */
  function poll(fn, ms) {
    const banner = document.getElementById("connection");
    let timer = null;
    async function tick() {
      if (!document.hidden) {
        try {
          await fn();
          if (banner) banner.hidden = true;
        } catch (error) {
          if (banner) banner.hidden = false;
          console.error(error);
        }
      }
      timer = setTimeout(tick, ms);
    }
    tick();
    return () => clearTimeout(timer);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = {
    num(value, digits = 3) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); },
    int(value) { return value === null || value === undefined ? "–" : Number(value).toLocaleString("en"); },
    pct(value, digits = 1) { return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)}%`; },
    time(value) {
      if (!value) return "–";
      const date = new Date(value);
      return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
    },
    duration(start, end) {
      if (!start) return "–";
      const seconds = ((end ? new Date(end) : new Date()) - new Date(start)) / 1000;
      if (seconds < 60) return `${seconds.toFixed(1)} s`;
      if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
      return `${(seconds / 3600).toFixed(1)} h`;
    },
  };

  /* A band or health badge: colour, symbol (CSS) and the word itself. */
  function badge(level) {
    const cls = { ok: "band-ok", warn: "band-warn", drift: "band-drift" }[level] || "band-nodata";
    return el("span", { class: `band ${cls}`, text: level || "no data" });
  }

  function replaceChildren(node, ...children) {
    node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined));
  }

  /* Polyline sparkline of up to two series in an <svg viewBox="0 0 100 30">; nulls break the line. */
  function sparkline(svg, series) {
    const values = series.flatMap((s) => s.values).filter((v) => v !== null);
    svg.replaceChildren();
    if (!values.length) return;
    const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
    for (const s of series) {
      const n = s.values.length;
      let path = "";
      s.values.forEach((v, i) => {
        if (v === null) return;
        const x = n === 1 ? 50 : (100 * i) / (n - 1);
        const y = 28 - (26 * (v - lo)) / span;
        path += `${path && s.values[i - 1] !== null ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      });
      const line = document.createElementNS("http://www.w3.org/2000/svg", "path");
      line.setAttribute("d", path.trim());
      line.setAttribute("class", s.cls);
      line.setAttribute("fill", "none");
      line.setAttribute("stroke-width", "1.6");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
    }
  }

  /* Opens dialog#action-dialog and resolves with {reason, version} or null when cancelled.
     options: {title, text, confirm, versions: [{number, label}], version, reasonRequired, danger} */
  function confirmAction(options) {
    const dialog = document.getElementById("action-dialog");
    const form = dialog.querySelector("form");
    const versionField = dialog.querySelector(".version-field");
    const select = dialog.querySelector("select[name=version]");
    const reason = dialog.querySelector("textarea[name=reason]");
    const error = dialog.querySelector(".dialog-error");
    dialog.querySelector(".dialog-title").textContent = options.title;
    dialog.querySelector(".dialog-text").textContent = options.text || "";
    const submit = dialog.querySelector("button[type=submit]");
    submit.textContent = options.confirm || "Confirm";
    submit.classList.toggle("danger", Boolean(options.danger));
    reason.value = "";
    reason.required = options.reasonRequired !== false;
    dialog.querySelector(".reason-hint").textContent = reason.required ? "(required, goes to the audit log)" : "(optional)";
    error.textContent = "";
    if (options.versions) {
      versionField.hidden = false;
      select.replaceChildren(...options.versions.map((v) => el("option", { value: v.number, text: v.label })));
      if (options.version) select.value = String(options.version);
    } else {
      versionField.hidden = true;
      select.replaceChildren();
    }
    return new Promise((resolve) => {
      function finish(result) {
        form.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("close", onClose);
        resolve(result);
      }
      function onSubmit(event) {
        event.preventDefault();
        if (reason.required && !reason.value.trim()) {
          error.textContent = "Please give a reason: it is stored in the audit log.";
          reason.focus();
          return;
        }
        const result = { reason: reason.value.trim(), version: options.versions ? Number(select.value) : null };
        finish(result);
        dialog.close("confirmed");
      }
      function onClose() { finish(null); }
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("close", onClose);
      dialog.querySelector("button.cancel").onclick = () => dialog.close("cancelled");
      dialog.showModal();
      (options.versions ? select : reason).focus();
    });
  }

  /* Shows the outcome of an action in a role=status region. */
  function showResult(node, ok, text) {
    node.hidden = false;
    node.className = `result ${ok ? "ok" : "fail"}`;
    node.textContent = text;
  }

  function errorText(response) {
    const data = response.data || {};
    if (response.status === 403) return `Refused (403): ${data.detail || "your role may not do this"}`;
    return `Failed (${response.status}): ${data.detail || data.error || "unexpected answer"}`;
  }

  return { api, poll, el, fmt, badge, replaceChildren, sparkline, confirmAction, showResult, errorText, canAct, role };
})();
