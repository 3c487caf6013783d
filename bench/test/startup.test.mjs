// Tests of the start-up measurement's own code (lib/measure.mjs interval
// arithmetic, lib/startup.mjs checks and tables, lib/peers.mjs stored sessions
// and fingerprints). No browser: the numbers themselves are never asserted.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { BENCH_DIR, coveredMs, splitPhases } from "../lib/measure.mjs";
import { PEERS, captureSessionStored, fnv1a, storedSession } from "../lib/peers.mjs";
import { PHASES, loadProblem, loadSample, startupHeadline, startupRows, urlOf, wasmUrlOf } from "../lib/startup.mjs";

test("coveredMs counts overlapping spans once and clips them to the interval", () => {
  assert.equal(coveredMs([], 0, 10), 0);
  assert.equal(coveredMs([[1, 3], [5, 6]], 0, 10), 3); // disjoint
  assert.equal(coveredMs([[1, 5], [3, 8]], 0, 10), 7); // overlapping: [1, 8]
  assert.equal(coveredMs([[1, 9], [2, 3]], 0, 10), 8); // nested
  assert.equal(coveredMs([[-5, 2], [8, 20]], 0, 10), 4); // clipped at both ends
  assert.equal(coveredMs([[12, 15], [-3, -1]], 0, 10), 0); // outside
  assert.equal(coveredMs([[5, 8], [1, 3]], 0, 10), 5); // order does not matter
});

test("splitPhases gives each phase its duration, network part and the rest", () => {
  const marks = { t0: 0, imported: 10, ready: 14 };
  const phases = [["import", "t0", "imported"], ["start", "imported", "ready"]];
  const got = splitPhases(marks, phases, [[1, 7], [12, 13]]);
  assert.deepEqual(got, [
    { label: "import", ms: 10, network: 6, beyond: 4 },
    { label: "start", ms: 4, network: 1, beyond: 3 },
  ]);
  assert.throws(() => splitPhases({ t0: 0 }, phases, []), /mark imported missing/);
  assert.throws(() => splitPhases({ t0: 5, imported: 1, ready: 9 }, phases, []), /imported came before t0/);
});

// A load as lib/startup.mjs loadPage returns it.
const ORIGIN = "http://127.0.0.1:9";
function load(bench, extra = {}) {
  return {
    bench: { t0: 100, visibility: "visible", ...bench },
    marks: null,
    resources: [],
    requests: [],
    origin: ORIGIN,
    pagePath: "/bench/startup.html",
    ...extra,
  };
}
const csVariant = { id: "capture-session-esm", kind: "esm", label: "cs", prefix: "/pkg/", expect: { expiresAt: 1_000_000 } };
const peerVariant = { id: "peer", kind: "peer", label: "peer 1.0", prefix: "/peers/peer.js", expect: { fingerprint: fnv1a("tok"), length: 3 } };

test("loadProblem accepts a load that reported the stored session and fetched only its own files", () => {
  const good = load({ imported: 110, initialized: 115, attached: 117, ready: 120, result: { state: "active", expiresAt: 1_000_000 } }, {
    requests: [{ method: "GET", origin: ORIGIN, path: "/pkg/web/capture_session.js" }, { method: "GET", origin: ORIGIN, path: "/pkg/web/capture_session_bg.wasm" }],
  });
  assert.equal(loadProblem(csVariant, good), null);
  const peer = load({ imported: 110, ready: 112, result: { token: { fingerprint: fnv1a("tok"), length: 3 } } });
  assert.equal(loadProblem(peerVariant, peer), null);
});

