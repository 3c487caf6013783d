// Tests of the benchmark's own measuring code (not of the numbers it measures,
// which are printed and never asserted): percentiles, per-file compression, and
// the wrk script keeping exactly one session cookie per connection.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { BENCH_DIR, compressedSizes, filesSizes, percentile, summarize } from "../lib/measure.mjs";

test("percentile is nearest-rank: p50 of 1..100 is 50, p95 is 95, p100 is the maximum", () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 95), 95);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 95), 7);
  assert.equal(percentile([], 50), null);
});

test("summarize reports count, median, p95, min and max", () => {
  assert.deepEqual(summarize([3, 1, 2, 10]), { n: 4, median: 2, p95: 10, min: 1, max: 10 });
});

test("compressed sizes: repetitive text shrinks a lot, random bytes do not", () => {
  const text = compressedSizes(Buffer.from("capture-session ".repeat(1000)));
  assert.equal(text.raw, 16000);
  assert.ok(text.gzip < 200 && text.brotli < 200, JSON.stringify(text));
  const noise = compressedSizes(randomBytes(4096), { text: false });
  assert.ok(noise.gzip > 4000 && noise.brotli > 4000, JSON.stringify(noise));
});

test("files a browser fetches separately are compressed one by one and added up", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-test-"));
  const a = join(dir, "a.js");
  const b = join(dir, "b.wasm");
  const same = "export const x = 1;\n".repeat(200);
  writeFileSync(a, same);
  writeFileSync(b, same);
  const both = filesSizes([a, b]);
  const one = compressedSizes(Buffer.from(same));
  assert.equal(both.raw, 2 * one.raw);
  assert.equal(both.gzip, 2 * one.gzip); // not the size of one stream holding both
  assert.equal(both.files.length, 2);
});

const hasWrk = spawnSync("wrk", ["-v"]).error === undefined;

test("wrk/refresh.lua: every connection sends one session cookie only, with the contract's headers", { skip: !hasWrk && "wrk is not installed" }, async () => {
  const cookieBySocket = new Map();
  let badRequests = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const ok = req.method === "POST" && req.url === "/capture-session/refresh" && body === "{}" &&
        req.headers["x-capture-session"] === "1" && req.headers["content-type"] === "application/json" &&
        req.headers.origin === "http://127.0.0.1";
      if (!ok) badRequests++;
      const seen = cookieBySocket.get(req.socket) ?? new Set();
      seen.add(req.headers.cookie);
      cookieBySocket.set(req.socket, seen);
      res.setHeader("content-type", "application/json");
      if (req.headers.cookie === "s=3") {
        res.statusCode = 401;
        res.end('{"error":"session_expired","message":"gone"}');
      } else {
        res.end('{"accessToken":"x","expiresIn":3600}');
      }
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  const dir = mkdtempSync(join(tmpdir(), "bench-test-"));
  const cookies = join(dir, "cookies.txt");
  writeFileSync(cookies, ["s=1", "s=2", "s=3", "s=4"].join("\n") + "\n");
  const out = await new Promise((resolve, reject) => {
    const child = spawn("wrk", ["-t", "4", "-c", "4", "-d", "1s", "-s", join(BENCH_DIR, "wrk", "refresh.lua"),
      `http://127.0.0.1:${port}/capture-session/refresh`, "--", cookies, "http://127.0.0.1", "4"]);
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}`))));
  });
  server.close();
  const result = JSON.parse(out.split("\n").reverse().find((l) => l.startsWith("{")));
  assert.equal(badRequests, 0);
  assert.equal(cookieBySocket.size, 4, "four connections");
  for (const seen of cookieBySocket.values()) assert.equal(seen.size, 1, "one cookie per connection");
  const all = new Set([...cookieBySocket.values()].flatMap((s) => [...s]));
  assert.deepEqual([...all].sort(), ["s=1", "s=2", "s=3", "s=4"]);
  assert.ok(result.statuses["200"] > 0);
  assert.ok(result.statuses["401 session_expired"] > 0, JSON.stringify(result.statuses));
  assert.equal(result.errors.status, result.statuses["401 session_expired"]);
  assert.ok(result.p50_us > 0 && result.p99_us >= result.p50_us);
});
