// callbridge's live call panel inside amoCRM: the widget's script.js frames this page. Signed in once with
// the employee's callbridge access code (kept in this browser), it shows the caller's card while the phone
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

  async function fetchSession() {
    const code = localStorage.getItem(KEY);
    if (!code) return null;
    const answer = await fetch("/operator/api/session", { headers: { Authorization: "Bearer " + code } });
    if (answer.status === 401) {
      localStorage.removeItem(KEY);
      return null;
    }
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    return answer.json();
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
