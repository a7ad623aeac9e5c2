// The widget settings page: the "Copy" button of the embed tag. Without the clipboard API (or when the
// browser refuses it) the tag is selected instead, so that Ctrl+C / Cmd+C copies it.
(function () {
  "use strict";
  var button = document.getElementById("widget-copy");
  if (!button) { return; }
  var box = document.getElementById(button.getAttribute("data-target"));
  var status = document.getElementById("widget-copy-status");

  function say(text) {
    if (status) { status.textContent = text; }
  }

  function selectText() {
    box.focus();
    box.select();
    box.setSelectionRange(0, box.value.length);
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (err) {
      copied = false;
    }
    say(button.getAttribute(copied ? "data-copied" : "data-selected"));
  }

  button.addEventListener("click", function () {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(box.value).then(
        function () { say(button.getAttribute("data-copied")); },
        selectText
      );
    } else {
      selectText();
    }
  });
})();
