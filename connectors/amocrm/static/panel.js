// callbridge's live call panel inside amoCRM: the widget's script.js frames this page. It signs in with a
// hub token the widget gets for the current amoCRM user (kept in memory only, asked again when it runs
// out), or, when the widget cannot give one, with the employee's callbridge access code (kept in this
// browser). It shows the caller's card while the phone
// rings (CallbridgeLive from /operator/static/live.js), closes it when a colleague answers, keeps the
// call's progress, and tells the framing page when it has something to show.
(() => {
  "use strict";
  const KEY = "callbridge.amocrm.code";
  const config = JSON.parse(document.getElementById("panel-config").textContent);
  const form = document.getElementById("login");
  const input = document.getElementById("code");
  const error = document.getElementById("login-error");
  const popups = document.getElementById("popups");

  function tell() {
    const open = !form.hidden || popups.children.length > 0;
    const height = open ? Math.ceil(document.documentElement.scrollHeight) : 0;
    // Only "open" and a height: nothing secret. frame-ancestors limits who frames this page.
    window.parent.postMessage({ type: "callbridge-panel", open: open, height: height }, "*");
  }

  function showLogin(reason) {
    document.body.dataset.connected = "no";
    form.hidden = false;
    error.textContent = reason || "";
    tell();
  }

  // The hub token from the framing widget: only a message from our parent, sent from the account's page
  // (or callbridge's own), counts. Null when the widget cannot give one (not framed, unmapped user...).
  const senders = new Set([config.account, location.origin]);
  const WIDGET_WAIT_MS = 15000;
  let hubToken = null;
  let widgetRefused = false;

  // The widget's answer: a token; a refusal that will not change (unmapped user, refused token: the
  // access-code form then); or a passing failure (callbridge unreachable, busy), thrown so the caller
  // tries again later. No answer at all (an older widget, another framer) counts as a refusal.
  const LASTING = new Set(["unmapped", "unauthorized"]);

  function askWidget() {
    if (widgetRefused || window.parent === window) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => refuse(), WIDGET_WAIT_MS);
      function done() {
        clearTimeout(timer);
        window.removeEventListener("message", listen);
      }
      function refuse() {
        done();
        widgetRefused = true;
        resolve(null);
      }
      function listen(event) {
        const data = event.data || {};
        if (event.source !== window.parent || !senders.has(event.origin)) return;
        if (data.type !== "callbridge-session") return;
        if (typeof data.token === "string" && data.token) {
          done();
          resolve(data.token);
        } else if (data.error && !LASTING.has(data.error)) {
          done();
          reject(new Error("widget: " + data.error));
        } else {
          refuse();
        }
      }
      window.addEventListener("message", listen);
      window.parent.postMessage({ type: "callbridge-panel", want: "session" }, "*");
    });
  }

  // The operator page's own session (hub address, connection token) for a hub token or an access code.
  async function sessionFor(token) {
    const answer = await fetch("/operator/api/session", { headers: { Authorization: "Bearer " + token } });
    if (answer.status === 401) return null;
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    return answer.json();
  }

  async function fetchSession() {
    for (let attempt = 0; attempt < 2 && !widgetRefused; attempt++) {
      if (!hubToken) hubToken = await askWidget();
      if (!hubToken) break;
      const session = await sessionFor(hubToken);
      if (session) return session;
      hubToken = null; // ran out: one fresh token from the widget
    }
    const code = localStorage.getItem(KEY);
    if (!code) return null;
    const session = await sessionFor(code);
    if (!session) localStorage.removeItem(KEY);
    return session;
  }

  const live = window.CallbridgeLive.create({
    fetchSession: fetchSession,
    popups: popups,
    labels: config.labels,
    onLink: (online) => { document.body.dataset.connected = online ? "yes" : "no"; },
    onLoggedOut: () => showLogin(config.texts.refused),
  });

  async function begin() {
    let session = null;
    try {
      session = await fetchSession();
    } catch (err) {
      setTimeout(begin, 5000);
      return;
    }
    if (!session) {
      showLogin(localStorage.getItem(KEY) === null && input.value ? config.texts.refused : "");
      return;
    }
    form.hidden = true;
    tell();
    live.start(session);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const code = input.value.trim();
    if (!code) return;
    localStorage.setItem(KEY, code);
    begin();
  });
  new MutationObserver(tell).observe(popups, { childList: true, subtree: true });
  begin();
})();
