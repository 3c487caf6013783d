import assert from "node:assert/strict";
import test from "node:test";
import { CookieJar, isDeletion, isPersistent, parseSetCookie } from "../../lib/cookies.js";

test("parses the attributes a session cookie uses", () => {
  const c = parseSetCookie("__Host-sid=abc123; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=3600");
  assert.deepEqual(
    { ...c },
    { name: "__Host-sid", value: "abc123", httpOnly: true, secure: true, sameSite: "Lax", path: "/", domain: undefined, maxAge: 3600, expires: undefined },
  );
});

test("attribute names are case-insensitive and values keep their case", () => {
  const c = parseSetCookie("sid=s%3Aa.b; path=/app; httponly; samesite=Strict; DOMAIN=example.com; expires=Tue, 29 Mar 2044 00:24:21 GMT");
  assert.equal(c.value, "s%3Aa.b");
  assert.equal(c.path, "/app");
  assert.equal(c.httpOnly, true);
  assert.equal(c.secure, false);
  assert.equal(c.sameSite, "Strict");
  assert.equal(c.domain, "example.com");
  assert.equal(c.expires.toISOString(), "2044-03-29T00:24:21.000Z");
});

test("values may contain '=' and be empty; a header without a name is ignored", () => {
  assert.equal(parseSetCookie("t=a=b==; Path=/").value, "a=b==");
  assert.equal(parseSetCookie("t=; Max-Age=0").value, "");
  assert.equal(parseSetCookie("=x"), null);
  assert.equal(parseSetCookie("novalue"), null);
  assert.equal(parseSetCookie("t=1; Max-Age=soon").maxAge, undefined);
  assert.equal(parseSetCookie("t=1; Expires=not a date").expires, undefined);
});

test("deletion and persistence (Max-Age wins over Expires)", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  assert.ok(isDeletion(parseSetCookie("a=; Max-Age=0"), now));
  assert.ok(isDeletion(parseSetCookie("a=; Max-Age=-1"), now));
  assert.ok(isDeletion(parseSetCookie("a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"), now));
  assert.ok(!isDeletion(parseSetCookie("a=1; Max-Age=10; Expires=Thu, 01 Jan 1970 00:00:00 GMT"), now));
  assert.ok(!isDeletion(parseSetCookie("a=1"), now));
  assert.ok(isPersistent(parseSetCookie("a=1; Max-Age=10"), now));
  assert.ok(isPersistent(parseSetCookie("a=1; Expires=Wed, 01 Jan 2031 00:00:00 GMT"), now));
  assert.ok(!isPersistent(parseSetCookie("a=1; Path=/; HttpOnly"), now));
  assert.ok(!isPersistent(parseSetCookie("a=1; Max-Age=0"), now));
});

test("the jar applies Set-Cookie and deletions, and copies are independent", () => {
  const jar = new CookieJar();
  assert.equal(jar.header(), undefined);
  jar.update([parseSetCookie("a=1"), parseSetCookie("b=2; Max-Age=60")]);
  assert.equal(jar.header(), "a=1; b=2");
  const copy = jar.copy();
  jar.update([parseSetCookie("a=; Max-Age=0"), parseSetCookie("b=3")]);
  assert.equal(jar.header(), "b=3");
  assert.equal(copy.header(), "a=1; b=2");
  assert.deepEqual(copy.names(), ["a", "b"]);
  assert.deepEqual(jar.values(), ["3"]);
});
