// What users install, as they install it: the npm package in pkg/ (its
// `exports`, the `web` build with `await init()`, the `bundler` build, the
// types) and the single-file script tag in dist/, loaded by real pages in
// headless Chromium against a loopback backend. Needs `npm run build` first.
//
// Run: node --test tests/package.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}pkg/package.json`, "utf8"));

const stored = (token, inMs) =>
  `localStorage.setItem("janrainCaptureToken", ${JSON.stringify(token)});
   localStorage.setItem("janrainCaptureToken_Expires", new Date(Date.now() + ${inMs}).toUTCString());`;

// A minimal Registration UI: the page sets janrain.settings first, the widget
// "loads" later and runs beforeJanrainCaptureWidgetOnLoad.
const widget = `
  window.loadWidget = () => {
    const handlers = {};
    janrain.events = new Proxy({}, { get: (_, name) => ({
      addHandler: (fn) => (handlers[name] = handlers[name] || []).push(fn),
      removeHandler: (fn) => (handlers[name] = (handlers[name] || []).filter((h) => h !== fn)),
    }) });
    janrain.capture = { ui: { createCaptureSession: (t) => (window.created = t), endCaptureSession() {}, renderScreen() {} } };
    for (const hook of janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad || []) hook();
    window.fireWidget = (name, payload) => (handlers[name] || []).forEach((h) => h(payload));
  };`;

const pages = {
  "/esm.html": `<!doctype html>
    <script type="importmap">{"imports": {"capture-session": "/pkg/${pkg.exports["."].default.slice(2)}"}}</script>
    <script type="module">
      import init, { CaptureSession } from "capture-session";
      await init();
      ${stored("old-token", -1000)}
      // The helper's own entry: a backend session exists, so the expired token is refreshed.
      localStorage.setItem("capture-session:janrainCaptureToken", "live");
      const s = CaptureSession.attach({ refreshUrl: "/capture-session/refresh", bogusKey: 1 });
      const events = [];
      for (const t of ["active", "refreshed", "warning"]) s.on(t, (d) => events.push({ t, ...d }));
      await s.ready;
      let error;
      try { CaptureSession.attach({ refreshUrl: "https://elsewhere.example/r" }); } catch (e) { error = { code: e.code, isError: e instanceof Error }; }
      window.result = { state: s.state, expiresAt: s.expiresAt, events, token: localStorage.getItem("janrainCaptureToken"), error };
    </script>`,
  "/tag.html": `<!doctype html>
    <script>window.janrain = { settings: { capture: { responseType: "token", beforeJanrainCaptureWidgetOnLoad: [() => (window.pageHook = true)] } } };
      ${widget}</script>
    <script src="/dist/capture-session.js" data-refresh-url="/capture-session/refresh"
            data-start-url="/capture-session/start" data-end-url="/capture-session/end"
            data-request-timeout-ms="5000" data-retry-max-attempts="3" data-cross-tab="true"></script>
    <script>
      window.result = null;
      window.hooksAfterTag = janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad.length;
      loadWidget();
      fireWidget("onCaptureLoginSuccess", { accessToken: "login-token", userData: { uuid: "u-1" } });
      captureSession.ready.then(() => setTimeout(() => {
        window.result = { state: captureSession.state, pageHook: window.pageHook === true,
          hooks: window.hooksAfterTag, global: typeof CaptureSession.attach, created: window.created };
      }, 200));
    </script>`,
  "/tag-bad.html": `<!doctype html>
    <script src="/dist/capture-session.js" data-refresh-url="/capture-session/refresh" data-refresh-ahead-seconds="soon"></script>
    <script>window.result = { helper: window.captureSession, global: typeof window.CaptureSession };</script>`,
};

const requests = [];
let server;
let browser;
let base;

