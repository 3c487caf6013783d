// docs/openapi.yaml against itself and against the real reference server.
//
// 1. The document is valid OpenAPI 3.1 (@readme/openapi-parser checks it against the
//    specification's own schema, plus the rules that schema cannot express).
// 2. `capture-session-server --simulate` (CAPTURE_SESSION_SERVER_BIN, on a port the OS picks) is
//    driven through success in both modes and every error row it can produce. Each real reply
//    is checked against the document: its status is documented for the operation, documented
//    headers are present when required and match their schemas, and the body matches the
//    response schema (ajv, JSON Schema 2020-12, which OpenAPI 3.1 schemas are). The request
//    bodies sent are checked against the request schemas too: the good ones must pass, and the
//    ones the server refuses for their shape must fail.
// 3. Every row the document lists (operation, status, error code) was produced at least once,
//    so the document cannot promise a reply nobody checked.
//
//   CAPTURE_SESSION_SERVER_BIN=... node --test tests/openapi.test.mjs   (scripts/openapi does it)
//
// Nothing here prints a token: failures show statuses, error codes and schema errors.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { validate, dereference, parse, compileErrors } from "@readme/openapi-parser";
import Ajv2020 from "ajv/dist/2020.js";
import { startServer } from "./e2e/harness.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DOC = path.join(ROOT, "docs/openapi.yaml");

test("docs/openapi.yaml is a valid OpenAPI 3.1 document", async () => {
  const raw = await parse(DOC);
  assert.match(raw.openapi, /^3\.1\.\d+$/, "an OpenAPI 3.1 document");
  const result = await validate(structuredClone(raw));
  assert.equal(result.valid, true, result.valid ? "" : compileErrors(result));
  assert.equal(result.specification, "OpenAPI");
  assert.deepEqual(result.warnings, []);
  // The validator is not a formality: the same document with a mistake in it is refused.
  for (const breakIt of [
    (d) => delete d.paths["/capture-session/refresh"].post.responses["200"].description,
    (d) => (d.components.parameters.XCaptureSession.in = "body"),
    (d) => (d.paths["/capture-session/end"].post.responses["204"].headers["Set-Cookie"] = { schema: 5 }),
  ]) {
    const broken = structuredClone(raw);
    breakIt(broken);
    assert.equal((await validate(broken)).valid, false, `accepted a broken copy: ${breakIt}`);
  }
});

// ---- the real server -----------------------------------------------------------------------

let api; // the dereferenced document
let ajv;
let server;
const produced = new Set(); // "operationId status [error]"

const OPERATIONS = {}; // operationId -> { method, path, operation }

/** Sets the server up for the tests in `describe` below. */
async function setUp() {
  api = await dereference(DOC);
  ajv = new Ajv2020({ allErrors: true, strict: true });
  for (const [p, item] of Object.entries(api.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      OPERATIONS[operation.operationId] = { method: method.toUpperCase(), path: p, operation };
    }
  }
  // No upstream retries, so that one simulator fault is one failed reply.
  const started = await startServer({
    tokenLifetime: 3600,
    args: ["--upstream-retries", "0", "--retry-after", "3"],
  });
  server = { base: started.baseUrl, stop: started.stop, admin: started.admin };
}

/** A call as the helper makes it (header, JSON, the page's Origin), with overrides. */
async function call(operationId, { body, raw, cookie, headers = {}, contentType = "application/json" } = {}) {
  const { method, path: p } = OPERATIONS[operationId];
  const h = { "X-Capture-Session": "1", Origin: server.base, ...headers };
  for (const [k, v] of Object.entries(h)) if (v === undefined) delete h[k];
  if (cookie) h.Cookie = cookie;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined && contentType) h["Content-Type"] = contentType;
  const res = await fetch(server.base + p, { method, headers: h, body: payload, redirect: "manual" });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, setCookies: res.headers.getSetCookie(), text, json };
}

const compiled = new WeakMap();
function schemaErrors(schema, value) {
  let check = compiled.get(schema);
  if (!check) {
    check = ajv.compile(schema);
    compiled.set(schema, check);
  }
  return check(value) ? null : ajv.errorsText(check.errors);
}

