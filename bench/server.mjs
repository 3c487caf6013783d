// Part 5: the reference server under load, with the Identity Cloud simulator
// as its upstream (each in its own process, all on 127.0.0.1).
//   - refresh requests/s and p50/p99 latency at 1, 64 and 512 concurrent
//     sessions, memory store and Redis, token mode and code mode (wrk, with
//     bench/wrk/refresh.lua giving each request one of the sessions' cookies)
//   - memory per idle session at BENCH_IDLE_SESSIONS (100,000) sessions: the
//     server's RSS before/after (memory store), Redis INFO used_memory
//     before/after (Redis store)
// Sessions are created beforehand through the contract's start endpoint after
// signing in at the simulator; that is setup, not the measurement.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BENCH_DIR, WORK_DIR, notMeasured, writePart } from "./lib/measure.mjs";
import { freePort, pool, request, rssBytes, serverBinary, start, stop, waitForPort } from "./lib/procs.mjs";

const WRK_SECONDS = Number(process.env.BENCH_WRK_SECONDS || 8);
const IDLE_SESSIONS = Number(process.env.BENCH_IDLE_SESSIONS || 100000);
const list = (v, d) => (v || d).split(",").map((x) => x.trim()).filter(Boolean);
const CONCURRENCY = list(process.env.BENCH_SERVER_SESSIONS, "1,64,512").map(Number);
const MODES = list(process.env.BENCH_SERVER_MODES, "token,code");
const STORES = list(process.env.BENCH_SERVER_STORES, "memory,redis,redis-encrypted");
// "on": the per-address rate limiter checks every refresh, with a limit no run reaches
// (wrk sends everything from one address), so its cost shows, not its refusals.
const LIMITS = list(process.env.BENCH_SERVER_LIMITS, "off,on");
const LIMIT_FLAGS = {
  off: ["--rate-limit-per-second", "0"],
  on: ["--rate-limit-per-second", "1000000", "--rate-limit-burst", "1000000"],
};
// "redis-encrypted": the same Redis, values sealed with AES-256-GCM (a throwaway key).
const BENCH_KEY = `bench:${Buffer.from("capture-session bench key 32 byt").toString("base64")}`;
const SIM_CLIENT_ID = "capture-session-server";
const SIM_CLIENT_SECRET = "simulator-secret"; // the simulator's built-in demo secret (cli.rs default)
const SIM_LOGIN_CLIENT = "capture-session-demo";
const SIM_USER = { email: "demo@example.com", password: "demo" };

const bin = serverBinary();
if (!existsSync(bin)) {
  writePart("server", notMeasured(`server binary missing (${bin}): cargo build -p capture-session-server --profile server failed`));
  process.exit(0);
}

// --- Processes ---------------------------------------------------------------
async function startSimulator() {
  const port = await freePort();
  const child = start("simulator", bin, ["simulator", "--listen", `127.0.0.1:${port}`], {
    RUST_LOG: "warn",
    CAPTURE_SESSION_SIM_CLIENT_SECRET: SIM_CLIENT_SECRET,
  });
  await waitForPort(port, child);
  return { child, base: `http://127.0.0.1:${port}` };
}

async function startServer(sim, store, name, encrypted = false, limits = "off") {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  // --simulate: --insecure-localhost-cookies is a development switch, allowed
  // only with it (the Capture URL is the standalone simulator on loopback).
  const child = start(name, bin, [
    "--simulate",
    "--listen", `127.0.0.1:${port}`,
    "--capture-url", sim.base,
    "--issuer-client-id", SIM_CLIENT_ID,
    "--allowed-origin", origin,
    "--insecure-localhost-cookies",
    "--reuse-window", "0",
    // Hundreds of sessions of the one simulator user: no per-user bound (default 20).
    "--max-sessions-per-user", "0",
    // wrk sends everything from one address: no per-address rate limit (default 5/s),
    // or one no run reaches (BENCH_SERVER_LIMITS).
    ...LIMIT_FLAGS[limits],
  ], {
    RUST_LOG: process.env.BENCH_SERVER_LOG || "warn",
    CAPTURE_SESSION_ISSUER_CLIENT_SECRET: SIM_CLIENT_SECRET,
    CAPTURE_SESSION_STORE: store,
    ...(encrypted ? { CAPTURE_SESSION_ENCRYPTION_KEY: BENCH_KEY } : {}),
  });
  await waitForPort(port, child);
  const health = await request(`${origin}/healthz`);
  if (health.status !== 200) throw new Error(`server /healthz answered ${health.status}`);
  return { child, origin, port };
}

async function startRedis() {
  const port = await freePort();
  const child = start("redis", "redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--protected-mode", "yes", "--loglevel", "warning",
  ]);
  await waitForPort(port, child);
  return { child, port, url: `redis://127.0.0.1:${port}/0` };
}

function redisCli(redis, ...args) {
  return execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(redis.port), ...args], { encoding: "utf8" });
}

function redisUsedMemory(redis) {
  const info = redisCli(redis, "INFO", "memory");
  const v = Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
  if (!Number.isFinite(v)) throw new Error("redis INFO memory has no used_memory");
  return v;
}

