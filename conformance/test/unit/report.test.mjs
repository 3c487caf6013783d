import assert from "node:assert/strict";
import test from "node:test";
import { counts, formatReport, summaryLine } from "../../lib/table.js";
import { describeSecret, fingerprint, scrubTokenLike, Secrets } from "../../lib/secrets.js";

test("the report is an aligned table ending with the summary line", () => {
  const text = formatReport([
    { id: "token.start", result: "pass" },
    { id: "refresh.requires-header", result: "fail", reason: "refresh without X-Capture-Session answered 200;\n expected 403 forbidden" },
    { id: "session.idle", result: "skip", reason: "needs --idle-timeout SECONDS" },
  ]);
  const lines = text.split("\n");
  assert.equal(lines[0], "result  check                    reason");
  assert.equal(lines[1], "pass    token.start");
  assert.equal(lines[2], "FAIL    refresh.requires-header  refresh without X-Capture-Session answered 200; expected 403 forbidden");
  assert.equal(lines[3], "skip    session.idle             needs --idle-timeout SECONDS");
  assert.equal(lines.at(-2), "1 skipped (see the reasons above)");
  assert.equal(lines.at(-1), "1 passed, 1 failed");
});

test("summary counts", () => {
  const rs = [{ result: "pass" }, { result: "pass" }, { result: "fail" }, { result: "skip" }];
  assert.deepEqual(counts(rs), { pass: 2, fail: 1, skip: 1 });
  assert.equal(summaryLine(rs), "2 passed, 1 failed");
  assert.equal(formatReport([{ id: "a", result: "pass" }]).split("\n").at(-1), "1 passed, 0 failed");
});

test("fingerprints are FNV-1a 32-bit over UTF-8, as 8 lowercase hex digits", () => {
  // The FNV-1a test vectors, as the browser helper computes them.
  assert.equal(fingerprint(""), "811c9dc5");
  assert.equal(fingerprint("a"), "e40c292c");
  assert.equal(fingerprint("foobar"), "bf9cf968");
  assert.equal(fingerprint("é"), fingerprint("\u00e9"));
  assert.match(fingerprint("é"), /^[0-9a-f]{8}$/);
  assert.equal(describeSecret("foobar", "code"), "code fp bf9cf968 (6 chars)");
});

test("scrub replaces every registered secret and anything token-like", () => {
  const secrets = new Secrets();
  const token = "9f86d081884c7d659a2feaa0c55ad015";
  secrets.add(token, "token");
  secrets.add("hunter2!", "password");
  secrets.add("abc", "cookie"); // too short to recognise: ignored
  assert.deepEqual(secrets.findIn(`x ${token} y`), ["token"]);
  assert.deepEqual(secrets.findIn("nothing here"), []);
  const out = secrets.scrub(`token ${token} and hunter2! and abc and ${"Zq9".repeat(10)} at http://127.0.0.1:8080/capture-session/refresh`);
  assert.ok(!out.includes(token) && !out.includes("hunter2!") && !out.includes("Zq9Zq9"), out);
  assert.match(out, /<token fp [0-9a-f]{8} \(32 chars\)>/);
  assert.match(out, /<password fp [0-9a-f]{8} \(8 chars\)>/);
  assert.match(out, /<redacted 30 chars>/);
  assert.match(out, /and abc and/);
  assert.match(out, /http:\/\/127\.0\.0\.1:8080\/capture-session\/refresh/);
  // Words, check ids and flag names survive.
  const prose = "capture-session-conformance token.refresh.replace-current --max-lifetime session_expired";
  assert.equal(scrubTokenLike(prose), prose);
});
