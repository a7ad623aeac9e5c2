// The operator page: live popups over the WebSocket hub, today's calls, click-to-call.
// Plain JavaScript, no build step. Messages are documented in docs/realtime.md.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = {
    identity: null,
    token: null,
    wsBase: null,
    ws: null,
    lastId: null,
    seen: new Set(),
    seenOrder: [],
    closedCalls: new Set(),
    popups: new Map(),
    retry: 0,
    lastMessageAt: 0,
    heartbeat: parseFloat(document.body.dataset.heartbeat || "25"),
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
    return res.json();
  }

  function showLogin() {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    setLink(false, "logged out");
  }

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
    applySession(session);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !!state.urlToken;
    $("who").textContent = session.identity.role === "supervisor" ? "Supervisor: all calls" : "Extension " + session.identity.extension;
    setupNotifications();
    loadToday();
    connect();
    setInterval(watchdog, 5000);
  }

  function applySession(session) {
    state.identity = session.identity;
    state.token = session.token;
    state.heartbeat = session.heartbeat_seconds || state.heartbeat;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    state.wsBase = session.ws_url || scheme + "//" + location.hostname + ":" + session.ws_port + "/ws";
  }

  // ------------------------------------------------------------------ WebSocket

  function setLink(online, text) {
    const el = $("link");
    el.className = "link " + (online ? "online" : "offline");
    el.textContent = text || (online ? "live" : "offline");
    document.body.dataset.connected = online ? "yes" : "no";
  }

  function connect() {
    let url = state.wsBase + "?token=" + encodeURIComponent(state.token);
    if (state.lastId !== null) url += "&last_event_id=" + state.lastId;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      scheduleReconnect(false);
      return;
    }
    state.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; state.retry = 0; state.lastMessageAt = Date.now(); };
    ws.onmessage = (ev) => {
      state.lastMessageAt = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      handle(msg);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      setLink(false, "reconnecting…");
      // 4001: the token ran out; a refused handshake looks like 1006 before open. Both need a new token.
      scheduleReconnect(ev.code === 4001 || !opened);
    };
  }

  function scheduleReconnect(renew) {
    const delay = Math.min(15000, 500 * Math.pow(2, state.retry)) * (0.7 + Math.random() * 0.6);
    state.retry += 1;
    setTimeout(async () => {
      if (renew) {
        try {
          const session = await fetchSession();
          if (!session) { showLogin(); return; }
          applySession(session);
        } catch (e) { /* server away: try again later */ }
      }
      connect();
    }, delay);
  }

  function watchdog() {
    // No frame (not even a heartbeat) for too long: the connection is dead even if the browser has not noticed.
    if (state.ws && state.ws.readyState === WebSocket.OPEN && Date.now() - state.lastMessageAt > state.heartbeat * 2500) {
      state.ws.close();
    }
  }

  function remember(key) {
    if (!key) return true;
    if (state.seen.has(key)) return false;
    state.seen.add(key);
    state.seenOrder.push(key);
    if (state.seenOrder.length > 5000) state.seen.delete(state.seenOrder.shift());
    return true;
  }

  function handle(msg) {
    if (msg.type === "hello") {
      setLink(true, "live");
      if (state.lastId === null || msg.gap) state.lastId = msg.last_id;
      if (msg.gap) loadToday();
      return;
    }
    if (msg.type === "heartbeat" || msg.type === "pong") return;
    if (typeof msg.id === "number" && (state.lastId === null || msg.id > state.lastId)) state.lastId = msg.id;
    if (!remember(msg.key)) return; // seen already (a resume on another instance)
    switch (msg.type) {
      case "call.ringing": onRinging(msg); break;
      case "call.card": onCard(msg); break;
      case "call.answered": onAnswered(msg); break;
      case "call.transferred": onTransferred(msg); break;
      case "call.ended": onEnded(msg); break;
      case "call.missed": onEnded(msg); break;
      case "callback.requested": onCallback(msg); break;
      default: break;
    }
  }

  // ------------------------------------------------------------------ popups

  function popupFor(msg, create) {
    let el = state.popups.get(msg.entry_id);
    if (!el && create) {
      el = $("popup-template").content.firstElementChild.cloneNode(true);
      el.dataset.entryId = msg.entry_id;
      el.querySelector(".popup-close").addEventListener("click", () => closePopup(msg.entry_id));
      $("popups").prepend(el);
      state.popups.set(msg.entry_id, el);
    }
    return el;
  }

  function closePopup(entryId) {
    const el = state.popups.get(entryId);
    if (el) { el.remove(); state.popups.delete(entryId); }
  }

  function mine(extension) {
    return state.identity && state.identity.role !== "supervisor" && extension === state.identity.extension;
  }

  function renderCard(el, msg, card) {
    const name = el.querySelector(".popup-name");
    el.querySelector(".popup-number").textContent = msg.number || msg.number_raw || "hidden number";
    if (card && card.found) {
      name.textContent = card.name || card.company || msg.number;
      name.classList.remove("pending");
      el.querySelector(".popup-company").textContent = card.name && card.company ? card.company : "";
      el.querySelector(".popup-responsible").textContent = card.responsible
        ? "Manager: " + (card.responsible.name || "") + (card.responsible.extension ? " (" + card.responsible.extension + ")" : "")
        : "";
      const links = el.querySelector(".popup-links");
      links.textContent = "";
      (card.links || []).forEach((link) => {
        if (!/^https?:\/\//i.test(link.url)) return;
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = link.url; a.target = "_blank"; a.rel = "noopener noreferrer";
        a.textContent = link.title || link.source;
        li.appendChild(a); links.appendChild(li);
      });
      el.querySelector(".popup-deals").textContent = (card.deals || []).length
        ? "Open deals: " + card.deals.map((d) => [d.title, d.amount, d.stage].filter((x) => x !== null && x !== undefined && x !== "").join(" · ")).join("; ")
        : "";
      el.querySelector(".popup-orders").textContent = (card.orders || []).length
        ? "Last orders: " + card.orders.map((o) => [o.number, o.total, o.status].filter((x) => x !== null && x !== undefined && x !== "").join(" · ")).join("; ")
        : "";
    } else if (msg.card_pending || (card && !card.complete)) {
      name.textContent = "Looking up the caller…";
      name.classList.add("pending");
    } else {
      name.textContent = "Unknown caller";
      name.classList.add("pending");
    }
  }

  function onRinging(msg) {
    if (state.closedCalls.has(msg.entry_id)) return; // it was answered or ended before this arrived
    const el = popupFor(msg, true);
    el.className = "popup ringing";
    el.dataset.callId = msg.call_id || "";
    const who = state.identity.role === "supervisor" ? " at " + msg.extension : "";
    el.querySelector(".popup-state").textContent =
      (msg.direction === "outgoing" ? "Your call is being placed" : "Incoming call") + who;
    renderCard(el, msg, msg.card);
    el.dataset.number = msg.number || "";
    notify(msg);
  }

  function onCard(msg) {
    const el = popupFor(msg, false);
    if (el) renderCard(el, { number: el.dataset.number || msg.number, card_pending: !msg.card.complete }, msg.card);
  }

  function onAnswered(msg) {
    if (!mine(msg.extension) && state.identity.role !== "supervisor") {
      // Someone else took it: this employee's ringing popup closes.
      state.closedCalls.add(msg.entry_id);
      closePopup(msg.entry_id);
      return;
    }
    const el = popupFor(msg, false);
    if (el) {
      el.className = "popup answered";
      el.querySelector(".popup-state").textContent = mine(msg.extension) ? "On the phone" : "Answered by " + msg.extension;
    }
  }

  function onTransferred(msg) {
    const el = popupFor(msg, mine(msg.extension));
    if (el) el.querySelector(".popup-state").textContent = "Transferred from " + (msg.transferred_from || "?") + " to " + msg.extension;
  }

  function onEnded(msg) {
    state.closedCalls.add(msg.entry_id);
    const el = popupFor(msg, false);
    if (el) {
      el.className = "popup ended";
      el.querySelector(".popup-state").textContent = msg.type === "call.missed" || msg.missed ? "Missed call" : "Call ended";
      setTimeout(() => closePopup(msg.entry_id), 4000);
    }
    scheduleToday();
  }

  function onCallback(msg) {
    const el = popupFor(msg, true);
    el.className = "popup ringing";
    const site = msg.request && (msg.request.site_name || msg.request.site);
    el.querySelector(".popup-state").textContent = "Callback requested" + (site ? " on " + site : "");
    renderCard(el, msg, msg.card);
    el.dataset.number = msg.number || "";
    notify(msg);
  }

  // ------------------------------------------------------------------ notifications

  function setupNotifications() {
    if (!("Notification" in window)) return;
    const button = $("notify");
    button.hidden = Notification.permission !== "default";
    button.onclick = () => Notification.requestPermission().then(() => { button.hidden = Notification.permission !== "default"; });
  }

  function notify(msg) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const card = msg.card || {};
    const title = msg.type === "callback.requested" ? "Callback requested" : "Incoming call";
    try {
      const n = new Notification(title, { body: [card.name, msg.number].filter(Boolean).join(" · "), tag: msg.entry_id });
      n.onclick = () => { window.focus(); n.close(); };
    } catch (e) { /* some browsers only allow notifications from a service worker */ }
  }

  // ------------------------------------------------------------------ today's calls

  let todayTimer = null;
  function scheduleToday() {
    clearTimeout(todayTimer);
    todayTimer = setTimeout(loadToday, 300);
  }

  function fmtTime(ts) {
    return ts ? new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "";
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  async function loadToday() {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    let res;
    try {
      res = await fetch("/operator/api/calls?since=" + Math.floor(midnight.getTime() / 1000), { headers: authHeaders(), credentials: "same-origin" });
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
    if (data.status === "failed" && (data.async_result || data.sync_result)) text += " (code " + (data.async_result || data.sync_result) + ")";
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
