// Live call popups on every panel page (the shared client is live.js), with a Call button that places
// a click-to-call through the panel (session cookie + CSRF token, like the page's own forms).
(function () {
  "use strict";
  const configEl = document.getElementById("live-config");
  if (!configEl || !window.CallbridgeLive) return;
  const config = JSON.parse(configEl.textContent);
  const status = document.getElementById("live-status");

  function say(text, error) {
    status.textContent = text;
    status.className = "live-status" + (error ? " error" : "");
    status.hidden = !text;
  }

  async function fetchSession() {
    const res = await fetch(config.session_url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (res.status === 401 || res.status === 403) return null;
    if (!res.ok) throw new Error("session: HTTP " + res.status);
    return res.json();
  }

  async function dial(number) {
    const body = new URLSearchParams({ csrf_token: config.csrf, number: number });
    say(config.labels.call + " " + number + "…");
    try {
      const res = await fetch(config.callback_url, {
        method: "POST",
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        body: body,
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) { say(data.error || "HTTP " + res.status, true); return; }
      say(data.message || config.dialed);
      document.body.dataset.lastCommand = data.command_id || "";
    } catch (e) {
      say("HTTP error", true);
    }
  }

  const live = window.CallbridgeLive.create({
    fetchSession: fetchSession,
    popups: document.getElementById("popups"),
    labels: config.labels,
    dial: config.dial ? dial : null,
    onLink: (online) => { document.body.dataset.live = online ? "yes" : "no"; },
  });

  fetchSession().then((session) => { if (session) live.start(session); }).catch(() => { /* no popups now */ });
})();
