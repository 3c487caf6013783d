// The Registration UI stand-in on its own (no helper on the page), against the real simulator:
// the globals, events, payload shapes and storage the helper relies on, as docs/integration.md
// describes the real widget.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Watch, launchBrowser, openDemo, sleep, startServer, storedSession } from "./harness.mjs";

let server;
let browser;
const watch = new Watch();

before(async () => {
  server = await startServer({ tokenLifetime: 30 });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// A page with the widget and the demo's integration, but without the helper.
async function widgetOnly(query = "") {
  const context = await watch.newContext(browser, server);
  await context.route("**/dist/capture-session.js", (route) =>
    route.fulfill({ status: 200, contentType: "text/javascript", body: "/* helper left out */" }),
  );
  // Record every widget event with its full payload (tokens stay inside the page).
  await context.addInitScript(() => {
    window.__widget = [];
    const names = [
      "onCaptureLoginSuccess",
      "onCaptureLoginFailed",
      "onCaptureSessionCreated",
      "onCaptureSessionFound",
      "onCaptureSessionNotFound",
      "onCaptureSessionEnded",
      "onCaptureExpiredToken",
      "onCaptureInvalidToken",
      "onCaptureAccessDenied",
      "onCaptureSaveSuccess",
      "onCaptureSaveFailed",
    ];
    window.janrain = { settings: { capture: { beforeJanrainCaptureWidgetOnLoad: [] } } };
    window.janrain.settings.capture.beforeJanrainCaptureWidgetOnLoad.push(() => {
      for (const name of names) {
        window.janrain.events[name].addHandler((payload) => window.__widget.push({ name, payload, t: Date.now() }));
      }
    });
  });
  const page = await openDemo(context, { query, helperOptional: true });
  return { context, page };
}

const events = (page, name) => page.evaluate((n) => window.__widget.filter((e) => !n || e.name === n), name);

async function fillSignIn(page, email, password) {
  await page.fill("#capture_signInEmailAddress", email);
  await page.fill("#capture_currentPassword", password);
  await page.click("#capture_signIn_submit");
}

test("stand-in, token mode: sign-in stores the token with an HTTP-date expiry and fires the real events and payloads", async () => {
  const { context, page } = await widgetOnly();
  assert.equal((await events(page, "onCaptureSessionNotFound")).length, 1, "no stored session at start");
  assert.equal(await page.evaluate(() => janrain.capture.ui.hasActiveSession()), false);
  await fillSignIn(page, "demo@example.com", "demo");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureLoginSuccess"));
  const [login] = await events(page, "onCaptureLoginSuccess");
  const p = login.payload;
  assert.equal(p.action, "traditionalSignin");
  assert.equal(p.status, "success");
  assert.equal(p.statusMessage, "signedIn");
  assert.equal(p.screen, "signIn");
  assert.equal(p.authProvider, "capture");
  assert.equal(p.oneTime, false);
  assert.equal(typeof p.transactionId, "string");
  assert.match(p.userData.uuid, /^[0-9a-f-]{36}$/);
  assert.equal(typeof p.accessToken, "string");
  assert.ok(p.authorizationCode === undefined, "no authorization code in token mode");
  const [created] = await events(page, "onCaptureSessionCreated");
  assert.ok(created.payload.accessToken === p.accessToken, "onCaptureSessionCreated carries the token");
  assert.ok(created.t <= login.t, "the session exists when onCaptureLoginSuccess fires");
  const stored = await storedSession(page);
  assert.ok(stored.token === p.accessToken, "janrainCaptureToken holds the token");
  const expires = Date.parse(stored.expires);
  assert.match(stored.expires, / GMT$/);
  assert.ok(Math.abs(expires - (Date.now() + 3600 * 1000)) < 5000, "expiry = now + accessTokenLifeHours (1 h)");
  assert.equal(await page.evaluate(() => janrain.capture.ui.hasActiveSession()), true);
  assert.equal(await page.evaluate(() => janrain.capture.ui.standIn.currentScreen()), "editProfile");

  // A reload finds the session.
  await page.reload();
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureSessionFound"));
  assert.equal((await events(page, "onCaptureSessionNotFound")).length, 0);

  // endCaptureSession clears every janrainCapture* key and fires onCaptureSessionEnded.
  await page.evaluate(() => janrain.capture.ui.endCaptureSession());
  const ended = await events(page, "onCaptureSessionEnded");
  assert.equal(ended.length, 1);
  const left = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("janrainCapture")));
  assert.deepEqual(left, []);
  assert.equal(await page.evaluate(() => janrain.capture.ui.standIn.currentScreen()), "signIn");
  await watch.sweep(context);
  await context.close();
});

