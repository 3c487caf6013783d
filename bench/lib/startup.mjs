// Part 2 of the browser benchmark: from the page's first script to "stored
// session known", for capture-session (ESM package and script tag) and the
// session libraries it is compared with, on the same page setup and server.
//
// How a load is measured (the same for every library):
//   - The pages (pages/startup.html, pages/startup-script.html) and the files
//     measured come from the bench server itself (capture-session-server
//     --www), over HTTP with its Cache-Control: no-cache. No Playwright request
//     routing in these contexts: routing turns Chromium's HTTP cache off, and
//     "warm" would not be warm.
//   - The page says "bench-done" on the console when it is finished and the
//     harness waits for that event. Nothing is evaluated in the page until then:
//     Playwright's waitForFunction injects its ~330 KB helper script into the
//     page, which blocks the main thread for 10-20 ms in the middle of the
//     measured span.
//   - The stored session is in the browser profile before the load (a Playwright
//     storageState: localStorage and cookies), in each library's own format
//     (lib/peers.mjs).
//   - Every load is checked: the library must report the stored session (the
//     token's fingerprint, or capture-session's state and expiry), the page must
//     be visible, and no request may leave the page other than the library's own
//     files. Any failure stops the measurement of that library, with the reason.
//   - "warm": one tab per library, reloaded; the first load fills the cache and
//     is not counted. "cold": a new browser profile (context) per load. Loads
//     go round-robin over the libraries, so that load from other processes on the
//     machine falls on all of them alike.
//   - capture-session also gets as many instrumented loads (split=1,
//     pages/split-marks.js), interleaved with the plain ones, for the split of
//     its time into phases; the headline numbers come from the plain loads.
import { cpSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BENCH_DIR, coveredMs, splitPhases, summarize } from "./measure.mjs";
import { PEERS, bundle, captureSessionStored, packageVersion, safeName, storedSession } from "./peers.mjs";

const PAGES = join(BENCH_DIR, "pages");
const STAND_IN = join(BENCH_DIR, "..", "www", "janrain", "load.js");
const SPLIT_MARKS = join(PAGES, "split-marks.js");
const LOAD_TIMEOUT_MS = 20000;

// --- Phases ---------------------------------------------------------------------------
// [label, from mark, to mark]; consecutive, so they add up to t0 -> ready.
export const PHASES = {
  esm: {
    plain: [
      ["import of the JS glue", "t0", "imported"],
      ["init(): fetch, compile and instantiate the wasm", "imported", "initialized"],
      ["attach()", "initialized", "attached"],
      ["attach() → ready", "attached", "ready"],
    ],
    split: [
      ["import of the JS glue", "t0", "imported"],
      ["init() until instantiateStreaming is called (wasm request, response headers)", "imported", "streaming-start"],
      ["instantiateStreaming: wasm body, compile, instantiate", "streaming-start", "streaming-end"],
      ["wasm start function, glue set-up", "streaming-end", "initialized"],
      ["attach()", "initialized", "attached"],
      ["attach() → ready", "attached", "ready"],
    ],
  },
  script: {
    plain: [
      ["script tag fetched and run (decode, compile, attach)", "t0", "attached"],
      ["attached → ready", "attached", "ready"],
    ],
    split: [
      ["script tag fetched, parsed, glue top level", "t0", "tag-running"],
      ["decode of the embedded wasm", "tag-running", "compile-start"],
      ["compile (new WebAssembly.Module)", "compile-start", "compile-end"],
      ["instantiate (new WebAssembly.Instance)", "compile-end", "instantiate-end"],
      ["wasm start function, glue set-up", "instantiate-end", "exposed"],
      ["attach()", "exposed", "attached"],
      ["attached → ready", "attached", "ready"],
    ],
  },
  peer: {
    plain: [
      ["import of the bundle", "t0", "imported"],
      ["library start → stored session known", "imported", "ready"],
    ],
  },
};

// --- One load, as numbers ------------------------------------------------------------------

/**
 * Problems with one load that make its number meaningless, as an Error
 * (null when the load is good): the page's own error, a hidden page, a request
 * other than the library's files, or the library not reporting the session.
 */
