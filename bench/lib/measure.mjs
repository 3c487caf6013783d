// Small helpers shared by the benchmark parts: compressed sizes, percentiles,
// the interval arithmetic that splits a page load into phases and network time,
// writing one part's result file. Nothing here drives a browser or a process,
// so bench/test/ covers all of it.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";
import zlib from "node:zlib";

// The machine's load when this part started: 2 cores are shared with whatever else runs.
const LOAD_AT_START = os.loadavg()[0];

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = join(BENCH_DIR, "..");
export const WORK_DIR = resolve(process.env.BENCH_WORK_DIR || join(BENCH_DIR, ".work"));
// The build measured: scripts/bench snapshots pkg/ and dist/ right after building, so that
// a rebuild running at the same time cannot change the files half-way through the run.
export const PKG_DIR = resolve(process.env.BENCH_PKG_DIR || join(ROOT, "pkg"));
export const DIST_DIR = resolve(process.env.BENCH_DIST_DIR || join(ROOT, "dist"));

/** raw / gzip -9 / brotli (quality 11) byte counts of one buffer. */
export function compressedSizes(buf, { text = true } = {}) {
  const gzip = zlib.gzipSync(buf, { level: 9 }).length;
  const brotli = zlib.brotliCompressSync(buf, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: zlib.constants.BROTLI_MAX_QUALITY,
      [zlib.constants.BROTLI_PARAM_MODE]: text
        ? zlib.constants.BROTLI_MODE_TEXT
        : zlib.constants.BROTLI_MODE_GENERIC,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: buf.length,
    },
  }).length;
  return { raw: buf.length, gzip, brotli };
}

/** Sizes of a set of files a browser fetches separately: each is compressed on its own. */
export function filesSizes(paths) {
  const files = paths.map((p) => {
    const buf = readFileSync(p);
    return { path: p, ...compressedSizes(buf, { text: !p.endsWith(".wasm") }) };
  });
  const sum = (k) => files.reduce((a, f) => a + f[k], 0);
  return { raw: sum("raw"), gzip: sum("gzip"), brotli: sum("brotli"), files };
}

/** Nearest-rank percentile of numbers (p in 0..100). */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/**
 * How long, within [from, to], at least one of the spans [start, end] was open:
 * the union of the spans clipped to the interval, overlaps counted once. Used
 * for "network": the time one of a library's files was on the wire.
 */
export function coveredMs(spans, from, to) {
  const clipped = spans
    .map(([a, b]) => [Math.max(a, from), Math.min(b, to)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let until = -Infinity;
  for (const [a, b] of clipped) {
    const start = Math.max(a, until);
    if (b > start) total += b - start;
    until = Math.max(until, b);
  }
  return total;
}

/**
 * Splits one page load into consecutive phases. `marks` maps names to
 * performance.now() values; `phases` lists [label, fromMark, toMark]. Each phase
 * gets its duration, the part of it during which a file was on the wire
 * (`spans`, as in coveredMs) and the rest ("beyond the network"). A phase whose
 * marks are missing, or run backwards, is an error: the split would not add up.
 */
export function splitPhases(marks, phases, spans) {
  return phases.map(([label, from, to]) => {
    const a = marks[from];
    const b = marks[to];
    if (typeof a !== "number" || typeof b !== "number") throw new Error(`phase "${label}": mark ${typeof a !== "number" ? from : to} missing`);
    if (b < a) throw new Error(`phase "${label}": ${to} came before ${from}`);
    const network = coveredMs(spans, a, b);
    return { label, ms: b - a, network, beyond: b - a - network };
  });
}

export function summarize(values) {
  return {
    n: values.length,
    median: percentile(values, 50),
    p95: percentile(values, 95),
    min: values.length ? Math.min(...values) : null,
    max: values.length ? Math.max(...values) : null,
  };
}

/** Writes one benchmark part's result as JSON into the work directory. */
export function writePart(name, data) {
  mkdirSync(WORK_DIR, { recursive: true });
  const file = join(WORK_DIR, `${name}.json`);
  const load = { loadavg1mAtStart: LOAD_AT_START, loadavg1mAtEnd: os.loadavg()[0] };
  writeFileSync(file, JSON.stringify({ ...data, ...load }, null, 2) + "\n");
  return file;
}

/** A reason a part could not be measured, kept short and free of secrets. */
export function notMeasured(reason) {
  return { notMeasured: String(reason).split("\n")[0].slice(0, 300) };
}
