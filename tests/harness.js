// Test page side of the browser tests (tests/web.rs): a scripted backend
// behind `window.fetch`, the Registration UI stand-in (www/janrain/load.js)
// watched for handlers and `capture.ui` calls, a switch that makes
// `localStorage` throw, and helpers to wait.

const state = {
  routes: new Map(),
  requests: [],
  handlers: {},
  handlerErrors: [],
  calls: [],
  storageDescriptor: null,
  windowEvents: [],
};

const EVENT_TYPES = ["active", "refreshed", "refresh-failed", "ended", "warning"];
for (const type of EVENT_TYPES) {
  window.addEventListener("capture-session:" + type, (e) => {
    state.windowEvents.push({ type, detail: e.detail });
  });
}

// ---- accounting of what a helper leaves behind ------------------------------
// Listeners, timers and broadcast channels are counted as they are created and
// released, so a test can compare the counts before attach and after detach.

const live = { listeners: new Set(), timers: new Set(), channels: new Set() };
const listenerKey = (target, type, fn) => ({ target, type, fn });
const realAdd = EventTarget.prototype.addEventListener;
const realRemove = EventTarget.prototype.removeEventListener;
EventTarget.prototype.addEventListener = function (type, fn, options) {
  for (const l of live.listeners) if (l.target === this && l.type === type && l.fn === fn) return realAdd.call(this, type, fn, options);
  live.listeners.add(listenerKey(this, type, fn));
  return realAdd.call(this, type, fn, options);
};
EventTarget.prototype.removeEventListener = function (type, fn, options) {
  for (const l of live.listeners) if (l.target === this && l.type === type && l.fn === fn) live.listeners.delete(l);
  return realRemove.call(this, type, fn, options);
};
const realSetTimeout = window.setTimeout.bind(window);
const realClearTimeout = window.clearTimeout.bind(window);
window.setTimeout = function (fn, ms, ...args) {
  const id = realSetTimeout(() => {
    live.timers.delete(id);
    if (typeof fn === "function") fn(...args);
  }, ms);
  live.timers.add(id);
  return id;
};
window.clearTimeout = function (id) {
  live.timers.delete(id);
  return realClearTimeout(id);
};
const RealChannel = window.BroadcastChannel;
window.BroadcastChannel = class extends RealChannel {
  constructor(name) {
    super(name);
    live.channels.add(this);
  }
  close() {
    live.channels.delete(this);
    return super.close();
  }
};

/** How many listeners, pending timers and open channels exist now. */
export function liveHandles() {
  return JSON.stringify({
    listeners: live.listeners.size,
    timers: live.timers.size,
    channels: live.channels.size,
  });
}

/** Hides `navigator.locks`, as in browsers without Web Locks. */
export function hideLocks() {
  Object.defineProperty(navigator, "locks", { configurable: true, value: undefined });
}

/** The names of the Web Locks this origin holds now. */
export async function heldLocks() {
  const { held } = await navigator.locks.query();
  return held.map((lock) => lock.name).sort();
}

function restoreLocks() {
  delete navigator.locks;
}

/** Another tab changed storage: what the browser delivers here as a `storage` event. */
export function storageEventFromOtherTab(key, value) {
  if (value === undefined || value === null) localStorage.removeItem(key);
  else localStorage.setItem(key, value);
  window.dispatchEvent(new StorageEvent("storage", { key, newValue: value ?? null, storageArea: localStorage }));
}

/** The browser says it went offline or online. */
export function connectivity(online) {
  window.dispatchEvent(new Event(online ? "online" : "offline"));
}

// ---- backend --------------------------------------------------------------