export function loadProblem(variant, load) {
  const b = load.bench ?? {};
  if (b.error) return new Error(`the page reported ${b.error}`);
  if (b.visibility !== "visible") return new Error(`the page was ${b.visibility} when it started, not visible`);
  const stray = load.requests.filter((r) => !(r.origin === load.origin && (r.path === load.pagePath || r.path.startsWith(variant.prefix))));
  if (stray.length) {
    const first = stray[0];
    return new Error(`a network request other than the library's files: ${first.method} ${first.origin}${first.path} (${stray.length} in all)`);
  }
  const r = b.result;
  if (!r) return new Error("the page reported no result");
  if (variant.expect.fingerprint) {
    if (typeof r.token !== "object" || r.token === null) return new Error(`the library reported no stored session (its answer was ${r.token})`);
    if (r.token.fingerprint !== variant.expect.fingerprint || r.token.length !== variant.expect.length) {
      return new Error(`the library reported a different token (fingerprint ${r.token.fingerprint}, ${r.token.length} characters) than the one stored`);
    }
  } else {
    if (r.state !== "active") return new Error(`after ready the state was "${r.state}", not "active": the stored session was not adopted`);
    if (Math.abs(r.expiresAt - variant.expect.expiresAt) > 1000) return new Error(`expiresAt ${r.expiresAt} is not the stored expiry ${variant.expect.expiresAt}`);
  }
  for (const mark of ["t0", "ready"]) if (typeof b[mark] !== "number") return new Error(`mark ${mark} missing`);
  return null;
}

/** The numbers of one good load: total, network, beyond the network, and its phases. */
export function loadSample(variant, load, split) {
  const marks = { ...load.bench, ...(load.marks ?? {}) };
  const spans = load.resources
    .filter((e) => e.origin === load.origin && e.path.startsWith(variant.prefix))
    .map((e) => [e.start, e.end]);
  const total = marks.ready - marks.t0;
  const network = coveredMs(spans, marks.t0, marks.ready);
  const phases = splitPhases(marks, PHASES[variant.kind][split ? "split" : "plain"], spans);
  return { total, network, beyond: total - network, phases };
}

/** Table rows (median, p95, min, max, n) of a set of samples of one variant and cache. */
export function startupRows(variant, cache, samples, split) {
  const row = (what, values) => ({ variant: variant.label, library: variant.id, cache, what, ...summarize(values) });
  if (split) {
    const rows = [row("script start → ready, instrumented load", samples.map((s) => s.total))];
    const labels = samples[0]?.phases.map((p) => p.label) ?? [];
    labels.forEach((label, i) => {
      rows.push({ ...row(label, samples.map((s) => s.phases[i].ms)), beyond: summarize(samples.map((s) => s.phases[i].beyond)) });
    });
    return rows;
  }
  return [
    row("script start → stored session known", samples.map((s) => s.total)),
    row("beyond the network", samples.map((s) => s.beyond)),
    row("network (the library's files on the wire)", samples.map((s) => s.network)),
    ...(samples[0]?.phases ?? []).map((p, i) => ({
      ...row(`  ${p.label}`, samples.map((s) => s.phases[i].ms)),
      beyond: summarize(samples.map((s) => s.phases[i].beyond)),
    })),
  ];
}

/**
 * The numbers the summary quotes: each library's median (and p95) of one row
 * ("beyond the network" unless told), for one cache; and the fastest peer by
 * that median. Libraries that were not measured are left out.
 */
export function startupHeadline(libraries, cache = "warm cache", what = "beyond the network") {
  const pick = (lib) => lib.rows?.find((r) => r.cache === cache && r.what === what);
  const of = (id) => {
    const lib = libraries.find((l) => l.id === id);
    const r = lib && pick(lib);
    return r ? { label: lib.label, median: r.median, p95: r.p95 } : null;
  };
  const peers = libraries
    .filter((l) => !l.id.startsWith("capture-session") && pick(l))
    .map((l) => ({ id: l.id, label: l.label, median: pick(l).median, p95: pick(l).p95 }))
    .sort((a, b) => a.median - b.median);
  return {
    esm: of("capture-session-esm"),
    esmPrefetch: of("capture-session-esm-prefetch"),
    script: of("capture-session-script"),
    fastestPeer: peers[0] ?? null,
    peers,
  };
}

// --- Files ------------------------------------------------------------------------

/**
 * The static tree the bench server serves at / (its --www): bench/pages at
 * /bench/, the Registration UI stand-in (www/janrain/load.js) at /janrain/,
 * and each peer's startup bundle at /peers/. Returns what was bundled.
 */
