// The login page: a username and password for a bearer token (the command API's POST /token,
// the OAuth2 password flow), kept for this tab; then back to the page that sent us here.
"use strict";

(() => {
  const config = Bank.config;
  const LOGIN_PAGE = "/ui/login";
  const params = new URLSearchParams(window.location.search);
  const form = document.getElementById("log-in");
  const message = form.querySelector(".form-message");

  const why = document.getElementById("why");
  const note = config.loginNotes[params.get("why")];
  why.hidden = !note;
  why.textContent = note || "";

  // Where to go once logged in: a page of this UI only, never another site (an open redirect).
  function nextPage() {
    const next = new URL(params.get("next") || "/ui/", window.location.origin);
    const ours = next.origin === window.location.origin && next.pathname.startsWith("/ui/")
      && next.pathname !== LOGIN_PAGE;
    return ours ? next.pathname + next.search : "/ui/";
  }

  // {token}, or {error} in plain words.
  async function requestToken(username, password) {
    // Form-encoded, as OAuth2's password flow wants.
    const body = new URLSearchParams({ grant_type: "password", username, password });
    let answer;
    try {
      answer = await fetch(`${config.commandApi}/token`, { method: "POST", body, headers: { Accept: "application/json" } });
    } catch (_networkError) {
      return { error: `Cannot reach the command API at ${config.commandApi}. Is it running? Then try again.` };
    }
    const answered = await answer.json().catch(() => null);
    if (answer.status === 401) return { error: config.loginRefused };
    if (!answer.ok || !answered || !answered.access_token) return { error: Bank.plainError(answer.status, answered) };
    return { token: answered.access_token };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    message.textContent = "";
    message.className = "form-message";
    const data = new FormData(form);
    const result = await requestToken(String(data.get("username")).trim(), String(data.get("password")));
    if (result.token) {
      Bank.session.keep(result.token);
      window.location.replace(nextPage());
      return;
    }
    message.textContent = result.error;
    message.classList.add("error");
    button.disabled = false;
  });
})();
