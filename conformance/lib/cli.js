// The command: parse flags, run the checks, print the report, set the exit status.

import { readFileSync } from "node:fs";
import { allChecks, ECHO_CHECK } from "./checks.js";
import { helpText, parseCommandLine, UsageError } from "./args.js";
import { CannotRun, runChecks } from "./run.js";
import { Secrets } from "./secrets.js";
import { counts, formatReport } from "./table.js";

export const VERSION = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

/** Exit statuses. */
export const EXIT = { OK: 0, FAILED: 1, CANNOT_RUN: 2 };

/**
 * @param {string[]} argv
 * @param {{env?: object, out?: (s: string) => void, err?: (s: string) => void}} io
 * @returns {Promise<number>} the exit status
 */
export async function main(argv, { env = process.env, out = (s) => process.stdout.write(s), err = (s) => process.stderr.write(s) } = {}) {
  const secrets = new Secrets();
  // Everything printed goes through scrub(): no token, code, cookie value or password.
  const print = (text) => out(`${secrets.scrub(text)}\n`);
  const complain = (text) => err(`capture-session-conformance: ${secrets.scrub(text)}\n`);
  const rawUser = env.CAPTURE_SESSION_CONFORMANCE_USER;
  if (rawUser?.includes(":")) secrets.add(rawUser.slice(rawUser.indexOf(":") + 1), "password");

  let parsed;
  try {
    parsed = parseCommandLine(argv, env);
  } catch (e) {
    if (e instanceof UsageError) {
      complain(e.message);
      return EXIT.CANNOT_RUN;
    }
    throw e;
  }
  if (parsed.action === "help") {
    print(helpText(VERSION));
    return EXIT.OK;
  }
  if (parsed.action === "version") {
    print(VERSION);
    return EXIT.OK;
  }
  if (parsed.action === "list") {
    for (const c of [...allChecks(["token", "code"]), ECHO_CHECK]) {
      print(`${c.id}${c.contract === "1.1" ? "  [1.1]" : ""}\n    ${c.description}`);
    }
    return EXIT.OK;
  }
  const o = parsed.options;
  secrets.add(o.user.password, "password");
  print(`capture-session-conformance ${VERSION}: contract ${o.contract}, ${o.modes.join(" and ")} mode`);
  print(`backend  ${o.backend} (page origin ${o.origin})`);
  print(`capture  ${o.captureServer} (test user ${o.user.email})`);
  let report;
  try {
    report = await runChecks(o, { secrets });
  } catch (e) {
    if (e instanceof CannotRun) {
      complain(`${e.message}\ncannot run the checks.`);
      return EXIT.CANNOT_RUN;
    }
    complain(`unexpected failure: ${e?.stack ?? e}`);
    return EXIT.CANNOT_RUN;
  }
  print("");
  print(formatReport(report.results));
  return counts(report.results).fail > 0 ? EXIT.FAILED : EXIT.OK;
}
