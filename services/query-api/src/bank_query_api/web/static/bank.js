// What the three pages share: reading the query API, sending commands to the command API,
// errors in plain words, "updating…" marks, and following the read model's change stream.
"use strict";

const Bank = (() => {
  const config = window.BANK_CONFIG;

  // --- building the page ------------------------------------------------------------------

  // el("a", {href: "/x"}, "text", child…): text is always set as text, never parsed as HTML.
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function updatingMark() {
    return el("span", { class: "updating", title: "Accepted; the read model has not shown it yet" }, "updating…");
  }

  function accountLink(accountId) {
    return el("a", { href: `/ui/accounts/${encodeURIComponent(accountId)}` }, accountId);
  }

  // An account as a list shows it: its holder's name (when the read model has the account)
  // beside its id, which links to its page.
  function accountWithOwner(accountId, owner) {
    return el("span", { class: "account" },
      owner ? [el("span", { class: "owner" }, owner), " "] : null,
      el("span", { class: "account-id" }, accountLink(accountId)));
  }

  function transferLink(transferId) {
    return el("a", { href: `/ui/transfers/${encodeURIComponent(transferId)}` }, transferId);
  }

  function euros(amount) {
    return `€${amount}`;
  }

  // "2026-01-15T09:30:00.123456Z" -> the browser's local date and time, to the second.
  function when(isoTime) {
    if (!isoTime) return "";
    const moment = new Date(isoTime);
    return Number.isNaN(moment.getTime()) ? isoTime : moment.toLocaleString();
  }

  // --- errors in plain words ------------------------------------------------------------------

  // The command API answers errors as problem+json {code, message}; the page shows words a
  // person understands, and the API's own message when it has no better ones.
  function plainError(status, problem) {
    const code = problem && problem.code;
    if (code === "validation_error" && Array.isArray(problem.errors) && problem.errors.length) {
      return problem.errors.map((error) => {
        const label = config.fieldLabels[error.field] || error.field;
        const text = config.moneyHints[error.field] || error.message;
        return `${label}: ${text}`;
      }).join(" ");
    }
    if (code && config.commandErrors[code]) return config.commandErrors[code];
    if (problem && problem.message) return problem.message;
    return `The bank answered ${status}. Try again in a moment.`;
  }

  function transferReason(reason) {
    return config.transferReasons[reason] || reason;
  }

  // --- a transfer's steps ---------------------------------------------------------------------

  // The timeline of a transfer as the read model has it: each step is {name, text, at, state},
  // state "done", "failed" or "waiting" (not reached yet).
  function timeline(transfer) {
    const source = transfer.source_account_id;
    const target = transfer.target_account_id;
    const steps = [
      { name: "started", text: `Started: ${euros(transfer.amount)} from ${source} to ${target}`, at: transfer.started_at, state: "done" },
    ];
    const debited = transfer.debited_at !== null && transfer.debited_at !== undefined;
    if (transfer.status === "failed") {
      if (debited) steps.push({ name: "debited", text: `Debited from ${source}`, at: transfer.debited_at, state: "done" });
      steps.push({ name: "failed", text: `Failed: ${transferReason(transfer.reason)}`, at: transfer.finished_at, state: "failed" });
      if (transfer.refunded) steps.push({ name: "refunded", text: `Refunded to ${source}`, at: transfer.finished_at, state: "done" });
      return steps;
    }
    steps.push({ name: "debited", text: `Debited from ${source}`, at: transfer.debited_at, state: debited ? "done" : "waiting" });
    const completed = transfer.status === "completed";
    steps.push({ name: "completed", text: `Completed: credited to ${target}`, at: transfer.finished_at, state: completed ? "done" : "waiting" });
    return steps;
  }

  function statusText(transfer) {
    if (transfer.status === "failed") {
      const refund = transfer.refunded ? " (refunded)" : "";
      return `failed: ${transferReason(transfer.reason)}${refund}`;
    }
    return transfer.status;
  }

  // --- talking to the APIs --------------------------------------------------------------------

  async function read(path) {
    const answer = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await answer.json().catch(() => null);
    return { status: answer.status, ok: answer.ok, body };
  }

  // POST a command to the command API; {ok, status, body}, or {ok: false, error} in plain words.
  async function send(path, payload) {
    let answer;
    try {
      answer = await fetch(config.commandApi + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      });
    } catch (_networkError) {
      return { ok: false, error: `Cannot reach the command API at ${config.commandApi}. Is it running?` };
    }
    const body = await answer.json().catch(() => null);
    if (!answer.ok) return { ok: false, status: answer.status, error: plainError(answer.status, body) };
    if (body && body.status === "pending") {
      return { ok: true, status: answer.status, body, note: "Sent; the bank has not decided yet." };
    }
    return { ok: true, status: answer.status, body };
  }

  // A form's fields as an object, leaving out the empty ones.
  function fieldsOf(form) {
    const fields = {};
    for (const [name, value] of new FormData(form).entries()) {
      const text = String(value).trim();
      if (text !== "") fields[name] = text;
    }
    return fields;
  }

  // Wire a form: `submit(fields)` returns what send() returned; its error or note is shown in
  // the form's own message area, next to the fields that caused it.
  function handleForm(form, submit) {
    const message = form.querySelector(".form-message");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      message.textContent = "";
      message.className = "form-message";
      try {
        const sent = new Map(new FormData(form).entries());
        const result = await submit(fieldsOf(form));
        if (!result.ok) {
          message.textContent = result.error;
          message.classList.add("error");
        } else {
          if (result.note) message.textContent = result.note;
          // Clear what was sent, not what was typed while the answer was on its way.
          for (const field of form.elements) {
            if (field.name && "defaultValue" in field && sent.get(field.name) === field.value) {
              field.value = field.defaultValue;
            }
          }
        }
      } finally {
        button.disabled = false;
      }
    });
  }

  // --- following the read model ---------------------------------------------------------------

  // As the stream's own `retry:`.
  const RECONNECT_MS = 2000;

  // Calls `refresh` now, at each change of the read model, and after each reconnection (changes
  // may have been missed meanwhile). Refreshes never overlap: changes during one run are
  // caught by one more run, even when that run failed.
  function follow(refresh) {
    let running = false;
    let again = false;
    async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      do {
        again = false;
        try {
          await refresh();
        } catch (error) {
          console.error("refresh failed", error);
        }
      } while (again);
      running = false;
    }
    const live = document.getElementById("live");
    let stream = null;
    function connect() {
      const source = new EventSource("/changes");
      stream = source;
      source.addEventListener("open", () => {
        live.textContent = "live";
        live.className = "live on";
        run();
      });
      source.addEventListener("changed", run);
      source.addEventListener("error", () => {
        live.textContent = "reconnecting…";
        live.className = "live off";
        // The browser retries by itself after a network error, but gives up for good on an
        // answer that is not a stream (a proxy's 502, a 503 while the API starts).
        if (source.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
      });
    }
    connect();
    window.addEventListener("beforeunload", () => stream.close());
    run();
    return run;
  }

  return {
    config, el, updatingMark, accountLink, accountWithOwner, transferLink, euros, when,
    plainError, transferReason, timeline, statusText,
    read, send, handleForm, follow,
  };
})();