export async function prepareStartupFiles(wwwDir) {
  rmSync(wwwDir, { recursive: true, force: true });
  mkdirSync(join(wwwDir, "bench"), { recursive: true });
  for (const f of readdirSync(PAGES)) cpSync(join(PAGES, f), join(wwwDir, "bench", f));
  mkdirSync(join(wwwDir, "janrain"));
  cpSync(STAND_IN, join(wwwDir, "janrain", "load.js"));
  const peersDir = join(wwwDir, "peers");
  const bundles = {};
  for (const p of PEERS) {
    bundles[p.name] = { version: packageVersion(p.name), ...(await bundle(p.name, p.exports, peersDir)) };
  }
  // Not measured: the MSAL bundle that writes MSAL's stored session (pages/seed-msal.html).
  bundles.msalSeed = await bundle("@azure/msal-browser", ["loadExternalTokens"], peersDir, "msal-seed");
  return bundles;
}

// --- Variants ---------------------------------------------------------------------------

/** Everything measured, with the page, the files that count as its network, and the stored session. */
export async function startupVariants({ origin, esmEntry, captureToken, bundles, seedMsal }) {
  const cs = captureSessionStored(origin, captureToken);
  const attach = { refreshUrl: "/capture-session/refresh", startUrl: "/capture-session/start", endUrl: "/capture-session/end" };
  const variants = [
    {
      origin, id: "capture-session-esm", kind: "esm", label: "capture-session, ESM package", prefix: "/pkg/", split: true,
      api: "`await init()`, `CaptureSession.attach({ refreshUrl, startUrl, endUrl })`, `await session.ready`",
      path: "/bench/startup.html",
      query: { lib: "capture-session", src: esmEntry, config: JSON.stringify({ attach }) },
      storageState: cs.storageState, expect: cs.expect,
    },
    {
      origin, id: "capture-session-esm-prefetch", kind: "esm", label: "capture-session, ESM package, wasm fetched with the import", prefix: "/pkg/", split: false,
      api: "`const wasm = fetch(wasmUrl)` before the import, then `await init({ module_or_path: wasm })`, `attach(...)`, `await session.ready`",
      path: "/bench/startup.html",
      query: { lib: "capture-session", src: esmEntry, config: JSON.stringify({ attach, prefetch: wasmUrlOf(esmEntry) }) },
      storageState: cs.storageState, expect: cs.expect,
    },
    {
      origin, id: "capture-session-script", kind: "script", label: "capture-session, script tag", prefix: "/dist/", split: true,
      api: "`<script src=capture-session.js data-refresh-url=...>` (attaches itself), `await captureSession.ready`",
      path: "/bench/startup-script.html", query: {},
      storageState: cs.storageState, expect: cs.expect,
    },
  ];
  for (const p of PEERS) {
    const b = bundles[p.name];
    if (!b || b.notMeasured) continue;
    const stored = storedSession(p.name, origin);
    const src = `/peers/${safeName(p.name)}.js`;
    const v = {
      origin, id: p.name, kind: "peer", label: `${p.name} ${b.version}`, prefix: src, split: false, api: p.api,
      bundleGzip: b.gzip, bundleRaw: b.raw,
      path: "/bench/startup.html",
      query: { lib: p.name, src, config: JSON.stringify(stored.config) },
      storageState: stored.storageState, expect: stored.expect,
    };
    if (stored.seed) v.storageState = await seedMsal({ ...stored.seed, config: stored.config.settings });
    variants.push(v);
  }
  return variants;
}

/** The wasm next to a wasm-bindgen `web` glue file (the glue loads `<name>_bg.wasm` from its own directory). */
export function wasmUrlOf(glueUrl) {
  const m = /^(.*\/)([^/]+)\.js$/.exec(glueUrl);
  if (!m) throw new Error(`not a glue file: ${glueUrl}`);
  return `${m[1]}${m[2]}_bg.wasm`;
}

export function urlOf(origin, variant, split) {
  const q = new URLSearchParams(variant.query);
  if (split) q.set("split", "1");
  const s = q.toString();
  return `${origin}${variant.path}${s ? `?${s}` : ""}`;
}

// --- Driving the browser ------------------------------------------------------------------

