import assert from "node:assert/strict";
import test from "node:test";
import { helpText, isLoopbackHost, parseCommandLine, UsageError, USER_ENV, FLAGS } from "../../lib/args.js";

const BASE = [
  "--backend", "https://www.example.com",
  "--capture-server", "https://example.us.janraincapture.com/",
  "--client-id", "abc",
  "--flow", "standard",
  "--flow-version", "20240101",
  "--user", "qa@example.com:s3cret-pass",
];

const parse = (extra = [], env = {}) => parseCommandLine([...BASE, ...extra], env).options;

test("defaults follow the backend", () => {
  const o = parse();
  assert.equal(o.origin, "https://www.example.com");
  assert.equal(o.redirectUri, "https://www.example.com/");
  assert.deepEqual(o.modes, ["token", "code"]);
  assert.equal(o.contract, "1.1");
  assert.equal(o.captureServer, "https://example.us.janraincapture.com");
  assert.equal(o.urls.refresh, "https://www.example.com/capture-session/refresh");
  assert.equal(o.loopback, false);
  assert.equal(o.https, true);
  assert.equal(o.timeoutMs, 10000);
  assert.deepEqual(o.user, { email: "qa@example.com", password: "s3cret-pass" });
  assert.equal(o.idleTimeout, undefined);
});

test("flags override the defaults", () => {
  const o = parse([
    "--mode", "code", "--origin", "https://shop.example.com", "--redirect-uri", "https://shop.example.com/cb",
    "--refresh-path", "/api/session/refresh", "--end-path", "https://api.example.com/end",
    "--contract", "1.0", "--idle-timeout", "5", "--max-lifetime", "12.5", "--timeout", "2500",
    "--only", "token.start, refresh.", "--cookie", "sid",
  ]);
  assert.deepEqual(o.modes, ["code"]);
  assert.equal(o.origin, "https://shop.example.com");
  assert.equal(o.redirectUri, "https://shop.example.com/cb");
  assert.equal(o.urls.refresh, "https://www.example.com/api/session/refresh");
  assert.equal(o.urls.end, "https://api.example.com/end");
  assert.equal(o.contract, "1.0");
  assert.equal(o.idleTimeout, 5);
  assert.equal(o.maxLifetime, 12.5);
  assert.equal(o.timeoutMs, 2500);
  assert.deepEqual(o.only, ["token.start", "refresh."]);
  assert.equal(o.cookieName, "sid");
});

test("the user may come from the environment", () => {
  const argv = BASE.slice(0, -2);
  const o = parseCommandLine(argv, { [USER_ENV]: "env@example.com:pw:with:colons" }).options;
  assert.deepEqual(o.user, { email: "env@example.com", password: "pw:with:colons" });
});

test("loopback hosts", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "app.localhost", "[::1]", "::1"]) assert.ok(isLoopbackHost(h), h);
  for (const h of ["example.com", "10.0.0.1", "127.0.0.1.example.com", "localhost.example.com"]) assert.ok(!isLoopbackHost(h), h);
  assert.equal(parseCommandLine(["--backend", "http://127.0.0.1:8080", ...BASE.slice(2)]).options.loopback, true);
});

test("help, version and list", () => {
  assert.equal(parseCommandLine(["--help"]).action, "help");
  assert.equal(parseCommandLine(["--version"]).action, "version");
  assert.equal(parseCommandLine(["--list"]).action, "list");
  const help = helpText("9.9.9");
  for (const [name] of FLAGS) assert.ok(help.includes(`--${name}`), `--help documents --${name}`);
  assert.match(help, /Exit status/);
});

test("bad command lines are usage errors that never show the password", () => {
  const cases = [
    [["--backend", "ftp://x", ...BASE.slice(2)], /--backend must be an http\(s\) URL/],
    [BASE.filter((_, i) => i < 2 || i > 3), /--capture-server is required/],
    [[...BASE.slice(0, -2)], /--user EMAIL:PASSWORD is required/],
    [[...BASE.slice(0, -1), "no-colon-s3cret-pass"], /--user must be EMAIL:PASSWORD/],
    [[...BASE.slice(0, -1), "qa@example.com:"], /--user must be EMAIL:PASSWORD/],
    [[...BASE, "--mode", "cookie"], /--mode must be token, code or both/],
    [[...BASE, "--contract", "2"], /--contract must be 1.0 or 1.1/],
    [[...BASE, "--timeout=-1"], /--timeout must be a positive integer/],
    [[...BASE, "--timeout", "-1"], /--timeout: a value starting with - is written --timeout=VALUE/],
    [[...BASE, "--idle-timeout", "soon"], /--idle-timeout must be a positive number/],
    [[...BASE, "--origin", "https://a.example/path"], /--origin must be an origin/],
    [[...BASE, "--frobnicate"], /unknown flag --frobnicate/],
    [[...BASE.slice(0, -2), "qa@example.com:s3cret-pass"], /unexpected argument/],
    [[...BASE.slice(0, -2), "--user=qa@example.com:s3cret-pass", "--help=s3cret-pass"], /--help: takes no value/],
    [[...BASE.slice(0, -2), "--qa@example.com:s3cret-pass"], /^unknown flag \(see --help\)$/],
    [[...BASE, "--user"], /--user: needs a value/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseCommandLine(argv, {}),
      (e) => e instanceof UsageError && message.test(e.message) && !e.message.includes("s3cret-pass"),
      `${argv.join(" ")} -> ${message}`,
    );
  }
});
