// Starts what the kit's integration tests run against -- the reference server with its built-in
// simulator, the standalone simulator, the Express example (plain or with a fixture preload),
// a redis-server on a free loopback port -- and runs the kit's command line against them.
//
// Env: CAPTURE_SESSION_SERVER_BIN (required: the built capture-session-server; scripts/conformance
// builds it), REDIS_SERVER_BIN (default redis-server), CONFORMANCE_VERBOSE=1 to echo child logs.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const KIT = path.join(ROOT, "conformance/bin/capture-session-conformance.js");
export const EXPRESS = path.join(ROOT, "examples/express");
export const FIXTURES = path.join(ROOT, "conformance/test/fixtures");

// A test user of its own, with a password long enough to be recognised in output.
export const USER = { email: "conformance@example.com", password: "Pa55-w0rd-of-the-kit" };
export const LOGIN_CLIENT = "capture-session-demo";
// The standalone simulator's access_issuer API client (its defaults).
export const API_CLIENT = { id: "capture-session-server", secret: "simulator-secret" };

const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

function serverBin() {
  const bin = process.env.CAPTURE_SESSION_SERVER_BIN;
  if (!bin) throw new Error("set CAPTURE_SESSION_SERVER_BIN to the capture-session-server binary (scripts/conformance does)");
  return bin;
}

/**
 * Spawns a long-running process and waits until its output matches `ready`.
 * @returns {Promise<{match: RegExpMatchArray, log: () => string, stop: () => Promise<void>}>}
 */
async function startProcess(name, command, args, { env = {}, cwd = ROOT, ready, timeoutMs = 20000 }) {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let log = "";
  let exited = null;
  let onOutput = () => {};
  const collect = (chunk) => {
    const text = chunk.toString("utf8");
    log += text;
    if (process.env.CONFORMANCE_VERBOSE) process.stderr.write(`[${name}] ${text}`);
    onOutput();
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const exit = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      children.delete(child);
      onOutput();
      resolve();
    });
    child.on("error", (e) => {
      exited = { error: e.message };
      onOutput();
      resolve();
    });
  });
  const match = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not get ready within ${timeoutMs} ms:\n${log}`)), timeoutMs);
    onOutput = () => {
      const m = ready.exec(log);
      if (m) {
        clearTimeout(timer);
        onOutput = () => {};
        resolve(m);
      } else if (exited) {
        clearTimeout(timer);
        reject(new Error(`${name} exited at start (${JSON.stringify(exited)}):\n${log}`));
      }
    };
    onOutput();
  });
  return {
    match,
    log: () => log,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** The reference server with its simulator under /sim, on a port the OS picks. */
export async function startReferenceServer(args = []) {
  const p = await startProcess(
    "reference",
    serverBin(),
    // The kit signs one user in many times: no per-user session bound (default 20); and it
    // sends hundreds of requests from one address: no per-address rate limit (default 5/s).
    ["--simulate", "--listen", "127.0.0.1:0", "--sim-user", `${USER.email}:${USER.password}`, "--max-sessions-per-user", "0", "--rate-limit-per-second", "0", ...args],
    { ready: /demo and simulator at (http:\/\/127\.0\.0\.1:\d+)\// },
  );
  const url = p.match[1];
  return { ...p, url, captureServer: `${url}/sim`, port: Number(new URL(url).port) };
}

/** The standalone Identity Cloud simulator (Capture paths at its root). */
export async function startSimulator(args = []) {
  // Its admin routes want this secret in X-Sim-Admin-Secret.
  const secret = randomBytes(16).toString("hex");
  const p = await startProcess(
    "simulator",
    serverBin(),
    ["simulator", "--listen", "127.0.0.1:0", "--sim-user", `${USER.email}:${USER.password}`, ...args],
    { ready: /simulator listening addr=(127\.0\.0\.1:\d+)/, env: { CAPTURE_SESSION_SIM_ADMIN_SECRET: secret } },
  );
  const url = `http://${p.match[1]}`;
  const admin = { "X-Sim-Admin-Secret": secret };
  return {
    ...p,
    url,
    /** Adds a fault rule (server/README.md: POST /_admin/faults). */
    async fault(rule) {
      const res = await fetch(`${url}/_admin/faults`, {
        method: "POST",
        headers: { ...admin, "Content-Type": "application/json" },
        body: JSON.stringify(rule),
      });
      assert.equal(res.status, 201, "the simulator accepts the fault rule");
    },
    async clearFaults() {
      const res = await fetch(`${url}/_admin/faults`, { method: "DELETE", headers: admin });
      assert.ok(res.ok, "the simulator clears its fault rules");
    },
  };
}

/**
 * The Express example against `captureUrl`, optionally with a fixture preload.
 * @param {{captureUrl: string, env?: object, preload?: string}} o
 */
