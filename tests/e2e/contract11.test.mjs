// Contract 1.1 refresh semantics in a real browser (issue 11's end-to-end tests):
// - `replace`: a token killed at the simulator is replaced at the next refresh, never handed
//   back, and ten tabs racing one expiry still cost one upstream token call, with the helper's
//   cross-tab lock and without it;
// - `interactive`: a hidden tab's background refreshes say `interactive: false` and do not keep
//   an idle session alive, while a visible tab's refreshes do.
// Each test has its own server (its own lifetimes, fresh simulator counters).
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
  widgetEvents,
} from "./harness.mjs";

const TABS = 10;

let browser;
const servers = [];
const watch = new Watch();

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

async function newServer(opts) {
  const server = await startServer(opts);
  servers.push(server);
  return server;
}

/** The engine's token fingerprint (contract 1.1 `replace`): FNV-1a 32-bit over the UTF-8 bytes. */
function fingerprint(token) {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(token, "utf8")) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** Identity Cloud token calls made at the simulator: mints (token mode) and refresh grants (code mode). */
async function upstreamTokenCalls(server) {
  const s = await server.admin.sim("GET", "/sim/_admin/stats");
  return s.getAccessToken + s.tokenRefreshToken;
}

/**
 * Records every refresh request the context's pages send: when (node clock), from which page,
 * its body, and the reply's status once it comes.
 */
function recordRefreshes(context, pages) {
  const sent = [];
  const byRequest = new Map();
  context.on("request", (req) => {
    if (new URL(req.url()).pathname !== "/capture-session/refresh") return;
    let body = null;
    try {
      body = JSON.parse(req.postData() || "null");
    } catch {
      body = "unparsable";
    }
    const entry = { at: Date.now(), tab: pages.indexOf(req.frame().page()), body, status: null };
    byRequest.set(req, entry);
    sent.push(entry);
  });
  context.on("response", async (res) => {
    const entry = byRequest.get(res.request());
    if (!entry) return;
    try {
      // Which token came back, as its fingerprint (what `replace` would name), never the token.
      const reply = await res.json();
      if (typeof reply?.accessToken === "string") entry.got = fingerprint(reply.accessToken);
      if (typeof reply?.error === "string") entry.error = reply.error;
    } catch {
      /* no JSON body (an error reply without one, a closed page) */
    }
    entry.status = res.status();
  });
  context.on("requestfailed", (req) => {
    const entry = byRequest.get(req);
    if (entry) entry.status = "failed";
  });
  return sent;
}

/** What a list of recorded refreshes looked like, without tokens (fingerprints are not secrets). */
function describe(list, origin) {
  return list
    .map((e) => `${e.at - origin} ms tab ${e.tab}: ${JSON.stringify(e.body)} -> ${e.status}${e.got ? ` ${e.got}` : ""}${e.error ? ` ${e.error}` : ""}`)
    .join("\n");
}

