// Parts 2-4, in headless Chromium (playwright-core, /usr/bin/chromium) against
// `capture-session-server --simulate` on 127.0.0.1:
//   2. start-up: the page's first script → "stored session known" with a valid
//      stored session, BENCH_PAGE_LOADS (50) page loads, warm and cold, for
//      capture-session (ESM package and script tag) and oidc-client-ts,
//      okta-auth-js, auth0-spa-js, msal-browser, plus the split of
//      capture-session's time into phases (lib/startup.mjs explains how)
//   3. helper overhead per refresh: refresh reply handed to the page →
//      createCaptureSession called (pages/fetch-probe.js, pages/create-probe.js)
//   4. tab fan-out: N = 1, 5, 10, 20 tabs at expiry, refresh requests that reach
//      the server, tabs that got the new token, logout propagation time to the
//      last tab
// The server serves the helper's files (/pkg/, /dist/), and, from a tree
// built here (--www), the benchmark's pages at /bench/ and the peers' bundles at
// /peers/. Parts 3 and 4 additionally route /bench/ through the browser context,
// to add COOP/COEP headers (performance.now() then has its fine,
// cross-origin-isolated resolution); part 2 does not route anything, because
// routing disables Chromium's HTTP cache.
// BENCH_BROWSER_PARTS ("startup refresh fanout") picks what runs.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { BENCH_DIR, DIST_DIR, PKG_DIR, WORK_DIR, notMeasured, summarize, writePart } from "./lib/measure.mjs";
import { measureStartup, prepareStartupFiles, seedMsalWith, startupVariants } from "./lib/startup.mjs";
import { freePort, request, serverBinary, start, stop, waitForPort } from "./lib/procs.mjs";

const PAGE_LOADS = Number(process.env.BENCH_PAGE_LOADS || 50);
const REFRESHES = Number(process.env.BENCH_REFRESHES || 50);
const FANOUT = (process.env.BENCH_FANOUT || "1,5,10,20").split(",").map(Number);
const BROWSER_PARTS = (process.env.BENCH_BROWSER_PARTS || "startup refresh fanout").split(/[\s,]+/).filter(Boolean);
const WWW_DIR = join(WORK_DIR, "www");
const TOKEN_LIFETIME = 20; // seconds: the simulator's tokens in this part
const REFRESH_AHEAD = 8; // seconds: the helper refreshes this long before expiry
const PROPAGATION_WINDOW_MS = 2000; // tabs should hold the new token this soon after the refresh
const DUPLICATE_WINDOW_MS = 6000; // < TOKEN_LIFETIME - REFRESH_AHEAD: the next expiry's refresh is later
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CHROME_FLAGS = [
  "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
  "--disable-background-networking", "--disable-component-update", "--no-first-run",
  "--disable-sync", "--disable-quic",
];
// Many tabs at once in one headless browser: without these, every tab but one counts as
// hidden and its timers are throttled (as in a real browser's background tabs).
const NO_BACKGROUND_THROTTLING = [
  "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];
const PAGES = join(BENCH_DIR, "pages");
const CONTENT_TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

// --- What to load ----------------------------------------------------------------
function esmEntry() {
  const pjPath = join(PKG_DIR, "package.json");
  if (!existsSync(pjPath)) return null;
  const pj = JSON.parse(readFileSync(pjPath, "utf8"));
  const pick = (x) => (typeof x === "string" ? x : x && (pick(x.browser) || pick(x.import) || pick(x.default)));
  const rel = pick(pj.exports?.["."]) || pj.module || pj.main;
  return rel ? `/pkg/${rel.replace(/^\.\//, "")}` : null;
}

// --- Server and browser -------------------------------------------------------------
async function startServer() {
  const bin = serverBinary();
  if (!existsSync(bin)) throw new Error(`server binary missing (${bin})`);
  const port = await freePort();
  const child = start("browser-server", bin, [
    "--simulate", "--listen", `127.0.0.1:${port}`,
    "--sim-token-lifetime", String(TOKEN_LIFETIME), "--reuse-window", "0",
    // Many sessions of the one demo user: no per-user bound (default 20).
    "--max-sessions-per-user", "0",
    // Every tab is on one address: no per-address rate limit (default 5/s).
    "--rate-limit-per-second", "0",
    "--pkg", PKG_DIR, "--dist", DIST_DIR, "--www", WWW_DIR,
  ], { RUST_LOG: "warn" });
  await waitForPort(port, child);
  return { child, origin: `http://127.0.0.1:${port}` };
}

/**
 * A browser context for parts 3 and 4: /bench/ comes from the context itself,
 * with COOP/COEP, so that the page is cross-origin isolated and performance.now()
 * has its 5 µs resolution. (Routing turns Chromium's HTTP cache off, which does
 * not matter for a page loaded once; part 2 routes nothing.)
 */
async function routedContext(browser, server) {
  const context = await browser.newContext();
  await context.route(`${server.origin}/bench/**`, (route) => {
    const name = new URL(route.request().url()).pathname.slice("/bench/".length);
    const file = join(PAGES, name);
    if (!/^[\w.-]+$/.test(name) || !existsSync(file)) return route.fulfill({ status: 404, body: "not found" });
    return route.fulfill({
      status: 200,
      headers: {
        "content-type": CONTENT_TYPES[name.slice(name.lastIndexOf("."))] ?? "application/octet-stream",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
        "cache-control": "no-store",
      },
      body: readFileSync(file),
    });
  });
  return context;
}

/** Signs the demo user in at the simulator (as the Registration UI would). */
async function signIn(server) {
  const res = await request(`${server.origin}/sim/oauth/auth_native_traditional`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      client_id: "capture-session-demo", flow: "standard", flow_version: "1", locale: "en-US",
      redirect_uri: `${server.origin}/`, response_type: "token", form: "signInForm",
      signInEmailAddress: "demo@example.com", currentPassword: "demo",
    }).toString(),
  });
  let json = {};
  try { json = JSON.parse(res.body); } catch { /* reported below */ }
  if (json.stat !== "ok" || !json.access_token || !json.capture_user?.uuid) {
    throw new Error(`simulator sign-in failed (${res.status} ${json.error ?? ""})`.trim());
  }
  return { token: json.access_token, uuid: json.capture_user.uuid };
}

