// Faults between the page and its backend: the page keeps its valid session through transient
// failures, recovers by itself, sends no more requests than its retry policy allows, and ends
// cleanly when the backend says the session is gone. Faults are injected on the wire into
// /capture-session/refresh (Playwright routes), so each reply is exactly the one under test;
// the real server answers every request that is let through.
//
// The Vite page is used: its query string sets the helper's options like a bundler customer
// would in code (retry policy, request timeout). Code mode: the token's lifetime comes from the
// backend's start reply, so these tests depend on nothing but the fault under test (token mode's
// proactive refresh has its own tests in session.test.mjs).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  Watch,
  callBackend,
  helperEvents,
  helperState,
  launchBrowser,
  openDemo,
  signIn,
  sleep,
  startServer,
  storedSession,
  waitForEvent,
} from "./harness.mjs";

const LIFETIME = 10; // seconds: proactive refresh ~5 s after sign-in, expiry at 10 s
// maxMs is also the cap on a server's Retry-After (the tests below send 2 s).
const RETRY = { base: 300, max: 2500, attempts: 4 };
const TIMEOUT_MS = 1500;
const QUERY = `mode=code&retryBaseMs=${RETRY.base}&retryMaxMs=${RETRY.max}&retryMaxAttempts=${RETRY.attempts}&requestTimeoutMs=${TIMEOUT_MS}`;

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

/**
 * A signed-in Vite page whose refresh requests go through `fault(n, route)` (n counts from 1):
 * it returns true when it answered the request itself, false to let the real server answer.
 */
async function signedInWithFault(fault, { query = QUERY } = {}) {
  const context = await watch.newContext(browser, server);
  const requests = [];
  let armed = false; // requests before the sign-in (the helper's startup check) pass untouched
  await context.route(
    (url) => url.pathname === "/capture-session/refresh",
    async (route) => {
      if (!armed) return route.continue().catch(() => {});
      requests.push(Date.now());
      let handled = false;
      try {
        handled = await fault(requests.length, route);
      } catch {
        return; // the page gave up on the request (timeout): nothing left to answer
      }
      if (!handled) await route.continue().catch(() => {});
    },
  );
  const page = await openDemo(context, { variant: "vite", query });
  const active = await signIn(page);
  armed = true;
  const grant = await helperState(page);
  return { context, page, requests, active, grant };
}

async function assertStillSignedIn(page, what) {
  const s = await helperState(page);
  assert.equal(s.state === "active" || s.state === "refreshing", true, `${what}: state ${s.state}`);
  assert.equal(await page.evaluate(() => janrain.capture.ui.hasActiveSession()), true, `${what}: widget session kept`);
  assert.equal((await helperEvents(page, "ended")).length, 0, `${what}: never ended`);
}

async function finish(context) {
  await watch.sweep(context);
  await context.close();
}

test("backend 500s: the session survives, the helper retries with backoff and recovers by itself", async () => {
  const { context, page, requests, active, grant } = await signedInWithFault(async (n, route) => {
    if (n > 2) return false;
    await route.fulfill({ status: 500, contentType: "application/json", body: '{"error":"internal","message":"boom"}' });
    return true;
  });
  const failed = await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(failed.detail.attempt, 1);
  assert.equal(failed.detail.reason, "server-error");
  assert.ok(failed.detail.retryInMs > 0, "a retry is planned");
  await assertStillSignedIn(page, "after the first 500");
  const refreshed = await waitForEvent(page, "refreshed", { since: active.t, timeout: 8000 });
  assert.ok(refreshed.t < grant.expiresAt, "recovered before the token expired");
  assert.equal((await helperEvents(page, "refresh-failed")).length, 2, "two failures reported");
  assert.equal(requests.length, 3, "two failed attempts and one that worked, nothing more");
  await assertStillSignedIn(page, "after recovery");
  await finish(context);
});

test("503 with Retry-After: the helper waits at least that long before trying again", async () => {
  const RETRY_AFTER_S = 2;
  const { context, page, requests, active } = await signedInWithFault(async (n, route) => {
    if (n > 1) return false;
    await route.fulfill({
      status: 503,
      headers: { "Retry-After": String(RETRY_AFTER_S) },
      contentType: "application/json",
      body: '{"error":"unavailable","message":"try later"}',
    });
    return true;
  });
  const failed = await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(failed.detail.reason, "throttled");
  assert.ok(failed.detail.retryInMs >= RETRY_AFTER_S * 1000, `retryInMs ${failed.detail.retryInMs}`);
  await waitForEvent(page, "refreshed", { since: active.t, timeout: 8000 });
  assert.equal(requests.length, 2);
  const gap = requests[1] - requests[0];
  assert.ok(gap >= RETRY_AFTER_S * 1000 - 50, `second attempt ${gap} ms after the 503 (Retry-After ${RETRY_AFTER_S} s)`);
  await assertStillSignedIn(page, "after the 503");
  await finish(context);
});

test("a reply slower than the request timeout is abandoned and the refresh retried", async () => {
  const { context, page, requests, active } = await signedInWithFault(async (n, route) => {
    if (n > 1) return false;
    await sleep(TIMEOUT_MS + 2500);
    await route.continue(); // throws when the page aborted it, as it should have
    return true;
  });
  const failed = await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(failed.detail.reason, "timeout");
  // Given up at the timeout, long before the held reply would have come (TIMEOUT_MS + 2500).
  const abandonedAfter = failed.t - requests[0];
  assert.ok(abandonedAfter < TIMEOUT_MS + 2000, `gave up after ${abandonedAfter} ms (timeout ${TIMEOUT_MS} ms)`);
  await waitForEvent(page, "refreshed", { since: active.t, timeout: 8000 });
  assert.equal(requests.length, 2);
  await assertStillSignedIn(page, "after the timeout");
  await finish(context);
});