/** Asserts that a real reply is one the document describes for the operation; records its row. */
function conforms(operationId, res, what) {
  const label = `${operationId} (${what}): ${res.status}${res.json?.error ? " " + res.json.error : ""}`;
  const response = OPERATIONS[operationId].operation.responses[String(res.status)];
  assert.ok(response, `${label}: status not documented`);
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    const values =
      name.toLowerCase() === "set-cookie"
        ? res.setCookies
        : res.headers.get(name) === null
          ? []
          : [res.headers.get(name)];
    if (header.required) assert.ok(values.length > 0, `${label}: header ${name} missing`);
    if (values.length === 0) continue;
    const errors = values.map((v) => schemaErrors(header.schema, v));
    // Several Set-Cookie headers may come; one must be the session cookie.
    assert.ok(errors.some((e) => e === null), `${label}: header ${name} does not match: ${errors.join("; ")}`);
  }
  if (response.content) {
    const type = (res.headers.get("content-type") ?? "").split(";")[0].trim();
    const media = response.content[type];
    assert.ok(media, `${label}: content type ${JSON.stringify(type)} not documented`);
    assert.notEqual(res.json, undefined, `${label}: body is not JSON`);
    const errors = schemaErrors(media.schema, res.json);
    assert.equal(errors, null, `${label}: body does not match the schema: ${errors}`);
  } else {
    assert.equal(res.text, "", `${label}: a body where the document has none`);
  }
  produced.add(`${operationId} ${res.status}${res.json?.error ? " " + res.json.error : ""}`);
  return res;
}

/** Whether a request body matches the operation's request schema. */
function requestErrors(operationId, body) {
  const schema = OPERATIONS[operationId].operation.requestBody.content["application/json"].schema;
  return schemaErrors(schema, body);
}

function goodRequest(operationId, body) {
  const errors = requestErrors(operationId, body);
  assert.equal(errors, null, `${operationId}: a body the server accepts fails the request schema: ${errors}`);
}

function badRequest(operationId, body, what) {
  assert.notEqual(requestErrors(operationId, body), null, `${operationId}: the request schema accepts ${what}`);
}

// ---- the simulator (the Registration UI's sign-in, and fault injection) ----------------------

const REDIRECT_URI = "http://127.0.0.1/after-login";

async function signIn(mode) {
  const form = new URLSearchParams({
    client_id: "capture-session-demo",
    flow: "standard",
    flow_version: "1",
    locale: "en-US",
    redirect_uri: REDIRECT_URI,
    response_type: mode,
    form: "signInForm",
    signInEmailAddress: "demo@example.com",
    currentPassword: "demo",
  });
  const res = await fetch(`${server.base}/sim/oauth/auth_native_traditional`, { method: "POST", body: form });
  const json = await res.json();
  assert.equal(json.stat, "ok", `sign-in failed: ${json.error}`);
  return { uuid: json.capture_user.uuid, credential: mode === "token" ? json.access_token : json.authorization_code };
}

async function admin(p, body) {
  // The harness's admin call throws unless the answer is 2xx.
  await server.admin.sim(body === undefined ? "DELETE" : "POST", p, body);
}
const fault = (rule) => admin("/sim/_admin/faults", rule);
const outage = (spec) => admin("/capture-session/_admin/outage", spec);

function startBody(mode, signin, extra = {}) {
  return mode === "token"
    ? { mode: "token", uuid: signin.uuid, accessToken: signin.credential, ...extra }
    : { mode: "code", authorizationCode: signin.credential, redirectUri: REDIRECT_URI, ...extra };
}

/** Starts a session; returns its cookie ("name=value") and the token. */
async function start(mode, extra = {}) {
  const body = startBody(mode, await signIn(mode), extra);
  goodRequest("start", body);
  const res = conforms("start", await call("start", { body }), `${mode} mode ${JSON.stringify(Object.keys(extra))}`);
  assert.equal(res.status, 200);
  return { cookie: res.setCookies[0].split(";")[0], token: res.json.accessToken, res };
}

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

// ---- success --------------------------------------------------------------------------------

