// The operator page: live popups (live.js), today's calls, click-to-call.
// Plain JavaScript, no build step. Messages are documented in docs/realtime.md.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = {
    identity: null,
    token: null,
    urlToken: null,
    dialPoll: null,
  };

  // ------------------------------------------------------------------ session

  function authHeaders() {
    const h = { Accept: "application/json" };
    if (state.urlToken) h.Authorization = "Bearer " + state.urlToken;
    return h;
  }

  async function fetchSession() {
    const res = await fetch("/operator/api/session", { headers: authHeaders(), credentials: "same-origin" });
    if (res.status === 401) return null;
    if (!res.ok) throw new Error("session: HTTP " + res.status);
    const session = await res.json();
    state.identity = session.identity;
    state.token = session.token;
    if (session.timezone && session.timezone !== state.timezone) { state.timezone = session.timezone; timeFormat = null; }
    return session;
  }

  function showLogin() {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    setLink(false, "logged out");
  }

  function setLink(online, text) {
    const el = $("link");
    el.className = "link " + (online ? "online" : "offline");
    el.textContent = text || (online ? "live" : "offline");
    document.body.dataset.connected = online ? "yes" : "no";
  }

  const live = window.CallbridgeLive.create({
    fetchSession: fetchSession,
    popups: $("popups"),
    dial: (number) => { $("dial-number").value = number; $("dial-form").requestSubmit(); },
    onLink: setLink,
    onLoggedOut: showLogin,
    onCallsChanged: () => scheduleToday(),
    onGap: () => loadToday(),
  });

  async function start() {
    // An embedding CRM passes the token in the URL: keep it for this tab, then drop it from the address bar.
    const params = new URLSearchParams(location.search);
    if (params.get("token")) {
      state.urlToken = params.get("token");
      try { sessionStorage.setItem("cbToken", state.urlToken); } catch (e) { /* storage may be blocked in iframes */ }
      history.replaceState(null, "", location.pathname);
    } else {
      try { state.urlToken = sessionStorage.getItem("cbToken"); } catch (e) { state.urlToken = null; }
    }
    if (!$("login").hidden) return; // the server answered a failed login
    let session;
    try {
      session = await fetchSession();
    } catch (e) {
      setLink(false, "server unreachable");
      setTimeout(start, 3000);
      return;
    }
    if (!session) {
      try { sessionStorage.removeItem("cbToken"); } catch (e) { /* ignore */ }
      state.urlToken = null;
      showLogin();
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !!state.urlToken;
    $("who").textContent = session.identity.role === "supervisor" ? "Supervisor: all calls" : "Extension " + session.identity.extension;
    live.setupNotifications($("notify"));
    loadToday();
    live.start(session);
  }

  // ------------------------------------------------------------------ today's calls

  let todayTimer = null;
  function scheduleToday() {
    clearTimeout(todayTimer);
    todayTimer = setTimeout(loadToday, 300);
  }

  // Times in the company's time zone (the panel's setting, from the session), 24-hour, whatever the
  // browser's own zone and locale.
  let timeFormat = null;
  function fmtTime(ts) {
    if (!ts) return "";
    if (!timeFormat) {
      const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
      try {
        timeFormat = new Intl.DateTimeFormat("ru-RU", { ...options, timeZone: state.timezone || "UTC" });
      } catch (e) {
        timeFormat = new Intl.DateTimeFormat("ru-RU", options);
      }
    }
    return timeFormat.format(new Date(ts * 1000));
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  async function loadToday() {
    let res;
    try {  // today, from midnight in the company's time zone (the server knows it)
      res = await fetch("/operator/api/calls", { headers: authHeaders(), credentials: "same-origin" });
    } catch (e) { return; }
    if (!res.ok) return;
    const data = await res.json();
    const body = $("calls").querySelector("tbody");
    body.textContent = "";
    data.items.forEach((call) => {
      const tr = document.createElement("tr");
      tr.dataset.entryId = call.entry_id;
      if (call.missed) tr.className = "missed";
      const arrow = call.direction === "incoming" ? "↙" : call.direction === "outgoing" ? "↗" : "↔";
      const cells = [fmtTime(call.started_at), arrow, call.customer_number || "internal",
        call.missed ? "missed" : call.status + (call.answered_by ? " (" + call.answered_by + ")" : ""),
        fmtDuration(call.talk_seconds)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 1) { td.title = call.direction; td.setAttribute("aria-label", call.direction); }
        if (i === 2 && call.customer_number) {
          td.className = "num";
          td.title = "Call back";
          td.onclick = () => { $("dial-number").value = call.customer_number; $("dial-number").focus(); };
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    $("calls-empty").hidden = data.items.length > 0;
  }

  // ------------------------------------------------------------------ click-to-call

  function dialStatus(text, error) {
    const el = $("dial-status");
    el.textContent = text;
    el.className = "status" + (error ? " error" : "");
  }

  async function dial(ev) {
    ev.preventDefault();
    const number = $("dial-number").value.trim();
    if (!number) return;
    const body = { number: number };
    if (state.identity.role !== "supervisor") body.extension = state.identity.extension;
    $("dial-button").disabled = true;
    dialStatus("Placing the call…");
    try {
      const res = await fetch("/api/calls/originate", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + state.token },
        body: JSON.stringify(body),
      });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) {
        dialStatus(data.error || "HTTP " + res.status, true);
        return;
      }
      $("dial").dataset.commandId = data.command_id;
      dialStatus("Your phone will ring first, then " + (data.number || number) + " (" + data.status + ")");
      pollCommand(data.command_id, 0);
    } catch (e) {
      dialStatus("The server could not be reached", true);
    } finally {
      $("dial-button").disabled = false;
    }
  }

  async function pollCommand(commandId, round) {
    clearTimeout(state.dialPoll);
    if (round > 90 || $("dial").dataset.commandId !== commandId) return;
    let data;
    try {
      const res = await fetch("/api/calls/originate/" + encodeURIComponent(commandId), { headers: { Authorization: "Bearer " + state.token } });
      if (!res.ok) return;
      data = await res.json();
    } catch (e) { return; }
    let text = { sending: "Sending…", accepted: "Mango is ringing your phone", done: "Connected by Mango", failed: "Mango could not place the call" }[data.status] || data.status;
    if (data.status === "failed" && data.reason) text += ": " + data.reason;
    if (data.call) text += " · call " + data.call.status + (data.call.talk_seconds ? " " + fmtDuration(data.call.talk_seconds) : "");
    dialStatus(text, data.status === "failed");
    $("dial-status").dataset.state = data.status;
    if (!(data.call && data.call.closed) && data.status !== "failed") {
      state.dialPoll = setTimeout(() => pollCommand(commandId, round + 1), 1000);
    }
  }

  $("dial-form").addEventListener("submit", dial);
  start();
})();