test("a malformed JSON reply is rejected, the valid token kept and the refresh retried", async () => {
  let releaseRetry;
  const checked = new Promise((resolve) => {
    releaseRetry = resolve;
  });
  const { context, page, requests, active } = await signedInWithFault(async (n, route) => {
    if (n === 1) {
      await route.fulfill({ status: 200, contentType: "application/json", body: '{"accessToken": "abc", "expiresIn": ' });
      return true;
    }
    await checked; // hold the retry until the page was inspected after the bad reply
    return false;
  });
  const before = await storedSession(page);
  const failed = await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(failed.detail.reason, "malformed-reply");
  const mid = await storedSession(page);
  assert.ok(mid.token === before.token, "the valid token was not replaced by garbage");
  await assertStillSignedIn(page, "after the malformed reply");
  releaseRetry();
  await waitForEvent(page, "refreshed", { since: active.t, timeout: 8000 });
  assert.equal(requests.length, 2);
  const after = await storedSession(page);
  assert.ok(after.token && after.token !== before.token, "a real new token arrived");
  await assertStillSignedIn(page, "after the retry");
  await finish(context);
});

test("offline then online: the session is kept while offline and refreshed once the network is back", async () => {
  const { context, page, active, grant } = await signedInWithFault(async () => false);
  // Go offline a moment before the proactive refresh is due, and stay offline past it.
  const refreshDue = grant.expiresAt - (LIFETIME * 1000) / 2;
  await sleep(Math.max(0, refreshDue - Date.now() - 1000));
  await context.setOffline(true);
  await sleep(2500);
  await assertStillSignedIn(page, "while offline");
  assert.equal((await helperEvents(page, "refreshed")).length, 0, "no refresh could succeed offline");
  const before = await storedSession(page);
  assert.ok(before.token, "the valid token is kept while offline");
  const onlineAt = Date.now();
  await context.setOffline(false);
  const refreshed = await waitForEvent(page, "refreshed", { since: active.t, timeout: 6000 });
  assert.ok(refreshed.t < grant.expiresAt, "refreshed before the token expired");
  assert.ok(refreshed.t - onlineAt < 4000, `recovered ${refreshed.t - onlineAt} ms after going online`);
  await assertStillSignedIn(page, "back online");
  await finish(context);
});

test("a backend that keeps failing gets no more attempts than the retry policy allows", async () => {
  const { context, page, requests, active, grant } = await signedInWithFault(async (n, route) => {
    await route.fulfill({ status: 502, contentType: "application/json", body: '{"error":"upstream_error","message":"down"}' });
    return true;
  });
  await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  // Watch until shortly before the token expires (the widget's own expiry is stored with
  // one-second precision): far longer than maxAttempts backoffs take.
  await sleep(Math.max(0, grant.expiresAt - Date.now() - 1500));
  assert.ok(requests.length >= 2, `it retried (${requests.length} requests)`);
  assert.ok(requests.length <= RETRY.attempts, `${requests.length} requests, policy allows ${RETRY.attempts}`);
  await assertStillSignedIn(page, "while the token is still valid");
  await finish(context);
});

test("401 from the backend ends the session cleanly, in the helper and the widget", async () => {
  const { context, page, requests, active } = await signedInWithFault(async (n, route) => {
    await route.fulfill({ status: 401, contentType: "application/json", body: '{"error":"session_expired","message":"gone"}' });
    return true;
  });
  const ended = await waitForEvent(page, "ended", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(ended.detail.reason, "server");
  assert.equal((await helperState(page)).state, "ended");
  await page.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 3000 });
  const stored = await storedSession(page);
  assert.ok(stored.token === null, "the widget's token is gone from localStorage");
  const count = requests.length;
  await sleep(2000);
  assert.equal(requests.length, count, "no request after the end");
  assert.equal(count, 1, "one 401 was enough");
  await finish(context);
});

test("a real 401: the server forgot the session (cookie gone), the helper ends it", async () => {
  const { context, page, active } = await signedInWithFault(async () => false);
  await watch.sweep(context); // remember the session id before it is dropped
  await context.clearCookies();
  const probe = await callBackend(page, "/capture-session/refresh");
  assert.equal(probe.status, 401, "the server has no session for this browser now");
  const ended = await waitForEvent(page, "ended", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
  assert.equal(ended.detail.reason, "server");
  await finish(context);
});

test("backend taken down at the server (the demo's button): the session lives on its valid token and recovers when the backend is back", async () => {
  const { context, page, requests, active, grant } = await signedInWithFault(async () => false);
  await server.admin.outage({ mode: "503", retryAfter: 2, endpoints: ["refresh"] });
  try {
    const failed = await waitForEvent(page, "refresh-failed", { since: active.t, timeout: (LIFETIME + 2) * 1000 });
    assert.equal(failed.detail.reason, "throttled");
    assert.ok(failed.detail.retryInMs >= 2000, `the server's Retry-After is honoured (${failed.detail.retryInMs} ms)`);
    await assertStillSignedIn(page, "while the backend is down");
  } finally {
    await server.admin.outage({ mode: "off" });
  }
  const refreshed = await waitForEvent(page, "refreshed", { since: active.t, timeout: 8000 });
  assert.ok(refreshed.t < grant.expiresAt, "recovered before the token expired");
  assert.ok(requests.length >= 2 && requests.length <= RETRY.attempts, `${requests.length} requests`);
  await assertStillSignedIn(page, "after the outage");
  await finish(context);
});

test("no token, code or session id appears in the browser console or the server log", async () => {
  assert.ok(watch.secrets.size >= 5, `the suite saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(server.log());
});
