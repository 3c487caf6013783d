// Ten tabs of one browser share one session: one refresh request per expiry reaches the
// server, every tab follows, and signing out in one tab ends the session everywhere.
// Code mode (the backend holds the refresh token and rotates it: the case where a second refresh
// would cost an upstream rotation).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Watch, callBackend, helperEvents, helperState, launchBrowser, openDemo, signIn, sleep, startServer } from "./harness.mjs";

const LIFETIME = 12; // seconds: a refresh every ~6 s
const TABS = 10;

let server;
let browser;
const watch = new Watch();

before(async () => {
  server = await startServer({ tokenLifetime: LIFETIME });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Waits until the first tab's expiry changes (one refresh cycle, whichever tab ran it). */
async function nextCycle(page, previous, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await helperState(page);
    if (s && s.expiresAt && s.expiresAt !== previous && s.state === "active") return s.expiresAt;
    if (Date.now() > deadline) throw new Error(`no refresh within ${timeoutMs} ms (state ${JSON.stringify(s)})`);
    await sleep(100);
  }
}

test("ten tabs: exactly one refresh request per expiry reaches the server, every tab gets the new token, sign-out ends all ten within a second", async (t) => {
  const context = await watch.newContext(browser, server);
  const tabs = [];
  // Every refresh request that leaves the browser: when, and from which tab
  // (shown if the count is off).
  const start = Date.now();
  const sent = [];
  context.on("request", (req) => {
    if (new URL(req.url()).pathname !== "/capture-session/refresh") return;
    sent.push(`${Date.now() - start} ms: tab ${tabs.indexOf(req.frame().page())}`);
  });
  const first = await openDemo(context, { query: "mode=code" });
  tabs.push(first);
  await signIn(first);
  for (let i = 1; i < TABS; i++) tabs.push(await openDemo(context, { query: "mode=code" }));
  for (const tab of tabs) {
    await tab.waitForFunction(() => window.captureSession?.state === "active", null, { timeout: 10000 });
  }

  // Start counting on a quiet moment: just after a refresh cycle finished.
  await nextCycle(first, (await helperState(first)).expiresAt, LIFETIME * 1000 + 5000);
  await sleep(1000);
  let expiry = (await helperState(first)).expiresAt;
  const serverBefore = await server.admin.refreshCount();
  const browserBefore = sent.length;

  for (let cycle = 0; cycle < 2; cycle++) {
    await nextCycle(first, expiry, LIFETIME * 1000 + 5000);
    await sleep(1000); // let every tab hear about it
    // The settled expiry: a tab may first pair the new token with the expiry it
    // read from storage, then take the exact one the refreshing tab announced.
    expiry = (await helperState(first)).expiresAt;
    const token = await first.evaluate(() => localStorage.getItem("janrainCaptureToken"));
    for (const [i, tab] of tabs.entries()) {
      const s = await helperState(tab);
      assert.equal(s.state, "active", `tab ${i} is active`);
      assert.ok(Math.abs(s.expiresAt - expiry) < 1500, `tab ${i} knows the new expiry (off by ${s.expiresAt - expiry} ms)`);
      const view = await tab.evaluate(() => ({
        token: localStorage.getItem("janrainCaptureToken"),
        live: janrain.capture.ui.hasActiveSession(),
        screen: janrain.capture.ui.standIn.currentScreen(),
      }));
      assert.ok(view.token === token, `tab ${i}'s widget holds the new token`);
      assert.equal(view.live, true, `tab ${i}'s widget has a live session`);
      assert.equal(view.screen, "editProfile");
    }
  }
  const serverCount = (await server.admin.refreshCount()) - serverBefore;
  const timeline = `refresh requests from the browser:\n${sent.slice(browserBefore).join("\n")}`;
  assert.equal(serverCount, 2, `two expiries, two refresh requests at the server; ${timeline}`);
  assert.equal(sent.length - browserBefore, 2, `two refresh requests left the browser; ${timeline}`);
  await watch.sweep(context);

  // Sign out in one tab (the widget's own sign-out button): every tab ends within a second
  // of the session ending there. (Measured from that tab's own `ended`: the time Playwright
  // takes to deliver the click to a background tab is not the helper's.)
  const signOutTab = tabs[4];
  const clickedAt = await signOutTab.evaluate(() => Date.now());
  await signOutTab.click("#capture_signOut");
  const endedAt = [];
  for (const [i, tab] of tabs.entries()) {
    await tab.waitForFunction(() => window.__e2e.events.some((e) => e.type === "ended"), null, { timeout: 5000 });
    endedAt.push((await helperEvents(tab, "ended"))[0].t);
    await tab.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 2000 });
    assert.equal(await tab.evaluate(() => janrain.capture.ui.hasActiveSession()), false, `tab ${i} has no widget session`);
  }
  const signedOut = endedAt[4];
  const delays = endedAt.map((t) => t - signedOut);
  const slowest = Math.max(...delays);
  t.diagnostic(`sign-out reached the last tab after ${slowest} ms (click to sign-out ${signedOut - clickedAt} ms)`);
  assert.ok(
    slowest <= 1000,
    `every tab ended within 1 s of the sign-out (ms after it, by tab: ${delays.join(", ")}; click to sign-out ${signedOut - clickedAt} ms)`,
  );
  // The server session is gone: the cookie no longer refreshes anything.
  const after = await callBackend(first, "/capture-session/refresh");
  assert.equal(after.status, 401);
  assert.equal(after.hasToken, false);
  const info = await first.evaluate(async () => (await fetch("/capture-session/_admin/session")).json());
  assert.equal(info.exists, false, "the server has no session for this browser");
  assert.equal((await server.admin.stats()).sessions, 0, "no session left in the server's store");
  await context.close();
});

test("no token, code or session id appears in the browser console or the server log", async () => {
  assert.ok(watch.secrets.size >= 3, `the test saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(server.log());
});
