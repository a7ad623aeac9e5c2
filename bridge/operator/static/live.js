// Live call popups over the WebSocket hub: the session, reconnects with resume, de-duplication, and the
// caller card. Used by the operator page and by every page of the admin panel. Plain JavaScript, no build
// step; messages are documented in docs/realtime.md.
//
//   const live = CallbridgeLive.create({
//     fetchSession: async () => session | null,  // {identity, token, ws_url, ws_port, heartbeat_seconds}
//     popups: element,                            // where the popups go
//     labels: {...},                              // optional: translated texts (see LABELS)
//     dial: (number) => void,                     // optional: a "Call" button in the popup's .popup-actions
//     onLink(online, text), onLoggedOut(), onCallsChanged(), onGap()   // optional hooks
//   });
//   live.start(session);
(function () {
  "use strict";

  const LABELS = {
    incoming: "Incoming call",
    outgoing: "Your call is being placed",
    at: " at ",
    hidden: "hidden number",
    manager: "Manager: ",
    deals: "Open deals: ",
    orders: "Last orders",
    looking: "Looking up the caller…",
    unknown: "Unknown caller",
    onPhone: "On the phone",
    answeredBy: "Answered by ",
    transferred: "Transferred from {from} to {to}",
    missed: "Missed call",
    ended: "Call ended",
    callback: "Callback requested",
    on: " on ",
    call: "Call",
    live: "live",
    reconnecting: "reconnecting…",
    close: "Close",
  };

  function create(options) {
    const labels = Object.assign({}, LABELS, options.labels || {});
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
      heartbeat: 25,
      watchdog: null,
    };
    const hook = (name, ...args) => { if (options[name]) options[name](...args); };

    // ---------------------------------------------------------------- session and socket

    function applySession(session) {
      state.identity = session.identity;
      state.token = session.token;
      state.heartbeat = session.heartbeat_seconds || state.heartbeat;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      state.wsBase = session.ws_url || scheme + "//" + location.hostname + ":" + session.ws_port + "/ws";
    }

    function start(session) {
      applySession(session);
      connect();
      if (!state.watchdog) state.watchdog = setInterval(watchdog, 5000);
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
        hook("onLink", false, labels.reconnecting);
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
            const session = await options.fetchSession();
            if (!session) { hook("onLoggedOut"); return; }
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
        hook("onLink", true, labels.live);
        if (state.lastId === null || msg.gap) state.lastId = msg.last_id;
        if (msg.gap) hook("onGap");
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

    // ---------------------------------------------------------------- popups

    function part(tag, className, parent) {
      const el = document.createElement(tag);
      el.className = className;
      if (parent) parent.appendChild(el);
      return el;
    }

    function buildPopup() {
      const el = part("article", "popup");
      const head = part("div", "popup-head", el);
      part("span", "popup-state", head);
      const close = part("button", "popup-close", head);
      close.type = "button";
      close.textContent = "×";
      part("div", "popup-name", el);
      part("div", "popup-company", el);
      const number = part("div", "", el);
      part("span", "popup-number", number);
      part("span", "popup-actions", number);
      part("div", "popup-responsible", el);
      part("ul", "popup-links", el);
      part("div", "popup-deals", el);
      part("div", "popup-orders", el);
      return el;
    }

    function popupFor(msg, create) {
      let el = state.popups.get(msg.entry_id);
      if (!el && create) {
        el = buildPopup();
        el.dataset.entryId = msg.entry_id;
        const close = el.querySelector(".popup-close");
        close.title = labels.close;
        close.addEventListener("click", () => closePopup(msg.entry_id));
        options.popups.prepend(el);
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

    function link(url, text) {
      if (!/^https?:\/\//i.test(url || "")) return document.createTextNode(text);
      const a = document.createElement("a");
      a.href = url; a.target = "_blank"; a.rel = "noopener noreferrer";
      a.textContent = text;
      return a;
    }

    function joined(parts) {
      return parts.filter((x) => x !== null && x !== undefined && x !== "").join(" · ");
    }

    function renderNumber(el, number) {
      el.querySelector(".popup-number").textContent = number || labels.hidden;
      const actions = el.querySelector(".popup-actions");
      if (!options.dial || !actions || !number || actions.dataset.number === number) return;
      actions.dataset.number = number;
      actions.textContent = "";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "popup-call";
      button.textContent = labels.call;
      button.addEventListener("click", () => options.dial(number));
      actions.appendChild(button);
    }

    function renderOrders(el, orders) {
      const box = el.querySelector(".popup-orders");
      box.textContent = "";
      if (!orders.length) return;
      const title = document.createElement("div");
      title.className = "popup-orders-title";
      title.textContent = labels.orders;
      const list = document.createElement("ul");
      orders.forEach((o) => {
        const li = document.createElement("li");
        const day = o.date ? new Date(o.date) : null;
        li.appendChild(link(o.url, "№ " + (o.number || "?")));
        li.append(" " + joined([
          day && !isNaN(day) ? day.toLocaleDateString() : o.date,
          o.total !== null && o.total !== undefined && o.total !== "" ? [o.total, o.currency].filter(Boolean).join(" ") : "",
          o.status,
        ]));
        list.appendChild(li);
      });
      box.append(title, list);
    }

    function renderCard(el, msg, card) {
      const name = el.querySelector(".popup-name");
      renderNumber(el, msg.number || msg.number_raw);
      if (card && card.found) {
        name.textContent = card.name || card.company || msg.number;
        name.classList.remove("pending");
        el.querySelector(".popup-company").textContent = card.name && card.company ? card.company : "";
        el.querySelector(".popup-responsible").textContent = card.responsible
          ? labels.manager + (card.responsible.name || "") + (card.responsible.extension ? " (" + card.responsible.extension + ")" : "")
          : "";
        const links = el.querySelector(".popup-links");
        links.textContent = "";
        (card.links || []).forEach((item) => {
          if (!/^https?:\/\//i.test(item.url)) return;
          const li = document.createElement("li");
          li.appendChild(link(item.url, item.title || item.source));
          links.appendChild(li);
        });
        el.querySelector(".popup-deals").textContent = (card.deals || []).length
          ? labels.deals + card.deals.map((d) => joined([d.title, d.amount, d.stage])).join("; ")
          : "";
        renderOrders(el, card.orders || []);
      } else if (msg.card_pending || (card && !card.complete)) {
        name.textContent = labels.looking;
        name.classList.add("pending");
      } else {
        name.textContent = labels.unknown;
        name.classList.add("pending");
      }
    }

    function onRinging(msg) {
      if (state.closedCalls.has(msg.entry_id)) return; // it was answered or ended before this arrived
      const el = popupFor(msg, true);
      el.className = "popup ringing";
      el.dataset.callId = msg.call_id || "";
      const who = state.identity.role === "supervisor" ? labels.at + msg.extension : "";
      el.querySelector(".popup-state").textContent = (msg.direction === "outgoing" ? labels.outgoing : labels.incoming) + who
        + (msg.routing ? " · " + msg.routing : "");
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
        el.querySelector(".popup-state").textContent = mine(msg.extension) ? labels.onPhone : labels.answeredBy + msg.extension;
      }
    }

    function onTransferred(msg) {
      const el = popupFor(msg, mine(msg.extension));
      if (el) {
        el.querySelector(".popup-state").textContent = labels.transferred
          .replace("{from}", msg.transferred_from || "?").replace("{to}", msg.extension);
      }
    }

    function onEnded(msg) {
      state.closedCalls.add(msg.entry_id);
      const el = popupFor(msg, false);
      if (el) {
        el.className = "popup ended";
        el.querySelector(".popup-state").textContent = msg.type === "call.missed" || msg.missed ? labels.missed : labels.ended;
        setTimeout(() => closePopup(msg.entry_id), 4000);
      }
      hook("onCallsChanged");
    }

    function onCallback(msg) {
      const el = popupFor(msg, true);
      el.className = "popup ringing";
      const site = msg.request && (msg.request.site_name || msg.request.site);
      el.querySelector(".popup-state").textContent = labels.callback + (site ? labels.on + site : "");
      renderCard(el, msg, msg.card);
      el.dataset.number = msg.number || "";
      notify(msg);
    }

    // ---------------------------------------------------------------- desktop notifications

    function setupNotifications(button) {
      if (!("Notification" in window) || !button) return;
      button.hidden = Notification.permission !== "default";
      button.onclick = () => Notification.requestPermission().then(() => { button.hidden = Notification.permission !== "default"; });
    }

    function notify(msg) {
      if (!("Notification" in window) || Notification.permission !== "granted") return;
      const card = msg.card || {};
      const title = msg.type === "callback.requested" ? labels.callback : labels.incoming;
      try {
        const n = new Notification(title, { body: [card.name, msg.number].filter(Boolean).join(" · "), tag: msg.entry_id });
        n.onclick = () => { window.focus(); n.close(); };
      } catch (e) { /* some browsers only allow notifications from a service worker */ }
    }

    return {
      start: start,
      setupNotifications: setupNotifications,
      get identity() { return state.identity; },
      get token() { return state.token; },
    };
  }

  window.CallbridgeLive = { create: create, LABELS: LABELS };
})();