export async function startExpress({ captureUrl, env = {}, preload }) {
  const args = preload ? ["--import", path.join(FIXTURES, preload), "server.js"] : ["server.js"];
  const p = await startProcess(preload ?? "express", process.execPath, args, {
    cwd: EXPRESS,
    env: {
      LISTEN: "127.0.0.1:0",
      CAPTURE_URL: captureUrl,
      CAPTURE_CLIENT_ID: API_CLIENT.id,
      CAPTURE_CLIENT_SECRET: API_CLIENT.secret,
      INSECURE_COOKIES: "1",
      SESSION_SECRET: "conformance-test-secret",
      ...env,
    },
    ready: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
  });
  return { ...p, url: p.match[1] };
}

/** A loopback port nothing listens on (as far as the OS knows). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A throwaway redis-server on a free loopback port (it cannot bind :0 itself). */
export async function startRedis() {
  const bin = process.env.REDIS_SERVER_BIN || "redis-server";
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    try {
      const p = await startProcess("redis", bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        ready: /Ready to accept connections/,
      });
      return { ...p, url: `redis://127.0.0.1:${port}/` };
    } catch (e) {
      // Another process may have taken the port between our probe and redis' bind.
      if (attempt >= 3) throw new Error(`cannot start ${bin} (apt-get install redis-server; scripts/setup installs it): ${e.message}`);
      await sleep(100);
    }
  }
}

/**
 * Runs the kit's command line.
 * @returns {Promise<{status: number, stdout: string, stderr: string, rows: {result: string, id: string, reason: string}[]}>}
 */
export async function runKit(args, { env = {} } = {}) {
  const child = spawn(process.execPath, [KIT, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  const status = await new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  return { status, stdout, stderr, rows: parseRows(stdout) };
}

/** The table rows of the kit's report. */
export function parseRows(stdout) {
  const rows = [];
  for (const line of stdout.split("\n")) {
    const m = /^(pass|FAIL|skip)\s{2,}(\S+)(?:\s{2,}(.*))?$/.exec(line);
    if (m) rows.push({ result: m[1], id: m[2], reason: m[3] ?? "" });
  }
  return rows;
}

/** The kit's arguments for a backend and a Capture server, signing in as USER. */
export function kitArgs(backend, captureServer, extra = []) {
  return [
    "--backend", backend,
    "--capture-server", captureServer,
    "--client-id", LOGIN_CLIENT,
    "--flow", "standard",
    "--flow-version", "20240101",
    "--user", `${USER.email}:${USER.password}`,
    ...extra,
  ];
}

/**
 * Asserts that the kit's output holds nothing secret: not the password, none of `secrets`, and
 * nothing shaped like the simulator's credentials (hex runs of 16+; its tokens are 32 hex
 * digits, codes 24, refresh tokens 40) or like session ids and signed cookies (32+ characters
 * of a token alphabet). Fingerprints are 8 hex digits.
 */
export function assertNothingSecret(output, secrets = []) {
  assert.ok(!output.includes(USER.password), "the kit's output holds the password");
  for (const s of secrets) assert.ok(!output.includes(s), `the kit's output holds a secret of ${s.length} characters`);
  const hex = output.match(/[0-9a-f]{16,}/g);
  assert.equal(hex, null, `the kit's output holds ${hex?.length} long hex strings`);
  const long = output.match(/[A-Za-z0-9_%.~+=-]{32,}/g)?.filter((run) => /[0-9]/.test(run) && /[A-Za-z]/.test(run));
  assert.deepEqual(long ?? [], [], "the kit's output holds token-like strings");
}

/**
 * Asserts a run's results: exit status, exactly `failing` failed, exactly `skipped` skipped,
 * every other check of `expectedIds` passed. Prints the report as a test diagnostic.
 */
export function assertReport(t, run, { expectedIds, failing = [], skipped = [] }) {
  // One diagnostic per line, so the report reads as a table in the test log.
  for (const line of `${run.stdout}${run.stderr}`.trimEnd().split("\n")) t.diagnostic(`kit | ${line}`);
  const ids = run.rows.map((r) => r.id);
  assert.deepEqual(ids, expectedIds, "the report lists every check, in order");
  const got = (result) => run.rows.filter((r) => r.result === result).map((r) => r.id).sort();
  assert.deepEqual(got("FAIL"), [...failing].sort(), "exactly these checks fail");
  assert.deepEqual(got("skip"), [...skipped].sort(), "exactly these checks are skipped");
  assert.equal(got("pass").length, ids.length - failing.length - skipped.length);
  const last = run.stdout.trimEnd().split("\n").at(-1);
  assert.equal(last, `${ids.length - failing.length - skipped.length} passed, ${failing.length} failed`);
  assert.equal(run.status, failing.length > 0 ? 1 : 0, "exit status");
}
