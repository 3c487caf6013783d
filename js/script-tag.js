// The single-file `<script>` build (dist/capture-session.js): the `web` glue
// and the wasm, embedded as a Latin-1 string (js/embed-wasm.mjs), in one
// classic script.
//
//   <script src="capture-session.js" data-refresh-url="/capture-session/refresh"
//           data-start-url="/capture-session/start" data-end-url="/capture-session/end"></script>
//
// Compiles synchronously so that it attaches before the Registration UI starts
// (through janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad when the
// widget has not loaded yet), and exposes window.CaptureSession and, when the
// tag carries data-refresh-url, the attached helper as window.captureSession.
import { initSync, CaptureSession } from "../pkg/web/capture_session.js";
import wasmText from "capture-session-wasm";

const NUMBERS = ["refreshAheadSeconds", "tokenLifetimeSeconds", "requestTimeoutMs"];
const BOOLEANS = ["clientSession", "crossTab", "rerenderOnRefresh"];

// A value that does not convert is passed on as the string it is, so that
// attach() rejects it with config_invalid naming the key.
const number = (v) => (v.trim() !== "" && Number.isFinite(Number(v)) ? Number(v) : v);
const boolean = (v) => (v === "" || v === "true" ? true : v === "false" ? false : v);
const json = (v) => {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
};

/** The attach() config of a script tag's data-* attributes (camelCased by `dataset`). */
function configOf(script) {
  const config = {};
  for (const [key, value] of Object.entries(script.dataset)) {
    const retry = /^retry(BaseMs|MaxMs|MaxAttempts)$/.exec(key);
    if (retry) {
      config.retry = config.retry || {};
      config.retry[retry[1][0].toLowerCase() + retry[1].slice(1)] = number(value);
    } else if (NUMBERS.includes(key)) config[key] = number(value);
    else if (BOOLEANS.includes(key)) config[key] = boolean(value);
    else if (key === "headers") config[key] = json(value);
    else if (key === "allowedOrigins") config[key] = value.split(/[\s,]+/).filter(Boolean);
    else config[key] = value;
  }
  return config;
}

/**
 * The wasm's bytes from its Latin-1 string (one character per byte).
 * `btoa` takes exactly such a string, and `Uint8Array.fromBase64` (Chrome 140,
 * Firefox 133, Safari 18.2) turns its base64 back into bytes: two native passes,
 * about 0.2 ms for the helper. Elsewhere a plain loop, about 3 ms. The first
 * version, `Uint8Array.from(text, (c) => c.charCodeAt(0))`, walked the string
 * through its iterator with a call per byte: 8-9 ms warm, 20 ms cold, the
 * largest part of the script's start-up (bench/README.md, "Where
 * capture-session's start-up goes").
 */
function latin1Bytes(text) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(btoa(text));
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

const script = document.currentScript;
initSync({ module: latin1Bytes(wasmText) });
window.CaptureSession = CaptureSession;
if (script && script.dataset.refreshUrl !== undefined) {
  try {
    window.captureSession = CaptureSession.attach(configOf(script));
  } catch (error) {
    window.captureSession = null;
    console.error(error);
  }
}
