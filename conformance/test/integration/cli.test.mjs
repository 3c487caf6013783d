// The command line's exit statuses and messages when it cannot run; none of them may show the
// password.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { USER, freePort, kitArgs, runKit, startSimulator } from "./harness.mjs";

let sim;
let closed; // a port nothing listens on
before(async () => {
  sim = await startSimulator();
  closed = `http://127.0.0.1:${await freePort()}`;
});
after(async () => {
  await sim?.stop();
});

const assertCannotRun = (run, message) => {
  assert.equal(run.status, 2, `exit status 2 (${run.stderr})`);
  assert.match(run.stderr, message);
  assert.ok(!(run.stdout + run.stderr).includes(USER.password), "the password is not printed");
};

test("--help documents every flag and exits 0", async () => {
  const run = await runKit(["--help"]);
  assert.equal(run.status, 0);
  assert.match(run.stdout, /--backend URL/);
  assert.match(run.stdout, /Exit status/);
});

test("bad flags exit 2 with a clear message", async () => {
  assertCannotRun(await runKit(["--backend", closed]), /--capture-server is required/);
  assertCannotRun(await runKit([...kitArgs(closed, sim.url), "--mode", "magic"]), /--mode must be token, code or both/);
  assertCannotRun(await runKit([...kitArgs(closed, sim.url).slice(0, -2), `${USER.email}:${USER.password}`]), /unexpected argument/);
});

test("a refused sign-in exits 2 and says why", async () => {
  const args = kitArgs(closed, sim.url);
  args[args.length - 1] = `${USER.email}:wrong-${USER.password}`;
  assertCannotRun(await runKit(args), /Capture refused the token-mode sign-in of conformance@example.com \(error 210 invalid_credentials/);
  const wrongClient = kitArgs(closed, sim.url).map((a) => (a === "capture-session-demo" ? "no-such-client" : a));
  assertCannotRun(await runKit(wrongClient), /Capture refused the token-mode sign-in .*error 402/);
});

test("an unreachable Capture server or backend exits 2", async () => {
  assertCannotRun(await runKit(kitArgs(closed, closed)), /cannot reach the Capture server .*connection failed \(ECONNREFUSED\)/);
  assertCannotRun(await runKit(kitArgs(closed, sim.url)), /cannot reach the backend at http:\/\/127\.0\.0\.1:\d+\/capture-session\/end: connection failed \(ECONNREFUSED\)/);
});

test("the user can come from the environment instead of the command line", async () => {
  const args = kitArgs(closed, sim.url).slice(0, -2);
  const run = await runKit(args, { env: { CAPTURE_SESSION_CONFORMANCE_USER: `${USER.email}:${USER.password}` } });
  // It signs in (so it got the user) and then cannot reach the backend.
  assertCannotRun(run, /cannot reach the backend/);
});