async function waitUntil(what, fn, timeoutMs, explain = async () => "") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${await explain()}`);
    await sleep(100);
  }
}

const tokenOf = (page) => page.evaluate(() => localStorage.getItem("janrainCaptureToken"));

/** A token checked at the simulator ("ok" alive, "error" killed), from node: it never enters a message. */
async function entityStat(server, token) {
  const body = new URLSearchParams({ access_token: token, type_name: "user" });
  const res = await fetch(`${server.baseUrl}/sim/entity`, { method: "POST", body });
  return (await res.json()).stat;
}

/** Waits until every tab is active and its widget holds the same token as the first tab; returns it. */
async function allTabsHold(tabs, pred, what, timeoutMs = 5000) {
  return waitUntil(
    what,
    async () => {
      const token = await tokenOf(tabs[0]);
      if (!token || !pred(token)) return null;
      for (const tab of tabs) {
        const [s, t] = await Promise.all([helperState(tab), tokenOf(tab)]);
        if (s?.state !== "active" || t !== token) return null;
      }
      return token;
    },
    timeoutMs,
    async () => {
      // Which tabs differ, by state, token (same as the first tab's or not) and events.
      const first = await tokenOf(tabs[0]);
      const rows = [];
      for (const [i, tab] of tabs.entries()) {
        const [s, tok, events] = await Promise.all([helperState(tab), tokenOf(tab), helperEvents(tab)]);
        const kinds = events.slice(-4).map((e) => `${e.type}:${JSON.stringify(e.detail)}`).join(" ");
        rows.push(`tab ${i}: ${s?.state}, token ${tok === first ? "= tab 0's" : "differs"}, ${kinds}`);
      }
      return `\n${rows.join("\n")}`;
    },
  );
}

// Long enough that a contract 1.0 server would hand the dead token back: its reuse window is
// min(--reuse-window, lifetime / 10) = 3 s, and the token is killed and refreshed well within
// that (about 0.1 s after its mint; the test checks it). The helper refreshes every lifetime / 2 = 15 s.
const KILL_LIFETIME = 30;

test("a token killed at the simulator is replaced at the next refresh, not handed back; ten tabs racing the next expiry cost one upstream token call", async (t) => {
  const server = await newServer({ tokenLifetime: KILL_LIFETIME });
  const context = await watch.newContext(browser, server);
  const tabs = [];
  const sent = recordRefreshes(context, tabs);
  const origin = Date.now();

  // Code mode: the server holds the refresh token, every new token is an upstream refresh grant.
  tabs.push(await openDemo(context, { query: "mode=code" }));
  await signIn(tabs[0]);
  for (let i = 1; i < TABS; i++) tabs.push(await openDemo(context, { query: "mode=code" }));
  const signedIn = await allTabsHold(tabs, () => true, "ten active tabs", 10000);

  // A forced refresh right after sign-in names the token the page holds, so it mints a new one
  // (contract 1.0 handed the young token back). That fresh token is the one killed below.
  await tabs[0].evaluate(() => window.captureSession.refresh());
  const live = await tokenOf(tabs[0]);
  assert.ok(live && live !== signedIn, "the forced refresh brought a new token");
  assert.equal(sent.length, 1, `the forced refresh is the first; refreshes:\n${describe(sent, origin)}`);
  const forced = sent[0];
  assert.equal(forced.status, 200);
  assert.ok(forced.body.replace === fingerprint(signedIn), `the forced refresh names the sign-in token: ${JSON.stringify(forced.body)}`);

  // Kill it at Identity Cloud (access tokens only: the session's refresh token still works).
  const revoked = await server.admin.revokeTokens();
  assert.ok(revoked.revokedAccessTokens >= 1, "the simulator killed the user's tokens");

  // The next refresh, moments after the mint: the page learned the token is dead (its own call
  // with it was refused) and asks for a new one. A contract 1.0 server would hand the young
  // token back; the refresh names it, so the server mints. (The widget's own complaints do not
  // serve here: within 10 s of a token's arrival the helper hands the widget the same token
  // again before it asks the server.)
  const upstreamBeforeKill = await upstreamTokenCalls(server);
  const sentBeforeKill = sent.length;
  await tabs[0].evaluate(() => window.captureSession.refresh());
  const replaced = await allTabsHold(tabs, (tok) => tok !== live, "every tab to take the killed token's replacement");
  const timeline = () => `refreshes:\n${describe(sent, origin)}`;
  const killRefreshes = sent.slice(sentBeforeKill);
  assert.equal(killRefreshes.length, 1, `one refresh after the kill; ${timeline()}`);
  const [kill] = killRefreshes;
  assert.equal(kill.status, 200);
  assert.ok(kill.body.replace === fingerprint(live), `the refresh names the killed token; ${timeline()}`);
  assert.equal(kill.body.interactive, true, "a visible tab's refresh is interactive");
  // What makes this a test of the 1.1 rule: a 1.0 server would still reuse the killed token.
  t.diagnostic(`the killed token's refresh left ${kill.at - forced.at} ms after the one that minted it`);
  assert.ok(
    kill.at - forced.at < 3000,
    `the killed token's refresh left within a 1.0 reuse window (3000 ms) of its mint: ${kill.at - forced.at} ms`,
  );
  assert.ok(replaced !== live && replaced !== signedIn, "the helper got a new token, not the killed one back");
  assert.equal(await entityStat(server, live), "error", "the simulator no longer accepts the killed token");
  assert.equal(await entityStat(server, replaced), "ok", "the replacement works at the simulator");
  assert.equal(
    (await upstreamTokenCalls(server)) - upstreamBeforeKill,
    1,
    `the replacement cost one upstream token call; ${timeline()}`,
  );

  // Every widget has it: a save in a third tab goes through at the first attempt.
  const since = await tabs[3].evaluate(() => Date.now());
  await tabs[3].fill("#capture_displayName", `Replaced ${Date.now()}`);
  await tabs[3].click("#capture_editProfile_save");
  await tabs[3].waitForFunction((t0) => window.demoLog.some((e) => e.name === "onCaptureSaveSuccess" && e.t >= t0), since, { timeout: 10000 });
  const failed = (await widgetEvents(tabs[3], "onCaptureSaveFailed")).filter((e) => e.t >= since);
  assert.equal(failed.length, 0, "the save was not refused");

  // The next expiry: ten tabs hold the same token and all reach its refresh time together.
  const upstreamBeforeRace = await upstreamTokenCalls(server);
  const sentBeforeRace = sent.length;
  const next = await allTabsHold(tabs, (tok) => tok !== replaced, "the next expiry's token in every tab", KILL_LIFETIME * 1000);
  // Every refresh that left for this expiry (the helper's cross-tab lock lets one go; any other
  // would name the same token and have to wait for the first one's upstream call) is answered.
  await waitUntil("the race's refreshes to be answered", () => sent.slice(sentBeforeRace).every((e) => e.status !== null), 5000);
  const race = sent.slice(sentBeforeRace);
  assert.ok(race.length >= 1, `the expiry was refreshed; ${timeline()}`);
  for (const e of race) {
    assert.ok(e.body.replace === fingerprint(replaced), `every refresh of the race names the expiring token; ${timeline()}`);
    assert.equal(e.status, 200, `every refresh of the race succeeded; ${timeline()}`);
  }
  t.diagnostic(`refresh requests that left the browser for the expiry: ${race.length}`);
  assert.equal(
    (await upstreamTokenCalls(server)) - upstreamBeforeRace,
    1,
    `ten tabs, one expiry, one upstream token call; ${timeline()}`,
  );
  assert.ok(next !== live, "the killed token never came back");
  assert.equal(await entityStat(server, next), "ok", "the new token works at the simulator");
  await watch.sweep(context);
  await context.close();
});

