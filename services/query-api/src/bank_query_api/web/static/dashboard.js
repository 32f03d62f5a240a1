// The dashboard: accounts and their balances, the two forms, recent transfers; live.
"use strict";

(() => {
  if (!Bank.loggedIn()) return;
  const { el, updatingMark, accountLink, accountWithOwner, transferLink, euros, when } = Bank;
  const SHOWN = 50;
  // Accepted by the command API, not yet shown by the read model ("updating…"):
  const openingAccounts = new Map(); // account_id -> {owner, version}
  const runningTransfers = new Map(); // transfer_id -> {source_account_id, target_account_id, amount}

  async function newestAccounts() {
    const first = await Bank.read(`/accounts?limit=${SHOWN}`);
    if (!first.ok) return first;
    const total = first.body.total;
    if (total <= SHOWN) return first;
    return Bank.read(`/accounts?limit=${SHOWN}&offset=${total - SHOWN}`);
  }

  function accountRow(account, updating) {
    return el("tr", { "data-account": account.account_id },
      el("td", {}, accountLink(account.account_id)),
      el("td", {}, account.owner),
      el("td", { class: "money balance" }, account.balance === null ? "" : euros(account.balance)),
      el("td", { class: "mark" }, updating ? updatingMark() : null));
  }

  // `owners`: account_id -> owner, for the transfers this page sent that the read model does
  // not have yet (their rows have no owners).
  function transferRow(transfer, updating, owners) {
    const ownerOf = (side) => transfer[`${side}_owner`] || owners.get(transfer[`${side}_account_id`]);
    return el("tr", { "data-transfer": transfer.transfer_id },
      el("td", {}, transferLink(transfer.transfer_id),
        transfer.description ? el("span", { class: "description" }, transfer.description) : null),
      el("td", { class: "from" }, accountWithOwner(transfer.source_account_id, ownerOf("source"))),
      el("td", { class: "to" }, accountWithOwner(transfer.target_account_id, ownerOf("target"))),
      el("td", { class: "money" }, euros(transfer.amount)),
      el("td", { class: `status ${transfer.status}` }, Bank.statusText(transfer), updating ? [" ", updatingMark()] : null),
      el("td", {}, when(transfer.started_at)));
  }

  // This page's transfers that newer ones pushed off the list, read one by one: else their
  // "updating…" (and their accounts') would never end on a busy bank.
  async function offList(shown) {
    const ids = [...runningTransfers.keys()].filter((id) => !shown.has(id));
    const answers = await Promise.all(ids.map((id) => Bank.read(`/transfers/${encodeURIComponent(id)}`)));
    return new Map(answers.filter((answer) => answer.ok).map((answer) => [answer.body.transfer_id, answer.body]));
  }

  async function refresh() {
    const [accounts, transfers] = await Promise.all([newestAccounts(), Bank.read("/transfers?limit=20")]);
    if (!accounts.ok || !transfers.ok) return;
    const shown = new Set(transfers.body.items.map((t) => t.transfer_id));
    const projected = await offList(shown);

    for (const transfer of [...transfers.body.items, ...projected.values()]) {
      if (transfer.status === "completed" || transfer.status === "failed") runningTransfers.delete(transfer.transfer_id);
    }
    const busy = new Set();
    for (const t of runningTransfers.values()) busy.add(t.source_account_id).add(t.target_account_id);

    const accountRows = [];
    for (const account of accounts.body.items.slice().reverse()) {
      const opening = openingAccounts.get(account.account_id);
      if (opening && account.version >= opening.version) openingAccounts.delete(account.account_id);
      accountRows.push(accountRow(account, openingAccounts.has(account.account_id) || busy.has(account.account_id)));
    }
    const listed = new Set(accounts.body.items.map((a) => a.account_id));
    for (const [accountId, opening] of openingAccounts) {
      if (!listed.has(accountId)) accountRows.unshift(accountRow({ account_id: accountId, owner: opening.owner, balance: opening.balance }, true));
    }
    document.getElementById("account-rows").replaceChildren(...accountRows);
    document.getElementById("account-ids").replaceChildren(
      ...accounts.body.items.map((a) => el("option", { value: a.account_id }, a.owner)));
    const total = accounts.body.total;
    document.getElementById("accounts-count").textContent =
      total > SHOWN ? `The ${SHOWN} newest of ${total} accounts, newest first.` : `${total} account${total === 1 ? "" : "s"}, newest first.`;

    const owners = new Map(accounts.body.items.map((a) => [a.account_id, a.owner]));
    const transferRows = [];
    for (const [transferId, started] of runningTransfers) {
      if (!shown.has(transferId)) {
        const transfer = projected.get(transferId) || { transfer_id: transferId, status: "sent", ...started };
        transferRows.push(transferRow(transfer, true, owners));
      }
    }
    for (const transfer of transfers.body.items) {
      transferRows.push(transferRow(transfer, runningTransfers.has(transfer.transfer_id), owners));
    }
    document.getElementById("transfer-rows").replaceChildren(...transferRows);
  }

  const refreshNow = Bank.follow(refresh);

  Bank.handleForm(document.getElementById("open-account"), async (fields, key) => {
    const result = await Bank.send("/accounts", fields, key);
    if (result.ok && result.body.status === "accepted") {
      openingAccounts.set(result.body.account_id, { owner: fields.owner, version: result.body.version, balance: result.body.balance });
      refreshNow();
    }
    return result;
  });

  Bank.handleForm(document.getElementById("start-transfer"), async (fields, key) => {
    if (fields.source_account_id === fields.target_account_id) {
      return { ok: false, error: "Choose two different accounts." };
    }
    const result = await Bank.send("/transfers", fields, key);
    if (result.ok) {
      runningTransfers.set(result.body.transfer_id, {
        source_account_id: fields.source_account_id, target_account_id: fields.target_account_id, amount: fields.amount,
        description: fields.description,
      });
      refreshNow();
    }
    return result;
  });
})();
