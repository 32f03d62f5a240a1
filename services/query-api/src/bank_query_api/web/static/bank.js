// What the pages share: who is logged in, reading the query API, sending commands to the
// command API, errors in plain words, "updating…" marks, and following the read model's change
// stream.
"use strict";

const Bank = (() => {
  const config = window.BANK_CONFIG;

  // --- who is logged in -----------------------------------------------------------------------

  // The bearer token is kept in sessionStorage, not localStorage: it is gone with the tab and
  // no other tab shares it. A script injected into the page could still read it; the pages'
  // Content-Security-Policy (our own script files only) is what guards against that.
  const TOKEN_KEY = "bank.token";
  const LOGIN_PAGE = "/ui/login";

  const session = {
    token: () => sessionStorage.getItem(TOKEN_KEY),
    keep: (token) => sessionStorage.setItem(TOKEN_KEY, token),
    forget: () => sessionStorage.removeItem(TOKEN_KEY),
  };

  // The token's claims ({sub, role, exp}) read without checking the signature: only to show
  // who is logged in and which forms they may use. The APIs verify the token on each request.
  function claimsOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
      return typeof claims.sub === "string" && typeof claims.role === "string" ? claims : null;
    } catch (_notAToken) {
      return null;
    }
  }

  // To the login page, which says why (`why`: a key of config.loginNotes) and comes back here.
  function toLogin(why, comeBack = true) {
    session.forget();
    const query = new URLSearchParams({ why });
    if (comeBack) query.set("next", window.location.pathname + window.location.search);
    window.location.assign(`${LOGIN_PAGE}?${query}`);
  }

  // Headers with the bearer token, for both APIs.
  function authorized(headers) {
    const token = session.token();
    return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
  }

  // Show only what the role may use: the elements marked data-role="teller" (or "customer")
  // for that role alone; the fields of the others are disabled too, so a form never sends them.
  function showFor(role) {
    for (const node of document.querySelectorAll("[data-role]")) {
      const mine = node.dataset.role === role;
      node.hidden = !mine;
      for (const field of node.querySelectorAll("input, button")) field.disabled = !mine;
      if (node.matches("input, button")) node.disabled = !mine;
    }
  }

  // Each page's first step: to the login page without a token; else the header says who is
  // logged in (with a button to log out) and the page shows what their role may use.
  function loggedIn() {
    const token = session.token();
    const claims = token && claimsOf(token);
    if (!claims) {
      toLogin("login");
      return null;
    }
    // "alice · customer"; the teller's name is its role already.
    const role = claims.role === claims.sub ? "" : ` · ${claims.role}`;
    document.getElementById("who").textContent = `${claims.sub}${role}`;
    // Tokens are not revoked: logging out forgets this tab's, which expires soon anyway.
    document.getElementById("log-out").addEventListener("click", () => toLogin("logged-out", false));
    showFor(claims.role);
    return { subject: claims.sub, role: claims.role };
  }

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

  // A 401 from either API: the token expired (or the key changed). Log in again.
  function expired(status) {
    toLogin("expired");
    return { ok: false, status, error: config.commandErrors.not_authenticated };
  }

  async function read(path) {
    const answer = await fetch(path, { headers: authorized({ Accept: "application/json" }) });
    if (answer.status === 401) return expired(answer.status);
    const body = await answer.json().catch(() => null);
    return { status: answer.status, ok: answer.ok, body };
  }

  // A new Idempotency-Key. crypto.randomUUID exists only in secure contexts (https, or
  // 127.0.0.1 and localhost); elsewhere sixteen random bytes in hex do as well.
  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // POST a command to the command API with its Idempotency-Key; {ok, status, body}, or
  // {ok: false, error} in plain words. `unanswered`: the bank may or may not have it (no
  // answer, or a server error), so retrying the same submission must reuse the key.
  async function send(path, payload, key) {
    let answer;
    try {
      answer = await fetch(config.commandApi + path, {
        method: "POST",
        headers: authorized({ "Content-Type": "application/json", Accept: "application/json", "Idempotency-Key": key }),
        body: JSON.stringify(payload),
      });
    } catch (_networkError) {
      return {
        ok: false, unanswered: true,
        error: `Cannot reach the command API at ${config.commandApi}. Is it running? Then send again.`,
      };
    }
    if (answer.status === 401) return expired(answer.status);
    const body = await answer.json().catch(() => null);
    if (!answer.ok) {
      return { ok: false, status: answer.status, unanswered: answer.status >= 500, error: plainError(answer.status, body) };
    }
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

  // Wire a form: `submit(fields, key)` sends with that Idempotency-Key and returns what send()
  // returned; its error or note is shown in the form's own message area, next to the fields
  // that caused it. Each submission has a fresh key; sent again unchanged after no answer, it
  // keeps its key, so the bank does it once even if the first one did arrive.
  function handleForm(form, submit) {
    const message = form.querySelector(".form-message");
    let unanswered = null; // {fields, key} of the last submission if it had no answer
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      message.textContent = "";
      message.className = "form-message";
      try {
        const sent = new Map(new FormData(form).entries());
        const fields = fieldsOf(form);
        const same = JSON.stringify(fields);
        const key = unanswered && unanswered.fields === same ? unanswered.key : newKey();
        const result = await submit(fields, key);
        unanswered = result.unanswered ? { fields: same, key } : null;
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

  // Until the stream's own `retry:` says otherwise.
  const RECONNECT_MS = 2000;

  // The fields of one server-sent event ("event: changed\ndata: {}"); comments are skipped.
  function eventFields(block) {
    const fields = {};
    for (const line of block.split(/\r\n|\r|\n/)) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    }
    return fields;
  }

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
    function showLive(on) {
      live.textContent = on ? "live" : "reconnecting…";
      live.className = on ? "live on" : "live off";
    }
    let reconnectMs = RECONNECT_MS;
    const leaving = new AbortController();

    // One connection to GET /changes, read with fetch: EventSource cannot send the
    // Authorization header. True when it ended and should be opened again; false on a 401.
    async function listen() {
      const answer = await fetch("/changes", {
        headers: authorized({ Accept: "text/event-stream" }), cache: "no-store", signal: leaving.signal,
      });
      if (answer.status === 401) {
        expired(answer.status);
        return false;
      }
      // Not a stream (a 503 while the API starts, or while it has all the streams it takes).
      if (!answer.ok || !answer.body) return true;
      showLive(true);
      run();
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let unread = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return true;
        // Events end with a blank line; the last piece may be the start of the next one.
        const blocks = (unread + value).split(/\r\n\r\n|\n\n|\r\r/);
        unread = blocks.pop();
        for (const block of blocks) {
          const fields = eventFields(block);
          if (/^\d+$/.test(fields.retry || "")) reconnectMs = Number(fields.retry);
          if (fields.event === "changed") run();
        }
      }
    }

    async function connect() {
      for (;;) {
        let reopen = true;
        try {
          reopen = await listen();
        } catch (_broken) {
          // The API stopped or cannot be reached: again after a pause (unless leaving).
        }
        if (!reopen || leaving.signal.aborted) return;
        showLive(false);
        await new Promise((resolve) => setTimeout(resolve, reconnectMs));
      }
    }
    connect();
    window.addEventListener("beforeunload", () => leaving.abort());
    run();
    return run;
  }

  return {
    config, session, loggedIn, el, updatingMark, accountLink, accountWithOwner, transferLink, euros, when,
    plainError, transferReason, timeline, statusText,
    read, send, handleForm, follow,
  };
})();
