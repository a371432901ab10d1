// The account page's API keys: copies a new key to the clipboard, and
// shows the route choices only when the key is not for all routes. The
// pages' Content-Security-Policy allows no inline script, so this is a
// file of its own.
(function () {
  var copy = document.getElementById("copy-key");
  var key = document.getElementById("new-key");
  if (copy && key) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      key.select();
      var done = function () { copy.textContent = "Copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(key.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  }
  var all = document.getElementById("key-all");
  var routes = document.getElementById("key-routes");
  if (all && routes) {
    var sync = function () { routes.hidden = all.checked; };
    all.addEventListener("change", sync);
    sync();
  }
})();
