// Pages built the way real customer sites integrate the Registration UI, not the way our demo
// does: a `janrain-init.js`-style template that replaces `janrain.settings` after the helper's
// tag and injects the widget's script, which arrives late; a global `janrainCaptureWidgetOnLoad`
// that registers the page's own handlers and calls `start()` (or calls `start()` first, or is a
// local function the page runs itself); the helper as a script tag before or after the template,
// or as an ES module; a page that logs out by deleting the widget's keys (with the backend's end
// endpoint up, or down across page loads); a page that hands its own token copy to
// createCaptureSession; expiry dates written by PHP and Date#toString; code mode; a second
// sign-in after a sign-out; a polluted Object.prototype; a backend that answers 307. Each test
// proves the helper still hears the login, refreshes before expiry, ends the session everywhere
// and for good, and leaves the page's own handlers and settings alone. Requests are counted at
// the server.
//
// The pages are HTML strings served under /pages/ by Playwright (same origin as the server);
// the widget is the stand-in at /janrain/load.js, delayed in the network like a CDN script.
import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import { Watch, helperEvents, helperState, launchBrowser, signIn, sleep, startServer, storedSession, waitForEvent } from "./harness.mjs";

const LIFETIME = 10; // seconds; the helper refreshes at half-life
const WIDGET_DELAY_MS = 1500; // the widget's script arrives this late, like a slow CDN

let server;
let browser;
const watch = new Watch();
const contexts = [];

