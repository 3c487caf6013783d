// Configuration from environment variables (README.md lists them all).

import { randomBytes } from "node:crypto";

export class ConfigError extends Error {}

const hours = (h) => h * 3600 * 1000;

/** @param {Record<string, string|undefined>} env */
export function configFromEnv(env) {
  const required = (name) => {
    const v = env[name];
    if (v === undefined || v === "") throw new ConfigError(`${name} is required`);
    return v;
  };
  const seconds = (name, fallbackMs) => {
    if (env[name] === undefined || env[name] === "") return fallbackMs;
    const n = Number(env[name]);
    if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${name} must be a positive number of seconds`);
    return n * 1000;
  };

  const listen = env.LISTEN ?? "127.0.0.1:3000";
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(listen.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError("LISTEN must be HOST:PORT");

  const modes = (env.MODES ?? "token,code").split(",").map((m) => m.trim()).filter(Boolean);
  if (modes.length === 0 || modes.some((m) => m !== "token" && m !== "code")) throw new ConfigError("MODES must list token and/or code");

  // Plain-http development only: a Secure cookie is never sent over http.
  const insecureCookies = env.INSECURE_COOKIES === "1";
  const allowedOrigins = env.ALLOWED_ORIGINS?.split(",").map((o) => o.trim().toLowerCase()).filter(Boolean);
  if (!allowedOrigins?.length && !insecureCookies) {
    throw new ConfigError("ALLOWED_ORIGINS is required (the page origins, e.g. https://www.example.com)");
  }

  let sessionSecret = env.SESSION_SECRET;
  if (!sessionSecret) {
    console.warn("capture-session: SESSION_SECRET is not set: using a random one (sessions end when the process does)");
    sessionSecret = randomBytes(32).toString("hex");
  }

  return {
    host,
    port,
    modes,
    // Undefined: the listen origin (http://127.0.0.1:PORT and http://localhost:PORT), set once
    // the port is known (INSECURE_COOKIES=1 only).
    allowedOrigins: allowedOrigins?.length ? allowedOrigins : undefined,
    secureCookies: !insecureCookies,
    cookieName: insecureCookies ? "capture-session" : "__Host-capture-session",
    // Which proxies' X-Forwarded-Proto to believe (Express's "trust proxy"): https is needed for
    // express-session to send a Secure cookie behind a TLS-terminating reverse proxy.
    trustProxy: env.TRUST_PROXY ?? "loopback",
    sessionSecret,
    redisUrl: env.REDIS_URL || undefined,
    redisPrefix: env.REDIS_PREFIX ?? "capture-session:",
    sessionMaxMs: seconds("SESSION_MAX", hours(12)),
    rememberMaxMs: seconds("REMEMBER_MAX", hours(30 * 24)),
    idleTimeoutMs: seconds("IDLE_TIMEOUT", hours(12)),
    // /access/getAccessToken says nothing about expiry: Capture's default lifetime.
    tokenLifetimeMs: seconds("TOKEN_LIFETIME", hours(1)),
    capture: {
      captureUrl: required("CAPTURE_URL").replace(/\/+$/, ""),
      clientId: required("CAPTURE_CLIENT_ID"),
      clientSecret: required("CAPTURE_CLIENT_SECRET"),
      typeName: env.CAPTURE_TYPE_NAME ?? "user",
      forClientId: env.CAPTURE_FOR_CLIENT_ID || undefined,
      timeoutMs: seconds("UPSTREAM_TIMEOUT", 4000),
    },
  };
}
