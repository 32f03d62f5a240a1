// An account: its balance and how it changed over time, deposit and withdraw forms, and its
// recent events; live.
"use strict";

(() => {
  if (!Bank.loggedIn()) return;
  const { el, updatingMark, transferLink, euros, when } = Bank;
  const LISTED = 20; // events in the table; the chart draws up to config.chartEvents
  const accountId = decodeURIComponent(window.location.pathname.split("/").pop());
  const EVENT_NAMES = { AccountOpened: "Opened", MoneyDeposited: "Deposit", MoneyWithdrawn: "Withdrawal" };
  // The highest version the command API answered for this page's own commands: until the
  // read model has it, the balance is marked "updating…".
  let awaitedVersion = 0;

  document.title = `Bank: ${accountId}`;

  function eventRow(activity) {
    const signed = activity.type === "MoneyWithdrawn" ? `−${euros(activity.amount)}` : euros(activity.amount);
    return el("tr", { "data-version": activity.version },
      el("td", {}, activity.version),
      el("td", {}, EVENT_NAMES[activity.type] || activity.type),
      el("td", { class: "description" }, activity.description),
      el("td", { class: "money" }, signed),
      el("td", { class: "money" }, euros(activity.balance_after)),
      el("td", {}, activity.transfer_id ? transferLink(activity.transfer_id) : ""),
      el("td", {}, when(activity.occurred_at)));
  }

  async function refresh() {
    const [account, history] = await Promise.all([
      Bank.read(`/accounts/${encodeURIComponent(accountId)}`),
      Bank.read(`/accounts/${encodeURIComponent(accountId)}/events?limit=${Bank.config.chartEvents}`),
    ]);
    const missing = document.getElementById("missing");
    if (account.status === 404) {
      document.getElementById("title").textContent = accountId;
      missing.hidden = false;
      missing.textContent = "There is no such account (yet). This page shows it as soon as it is opened.";
      return;
    }
    if (!account.ok || !history.ok) return;
    missing.hidden = true;
    const a = account.body;
    document.getElementById("title").textContent = `${a.owner} (${a.account_id})`;
    document.getElementById("balance").textContent = euros(a.balance);
    document.getElementById("version").textContent = `Version ${a.version}, opened ${when(a.opened_at)}`;
    document.getElementById("balance-mark").replaceChildren(...(a.version < awaitedVersion ? [updatingMark()] : []));
    const events = history.body.items;
    document.getElementById("event-rows").replaceChildren(...events.slice(0, LISTED).map(eventRow));
    const points = BalanceChart.pointsOf(events);
    const drawing = BalanceChart.draw(points, "balance-chart-text");
    document.getElementById("balance-chart-drawing").replaceChildren(...(drawing ? [drawing] : []));
    const sinceOpening = events.length > 0 && events[events.length - 1].version === 1;
    document.getElementById("balance-chart-text").textContent = BalanceChart.summary(points, sinceOpening);
  }

  const refreshNow = Bank.follow(refresh);

  for (const [formId, path] of [["deposit", "deposits"], ["withdraw", "withdrawals"]]) {
    Bank.handleForm(document.getElementById(formId), async (fields, key) => {
      const result = await Bank.send(`/accounts/${encodeURIComponent(accountId)}/${path}`, fields, key);
      if (result.ok && result.body.status === "accepted") {
        awaitedVersion = Math.max(awaitedVersion, result.body.version);
        refreshNow();
      }
      return result;
    });
  }
})();