before(async () => {
  server = await startServer({ tokenLifetime: LIFETIME });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// A test that failed half-way leaves its tabs open; close them, or their refreshes would land in
// the next test's counts at the server.
afterEach(async () => {
  for (const context of contexts) {
    if (context.closed) continue;
    try {
      await done(context);
    } catch {
      /* already closing */
    }
  }
});

// ---- the pages -------------------------------------------------------------------------------

// The settings a JUMP-style `janrain-init.js` assigns (after wiping janrain.settings), including
// the 24 h widget lifetime real sites set, and one key only this page sets, to see it survive.
const PAGE_SETTINGS = {
  clientId: "capture-session-demo",
  responseType: "token",
  captureServer: "/sim",
  flowName: "standard",
  flowVersion: "HEAD",
  locale: "en-US",
  accessTokenLifeHours: 24,
  siteMarker: "set-by-janrain-init",
};

// The widget events the page's own handlers log (by name only: the page never logs a token).
const PAGE_EVENTS = [
  "onCaptureLoginSuccess",
  "onCaptureSessionCreated",
  "onCaptureSessionFound",
  "onCaptureSessionNotFound",
  "onCaptureSessionEnded",
];

/**
 * The template file, like Akamai's `janrain-init.js`: settings replaced wholesale, the widget
 * script created as `#janrainAuthWidget` and inserted before the page's first script (so it runs
 * asynchronously, whenever it arrives), then the page's onload function.
 * onload: "global" (function declaration: handlers, then start()), "start-first" (assigned to
 * window, start() before the handlers), "self-call" (a local function the page runs itself once
 * janrain.events exists, polling like the Drupal 8 modules).
 */
function janrainInit({ onload, settings = PAGE_SETTINGS, drupal = false }) {
  const assignments = Object.entries(settings)
    .map(([k, v]) => `  janrain.settings.capture.${k} = ${JSON.stringify(v)};`)
    .join("\n");
  // Drupal behaviours: attach again at DOM ready and on window load (and after every AJAX
  // call), each time replacing janrain.settings, after the widget's script was inserted.
  const reattach = drupal
    ? `
(function () {
  function attachBehaviours() {
    window.janrain.settings = {};
    window.janrain.settings.capture = {};
    janrain.settings.capture.redirectUri = window.location.origin + "/";
${assignments}
    (window.pageBehaviourAttaches = window.pageBehaviourAttaches || []).push(Date.now());
  }
  document.addEventListener("DOMContentLoaded", attachBehaviours);
  window.addEventListener("load", attachBehaviours);
  setTimeout(attachBehaviours, 700);
})();`
    : "";
  const handlers = `
  function addPageHandlers() {
    ${JSON.stringify(PAGE_EVENTS)}.forEach(function (name) {
      janrain.events[name].addHandler(function () {
        window.pageLog.push({ name: name, t: Date.now() });
      });
    });
  }`;
  const onloads = {
    global: `
function janrainCaptureWidgetOnLoad() {
  window.pageOnloadRanAt = Date.now();
  addPageHandlers();
  janrain.capture.ui.start();
}
window.pageOwnOnload = janrainCaptureWidgetOnLoad;`,
    "start-first": `
window.janrainCaptureWidgetOnLoad = function () {
  window.pageOnloadRanAt = Date.now();
  janrain.capture.ui.start();
  addPageHandlers();
};
window.pageOwnOnload = window.janrainCaptureWidgetOnLoad;`,
    "own-token": `
function janrainCaptureWidgetOnLoad() {
  window.pageOnloadRanAt = Date.now();
  addPageHandlers();
  // The site keeps its own copy of the token (its cookie, its key) and hands it to the widget.
  janrain.events.onCaptureLoginSuccess.addHandler(function (result) {
    if (result && result.accessToken) localStorage.setItem("siteOwnToken", result.accessToken);
  });
  var own = localStorage.getItem("siteOwnToken");
  if (own) janrain.capture.ui.createCaptureSession(own);
  janrain.capture.ui.start();
}
window.pageOwnOnload = janrainCaptureWidgetOnLoad;`,
    "self-call": `
(function () {
  function pageWidgetOnLoad() {
    window.pageOnloadRanAt = Date.now();
    addPageHandlers();
    janrain.capture.ui.start();
  }
  var poll = setInterval(function () {
    if (window.janrain && janrain.events && janrain.capture && janrain.capture.ui) {
      clearInterval(poll);
      pageWidgetOnLoad();
    }
  }, 250);
})();
window.pageOwnOnload = null;`,
  };
  return `// janrain-init.js (template style)
window.pageLog = window.pageLog || [];
(function () {
  if (typeof window.janrain !== "object") window.janrain = {};
  window.janrain.settings = {};
  window.janrain.settings.capture = {};
  janrain.settings.capture.redirectUri = window.location.origin + "/";
${assignments}
  function isReady() { janrain.ready = true; }
  if (document.addEventListener) document.addEventListener("DOMContentLoaded", isReady, false);
  var e = document.createElement("script");
  e.type = "text/javascript";
  e.id = "janrainAuthWidget";
  e.src = "/janrain/load.js";
  var s = document.getElementsByTagName("script")[0];
  s.parentNode.insertBefore(e, s);
})();
${reattach.trim()}
${handlers.trim()}
${onloads[onload].trim()}
`;
}

// The helper as an ES module without a bundler (the npm package's `web` entry).
const ESM_HELPER = `import init, { CaptureSession } from "/pkg/web/capture_session.js";
await init();
window.captureSession = CaptureSession.attach({
  refreshUrl: "/capture-session/refresh",
  startUrl: "/capture-session/start",
  endUrl: "/capture-session/end",
});
`;

const HELPER_TAG = `<script src="/dist/capture-session.js" data-refresh-url="/capture-session/refresh"
          data-start-url="/capture-session/start" data-end-url="/capture-session/end"></script>`;

/**
 * helper: "tag-before" | "tag-after" (the template) | "esm"; helperTag replaces the tag;
 * prelude: a script the page runs before any other.
 */
function pageHtml({ helper, helperTag = HELPER_TAG, prelude = null }) {
  const init = `<script src="/pages/janrain-init.js"></script>`;
  const scripts =
    helper === "tag-before"
      ? [helperTag, init]
      : helper === "tag-after"
        ? [init, helperTag]
        : [init, `<script type="module" src="/pages/esm-helper.js"></script>`];
  if (prelude) scripts.unshift(`<script src="/pages/prelude.js"></script>`);
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <link rel="icon" href="data:,">
  <title>customer page (${helper})</title>
  ${scripts.join("\n  ")}
</head>
<body>
  <h1>A customer site</h1>
  <div id="janrainCaptureWidget"></div>
</body>
</html>`;
}

/** A context whose /pages/ serves the page, and whose widget script arrives late. */
async function newContext({
  helper = "tag-before",
  onload = "global",
  widgetDelayMs = WIDGET_DELAY_MS,
  helperTag,
  prelude,
  settings = PAGE_SETTINGS,
  drupal = false,
} = {}) {
  const context = await watch.newContext(browser, server);
  contexts.push(context);
  context.on("close", () => {
    context.closed = true;
  });
  const files = {
    "/pages/index.html": ["text/html", pageHtml({ helper, helperTag, prelude })],
    "/pages/prelude.js": ["text/javascript", prelude || ""],
    "/pages/janrain-init.js": ["text/javascript", janrainInit({ onload, settings, drupal })],
    "/pages/esm-helper.js": ["text/javascript", ESM_HELPER],
  };
  await context.route(
    (url) => url.pathname in files,
    (route) => {
      const [contentType, body] = files[new URL(route.request().url()).pathname];
      return route.fulfill({ status: 200, contentType, body });
    },
  );
  if (widgetDelayMs > 0) {
    await context.route(
      (url) => url.pathname === "/janrain/load.js",
      async (route) => {
        await sleep(widgetDelayMs); // network latency of the widget's CDN, not a wait in the test
        await route.continue();
      },
    );
  }
  // Every request to the backend contract, by endpoint (the admin controls excluded).
  context.backendRequests = [];
  const opened = Date.now();
  context.on("request", (req) => {
    const p = new URL(req.url()).pathname;
    if (!p.startsWith("/capture-session/") || p.startsWith("/capture-session/_admin")) return;
    let tab = "?";
    try {
      tab = context.pages().indexOf(req.frame().page());
    } catch {
      /* a request without a frame (keepalive after unload) */
    }
    context.backendRequests.push(`${p} (tab ${tab}, ${Date.now() - opened} ms)`);
  });
  return context;
}

async function done(context) {
  if (context.closed) return;
  await watch.sweep(context);
  await context.close();
}

/** Opens the page and waits until the widget has started (its screen is shown). */
async function openPage(context) {
  const page = await context.newPage();
  await page.goto("/pages/index.html");
  await page.waitForFunction(() => window.janrain?.capture?.ui?.standIn?.currentScreen?.() != null, null, { timeout: 15000 });
  await page
    .waitForFunction(() => typeof window.captureSession?.state === "string", null, { timeout: 10000 })
    .catch(() => {
      throw new Error("the helper did not attach (is dist/ or pkg/ built?)");
    });
  return page;
}

const pageLog = (page, name) => page.evaluate((n) => window.pageLog.filter((e) => !n || e.name === n).map((e) => e.name), name);

async function serverSession(page) {
  return page.evaluate(async () => (await fetch("/capture-session/_admin/session")).json());
}

const stats = () => server.admin.stats();

/** The page's settings, as the page set them (functions and arrays aside). */
const pageSettings = (page, settings = PAGE_SETTINGS) =>
  page.evaluate((keys) => Object.fromEntries(keys.map((k) => [k, window.janrain.settings.capture[k]])), Object.keys(settings));

/**
 * The common proof: on this page a user signs in through the widget; the helper hears it (active,
 * a start request at the server, a server session), the page's own handlers fired, its settings
 * and onload function are as it made them, and the helper knows the backend's expiry, not the
 * widget's 24 h.
 */
async function signInOnPage(context, { expectLateWidget = true, pageHearsStart = true, settings = PAGE_SETTINGS } = {}) {
  const page = await openPage(context);
  await page.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 5000 });
  if (expectLateWidget) {
    const onloadAfter = await page.evaluate(() => window.pageOnloadRanAt - performance.timeOrigin);
    assert.ok(onloadAfter >= WIDGET_DELAY_MS, `the widget really arrived late (onload ran ${Math.round(onloadAfter)} ms in)`);
  }
  const before = await stats();
  const active = await signIn(page);
  // Token mode: the widget's login; code mode: the session comes from the backend's start reply.
  const source = settings.responseType === "code" ? "start" : "login";
  assert.equal(active.detail.source, source, "the helper heard the widget's login");
  await page.waitForFunction(() => window.captureSession.state === "active", null, { timeout: 5000 });
  // The start request reached the server, once, and the server holds the session.
  await page.waitForFunction(
    () => performance.getEntriesByType("resource").some((e) => new URL(e.name).pathname === "/capture-session/start" && e.responseEnd > 0),
    null,
    { timeout: 5000 },
  );
  const afterSignIn = await stats();
  assert.equal(afterSignIn.start - before.start, 1, "one start request reached the server");
  assert.equal((await serverSession(page)).exists, true, "the server has a session for this browser");
  // The backend's expiry, not the widget's accessTokenLifeHours: 24.
  await page.waitForFunction(
    (lifetimeMs) => window.captureSession.expiresAt <= Date.now() + lifetimeMs + 2000,
    LIFETIME * 1000,
    { timeout: 5000 },
  );
  // The page's own handlers still fire, its settings and onload function are its own.
  const log = await pageLog(page);
  // (A page that calls start() before adding its handlers misses the start's own event.)
  if (pageHearsStart) assert.ok(log.includes("onCaptureSessionNotFound"), `the page heard the widget start: ${JSON.stringify(log)}`);
  assert.ok(log.includes("onCaptureSessionCreated"), `the page heard the session created: ${JSON.stringify(log)}`);
  assert.ok(log.includes("onCaptureLoginSuccess"), `the page heard the login: ${JSON.stringify(log)}`);
  assert.equal(log.filter((n) => n === "onCaptureLoginSuccess").length, 1, "the page's login handler ran once");
  assert.deepEqual(await pageSettings(page, settings), settings, "the page's settings are untouched");
  assert.equal(
    await page.evaluate(() => window.pageOwnOnload === null || window.janrainCaptureWidgetOnLoad === window.pageOwnOnload),
    true,
    "the page's janrainCaptureWidgetOnLoad is its own",
  );
  assert.equal(await page.evaluate(() => janrain.capture.ui.standIn.currentScreen()), "editProfile");
  assert.equal((await helperEvents(page, "active")).length, 1, "one active event for one sign-in");
  return page;
}

// ---- 1-3: hooking survives the page, whatever the order ---------------------------------------

test("template page (settings replaced after the helper's tag, widget injected late, global onload with page handlers): the helper hears the login and the page keeps its handlers and settings", async () => {
  const context = await newContext({ helper: "tag-before", onload: "global" });
  await signInOnPage(context);
  await done(context);
});

test("start() called before the page adds its handlers: the helper still hears the login", async () => {
  const context = await newContext({ helper: "tag-before", onload: "start-first" });
  await signInOnPage(context, { pageHearsStart: false });
  await done(context);
});

test("the page runs its own onload function (no global janrainCaptureWidgetOnLoad, polls for janrain.events): the helper still hears the login", async () => {
  const context = await newContext({ helper: "tag-before", onload: "self-call" });
  await signInOnPage(context);
  await done(context);
});

test("Drupal-style page that replaces janrain.settings again on every behaviour attach, after the widget's script was inserted: the helper hears the login", async () => {
  const context = await newContext({ drupal: true });
  const page = await signInOnPage(context);
  // Between the widget's insertion and its arrival the helper's entry in the settings was wiped
  // (no DOM change after that to tell the helper).
  const wipes = await page.evaluate(() => window.pageBehaviourAttaches.filter((t) => t < window.pageOnloadRanAt).length);
  assert.ok(wipes >= 2, `the page replaced its settings ${wipes} times before the widget ran`);
  await done(context);
});

test("helper script tag after janrain-init.js: the helper hears the login", async () => {
  const context = await newContext({ helper: "tag-after", onload: "global" });
  await signInOnPage(context);
  await done(context);
});

test("helper as an ES module import (attached after the template ran): the helper hears the login", async () => {
  const context = await newContext({ helper: "esm", onload: "global" });
  await signInOnPage(context);
  await done(context);
});

test("helper as an ES module import with a widget that arrives at once: the helper hears the login", async () => {
  const context = await newContext({ helper: "esm", onload: "global", widgetDelayMs: 0 });
  await signInOnPage(context, { expectLateWidget: false });
  await done(context);
});

async function codeModeScenario(helper) {
  const settings = { ...PAGE_SETTINGS, responseType: "code" };
  const context = await newContext({ helper, settings });
  const page = await signInOnPage(context, { settings });
  const stored = await storedSession(page);
  assert.ok(stored.token, "the widget holds the token the backend returned");
  assert.equal(await page.evaluate(() => janrain.capture.ui.hasActiveSession()), true);
  await done(context);
}

test("template page in code mode, helper tag after janrain-init.js: the code is exchanged at the backend and the widget gets the token", async () => {
  await codeModeScenario("tag-after");
});

// The template sets responseType 'code' after the helper's tag attached: the login event's code
// says code mode (the page gave the helper no `mode`).
test("template page in code mode, helper tag before janrain-init.js: the code is exchanged at the backend and the widget gets the token", async () => {
  await codeModeScenario("tag-before");
});

// ---- 4: an anonymous visitor costs nothing ---------------------------------------------------

test("anonymous visitor: two page views without a sign-in make zero backend requests", async (t) => {
  const context = await newContext({ helper: "tag-before", onload: "global" });
  const before = await stats();
  const page = await openPage(context);
  await page.evaluate(() => window.captureSession.ready);
  await page.waitForFunction(() => window.pageLog.some((e) => e.name === "onCaptureSessionNotFound"), null, { timeout: 5000 });
  await page.waitForLoadState("networkidle");
  await page.reload();
  await page.waitForFunction(() => window.pageLog?.some((e) => e.name === "onCaptureSessionNotFound"), null, { timeout: 15000 });
  await page.evaluate(() => window.captureSession.ready);
  await page.waitForLoadState("networkidle");
  const after = await stats();
  const atServer = after.start + after.refresh + after.end - (before.start + before.refresh + before.end);
  t.diagnostic(`backend requests for two anonymous page views: ${context.backendRequests.length} from the browser, ${atServer} at the server`);
  assert.deepEqual(context.backendRequests, [], "no backend request left the browser");
  assert.equal(atServer, 0, `no backend request reached the server (${JSON.stringify({ before, after })})`);
  assert.equal(await page.evaluate(() => window.captureSession.state), "none");
  assert.deepEqual(await helperEvents(page), [], "no helper event");
  await done(context);
});

// ---- 5: a logout done by the page, deleting the widget's keys ----------------------------------

const PAGE_LOGOUT_KEYS = [
  "janrainCaptureToken",
  "janrainCaptureToken_Expires",
  "janrainCaptureProfileData",
  "janrainCaptureProfileData_Expires",
  "janrainCaptureReturnExperienceData_Expires",
];

test("the page logs out by deleting the widget's keys (no logout event): every tab ends, the backend session is ended, a reload does not sign the user back in", async (t) => {
  const context = await newContext({ helper: "tag-before", onload: "global" });
  const first = await signInOnPage(context);
  const second = await openPage(context);
  await second.waitForFunction(() => window.captureSession.state === "active", null, { timeout: 10000 });
  const { expiresAt } = await helperState(first);
  const before = await stats();

  context.backendRequests.push("(the page deletes the keys)");
  const removedAt = await first.evaluate((keys) => {
    keys.forEach((k) => localStorage.removeItem(k));
    return Date.now();
  }, PAGE_LOGOUT_KEYS);
  // Noticed at the latest at the next timer (the refresh at half-life) in this tab, at once in
  // the other one (storage event).
  for (const [name, tab] of [["the tab that deleted the keys", first], ["the other tab", second]]) {
    await waitForEvent(tab, "ended", { since: removedAt, timeout: LIFETIME * 1000 }).catch((err) => {
      err.message = `${name}: ${err.message}`;
      throw err;
    });
  }
  // The backend's session is gone (whichever tab sent the end request).
  const deadline = Date.now() + 5000;
  while ((await serverSession(first)).exists && Date.now() < deadline) await sleep(100);
  assert.equal((await serverSession(first)).exists, false, "the server no longer has the session");
  const ended = await stats();
  t.diagnostic(`end requests at the server: ${ended.end - before.end}`);
  assert.ok(ended.end - before.end >= 1, "an end request reached the server");

  // A reload finds nothing to bring back; nor does the other tab, past the time the old token
  // would have been refreshed and then expired.
  await first.reload();
  await first.waitForFunction(() => window.pageLog?.some((e) => e.name === "onCaptureSessionNotFound"), null, { timeout: 15000 });
  await first.evaluate(() => window.captureSession.ready);
  await first.waitForFunction((t) => Date.now() > t + 1000, expiresAt, { timeout: LIFETIME * 1000 + 5000 });
  const later = await stats();
  assert.equal(later.refresh, ended.refresh, `no refresh after the logout; requests: ${context.backendRequests.join(", ")}`);
  assert.equal(later.start, ended.start, "no start after the logout");
  for (const [name, tab] of [["reloaded tab", first], ["other tab", second]]) {
    assert.notEqual((await helperState(tab)).state, "active", `${name} is not signed in`);
    assert.equal((await storedSession(tab)).token, null, `${name}: no token in storage`);
    const revived = (await helperEvents(tab)).filter((e) => e.t > removedAt && (e.type === "active" || e.type === "refreshed"));
    assert.deepEqual(revived, [], `${name}: nothing brought the session back`);
  }
  assert.equal(await first.evaluate(() => janrain.capture.ui.standIn.currentScreen()), "signIn");
  assert.equal((await serverSession(first)).exists, false, "still no server session");
  await done(context);
});

test("the page deletes the keys and navigates while the backend's end endpoint is down: the end is retried across page loads until confirmed, and nothing signs the user back in meanwhile", async (t) => {
  const context = await newContext();
  const page = await signInOnPage(context);
  const { expiresAt } = await helperState(page);
  const before = await stats();
  await server.admin.outage({ mode: "503", retryAfter: 1, endpoints: ["end"] });
  try {
    const removedAt = await page.evaluate((keys) => {
      keys.forEach((k) => localStorage.removeItem(k));
      return Date.now();
    }, PAGE_LOGOUT_KEYS);
    await page.reload(); // the page's own logout link: delete the keys, then navigate
    await page.waitForFunction(() => window.pageLog?.some((e) => e.name === "onCaptureSessionNotFound"), null, { timeout: 15000 });
    // The end is attempted (and refused) while the user is on the reloaded page.
    const deadline = Date.now() + 10000;
    while ((await stats()).end === before.end && Date.now() < deadline) await sleep(100);
    assert.ok((await stats()).end > before.end, "an end request reached the (failing) backend");
    assert.equal((await serverSession(page)).exists, true, "the outage kept the server session");
    // Another page load while the logout is still pending, past the old token's refresh time.
    await page.reload();
    await page.waitForFunction(() => window.pageLog?.some((e) => e.name === "onCaptureSessionNotFound"), null, { timeout: 15000 });
    await page.waitForFunction((t) => Date.now() > t, expiresAt, { timeout: LIFETIME * 1000 + 5000 });
    const pending = await stats();
    assert.equal(pending.refresh, before.refresh, `no refresh while the logout is pending; requests: ${context.backendRequests.join(", ")}`);
    assert.equal(pending.start, before.start, "no start while the logout is pending");
    assert.notEqual((await helperState(page)).state, "active", "not signed back in");
    assert.equal((await storedSession(page)).token, null, "no token in storage");
    t.diagnostic(`end requests refused during the outage: ${pending.end - before.end}`);
    assert.ok(pending.end - before.end >= 2, "the end was retried across the page loads");
    // The backend is back: the retried end is confirmed and the server forgets the session.
    await server.admin.outage({ mode: "off" });
    const confirmBy = Date.now() + 20000;
    while ((await serverSession(page)).exists && Date.now() < confirmBy) await sleep(200);
    assert.equal((await serverSession(page)).exists, false, `the retried end ended the server session; requests: ${context.backendRequests.join(", ")}`);
    const revived = (await helperEvents(page)).filter((e) => e.t > removedAt && (e.type === "active" || e.type === "refreshed"));
    assert.deepEqual(revived, [], "nothing brought the session back");
    const final = await stats();
    assert.equal(final.refresh, before.refresh, "no refresh at all after the logout");
  } finally {
    await server.admin.outage({ mode: "off" });
  }
  await done(context);
});

test("the page hands its own copy of the token to createCaptureSession on every load: adopted without a second start, and refreshed before it expires", async () => {
  const context = await newContext({ onload: "own-token" });
  const page = await signInOnPage(context);
  const before = await stats();
  await page.reload();
  await page.waitForFunction(() => window.pageLog?.some((e) => e.name === "onCaptureSessionCreated"), null, { timeout: 15000 });
  await page.waitForFunction(() => window.captureSession?.state === "active", null, { timeout: 10000 });
  const { expiresAt } = await helperState(page);
  assert.ok(expiresAt <= Date.now() + LIFETIME * 1000 + 2000, "the helper keeps the backend's expiry, not the widget's 24 h");
  const oldToken = (await storedSession(page)).token;
  await page.waitForFunction(
    (prev) => window.captureSession.state === "active" && window.captureSession.expiresAt > prev,
    expiresAt,
    { timeout: LIFETIME * 1000 + 5000, polling: 100 },
  );
  assert.ok(Date.now() < expiresAt, "refreshed before the token expired");
  const after = await stats();
  assert.equal(after.start, before.start, "no second start request for the page's own token");
  assert.equal(after.refresh - before.refresh, 1, `one refresh; requests: ${context.backendRequests.join(", ")}`);
  const stored = await storedSession(page);
  assert.ok(stored.token && stored.token !== oldToken, "the widget holds the refreshed token");
  assert.equal((await helperEvents(page, "ended")).length, 0, "the session never ended");
  await done(context);
});

test("expiry written by the page's own code (PHP gmdate without a leading zero, Date#toString) is read right after a reload", async (t) => {
  const context = await newContext();
  const page = await signInOnPage(context);
  const formats = {
    // PHP: gmdate('D, j M Y H:i:s') . ' GMT', e.g. "Mon, 3 Feb 2014 09:05:01 GMT". The day lacks
    // its leading zero only from the 1st to the 9th of a month; on other days this string is a
    // plain HTTP date. The diagnostic shows which one a run wrote.
    php: (ms) => {
      const d = new Date(ms);
      const day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][d.getUTCDay()];
      const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.getUTCMonth()];
      const two = (n) => String(n).padStart(2, "0");
      return `${day}, ${d.getUTCDate()} ${month} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`;
    },
    toString: (ms) => new Date(ms).toString(),
  };
  for (const [name, format] of Object.entries(formats)) {
    // Outside the refresh window, so that the reload is not also a refresh.
    await page.waitForFunction(() => window.captureSession.expiresAt - Date.now() > 7000, null, { timeout: LIFETIME * 1000 + 5000 });
    const { expiresAt } = await helperState(page);
    const written = await page.evaluate(
      ([fn, ms]) => {
        const value = new Function("ms", `return (${fn})(ms)`)(ms);
        localStorage.setItem("janrainCaptureToken_Expires", value);
        return value;
      },
      [format.toString(), Math.floor(expiresAt / 1000) * 1000],
    );
    t.diagnostic(`${name}: the page wrote ${JSON.stringify(written)}`);
    await page.reload();
    const adopted = await waitForEvent(page, "active", { timeout: 10000 });
    assert.equal(adopted.detail.source, "storage", `${name}: the reload adopted the stored session`);
    assert.equal((await helperState(page)).state, "active", `${name}: active after the reload`);
    const read = adopted.detail.expiresAt;
    assert.ok(Math.abs(read - expiresAt) < 1500, `${name}: the expiry was read right (off by ${read - expiresAt} ms)`);
    const startup = (await helperEvents(page, "refreshed")).filter((e) => e.detail.trigger === "startup");
    assert.deepEqual(startup, [], `${name}: a live token was not refreshed at start-up`);
    assert.equal(await page.evaluate(() => janrain.capture.ui.standIn.currentScreen()), "editProfile", `${name}: the widget found the session`);
  }
  await done(context);
});

// ---- 6: refresh before expiry, and sign-out in one tab ends all ----------------------------------

test("template page, two tabs: the token is refreshed before it expires (despite accessTokenLifeHours: 24), and signing out in one tab ends both", async () => {
  const context = await newContext({ helper: "tag-before", onload: "global" });
  const first = await signInOnPage(context);
  const second = await openPage(context);
  await second.waitForFunction(() => window.captureSession.state === "active", null, { timeout: 10000 });
  const old = await helperState(first);
  const oldToken = (await storedSession(first)).token;
  const before = await stats();
  context.backendRequests.push("(second tab active)");

  // Wait for the next expiry in the first tab, whichever tab ran the refresh.
  await first.waitForFunction(
    (prev) => window.captureSession.state === "active" && window.captureSession.expiresAt > prev,
    old.expiresAt,
    { timeout: LIFETIME * 1000 + 5000, polling: 100 },
  );
  const refreshedAt = Date.now();
  assert.ok(refreshedAt < old.expiresAt, "refreshed before the old token expired");
  await second.waitForFunction((prev) => window.captureSession.expiresAt > prev, old.expiresAt, { timeout: 3000 });
  const afterRefresh = await stats();
  assert.equal(afterRefresh.refresh - before.refresh, 1, `one refresh request for two tabs; requests: ${context.backendRequests.join(", ")}`);
  const [a, b] = [await helperState(first), await helperState(second)];
  assert.equal(b.state, "active");
  assert.ok(Math.abs(a.expiresAt - b.expiresAt) < 1500, `both tabs know the new expiry (off by ${a.expiresAt - b.expiresAt} ms)`);
  // What each tab told the page about the new token carries the true expiry (not the old one,
  // nor the widget's 24 h).
  for (const [name, tab, state] of [["first tab", first, a], ["second tab", second, b]]) {
    const news = (await helperEvents(tab)).filter((e) => (e.type === "active" || e.type === "refreshed") && e.detail.expiresAt > old.expiresAt);
    assert.ok(news.length >= 1, `${name} announced the new token: ${JSON.stringify((await helperEvents(tab)).map((e) => [e.type, e.detail]))}`);
    const last = news[news.length - 1].detail.expiresAt;
    assert.ok(Math.abs(last - state.expiresAt) < 1500, `${name}'s event has the true expiry (off by ${last - state.expiresAt} ms)`);
  }
  const token = (await storedSession(first)).token;
  assert.ok(token && token !== oldToken, "a new token is stored");
  for (const tab of [first, second]) {
    assert.equal(await tab.evaluate(() => janrain.capture.ui.hasActiveSession()), true, "the widget has a live session");
  }
  await watch.sweep(context);

  // Sign out with the widget's button in the second tab: both tabs end, the server forgets it.
  const since = await second.evaluate(() => Date.now());
  await second.click("#capture_signOut");
  for (const tab of [second, first]) {
    await waitForEvent(tab, "ended", { since, timeout: 5000 });
    await tab.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 5000 });
    assert.equal(await tab.evaluate(() => janrain.capture.ui.hasActiveSession()), false);
  }
  const deadline = Date.now() + 5000;
  while ((await serverSession(first)).exists && Date.now() < deadline) await sleep(100);
  assert.equal((await serverSession(first)).exists, false, "the server no longer has the session");
  assert.ok((await stats()).end - afterRefresh.end >= 1, "an end request reached the server");
  assert.ok((await pageLog(first, "onCaptureSessionEnded")).length >= 1, "the page's own handler heard the sign-out");
  await done(context);
});

