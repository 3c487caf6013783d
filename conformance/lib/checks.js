// The checks: one per row of the backend contract. Each check starts its own sessions, so
// checks are independent of each other and their order.
//
// A check fails by throwing (`fail(reason)`); reasons name tokens only by fingerprint.

import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { CookieJar, isDeletion, isPersistent } from "./cookies.js";
import { describeReply, fail } from "./http.js";
import { fingerprint } from "./secrets.js";

/** Concurrent refreshes of one session in the `refresh.parallel` checks. */
export const PARALLEL_REFRESHES = 20;
/** Request bodies above this many bytes must be refused with 413. */
export const MAX_BODY_BYTES = 16 * 1024;
/** Largest `expiresIn` the helper accepts: 24 hours. */
export const MAX_EXPIRES_IN = 24 * 60 * 60;
// Servers round times to whole seconds (and Redis expiries round up): the timed checks allow this
// much beyond a deadline before they call a session that is still alive a failure.
const DEADLINE_SLACK_MS = 1500;

// --- Helpers ----------------------------------------------------------------------------------

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isPlausibleToken = (t) => typeof t === "string" && t.length > 0 && t.length <= 4096 && /^[\x21-\x7e]+$/.test(t);
const secs = (ms) => (ms / 1000).toFixed(1);

/** A made-up credential shaped like `like` (same length, hex), registered as a secret. */
function forgedLike(ctx, like, kind) {
  const length = Math.max(typeof like === "string" ? like.length : 0, 32);
  return ctx.secrets.add(randomBytes(Math.ceil(length / 2)).toString("hex").slice(0, length), kind);
}

/** A cookie value the backend never issued, shaped like `like`. */
function forgedCookieValue(ctx, like) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(Math.max(like.length, 16));
  const value = [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
  return ctx.secrets.add(value, "cookie");
}

/** The body of a start request for `login`. */
function startBody(ctx, mode, login, { keepMeLoggedIn = false, clientSession = true } = {}) {
  const body =
    mode === "token"
      ? { mode, uuid: login.uuid ?? ctx.uuid, accessToken: login.token }
      : { mode, authorizationCode: login.code, redirectUri: ctx.options.redirectUri, clientSession };
  if (ctx.v11) body.keepMeLoggedIn = keepMeLoggedIn;
  return body;
}

/** The refresh body the helper sends while it holds `token` (1.0: `{}`). */
function refreshBody(ctx, token, interactive = true) {
  if (!ctx.v11) return {};
  return token ? { replace: fingerprint(token), interactive } : { interactive };
}

/** The cookies of a reply that make up the session (all it sets, or --cookie). */
function sessionCookies(ctx, reply) {
  return reply.setCookies.filter(
    (c) => !isDeletion(c) && (ctx.options.cookieName === undefined || c.name === ctx.options.cookieName),
  );
}

/**
 * Checks a 200 token reply (start or refresh) and returns its fields.
 * @returns {{accessToken: string|null, expiresIn: number, uuid: any}}
 */
function expectTokenReply(reply, what, { allowNullToken = false } = {}) {
  if (reply.status !== 200) fail(`${what} answered ${describeReply(reply)}; expected 200`);
  const ct = reply.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(ct.trim())) fail(`${what} answered 200 without Content-Type: application/json`);
  if (Buffer.byteLength(reply.text) > MAX_BODY_BYTES) fail(`${what} answered a body over 16 KiB, which the helper discards`);
  // A reply that carries a token must not be kept by any cache.
  if (!/(^|,)\s*no-store\s*(,|$)/i.test(reply.headers.get("cache-control") ?? "")) fail(`${what} answered 200 without Cache-Control: no-store`);
  const j = reply.json;
  if (!isObject(j)) fail(`${what} answered 200 without a JSON object`);
  if (!(j.accessToken === null && allowNullToken) && !isPlausibleToken(j.accessToken)) {
    fail(
      `${what}: accessToken is ${j.accessToken === null ? "null" : typeof j.accessToken === "string" ? "not a plausible token (printable ASCII, at most 4096 bytes)" : "missing"}`,
    );
  }
  const e = j.expiresIn;
  if (typeof e !== "number" || !Number.isFinite(e) || e < 1 || e > MAX_EXPIRES_IN) {
    fail(`${what}: expiresIn must be a number of seconds from 1 to ${MAX_EXPIRES_IN}, got ${typeof e === "number" ? e : typeof e}`);
  }
  return { accessToken: j.accessToken, expiresIn: e, uuid: j.uuid };
}

/** Checks a contract error reply: status, JSON `error` among `codes`, a `message`. */
function expectError(reply, what, status, codes) {
  const want = `${status} ${codes.join(" or ")}`;
  if (reply.status !== status) fail(`${what} answered ${describeReply(reply)}; expected ${want}`);
  const ct = reply.headers.get("content-type") ?? "";
  if (!isObject(reply.json) || !/^application\/json\b/i.test(ct.trim())) {
    fail(`${what} answered ${describeReply(reply)} without a JSON error body; expected ${want} as {"error", "message"}`);
  }
  if (!codes.includes(reply.json.error)) fail(`${what} answered ${describeReply(reply)}; expected ${want}`);
  if (typeof reply.json.message !== "string" || reply.json.message.trim() === "") {
    fail(`${what}: the ${status} ${reply.json.error} body has no message`);
  }
}

