// Requests to the backend under test, as the browser helper makes them, and to the Capture
// server's sign-in endpoint, as the Registration UI makes it.

import { parseSetCookie } from "./cookies.js";

/** A check's failure; its message is the reason printed in the table. */
export class CheckFailure extends Error {}

/** Fails the running check. */
export function fail(reason) {
  throw new CheckFailure(reason);
}

/** The kit cannot run at all (Capture or the backend unreachable, sign-in refused). */
export class CannotRun extends Error {}

const ERROR_CODE = /^[a-z][a-z0-9_]{0,39}$/;

/** Why a fetch threw, in words that hold no request data. */
export function describeFetchError(e, timeoutMs) {
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code ?? e?.cause?.errors?.[0]?.code ?? e?.code;
  if (typeof code === "string" && /^[A-Z_]{2,40}$/.test(code)) return `connection failed (${code})`;
  if (e?.cause?.message === "bad port") return "fetch refuses to connect to that port (a blocked port, e.g. 1 or 6000)";
  return "connection failed";
}

/**
 * @typedef {object} Reply
 * @property {string} endpoint  "start" | "refresh" | "end"
 * @property {number} status
 * @property {Headers} headers
 * @property {string} text
 * @property {any} json        the parsed body, or undefined when it is not JSON
 * @property {import("./cookies.js").SetCookie[]} setCookies
 * @property {number} sentAt   epoch ms
 * @property {number} receivedAt epoch ms
 */

/**
 * A reply in a few words, for a failure reason: status, error code if it has a proper one,
 * whether it carried a token (by fingerprint). Never the body itself.
 * @param {Reply} reply
 */
export function describeReply(reply) {
  const j = reply.json;
  let s = String(reply.status);
  if (reply.status >= 300 && reply.status < 400) return `${s} (a redirect; the helper never follows one)`;
  if (j !== null && typeof j === "object" && !Array.isArray(j)) {
    if (typeof j.error === "string") s += ERROR_CODE.test(j.error) ? ` ${j.error}` : " (an error code that is not snake_case)";
    else if (reply.status >= 400) s += " (JSON without an error code)";
    if (typeof j.accessToken === "string") s += " with a token";
  } else if (reply.text === "") {
    if (reply.status !== 204) s += " with an empty body";
  } else {
    s += " (not a JSON object)";
  }
  return s;
}

export class Backend {
  /**
   * @param {object} options  parsed command line (lib/args.js)
   * @param {import("./secrets.js").Secrets} secrets
   */
  constructor(options, secrets) {
    this.options = options;
    this.secrets = secrets;
    /** Every reply with status >= 300, for the final "no secret echoed" check. */
    this.errorReplies = [];
  }

  /**
   * POSTs to an endpoint as the helper does; updates `jar` from the reply.
   * @param {"start"|"refresh"|"end"} endpoint
   * @param {object} init
   * @param {import("./cookies.js").CookieJar} [init.jar]
   * @param {any} [init.body]         JSON-encoded (default {})
   * @param {string} [init.raw]       sent as is instead of `body`
   * @param {string|null} [init.contentType]
   * @param {boolean|string} [init.header]  X-Capture-Session: true sends 1, a string that value, false none
   * @param {string|null} [init.origin] default: the allowed origin; null: no Origin header
   * @param {boolean} [init.record]   keep an error reply for the final echo check (default true)
   * @returns {Promise<Reply>}
   */
  async post(endpoint, { jar, body = {}, raw, contentType = "application/json", header = true, origin, record = true } = {}) {
    const headers = {};
    if (contentType !== null) headers["Content-Type"] = contentType;
    if (header !== false) headers["X-Capture-Session"] = header === true ? "1" : header;
    const sendOrigin = origin === undefined ? this.options.origin : origin;
    if (sendOrigin !== null) headers.Origin = sendOrigin;
    const cookie = jar?.header();
    if (cookie) headers.Cookie = cookie;
    const payload = raw !== undefined ? raw : JSON.stringify(body);
    const reply = await this.#send(endpoint, "POST", headers, payload, record);
    jar?.update(reply.setCookies);
    return reply;
  }

