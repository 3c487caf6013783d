// The kit against the reference server (capture-session-server --simulate): memory store with
// short lifetimes and a cross-origin page (every check runs), then a Redis store.
import { after, before, test } from "node:test";
import { assertNothingSecret, assertReport, kitArgs, runKit, startRedis, startReferenceServer } from "./harness.mjs";
import { ALL_IDS, CORS, TIMED } from "./ids.mjs";

// Short enough to wait for, long enough that no other check idles out on a loaded machine.
const IDLE = 5;
const MAX = 10;

let memory;
let redis;
let onRedis;

before(async () => {
  [memory, redis] = await Promise.all([
    startReferenceServer(["--session-idle-timeout", String(IDLE), "--session-max", String(MAX)]),
    startRedis(),
  ]);
  onRedis = await startReferenceServer(["--store", redis.url]);
});

after(async () => {
  await Promise.all([memory?.stop(), onRedis?.stop()]);
  await redis?.stop();
});

test("reference server, memory store, both modes, every check", async (t) => {
  // localhost is allowed by --simulate next to 127.0.0.1, and is another origin: CORS is checked.
  const origin = `http://localhost:${memory.port}`;
  const run = await runKit(kitArgs(memory.url, memory.captureServer, ["--origin", origin, "--idle-timeout", String(IDLE), "--max-lifetime", String(MAX)]));
  assertReport(t, run, { expectedIds: ALL_IDS });
  assertNothingSecret(run.stdout + run.stderr);
});

test("reference server, Redis store, both modes", async (t) => {
  const run = await runKit(kitArgs(onRedis.url, onRedis.captureServer));
  assertReport(t, run, { expectedIds: ALL_IDS, skipped: [...CORS, ...TIMED] });
  assertNothingSecret(run.stdout + run.stderr);
});
