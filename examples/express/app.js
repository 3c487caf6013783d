// The capture-session backend contract, version 1.1, with Express and express-session:
//   POST /capture-session/start    a login: verify it with Capture, start a server session
//   POST /capture-session/refresh  a fresh access token for the session
//   POST /capture-session/end      a logout
// Every request carries `X-Capture-Session: 1` and a JSON body; errors are
// `{"error": "<code>", "message": "..."}`. Tokens never reach a log line or an error message.

import express from "express";
import session from "express-session";
import { CaptureError } from "./capture.js";
import { PerSessionQueue } from "./lock.js";

/** A refresh without `replace` (contract 1.0) hands back a token minted this recently. */
const REUSE_WINDOW_MS = 10_000;
/** A refresh naming an older token gets the current one only while it has this long to live
 * (at most half its lifetime); else a new one is minted. */
const MIN_VALIDITY_MS = 60_000;
/** How long an ended session's id is remembered (longer than any refresh takes). */
const ENDED_MEMORY_MS = 10 * 60 * 1000;

/** An error reply of the contract. */
class ApiError extends Error {
  constructor(status, error, message, retryAfter) {
    super(message);
    Object.assign(this, { status, error, retryAfter });
  }
}
const invalidRequest = (message) => new ApiError(400, "invalid_request", message);
const noSession = () => new ApiError(401, "no_session", "there is no session");
const sessionExpired = (message) => new ApiError(401, "session_expired", message);
const invalidToken = (message) => new ApiError(401, "invalid_token", message);
const forbidden = (message) => new ApiError(403, "forbidden", message);

/** What a failed Capture call means to the page. */
function upstreamError(e, { atStart }) {
  console.warn(`capture-session: ${e.message}`);
  switch (e.kind) {
    case "grant":
      return atStart ? invalidToken("Identity Cloud did not accept the token or code") : sessionExpired("Identity Cloud no longer accepts this session");
    case "redirect":
      return invalidRequest("redirectUri differs from the one the authorization code was issued for");
    case "busy":
    case "timeout":
      return new ApiError(503, "unavailable", "Identity Cloud is busy or slow", 2);
    default:
      return new ApiError(502, "upstream_error", "Identity Cloud failed");
  }
}

/** FNV-1a 32-bit of the token's UTF-8 bytes, 8 lowercase hex digits: how the page names a token. */
export function fingerprint(token) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(token, "utf8")) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, "0");
}

// --- Request bodies: checked field by field; messages never quote a value. --------------------

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isToken = (v) => typeof v === "string" && /^[\x21-\x7e]{1,4096}$/.test(v);

function booleanField(body, name, fallback) {
  if (body[name] === undefined) return fallback;
  if (typeof body[name] !== "boolean") throw invalidRequest(`${name} must be a boolean`);
  return body[name];
}

function parseStart(req) {
  if (!req.is("application/json")) throw invalidRequest("Content-Type must be application/json");
  const body = req.body;
  if (!isObject(body)) throw invalidRequest("the body must be a JSON object");
  const keepMeLoggedIn = booleanField(body, "keepMeLoggedIn", false);
  if (body.mode === "token") {
    if (typeof body.uuid !== "string" || !/^[\x21-\x7e]{1,128}$/.test(body.uuid)) throw invalidRequest("uuid must be a uuid");
    if (!isToken(body.accessToken)) throw invalidRequest("accessToken must be a token");
    return { mode: "token", uuid: body.uuid, accessToken: body.accessToken, keepMeLoggedIn };
  }
  if (body.mode === "code") {
    if (!isToken(body.authorizationCode)) throw invalidRequest("authorizationCode must be a code");
    if (typeof body.redirectUri !== "string" || !/^https?:\/\/\S{1,2040}$/.test(body.redirectUri)) throw invalidRequest("redirectUri must be an http(s) URL");
    const clientSession = booleanField(body, "clientSession", true);
    return { mode: "code", code: body.authorizationCode, redirectUri: body.redirectUri, clientSession, keepMeLoggedIn };
  }
  throw invalidRequest('mode must be "token" or "code"');
}

function parseRefresh(req) {
  const body = req.body ?? {}; // no body at all is the same as {}
  if (!isObject(body)) throw invalidRequest("the body must be a JSON object");
  if (body.replace !== undefined && (typeof body.replace !== "string" || !/^[0-9a-f]{8}$/.test(body.replace))) {
    throw invalidRequest("replace must be a token fingerprint (8 lowercase hex digits)");
  }
  return { replace: body.replace, interactive: booleanField(body, "interactive", true) };
}