// ---- more of what real pages do -----------------------------------------------------------------

/**
 * Paths of every request the browser sends under `prefix` (on any origin), redirects included
 * (Playwright's routes do not see a redirect's second request; its request events do). They
 * reach the real server, which has no such path.
 */
function requestsTo(context, prefix) {
  const seen = [];
  context.on("request", (req) => {
    const p = new URL(req.url()).pathname;
    if (p.startsWith(prefix)) seen.push(p);
  });
  return seen;
}

test("signing in again in one tab brings the other, ended tab back to active", async () => {
  const context = await newContext();
  const first = await signInOnPage(context);
  const second = await openPage(context);
  await second.waitForFunction(() => window.captureSession.state === "active", null, { timeout: 10000 });
  const endedAt = await first.evaluate(() => Date.now());
  await first.click("#capture_signOut");
  for (const tab of [first, second]) await waitForEvent(tab, "ended", { since: endedAt, timeout: 5000 });
  await second.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 5000 });

  const before = await stats();
  await signIn(second);
  const back = await waitForEvent(first, "active", { since: endedAt, timeout: 5000 });
  assert.ok(["tab", "storage"].includes(back.detail.source), `the ended tab heard it from the other tab (source ${back.detail.source})`);
  for (const [name, tab] of [["the tab that signed in", second], ["the ended tab", first]]) {
    await tab.waitForFunction(() => window.captureSession.state === "active", null, { timeout: 5000 }).catch((err) => {
      err.message = `${name}: ${err.message}`;
      throw err;
    });
  }
  const [a, b] = [await helperState(first), await helperState(second)];
  assert.ok(Math.abs(a.expiresAt - b.expiresAt) < 1500, `both tabs know the new expiry (off by ${a.expiresAt - b.expiresAt} ms)`);
  assert.equal((await stats()).start - before.start, 1, "one start request for the new sign-in");
  assert.equal((await serverSession(first)).exists, true, "the server has the new session");
  await done(context);
});

