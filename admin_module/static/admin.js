// The panel works without JavaScript; this only adds small conveniences.
(function () {
  "use strict";
  var preset = document.getElementById("mango-preset");
  if (preset) {
    preset.addEventListener("click", function () {
      var box = document.getElementById("allowed_ips");
      var list = document.getElementById("ip_list");
      var have = box.value.split(/\s+/).filter(Boolean);
      preset.getAttribute("data-ips").split("\n").forEach(function (ip) {
        if (have.indexOf(ip) < 0) { have.push(ip); }
      });
      box.value = have.join("\n");
      if (list) { list.checked = true; }
    });
  }
})();
