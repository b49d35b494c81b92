/* The deployment page's ingestion keys (admins only): revoke one behind the confirmation dialog.
   The server checks the role and the CSRF token again; a revoked key gets a 401 at once. */
"use strict";

(() => {
  const { api, confirmAction, showResult, errorText, fmt } = controlRoom;
  const table = document.getElementById("keys");
  if (!table) return;
  const slug = document.getElementById("deployment").dataset.slug;
  const result = document.getElementById("keys-result");

  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-revoke-key]");
    if (!button) return;
    const row = button.closest("tr");
    const name = row.dataset.keyName;
    const answer = await confirmAction({
      title: `Revoke the key "${name}"`,
      text: "Clients sending with this key get a 401 from now on. This cannot be undone: create a new key for them.",
      confirm: "Revoke key",
      danger: true,
      reasonRequired: false,
    });
    if (!answer) return;
    button.disabled = true;
    const response = await api(`/api/v1/deployments/${slug}/keys/${button.dataset.revokeKey}/revoke`, {
      method: "POST", body: { reason: answer.reason },
    });
    if (response.ok) {
      row.querySelector(".key-status").textContent = `revoked ${fmt.time(response.data.revoked_at)}`;
      button.remove();
      showResult(result, true, `Key "${name}" revoked.`);
    } else {
      button.disabled = false;
      showResult(result, false, errorText(response));
    }
  });
})();