// --- Sessions ----------------------------------------------------------------
function form(fields) {
  return new URLSearchParams(fields).toString();
}

/** Signs the demo user in at the simulator, as the Registration UI would. */
async function signIn(sim, responseType, redirectUri) {
  const res = await request(`${sim.base}/oauth/auth_native_traditional`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: form({
      client_id: SIM_LOGIN_CLIENT,
      flow: "standard",
      flow_version: "1",
      locale: "en-US",
      redirect_uri: redirectUri,
      response_type: responseType,
      form: "signInForm",
      signInEmailAddress: SIM_USER.email,
      currentPassword: SIM_USER.password,
    }),
  });
  let json;
  try {
    json = JSON.parse(res.body);
  } catch {
    throw new Error(`simulator sign-in answered ${res.status} with a body that is not JSON`);
  }
  if (json.stat !== "ok") throw new Error(`simulator sign-in failed: ${json.error ?? res.status}`);
  if (responseType === "token") {
    const uuid = json.capture_user?.uuid;
    if (!json.access_token || !uuid) throw new Error("simulator sign-in reply lacks access_token or capture_user.uuid");
    return { accessToken: json.access_token, uuid };
  }
  if (!json.authorization_code) throw new Error("simulator sign-in reply lacks authorization_code");
  return { code: json.authorization_code };
}

function contractHeaders(server, cookie) {
  const h = { "content-type": "application/json", "x-capture-session": "1", origin: server.origin };
  if (cookie) h.cookie = cookie;
  return h;
}

/** POSTs the contract's start; returns the session cookie (`name=value`). */
async function startSession(server, body) {
  const res = await request(`${server.origin}/capture-session/start`, {
    method: "POST",
    headers: contractHeaders(server),
    body: JSON.stringify(body),
  });
  if (res.status !== 200) {
    let code = "";
    try { code = JSON.parse(res.body).error; } catch { /* not JSON */ }
    throw new Error(`start answered ${res.status} ${code}`.trim());
  }
  const setCookie = [].concat(res.headers["set-cookie"] ?? []);
  const cookie = setCookie[0]?.split(";")[0];
  if (!cookie) throw new Error("start answered 200 without a session cookie");
  return cookie;
}

async function createSessions(sim, server, mode, count, concurrency = 32) {
  const redirectUri = `${server.origin}/`;
  if (mode === "token") {
    // One sign-in; each session starts with that (valid, verified) token.
    const { accessToken, uuid } = await signIn(sim, "token", redirectUri);
    return pool(count, concurrency, () => startSession(server, { mode: "token", uuid, accessToken }));
  }
  // Codes are single use: one sign-in per session.
  return pool(count, concurrency, async () => {
    const { code } = await signIn(sim, "code", redirectUri);
    return startSession(server, { mode: "code", authorizationCode: code, redirectUri, clientSession: true });
  });
}

/** One refresh through the contract, to check a session works before loading it. */
async function refreshOnce(server, cookie) {
  const res = await request(`${server.origin}/capture-session/refresh`, {
    method: "POST", headers: contractHeaders(server, cookie), body: "{}",
  });
  if (res.status !== 200) throw new Error(`refresh answered ${res.status}`);
}

// --- Load (wrk) --------------------------------------------------------------
function runWrk(server, cookieFile, connections, seconds) {
  // One thread per connection: wrk's request() cannot tell connections apart, but a
  // thread can, so each connection keeps exactly one session (its own cookie).
  const threads = connections;
  const args = [
    "-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "--timeout", "10s",
    "-s", join(BENCH_DIR, "wrk", "refresh.lua"),
    `${server.origin}/capture-session/refresh`, "--", cookieFile, server.origin, String(threads),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => {
      const line = out.split("\n").reverse().find((l) => l.startsWith("{"));
      if (code !== 0 || !line) return reject(new Error(`wrk exited ${code}: ${(err || out).trim().split("\n").pop()}`));
      resolve({ threads, ...JSON.parse(line) });
    });
  });
}

async function loadRuns(sim, store, storeUrl, redis, limits) {
  const server = await startServer(sim, storeUrl, `server-${store}-${limits}-load`, store.endsWith("-encrypted"), limits);
  const rows = [];
  try {
    for (const mode of MODES) {
      let cookies;
      try {
        cookies = await createSessions(sim, server, mode, Math.max(...CONCURRENCY));
        await refreshOnce(server, cookies[0]);
      } catch (e) {
        for (const c of CONCURRENCY) rows.push({ store, limits, mode, sessions: c, ...notMeasured(`creating ${mode}-mode sessions: ${e.message}`) });
        continue;
      }
      for (const sessions of CONCURRENCY) {
        const file = join(WORK_DIR, `cookies-${store}-${limits}-${mode}-${sessions}.txt`);
        writeFileSync(file, cookies.slice(0, sessions).join("\n") + "\n", { mode: 0o600 });
        try {
          await runWrk(server, file, sessions, 1); // warm-up: connections, upstream pool
          const r = await runWrk(server, file, sessions, WRK_SECONDS);
          const seconds = r.duration_us / 1e6;
          const errors = r.errors.status + r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
          const row = {
            store, limits, mode, sessions, threads: r.threads, seconds,
            requests: r.requests, rps: r.requests / seconds,
            p50Ms: r.p50_us / 1000, p90Ms: r.p90_us / 1000, p99Ms: r.p99_us / 1000, maxMs: r.max_us / 1000,
            errors, errorDetail: r.errors, statuses: r.statuses,
          };
          rows.push(row);
          console.log(`server: ${store} limits ${limits} ${mode} ${sessions} sessions: ${row.rps.toFixed(0)} req/s, p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms, ${errors} errors ${JSON.stringify(r.statuses)}`);
        } catch (e) {
          rows.push({ store, limits, mode, sessions, ...notMeasured(e.message) });
        }
      }
    }
  } finally {
    await stop(server.child);
    if (redis) redisCli(redis, "FLUSHALL");
  }
  return rows;
}

