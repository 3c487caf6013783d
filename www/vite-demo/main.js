// The Vite variant of the demo: the helper comes from the npm package (the local pkg/, the way
// `npm install capture-session` would provide it) and is bundled by Vite; the Registration UI is
// a third-party script, loaded at run time after the helper is attached.
import "../demo/demo.css";
import "../janrain/capture.css";
import "../demo/demo.js"; // janrain.settings, janrainCaptureWidgetOnLoad, the dashboard
import init, { CaptureSession } from "capture-session";

// Optional overrides for experiments and end-to-end tests: ?refreshAheadSeconds=5 etc.
const query = new URLSearchParams(window.location.search);
function numberParam(name) {
  const value = Number(query.get(name));
  return query.has(name) && Number.isFinite(value) && value >= 0 ? value : undefined;
}

const options = {
  refreshUrl: "/capture-session/refresh",
  startUrl: "/capture-session/start",
  endUrl: "/capture-session/end",
};
const refreshAheadSeconds = numberParam("refreshAheadSeconds");
if (refreshAheadSeconds !== undefined) options.refreshAheadSeconds = refreshAheadSeconds;
const requestTimeoutMs = numberParam("requestTimeoutMs");
if (requestTimeoutMs !== undefined) options.requestTimeoutMs = requestTimeoutMs;
const retry = {};
for (const [param, key] of [["retryBaseMs", "baseMs"], ["retryMaxMs", "maxMs"], ["retryMaxAttempts", "maxAttempts"]]) {
  const value = numberParam(param);
  if (value !== undefined) retry[key] = value;
}
if (Object.keys(retry).length) options.retry = retry;
if (query.get("clientSession") === "false") options.clientSession = false;
window.demoRefreshAheadSeconds = options.refreshAheadSeconds;

try {
  await init();
  window.captureSession = CaptureSession.attach(options);
} catch (err) {
  // Errors carry a stable `code`; a broken helper must not take the site down with it.
  console.error("capture-session failed to start:", err && err.code, err && err.message);
}

const widget = document.createElement("script");
widget.src = "/janrain/load.js";
document.head.appendChild(widget);
