// Starts the example: configuration from the environment (README.md), the session store
// (memory, or Redis with REDIS_URL), the Capture client, and the HTTP listener.

import session from "express-session";
import { createApp } from "./app.js";
import { captureClient } from "./capture.js";
import { ConfigError, configFromEnv } from "./config.js";

let config;
try {
  config = configFromEnv(process.env);
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  console.error(`capture-session: ${e.message} (see README.md)`);
  process.exit(2);
}

let store;
let redis;
if (config.redisUrl) {
  const { createClient } = await import("redis");
  const { RedisStore } = await import("connect-redis");
  redis = createClient({ url: config.redisUrl });
  redis.on("error", (e) => console.error(`capture-session: redis: ${e.code ?? e.name}`));
  await redis.connect();
  // Redis keeps a session until its idle or absolute deadline (plus a minute, so that a late
  // refresh learns session_expired rather than no_session); app.js enforces the deadlines.
  const ttl = (sess) => {
    const c = sess.capture;
    if (!c) return 60;
    return Math.max(1, Math.ceil((Math.min(c.idleDeadline, c.absoluteDeadline) - Date.now()) / 1000) + 60);
  };
  store = new RedisStore({ client: redis, prefix: config.redisPrefix, ttl });
} else {
  // One process only, and sessions with a browser-session cookie are kept until it exits:
  // for development and tests. Use Redis in production.
  store = new session.MemoryStore();
}

const app = createApp(config, { store, capture: captureClient(config.capture) });
const server = app.listen(config.port, config.host, () => {
  const { port } = server.address();
  config.allowedOrigins ??= [`http://127.0.0.1:${port}`, `http://localhost:${port}`];
  console.log(`capture-session example listening on http://${config.host}:${port} (${redis ? "redis" : "memory"} store)`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    redis?.quit().catch(() => {});
  });
}
