/*
 * A minimal Registration UI (Capture widget) stand-in for the benchmark pages:
 * the real global names and storage keys, no screens, no network. Its
 * createCaptureSession records when it is called (performance.now()), which
 * is what the refresh-overhead measurement reads. The demo's full stand-in
 * (www/janrain/load.js) renders screens; this one does as little as possible so
 * that only the helper's work is timed.
 */
(function () {
  "use strict";
  var bench = (window.__bench = window.__bench || {});
  bench.createCalls = [];
  var EVENTS = [
    "onCaptureLoginStart", "onCaptureLoginSuccess", "onCaptureLoginFailed", "onCaptureRegistrationSuccess",
    "onCaptureSessionCreated", "onCaptureSessionFound", "onCaptureSessionNotFound", "onCaptureSessionEnded",
    "onCaptureExpiredToken", "onCaptureInvalidToken", "onCaptureAccessDenied", "onCaptureSaveStart",
    "onCaptureSaveSuccess", "onCaptureSaveFailed", "onCaptureProfileLoadSuccess", "onCaptureScreenShow",
    "onCaptureRenderComplete",
  ];
  var janrain = (window.janrain = window.janrain || {});
  janrain.settings = janrain.settings || {};
  janrain.settings.capture = janrain.settings.capture || {};
  janrain.events = {};
  EVENTS.forEach(function (name) {
    var handlers = [];
    janrain.events[name] = {
      eventName: name,
      addHandler: function (fn) { handlers.push(fn); return fn; },
      removeHandler: function (fn) { var i = handlers.indexOf(fn); if (i >= 0) handlers.splice(i, 1); },
      fire: function (payload) { handlers.slice().forEach(function (fn) { fn(payload); }); },
    };
  });
  function lifetimeMs() {
    return (Number(janrain.settings.capture.accessTokenLifeHours) || 1) * 3600 * 1000;
  }
  janrain.capture = {
    ui: {
      createCaptureSession: function (token) {
        bench.createCalls.push(performance.now());
        localStorage.setItem("janrainCaptureToken", token);
        localStorage.setItem("janrainCaptureToken_Expires", new Date(Date.now() + lifetimeMs()).toUTCString());
        janrain.events.onCaptureSessionCreated.fire({ action: "createCaptureSession", status: "success", accessToken: token });
      },
      endCaptureSession: function () {
        localStorage.removeItem("janrainCaptureToken");
        localStorage.removeItem("janrainCaptureToken_Expires");
        janrain.events.onCaptureSessionEnded.fire({ action: "endCaptureSession", status: "success" });
      },
      hasActiveSession: function () {
        var exp = Date.parse(localStorage.getItem("janrainCaptureToken_Expires") || "");
        return Boolean(localStorage.getItem("janrainCaptureToken")) && exp > Date.now();
      },
      renderScreen: function () {},
      start: function () {},
    },
  };
})();
