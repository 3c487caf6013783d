/*
 * Records when the helper calls createCaptureSession (performance.now()),
 * which is what the refresh-overhead measurement reads. The widget is the
 * project's Registration UI stand-in (/janrain/load.js, the demo's and the
 * browser tests' too); this page renders none of its screens (no
 * janrain.capture.ui.start()), so that only the helper's work is timed.
 */
(function () {
  "use strict";
  var bench = (window.__bench = window.__bench || {});
  bench.createCalls = [];
  var ui = window.janrain.capture.ui;
  var create = ui.createCaptureSession;
  ui.createCaptureSession = function (token) {
    bench.createCalls.push(performance.now());
    return create(token);
  };
  // The page's widget onload hook; screens are not rendered here.
  window.janrainCaptureWidgetOnLoad = function () {};
})();