test("stand-in: a wrong password fires onCaptureLoginFailed and stores nothing", async () => {
  const { context, page } = await widgetOnly();
  await fillSignIn(page, "demo@example.com", "wrong");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureLoginFailed"));
  const [failed] = await events(page, "onCaptureLoginFailed");
  assert.equal(failed.payload.status, "error");
  assert.equal(failed.payload.statusMessage, "invalidCredentials");
  assert.ok((await storedSession(page)).token === null, "no token stored");
  assert.match(await page.textContent("#janrainCaptureWidget"), /Wrong email or password/);
  await context.close();
});

test("stand-in, code mode: sign-in hands the page a one-time code and creates no session by itself", async () => {
  const { context, page } = await widgetOnly("mode=code");
  await fillSignIn(page, "demo@example.com", "demo");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureLoginSuccess"));
  const [login] = await events(page, "onCaptureLoginSuccess");
  assert.equal(typeof login.payload.authorizationCode, "string");
  assert.ok(login.payload.accessToken === undefined, "no access token in code mode");
  assert.match(login.payload.userData.uuid, /^[0-9a-f-]{36}$/);
  assert.equal((await events(page, "onCaptureSessionCreated")).length, 0);
  assert.ok((await storedSession(page)).token === null, "no token stored in code mode");
  await watch.sweep(context);
  await context.close();
});

test("stand-in: saving with a killed token fires onCaptureSaveFailed invalidAccessToken; past the local expiry it fires onCaptureExpiredToken without a request", async () => {
  const { context, page } = await widgetOnly();
  await fillSignIn(page, "demo@example.com", "demo");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureLoginSuccess"));
  await page.fill("#capture_displayName", "Before kill");
  await page.click("#capture_editProfile_save");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureSaveSuccess"));

  await server.admin.revokeTokens();
  await page.click("#capture_editProfile_save");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureSaveFailed"));
  const [failed] = await events(page, "onCaptureSaveFailed");
  assert.equal(failed.payload.status, "error");
  assert.equal(failed.payload.statusMessage, "invalidAccessToken");
  assert.equal(failed.payload.screen, "editProfile");
  assert.match(await page.textContent("#janrainCaptureWidget"), /no longer valid/);
  // The unsaved edit survives a re-render (what a retry after a refresh relies on).
  await page.evaluate(() => janrain.capture.ui.renderScreen("editProfile"));
  assert.equal(await page.inputValue("#capture_displayName"), "Before kill");

  // The widget's own clock says the session is over: no request is sent.
  let updates = 0;
  page.on("request", (req) => {
    if (req.url().endsWith("/sim/entity.update")) updates++;
  });
  await page.evaluate(() => localStorage.setItem("janrainCaptureToken_Expires", new Date(Date.now() - 1000).toUTCString()));
  await page.click("#capture_editProfile_save");
  await page.waitForFunction(() => window.__widget.some((e) => e.name === "onCaptureExpiredToken"));
  await sleep(300);
  assert.equal(updates, 0, "no save request with a locally expired token");
  await watch.sweep(context);
  await context.close();
});

test("no token, code or session id appears in the browser console or the server log", async () => {
  assert.ok(watch.secrets.size >= 2, `the suite saw tokens to look for (${watch.secrets.size})`);
  watch.assertNoLeaks(server.log());
});