test("loadProblem rejects what would make the number meaningless", () => {
  const ok = { imported: 110, ready: 112, result: { token: { fingerprint: fnv1a("tok"), length: 3 } } };
  assert.match(loadProblem(peerVariant, load({ ...ok, error: "TypeError: x" })).message, /page reported TypeError/);
  assert.match(loadProblem(peerVariant, load({ ...ok, visibility: "hidden" })).message, /hidden/);
  const stray = load(ok, { requests: [{ method: "GET", origin: "https://login.example", path: "/.well-known/openid-configuration" }] });
  assert.match(loadProblem(peerVariant, stray).message, /network request other than the library's files: GET https:\/\/login\.example\/\.well-known/);
  const backend = load(ok, { requests: [{ method: "POST", origin: ORIGIN, path: "/capture-session/refresh" }] });
  assert.match(loadProblem(peerVariant, backend).message, /POST .*\/capture-session\/refresh/);
  assert.match(loadProblem(peerVariant, load({ ...ok, result: { token: null } })).message, /no stored session \(its answer was null\)/);
  assert.match(loadProblem(peerVariant, load({ ...ok, result: { token: "undefined" } })).message, /no stored session \(its answer was undefined\)/);
  assert.match(loadProblem(peerVariant, load({ ...ok, result: { token: { fingerprint: fnv1a("other"), length: 5 } } })).message, /different token/);
  assert.match(loadProblem(csVariant, load({ ready: 120, result: { state: "none", expiresAt: null } })).message, /state was "none"/);
  assert.match(loadProblem(csVariant, load({ ready: 120, result: { state: "active", expiresAt: 5 } })).message, /not the stored expiry/);
  assert.match(loadProblem(peerVariant, load({ result: ok.result })).message, /mark ready missing/);
});

test("loadSample: network is the library's own files only, within t0 -> ready", () => {
  const l = load({ imported: 110, initialized: 115, attached: 117, ready: 120 }, {
    resources: [
      { origin: ORIGIN, path: "/pkg/web/capture_session.js", start: 99, end: 104 }, // from before t0: 4 ms count
      { origin: ORIGIN, path: "/pkg/web/capture_session_bg.wasm", start: 110, end: 113 },
      { origin: ORIGIN, path: "/bench/other.js", start: 100, end: 120 }, // not the library's
      { origin: "http://elsewhere", path: "/pkg/x.js", start: 100, end: 120 }, // other origin
    ],
  });
  const s = loadSample(csVariant, l, false);
  assert.equal(s.total, 20);
  assert.equal(s.network, 7);
  assert.equal(s.beyond, 13);
  assert.deepEqual(s.phases.map((p) => [p.label, p.ms, p.beyond]), [
    ["import of the JS glue", 10, 6],
    ["init(): fetch, compile and instantiate the wasm", 5, 2],
    ["attach()", 2, 2],
    ["attach() → ready", 3, 3],
  ]);
});

test("the split phases of each kind run from t0 to ready without gaps", () => {
  for (const [kind, modes] of Object.entries(PHASES)) {
    for (const [mode, phases] of Object.entries(modes)) {
      assert.equal(phases[0][1], "t0", `${kind}/${mode} starts at t0`);
      assert.equal(phases.at(-1)[2], "ready", `${kind}/${mode} ends at ready`);
      for (let i = 1; i < phases.length; i++) assert.equal(phases[i][1], phases[i - 1][2], `${kind}/${mode} phase ${i} follows phase ${i - 1}`);
    }
  }
});

test("startupRows and startupHeadline: medians per row, the fastest peer by beyond-network median", () => {
  const sample = (total, network) => ({ total, network, beyond: total - network, phases: [{ label: "a", ms: total, network, beyond: total - network }] });
  const rows = startupRows(csVariant, "warm cache", [sample(10, 4), sample(20, 4), sample(30, 4)], false);
  assert.deepEqual(rows.map((r) => [r.what, r.median]), [
    ["script start → stored session known", 20],
    ["beyond the network", 16],
    ["network (the library's files on the wire)", 4],
    ["  a", 20],
  ]);
  assert.equal(rows[3].beyond.median, 16);
  const split = startupRows(csVariant, "warm cache", [sample(10, 4)], true);
  assert.equal(split[0].what, "script start → ready, instrumented load");
  const lib = (id, beyond) => ({ id, label: id, rows: [{ cache: "warm cache", what: "beyond the network", median: beyond, p95: beyond + 1 }] });
  const h = startupHeadline([lib("capture-session-esm", 9), lib("capture-session-script", 7), lib("slow", 20), lib("fast", 4), { id: "broken", label: "broken", notMeasured: "x" }]);
  assert.equal(h.fastestPeer.id, "fast");
  assert.equal(h.esm.median, 9);
  assert.equal(h.script.median, 7);
  assert.equal(h.esmPrefetch, null);
  assert.deepEqual(h.peers.map((p) => p.id), ["fast", "slow"]);
});

test("urls: split=1 marks instrumented loads; the wasm sits next to its glue", () => {
  const v = { path: "/bench/startup.html", query: { lib: "x", src: "/a.js" } };
  assert.equal(urlOf(ORIGIN, v, false), `${ORIGIN}/bench/startup.html?lib=x&src=%2Fa.js`);
  assert.equal(urlOf(ORIGIN, v, true), `${ORIGIN}/bench/startup.html?lib=x&src=%2Fa.js&split=1`);
  assert.equal(urlOf(ORIGIN, { path: "/p.html", query: {} }, false), `${ORIGIN}/p.html`);
  assert.equal(wasmUrlOf("/pkg/web/capture_session.js"), "/pkg/web/capture_session_bg.wasm");
  assert.throws(() => wasmUrlOf("/pkg/web/"), /not a glue file/);
});

test("fnv1a is FNV-1a 32-bit of UTF-8, the same as the page's fingerprint()", () => {
  assert.equal(fnv1a(""), "811c9dc5");
  assert.equal(fnv1a("a"), "e40c292c");
  assert.equal(fnv1a("foobar"), "bf9cf968");
  const html = readFileSync(join(BENCH_DIR, "pages", "startup.html"), "utf8");
  const source = /function fingerprint\(text\) \{[\s\S]*?\n\}/.exec(html)?.[0];
  assert.ok(source, "pages/startup.html defines fingerprint(text)");
  const pageFingerprint = new Function(`${source}; return fingerprint;`)();
  for (const s of ["", "a", "foobar", "bench-access-é✓", "x".repeat(300)]) assert.equal(pageFingerprint(s), fnv1a(s), s.slice(0, 20));
});

test("stored sessions: the keys and shapes each library reads, and an expectation that matches the stored token", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const values = (state) => Object.fromEntries(state.origins[0].localStorage.map((e) => [e.name, e.value]));
  const check = (token, expect) => assert.deepEqual({ fingerprint: fnv1a(token), length: token.length }, expect);

  const oidc = storedSession("oidc-client-ts", ORIGIN, now);
  const { authority, client_id } = oidc.config.settings;
  const user = JSON.parse(values(oidc.storageState)[`oidc.user:${authority}:${client_id}`]);
  assert.equal(user.expires_at, now / 1000 + 3600);
  check(user.access_token, oidc.expect);

  const okta = storedSession("@okta/okta-auth-js", ORIGIN, now);
  assert.equal(okta.config.settings.tokenManager.storage, "localStorage");
  const tokens = JSON.parse(values(okta.storageState)["okta-token-storage"]);
  assert.equal(tokens.accessToken.expiresAt, now / 1000 + 3600);
  assert.ok(Array.isArray(tokens.accessToken.scopes) && tokens.idToken.idToken.split(".").length === 3);
  check(tokens.accessToken.accessToken, okta.expect);

  const auth0 = storedSession("@auth0/auth0-spa-js", ORIGIN, now);
  const a0 = values(auth0.storageState);
  const entry = JSON.parse(a0[`@@auth0spajs@@::${auth0.config.settings.clientId}::default::openid profile email`]);
  assert.equal(entry.expiresAt, now / 1000 + 3600);
  assert.ok(JSON.parse(a0[`@@auth0spajs@@::${auth0.config.settings.clientId}::@@user@@`]).decodedToken.claims.sub);
  assert.equal(auth0.config.settings.cacheLocation, "localstorage");
  check(entry.body.access_token, auth0.expect);

  const msal = storedSession("@azure/msal-browser", ORIGIN, now);
  assert.equal(msal.storageState, null); // written by MSAL itself in the browser
  assert.equal(msal.config.settings.cache.cacheLocation, "localStorage");
  check(msal.seed.response.access_token, msal.expect);
  const info = JSON.parse(Buffer.from(msal.seed.response.client_info, "base64url").toString());
  const claims = JSON.parse(Buffer.from(msal.seed.response.id_token.split(".")[1], "base64url").toString());
  assert.deepEqual(info, { uid: claims.oid, utid: claims.tid });

  // Fresh secrets every time: nothing to replay.
  assert.notEqual(storedSession("oidc-client-ts", ORIGIN, now).expect.fingerprint, oidc.expect.fingerprint);
  assert.deepEqual(PEERS.map((p) => p.name).sort(), ["@auth0/auth0-spa-js", "@azure/msal-browser", "@okta/okta-auth-js", "oidc-client-ts"]);

  const cs = captureSessionStored(ORIGIN, "tok", now);
  assert.deepEqual(values(cs.storageState), { janrainCaptureToken: "tok", janrainCaptureToken_Expires: "Tue, 01 Jan 2030 01:00:00 GMT" });
  assert.equal(cs.expect.expiresAt, now + 3600e3);
});
