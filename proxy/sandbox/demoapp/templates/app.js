// The demo app's live page: poll /api/v1/whoami, stream /events, echo over /ws.
// Everything is written with textContent: nothing from the server becomes HTML.
(function () {
  "use strict";

  function add(list, text) {
    var li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
    while (list.children.length > 20) list.removeChild(list.firstChild);
  }

  var out = document.getElementById("whoami");
  var status = document.getElementById("whoami-status");
  if (out && status) {
    var every = Number(out.dataset.interval) || 15000;
    var count = 0, ok = 0;
    var poll = function () {
      count++;
      var n = count, at = new Date().toLocaleTimeString();
      fetch("/api/v1/whoami", { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (res) {
          return res.text().then(function (body) {
            if (res.ok) ok++;
            out.dataset.count = String(n);
            out.dataset.ok = String(ok);
            out.dataset.status = String(res.status);
            out.textContent = body;
            status.textContent = "Call " + n + " at " + at + ": HTTP " + res.status + " (" + ok + " of " + n + " succeeded)";
          });
        })
        .catch(function (err) {
          out.dataset.count = String(n);
          out.dataset.status = "error";
          status.textContent = "Call " + n + " at " + at + " failed: " + err;
        });
    };
    poll();
    setInterval(poll, every);
  }

  var start = document.getElementById("events-start");
  var events = document.getElementById("events");
  if (start && events && window.EventSource) {
    start.addEventListener("click", function () {
      start.disabled = true;
      var es = new EventSource("/events");
      es.addEventListener("tick", function (e) {
        var d = JSON.parse(e.data);
        add(events, "tick " + d.n + " of " + d.of + " at " + d.time);
      });
      es.addEventListener("done", function () {
        add(events, "stream ended");
        es.close();
        start.disabled = false;
      });
      es.onerror = function () {
        add(events, "stream error");
        es.close();
        start.disabled = false;
      };
    });
  }

  var form = document.getElementById("ws-form");
  var input = document.getElementById("ws-input");
  var wsLog = document.getElementById("ws-log");
  if (form && input && wsLog && window.WebSocket) {
    var ws = null;
    var connect = function () {
      ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
      ws.onopen = function () { add(wsLog, "connected"); };
      ws.onmessage = function (e) { add(wsLog, "echo: " + e.data); };
      ws.onclose = function (e) { add(wsLog, "closed (" + e.code + ")"); ws = null; };
      return ws;
    };
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var msg = input.value;
      if (ws && ws.readyState === WebSocket.OPEN) { ws.send(msg); return; }
      var s = ws || connect();
      s.addEventListener("open", function () { s.send(msg); }, { once: true });
    });
  }
})();