// --- express-session's callback API as promises. ----------------------------------------------

const promised = (fn) => new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
const regenerate = (req) => promised((cb) => req.session.regenerate(cb));
const reload = (req) => promised((cb) => req.session.reload(cb));
const save = (req) => promised((cb) => req.session.save(cb));
const destroy = (req) => promised((cb) => req.session.destroy(cb));

/** Ids of recently ended sessions: a refresh that was in flight must not bring one back. */
class EndedSessions {
  #at = new Map();
  add(id) {
    const now = Date.now();
    for (const [old, at] of this.#at) {
      if (now - at < ENDED_MEMORY_MS) break;
      this.#at.delete(old);
    }
    this.#at.set(id, now);
  }
  has(id) {
    return this.#at.has(id);
  }
}

/**
 * @param {ReturnType<import("./config.js").configFromEnv>} config
 * @param {{store: session.Store, capture: ReturnType<import("./capture.js").captureClient>}} deps
 */
export function createApp(config, { store, capture }) {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", config.trustProxy);
  const cookie = { httpOnly: true, sameSite: "lax", secure: config.secureCookies, path: "/" };
  const refreshes = new PerSessionQueue();
  const ended = new EndedSessions();

  const secondsLeft = (expiresAt) => Math.max(1, Math.floor((expiresAt - Date.now()) / 1000));
  const reply = (res, status, body) => res.set("Cache-Control", "no-store").status(status).json(body);

  const contract = express.Router();
  // Every request: the header (which also forces a CORS preflight from other origins) and, when
  // a browser sends one, an allowed Origin.
  contract.use((req, res, next) => {
    if (req.get("X-Capture-Session") !== "1") return next(forbidden("the X-Capture-Session: 1 header is required"));
    const origin = req.get("Origin");
    if (origin !== undefined && !config.allowedOrigins.includes(origin.toLowerCase())) return next(forbidden("origin not allowed"));
    next();
  });
  contract.use(express.json({ limit: "16kb" }));
  contract.use(session({ name: config.cookieName, secret: config.sessionSecret, store, cookie, resave: false, saveUninitialized: false }));

  contract.post("/start", async (req, res) => {
    const login = parseStart(req);
    if (!config.modes.includes(login.mode)) throw invalidRequest(`${login.mode} mode is not enabled on this site`);
    const now = Date.now();
    let record;
    try {
      if (login.mode === "token") {
        // The page says whose token this is; Capture says whose it really is.
        if ((await capture.tokenOwner(login.accessToken)) !== login.uuid) {
          throw invalidToken("the access token does not belong to the uuid given");
        }
        record = { mode: "token", uuid: login.uuid, accessToken: login.accessToken, tokenExpiresAt: now + config.tokenLifetimeMs };
      } else {
        const grant = await capture.exchangeCode(login.code, login.redirectUri);
        const uuid = await capture.tokenOwner(grant.accessToken);
        const lifetimeMs = grant.expiresIn ? grant.expiresIn * 1000 : config.tokenLifetimeMs;
        record = { mode: "code", uuid, accessToken: grant.accessToken, refreshToken: grant.refreshToken, tokenExpiresAt: now + lifetimeMs };
      }
    } catch (e) {
      throw e instanceof CaptureError ? upstreamError(e, { atStart: true }) : e;
    }
    Object.assign(record, {
      tokenMintedAt: now,
      keepMeLoggedIn: login.keepMeLoggedIn,
      absoluteDeadline: now + (login.keepMeLoggedIn ? config.rememberMaxMs : config.sessionMaxMs),
      idleDeadline: now + config.idleTimeoutMs,
    });
    // A login gets a new session id (no session fixation); the browser's old session ends.
    if (req.session.capture) ended.add(req.sessionID);
    await regenerate(req);
    req.session.capture = record;
    // keepMeLoggedIn false: a cookie that ends with the browser (no Max-Age).
    req.session.cookie.maxAge = login.keepMeLoggedIn ? record.absoluteDeadline - now : null;
    await save(req);
    const accessToken = login.mode === "code" && !login.clientSession ? null : record.accessToken;
    reply(res, 200, { accessToken, expiresIn: secondsLeft(record.tokenExpiresAt), uuid: record.uuid });
  });

  contract.post("/refresh", async (req, res) => {
    const request = parseRefresh(req);
    if (!req.session.capture) throw noSession();
    const id = req.sessionID;
    // One refresh of a session at a time (lock.js), on the session as stored now: another
    // refresh may have rotated its token while this one waited.
    const answer = await refreshes.run(id, async () => {
      try {
        await reload(req);
      } catch {
        throw noSession();
      }
      const current = req.session.capture;
      const now = Date.now();
      // Past the idle deadline the session is gone; past the absolute one it expired.
      if (now >= current.absoluteDeadline || now >= current.idleDeadline) {
        await destroy(req);
        throw now >= current.absoluteDeadline ? sessionExpired("the session reached its maximum lifetime") : noSession();
      }
      const next = { ...current };
      if (mustMint(current, request.replace, now)) {
        try {
          Object.assign(next, await mint(current, now));
        } catch (e) {
          if (!(e instanceof CaptureError)) throw e;
          if (e.kind === "grant") await destroy(req);
          throw upstreamError(e, { atStart: false });
        }
      }
      // Only a user who viewed or used the page keeps the session from idling out.
      if (request.interactive) next.idleDeadline = now + config.idleTimeoutMs;
      // A logout that arrived meanwhile wins: checked right before the save, with no await between.
      if (ended.has(id)) throw noSession();
      req.session.capture = next;
      if (next.keepMeLoggedIn) req.session.cookie.maxAge = next.absoluteDeadline - now;
      await save(req);
      return { accessToken: next.accessToken, expiresIn: secondsLeft(next.tokenExpiresAt) };
    });
    reply(res, 200, answer);
  });

  contract.post("/end", async (req, res) => {
    if (req.body !== undefined && !isObject(req.body)) throw invalidRequest("the body must be a JSON object");
    if (req.session.capture) {
      ended.add(req.sessionID);
      await destroy(req);
      res.clearCookie(config.cookieName, cookie);
    }
    res.set("Cache-Control", "no-store").status(204).end();
  });

  /** Contract 1.1: a new token when the page names the current one (or it is nearly dead). */
  function mustMint(current, replace, now) {
    const lifetime = current.tokenExpiresAt - current.tokenMintedAt;
    const valid = current.tokenExpiresAt - now >= Math.min(MIN_VALIDITY_MS, lifetime / 2);
    if (replace === undefined) return !(valid && now - current.tokenMintedAt < REUSE_WINDOW_MS); // 1.0
    return replace === fingerprint(current.accessToken) || !valid;
  }

  async function mint(current, now) {
    if (current.mode === "token") {
      const accessToken = await capture.mintAccessToken(current.uuid);
      return { accessToken, tokenMintedAt: now, tokenExpiresAt: now + config.tokenLifetimeMs };
    }
    if (!current.refreshToken) throw new CaptureError("grant", "the session has no refresh token");
    const grant = await capture.refreshGrant(current.refreshToken);
    return {
      accessToken: grant.accessToken,
      refreshToken: grant.refreshToken ?? current.refreshToken,
      tokenMintedAt: now,
      tokenExpiresAt: now + (grant.expiresIn ? grant.expiresIn * 1000 : config.tokenLifetimeMs),
    };
  }

  // Errors: the contract's JSON body. Nothing from the request is logged or echoed.
  contract.use((err, req, res, next) => {
    let e = err;
    if (err.type === "entity.too.large") e = new ApiError(413, "payload_too_large", "request bodies are limited to 16 KiB");
    else if (err.type === "entity.parse.failed") e = invalidRequest("the body is not a JSON object");
    else if (typeof err.type === "string" && err.status === 415) e = invalidRequest("unsupported body encoding");
    else if (!(err instanceof ApiError)) {
      console.error(`capture-session: ${err.name}${err.code ? ` ${err.code}` : ""} while answering ${req.path}`);
      e = new ApiError(503, "unavailable", "the session store is unavailable", 2);
    }
    if (res.headersSent) return next(err);
    if (e.retryAfter) res.set("Retry-After", String(e.retryAfter));
    reply(res, e.status, { error: e.error, message: e.message });
  });

  app.use("/capture-session", contract);
  app.get("/healthz", (req, res) => res.json({ status: "ok" }));
  return app;
}
