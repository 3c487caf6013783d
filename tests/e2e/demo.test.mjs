// The demo page's own controls work against the real server: what `npm run demo` shows a visitor.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Watch, helperEvents, launchBrowser, openDemo, startServer, waitForEvent } from "./harness.mjs";

let server;
let browser;
const watch = new Watch();

before(async () => {
  server = await startServer({ tokenLifetime: 60 });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const timelineHas = (page, name) =>
  page.waitForFunction((n) => [...document.querySelectorAll("#timeline li strong")].some((el) => el.textContent === n), name, {
    timeout: 10000,
  });

test("demo: the buttons sign in (both modes), kill the token, take the backend down and back, open a tab and sign out", async () => {
  const context = await watch.newContext(browser, server);
  const page = await openDemo(context);
  assert.equal(await page.textContent("#who"), "nobody");

  // Sign in, code mode: the page reloads in code mode and signs in by itself.
  await page.click("#btn-signin-code");
  await page.waitForURL((url) => url.searchParams.get("mode") === "code");
  await page.waitForFunction(() => window.__e2e?.events.some((e) => e.type === "active"), null, { timeout: 10000 });
  assert.equal((await helperEvents(page, "active"))[0].detail.source, "start");
  await page.waitForFunction(() => document.querySelector("#who").textContent !== "nobody");
  await page.waitForFunction(() => /\d+ s$/.test(document.querySelector("#expiry").textContent), null, { timeout: 5000 });
  await page.waitForFunction(() => /^in \d+ s$/.test(document.querySelector("#next-refresh").textContent), null, { timeout: 5000 });
  assert.equal(await page.textContent("#state"), "active");
  await timelineHas(page, "POST /capture-session/start");

  // Kill the token now: Identity Cloud no longer accepts it.
  await page.click("#btn-kill");
  await timelineHas(page, "token killed");
  const stat = await page.evaluate(async () => {
    const body = new URLSearchParams({ access_token: localStorage.getItem("janrainCaptureToken") || "" });
    return (await (await fetch("/sim/entity", { method: "POST", body })).json()).stat;
  });
  assert.equal(stat, "error");

  // Take the backend down, then bring it back.
  await page.click("#btn-down");
  await page.waitForSelector("#btn-up:not([hidden])");
  assert.equal((await server.admin.stats()).sessions >= 1, true);
  const outage = await page.evaluate(async () => (await fetch("/capture-session/_admin/outage")).json());
  assert.equal(outage.mode, "503");
  await page.click("#btn-refresh");
  await waitForEvent(page, "refresh-failed", { timeout: 10000 });
  await page.click("#btn-up");
  await page.waitForSelector("#btn-down:not([hidden])");
  assert.equal(await page.evaluate(async () => (await fetch("/capture-session/_admin/outage")).json()), null);

  // Open another tab: it adopts the session.
  const [tab] = await Promise.all([context.waitForEvent("page"), page.click("#btn-tab")]);
  await tab.waitForLoadState();
  await waitForEvent(tab, "active", { timeout: 10000 });

  // Sign out: both tabs end.
  await page.click("#btn-signout");
  await waitForEvent(page, "ended", { timeout: 5000 });
  await waitForEvent(tab, "ended", { timeout: 5000 });
  await page.waitForFunction(() => document.querySelector("#who").textContent === "nobody");

  // Sign in, token mode: back to token mode, signed in by the widget's own login.
  await page.click("#btn-signin-token");
  await page.waitForURL((url) => url.searchParams.get("mode") === "token");
  await page.waitForFunction(() => window.__e2e?.events.some((e) => e.type === "active"), null, { timeout: 10000 });
  assert.equal((await helperEvents(page, "active"))[0].detail.source, "login");
  await page.waitForFunction(() => document.querySelector("#state").textContent === "active");
  await watch.sweep(context);
  await context.close();
});

test("no token, code or session id appears in the browser console or the server log", async () => {
  assert.ok(watch.secrets.size >= 2, `the test saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(server.log());
});