// The same race without the helper's coordination (`crossTab: false`: no Web Lock, no
// announcements; the tabs still share the widget's localStorage): each tab refreshes at the
// expiry on its own, so the refreshes reach the server, a few hundred ms apart in headless
// Chromium. Each names its own expiring token (not the newer one another tab already stored),
// so the server hands that newer token back instead of minting again: one upstream call.
const RACE_LIFETIME = 20;

test(
  "ten tabs that do not coordinate (crossTab: false) race a killed token's expiry: one upstream token call, every tab gets the same new token",
  async (t) => {
    const server = await newServer({ tokenLifetime: RACE_LIFETIME });
    const context = await watch.newContext(browser, server);
    await context.route(
      (url) => url.pathname === "/",
      async (route) => {
        const res = await route.fetch();
        const tag = '<script src="/dist/capture-session.js"';
        const html = await res.text();
        assert.ok(html.includes(tag), "the page's helper tag was found");
        await route.fulfill({ response: res, body: html.replace(tag, `${tag} data-cross-tab="false"`) });
      },
    );
    const tabs = [];
    const sent = recordRefreshes(context, tabs);
    const origin = Date.now();
    const timeline = () => `refreshes:\n${describe(sent, origin)}`;

    tabs.push(await openDemo(context, { query: "mode=code" }));
    await signIn(tabs[0]);
    for (let i = 1; i < TABS; i++) tabs.push(await openDemo(context, { query: "mode=code" }));
    const killed = await allTabsHold(tabs, () => true, "ten active tabs", 10000);
    assert.equal(sent.length, 0, `no refresh yet; ${timeline()}`);
    const killedExpiry = (await helperState(tabs[0])).expiresAt;

    const revoked = await server.admin.revokeTokens();
    assert.ok(revoked.revokedAccessTokens >= 1, "the simulator killed the user's tokens");
    assert.equal(await entityStat(server, killed), "error", "the simulator no longer accepts the killed token");
    const upstreamBefore = await upstreamTokenCalls(server);

    // Settled: every tab's helper is past the killed token (refreshed, or adopted another
    // tab's), and every refresh has its answer.
    await waitUntil(
      "every tab's helper to move past the killed token",
      async () => {
        for (const tab of tabs) {
          const s = await helperState(tab);
          if (s?.state !== "active" || !(s.expiresAt > killedExpiry + 1000)) return false;
        }
        return sent.length >= 1 && sent.every((e) => e.status !== null);
      },
      RACE_LIFETIME * 1000,
    );
    const next = await tokenOf(tabs[0]);
    const tabsThatSent = new Set(sent.map((e) => e.tab));
    const spread = Math.max(...sent.map((e) => e.at)) - Math.min(...sent.map((e) => e.at));
    t.diagnostic(`${sent.length} refreshes from ${tabsThatSent.size} tabs within ${spread} ms`);
    for (const e of sent) assert.equal(e.status, 200, `every refresh got a token; ${timeline()}`);
    assert.equal(new Set(sent.map((e) => e.got)).size, 1, `every refresh got the same token; ${timeline()}`);
    assert.equal((await upstreamTokenCalls(server)) - upstreamBefore, 1, `ten tabs, one expiry, one upstream token call; ${timeline()}`);
    assert.ok(next !== killed, "the killed token was not handed back");
    assert.equal(await entityStat(server, next), "ok", "the tabs' new token works at the simulator");
    await watch.sweep(context);
    await context.close();
  },
);

