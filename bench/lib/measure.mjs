// Small helpers shared by the benchmark parts: compressed sizes, percentiles,
// writing one part's result file. No timing logic lives here.
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
