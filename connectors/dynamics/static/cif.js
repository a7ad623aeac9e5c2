// The callbridge channel for Dynamics 365 (Channel Integration Framework): popups and click-to-call.
// Signs in with an operator access code, listens to the hub, opens the caller's record while the phone
// rings, and places calls the user clicks in Dynamics through POST /api/calls/originate.
(() => {
  "use strict";
  const KEY = "callbridge.dynamics.token";
  const config = JSON.parse(document.getElementById("cif-config").textContent);
  const statusBox = document.getElementById("status");
  const form = document.getElementById("login");
  const logout = document.getElementById("logout");
  const list = document.getElementById("calls");
  const opened = new Set();
  let session = null;
  let socket = null;
  let cifReady = false;

  const say = (text, state) => { statusBox.textContent = text; statusBox.dataset.state = state || ""; };
  const cif = () => (window.Microsoft && window.Microsoft.CIFramework) || null;

  function note(text) {
    const item = document.createElement("li");
    item.textContent = text;
    list.prepend(item);
    while (list.children.length > 20) list.lastChild.remove();
  }

  async function fetchSession(token) {
    const answer = await fetch("/operator/api/session", { headers: { Authorization: "Bearer " + token } });
    if (answer.status === 401) return null;
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    return answer.json();
  }

  function showLogin(reason) {
    form.hidden = false;
    logout.hidden = true;
    say(reason || "Sign in with your access code.", reason ? "error" : "");
  }

  async function signIn(token) {
    try {
      session = await fetchSession(token);
    } catch (err) {
      say("callbridge is unreachable (" + err.message + "); retrying…", "error");
      setTimeout(() => signIn(token), 5000);
      return;
    }
    if (!session) {
      localStorage.removeItem(KEY);
      showLogin("The access code was refused or has expired.");
      return;
    }
    localStorage.setItem(KEY, token);
    form.hidden = true;
    logout.hidden = false;
    connect(token);
  }

  function connect(token) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const base = session.ws_url || scheme + "//" + location.hostname + ":" + session.ws_port + "/ws";
    socket = new WebSocket(base + "?token=" + encodeURIComponent(session.token));
    socket.onopen = () => {
      const who = session.identity.extension ? "extension " + session.identity.extension : "supervisor";
      say("Connected as " + who + (cifReady ? "" : " (waiting for Dynamics)"), "ok");
    };
    socket.onmessage = (e) => {
      let message;
      try { message = JSON.parse(e.data); } catch (_) { return; }
      if (message.type === "call.ringing" || message.type === "call.card") ringing(message);
    };
    socket.onclose = () => {
      socket = null;
      if (!localStorage.getItem(KEY)) return;
      say("Disconnected; reconnecting…", "error");
      setTimeout(() => signIn(localStorage.getItem(KEY)), 2000);
    };
  }

  function contactOf(message) {
    const card = message.card;
    const own = card && card.details && card.details.dynamics;
    return own && own.contactid ? String(own.contactid) : null;
  }

  // The query searchAndOpenRecords runs: the contact callbridge found, else the number's last digits.
  function query(message, contact) {
    if (contact) return "?$select=fullname&$filter=contactid eq " + contact;
    const digits = String(message.number || message.number_raw || "").replace(/\D/g, "");
    const tail = digits.slice(-4);
    const forms = [tail, tail.slice(0, 2) + "-" + tail.slice(2), tail.slice(0, 2) + " " + tail.slice(2)];
    const terms = [];
    for (const column of ["telephone1", "mobilephone"]) for (const f of forms) terms.push("contains(" + column + ",'" + f + "')");
    return "?$select=fullname&$filter=" + terms.join(" or ");
  }

  function ringing(message) {
    if (message.direction !== "incoming" || opened.has(message.entry_id)) return;
    const contact = contactOf(message);
    const pending = message.type === "call.ringing" && message.card_pending && !contact;
    if (pending) return; // the complete card follows as call.card
    opened.add(message.entry_id);
    const number = message.number || message.number_raw || "unknown number";
    note("Ringing: " + number + (message.card && message.card.name ? " (" + message.card.name + ")" : ""));
    const lib = cif();
    if (!lib || !cifReady) return;
    lib.searchAndOpenRecords("contact", query(message, contact), false).catch((err) => {
      note("Dynamics could not open the record: " + (err && err.message ? err.message : err));
    });
  }

  async function clickToAct(data) {
    const event = typeof data === "string" ? JSON.parse(data) : data;
    if (event.format && event.format !== "phone") return; // an e-mail address or a link: not ours
    if (!session) { say("Sign in to place calls.", "error"); return; }
    const answer = await fetch("/api/calls/originate", {
      method: "POST",
      headers: { Authorization: "Bearer " + session.token, "Content-Type": "application/json" },
      body: JSON.stringify({ extension: session.identity.extension, number: String(event.value || "") }),
    });
    const body = await answer.json().catch(() => ({}));
    if (answer.ok) note("Calling " + event.value + ": pick up your phone.");
    else note("The call was not placed: " + (body.error || "HTTP " + answer.status));
  }

  function startCif() {
    const lib = cif();
    if (!lib || cifReady) return;
    cifReady = true;
    lib.setClickToAct(true);
    lib.addHandler("onclicktoact", (data) => clickToAct(data).catch((err) => note(String(err))));
    if (session && socket) say(statusBox.textContent.replace(" (waiting for Dynamics)", ""), "ok");
  }

  window.addEventListener("CIFInitDone", startCif);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = document.getElementById("token").value.trim();
    if (token) signIn(token);
  });
  logout.addEventListener("click", () => {
    localStorage.removeItem(KEY);
    if (socket) socket.close();
    session = null;
    showLogin();
  });
  window.callbridgeChannel = { get session() { return session; }, config };
  const stored = localStorage.getItem(KEY);
  if (stored) signIn(stored); else showLogin();
})();
