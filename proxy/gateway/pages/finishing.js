// Polls /api/me until the new subscription shows up, then goes back to
// where the visitor was. Without JavaScript the page's meta refresh does
// the same, more slowly.
(function () {
  var el = document.getElementById("finishing");
  if (!el) return;
  var me = el.getAttribute("data-me"), back = el.getAttribute("data-return"), tries = 0;
  function poll() {
    tries++;
    fetch(me, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (j && j.subscriptions && j.subscriptions.some(function (s) { return s.active; })) {
          window.location.replace(back);
        } else if (tries < 30) {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { if (tries < 30) setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