/** Signs in afresh and starts a session in a new browser (cookie jar). */
async function startSession(ctx, mode, { keepMeLoggedIn = false, clientSession = true, what = "start" } = {}) {
  const login = await ctx.signIn(mode);
  const jar = new CookieJar();
  const reply = await ctx.backend.post("start", { jar, body: startBody(ctx, mode, login, { keepMeLoggedIn, clientSession }) });
  const r = expectTokenReply(reply, what, { allowNullToken: mode === "code" && !clientSession });
  const expectedUuid = login.uuid ?? ctx.uuid;
  if (typeof r.uuid !== "string" || r.uuid === "") fail(`${what}: the reply has no uuid`);
  if (expectedUuid !== undefined && r.uuid !== expectedUuid) fail(`${what}: the reply's uuid is not the signed-in user's`);
  const cookies = sessionCookies(ctx, reply);
  if (cookies.length === 0) {
    fail(`${what} set no session cookie${ctx.options.cookieName ? ` named ${ctx.options.cookieName}` : ""}`);
  }
  ctx.cookieNames ??= cookies.map((c) => c.name);
  ctx.started.push(jar);
  return { mode, jar, login, token: r.accessToken, expiresIn: r.expiresIn, reply, cookies };
}

/** Refreshes `session` expecting a token; updates `session.token`. */
async function refreshOk(ctx, session, body, what) {
  const reply = await ctx.backend.post("refresh", { jar: session.jar, body });
  const r = expectTokenReply(reply, what);
  session.token = r.accessToken;
  return { ...r, reply };
}

/** A jar that a refused request may have been handed cookies in must hold no session. */
async function expectNoSession(ctx, reply, jar, what) {
  if (sessionCookies(ctx, reply).length > 0) fail(`${what} was refused (${describeReply(reply)}) but set a cookie; a failed start sets none`);
  if (jar.names().length === 0) return;
  const probe = await ctx.backend.post("refresh", { jar: jar.copy(), body: refreshBody(ctx, null) });
  if (probe.status === 200) fail(`${what} was refused, but the cookie it set is a working session`);
}

/** "3 × 401 session_expired, 1 × 502 upstream_error" */
function tally(replies) {
  const counts = new Map();
  for (const r of replies) counts.set(describeReply(r), (counts.get(describeReply(r)) ?? 0) + 1);
  return [...counts].map(([d, n]) => `${n} × ${d}`).join(", ");
}

/** A browser with the session cookies' names but values the backend never issued. */
async function forgedJar(ctx) {
  if (!ctx.cookieNames) await startSession(ctx, ctx.primary, { what: "a start to learn the session cookie's name" });
  return new CookieJar(ctx.cookieNames.map((name) => [name, forgedCookieValue(ctx, "x".repeat(32))]));
}

/** A padded JSON body of MAX_BODY_BYTES + 1 bytes. */
function oversized(fields) {
  const base = JSON.stringify({ ...fields, padding: "" });
  return base.replace('"padding":""', `"padding":"${"x".repeat(MAX_BODY_BYTES + 1 - base.length)}"`);
}

const FOREIGN_ORIGINS = ["https://attacker.example", "null"];

// --- The checks -------------------------------------------------------------------------------

/**
 * @typedef {object} Check
 * @property {string} id
 * @property {string} description
 * @property {"1.0"|"1.1"} [contract]  the contract version that introduced the row (default 1.0)
 * @property {boolean} [background]   runs alongside the others (it mostly waits)
 * @property {(ctx: object) => (string|undefined)} [skip]  a reason to skip, given the options
 * @property {(ctx: object) => Promise<void>} run
 */