async function fakeFetch(input, init = {}) {
  // The helper sends a Request object (gloo-net); tests may call it with (url, init).
  const req = input instanceof Request ? input : new Request(new URL(String(input), location.href), init);
  const url = new URL(req.url);
  const entry = {
    path: url.pathname,
    origin: url.origin,
    method: req.method,
    body: undefined,
    contentType: req.headers.get("content-type"),
    marker: req.headers.get("x-capture-session"),
    csrf: req.headers.get("x-csrf-token"),
    credentials: req.credentials,
    keepalive: req.keepalive === true,
    redirect: req.redirect,
  };
  state.requests.push(entry);
  entry.body = req.method === "GET" ? undefined : await req.clone().text();
  const queue = state.routes.get(url.pathname) || [];
  const reply = queue.length > 1 ? queue.shift() : queue[0];
  const signal = req.signal;
  return new Promise((resolve, reject) => {
    const abort = () => reject(new DOMException("The operation was aborted.", "AbortError"));
    if (signal) {
      if (signal.aborted) return abort();
      // The harness's own listeners and timers are not counted as the helper's.
      realAdd.call(signal, "abort", abort);
    }
    if (!reply) {
      resolve(json(404, { error: "not_found", message: "no route" }));
      return;
    }
    if (reply.hang) return;
    realSetTimeout(() => {
      if (reply.network) return reject(new TypeError("Failed to fetch"));
      if (reply.raw !== undefined) {
        resolve(new Response(reply.raw, { status: reply.status || 200, headers: reply.headers || {} }));
      } else if (reply.status === 204) {
        resolve(new Response(null, { status: 204 }));
      } else {
        resolve(json(reply.status || 200, reply.body, reply.headers));
      }
    }, reply.delay || 0);
  });
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/** Scripted replies for `path`, used in order; the last one repeats. */
export function route(path, replies) {
  state.routes.set(path, JSON.parse(replies));
}

/** The requests sent to `path`. */
export function requests(path) {
  return state.requests.filter((r) => r.path === path);
}

// ---- Registration UI stand-in -----------------------------------------------
// The widget is the project's one Registration UI stand-in, www/janrain/load.js
// (the demo's and the benchmark's too): tests/web.rs hands its source in
// (`include_str!`, since wasm-bindgen-test serves only this snippet). It runs
// as a fresh script for each test, with its load hooks run at once (the real
// widget runs them when its CDN script arrives; a test decides when that is).
// The harness only watches it: every handler registered with an event, every
// call the helper makes on `capture.ui`, and any exception a handler throws
// (the stand-in logs and swallows those, as a widget must; a test fails on
// them).

const UI_CALLS = ["createCaptureSession", "endCaptureSession", "renderScreen"];

function runStandIn(source) {
  // The stand-in defers its load hooks with setTimeout: they run here, once
  // the harness watches the events, and no timer is left for liveHandles().
  const deferred = [];
  new Function("setTimeout", source)((fn) => deferred.push(fn));
  watch(window.janrain);
  for (const fn of deferred) fn();
}

function watch(janrain) {
  for (const name of Object.keys(janrain.events)) {
    const event = janrain.events[name];
    const add = event.addHandler;
    const remove = event.removeHandler;
    const wrapped = new Map();
    state.handlers[name] = [];
    event.addHandler = (fn) => {
      const watched = (payload) => {
        try {
          return fn(payload);
        } catch (err) {
          state.handlerErrors.push(err);
          throw err;
        }
      };
      wrapped.set(fn, watched);
      state.handlers[name].push(fn);
      add(watched);
      return fn;
    };
    event.removeHandler = (fn) => {
      state.handlers[name] = state.handlers[name].filter((h) => h !== fn);
      remove(wrapped.get(fn));
      wrapped.delete(fn);
    };
  }
  const ui = janrain.capture.ui;
  for (const call of UI_CALLS) {
    const real = ui[call];
    ui[call] = (arg) => {
      state.calls.push(arg === undefined ? { call } : { call, arg });
      return real(arg);
    };
  }
}

/** A loaded widget. `settings` is `janrain.settings.capture`. */
export function installWidget(source, settings) {
  window.janrain = { settings: { capture: JSON.parse(settings) } };
  runStandIn(source);
}

/** A page that configured the widget, which has not loaded yet. */
export function preloadSettings(settings) {
  window.janrain = { settings: { capture: JSON.parse(settings) } };
}

/** The widget loads: it runs `beforeJanrainCaptureWidgetOnLoad`, then is ready. */
export function loadWidget(source) {
  runStandIn(source);
}

/** The widget fires `name` with a JSON payload. */
export function fire(name, payload) {
  const errors = state.handlerErrors.length;
  window.janrain.events[name].fire(JSON.parse(payload));
  if (state.handlerErrors.length > errors) throw state.handlerErrors[errors];
}

/** How many handlers are registered with the widget, over all events. */
export function handlerCount() {
  return Object.values(state.handlers).reduce((n, list) => n + list.length, 0);
}

/** The calls the helper made on `janrain.capture.ui`. */
export function widgetCalls(name) {
  return state.calls.filter((c) => c.call === name);
}

// ---- storage ----------------------------------------------------------------

/** Makes `window.localStorage` throw, as in a sandboxed frame or with storage disabled. */
export function breakStorage() {
  if (state.storageDescriptor) return;
  state.storageDescriptor = Object.getOwnPropertyDescriptor(window, "localStorage");
  Object.defineProperty(window, "localStorage", {
    configurable: true,
    get() {
      throw new DOMException("Access is denied for this document.", "SecurityError");
    },
  });
}

function restoreStorage() {
  if (state.storageDescriptor) {
    Object.defineProperty(window, "localStorage", state.storageDescriptor);
    state.storageDescriptor = null;
  }
}

/** `new Date(ms).toUTCString()` of now + `ms`. */
export function httpDateIn(ms) {
  return new Date(Date.now() + ms).toUTCString();
}

// ---- events and time ----------------------------------------------------------

/** The details of window `capture-session:<type>` events since the last reset. */
export function windowEvents(type) {
  return state.windowEvents.filter((e) => e.type === type).map((e) => e.detail);
}

/** A listener that appends each detail to `list`. */
export function pusher(list) {
  return (detail) => list.push(detail);
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A fresh page: empty storage, no widget, the scripted backend, no records. */
export function reset() {
  restoreStorage();
  restoreLocks();
  localStorage.clear();
  delete window.janrain;
  window.fetch = fakeFetch;
  state.routes.clear();
  state.requests = [];
  state.handlers = {};
  state.handlerErrors = [];
  state.calls = [];
  // The page's onload hook, which the stand-in calls once it has loaded.
  window.janrainCaptureWidgetOnLoad = () => {};
  state.windowEvents = [];
}
