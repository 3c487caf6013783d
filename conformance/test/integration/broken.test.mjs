// The kit against deliberately broken backends (test/fixtures/): each run must fail exactly the
// checks for what is broken, and pass every other.
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { assertNothingSecret, assertReport, kitArgs, runKit, startExpress, startSimulator } from "./harness.mjs";
import { ALL_IDS, CORS, TIMED } from "./ids.mjs";

let sim;
let dir;

before(async () => {
  sim = await startSimulator();
  dir = await mkdtemp(path.join(os.tmpdir(), "conformance-"));
});

after(async () => {
  await sim?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function runAgainst(t, preload, failing, env = {}) {
  const backend = await startExpress({ captureUrl: sim.url, preload, env });
  try {
    const run = await runKit(kitArgs(backend.url, sim.url));
    assertReport(t, run, { expectedIds: ALL_IDS, failing, skipped: [...CORS, ...TIMED] });
    return run;
  } finally {
    await backend.stop();
  }
}

test("a backend that skips the X-Capture-Session check", async (t) => {
  await runAgainst(t, "no-header-check.mjs", ["start.requires-header", "refresh.requires-header", "end.requires-header"]);
});

test("a backend that keeps the browser's session id at login", async (t) => {
  await runAgainst(t, "reused-session-ids.mjs", ["token.start.new-session-id", "code.start.new-session-id"]);
});

test("a backend that refreshes one session concurrently, spending one refresh token several times", async (t) => {
  // Slow Capture a little, as a real tenant is, so that the 20 parallel refreshes overlap their
  // upstream calls whatever the machine's load.
  await sim.fault({ path: "/oauth/token", latencyMs: 150 });
  await sim.fault({ path: "/access/getAccessToken", latencyMs: 150 });
  try {
    const run = await runAgainst(t, "no-single-flight.mjs", ["token.refresh.parallel", "code.refresh.parallel"]);
    const code = run.rows.find((r) => r.id === "code.refresh.parallel");
    t.assert.match(code.reason, /parallel refreshes failed: \d+ × 401 session_expired/);
  } finally {
    await sim.clearFaults();
  }
});

test("a backend whose error messages quote tokens, codes and cookies: named, and never printed", async (t) => {
  const file = path.join(dir, "echoed-secrets.txt");
  const run = await runAgainst(t, "error-echo.mjs", ["errors.no-secret-echo"], { FIXTURE_SECRETS_FILE: file });
  const secrets = [...new Set(readFileSync(file, "utf8").split("\n").filter(Boolean))];
  t.assert.ok(secrets.length > 50, `the fixture saw ${secrets.length} secrets`);
  assertNothingSecret(run.stdout + run.stderr, secrets);
});