/** Starts a backend session inside a browser context (its cookie jar gets the cookie). */
async function startBackendSession(context, server, user) {
  const res = await context.request.post(`${server.origin}/capture-session/start`, {
    headers: { "content-type": "application/json", "x-capture-session": "1", origin: server.origin },
    data: JSON.stringify({ mode: "token", uuid: user.uuid, accessToken: user.token }),
  });
  if (res.status() !== 200) throw new Error(`start answered ${res.status()}`);
  const reply = await res.json();
  return { expiresIn: reply.expiresIn };
}

async function waitDone(page, timeout = 15000) {
  await page.waitForFunction(() => window.__bench && window.__bench.done === true, null, { timeout });
  const error = await page.evaluate(() => window.__bench.error);
  if (error) throw new Error(`the page reported ${error}`);
}

// --- 2. Startup ---------------------------------------------------------------------
async function startup(browser, server, entry, user, bundles) {
  const variants = await startupVariants({
    origin: server.origin,
    esmEntry: entry,
    captureToken: user.token,
    bundles,
    seedMsal: (seed) => seedMsalWith(browser, server.origin, seed),
  });
  const results = await measureStartup(browser, variants, { loads: PAGE_LOADS, log: (m) => console.log(`browser: ${m}`) });
  return {
    libraries: variants.map((v) => ({
      id: v.id, label: v.label, api: v.api, bundleGzip: v.bundleGzip ?? null, bundleRaw: v.bundleRaw ?? null,
      ...results[v.id],
    })),
    loads: PAGE_LOADS,
    note:
      "Every library from the same bench server (capture-session-server on 127.0.0.1, static files with Cache-Control: no-cache, so warm loads revalidate: 304s on the wire) on the same page setup: " +
      "t0 is performance.now() first thing in the page's first script, before the library's import or script tag; the end is when the library has reported the stored session through its own API. " +
      "The stored session (valid for an hour, in the library's own storage format) is in the browser profile before the load; each load is checked: the library must report that session and make no request other than fetching its own files. " +
      `"warm": one tab per library reloaded ${PAGE_LOADS} times after a first load; "cold": a new browser profile per load; loads go round-robin over the libraries. ` +
      "\"beyond the network\": the span minus the time one of the library's files was on the wire (Resource Timing, overlaps counted once). " +
      "The peers are esbuild bundles (minified ESM) of the exports the page uses. The pages are not cross-origin isolated here (no routing, see bench/lib/startup.mjs), so performance.now() has 0.1 ms resolution.",
  };
}

