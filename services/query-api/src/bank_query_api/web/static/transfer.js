// A transfer's steps as a timeline: started -> debited -> completed, or failed (and refunded).
"use strict";

(() => {
  if (!Bank.loggedIn()) return;
  const { el, accountWithOwner, euros, when } = Bank;
  const transferId = decodeURIComponent(window.location.pathname.split("/").pop());
  document.title = `Bank: transfer ${transferId}`;
  document.getElementById("title").textContent = `Transfer ${transferId}`;

  async function refresh() {
    const answer = await Bank.read(`/transfers/${encodeURIComponent(transferId)}`);
    const missing = document.getElementById("missing");
    if (answer.status === 404) {
      missing.hidden = false;
      missing.textContent = "This transfer is not in the read model yet. This page shows it as soon as it is.";
      return;
    }
    if (!answer.ok) return;
    missing.hidden = true;
    const transfer = answer.body;
    document.getElementById("summary").replaceChildren(
      `${euros(transfer.amount)} from `, accountWithOwner(transfer.source_account_id, transfer.source_owner),
      " to ", accountWithOwner(transfer.target_account_id, transfer.target_owner));
    const description = document.getElementById("description");
    description.hidden = !transfer.description;
    description.textContent = transfer.description || "";
    const status = document.getElementById("status");
    status.textContent = Bank.statusText(transfer);
    status.className = `status ${transfer.status}`;
    document.getElementById("timeline").replaceChildren(...Bank.timeline(transfer).map((step) =>
      el("li", { class: `step ${step.state}`, "data-step": step.name },
        el("span", { class: "step-text" }, step.text),
        el("span", { class: "step-time" }, step.state === "waiting" ? "waiting…" : when(step.at)))));
  }

  Bank.follow(refresh);
})();
