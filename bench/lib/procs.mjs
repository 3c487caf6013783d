// Processes the benchmark starts (server, simulator, redis-server) and the
// plain HTTP client it uses for setup. Every process started here is stopped
// by its own handle when the benchmark ends, whatever happens.
import { spawn } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { WORK_DIR } from "./measure.mjs";

const started = new Set();

function stopAll() {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}
process.on("exit", stopAll);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

/** Starts a long-running process with its output in WORK_DIR/<name>.log. */
export function start(name, cmd, args, env = {}) {
  const log = openSync(join(WORK_DIR, `${name}.log`), "a");
  const child = spawn(cmd, args, { stdio: ["ignore", log, log], env: { ...process.env, ...env } });
  started.add(child);
  child.on("exit", () => started.delete(child));
  child.on("error", (e) => {
    child.spawnError = e;
    started.delete(child);
  });
  child.logName = `${name}.log`;
  return child;
}

/** Stops a process this module started, and waits for it to go. */
export async function stop(child) {
  if (!child || child.spawnError || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await gone;
  clearTimeout(timer);
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port, child, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child?.spawnError) throw new Error(`could not start ${child.spawnfile}: ${child.spawnError.code}`);
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${child.logName ? child.logName.replace(/\.log$/, "") : "process"} exited (see bench/.work/${child.logName})`);
    }
    const ok = await new Promise((r) => {
      const sock = net.connect(port, "127.0.0.1");
      sock.once("connect", () => { sock.destroy(); r(true); });
      sock.once("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`no VmRSS for pid ${pid}`);
  return kb * 1024;
}

/** The server binary built by `cargo build -p capture-session-server --profile server`. */
export function serverBinary() {
  const target = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/capture-session/target");
  return join(target, "server", "capture-session-server");
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A small HTTP/1.1 request; resolves with status, headers and the body text. */
export function request(url, { method = "GET", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.setTimeout(30000, () => req.destroy(new Error(`timeout: ${method} ${new URL(url).pathname}`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Runs fn(i) for i in 0..count with at most `concurrency` in flight. */
export async function pool(count, concurrency, fn) {
  let next = 0;
  const results = new Array(count);
  async function worker() {
    while (next < count) {
      const i = next++;
      results[i] = await fn(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}