test("a polluted Object.prototype (startUrl, endUrl, refreshUrl, allowedOrigins) sends nothing elsewhere", async () => {
  const context = await newContext({
    // The tag names no end URL: a config read that looks past own properties would find one.
    helperTag: `<script src="/dist/capture-session.js" data-refresh-url="/capture-session/refresh"
          data-start-url="/capture-session/start"></script>`,
    prelude: `(function () {
  var evil = "http://localhost:" + location.port + "/evil";
  Object.prototype.refreshUrl = evil + "/refresh";
  Object.prototype.startUrl = evil + "/start";
  Object.prototype.endUrl = evil + "/end";
  Object.prototype.allowedOrigins = ["http://localhost:" + location.port];
})();`,
  });
  const stolen = requestsTo(context, "/evil/");
  const page = await signInOnPage(context);
  assert.equal(await page.evaluate(() => ({}).endUrl !== undefined), true, "the prototype really is polluted");
  const before = await stats();
  await page.evaluate(() => window.captureSession.refresh());
  assert.equal((await stats()).refresh - before.refresh, 1, "the refresh went to the configured refreshUrl");
  const since = await page.evaluate(() => Date.now());
  await page.click("#capture_signOut");
  await waitForEvent(page, "ended", { since, timeout: 5000 });
  assert.deepEqual(stolen, [], "no request went to the prototype's URLs");
  assert.ok(context.backendRequests.every((r) => r.startsWith("/capture-session/")), context.backendRequests.join(", "));
  await done(context);
});

