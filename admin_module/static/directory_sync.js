// "Sync now" on the Employees page: starts the directory sync without leaving the page, shows that it
// runs, and reloads the page with the new counts when it has finished. Without JavaScript the form posts.
(function () {
  "use strict";
  var form = document.getElementById("directory-sync");
  if (!form || !window.fetch) return;
  var button = document.getElementById("sync-ldap");
  var progress = document.getElementById("sync-ldap-progress");
  var busyText = button.textContent;

  function poll() {
    fetch(form.dataset.status, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (status) {
        if (status.running) {
          progress.textContent = "…";
          window.setTimeout(poll, 1000);
        } else {
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).then(function () { progress.textContent = busyText; poll(); })
      .catch(function () { button.disabled = false; });
  });
  if (button.disabled) poll();
})();