before(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      // Under /latin1/ everything claims windows-1252: the script tag must still
      // be read as UTF-8 (its byte order mark wins), or its embedded wasm breaks.
      const latin1 = req.url.startsWith("/latin1/");
      const path = latin1 ? req.url.slice("/latin1".length) : req.url;
      const charset = latin1 ? "; charset=windows-1252" : "";
      if (path.startsWith("/capture-session/")) {
        requests.push({ path, body, marker: req.headers["x-capture-session"] });
        if (path.endsWith("/end")) return res.writeHead(204).end();
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify({ accessToken: "fresh-token", expiresIn: 3600 }));
      }
      if (pages[path]) {
        const html = latin1 ? pages[path].replaceAll('src="/dist/', 'src="/latin1/dist/') : pages[path];
        return res.writeHead(200, { "Content-Type": "text/html" + charset }).end(html);
      }
      const file = root + path.slice(1);
      if (!existsSync(file)) return res.writeHead(404).end();
      const type = file.endsWith(".wasm") ? "application/wasm" : "text/javascript";
      res.writeHead(200, { "Content-Type": type + charset }).end(readFileSync(file));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROME_BIN || "/usr/bin/chromium",
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--no-first-run",
      "--disable-sync", "--disable-quic"],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function run(path) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base + path);
  await page.waitForFunction(() => window.result !== undefined && window.result !== null, null, { timeout: 10_000 });
  const result = await page.evaluate(() => window.result);
  await page.close();
  return { result, errors };
}

test("the package's default entry is the web build: import, await init(), attach", async () => {
  const { result, errors } = await run("/esm.html");
  assert.deepEqual(errors, []);
  assert.equal(result.state, "active");
  assert.equal(result.token, "fresh-token");
  assert.ok(Math.abs(result.expiresAt - Date.now() - 3_600_000) < 10_000);
  assert.deepEqual(result.events.map((e) => e.t), ["warning", "refreshed"]);
  assert.equal(result.events[0].code, "config_unknown_key");
  assert.equal(result.events[1].trigger, "startup");
  assert.deepEqual(result.error, { code: "origin_not_allowed", isError: true });
  assert.ok(!JSON.stringify(result.events).includes("fresh-token"), "no token in events");
});

test("the script tag attaches itself before the widget loads and runs the login", async () => {
  requests.length = 0;
  const { result, errors } = await run("/tag.html");
  assert.deepEqual(errors, []);
  assert.equal(result.global, "function", "window.CaptureSession");
  assert.equal(result.hooks, 2, "its hook is appended to the page's");
  assert.equal(result.pageHook, true);
  assert.equal(result.state, "active");
  const start = requests.find((r) => r.path === "/capture-session/start");
  assert.ok(start, "the login reached startUrl");
  assert.equal(start.marker, "1");
  // Contract 1.1: keepMeLoggedIn is always sent (false until the helper reads it from the login).
  assert.deepEqual(JSON.parse(start.body), {
    mode: "token",
    uuid: "u-1",
    accessToken: "login-token",
    keepMeLoggedIn: false,
  });
});

test("the script tag works on a page that is not UTF-8", async () => {
  requests.length = 0;
  const { result, errors } = await run("/latin1/tag.html");
  assert.deepEqual(errors, []);
  assert.equal(result.state, "active");
  assert.ok(requests.some((r) => r.path === "/capture-session/start"));
});

test("a script tag with a bad data attribute reports config_invalid and still exposes the class", async () => {
  const page = await browser.newPage();
  const logged = [];
  page.on("console", (m) => logged.push(m.text()));
  await page.goto(base + "/tag-bad.html");
  const result = await page.evaluate(() => window.result);
  await page.close();
  assert.equal(result.helper, null);
  assert.equal(result.global, "function");
  assert.ok(logged.some((l) => l.includes("refreshAheadSeconds")), logged.join("\n"));
});

test("package.json routes every entry to a file that exists, with types", () => {
  for (const [entry, target] of Object.entries(pkg.exports)) {
    const files = typeof target === "string" ? [target] : Object.values(target);
    for (const f of files) assert.ok(existsSync(`${root}pkg/${f}`), `${entry} -> ${f}`);
  }
  assert.equal(pkg.name, "capture-session");
  assert.equal(pkg.type, "module");
  const types = readFileSync(`${root}pkg/index.d.ts`, "utf8");
  assert.ok(!/\bany\b/.test(types.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, "")), "no `any` in the types");
  for (const name of ["attach", "ready", "state", "expiresAt", "refresh", "end", "on", "detach"]) {
    assert.ok(types.includes(name), name);
  }
});

test("the bundler build instantiates as an ES module and keeps the contract's import", () => {
  const out = execFileSync(process.execPath, ["--experimental-wasm-modules", "--no-warnings", "--input-type=module", "-e",
    `const m = await import(${JSON.stringify(`${root}pkg/bundler/index.js`)});
     await m.default();
     console.log(typeof m.CaptureSession.attach, typeof m.initSync);`], { encoding: "utf8" });
  assert.equal(out.trim(), "function function");
});