describe("the reference server answers as documented", () => {
  before(setUp);
  after(async () => {
    await server?.stop();
  });

  test("healthz", async () => {
    const res = await fetch(`${server.base}/healthz`);
    conforms("healthz", { status: res.status, headers: res.headers, setCookies: [], text: "", json: await res.json() }, "up");
  });

  test("start, refresh (1.0 and 1.1) and end succeed as documented, in both modes", async () => {
    for (const mode of ["token", "code"]) {
      for (const keep of [undefined, false, true]) {
        const extra = keep === undefined ? {} : { keepMeLoggedIn: keep };
        const s = await start(mode, extra);
        const attrs = s.res.setCookies[0].split(";").slice(1).map((a) => a.trim().toLowerCase());
        assert.equal(attrs.some((a) => a.startsWith("max-age=")), keep === true, `${mode} keepMeLoggedIn ${keep}: ${attrs}`);
        assert.ok(!attrs.some((a) => a.startsWith("expires=")), `${mode}: ${attrs}`);
      }
      const s = await start(mode);
      for (const [what, body] of [
        ["1.0 {}", {}],
        ["1.1, holding the current token", { replace: fnv1a(s.token), interactive: true }],
        ["1.1, behind", { replace: fnv1a(s.token), interactive: false }],
        ["unknown fields", { somethingNew: 1 }],
      ]) {
        goodRequest("refresh", body);
        const res = conforms("refresh", await call("refresh", { body, cookie: s.cookie }), `${mode}: ${what}`);
        assert.equal(res.status, 200);
      }
      const empty = conforms("refresh", await call("refresh", { cookie: s.cookie }), `${mode}: no body`);
      assert.equal(empty.status, 200);
      goodRequest("end", {});
      const end = conforms("end", await call("end", { body: {}, cookie: s.cookie }), `${mode}: logout`);
      assert.equal(end.status, 204);
      assert.ok(end.setCookies.length > 0, "the cookie is cleared");
      const again = conforms("end", await call("end", { body: {} }), `${mode}: no session`);
      assert.equal(again.status, 204);
    }
    // Code mode without a client-side session: the start reply's token is null.
    const body = startBody("code", await signIn("code"), { clientSession: false });
    goodRequest("start", body);
    const res = conforms("start", await call("start", { body }), "code mode, clientSession false");
    assert.equal(res.json.accessToken, null);
  });

  // ---- every error row -----------------------------------------------------------------------

  test("400 invalid_request: bodies the contract does not allow", async () => {
    const token = await signIn("token");
    const code = await signIn("code");
    // Wrong shapes: the request schema refuses them too.
    const shapes = [
      ["start", { mode: "password" }],
      ["start", { mode: "token", uuid: token.uuid }],
      ["start", { mode: "token", uuid: token.uuid, accessToken: 42 }],
      ["start", { mode: "token", uuid: token.uuid, accessToken: "has space" }],
      ["start", startBody("token", token, { keepMeLoggedIn: "yes" })],
      ["start", startBody("code", code, { keepMeLoggedIn: null })],
      ["start", startBody("code", code, { clientSession: "no" })],
      ["start", { mode: "code", authorizationCode: code.credential, redirectUri: "javascript:x" }],
      ["refresh", { replace: "ABCDEF12" }],
      ["refresh", { replace: "abc" }],
      ["refresh", { replace: null }],
      ["refresh", { interactive: "true" }],
      ["refresh", []],
      ["end", "x"],
    ];
    const s = await start("token");
    for (const [op, body] of shapes) {
      badRequest(op, body, JSON.stringify(body));
      const res = conforms(op, await call(op, { body, cookie: s.cookie }), `bad body ${JSON.stringify(body)}`);
      assert.equal(res.status, 400, `${op} ${JSON.stringify(body)}`);
    }
    // Not JSON, or not declared as JSON.
    conforms("start", await call("start", { raw: "{not json" }), "not JSON");
    const plain = conforms("start", await call("start", { raw: "{}", contentType: "text/plain" }), "text/plain");
    assert.equal(plain.status, 400);
    // Well-formed, refused by Identity Cloud's rules: a redirectUri other than the code's.
    const other = { mode: "code", authorizationCode: code.credential, redirectUri: "http://127.0.0.1/elsewhere" };
    goodRequest("start", other);
    const mismatch = conforms("start", await call("start", { body: other }), "redirect_uri mismatch");
    assert.equal(mismatch.status, 400);
  });

  test("401: invalid_token at start, no_session and session_expired at refresh", async () => {
    const signin = await signIn("token");
    const forged = { mode: "token", uuid: signin.uuid, accessToken: "0123456789abcdef0123456789abcdef" };
    goodRequest("start", forged);
    const bad = conforms("start", await call("start", { body: forged }), "unknown token");
    assert.equal(bad.json.error, "invalid_token");
    assert.deepEqual(bad.setCookies, []);
    const none = conforms("refresh", await call("refresh", { body: {} }), "no cookie");
    assert.equal(none.json.error, "no_session");
    // A code-mode session whose refresh token Identity Cloud revoked.
    const s = await start("code");
    await admin("/sim/_admin/revoke", { email: "demo@example.com", refreshTokens: true });
    const expired = conforms("refresh", await call("refresh", { body: { replace: fnv1a(s.token) }, cookie: s.cookie }), "grant revoked");
    assert.equal(expired.json.error, "session_expired");
    const gone = conforms("refresh", await call("refresh", { body: {}, cookie: s.cookie }), "after session_expired");
    assert.equal(gone.json.error, "no_session");
  });

  test("403 forbidden: no X-Capture-Session header, or an Origin not allowed", async () => {
    const s = await start("token");
    for (const op of ["start", "refresh", "end"]) {
      for (const [what, headers] of [
        ["no header", { "X-Capture-Session": undefined }],
        ["wrong header", { "X-Capture-Session": "yes" }],
        ["foreign origin", { Origin: "https://evil.example" }],
        ["opaque origin", { Origin: "null" }],
      ]) {
        const res = conforms(op, await call(op, { body: {}, cookie: s.cookie, headers }), what);
        assert.equal(res.status, 403, `${op} ${what}`);
      }
    }
    // Nothing was ended by the refused end calls.
    assert.equal((await call("refresh", { body: {}, cookie: s.cookie })).status, 200);
  });

  test("413 payload_too_large: bodies over 16 KiB", async () => {
    const big = JSON.stringify({ pad: "a".repeat(16 * 1024) });
    for (const op of ["start", "refresh", "end"]) {
      const res = conforms(op, await call(op, { raw: big }), "17 KiB");
      assert.equal(res.status, 413);
    }
  });

  test("502 upstream_error and 503 unavailable with Retry-After: Identity Cloud failing", async () => {
    const signin = await signIn("token");
    await fault({ path: "/entity", httpStatus: 502, count: 1 });
    const body = startBody("token", signin);
    const broken = conforms("start", await call("start", { body }), "Capture answers HTTP 502");
    assert.equal(broken.json.error, "upstream_error");
    await fault({ path: "/entity", statError: 510, count: 1 });
    const busy = conforms("start", await call("start", { body }), "Capture answers 510 api_limit_error");
    assert.equal(busy.json.error, "unavailable");
    assert.equal(busy.headers.get("retry-after"), "3");

    const s = await start("code");
    await fault({ path: "/oauth/token", dropConnection: true, count: 1 });
    const dropped = conforms("refresh", await call("refresh", { body: { replace: fnv1a(s.token) }, cookie: s.cookie }), "connection dropped");
    assert.equal(dropped.json.error, "upstream_error");
    await fault({ path: "/oauth/token", statError: 510, count: 1 });
    const limited = conforms("refresh", await call("refresh", { body: { replace: fnv1a(s.token) }, cookie: s.cookie }), "510");
    assert.equal(limited.json.error, "unavailable");
    // The session survived both.
    assert.equal((await call("refresh", { body: { replace: fnv1a(s.token) }, cookie: s.cookie })).status, 200);
  });

  test("429 rate_limited and 503 unavailable from a backend that is down (the simulated outage)", async () => {
    // The reference server has no rate limit of its own yet: its test switch answers with the
    // same error replies (429 rate_limited, 503 unavailable, with Retry-After) a limit would.
    const s = await start("token");
    for (const [mode, status, error] of [
      ["429", 429, "rate_limited"],
      ["503", 503, "unavailable"],
    ]) {
      await outage({ mode, retryAfter: 7 });
      try {
        for (const op of ["start", "refresh", "end"]) {
          const res = conforms(op, await call(op, { body: {}, cookie: s.cookie }), `outage ${mode}`);
          assert.equal(res.status, status);
          assert.equal(res.json.error, error);
          assert.equal(res.headers.get("retry-after"), "7");
        }
      } finally {
        await outage({ mode: "off" });
      }
    }
  });

  test("every row of the document was produced by the real server", async (t) => {
    const expected = new Set();
    for (const [operationId, { operation }] of Object.entries(OPERATIONS)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        const schema = response.content?.["application/json"]?.schema;
        const error = schema?.allOf?.[1]?.properties?.error;
        const codes = error?.const !== undefined ? [error.const] : (error?.enum ?? []);
        if (codes.length === 0) expected.add(`${operationId} ${status}`);
        for (const c of codes) expected.add(`${operationId} ${status} ${c}`);
      }
    }
    const missing = [...expected].filter((row) => !produced.has(row));
    assert.deepEqual(missing, [], "documented rows no test produced");
    const undocumented = [...produced].filter((row) => !expected.has(row));
    assert.deepEqual(undocumented, [], "rows produced that the document does not list");
    t.diagnostic(`${expected.size} rows checked against the real server`);
  });
});
