// The runs page: each evaluation's accepted rate and cost per accepted task, from its metrics (the figures --json
// gives, computed once per state of the run), filled in after the page is shown so the list never waits for them.
(function () {
  function pct(v) { return (100 * v).toFixed(1) + "%"; }
  document.querySelectorAll("td.accepted[data-metrics]").forEach(function (cell) {
    fetch(cell.dataset.metrics, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
      var m = d.metrics.overall, rate = m.accepted_rate, cost = m.cost_per_accepted_usd;
      cell.textContent = rate.value === null ? "– (n=" + rate.n + ")"
        : pct(rate.value) + " [" + pct(rate.ci95[0]) + ", " + pct(rate.ci95[1]) + "] (n=" + rate.n + ")";
      var per = cell.parentNode.querySelector("td.per-accepted");
      per.textContent = typeof cost.value === "number" ? "$" + cost.value.toFixed(6)
        : cost.value === "unknown" ? "unknown price" : "–";
    }).catch(function () { cell.textContent = "?"; });
  });
})();
// A running run's page follows it: every two seconds, ask how far it is; when its samples move, fetch the page again
// and swap in the parts that changed (no reload, no framework). Stops once the run has ended.
(function () {
  var status = document.getElementById("run-status");
  if (!status || status.dataset.live !== "yes") return;
  var last = null;
  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    ["run-status", "samples"].forEach(function (id) {
      var fresh = doc.getElementById(id), here = document.getElementById(id);
      if (fresh && here) here.replaceWith(fresh);
    });
    var tables = document.querySelectorAll("table.metrics"), freshTables = doc.querySelectorAll("table.metrics");
    if (tables.length && freshTables.length) tables[0].replaceWith(freshTables[0]);
    else if (!tables.length && freshTables.length) location.reload();
  }
  function poll() {
    fetch("/runs/" + status.dataset.run + "/progress.json", {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (p) {
        var now = JSON.stringify(p);
        var ended = p.status !== "running";
        if (now !== last) {
          last = now;
          return fetch(location.href, {credentials: "same-origin"}).then(function (r) { return r.text(); })
            .then(function (html) { swap(html); if (!ended) setTimeout(poll, 2000); });
        }
        if (!ended) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
