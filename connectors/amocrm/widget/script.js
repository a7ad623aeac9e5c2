// callbridge's amoCRM widget: click-to-call through Mango Office and the live call panel
// (docs/connectors/amocrm.md, "The widget"). amoCRM loads this AMD module and calls its callbacks; a click
// on a phone number anywhere reaches the 'phone' action, which asks callbridge (with amoCRM's one-time
// token, via $authorizedAjax) to call it; `render` frames callbridge's live panel page and signs it in
// for the current user (GET /widget/session), so nobody types an access code.
define([], function () {
  'use strict';

  // Set when the widget is packaged (`/connectors/amocrm/widget/package.zip`); the settings may override it.
  var PACKAGED_URL = '__CALLBRIDGE_URL__';
  var NOTE_ID = 'callbridge-widget-note';
  var NOTE_SECONDS = 8;
  var PANEL_ID = 'callbridge-panel';
  var PANEL_MAX_HEIGHT = 480;

  return function () {
    var self = this;

    function base() {
      var settings = (self.get_settings && self.get_settings()) || {};
      var url = String(settings.callbridge_url || PACKAGED_URL).trim();
      return url.replace(/\/+$/, '');
    }

    function say(key, values) {
      var messages = (self.i18n && self.i18n('messages')) || {};
      var text = String(messages[key] || key);
      Object.keys(values || {}).forEach(function (name) {
        text = text.split('{' + name + '}').join(String(values[name]));
      });
      return text;
    }

    function note(text, kind) {
      var box = document.getElementById(NOTE_ID);
      if (!box) {
        box = document.createElement('div');
        box.id = NOTE_ID;
        box.setAttribute('role', 'status');
        box.style.cssText = 'position:fixed;right:16px;bottom:16px;z-index:10000;max-width:360px;' +
          'padding:12px 16px;border-radius:6px;font:14px/1.4 sans-serif;color:#fff;' +
          'box-shadow:0 2px 8px rgba(0,0,0,.3)';
        document.body.appendChild(box);
      }
      box.textContent = text;
      box.setAttribute('data-kind', kind);
      box.style.background = kind === 'error' ? '#c0392b' : '#2d6cdf';
      clearTimeout(box._hide);
      box._hide = setTimeout(function () { box.remove(); }, NOTE_SECONDS * 1000);
    }

    // The panel signs in with a hub token the widget gets for the current amoCRM user (GET /widget/session
    // with amoCRM's one-time token) and posts to callbridge's origin only; on refusal it says why, and the
    // panel falls back to its access-code form.
    function session(frame, to) {
      function give(message) {
        if (frame.contentWindow) frame.contentWindow.postMessage(message, to);
      }
      self.$authorizedAjax({
        url: base() + '/connectors/amocrm/widget/session',
        type: 'GET',
        method: 'GET',
        dataType: 'json'
      }).done(function (answer) {
        give({ type: 'callbridge-session', token: answer.token, extension: answer.extension });
      }).fail(function (xhr) {
        var body = (xhr && xhr.responseJSON) || {};
        give({ type: 'callbridge-session', error: body.error || (xhr && xhr.status ? 'failed' : 'unreachable') });
      });
    }

    // The live call panel: callbridge's own page, framed bottom-right, shown only while it has something.
    function panel() {
      if (document.getElementById(PANEL_ID)) return;
      var lang = ((self.i18n && self.i18n('panel')) || {}).lang === 'en' ? 'en' : 'ru';
      var frame = document.createElement('iframe');
      frame.id = PANEL_ID;
      frame.title = 'callbridge';
      frame.src = base() + '/connectors/amocrm/widget/panel?lang=' + lang;
      frame.style.cssText = 'position:fixed;right:16px;bottom:16px;width:380px;height:0;border:0;' +
        'z-index:9999;background:transparent';
      document.body.appendChild(frame);
      var from = new URL(frame.src, location.href).origin;
      window.addEventListener('message', function (event) {
        var data = event.data || {};
        if (event.origin !== from || event.source !== frame.contentWindow || data.type !== 'callbridge-panel') return;
        if (data.want === 'session') {
          session(frame, from);
          return;
        }
        frame.style.height = data.open ? Math.min(Number(data.height) || 0, PANEL_MAX_HEIGHT) + 'px' : '0';
        frame.setAttribute('data-open', data.open ? 'yes' : 'no');
      });
    }

    function failure(xhr, phone) {
      var body = (xhr && xhr.responseJSON) || {};
      var code = body.error;
      if (!xhr || !xhr.status) return say('unreachable');
      if (code === 'unmapped' || code === 'unauthorized' || code === 'busy') return say(code);
      if (code === 'bad_phone') return say('bad_phone', { phone: phone });
      return say('failed', { message: body.message || ('HTTP ' + xhr.status) });
    }

    function dial(data) {
      var phone = String((data && data.value) || '').trim();
      if (!phone) return;
      self.$authorizedAjax({
        url: base() + '/connectors/amocrm/widget/call',
        type: 'POST', // jQuery's name for it before 1.9; `method` after
        method: 'POST',
        contentType: 'application/json',
        dataType: 'json',
        data: JSON.stringify({ phone: phone })
      }).done(function (answer) {
        note(say('calling', { extension: answer.extension, phone: phone }), 'info');
      }).fail(function (xhr) {
        note(failure(xhr, phone), 'error');
      });
    }

    this.callbacks = {
      init: function () {
        self.add_action('phone', dial);
        return true;
      },
      render: function () {
        panel();
        return true;
      },
      bind_actions: function () { return true; },
      settings: function () { return true; },
      onSave: function () { return true; },
      destroy: function () { return true; },
      contacts: { selected: function () { return true; } },
      leads: { selected: function () { return true; } }
    };
    return this;
  };
});