/** Checks of one integration mode. */
function modeChecks(mode) {
  const M = mode;
  const checks = [
    {
      id: `${M}.start`,
      description: `start (${M} mode) answers 200 with accessToken, expiresIn (1 to 86400 s) and the signed-in user's uuid, as application/json with Cache-Control: no-store, and sets a session cookie`,
      run: async (ctx) => {
        await startSession(ctx, M);
      },
    },
    {
      id: `${M}.start.cookie`,
      description:
        "every session cookie is HttpOnly, Path=/ and SameSite=Lax or Strict, its value long enough for a 128-bit random id and holding neither token nor uuid; unless the backend is on loopback it is also Secure, named __Host-... and without Domain",
      run: async (ctx) => {
        if (!ctx.options.loopback && !ctx.options.https) fail("the backend is on plain http: its session cookie cannot be Secure");
        const s = await startSession(ctx, M);
        for (const c of s.cookies) {
          const problems = [];
          if (!c.httpOnly) problems.push("no HttpOnly");
          const sameSite = (c.sameSite ?? "").toLowerCase();
          if (sameSite !== "lax" && sameSite !== "strict") {
            problems.push(c.sameSite === undefined ? "no SameSite" : "SameSite is neither Lax nor Strict");
          }
          if (c.path !== "/") problems.push(c.path === undefined ? "no Path=/" : "Path is not /");
          const host = c.name.startsWith("__Host-");
          if (!ctx.options.loopback && !c.secure) problems.push("no Secure");
          if (!ctx.options.loopback && !host) problems.push("no __Host- prefix");
          if (host && ctx.options.loopback && !c.secure) problems.push("__Host- without Secure");
          if (host && c.domain !== undefined) problems.push("__Host- with Domain");
          // 128 random bits need at least 20 printable characters; the id must be nothing else.
          if (c.value.length < 20) problems.push(`a ${c.value.length}-character value cannot hold a 128-bit random id`);
          if (s.token && c.value.includes(s.token)) problems.push("the value holds the access token");
          if (s.login.uuid && c.value.includes(s.login.uuid)) problems.push("the value holds the uuid");
          if (problems.length > 0) fail(`cookie ${printableName(c.name)}: ${problems.join(", ")}`);
        }
      },
    },
    {
      id: `${M}.start.browser-session-cookie`,
      contract: "1.1",
      description: "keepMeLoggedIn false: the session cookie has neither Max-Age nor Expires (it ends with the browser)",
      run: async (ctx) => {
        const s = await startSession(ctx, M, { keepMeLoggedIn: false });
        const persistent = s.cookies.filter((c) => c.maxAge !== undefined || c.expires !== undefined);
        if (persistent.length > 0) fail(`keepMeLoggedIn false, yet cookie ${printableName(persistent[0].name)} has ${persistent[0].maxAge !== undefined ? "Max-Age" : "Expires"}`);
      },
    },
    {
      id: `${M}.start.persistent-cookie`,
      contract: "1.1",
      description: "keepMeLoggedIn true: the session cookie is persistent (Max-Age or Expires in the future)",
      run: async (ctx) => {
        const s = await startSession(ctx, M, { keepMeLoggedIn: true });
        const session = s.cookies.filter((c) => !isPersistent(c));
        if (session.length > 0) fail(`keepMeLoggedIn true, yet cookie ${printableName(session[0].name)} has no Max-Age or Expires in the future`);
      },
    },
    {
      id: `${M}.start.new-session-id`,
      description:
        "a start issues a new session id: not the one the browser already had (session fixation; the old session is deleted), and not one the browser made up",
      run: async (ctx) => {
        const first = await startSession(ctx, M);
        const before = new Set(first.cookies.map((c) => c.value));
        const oldSession = first.jar.copy();
        const login = await ctx.signIn(M);
        const again = await ctx.backend.post("start", { jar: first.jar, body: startBody(ctx, M, login) });
        expectTokenReply(again, "a second start in the same browser");
        const set = sessionCookies(ctx, again);
        if (set.length === 0) fail("a start in a browser that already has a session set no cookie: the browser keeps its old session id");
        if (set.some((c) => before.has(c.value))) fail("a start in a browser that already has a session kept that session's id");
        const old = await ctx.backend.post("refresh", { jar: oldSession, body: {} });
        if (old.status === 200) fail("a start in a browser that already has a session left the old session alive; it must be deleted");
        // A browser arriving with an id it made up (planted by an attacker, say).
        const planted = new CookieJar(first.cookies.map((c) => [c.name, forgedCookieValue(ctx, c.value)]));
        const plantedValues = new Set(planted.values());
        const login2 = await ctx.signIn(M);
        const third = await ctx.backend.post("start", { jar: planted, body: startBody(ctx, M, login2) });
        expectTokenReply(third, "a start in a browser with a made-up session cookie");
        const issued = sessionCookies(ctx, third);
        if (issued.length === 0) fail("a start in a browser with a made-up session cookie set no cookie: the browser keeps the made-up id");
        if (issued.some((c) => plantedValues.has(c.value))) fail("a start adopted a session id the browser made up");
      },
    },
  ];

  if (M === "token") {
    checks.push(
      {
        id: "token.start.invalid-token",
        description: "start with an access token Capture never issued answers 401 invalid_token and starts no session",
        run: async (ctx) => {
          const login = await ctx.signIn("token");
          const jar = new CookieJar();
          const body = startBody(ctx, "token", { ...login, token: forgedLike(ctx, login.token, "token") });
          const reply = await ctx.backend.post("start", { jar, body });
          expectError(reply, "start with a made-up access token", 401, ["invalid_token"]);
          await expectNoSession(ctx, reply, jar, "start with a made-up access token");
        },
      },
      {
        id: "token.start.forged-uuid",
        description: "start with a real access token but another user's uuid answers 401 invalid_token and starts no session",
        run: async (ctx) => {
          const login = await ctx.signIn("token");
          const jar = new CookieJar();
          const body = startBody(ctx, "token", { ...login, uuid: randomUUID() });
          const reply = await ctx.backend.post("start", { jar, body });
          expectError(reply, "start with a real token and another uuid", 401, ["invalid_token"]);
          await expectNoSession(ctx, reply, jar, "start with a real token and another uuid");
        },
      },
    );
  } else {
    checks.push(
      {
        id: "code.start.invalid-code",
        description: "start with an authorization code Capture never issued answers 401 invalid_token",
        run: async (ctx) => {
          const jar = new CookieJar();
          const body = startBody(ctx, "code", { code: forgedLike(ctx, "", "code") });
          const reply = await ctx.backend.post("start", { jar, body });
          expectError(reply, "start with a made-up authorization code", 401, ["invalid_token"]);
          await expectNoSession(ctx, reply, jar, "start with a made-up authorization code");
        },
      },
      {
        id: "code.start.code-replay",
        description: "a second start with an authorization code already exchanged answers 401 invalid_token",
        run: async (ctx) => {
          const s = await startSession(ctx, "code");
          const jar = new CookieJar();
          const reply = await ctx.backend.post("start", { jar, body: startBody(ctx, "code", s.login) });
          expectError(reply, "a second start with the same authorization code", 401, ["invalid_token"]);
          await expectNoSession(ctx, reply, jar, "a second start with the same authorization code");
        },
      },
      {
        id: "code.start.client-session-false",
        description: "clientSession false: start answers accessToken null; a refresh then answers a token",
        run: async (ctx) => {
          const s = await startSession(ctx, "code", { clientSession: false });
          if (s.token !== null) fail("start with clientSession false answered an accessToken; expected null");
          await refreshOk(ctx, s, refreshBody(ctx, null), "a refresh after a start with clientSession false");
        },
      },
    );
  }

  checks.push(
    {
      id: `${M}.refresh.v1.0`,
      description: "refresh with the contract 1.0 body {}, or an empty body, answers 200 with a token and expiresIn",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        await refreshOk(ctx, s, {}, "refresh with {}");
        const reply = await ctx.backend.post("refresh", { jar: s.jar, raw: "" });
        expectTokenReply(reply, "refresh with an empty body");
      },
    },
    {
      id: `${M}.refresh.replace-current`,
      contract: "1.1",
      description: "refresh naming the current token (replace = its fingerprint) mints a new token, three times in a row",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        const seen = new Set([s.token]);
        for (let i = 1; i <= 3; i += 1) {
          const previous = s.token;
          const r = await refreshOk(ctx, s, refreshBody(ctx, previous), `refresh ${i} naming the current token`);
          if (seen.has(r.accessToken)) {
            fail(`refresh ${i} naming the current token answered ${r.accessToken === previous ? "that same token" : "an earlier token"}; expected a new one`);
          }
          seen.add(r.accessToken);
        }
      },
    },
    {
      id: `${M}.refresh.replace-stale`,
      contract: "1.1",
      background: true,
      description:
        "refresh naming an older token, or an unknown fingerprint, answers the current token, with expiresIn counting down from the moment of the reply",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        const old = s.token;
        const minted = await refreshOk(ctx, s, refreshBody(ctx, old), "a refresh naming the current token");
        if (minted.accessToken === old) fail(`a refresh naming the current token answered it again (see ${M}.refresh.replace-current)`);
        // Wait long enough that a countdown shows: expiresIn is seconds from the reply.
        await sleep(2200);
        const stale = await refreshOk(ctx, s, refreshBody(ctx, old), "a refresh naming an older token");
        if (stale.accessToken !== minted.accessToken) {
          fail(`a refresh naming an older token answered ${stale.accessToken === old ? "that older token" : "another new token"}; expected the current one`);
        }
        const elapsed = (stale.reply.sentAt - minted.reply.receivedAt) / 1000;
        if (stale.expiresIn > minted.expiresIn - elapsed + 1) {
          fail(`expiresIn went from ${minted.expiresIn} to ${stale.expiresIn} over ${elapsed.toFixed(1)} s for the same token; it must count down`);
        }
        const unknown = await refreshOk(ctx, s, { replace: fingerprint(randomUUID()), interactive: true }, "a refresh naming an unknown fingerprint");
        if (unknown.accessToken !== minted.accessToken) fail("a refresh naming an unknown fingerprint did not answer the current token");
      },
    },
    {
      id: `${M}.refresh.interactive`,
      contract: "1.1",
      description: "refresh accepts interactive true and false",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        await refreshOk(ctx, s, refreshBody(ctx, s.token, false), "refresh with interactive false");
        await refreshOk(ctx, s, refreshBody(ctx, s.token, true), "refresh with interactive true");
      },
    },
    {
      id: `${M}.refresh.parallel`,
      description: `${PARALLEL_REFRESHES} parallel refreshes of one session naming its token all answer 200 with one and the same new token (1.0: all 200)`,
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        const body = refreshBody(ctx, s.token);
        const replies = await Promise.all(
          Array.from({ length: PARALLEL_REFRESHES }, () => ctx.backend.post("refresh", { jar: s.jar.copy(), body })),
        );
        const failed = replies.filter((r) => r.status !== 200);
        if (failed.length > 0) fail(`${failed.length} of ${PARALLEL_REFRESHES} parallel refreshes failed: ${tally(failed)}`);
        const tokens = replies.map((r) => expectTokenReply(r, "a parallel refresh").accessToken);
        if (!ctx.v11) return;
        const distinct = new Set(tokens);
        if (distinct.size > 1) fail(`${PARALLEL_REFRESHES} parallel refreshes naming one token answered ${distinct.size} different tokens; expected one`);
        if (distinct.has(s.token)) fail(`${PARALLEL_REFRESHES} parallel refreshes naming the current token answered that token again; expected a new one`);
      },
    },
    {
      id: `${M}.end`,
      description: "end answers 204 and clears the session cookie; a refresh with the ended session's cookie then answers 401",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        const cookies = s.jar.copy();
        const reply = await ctx.backend.post("end", { jar: s.jar });
        if (reply.status !== 204) fail(`end answered ${describeReply(reply)}; expected 204`);
        const cleared = new Set(reply.setCookies.filter((c) => isDeletion(c)).map((c) => c.name));
        const kept = s.cookies.filter((c) => !cleared.has(c.name));
        if (kept.length > 0) fail(`end did not clear cookie ${printableName(kept[0].name)} (Max-Age=0 or an Expires in the past)`);
        const after = await ctx.backend.post("refresh", { jar: cookies, body: refreshBody(ctx, s.token) });
        expectError(after, "a refresh with an ended session's cookie", 401, ["no_session", "session_expired"]);
      },
    },
    {
      id: `${M}.end.during-refresh`,
      description: "an end racing five refreshes wins: afterwards the session refreshes no more",
      run: async (ctx) => {
        const s = await startSession(ctx, M);
        const body = refreshBody(ctx, s.token);
        const [end, ...racing] = await Promise.all([
          ctx.backend.post("end", { jar: s.jar.copy() }),
          ...Array.from({ length: 5 }, () => ctx.backend.post("refresh", { jar: s.jar.copy(), body })),
        ]);
        if (end.status !== 204) fail(`end answered ${describeReply(end)}; expected 204`);
        const odd = racing.filter((r) => r.status !== 200 && r.status !== 401);
        if (odd.length > 0) fail(`refreshes racing an end answered ${tally(odd)}; expected 200 or 401`);
        const after = await ctx.backend.post("refresh", { jar: s.jar.copy(), body: {} });
        expectError(after, "a refresh after the end and the racing refreshes", 401, ["no_session", "session_expired"]);
      },
    },
  );
  return checks;
}