/** Loads a page and waits for its "bench-done", collecting every request it made. */
export async function loadPage(page, url, timeout = LOAD_TIMEOUT_MS) {
  const requests = [];
  const onRequest = (r) => {
    const u = new URL(r.url());
    if (u.protocol === "data:") return;
    requests.push({ method: r.method(), origin: u.origin, path: u.pathname });
  };
  page.on("request", onRequest);
  try {
    const done = page.waitForEvent("console", { predicate: (m) => m.text() === "bench-done", timeout });
    await page.goto(url, { timeout });
    await done;
  } finally {
    page.off("request", onRequest);
  }
  const u = new URL(url);
  // Read after the page finished: evaluating earlier would inject Playwright's helper script mid-measurement.
  const read = await page.evaluate(() => ({
    bench: window.__bench ?? null,
    marks: window.__marks ?? null,
    resources: performance.getEntriesByType("resource").map((e) => {
      const r = new URL(e.name);
      return { origin: r.origin, path: r.pathname, start: e.startTime, end: e.responseEnd, transfer: e.transferSize };
    }),
  }));
  // The document itself is requested by the navigation: not one of the library's requests.
  return { ...read, requests: requests.filter((r) => !(r.origin === u.origin && r.path === u.pathname && r.method === "GET")), origin: u.origin, pagePath: u.pathname };
}

/** MSAL writes its own stored session (pages/seed-msal.html); returns the browser state it left. */
export async function seedMsalWith(browser, origin, seed) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const q = new URLSearchParams({ src: "/peers/msal-seed.js", seed: JSON.stringify({ config: seed.config, request: seed.request, response: seed.response, options: seed.options }) });
    const load = await loadPage(page, `${origin}/bench/seed-msal.html?${q}`);
    if (load.bench?.error) throw new Error(`MSAL could not store the session: ${load.bench.error}`);
    const state = await context.storageState();
    if (!state.cookies.some((c) => c.name === "msal.cache.encryption")) throw new Error("MSAL left no msal.cache.encryption cookie");
    return state;
  } finally {
    await context.close();
  }
}

/**
 * Runs the measurement: returns { variants, results } where results[id] has
 * warm/cold rows, or notMeasured with the first problem seen.
 */
export async function measureStartup(browser, variants, { loads, log = () => {} }) {
  const state = new Map(variants.map((v) => [v.id, { problem: null, samples: { warm: { plain: [], split: [] }, cold: { plain: [], split: [] } } }]));
  const modes = (v) => (v.split ? [false, true] : [false]);

  async function one(v, page, cache, split, counted) {
    const s = state.get(v.id);
    if (s.problem) return;
    try {
      await page.bringToFront();
      const load = await loadPage(page, urlOf(v.origin, v, split));
      const problem = loadProblem(v, load);
      if (problem) throw problem;
      if (split && !load.marks) throw new Error("the instrumented load has no marks (pages/split-marks.js did not run)");
      if (counted) s.samples[cache][split ? "split" : "plain"].push(loadSample(v, load, split));
    } catch (e) {
      s.problem = `${cache}${split ? ", instrumented" : ""}: ${e.message}`;
      log(`startup: ${v.label} not measured: ${s.problem}`);
    }
  }

  // Warm: one tab per library, kept open; first load of each fills the cache.
  const tabs = [];
  try {
    for (const v of variants) {
      const context = await browser.newContext({ storageState: v.storageState });
      await context.addInitScript({ path: SPLIT_MARKS });
      const page = await context.newPage();
      tabs.push({ v, context, page });
    }
    for (const t of tabs) for (const split of modes(t.v)) await one(t.v, t.page, "warm", split, false);
    for (let i = 0; i < loads; i++) {
      for (const t of tabs) for (const split of modes(t.v)) await one(t.v, t.page, "warm", split, true);
    }
  } finally {
    for (const t of tabs) await t.context.close();
  }
  log("startup: warm loads done");

  // Cold: a new profile per load.
  for (let i = 0; i < loads; i++) {
    for (const v of variants) {
      for (const split of modes(v)) {
        if (state.get(v.id).problem) continue;
        const context = await browser.newContext({ storageState: v.storageState });
        try {
          await context.addInitScript({ path: SPLIT_MARKS });
          const page = await context.newPage();
          await one(v, page, "cold", split, true);
        } finally {
          await context.close();
        }
      }
    }
  }
  log("startup: cold loads done");

  const results = {};
  for (const v of variants) {
    const s = state.get(v.id);
    if (s.problem) {
      results[v.id] = { notMeasured: s.problem };
      continue;
    }
    const rows = [];
    const split = [];
    for (const cache of ["warm", "cold"]) {
      const label = cache === "warm" ? "warm cache" : "cold (new profile)";
      rows.push(...startupRows(v, label, s.samples[cache].plain, false));
      if (v.split) split.push(...startupRows(v, label, s.samples[cache].split, true));
    }
    results[v.id] = { rows, split };
  }
  return results;
}
