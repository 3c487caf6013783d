/*
 * Records when each reply of the backend's refresh endpoint is handed to the
 * page: wraps window.fetch, reads the whole body, then stamps performance.now()
 * just before resolving with an identical Response. What the helper does after
 * that stamp (parse, decide, store, call the widget) is its overhead.
 */
(function () {
  "use strict";
  var bench = (window.__bench = window.__bench || {});
  bench.refreshReplies = [];
  var original = window.fetch;
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : input && input.url ? input.url : String(input);
    var p = original.call(this, input, init);
    if (url.indexOf("/capture-session/refresh") < 0) return p;
    return p.then(function (res) {
      return res.arrayBuffer().then(function (body) {
        var copy = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
        bench.refreshReplies.push({ at: performance.now(), status: res.status });
        return copy;
      });
    });
  };
})();
