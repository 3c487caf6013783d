// The command line: flags, their defaults and checks, and the --help text built from them.

import { parseArgs } from "node:util";

export const USER_ENV = "CAPTURE_SESSION_CONFORMANCE_USER";

/** Raised for a command line the kit cannot run with; its message never holds the password. */
export class UsageError extends Error {}

// Every flag: name, value placeholder (none for a boolean), default, and its --help text.
export const FLAGS = [
  ["backend", "URL", undefined, "Base URL of the backend under test, e.g. https://www.example.com. Required."],
  ["capture-server", "URL", undefined, "Capture server the test user signs in at, e.g. https://example.us.janraincapture.com. Required."],
  ["client-id", "ID", undefined, "Login client id (the widget's client id) for /oauth/auth_native_traditional. Required."],
  ["flow", "NAME", undefined, "Registration flow name (janrain.settings.capture.flowName). Required."],
  ["flow-version", "V", undefined, "Flow version (janrain.settings.capture.flowVersion). Required."],
  ["user", "EMAIL:PASSWORD", undefined, `Test user with traditional sign-in. Required, unless the environment variable ${USER_ENV} holds it (keeps the password out of process lists and shell history).`],
  ["mode", "token|code|both", "both", "Integration modes to check."],
  ["origin", "URL", undefined, "An allowed page origin, sent as Origin on every request. Default: the backend's origin. A different origin also checks the CORS preflight."],
  ["redirect-uri", "URL", undefined, "redirect_uri for sign-in and the code exchange (janrain.settings.capture.redirectUri). Default: the origin followed by /."],
  ["locale", "LOCALE", "en-US", "Locale sent at sign-in."],
  ["sign-in-form", "NAME", "signInForm", "Name of the traditional sign-in form."],
  ["start-path", "PATH", "/capture-session/start", "Where the backend answers startUrl (a path on --backend, or a URL)."],
  ["refresh-path", "PATH", "/capture-session/refresh", "Where the backend answers refreshUrl."],
  ["end-path", "PATH", "/capture-session/end", "Where the backend answers endUrl."],
  ["cookie", "NAME", undefined, "Name of the session cookie. Default: every cookie the start reply sets."],
  ["contract", "1.0|1.1", "1.1", "Contract version to check: 1.0 skips conditional refresh (replace), interactive and keepMeLoggedIn."],
  ["idle-timeout", "SECONDS", undefined, "The backend's idle timeout, when it is short enough to wait for (a test deployment): checks that only interactive refreshes extend it. Skipped without it."],
  ["max-lifetime", "SECONDS", undefined, "The backend's absolute session lifetime for keepMeLoggedIn false, when short enough to wait for: checks that such a session ends then (401 session_expired) and a keepMeLoggedIn true one does not. Skipped without it."],
  ["timeout", "MS", "10000", "Timeout of each request, in milliseconds."],
  ["only", "ID[,ID...]", undefined, "Run only the checks whose id starts with one of these (see --list)."],
  ["list", null, false, "List the checks and exit."],
  ["version", null, false, "Print the version and exit."],
  ["help", null, false, "Print this help and exit."],
];

const REQUIRED = ["backend", "capture-server", "client-id", "flow", "flow-version"];

/** The --help text. */
export function helpText(version) {
  const lines = [
    `capture-session-conformance ${version}`,
    "",
    "Checks a backend against the capture-session backend contract: signs a test user in at the",
    "Capture server as the Registration UI does, then exercises start, refresh and end, every",
    "error row, cookies and concurrency. Prints a table of checks and `N passed, M failed`.",
    "It never prints a token, code, cookie value or password (fingerprints and lengths only).",
    "",
    "Usage: capture-session-conformance --backend URL --capture-server URL --client-id ID",
    "         --flow NAME --flow-version V --user EMAIL:PASSWORD [--mode token|code|both] [flags]",
    "",
    "Flags:",
  ];
  for (const [name, value, def, text] of FLAGS) {
    const head = value ? `  --${name} ${value}` : `  --${name}`;
    const suffix = def !== undefined && def !== false ? ` (default: ${def})` : "";
    lines.push(head);
    for (const l of wrap(text + suffix, 86)) lines.push(`      ${l}`);
  }
  lines.push(
    "",
    "Exit status: 0 when every check passed, 1 when a check failed, 2 when the kit could not run",
    "(bad flags, the Capture server or the backend unreachable, sign-in failed).",
  );
  return lines.join("\n");
}

function wrap(text, width) {
  const out = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) out.push(line);
  return out;
}

function httpUrl(flag, raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--${flag} must be an http(s) URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--${flag} must be an http(s) URL`);
  }
  return url;
}

function positiveNumber(flag, raw, { integer = false } = {}) {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} must be a positive ${integer ? "integer" : "number"}`);
  }
  return n;
}

