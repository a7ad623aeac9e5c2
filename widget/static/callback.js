/*!
 * callbridge "we'll call you back" widget. A classic script, no build step:
 *
 *   <script src="https://HOST/widget/callback.js" data-site="SITE_KEY" async></script>
 *
 * Optional attributes override the site's settings: data-lang (ru|en|auto), data-mode (compact|full),
 * data-position (bottom-right|bottom-left|top-right|top-left), data-accent (#hex), data-countdown (seconds).
 * It draws inside a Shadow DOM, so the page's CSS cannot reach it.
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector('script[src*="/widget/callback.js"][data-site]');
  if (!script) return;
  var SITE = script.getAttribute("data-site");
  if (!SITE) { warn("data-site is missing on the widget's script tag"); return; }
  var registry = window.__callbridgeWidgets = window.__callbridgeWidgets || {};
  if (registry[SITE]) return;
  registry[SITE] = true;

  var BASE = script.src.replace(/\/callback\.js(?:[?#].*)?$/, "");
  var UTM_KEYS = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];
  var MODE_COOKIE = "cbw_mode_" + SITE.replace(/[^A-Za-z0-9_-]/g, "");
  var attr = function (name) { var v = script.getAttribute("data-" + name); return v === null ? null : v; };

  function warn(text) { if (window.console) window.console.warn("callbridge widget: " + text); }

  // ------------------------------------------------------------------------------------ storage

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value, days) {
    var expires = new Date(Date.now() + days * 864e5).toUTCString();
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = name + "=" + encodeURIComponent(value) + "; expires=" + expires + "; path=/; SameSite=Lax" + secure;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function visitorId() {
    var id = null;
    try { id = window.localStorage.getItem("cbw_vid"); } catch (e) { /* storage blocked */ }
    id = id || readCookie("cbw_vid");
    if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
      id = randomId();
      try { window.localStorage.setItem("cbw_vid", id); } catch (e) { /* storage blocked */ }
      writeCookie("cbw_vid", id, 365);
    }
    return id;
  }

  function utmTags() {
    var found = {}, any = false;
    var params = new URLSearchParams(location.search);
    UTM_KEYS.forEach(function (key) {
      var value = params.get(key);
      if (value) { found[key] = value.slice(0, 200); any = true; }
    });
    try {
      if (any) window.sessionStorage.setItem("cbw_utm", JSON.stringify(found));
      else found = JSON.parse(window.sessionStorage.getItem("cbw_utm") || "{}");
    } catch (e) { /* storage blocked: keep this page's tags */ }
    return found;
  }

  // -------------------------------------------------------------------------------------- phone

  function phoneDigits(value, region) {
    var digits = String(value).replace(/\D/g, "");
    if (region === "RU" || region === "KZ") {
      if (digits.length === 11 && digits.charAt(0) === "8") digits = "7" + digits.slice(1);
      else if (digits.charAt(0) === "8" && digits.length < 11) digits = "7" + digits.slice(1);
      else if (digits.length && digits.charAt(0) === "9") digits = "7" + digits;
      return digits.slice(0, 11);
    }
    return digits.slice(0, 15);
  }

  function formatPhone(value, region) {
    var d = phoneDigits(value, region);
    if (!d) return "";
    if (region === "RU" || region === "KZ") {
      var out = "+7";
      var rest = d.slice(1);
      if (rest.length) out += " (" + rest.slice(0, 3);
      if (rest.length >= 3) out += ")";
      if (rest.length > 3) out += " " + rest.slice(3, 6);
      if (rest.length > 6) out += "-" + rest.slice(6, 8);
      if (rest.length > 8) out += "-" + rest.slice(8, 10);
      return out;
    }
    var plus = /^\s*\+/.test(value) ? "+" : "";
    return plus + d.replace(/(\d{3})(?=\d)/g, "$1 ");
  }

  function phoneValid(value, region) {
    var d = phoneDigits(value, region);
    if (region === "RU" || region === "KZ") return d.length === 11 && d.charAt(0) === "7";
    return d.length >= 8 && d.length <= 15;
  }

  function phoneForServer(value, region) {
    var d = phoneDigits(value, region);
    if (region === "RU" || region === "KZ" || /^\s*\+/.test(value)) return "+" + d;
    return String(value).trim();
  }

  // --------------------------------------------------------------------------------------- text

  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (m, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : m;
    });
  }

  function when(iso, lang, zone) {
    if (!iso) return "";
    var at = new Date(iso);
    var day = function (d) {
      return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
    };
    var time = new Intl.DateTimeFormat(lang === "ru" ? "ru-RU" : "en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit" }).format(at);
    var today = day(new Date()), tomorrow = day(new Date(Date.now() + 864e5)), target = day(at);
    if (target === today) return (lang === "ru" ? "сегодня в " : "today at ") + time;
    if (target === tomorrow) return (lang === "ru" ? "завтра в " : "tomorrow at ") + time;
    var date = new Intl.DateTimeFormat(lang === "ru" ? "ru-RU" : "en-GB", { timeZone: zone, day: "numeric", month: "long" }).format(at);
    return lang === "ru" ? date + " в " + time : "on " + date + " at " + time;
  }

  // ---------------------------------------------------------------------------------------- css

  var CSS = [
    ":host{all:initial!important;display:block!important;}",
    ".cbw{position:fixed;z-index:2147483000;font:15px/1.4 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Arial,sans-serif;color:var(--cbw-text);}",
    ".cbw *{box-sizing:border-box;}",
    ".cbw--bottom-right{right:20px;bottom:20px;} .cbw--bottom-left{left:20px;bottom:20px;}",
    ".cbw--top-right{right:20px;top:20px;} .cbw--top-left{left:20px;top:20px;}",
    ".cbw-launcher{display:flex;align-items:center;gap:10px;border:0;border-radius:28px;padding:0 20px 0 14px;height:56px;max-width:calc(100vw - 40px);",
    "background:var(--cbw-accent);color:var(--cbw-accent-text);font-family:inherit;font-size:15px;font-weight:600;line-height:1.2;cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.25);}",
    ".cbw-launcher:hover{filter:brightness(1.08);} .cbw-launcher svg{flex:none;width:28px;height:28px;}",
    ".cbw-launcher:focus-visible,.cbw button:focus-visible,.cbw input:focus-visible{outline:3px solid var(--cbw-focus);outline-offset:2px;}",
    ".cbw-panel{width:340px;max-width:calc(100vw - 24px);background:var(--cbw-bg);color:var(--cbw-text);border-radius:16px;padding:22px 20px 18px;",
    "box-shadow:0 12px 40px rgba(0,0,0,.28);position:relative;}",
    ".cbw[data-mode=compact] .cbw-panel{display:none;} .cbw[data-mode=full] .cbw-launcher{display:none;}",
    ".cbw-close{position:absolute;top:8px;right:8px;width:36px;height:36px;border:0;border-radius:50%;background:transparent;color:inherit;font-size:24px;line-height:1;cursor:pointer;}",
    ".cbw-close:hover{background:rgba(0,0,0,.06);}",
    ".cbw-title{margin:0 32px 6px 0;font-size:19px;font-weight:700;line-height:1.25;}",
    ".cbw-sub{margin:0 0 14px;font-size:14px;opacity:.8;}",
    ".cbw-label{display:block;font-size:13px;font-weight:600;margin:0 0 6px;}",
    ".cbw-input{display:block;width:100%;height:48px;border:1px solid #b9bec7;border-radius:10px;padding:0 14px;font-family:inherit;font-size:17px;color:#1d1d1f;background:#fff;}",
    ".cbw-input[aria-invalid=true]{border-color:#c62828;}",
    ".cbw-error{margin:6px 0 0;color:#c62828;font-size:13px;} .cbw-error[hidden]{display:none;}",
    ".cbw-submit,.cbw-again{display:block;width:100%;height:48px;margin-top:12px;border:0;border-radius:10px;background:var(--cbw-accent);color:var(--cbw-accent-text);",
    "font-family:inherit;font-size:16px;font-weight:600;cursor:pointer;} .cbw-submit[disabled]{opacity:.6;cursor:progress;}",
    ".cbw-privacy{margin:10px 0 0;font-size:11px;opacity:.65;}",
    ".cbw-hp{position:absolute!important;left:-10000px!important;top:auto!important;width:1px!important;height:1px!important;overflow:hidden!important;}",
    ".cbw-result[hidden],.cbw-form[hidden],.cbw-again[hidden],.cbw-countdown[hidden]{display:none;}",
    ".cbw-headline{margin:0 0 10px;font-size:15px;}",
    ".cbw-countdown{display:flex;align-items:baseline;justify-content:center;gap:6px;margin:6px 0 10px;font-variant-numeric:tabular-nums;}",
    ".cbw-count{font-size:48px;font-weight:700;color:var(--cbw-accent);} .cbw-unit{font-size:15px;opacity:.7;}",
    ".cbw-status{margin:0;min-height:1.4em;font-weight:600;text-align:center;}",
    "@media (max-width:480px){.cbw--bottom-right,.cbw--bottom-left{left:12px;right:12px;bottom:12px;}",
    ".cbw--top-right,.cbw--top-left{left:12px;right:12px;top:12px;} .cbw-panel{width:100%;max-width:none;}",
    ".cbw-launcher{margin-left:auto;} .cbw--bottom-left .cbw-launcher,.cbw--top-left .cbw-launcher{margin-left:0;}}",
    "@media (prefers-reduced-motion:no-preference){.cbw-panel{animation:cbw-in .18s ease-out;}}",
    "@keyframes cbw-in{from{opacity:0;transform:translateY(8px);}to{opacity:1;transform:none;}}"
  ].join("\n");

  var PHONE_ICON = '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2c.3-.3.7-.4 1-.2 1.1.4 2.3.6 3.6.6.6 0 1 .4 1 1V20c0 .6-.4 1-1 1A17 17 0 0 1 3 4c0-.6.4-1 1-1h3.5c.6 0 1 .4 1 1 0 1.3.2 2.5.6 3.6.1.3 0 .7-.2 1z"/></svg>';

  // --------------------------------------------------------------------------------------- main

  function start() {
    var config = null, configAt = 0, lang = "ru", region = "RU";
    var host = document.createElement("callbridge-widget");
    host.setAttribute("data-site", SITE);
    var root = host.attachShadow({ mode: "open" });
    document.body.appendChild(host);

    function getConfig() {
      var url = BASE + "/config?site=" + encodeURIComponent(SITE) + "&lang=" + encodeURIComponent(navigator.language || "");
      return fetch(url, { mode: "cors", credentials: "omit" }).then(function (r) {
        if (!r.ok) throw new Error("config answered " + r.status);
        return r.json();
      }).then(function (c) { config = c; configAt = Date.now(); return c; });
    }

    getConfig().then(render, function (e) { warn("not shown: " + e.message + " (is this page's origin registered for the site?)"); });

    function render() {
      var wanted = attr("lang") || config.language;
      var pageLang = (document.documentElement.getAttribute("lang") || navigator.language || "ru").slice(0, 2).toLowerCase();
      lang = wanted && wanted !== "auto" ? wanted : pageLang;
      if (!config.texts[lang]) lang = "ru";
      region = config.region || "RU";
      var countdown = parseInt(attr("countdown"), 10) || config.countdown || 30;
      var t = config.texts[lang];
      var T = function (key, extra) { return fill(t[key] || "", Object.assign({ seconds: countdown }, extra || {})); };
      var colours = config.colours || {};
      var position = attr("position") || config.position || "bottom-right";
      var mode = readCookie(MODE_COOKIE) || attr("mode") || config.mode || "compact";
      if (mode !== "full") mode = "compact";

      var style = document.createElement("style");
      style.textContent = CSS;
      var box = document.createElement("div");
      box.className = "cbw cbw--" + position;
      box.setAttribute("data-mode", mode);
      box.setAttribute("lang", lang);
      box.style.setProperty("--cbw-accent", attr("accent") || colours.accent || "#1f7a4d");
      box.style.setProperty("--cbw-accent-text", colours.accent_text || "#fff");
      box.style.setProperty("--cbw-bg", colours.background || "#fff");
      box.style.setProperty("--cbw-text", colours.text || "#1d1d1f");
      box.style.setProperty("--cbw-focus", attr("accent") || colours.accent || "#1f7a4d");
      box.innerHTML =
        '<button type="button" class="cbw-launcher" aria-expanded="false" aria-controls="cbw-panel">' + PHONE_ICON +
        '<span class="cbw-launcher-text"></span></button>' +
        '<section class="cbw-panel" id="cbw-panel" role="dialog" aria-labelledby="cbw-title">' +
        '<button type="button" class="cbw-close"><span aria-hidden="true">&times;</span></button>' +
        '<h2 class="cbw-title" id="cbw-title"></h2>' +
        '<form class="cbw-form" novalidate>' +
        '<p class="cbw-sub"></p>' +
        '<label class="cbw-label" for="cbw-phone"></label>' +
        '<input class="cbw-input" id="cbw-phone" name="phone" type="tel" inputmode="tel" autocomplete="tel" aria-describedby="cbw-error" required>' +
        '<div class="cbw-hp" aria-hidden="true"><label>Website <input type="text" name="website" tabindex="-1" autocomplete="off"></label></div>' +
        '<p class="cbw-error" id="cbw-error" role="alert" hidden></p>' +
        '<button type="submit" class="cbw-submit"></button>' +
        '<p class="cbw-privacy"></p>' +
        '</form>' +
        '<div class="cbw-result" hidden>' +
        '<p class="cbw-headline" role="status" aria-live="polite"></p>' +
        '<div class="cbw-countdown" aria-hidden="true"><span class="cbw-count"></span><span class="cbw-unit"></span></div>' +
        '<p class="cbw-status" role="status" aria-live="polite"></p>' +
        '<button type="button" class="cbw-again" hidden></button>' +
        '</div></section>';
      root.appendChild(style);
      root.appendChild(box);

      var $ = function (sel) { return box.querySelector(sel); };
      var launcher = $(".cbw-launcher"), panel = $(".cbw-panel"), close = $(".cbw-close");
      var form = $(".cbw-form"), input = $("#cbw-phone"), honeypot = form.querySelector('[name="website"]');
      var errorBox = $(".cbw-error"), submit = $(".cbw-submit"), result = $(".cbw-result");
      var headline = $(".cbw-headline"), countBox = $(".cbw-countdown"), count = $(".cbw-count");
      var statusBox = $(".cbw-status"), again = $(".cbw-again");

      $(".cbw-launcher-text").textContent = T("button");
      // The launcher's accessible name is its visible text (WCAG 2.5.3); aria-expanded says it opens a panel.
      close.setAttribute("aria-label", T("collapse"));
      close.setAttribute("title", T("collapse"));
      $(".cbw-title").textContent = T("title");
      $(".cbw-sub").textContent = T("subtitle");
      $(".cbw-label").textContent = T("phone_label");
      input.setAttribute("placeholder", region === "RU" || region === "KZ" ? "+7 (___) ___-__-__" : T("phone_placeholder"));
      submit.textContent = T("submit");
      $(".cbw-privacy").textContent = T("privacy");
      $(".cbw-unit").textContent = T("countdown_unit");
      again.textContent = T("again");

      function setMode(next, focus) {
        box.setAttribute("data-mode", next);
        launcher.setAttribute("aria-expanded", next === "full" ? "true" : "false");
        writeCookie(MODE_COOKIE, next, 180);
        if (!focus) return;
        if (next === "full") (result.hidden ? input : statusBox.parentNode.querySelector(".cbw-again:not([hidden])") || close).focus();
        else launcher.focus();
      }
      setMode(mode, false);
      launcher.addEventListener("click", function () { setMode("full", true); });
      close.addEventListener("click", function () { setMode("compact", true); });
      box.addEventListener("keydown", function (e) {
        if ((e.key === "Escape" || e.key === "Esc") && box.getAttribute("data-mode") === "full") {
          e.preventDefault();
          setMode("compact", true);
        }
      });

      function showError(text) {
        errorBox.textContent = text || "";
        errorBox.hidden = !text;
        input.setAttribute("aria-invalid", text ? "true" : "false");
      }

      input.addEventListener("input", function (e) {
        if (e.inputType && e.inputType.indexOf("delete") === 0) return; // let the visitor delete freely
        input.value = formatPhone(input.value, region);
        if (errorBox.textContent) showError("");
      });
      input.addEventListener("blur", function () {
        if (input.value) input.value = formatPhone(input.value, region);
      });

      var timer = null, pollTimer = null, current = null;

      function stopTimers() {
        if (timer) { clearInterval(timer); timer = null; }
        if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
      }

      function startCountdown(seconds) {
        var left = seconds;
        countBox.hidden = false;
        count.textContent = String(left);
        timer = setInterval(function () {
          left = Math.max(0, left - 1);
          count.textContent = String(left);
          if (left === 0) { clearInterval(timer); timer = null; }
        }, 1000);
      }

      function showState(state) {
        current = state;
        var zone = state.timezone || config.timezone;
        var next = when(state.next_attempt_at, lang, zone);
        var key = {
          scheduled: null,
          calling_managers: "state_calling_managers",
          connecting: "state_connecting",
          connected: "state_connected",
          retry: "state_retry",
          failed: "state_failed"
        }[state.state];
        if (state.state === "scheduled") {
          headline.textContent = T("after_closed", { when: next });
          statusBox.textContent = "";
          countBox.hidden = true;
        } else if (key) {
          statusBox.textContent = T(key, { when: next });
        }
        box.setAttribute("data-state", state.state);
        if (state.state === "connected" || state.state === "failed" || state.state === "retry") {
          if (timer) { clearInterval(timer); timer = null; }
          countBox.hidden = true;  // the countdown has done its job (connected) or no longer applies
        }
        again.hidden = state.state !== "failed";
      }

      function poll(token) {
        var delay = current && (current.state === "scheduled" || current.state === "retry") ? 15000 : (config.poll_ms || 1000);
        pollTimer = setTimeout(function () {
          fetch(BASE + "/status/" + encodeURIComponent(token), { mode: "cors", credentials: "omit" })
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (state) {
              if (state) showState(state);
              if (!state || !state.final) poll(token);
            }, function () { poll(token); });
        }, delay);
      }

      function send() {
        var fresh = Date.now() - configAt < 30 * 60 * 1000 ? Promise.resolve(config) : getConfig();
        return fresh.then(function () {
          var wait = (config.min_fill_seconds || 0) * 1000 - (Date.now() - configAt) + 50;
          return new Promise(function (resolve) { setTimeout(resolve, Math.max(0, wait)); });
        }).then(function () {
          var body = {
            site: SITE,
            phone: phoneForServer(input.value, region),
            form_token: config.form_token,
            visitor_id: visitorId(),
            website: honeypot.value,
            page: location.href,
            referrer: document.referrer || null,
            lang: lang,
            utm: utmTags()
          };
          return fetch(BASE + "/callback?site=" + encodeURIComponent(SITE), {
            method: "POST",
            mode: "cors",
            credentials: "omit",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify(body)
          });
        }).then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (data) { return { ok: r.ok, data: data }; });
        });
      }

      form.addEventListener("submit", function (e) {
        e.preventDefault();
        if (!phoneValid(input.value, region)) { showError(T("error_phone")); input.focus(); return; }
        showError("");
        submit.disabled = true;
        send().then(function (answer) {
          submit.disabled = false;
          if (!answer.ok) {
            var code = answer.data && answer.data.code;
            if (code === "token_used" || code === "expired") configAt = 0; // a fresh form token next time
            showError((answer.data && answer.data.message) || T(code === "invalid_phone" ? "error_phone" : "error_generic"));
            input.focus();
            return;
          }
          var state = answer.data;
          configAt = 0; // a form token serves one request: the next one fetches a fresh token
          form.hidden = true;
          result.hidden = false;
          stopTimers();
          if (state.state === "scheduled") {
            showState(state);
          } else {
            headline.textContent = T("after_open");
            startCountdown(countdown);
            showState(state);
          }
          statusBox.setAttribute("tabindex", "-1");
          statusBox.focus();
          if (!state.final) poll(state.token);
        }, function () {
          submit.disabled = false;
          showError(T("error_generic"));
        });
      });

      again.addEventListener("click", function () {
        stopTimers();
        current = null;
        result.hidden = true;
        form.hidden = false;
        countBox.hidden = false;
        box.removeAttribute("data-state");
        getConfig().then(function () { input.focus(); });
      });
    }
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