function printableName(name) {
  return /^[\x21-\x7e]{1,64}$/.test(name) ? name : "(unprintable name)";
}

/** Checks of the request rules, run in the first mode given. */
function requestChecks() {
  const checks = [];
  for (const endpoint of ["start", "refresh", "end"]) {
    checks.push({
      id: `${endpoint}.requires-header`,
      description: `${endpoint} without X-Capture-Session, or with a value other than 1, answers 403 forbidden${endpoint === "start" ? " and starts no session" : " and leaves the session as it was"}`,
      run: async (ctx) => {
        await refusedRequest(ctx, endpoint, { header: false }, `${endpoint} without X-Capture-Session`, 403, ["forbidden"]);
        await refusedRequest(ctx, endpoint, { header: "0" }, `${endpoint} with X-Capture-Session: 0`, 403, ["forbidden"]);
      },
    });
  }
  for (const endpoint of ["start", "refresh", "end"]) {
    checks.push({
      id: `${endpoint}.foreign-origin`,
      description: `${endpoint} with an Origin that is not allowed (another site, or "null") answers 403 forbidden`,
      run: async (ctx) => {
        for (const origin of FOREIGN_ORIGINS) {
          await refusedRequest(ctx, endpoint, { origin }, `${endpoint} with Origin ${origin}`, 403, ["forbidden"]);
        }
      },
    });
  }
  for (const endpoint of ["start", "refresh", "end"]) {
    checks.push({
      id: `${endpoint}.body-too-large`,
      description: `${endpoint} with a body over 16 KiB answers 413 payload_too_large`,
      run: async (ctx) => {
        await refusedRequest(ctx, endpoint, { oversized: true }, `${endpoint} with a ${MAX_BODY_BYTES + 1}-byte body`, 413, ["payload_too_large"]);
      },
    });
  }
  checks.push(
    {
      id: "start.bad-body",
      description:
        "start answers 400 invalid_request to a body that is not JSON, not an object, lacks or misspells a field, has a field of the wrong type, or is not sent as application/json",
      run: async (ctx) => {
        const uuid = randomUUID();
        const token = forgedLike(ctx, "", "token");
        const code = forgedLike(ctx, "", "code");
        const redirectUri = ctx.options.redirectUri;
        const cases = [
          ["a body that is not JSON", { raw: '{"mode": "token",' }],
          ["a JSON array", { body: [] }],
          ["no mode", { body: { uuid, accessToken: token } }],
          ["an unknown mode", { body: { mode: "password", uuid, accessToken: token } }],
          ["token mode without accessToken", { body: { mode: "token", uuid } }],
          ["token mode without uuid", { body: { mode: "token", accessToken: token } }],
          ["token mode with a numeric accessToken", { body: { mode: "token", uuid, accessToken: 12345 } }],
          ["token mode with an accessToken holding a space", { body: { mode: "token", uuid, accessToken: `${token.slice(0, 16)} ${token.slice(16)}` } }],
          ["code mode without authorizationCode", { body: { mode: "code", redirectUri } }],
          ["code mode without redirectUri", { body: { mode: "code", authorizationCode: code } }],
          ["clientSession that is not a boolean", { body: { mode: "code", authorizationCode: code, redirectUri, clientSession: "no" } }],
          ["Content-Type text/plain", { body: { mode: "token", uuid, accessToken: token }, contentType: "text/plain" }],
        ];
        if (ctx.v11) {
          cases.push(["keepMeLoggedIn that is not a boolean", { body: { mode: "token", uuid, accessToken: token, keepMeLoggedIn: "yes" } }]);
        }
        const wrong = [];
        for (const [what, init] of cases) {
          const reply = await ctx.backend.post("start", { jar: new CookieJar(), ...init });
          if (!isContractError(reply, 400, "invalid_request")) wrong.push(`${what}: ${describeReply(reply)}`);
        }
        if (wrong.length > 0) fail(`expected 400 invalid_request for ${wrong.join("; ")}`);
      },
    },
    {
      id: "refresh.bad-body",
      description:
        "refresh answers 400 invalid_request to a body that is not a JSON object, or (1.1) replace or interactive of the wrong type, or a replace that is not 8 lowercase hex digits",
      run: async (ctx) => {
        const s = await startSession(ctx, ctx.primary);
        const cases = [
          ["a body that is not JSON", { raw: "{" }],
          ["a JSON array", { body: [] }],
          ["a JSON string", { body: "refresh" }],
        ];
        if (ctx.v11) {
          cases.push(
            ["replace that is a number", { body: { replace: 12345678, interactive: true } }],
            ["replace that is not 8 lowercase hex digits", { body: { replace: fingerprint(s.token).toUpperCase().replace(/^[0-9]/, "F"), interactive: true } }],
            ["interactive that is a string", { body: { replace: fingerprint(s.token), interactive: "yes" } }],
          );
        }
        const wrong = [];
        for (const [what, init] of cases) {
          const reply = await ctx.backend.post("refresh", { jar: s.jar.copy(), ...init });
          if (!isContractError(reply, 400, "invalid_request")) wrong.push(`${what}: ${describeReply(reply)}`);
        }
        if (wrong.length > 0) fail(`expected 400 invalid_request for ${wrong.join("; ")}`);
      },
    },
    {
      id: "end.bad-body",
      description: "end answers 400 invalid_request to a body that is not a JSON object, and the session stays",
      run: async (ctx) => {
        const s = await startSession(ctx, ctx.primary);
        const wrong = [];
        for (const [what, init] of [["a body that is not JSON", { raw: "{" }], ["a JSON array", { body: [] }]]) {
          const reply = await ctx.backend.post("end", { jar: s.jar.copy(), ...init });
          if (!isContractError(reply, 400, "invalid_request")) wrong.push(`${what}: ${describeReply(reply)}`);
        }
        if (wrong.length > 0) fail(`expected 400 invalid_request for ${wrong.join("; ")}`);
        const after = await ctx.backend.post("refresh", { jar: s.jar, body: refreshBody(ctx, s.token) });
        if (after.status !== 200) fail(`after the refused ends the session no longer refreshes (${describeReply(after)})`);
      },
    },
    {
      id: "start.unknown-fields",
      description: "start ignores fields it does not know (a later helper may send more)",
      run: async (ctx) => {
        const login = await ctx.signIn(ctx.primary);
        const body = { ...startBody(ctx, ctx.primary, login), sentBy: "capture-session-conformance", future: { nested: [1, 2] } };
        const reply = await ctx.backend.post("start", { jar: new CookieJar(), body });
        expectTokenReply(reply, "start with unknown fields");
      },
    },
    {
      id: "refresh.unknown-fields",
      description: "refresh ignores fields it does not know",
      run: async (ctx) => {
        const s = await startSession(ctx, ctx.primary);
        await refreshOk(ctx, s, { ...refreshBody(ctx, s.token), sentBy: "capture-session-conformance", future: null }, "refresh with unknown fields");
      },
    },
    {
      id: "refresh.no-session",
      description: "refresh without a session cookie, or with a session id the backend never issued, answers 401 no_session",
      run: async (ctx) => {
        const none = await ctx.backend.post("refresh", { jar: new CookieJar(), body: {} });
        expectError(none, "refresh without a session cookie", 401, ["no_session"]);
        const forged = await ctx.backend.post("refresh", { jar: await forgedJar(ctx), body: {} });
        expectError(forged, "refresh with a made-up session cookie", 401, ["no_session"]);
      },
    },
    {
      id: "end.no-session",
      description: "end answers 204 without a session, and with a session id the backend never issued",
      run: async (ctx) => {
        const none = await ctx.backend.post("end", { jar: new CookieJar() });
        if (none.status !== 204) fail(`end without a session answered ${describeReply(none)}; expected 204`);
        const forged = await ctx.backend.post("end", { jar: await forgedJar(ctx) });
        if (forged.status !== 204) fail(`end with a made-up session cookie answered ${describeReply(forged)}; expected 204`);
      },
    },
    {
      id: "cors.preflight",
      description:
        "cross-origin backend (--origin differs from the backend's): the preflight of each endpoint allows the page origin with credentials, POST and both headers, and no other origin",
      skip: (ctx) =>
        ctx.options.origin === ctx.options.backendOrigin ? "the page origin is the backend's own (give --origin for a cross-origin page)" : undefined,
      run: async (ctx) => {
        for (const endpoint of ["start", "refresh", "end"]) {
          const r = await ctx.backend.preflight(endpoint, ctx.options.origin);
          if (r.status < 200 || r.status >= 300) fail(`the ${endpoint} preflight answered ${r.status}`);
          if (r.headers.get("access-control-allow-origin") !== ctx.options.origin) fail(`the ${endpoint} preflight does not allow the page origin`);
          if (r.headers.get("access-control-allow-credentials") !== "true") fail(`the ${endpoint} preflight does not allow credentials`);
          const methods = (r.headers.get("access-control-allow-methods") ?? "").toUpperCase().split(",").map((m) => m.trim());
          if (!methods.includes("POST")) fail(`the ${endpoint} preflight does not allow POST`);
          const allowed = (r.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(",").map((h) => h.trim());
          for (const h of ["content-type", "x-capture-session"]) {
            if (!allowed.includes(h)) fail(`the ${endpoint} preflight does not allow the ${h} header`);
          }
          const foreign = await ctx.backend.preflight(endpoint, FOREIGN_ORIGINS[0]);
          const acao = foreign.headers.get("access-control-allow-origin");
          if (acao === FOREIGN_ORIGINS[0] || acao === "*") fail(`the ${endpoint} preflight allows a foreign origin`);
        }
        const s = await startSession(ctx, ctx.primary);
        const reply = await ctx.backend.post("refresh", { jar: s.jar, body: refreshBody(ctx, s.token) });
        expectTokenReply(reply, "a cross-origin refresh");
        if (reply.headers.get("access-control-allow-origin") !== ctx.options.origin || reply.headers.get("access-control-allow-credentials") !== "true") {
          fail("a cross-origin refresh reply lacks Access-Control-Allow-Origin (the page origin) or -Allow-Credentials: true");
        }
      },
    },
  );
  return checks;
}

function isContractError(reply, status, code) {
  return reply.status === status && isObject(reply.json) && reply.json.error === code && typeof reply.json.message === "string";
}

/**
 * Sends one refused request to `endpoint` (with a live session for refresh and end) and
 * checks the refusal; afterwards the session must still work, and a refused start must not
 * have started one.
 */
async function refusedRequest(ctx, endpoint, { header = true, origin, oversized: big = false }, what, status, codes) {
  if (endpoint === "start") {
    const login = await ctx.signIn(ctx.primary);
    const body = startBody(ctx, ctx.primary, login);
    const jar = new CookieJar();
    const reply = await ctx.backend.post("start", big ? { jar, raw: oversized(body) } : { jar, body, header, origin });
    expectError(reply, what, status, codes);
    await expectNoSession(ctx, reply, jar, what);
    return;
  }
  const s = await startSession(ctx, ctx.primary);
  const body = endpoint === "refresh" ? refreshBody(ctx, s.token) : {};
  const init = big ? { raw: oversized(body) } : { body, header, origin };
  const reply = await ctx.backend.post(endpoint, { jar: s.jar.copy(), ...init });
  expectError(reply, what, status, codes);
  const after = await ctx.backend.post("refresh", { jar: s.jar, body: refreshBody(ctx, s.token) });
  if (after.status !== 200) fail(`after the refused ${endpoint} the session no longer refreshes (${describeReply(after)})`);
}

/** The waiting checks: idle timeout and absolute lifetime. */
function timedChecks() {
  return [
    {
      id: "session.idle",
      contract: "1.1",
      background: true,
      description:
        "only interactive refreshes extend the idle timeout: a session refreshed with interactive false ends after it (401 no_session), one refreshed with interactive true lives on (needs --idle-timeout)",
      skip: (ctx) => (ctx.options.idleTimeout === undefined ? "needs --idle-timeout SECONDS (a backend configured with a short one)" : undefined),
      run: async (ctx) => {
        const idleMs = ctx.options.idleTimeout * 1000;
        const [background, foreground] = await Promise.all([startSession(ctx, ctx.primary), startSession(ctx, ctx.primary)]);
        // Non-interactive refreshes do not count: the background session's idle deadline is at
        // most its start reply plus the timeout, and at least its start request plus the timeout.
        const bgEarliestEnd = background.reply.sentAt + idleMs;
        const bgProbeAt = background.reply.receivedAt + idleMs + DEADLINE_SLACK_MS;
        let fgLastSent = foreground.reply.sentAt;
        let bgEnded = false;
        while (Date.now() < bgProbeAt) {
          await sleep(Math.max(0, Math.min(idleMs / 4, bgProbeAt - Date.now())));
          const [bg, fg] = await Promise.all([
            bgEnded ? null : ctx.backend.post("refresh", { jar: background.jar, body: refreshBody(ctx, background.token, false) }),
            ctx.backend.post("refresh", { jar: foreground.jar, body: refreshBody(ctx, foreground.token, true) }),
          ]);
          if (fg.status === 200) {
            foreground.token = expectTokenReply(fg, "an interactive refresh").accessToken;
            fgLastSent = fg.sentAt;
          } else if (fg.receivedAt < fgLastSent + idleMs) {
            fail(`an interactive refresh ${secs(fg.sentAt - fgLastSent)} s after the previous one answered ${describeReply(fg)}; the idle timeout is ${ctx.options.idleTimeout} s`);
          } else {
            fail("the machine was too slow to refresh within the idle timeout: give a longer --idle-timeout");
          }
          if (bg === null) continue;
          if (bg.status === 200) {
            background.token = expectTokenReply(bg, "a non-interactive refresh").accessToken;
            if (bg.sentAt >= bgProbeAt) {
              fail(`a session refreshed only with interactive false still refreshes ${secs(bg.sentAt - background.reply.receivedAt)} s after its start (idle timeout ${ctx.options.idleTimeout} s): non-interactive refreshes must not extend it`);
            }
          } else if (bg.receivedAt < bgEarliestEnd) {
            fail(`a non-interactive refresh ${secs(bg.sentAt - background.reply.sentAt)} s after the start answered ${describeReply(bg)}, before the idle timeout (${ctx.options.idleTimeout} s)`);
          } else {
            expectError(bg, "a refresh after the idle timeout", 401, ["no_session"]);
            bgEnded = true;
          }
        }
        if (!bgEnded) {
          const bg = await ctx.backend.post("refresh", { jar: background.jar, body: refreshBody(ctx, background.token, false) });
          if (bg.status === 200) {
            fail(`a session refreshed only with interactive false still refreshes ${secs(bg.sentAt - background.reply.receivedAt)} s after its start (idle timeout ${ctx.options.idleTimeout} s): non-interactive refreshes must not extend it`);
          }
          expectError(bg, "a refresh after the idle timeout", 401, ["no_session"]);
        }
      },
    },
    {
      id: "session.max-lifetime",
      background: true,
      description:
        "a keepMeLoggedIn false session ends at the absolute lifetime however active (401 session_expired); (1.1) a keepMeLoggedIn true one lives on (needs --max-lifetime)",
      skip: (ctx) => (ctx.options.maxLifetime === undefined ? "needs --max-lifetime SECONDS (a backend configured with a short one)" : undefined),
      run: async (ctx) => {
        const maxMs = ctx.options.maxLifetime * 1000;
        const stepMs = Math.min(maxMs, (ctx.options.idleTimeout ?? Infinity) * 1000) / 4;
        const [short, long] = await Promise.all([
          startSession(ctx, ctx.primary, { keepMeLoggedIn: false }),
          ctx.v11 ? startSession(ctx, ctx.primary, { keepMeLoggedIn: true }) : null,
        ]);
        const earliestEnd = short.reply.sentAt + maxMs;
        const probeAt = short.reply.receivedAt + maxMs + DEADLINE_SLACK_MS;
        let ended = false;
        const refreshLong = async () => {
          if (long === null) return;
          const r = await ctx.backend.post("refresh", { jar: long.jar, body: refreshBody(ctx, long.token) });
          if (r.status !== 200) fail(`a keepMeLoggedIn true session answered ${describeReply(r)} ${secs(r.sentAt - long.reply.sentAt)} s after its start; it must outlive the keepMeLoggedIn false lifetime`);
          long.token = expectTokenReply(r, "a refresh of a keepMeLoggedIn true session").accessToken;
        };
        while (!ended) {
          await sleep(Math.max(0, Math.min(stepMs, probeAt - Date.now())));
          const probing = Date.now() >= probeAt;
          const r = await ctx.backend.post("refresh", { jar: short.jar, body: refreshBody(ctx, short.token) });
          await refreshLong();
          if (r.status === 200) {
            short.token = expectTokenReply(r, "a refresh").accessToken;
            if (probing) fail(`a keepMeLoggedIn false session still refreshes ${secs(r.sentAt - short.reply.receivedAt)} s after its start (lifetime ${ctx.options.maxLifetime} s)`);
          } else if (r.receivedAt < earliestEnd) {
            fail(`a refresh ${secs(r.sentAt - short.reply.sentAt)} s after the start answered ${describeReply(r)}, before the session's lifetime (${ctx.options.maxLifetime} s) was up`);
          } else {
            expectError(r, "a refresh after the session's lifetime", 401, ["session_expired"]);
            ended = true;
          }
        }
      },
    },
  ];
}

/** The last check: what every error reply of the run did not contain. */
export const ECHO_CHECK = {
  id: "errors.no-secret-echo",
  description: "no error reply of the whole run contains a token, code or session cookie value the kit sent or received",
};

/** Every check, in the order of the report, for the given modes. */
export function allChecks(modes) {
  return [...modes.flatMap(modeChecks), ...requestChecks(), ...timedChecks()];
}
