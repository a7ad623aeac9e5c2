// History import page: poll each unfinished job's JSON and move its progress bar until it is done.
(function () {
  "use strict";
  var FINISHED = { done: true, failed: true };
  var EVERY_MS = 1500;

  function setText(row, selector, value) {
    var node = row.querySelector(selector);
    if (node) { node.textContent = String(value); }
  }

  function show(row, job) {
    row.setAttribute("data-state", job.state);
    var bar = row.querySelector("progress");
    if (bar) { bar.value = job.percent; bar.textContent = job.percent + "%"; }
    setText(row, ".job-state", job.state_label);
    setText(row, ".job-chunks", job.chunks_done + "/" + job.chunks_total);
    setText(row, ".job-imported", job.calls_imported);
    setText(row, ".job-skipped", job.calls_skipped);
    setText(row, ".job-rows", job.rows_seen);
    var error = row.querySelector(".job-error");
    if (error) {
      error.textContent = job.error || "";
      error.hidden = !job.error;
    }
  }

  function follow(row) {
    var url = row.getAttribute("data-url");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (job) {
          show(row, job);
          if (!FINISHED[job.state]) { window.setTimeout(poll, EVERY_MS); }
        })
        .catch(function () { window.setTimeout(poll, EVERY_MS * 4); });
    }
    poll();
  }

  var rows = document.querySelectorAll("tr.history-job");
  for (var i = 0; i < rows.length; i++) {
    if (!FINISHED[rows[i].getAttribute("data-state")]) { follow(rows[i]); }
  }
})();
