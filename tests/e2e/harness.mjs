// End-to-end harness: starts the real `capture-session-server --simulate` on a free loopback
// port with short token lifetimes, drives Debian's Chromium with playwright-core, and watches
// everything that could leak a token (server stdout/stderr, every console message of every page).
//
// Each test file gets its own server (fresh simulator, fresh counters) and browser.
// Test output never shows a token: compare tokens with `assert.ok(a === b, "message")` (a failed
// assert.equal would print both values), and read them only inside node, never into messages.
//
// Env: CAPTURE_SESSION_SERVER_BIN (required: the built server binary), CHROME_BIN (default
// /usr/bin/chromium), E2E_VERBOSE=1 to echo the server log.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const CHROME_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
  "--disable-quic",
  // Many tabs at once in one headless window: keep every tab's timers running on time.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the reference server with the simulator.
 * @param {{tokenLifetime?: number, args?: string[]}} opts
 */
export async function startServer({ tokenLifetime = 10, args = [] } = {}) {
  const bin = process.env.CAPTURE_SESSION_SERVER_BIN;
  if (!bin) throw new Error("set CAPTURE_SESSION_SERVER_BIN to the capture-session-server binary (scripts/e2e does)");
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const argv = [
    "--simulate",
    "--listen",
    `127.0.0.1:${port}`,
    "--sim-token-lifetime",
    String(tokenLifetime),
    // The tests sign the demo user in many times: no per-user session bound (default 20);
    // many tabs of one address refresh at once: no per-address rate limit (default 5/s).
    "--max-sessions-per-user",
    "0",
    "--rate-limit-per-second",
    "0",
    ...args,
  ];
  // The simulator's admin routes want this secret in X-Sim-Admin-Secret.
  const simAdminSecret = randomBytes(16).toString("hex");
  // Debug level: the leak check reads everything the server (and its libraries) would log.
  const child = spawn(bin, argv, {
    cwd: ROOT,
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || "debug",
      NO_COLOR: "1",
      CAPTURE_SESSION_SIM_ADMIN_SECRET: simAdminSecret,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const onData = (chunk) => {
    const text = chunk.toString("utf8");
    log += text;
    if (process.env.E2E_VERBOSE) process.stderr.write(text);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  let exited = null;
  child.on("exit", (code, signal) => {
    exited = { code, signal };
  });

  const deadline = Date.now() + 15000;
  for (;;) {
    if (exited) throw new Error(`capture-session-server exited at start (${JSON.stringify(exited)}):\n${log}`);
    try {
      const res = await fetch(`${baseUrl}/healthz`);
      if (res.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`capture-session-server did not answer /healthz within 15 s:\n${log}`);
    }
    await sleep(100);
  }

  async function adminCall(method, urlPath, body) {
    const headers = { "X-Sim-Admin-Secret": simAdminSecret };
    if (body) headers["Content-Type"] = "application/json";
    const res = await fetch(baseUrl + urlPath, {
      method,
      headers,
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!res.ok) throw new Error(`${method} ${urlPath}: HTTP ${res.status}`);
    return res.status === 204 ? null : res.json();
  }

  return {
    baseUrl,
    port,
    tokenLifetime,
    log: () => log,
    // The server's test controls (server/README.md): counters, outages, token revocation.
    admin: {
      stats: () => adminCall("GET", "/capture-session/_admin/stats"),
      async refreshCount() {
        return (await adminCall("GET", "/capture-session/_admin/stats")).refresh;
      },
      outage: (spec) => adminCall("POST", "/capture-session/_admin/outage", spec),
      revokeTokens: (email = "demo@example.com") => adminCall("POST", "/sim/_admin/revoke", { email }),
      /** The simulator's admin routes (server/README.md), e.g. ("GET", "/sim/_admin/stats"). */
      sim: (method, urlPath, body) => adminCall(method, urlPath, body),
    },
    async stop() {
      if (exited) return;
      const done = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await done;
      clearTimeout(timer);
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROME_BIN || "/usr/bin/chromium",
    args: CHROME_FLAGS,
  });
}

// Runs in every page before its own scripts: records the helper's window events and CSP
// violations, with the page's clock. Event details never carry tokens (contract), so keeping
// them is safe; the leak check verifies that too.
function pageProbe() {
  window.__e2e = { events: [], csp: [] };
  for (const type of ["active", "refreshed", "refresh-failed", "ended", "warning"]) {
    window.addEventListener("capture-session:" + type, (ev) => {
      window.__e2e.events.push({ type, detail: ev.detail ?? null, t: Date.now() });
    });
  }
  document.addEventListener("securitypolicyviolation", (ev) => {
    window.__e2e.csp.push({ directive: ev.violatedDirective, blocked: String(ev.blockedURI) });
  });
}

const TOKEN_FIELDS = ["accessToken", "access_token", "refresh_token", "authorizationCode", "authorization_code", "code"];

/**
 * Collects, across the whole test file, every secret the browser saw (from request and reply
 * bodies, localStorage and cookies) and every console message, for the leak check.
 */
export class Watch {
  constructor() {
    this.secrets = new Set();
    this.console = [];
  }

  noteSecret(value) {
    if (typeof value === "string" && value.length >= 8) this.secrets.add(value);
  }

  noteBody(text) {
    if (!text) return;
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      try {
        body = Object.fromEntries(new URLSearchParams(text));
      } catch {
        return;
      }
    }
    if (!body || typeof body !== "object") return;
    for (const field of TOKEN_FIELDS) this.noteSecret(body[field]);
  }

  async newContext(browser, server) {
    const context = await browser.newContext({ baseURL: server.baseUrl, viewport: { width: 1280, height: 900 } });
    await context.addInitScript(pageProbe);
    context.on("console", (msg) => {
      this.console.push(`[${msg.type()}] ${msg.text()}`);
    });
    context.on("weberror", (err) => {
      this.console.push(`[pageerror] ${err.error().message}`);
    });
    context.on("request", (req) => {
      const url = new URL(req.url());
      if (url.pathname.startsWith("/capture-session/") || url.pathname.startsWith("/sim/")) this.noteBody(req.postData());
    });
    context.on("response", async (res) => {
      const url = new URL(res.url());
      if (!url.pathname.startsWith("/capture-session/") && !url.pathname.startsWith("/sim/")) return;
      try {
        this.noteBody(await res.text());
      } catch {
        /* body gone (page closed, aborted request) */
      }
    });
    return context;
  }

  /** Records the live tokens of the context (localStorage) and its cookies (session ids). */
  async sweep(context) {
    for (const page of context.pages()) {
      try {
        const token = await page.evaluate(() => localStorage.getItem("janrainCaptureToken"));
        this.noteSecret(token);
      } catch {
        /* page navigating or closed */
      }
    }
    for (const cookie of await context.cookies()) this.noteSecret(cookie.value);
  }

  /** Throws when any recorded secret appears in the server log or a console message. */
  assertNoLeaks(serverLog) {
    const consoleText = this.console.join("\n");
    const leaks = [];
    for (const secret of this.secrets) {
      if (serverLog.includes(secret)) leaks.push(`server log contains a secret of ${secret.length} chars`);
      if (consoleText.includes(secret)) leaks.push(`browser console contains a secret of ${secret.length} chars`);
    }
    if (leaks.length) throw new Error(leaks.join("\n"));
  }
}

// ---- page helpers ----------------------------------------------------------------------------

/** Opens the demo (script-tag variant by default) and waits until the widget has started. */
export async function openDemo(context, { variant = "tag", query = "", helperOptional = false } = {}) {
  const page = await context.newPage();
  const base = variant === "vite" ? "/dist-vite/" : "/";
  await page.goto(base + (query ? `?${query}` : ""));
  await page.waitForFunction(() => window.janrain?.capture?.ui?.standIn?.currentScreen?.() != null, null, { timeout: 10000 });
  if (!helperOptional) {
    await page
      .waitForFunction(() => typeof window.captureSession?.state === "string", null, { timeout: 10000 })
      .catch(() => {
        throw new Error(`the helper did not attach on ${base} (is dist/ or pkg/ built? was it being rebuilt?)`);
      });
  }
  return page;
}

export async function helperEvents(page, type) {
  const events = await page.evaluate(() => window.__e2e.events);
  return type ? events.filter((e) => e.type === type) : events;
}

/** Waits for a helper event (after `since`, page clock) matching `pred`; returns it. */
export async function waitForEvent(page, type, { since = 0, pred = () => true, timeout = 15000 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const events = await helperEvents(page, type);
    const hit = events.find((e) => e.t >= since && pred(e.detail ?? {}));
    if (hit) return hit;
    if (Date.now() > deadline) {
      const all = await helperEvents(page);
      throw new Error(`no capture-session:${type} within ${timeout} ms; saw ${JSON.stringify(all.map((e) => [e.type, e.detail]))}`);
    }
    await sleep(100);
  }
}

export async function widgetEvents(page, name) {
  const log = await page.evaluate(() => window.demoLog.filter((e) => e.source === "widget"));
  return name ? log.filter((e) => e.name === name) : log;
}

export async function storedSession(page) {
  return page.evaluate(() => ({
    token: localStorage.getItem("janrainCaptureToken"),
    expires: localStorage.getItem("janrainCaptureToken_Expires"),
  }));
}

export async function helperState(page) {
  return page.evaluate(() => {
    const s = window.captureSession;
    return s ? { state: s.state, expiresAt: s.expiresAt } : null;
  });
}

/** Signs the demo user in through the stand-in's sign-in form, like a person would. */
export async function signIn(page) {
  await page.fill("#capture_signInEmailAddress", "demo@example.com");
  await page.fill("#capture_currentPassword", "demo");
  const since = await page.evaluate(() => Date.now());
  await page.click("#capture_signIn_submit");
  return waitForEvent(page, "active", { since, timeout: 10000 });
}

/** Calls a contract endpoint from inside the page (same origin, its cookie). */
export async function callBackend(page, endpoint) {
  return page.evaluate(async (url) => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Capture-Session": "1" },
      body: "{}",
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    // Only the shape, never the token itself, leaves the page.
    return { status: res.status, error: body && body.error, hasToken: !!(body && body.accessToken) };
  }, endpoint);
}
