// Runs the checks: signs in once per mode to see that it can, then runs every check (the
// waiting ones alongside the others) and finally the check over every error reply of the run.

import { allChecks, ECHO_CHECK } from "./checks.js";
import { Backend, CannotRun, CheckFailure, describeFetchError, SignInError, signIn } from "./http.js";
import { Secrets } from "./secrets.js";

/**
 * @param {object} options  parsed command line (lib/args.js)
 * @param {{secrets?: Secrets}} [deps]
 * @returns {Promise<{results: import("./table.js").Result[], secrets: Secrets, uuid?: string}>}
 * @throws {CannotRun} when sign-in fails or the backend cannot be reached
 */
export async function runChecks(options, { secrets = new Secrets() } = {}) {
  secrets.add(options.user.password, "password");
  const backend = new Backend(options, secrets);
  const ctx = {
    options,
    secrets,
    backend,
    v11: options.contract === "1.1",
    primary: options.modes[0],
    uuid: undefined,
    cookieNames: undefined,
    /** The jars of every session the checks started, ended when they are done. */
    started: [],
    signIn: async (mode) => {
      try {
        return await signIn(options, mode, secrets);
      } catch (e) {
        if (e instanceof SignInError) throw new CheckFailure(`sign-in failed: ${e.message}`);
        throw e;
      }
    },
  };

  // Can we sign in, and does the backend answer at all?
  for (const mode of options.modes) {
    let login;
    try {
      login = await signIn(options, mode, secrets);
    } catch (e) {
      if (e instanceof SignInError) throw new CannotRun(e.message);
      throw e;
    }
    ctx.uuid ??= login.uuid;
  }
  try {
    await fetch(options.urls.end, { method: "OPTIONS", redirect: "manual", signal: AbortSignal.timeout(options.timeoutMs) });
  } catch (e) {
    throw new CannotRun(`cannot reach the backend at ${options.urls.end}: ${describeFetchError(e, options.timeoutMs)}`);
  }

  const selected = allChecks(options.modes).filter(
    (c) => options.only === undefined || options.only.some((prefix) => c.id.startsWith(prefix)),
  );
  const results = new Map();
  const run = async (check) => {
    const skipReason =
      check.contract === "1.1" && !ctx.v11 ? "contract 1.1 (--contract 1.0 given)" : check.skip?.(ctx);
    if (skipReason) {
      results.set(check.id, { id: check.id, result: "skip", reason: skipReason });
      return;
    }
    try {
      await check.run(ctx);
      results.set(check.id, { id: check.id, result: "pass" });
    } catch (e) {
      const reason = e instanceof CheckFailure ? e.message : `the check itself failed: ${e?.name ?? "Error"}: ${e?.message ?? e}`;
      results.set(check.id, { id: check.id, result: "fail", reason });
    }
  };
  const waiting = selected.filter((c) => c.background).map(run);
  for (const check of selected.filter((c) => !c.background)) await run(check);
  await Promise.all(waiting);

  // Leave no session behind on the backend (best effort: this is not a check).
  for (let i = 0; i < ctx.started.length; i += 5) {
    await Promise.allSettled(ctx.started.slice(i, i + 5).map((jar) => backend.post("end", { jar, record: false })));
  }

  const ordered = selected.map((c) => results.get(c.id));
  ordered.push(echoResult(backend, secrets));
  return { results: ordered, secrets, uuid: ctx.uuid };
}

function echoResult(backend, secrets) {
  const echoes = new Map();
  for (const reply of backend.errorReplies) {
    const kinds = secrets.findIn(reply.text);
    if (kinds.length > 0) {
      const key = `${reply.endpoint} ${reply.status} (${kinds.join(", ")})`;
      echoes.set(key, (echoes.get(key) ?? 0) + 1);
    }
  }
  if (echoes.size === 0) return { id: ECHO_CHECK.id, result: "pass" };
  const list = [...echoes].map(([k, n]) => (n > 1 ? `${k} ×${n}` : k)).join("; ");
  const total = [...echoes.values()].reduce((a, b) => a + b, 0);
  return { id: ECHO_CHECK.id, result: "fail", reason: `${total} error replies echo a secret the kit sent or received: ${list}` };
}

export { CannotRun };