  /** A CORS preflight (OPTIONS) for `endpoint` from `origin`. */
  async preflight(endpoint, origin) {
    return this.#send(endpoint, "OPTIONS", {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type,x-capture-session",
    });
  }

  async #send(endpoint, method, headers, payload, record = true) {
    const sentAt = Date.now();
    let res;
    try {
      res = await fetch(this.options.urls[endpoint], {
        method,
        headers,
        body: payload,
        redirect: "manual",
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
    } catch (e) {
      fail(`${endpoint}: ${describeFetchError(e, this.options.timeoutMs)}`);
    }
    let text;
    try {
      text = await res.text();
    } catch (e) {
      fail(`${endpoint}: the reply body could not be read (${describeFetchError(e, this.options.timeoutMs)})`);
    }
    const receivedAt = Date.now();
    let json;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    const setCookies = res.headers.getSetCookie().map(parseSetCookie).filter(Boolean);
    for (const c of setCookies) this.secrets.add(c.value, "cookie");
    if (json && typeof json === "object" && typeof json.accessToken === "string") {
      this.secrets.add(json.accessToken, "token");
    }
    const reply = { endpoint, status: res.status, headers: res.headers, text, json, setCookies, sentAt, receivedAt };
    if (record && res.status >= 300) this.errorReplies.push(reply);
    return reply;
  }
}

/** A failed sign-in at the Capture server. */
export class SignInError extends Error {}

/**
 * Signs the test user in at `/oauth/auth_native_traditional`, as the Registration UI does.
 * @param {object} o  parsed command line
 * @param {"token"|"code"} mode
 * @param {import("./secrets.js").Secrets} secrets
 * @returns {Promise<{token?: string, code?: string, uuid?: string}>}
 */
export async function signIn(o, mode, secrets) {
  const url = `${o.captureServer}/oauth/auth_native_traditional`;
  const form = new URLSearchParams({
    client_id: o.clientId,
    flow: o.flow,
    flow_version: o.flowVersion,
    locale: o.locale,
    redirect_uri: o.redirectUri,
    response_type: mode,
    form: o.signInForm,
    signInEmailAddress: o.user.email,
    currentPassword: o.user.password,
  });
  let res;
  let text;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: form.toString(),
      redirect: "manual",
      signal: AbortSignal.timeout(o.timeoutMs),
    });
    text = await res.text();
  } catch (e) {
    throw new SignInError(`cannot reach the Capture server at ${url}: ${describeFetchError(e, o.timeoutMs)}`);
  }
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SignInError(`the Capture server answered HTTP ${res.status} without JSON at ${url} (is --capture-server right?)`);
  }
  if (json?.stat !== "ok") {
    const code = Number.isInteger(json?.code) ? ` ${json.code}` : "";
    const name = typeof json?.error === "string" && ERROR_CODE.test(json.error) ? ` ${json.error}` : "";
    const what = typeof json?.error_description === "string" ? `: ${json.error_description.slice(0, 200)}` : "";
    throw new SignInError(`Capture refused the ${mode}-mode sign-in of ${o.user.email} (error${code}${name}${what})`);
  }
  const uuid = typeof json.capture_user?.uuid === "string" ? json.capture_user.uuid : undefined;
  if (mode === "token") {
    if (typeof json.access_token !== "string" || json.access_token === "") {
      throw new SignInError("Capture's token-mode sign-in reply has no access_token (is the login client set to responseType token?)");
    }
    return { token: secrets.add(json.access_token, "token"), uuid };
  }
  if (typeof json.authorization_code !== "string" || json.authorization_code === "") {
    throw new SignInError("Capture's code-mode sign-in reply has no authorization_code");
  }
  return { code: secrets.add(json.authorization_code, "code"), uuid };
}