test("a 307 from the backend's refresh endpoint is a failed refresh: the token is not replayed to the redirect target", async () => {
  const context = await newContext();
  const page = await signInOnPage(context);
  const followed = requestsTo(context, "/evil/");
  await context.route(
    (url) => url.pathname === "/capture-session/refresh",
    (route) => route.fulfill({ status: 307, headers: { Location: `http://localhost:${server.port}/evil/refresh` }, body: "" }),
  );
  const since = await page.evaluate(() => Date.now());
  const outcome = await page.evaluate(() => window.captureSession.refresh().then(() => "resolved", (e) => `rejected ${e && e.code}`));
  const failed = await waitForEvent(page, "refresh-failed", { since, timeout: 5000 });
  assert.ok(failed.detail.reason, `refresh-failed says why (${JSON.stringify(failed.detail)})`);
  assert.notEqual(outcome, "resolved", "refresh() did not succeed through a redirect");
  assert.deepEqual(followed, [], "the redirect was not followed");
  // Control: the browser's default (redirect: "follow") would have followed it.
  await page.evaluate(() => fetch("/capture-session/refresh", { method: "POST", body: "{}" }).catch(() => null));
  assert.deepEqual(followed, ["/evil/refresh"], "a plain fetch follows the same 307");
  await done(context);
});

test("no token, code or session id appears in the browser console or the server log", async () => {
  assert.ok(watch.secrets.size >= 3, `the suite saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(server.log());
});