// Refreshes every LIFETIME / 2 = 2 s; the server ends a session IDLE s after its last
// interactive refresh (or its start).
const IDLE_LIFETIME = 4;
const IDLE = 8;

/**
 * Makes the page hidden as the browser would when the user switches to another tab.
 * Headless Chromium keeps every page `visible` (bringToFront, a page in front, a minimized
 * window, Emulation.setFocusEmulationEnabled and Page.setWebLifecycleState change nothing), so
 * the document's visibility is overridden and `visibilitychange` fired, which is what the
 * helper reads.
 */
async function hide(page) {
  return page.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
    return { visibilityState: document.visibilityState, hidden: document.hidden };
  });
}

test("a hidden tab's background refreshes say interactive: false and do not keep an idle session alive; a visible tab's do", async (t) => {
  const server = await newServer({ tokenLifetime: IDLE_LIFETIME, args: ["--session-idle-timeout", String(IDLE)] });
  // Two browsers' worth of sessions (separate cookies): one tab goes to the background, the
  // other stays in front.
  const hiddenContext = await watch.newContext(browser, server);
  const visibleContext = await watch.newContext(browser, server);
  const hiddenSent = recordRefreshes(hiddenContext, []);
  const visibleSent = recordRefreshes(visibleContext, []);
  const origin = Date.now();
  const timeline = () =>
    `hidden tab's refreshes:\n${describe(hiddenSent, origin)}\nvisible tab's refreshes:\n${describe(visibleSent, origin)}`;

  const visiblePage = await openDemo(visibleContext);
  await signIn(visiblePage);
  const hiddenPage = await openDemo(hiddenContext);
  await signIn(hiddenPage);
  const signedInAt = Date.now();

  const seen = await hide(hiddenPage);
  assert.deepEqual(seen, { visibilityState: "hidden", hidden: true }, "the page reads itself as hidden");
  const hiddenAt = Date.now();
  const refreshesBeforeHiding = hiddenSent.length;

  const ended = await waitForEvent(hiddenPage, "ended", { timeout: (IDLE + 4 * IDLE_LIFETIME) * 1000 });
  const endedAt = Date.now();
  // The page acts on the 401 before Playwright's response event (and its body) reaches this
  // process: wait for the recorder to have every answer.
  const answered = (list) => list.every((e) => e.status !== null);
  await waitUntil("the hidden tab's refreshes to be recorded with their answers", () => answered(hiddenSent), 5000);
  assert.equal(ended.detail.reason, "server", `the server ended the session (a 401); ${timeline()}`);

  const background = hiddenSent.slice(refreshesBeforeHiding);
  assert.ok(background.length >= 3, `the hidden tab kept refreshing in the background; ${timeline()}`);
  // The first refresh after hiding may say interactive: true (the user saw the page since the
  // last refresh); every later one was made with nobody looking.
  const unseen = background.slice(1);
  for (const e of unseen) assert.equal(e.body.interactive, false, `a background refresh says interactive: false; ${timeline()}`);
  const tokens = unseen.filter((e) => e.status === 200);
  assert.ok(tokens.length >= 1, `background refreshes got tokens (the token stayed alive, not the session); ${timeline()}`);
  const last = background.at(-1);
  assert.equal(last.status, 401, `the last refresh was refused; ${timeline()}`);
  assert.equal(last.error, "no_session", `the session idled out (docs/backend-contract.md: no_session); ${timeline()}`);
  assert.equal(last.body.interactive, false);
  assert.ok(background.every((e) => e === last || e.status === 200), `only the last refresh failed; ${timeline()}`);

  // The session lasted IDLE s from its last interactive moment and ended at the first refresh
  // after that (the helper refreshes every IDLE_LIFETIME / 2 s).
  const interactive = [...hiddenSent].reverse().find((e) => e.body.interactive !== false && e.status === 200);
  const lastInteractive = interactive ? Math.max(interactive.at, signedInAt) : signedInAt;
  const idleDeadline = lastInteractive + IDLE * 1000;
  t.diagnostic(
    `hidden at +${hiddenAt - origin} ms, last interactive at +${lastInteractive - origin} ms, ` +
      `401 at +${last.at - origin} ms, idle deadline +${idleDeadline - origin} ms`,
  );
  assert.ok(last.at >= idleDeadline - 500, `the session was not cut short of its idle timeout; ${timeline()}`);
  assert.ok(
    last.at <= idleDeadline + (IDLE_LIFETIME / 2) * 1000 + 1500,
    `the session ended at the first refresh past its idle deadline; ${timeline()}`,
  );

  // The hidden tab is signed out for good: helper, widget, server.
  assert.equal((await helperState(hiddenPage)).state, "ended");
  await hiddenPage.waitForFunction(() => janrain.capture.ui.standIn.currentScreen() === "signIn", null, { timeout: 5000 });
  assert.equal(await hiddenPage.evaluate(() => janrain.capture.ui.hasActiveSession()), false, "the widget has no session");
  assert.equal((await storedSession(hiddenPage)).token, null, "the widget's token is gone from localStorage");
  assert.equal((await callBackend(hiddenPage, "/capture-session/refresh")).status, 401, "the server has no session for it");
  assert.deepEqual(
    (await helperEvents(hiddenPage, "ended")).map((e) => e.detail.reason),
    ["server"],
    "one ended event",
  );

  // The tab in front signed in at the same time and went through the same refreshes, each
  // interactive: it outlives the hidden one's idle deadline.
  await waitUntil(
    "a visible tab's refresh past the hidden tab's end",
    () => visibleSent.some((e) => e.at > endedAt + 500 && e.status === 200),
    IDLE_LIFETIME * 1000 + 5000,
  );
  await waitUntil("the visible tab's refreshes to be recorded with their answers", () => answered(visibleSent), 5000);
  assert.ok(visibleSent.length >= background.length, `the visible tab refreshed as often; ${timeline()}`);
  for (const e of visibleSent) {
    assert.equal(e.body.interactive, true, `a visible tab's refresh is interactive; ${timeline()}`);
    assert.equal(e.status, 200, `every visible tab's refresh succeeded; ${timeline()}`);
  }
  assert.equal((await helperState(visiblePage)).state, "active", "the visible tab's session lives on");
  assert.equal((await helperEvents(visiblePage, "ended")).length, 0);

  await watch.sweep(hiddenContext);
  await watch.sweep(visibleContext);
  await hiddenContext.close();
  await visibleContext.close();
});

test("no token, code or session id appears in the browser console or the server logs", async () => {
  assert.ok(watch.secrets.size >= 3, `the tests saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(servers.map((s) => s.log()).join("\n"));
});