// --- Idle memory -------------------------------------------------------------
async function idleMemory(sim, store, storeUrl, redis) {
  const server = await startServer(sim, storeUrl, `server-${store}-idle`, store.endsWith("-encrypted"));
  try {
    const warm = 1000;
    await createSessions(sim, server, "token", warm, 64);
    await new Promise((r) => setTimeout(r, 500));
    const before = redis ? redisUsedMemory(redis) : rssBytes(server.child.pid);
    const keysBefore = redis ? Number(redisCli(redis, "DBSIZE").trim()) : null;
    const t = Date.now();
    await createSessions(sim, server, "token", IDLE_SESSIONS, 64);
    const createSeconds = (Date.now() - t) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
    const after = redis ? redisUsedMemory(redis) : rssBytes(server.child.pid);
    const row = {
      store,
      sessions: IDLE_SESSIONS,
      mode: "token",
      bytesBefore: before,
      bytesAfter: after,
      bytesPerSession: (after - before) / IDLE_SESSIONS,
      method: redis ? "Redis INFO used_memory, after − before" : "server RSS (/proc VmRSS), after − before",
      createSeconds,
    };
    if (redis) row.redisKeysPerSession = (Number(redisCli(redis, "DBSIZE").trim()) - keysBefore) / IDLE_SESSIONS;
    else row.serverRssAfterBytes = after;
    console.log(`server: ${store}: ${row.bytesPerSession.toFixed(0)} bytes per idle session (${IDLE_SESSIONS} sessions created in ${createSeconds.toFixed(1)} s)`);
    return row;
  } finally {
    await stop(server.child);
    if (redis) redisCli(redis, "FLUSHALL");
  }
}

// --- Run ---------------------------------------------------------------------
const out = {
  wrkSeconds: WRK_SECONDS,
  note:
    "Server, simulator (`capture-session-server simulator`) and wrk share the machine's cores, all on 127.0.0.1. " +
    "Token mode: every refresh calls the simulator's /access/getAccessToken (`--reuse-window 0`). " +
    "Code mode: every refresh rotates with the simulator's refresh_token grant (`--reuse-window 0`) under the per-session rotation lock. " +
    "wrk runs one thread per connection, each connection with its own session cookie (bench/wrk/refresh.lua), after a 1 s warm-up. " +
    "Rate limits off: `--rate-limit-per-second 0`; on: the per-address limiter checks every refresh, with a limit no run reaches (wrk sends from one address).",
  load: [],
  idle: [],
};

let sim;
let redis;
try {
  sim = await startSimulator();
  try {
    redis = await startRedis();
  } catch (e) {
    redis = { error: e.message };
  }
  const stores = [["memory", "memory", null], ["redis", redis.url, redis], ["redis-encrypted", redis.url, redis]].filter(([name]) => STORES.includes(name));
  for (const [store, storeUrl, r] of stores) {
    if (store.startsWith("redis") && redis.error) {
      out.load.push(...MODES.flatMap((mode) => CONCURRENCY.map((sessions) => ({ store, mode, sessions, ...notMeasured(`redis-server did not start: ${redis.error}`) }))));
      out.idle.push({ store, ...notMeasured(`redis-server did not start: ${redis.error}`) });
      continue;
    }
    for (const limits of LIMITS) {
      try {
        out.load.push(...(await loadRuns(sim, store, storeUrl, r, limits)));
      } catch (e) {
        out.load.push(...MODES.flatMap((mode) => CONCURRENCY.map((sessions) => ({ store, limits, mode, sessions, ...notMeasured(e.message) }))));
      }
    }
    if (IDLE_SESSIONS <= 0) continue;
    try {
      out.idle.push(await idleMemory(sim, store, storeUrl, r));
    } catch (e) {
      out.idle.push({ store, sessions: IDLE_SESSIONS, ...notMeasured(e.message) });
    }
  }
} catch (e) {
  writePart("server", notMeasured(e.message));
  process.exit(0);
} finally {
  if (redis?.child) await stop(redis.child);
  if (sim) await stop(sim.child);
}
writePart("server", out);