/** Whether a host name is a loopback address (cookies there may lack Secure and __Host-). */
export function isLoopbackHost(hostname) {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127(\.[0-9]{1,3}){3}$/.test(h);
}

// parseArgs quotes what it did not understand, which may be a password (`demo@x.com:pw` given
// without --user): quote only what looks like a flag name.
function describeParseError(e) {
  const quoted = /'([^']*)'/.exec(String(e.message))?.[1] ?? "";
  const flagName = /^--?[A-Za-z][A-Za-z-]*( <value>)?$/.test(quoted);
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return flagName ? `unknown flag ${quoted} (see --help)` : "unknown flag (see --help)";
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return "unexpected argument: every value follows its flag, e.g. --user EMAIL:PASSWORD (see --help)";
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (!flagName) return "a flag has a bad value (see --help)";
      if (/ambiguous/.test(e.message)) return `${quoted}: a value starting with - is written ${quoted}=VALUE`;
      return `${quoted.replace(" <value>", "")}: ${/missing/.test(e.message) ? "needs a value" : "takes no value"}`;
    default:
      return "cannot parse the command line (see --help)";
  }
}

/**
 * Parses and checks the command line.
 * @param {string[]} argv  arguments after the program name
 * @param {Record<string, string|undefined>} env
 * @returns {{action: "help"|"version"|"list"} | {action: "run", options: object}}
 */
export function parseCommandLine(argv, env = {}) {
  const options = {};
  for (const [name, value] of FLAGS) {
    options[name] = { type: value ? "string" : "boolean" };
  }
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(describeParseError(e));
  }
  if (values.help) return { action: "help" };
  if (values.version) return { action: "version" };
  if (values.list) return { action: "list" };

  for (const flag of REQUIRED) {
    if (values[flag] === undefined || values[flag] === "") throw new UsageError(`--${flag} is required (see --help)`);
  }
  const defaults = Object.fromEntries(FLAGS.map(([n, , d]) => [n, d]));
  const get = (flag) => values[flag] ?? defaults[flag];

  const backend = httpUrl("backend", values.backend);
  const captureServer = httpUrl("capture-server", values["capture-server"]);
  const origin = values.origin === undefined ? backend.origin : httpUrl("origin", values.origin).origin;
  if (values.origin !== undefined && new URL(values.origin).pathname !== "/") {
    throw new UsageError("--origin must be an origin (scheme, host and port, no path)");
  }
  const redirectUri = values["redirect-uri"] === undefined ? `${origin}/` : httpUrl("redirect-uri", values["redirect-uri"]).href;

  const userRaw = values.user ?? env[USER_ENV];
  if (userRaw === undefined || userRaw === "") {
    throw new UsageError(`--user EMAIL:PASSWORD is required (or set ${USER_ENV})`);
  }
  const colon = userRaw.indexOf(":");
  if (colon <= 0 || colon === userRaw.length - 1) {
    throw new UsageError("--user must be EMAIL:PASSWORD (both non-empty)");
  }
  const user = { email: userRaw.slice(0, colon), password: userRaw.slice(colon + 1) };

  const mode = get("mode");
  const modes = { token: ["token"], code: ["code"], both: ["token", "code"] }[mode];
  if (!modes) throw new UsageError("--mode must be token, code or both");
  const contract = get("contract");
  if (contract !== "1.0" && contract !== "1.1") throw new UsageError("--contract must be 1.0 or 1.1");

  const endpoint = (flag) => {
    const raw = get(flag);
    try {
      const url = new URL(raw, backend);
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error();
      return url.href;
    } catch {
      throw new UsageError(`--${flag} must be a path or an http(s) URL`);
    }
  };

  return {
    action: "run",
    options: {
      backend: backend.href,
      backendOrigin: backend.origin,
      loopback: isLoopbackHost(backend.hostname),
      https: backend.protocol === "https:",
      captureServer: captureServer.href.replace(/\/+$/, ""),
      clientId: values["client-id"],
      flow: values.flow,
      flowVersion: values["flow-version"],
      locale: get("locale"),
      signInForm: get("sign-in-form"),
      user,
      modes,
      origin,
      redirectUri,
      urls: { start: endpoint("start-path"), refresh: endpoint("refresh-path"), end: endpoint("end-path") },
      cookieName: values.cookie,
      contract,
      idleTimeout: values["idle-timeout"] === undefined ? undefined : positiveNumber("idle-timeout", values["idle-timeout"]),
      maxLifetime: values["max-lifetime"] === undefined ? undefined : positiveNumber("max-lifetime", values["max-lifetime"]),
      timeoutMs: positiveNumber("timeout", get("timeout"), { integer: true }),
      only: values.only === undefined ? undefined : values.only.split(",").map((s) => s.trim()).filter(Boolean),
    },
  };
}
