// The status page's script: refreshes hosts, approvals and jobs from /status/fragment every
// two seconds, and follows each unfinished job's log over Server-Sent Events
// (/status/jobs/{id}/log). Log lines are added as text nodes, never as markup.
(function () {
  "use strict";
  var REFRESH_MS = 2000;
  // A browser opens about six connections per server: streams leave room for the refresh.
  var MAX_STREAMS = 3;
  var streams = {};
  var open = 0;

  function follow(pane) {
    var id = pane.getAttribute("data-job");
    if (!id || streams[id] || pane.getAttribute("data-live") !== "true" || open >= MAX_STREAMS) return;
    var after = pane.getAttribute("data-log-after") || "0";
    var pre = pane.querySelector("pre.log");
    var es = new EventSource("/status/jobs/" + encodeURIComponent(id) + "/log?after=" + encodeURIComponent(after));
    streams[id] = es;
    open++;
    es.addEventListener("log", function (e) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(e.data + "\n"));
      if (e.lastEventId) pane.setAttribute("data-log-after", e.lastEventId);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("end", function () {
      es.close();
      open--;
      pane.setAttribute("data-live", "false");
    });
  }

  function panes() {
    var logs = document.getElementById("logs");
    var rows = document.querySelectorAll("#live tr.job-row");
    for (var i = rows.length - 1; i >= 0; i--) {
      var row = rows[i];
      var id = row.getAttribute("data-job");
      var pane = logs.querySelector('article.log-pane[data-job="' + CSS.escape(id) + '"]');
      if (!pane) {
        pane = document.createElement("article");
        pane.className = "log-pane";
        pane.setAttribute("data-job", id);
        pane.setAttribute("data-log-after", row.getAttribute("data-log-after") || "0");
        var h = document.createElement("h3");
        var cells = row.querySelectorAll("td");
        h.textContent = cells[0].textContent + " " + cells[1].textContent + " on " + cells[2].textContent;
        pane.appendChild(h);
        var pre = document.createElement("pre");
        pre.className = "log";
        pane.appendChild(pre);
        var heading = logs.querySelector("h2");
        logs.insertBefore(pane, heading ? heading.nextSibling : logs.firstChild);
      }
      pane.setAttribute("data-live", row.getAttribute("data-live"));
      if (row.getAttribute("data-live") === "true") follow(pane);
    }
  }

  function refresh() {
    fetch("/status/fragment", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/login"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          document.getElementById("live").innerHTML = html;
          panes();
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  document.querySelectorAll("#logs article.log-pane").forEach(follow);
  panes();
  setTimeout(refresh, REFRESH_MS);
})();
