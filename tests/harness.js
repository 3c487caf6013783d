// Test page side of the browser tests (tests/web.rs): a scripted backend
// behind `window.fetch`, a small Registration UI stand-in (`window.janrain`
// with the real event names, handler API, `capture.ui` calls and storage
// keys), a switch that makes `localStorage` throw, and helpers to wait.

const EVENTS = [
  "onCaptureLoginSuccess",
  "onCaptureRegistrationSuccess",
  "onCaptureSessionCreated",
  "onCaptureSessionFound",
  "onCaptureSessionNotFound",
  "onCaptureExpiredToken",
  "onCaptureInvalidToken",
  "onCaptureAccessDenied",
  "onCaptureSaveFailed",
  "onCaptureSessionEnded",
  "onCaptureScreenShow",
];

const state = {
  routes: new Map(),
  requests: [],
  handlers: {},
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

function makeEvents() {
  const events = {};
  for (const name of EVENTS) {
    state.handlers[name] = [];
    events[name] = {
      addHandler(fn) {
        state.handlers[name].push(fn);
      },
      removeHandler(fn) {
        state.handlers[name] = state.handlers[name].filter((h) => h !== fn);
      },
    };
  }
  return events;
}

function makeUi() {
  return {
    createCaptureSession(token) {
      state.calls.push({ call: "createCaptureSession", arg: token });
      // What the widget does: store the token with its own idea of the expiry
      // (accessTokenLifeHours, default 1), then announce the session.
      localStorage.setItem("janrainCaptureToken", token);
      localStorage.setItem(
        "janrainCaptureToken_Expires",
        new Date(Date.now() + 3600 * 1000).toUTCString(),
      );
      fire("onCaptureSessionCreated", JSON.stringify({ accessToken: token }));
    },
    endCaptureSession() {
      state.calls.push({ call: "endCaptureSession" });
      localStorage.removeItem("janrainCaptureToken");
      localStorage.removeItem("janrainCaptureToken_Expires");
      fire("onCaptureSessionEnded", "{}");
    },
    renderScreen(screen) {
      state.calls.push({ call: "renderScreen", arg: screen });
    },
    start() {},
  };
}

/** A loaded widget. `settings` is `janrain.settings.capture`. */
export function installWidget(settings) {
  window.janrain = {
    settings: { capture: JSON.parse(settings) },
    events: makeEvents(),
    capture: { ui: makeUi() },
  };
}

/** A page that configured the widget, which has not loaded yet. */
export function preloadSettings(settings) {
  window.janrain = { settings: { capture: JSON.parse(settings) } };
}

/** The widget loads: it runs `beforeJanrainCaptureWidgetOnLoad`, then is ready. */
export function loadWidget() {
  const janrain = window.janrain;
  janrain.events = makeEvents();
  janrain.capture = { ui: makeUi() };
  for (const hook of janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad || []) {
    if (typeof hook === "function") hook();
  }
}

/** The widget fires `name` with a JSON payload. */
export function fire(name, payload) {
  const data = JSON.parse(payload);
  for (const h of (state.handlers[name] || []).slice()) h(data);
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
  state.calls = [];
  state.windowEvents = [];
}
