/* Operator actions through the REST API, each behind the confirmation dialog that asks for a reason.
   The server checks the role and the CSRF token again: hiding a button is only a courtesy. */
"use strict";

const controlRoomActions = (() => {
  const { api, confirmAction, fmt } = controlRoom;

  const versionLabel = (v) => `v${v.number} · ${v.status} · ${v.origin}${v.created_at ? ` · ${fmt.time(v.created_at)}` : ""}`;

  function dialogOptions(action, versions, live) {
    const others = versions.filter((v) => v.number !== live);
    switch (action) {
      case "promote": {
        const candidates = others.filter((v) => v.status === "candidate");
        const choices = candidates.length ? candidates : others;
        return {
          title: "Promote a version",
          text: "The chosen version goes live at once with its own error memory; the current one is retired. Gates are your call here.",
          confirm: "Promote",
          versions: choices.map((v) => ({ number: v.number, label: versionLabel(v) })),
        };
      }
      case "rollback":
        return {
          title: "Roll back",
          text: "Puts the chosen version back live together with its error memory and detector state.",
          confirm: "Roll back",
          danger: true,
          versions: [{ number: "", label: "the version live before the current release" },
            ...others.map((v) => ({ number: v.number, label: versionLabel(v) }))],
        };
      case "retrain":
        return { title: "Retrain now", text: "Queues a retrain of the live version on recent data (gpu queue). The candidate is evaluated against the live version before any promotion.", confirm: "Start retrain", reasonRequired: false };
      case "pause":
        return { title: "Pause adaptation", text: "Serving goes on with the memory as it is; feedback is stored but the memory stops learning.", confirm: "Pause" };
      case "resume":
        return { title: "Resume adaptation", text: "The memory takes in the labels received while paused.", confirm: "Resume", reasonRequired: false };
      case "reset-memory":
        return { title: "Reset the error memory", text: "The live version's memory is emptied; predictions fall back to the base model until new labels arrive.", confirm: "Reset memory", danger: true };
      default:
        throw new Error(`unknown action ${action}`);
    }
  }

  function describe(action, data) {
    if (action === "promote" || action === "rollback") {
      const verb = action === "promote" ? "Promoted" : "Rolled back to";
      return `${verb} v${data.live_version.number} (release #${data.release.id}, ${data.took_ms} ms).`;
    }
    if (action === "retrain") return `Retrain queued as job #${data.id}: follow it on the Jobs page.`;
    if (action === "reset-memory") return `Memory reset: ${data.cleared} samples left the live memory (${data.took_ms} ms).`;
    return `Adaptation ${data.status === "paused" ? "paused" : "resumed"} (${data.took_ms} ms).`;
  }

  /* Asks, posts, and resolves {ok, text} (or null when the operator cancelled). */
  async function run(slug, action, versions, live) {
    const options = dialogOptions(action, versions, live);
    if (options.versions && !options.versions.length) {
      return { ok: false, text: "There is no other version to choose: retrain or upload one first." };
    }
    const answer = await confirmAction(options);
    if (!answer) return null;
    const body = { reason: answer.reason };
    if (options.versions && answer.version) body.version = answer.version;
    const response = await api(`/api/v1/deployments/${slug}/${action}`, { method: "POST", body });
    return { ok: response.ok, text: response.ok ? describe(action, response.data) : controlRoom.errorText(response) };
  }

  async function cancelJob(id) {
    const answer = await confirmAction({ title: `Cancel job #${id}`, text: "A queued job never starts; a running one stops at its next report and its result is dropped.", confirm: "Cancel job", danger: true, reasonRequired: false });
    if (!answer) return null;
    const response = await api(`/api/v1/jobs/${id}/cancel`, { method: "POST", body: { reason: answer.reason } });
    return { ok: response.ok, text: response.ok ? `Job #${id} cancelled.` : controlRoom.errorText(response) };
  }

  return { run, cancelJob };
})();
