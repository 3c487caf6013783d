// The kit against the Express example (examples/express) and the standalone simulator: memory
// store with short lifetimes (every check but CORS), then a Redis store.
import { after, before, test } from "node:test";
import { assertNothingSecret, assertReport, kitArgs, runKit, startExpress, startRedis, startSimulator } from "./harness.mjs";
import { ALL_IDS, CORS, TIMED } from "./ids.mjs";

const IDLE = 5;
const MAX = 10;

let sim;
let redis;
let memory;
let onRedis;

before(async () => {
  [sim, redis] = await Promise.all([startSimulator(), startRedis()]);
  [memory, onRedis] = await Promise.all([
    startExpress({ captureUrl: sim.url, env: { IDLE_TIMEOUT: String(IDLE), SESSION_MAX: String(MAX) } }),
    startExpress({ captureUrl: sim.url, env: { REDIS_URL: redis.url } }),
  ]);
});

after(async () => {
  await Promise.all([memory?.stop(), onRedis?.stop()]);
  await Promise.all([sim?.stop(), redis?.stop()]);
});

test("Express example, memory store, both modes", async (t) => {
  const run = await runKit(kitArgs(memory.url, sim.url, ["--idle-timeout", String(IDLE), "--max-lifetime", String(MAX)]));
  assertReport(t, run, { expectedIds: ALL_IDS, skipped: CORS });
  assertNothingSecret(run.stdout + run.stderr);
});

test("Express example, Redis store, both modes", async (t) => {
  const run = await runKit(kitArgs(onRedis.url, sim.url));
  assertReport(t, run, { expectedIds: ALL_IDS, skipped: [...CORS, ...TIMED] });
  assertNothingSecret(run.stdout + run.stderr + memory.log() + onRedis.log());
});