// --- 3. Refresh overhead ------------------------------------------------------------
async function refreshOverhead(browser, server, entry) {
  const context = await routedContext(browser, server);
  try {
    const user = await signIn(server); // the simulator's tokens are short-lived here
    await startBackendSession(context, server, user);
    await context.addInitScript(({ token, expires }) => {
      if (!localStorage.getItem("janrainCaptureToken")) {
        localStorage.setItem("janrainCaptureToken", token);
        localStorage.setItem("janrainCaptureToken_Expires", expires);
      }
    }, { token: user.token, expires: new Date(Date.now() + 3600e3).toUTCString() });
    const page = await context.newPage();
    await page.goto(`${server.origin}/bench/helper.html?entry=${encodeURIComponent(entry)}`);
    await waitDone(page);
    const state = await page.evaluate(() => window.__bench.readyState);
    if (state !== "active") throw new Error(`the helper's state after ready was "${state}", not "active"`);
    const overheads = [];
    for (let i = 0; i < REFRESHES; i++) {
      const r = await page.evaluate(async () => {
        const b = window.__bench;
        const replies = b.refreshReplies.length;
        const calls = b.createCalls.length;
        await b.session.refresh();
        // createCaptureSession may come after refresh() resolves: give it a moment.
        const until = performance.now() + 1000;
        while (b.createCalls.length === calls && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
        const reply = b.refreshReplies[replies];
        const call = b.createCalls[calls];
        return { reply: reply && reply.at, status: reply && reply.status, call, isolated: self.crossOriginIsolated };
      });
      if (r.reply === undefined) throw new Error("refresh() sent no request to the refresh endpoint");
      if (r.status !== 200) throw new Error(`the refresh endpoint answered ${r.status}`);
      if (r.call === undefined) throw new Error("createCaptureSession was not called after a refresh");
      overheads.push(r.call - r.reply);
    }
    const isolated = await page.evaluate(() => self.crossOriginIsolated);
    return {
      ...summarize(overheads),
      crossOriginIsolated: isolated,
      note:
        `${REFRESHES} refreshes with \`session.refresh()\` on one page with a Registration UI stand-in, each answered by the server (new token from the simulator). ` +
        `Start: a fetch wrapper stamps performance.now() once the refresh reply's body has arrived; end: the stand-in's createCaptureSession stamps it when called. ` +
        (isolated ? "The page is cross-origin isolated (timer resolution 5 µs)." : "The page is not cross-origin isolated (timer resolution 100 µs)."),
    };
  } finally {
    await context.close();
  }
}

// --- 4. Tab fan-out ---------------------------------------------------------------
/** Refresh requests that reached the server (server/README.md: GET /capture-session/_admin/stats). */
async function serverRefreshCount(server) {
  const res = await request(`${server.origin}/capture-session/_admin/stats`);
  if (res.status !== 200) return null;
  const n = JSON.parse(res.body).refresh;
  return typeof n === "number" ? n : null;
}

/** Waits until the server's refresh count exceeds `count`; returns when it saw that (ms), or null. */
async function nextServerRefresh(server, count, deadline) {
  while (Date.now() < deadline) {
    if ((await serverRefreshCount(server)) > count) return Date.now();
    await sleep(20);
  }
  return null;
}

async function fanoutOne(browser, server, entry, tabs) {
  const context = await routedContext(browser, server);
  try {
    // A signed-in visitor (backend session + the widget's stored token), then N tabs.
    const atStart = await serverRefreshCount(server);
    if (atStart === null) throw new Error("the server has no stats endpoint (GET /capture-session/_admin/stats)");
    const user = await signIn(server);
    const startedAt = Date.now();
    const { expiresIn } = await startBackendSession(context, server, user);
    const lifetime = Number(expiresIn) || TOKEN_LIFETIME;
    const cycleMs = (lifetime - Math.min(REFRESH_AHEAD, lifetime / 2)) * 1000;
    await context.addInitScript(({ token, expires }) => {
      if (!sessionStorage.getItem("bench-seeded")) {
        sessionStorage.setItem("bench-seeded", "1");
        if (!localStorage.getItem("janrainCaptureToken")) {
          localStorage.setItem("janrainCaptureToken", token);
          localStorage.setItem("janrainCaptureToken_Expires", expires);
        }
      }
    }, { token: user.token, expires: new Date(startedAt + lifetime * 1000).toUTCString() });
    const config = encodeURIComponent(JSON.stringify({ refreshAheadSeconds: REFRESH_AHEAD }));
    const pages = [];
    for (let i = 0; i < tabs; i++) {
      const page = await context.newPage();
      page.refreshSends = [];
      page.on("request", (req) => {
        if (req.method() === "POST" && new URL(req.url()).pathname === "/capture-session/refresh") page.refreshSends.push(Date.now());
      });
      await page.goto(`${server.origin}/bench/helper.html?entry=${encodeURIComponent(entry)}&config=${config}`);
      pages.push(page);
    }
    for (const page of pages) await waitDone(page);
    const states = await Promise.all(pages.map((p) => p.evaluate(() => window.__bench.session.state)));
    if (states.some((st) => st !== "active")) throw new Error(`not every tab adopted the stored session (${states.join(",")})`);

    // Start on a quiet moment: once the expiry that was due while the tabs opened is
    // refreshed (or right away if none was), so every tab is open for the measured one.
    let before = await serverRefreshCount(server);
    if (before > atStart || Date.now() > startedAt + cycleMs - 1000) {
      if ((await nextServerRefresh(server, atStart, startedAt + (lifetime + 5) * 1000)) === null) {
        throw new Error("the stored session was never refreshed");
      }
      await sleep(PROPAGATION_WINDOW_MS);
      before = await serverRefreshCount(server);
    }
    const opened = Date.now();
    const firstExpiry = Math.max(...(await Promise.all(pages.map((p) => p.evaluate(() => window.__bench.session.expiresAt ?? 0)))));

    // The measured expiry: the first refresh to reach the server...
    const firstAt = await nextServerRefresh(server, before, Date.now() + cycleMs + 10000);
    if (firstAt === null) throw new Error(`no refresh reached the server within ${cycleMs / 1000 + 10} s`);
    // ...every tab should hold the new token soon after...
    await sleep(PROPAGATION_WINDOW_MS);
    const expiries = await Promise.all(pages.map((p) => p.evaluate(() => window.__bench.session.expiresAt)));
    const refreshed = expiries.filter((e) => e && e > firstExpiry).length;
    // ...and any further request before the new token's own refresh time is a duplicate.
    await sleep(Math.max(0, firstAt + DUPLICATE_WINDOW_MS - Date.now()));
    const after = await serverRefreshCount(server);
    const refreshRequests = after - before;
    const sends = pages.flatMap((p) => p.refreshSends.filter((t) => t >= opened)).sort((x, y) => x - y);
    const refreshSendsByTab = pages.map((p) => p.refreshSends.filter((t) => t >= opened).length);

    // Logout in the first tab; when does the last tab hear of it?
    const endAt = await pages[0].evaluate(async () => {
      const at = performance.timeOrigin + performance.now();
      await window.__bench.session.end();
      return at;
    });
    const endDeadline = Date.now() + 5000;
    let endedAt = [];
    while (Date.now() < endDeadline) {
      endedAt = await Promise.all(pages.map((p) => p.evaluate(() => window.__bench.events.find((e) => e.type === "ended")?.at ?? null)));
      if (endedAt.every((t) => t !== null)) break;
      await sleep(50);
    }
    const ended = endedAt.filter((t) => t !== null);
    return {
      tabs,
      refreshRequests,
      tabsRefreshed: refreshed,
      tabsEnded: ended.length,
      logoutPropagationMs: ended.length === tabs ? Math.max(...ended) - endAt : null,
      refreshSendsByTab,
      refreshSendOffsetsMs: sends.map((t) => t - sends[0]),
      expiryShiftAfterRefreshMs: expiries.map((e) => (e ? e - firstExpiry : null)),
    };
  } finally {
    await context.close();
  }
}

async function fanout(browser, server, entry) {
  const rows = [];
  for (const tabs of FANOUT) {
    try {
      rows.push(await fanoutOne(browser, server, entry, tabs));
    } catch (e) {
      rows.push({ tabs, ...notMeasured(e.message) });
    }
    console.log(`browser: fan-out ${JSON.stringify(rows.at(-1))}`);
  }
  return {
    rows,
    note:
      `A signed-in visitor (backend session and the widget's stored token) opens N tabs in one browser profile; the token lives ${TOKEN_LIFETIME} s (simulator), refreshAheadSeconds ${REFRESH_AHEAD}. ` +
      "Measured: the first expiry that comes due with every tab open (if one came due while the tabs were opening, the next). " +
      `Refresh requests are counted at the server (GET /capture-session/_admin/stats) from a quiet moment before it until ${DUPLICATE_WINDOW_MS / 1000} s after its first refresh arrived (the next expiry's refresh is due later); ` +
      `"tabs with the new token": tabs whose expiresAt moved forward within ${PROPAGATION_WINDOW_MS / 1000} s of it. ` +
      "Logout: `session.end()` in the first tab; propagation lasts until the last tab's `ended` event (performance.timeOrigin + now(), comparable across tabs). " +
      (process.env.BENCH_THROTTLE ? "Chromium's background-tab throttling on (its default)." : "Chromium's background-tab timer throttling off, as in the project's e2e tests (every tab's timers run on time)."),
  };
}

// --- Run ----------------------------------------------------------------------------
async function guarded(label, fn) {
  try {
    const r = await fn();
    console.log(`browser: ${label} done`);
    return r;
  } catch (e) {
    console.log(`browser: ${label} not measured: ${e.message}`);
    return notMeasured(e.message);
  }
}

const entry = esmEntry();
if (!entry) {
  writePart("browser", notMeasured("pkg/package.json missing: `npm run build` produced no ESM package"));
  process.exit(0);
}
let server;
let browser;
try {
  const bundles = await prepareStartupFiles(WWW_DIR).catch((e) => ({ notMeasured: e.message }));
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROME_BIN || "/usr/bin/chromium",
    args: [...CHROME_FLAGS, ...(process.env.BENCH_THROTTLE ? [] : NO_BACKGROUND_THROTTLING)],
  });
  const user = await signIn(server);
  const out = { chromium: `Chromium ${browser.version()}`, entry };
  const skipped = () => notMeasured(`skipped (BENCH_BROWSER_PARTS="${BROWSER_PARTS.join(" ")}")`);
  out.startup = BROWSER_PARTS.includes("startup")
    ? await guarded("startup", () => {
        if (bundles.notMeasured) throw new Error(`could not bundle the peers: ${bundles.notMeasured}`);
        return startup(browser, server, entry, user, bundles);
      })
    : skipped();
  out.refreshOverhead = BROWSER_PARTS.includes("refresh") ? await guarded("refresh overhead", () => refreshOverhead(browser, server, entry)) : skipped();
  out.fanout = BROWSER_PARTS.includes("fanout") ? await guarded("fan-out", () => fanout(browser, server, entry)) : skipped();
  writePart("browser", out);
} catch (e) {
  writePart("browser", notMeasured(e.message));
} finally {
  if (browser) await browser.close();
  if (server) await stop(server.child);
}
