// Gathers the parts' results (.work/*.json) and the machine they ran on into
// bench/results.json and bench/results.md. A part that did not run is shown as
// "not measured: <why>".
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { BENCH_DIR, ROOT, WORK_DIR } from "./lib/measure.mjs";
import { startupHeadline } from "./lib/startup.mjs";

function run(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20000 }).trim();
  } catch (e) {
    // Some tools (wrk -v) print their version and exit non-zero.
    const text = `${e.stdout || ""}${e.stderr || ""}`.trim();
    return text || null;
  }
}

function firstLine(s) {
  return s ? s.split("\n")[0].trim() : null;
}

function machine() {
  const osRelease = existsSync("/etc/os-release") ? readFileSync("/etc/os-release", "utf8") : "";
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? `${os.type()} ${os.release()}`;
  const wrk = firstLine(run("wrk", ["-v"]));
  const rustc = firstLine(run("rustc", ["--version"]));
  const debianRustc = existsSync("/usr/bin/rustc") ? firstLine(run("/usr/bin/rustc", ["--version"])) : null;
  return {
    nproc: Number(run("nproc", [])) || os.availableParallelism(),
    memoryBytes: os.totalmem(),
    cpuModel: os.cpus()[0]?.model ?? null,
    os: pretty,
    kernel: os.release(),
    versions: {
      node: process.version,
      chromium: firstLine(run(process.env.CHROME_BIN || "/usr/bin/chromium", ["--version"])),
      rustc,
      rustcDebian: debianRustc && debianRustc !== rustc ? debianRustc : undefined,
      wasmBindgen: firstLine(run("wasm-bindgen", ["--version"])),
      wasmOpt: firstLine(run(join(ROOT, "node_modules/.bin/wasm-opt"), ["--version"])),
      wrk: wrk ? wrk.replace(/ \[.*$/, "") : null,
      redis: firstLine(run("redis-server", ["--version"])),
    },
    commit: firstLine(run("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"])),
    dirtyTree: Boolean(run("git", ["-C", ROOT, "status", "--porcelain", "--untracked-files=no"])),
  };
}

function part(name) {
  const file = join(WORK_DIR, `${name}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8"));
  const failed = join(WORK_DIR, `${name}.failed`);
  const why = existsSync(failed) ? readFileSync(failed, "utf8").trim() : "the part did not run";
  return { notMeasured: why || "the part failed without output" };
}

// --- Markdown ------------------------------------------------------------------
const kib = (b) => (b == null ? "–" : `${(b / 1024).toFixed(1)}`);
const ms = (v, d = 2) => (v == null ? "–" : v.toFixed(d));
const nm = (x) => `not measured: ${x.notMeasured}`;
const table = (head, rows) =>
  [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");

function sizesSection(s) {
  const lines = ["## 1. Bytes a browser downloads", ""];
  if (s.notMeasured) return [...lines, nm(s), ""].join("\n");
  const row = (what, how, x) =>
    x.notMeasured ? [what, how, nm(x), "", ""] : [what, how, kib(x.raw), kib(x.gzip), kib(x.brotli)];
  const rows = [
    row("capture-session ESM package", "wasm + JS glue as shipped (pkg/)", s.captureSession.esm),
    row("capture-session script tag", "dist/capture-session.js (wasm embedded)", s.captureSession.scriptTag),
    row("floor: empty wasm-bindgen function", "bench/floor, built like the helper", s.floor),
  ];
  for (const [name, c] of Object.entries(s.competitors)) {
    rows.push(row(c.version ? `${name} ${c.version}` : name, `esbuild ${s.esbuild} bundle of \`${c.import ?? name}\``, c));
  }
  lines.push(table(["what", "measured as", "raw KiB", "gzip -9 KiB", "brotli KiB"], rows), "");
  lines.push("Each file a browser fetches separately is compressed on its own and the sizes added up. Target: ESM package at most 46 KiB gzip (issue 13; stretch 40), the script-tag file within 3 KiB of it.", "");
  return lines.join("\n");
}

function browserSection(b) {
  const lines = ["## 2-4. In the browser (headless Chromium)", ""];
  if (b.notMeasured) return [...lines, nm(b), ""].join("\n");
  if (b.chromium) lines.push(`${b.chromium}, playwright-core, headless.`, "");
  lines.push(...startupSection(b.startup));
  lines.push("### 3. Helper overhead per refresh: reply handed to the page → `createCaptureSession` called", "");
  const ro = b.refreshOverhead;
  if (ro.notMeasured) lines.push(nm(ro), "");
  else {
    lines.push(
      table(["median ms", "p95 ms", "min ms", "max ms", "refreshes"], [[ms(ro.median, 3), ms(ro.p95, 3), ms(ro.min, 3), ms(ro.max, 3), String(ro.n)]]),
      "",
      ro.note ?? "",
      "",
      "Target: under 1 ms median.",
      "",
    );
  }
  lines.push("### 4. Tab fan-out at expiry", "");
  const fo = b.fanout;
  if (fo.notMeasured) lines.push(nm(fo), "");
  else {
    lines.push(
      table(
        ["tabs", "refresh requests at the server", "tabs with the new token", "logout propagation to the last tab (ms)", "refreshes sent by the tabs (ms after the first)"],
        fo.rows.map((r) =>
          r.notMeasured
            ? [String(r.tabs), nm(r), "", "", ""]
            : [
                String(r.tabs),
                String(r.refreshRequests),
                `${r.tabsRefreshed}/${r.tabs}`,
                r.logoutPropagationMs == null ? `${r.tabsEnded}/${r.tabs} tabs ended within 5 s` : ms(r.logoutPropagationMs, 1),
                (r.refreshSendOffsetsMs ?? []).map((t) => `+${t}`).join(", "),
              ],
        ),
      ),
      "",
      fo.note ?? "",
      "",
      "Target: 1 refresh request for every N.",
      "",
    );
  }
  return lines.join("\n");
}

const KIB = (b) => (b == null ? "–" : (b / 1024).toFixed(1));

function startupSection(st) {
  const lines = ["### 2. Start-up: the page's first script → stored session known (valid stored session)", ""];
  if (st.notMeasured) return [...lines, nm(st), ""];
  const libs = st.libraries;
  const rows = [];
  for (const lib of libs) {
    if (lib.notMeasured) {
      rows.push([lib.label, "", nm(lib), "", "", "", "", ""]);
      continue;
    }
    for (const cache of ["warm cache", "cold (new profile)"]) {
      const get = (what) => lib.rows.find((r) => r.cache === cache && r.what === what);
      const total = get("script start → stored session known");
      const beyond = get("beyond the network");
      const network = get("network (the library's files on the wire)");
      rows.push([lib.label, cache, ms(total?.median), ms(total?.p95), `**${ms(beyond?.median)}**`, ms(beyond?.p95), ms(network?.median), String(total?.n ?? "")]);
    }
  }
  lines.push(
    table(["library, loaded as", "cache", "median ms", "p95 ms", "beyond the network: median ms", "beyond: p95 ms", "network: median ms", "page loads"], rows),
    "",
  );
  const h = startupHeadline(libs);
  if (h.fastestPeer) {
    const vs = (x) => (x ? `${ms(x.median)} ms` : "not measured");
    lines.push(
      `Target (issue 13): capture-session's warm median beyond the network at most that of the fastest peer (here ${h.fastestPeer.label}, ${ms(h.fastestPeer.median)} ms); stretch 5 ms. ` +
        `Measured: ESM package ${vs(h.esm)}, with the wasm fetched alongside the import ${vs(h.esmPrefetch)}, script tag ${vs(h.script)}.`,
      "",
    );
  }
  lines.push(st.note ?? "", "", "How each library was asked for its stored session (pages/startup.html):", "");
  for (const lib of libs) {
    const size = lib.bundleGzip != null ? ` (esbuild bundle of what the page imports: ${KIB(lib.bundleRaw)} KiB raw, ${KIB(lib.bundleGzip)} KiB gzip -9)` : "";
    lines.push(`- ${lib.label}: ${lib.api}${size}`);
  }
  lines.push("");

  lines.push("#### Where capture-session's start-up goes", "");
  const phaseRows = [];
  for (const lib of libs.filter((l) => l.id.startsWith("capture-session") && !l.notMeasured)) {
    for (const r of lib.rows.filter((x) => x.what.startsWith("  "))) {
      phaseRows.push([lib.label, r.cache, r.what.trim(), ms(r.median), ms(r.p95), ms(r.beyond?.median), ms(r.beyond?.p95)]);
    }
  }
  lines.push(
    "Plain loads (the ones above), split by the page's own marks:",
    "",
    table(["library, loaded as", "cache", "phase", "median ms", "p95 ms", "beyond the network: median ms", "p95 ms"], phaseRows),
    "",
  );
  const splitRows = [];
  for (const lib of libs.filter((l) => l.split?.length)) {
    for (const r of lib.split) splitRows.push([lib.label, r.cache, r.what, ms(r.median), ms(r.p95), r.beyond ? ms(r.beyond.median) : "", r.beyond ? ms(r.beyond.p95) : ""]);
  }
  if (splitRows.length) {
    lines.push(
      `Instrumented loads (as many again, interleaved with the plain ones; bench/pages/split-marks.js stamps the helper's calls into the browser: compile, instantiate, the script tag's start and its \`window.CaptureSession\`). Their total is next to the phases, to compare with the plain loads' total above: the marks cost about a microsecond each.`,
      "",
      table(["library, loaded as", "cache", "phase", "median ms", "p95 ms", "beyond the network: median ms", "p95 ms"], splitRows),
      "",
      "Medians of phases do not add up to the median of the total. What the phases say, and what is left, is in bench/README.md (\"Where capture-session's start-up goes\").",
      "",
    );
  }
  return lines;
}

/** "0", or the count of failed requests with what they were, e.g. "21 (401 session_expired 21)". */
function failures(r) {
  if (!r.errors) return "0";
  const detail = Object.entries(r.statuses ?? {}).filter(([k]) => k !== "200").map(([k, n]) => `${k} ${n}`);
  const socket = Object.entries(r.errorDetail ?? {}).filter(([k, n]) => k !== "status" && n > 0).map(([k, n]) => `${k} errors ${n}`);
  const all = [...detail, ...socket];
  return all.length ? `${r.errors} (${all.join(", ")})` : String(r.errors);
}

function serverSection(s) {
  const lines = ["## 5. Reference server, simulator as upstream", ""];
  if (s.notMeasured) return [...lines, nm(s), ""].join("\n");
  if (s.note) lines.push(s.note, "");
  lines.push("### Refresh throughput and latency (wrk)", "");
  if (s.load?.notMeasured) lines.push(nm(s.load), "");
  else {
    lines.push(
      table(
        ["store", "rate limits", "mode", "concurrent sessions", "refreshes/s", "p50 ms", "p99 ms", "requests", "failed"],
        s.load.map((r) =>
          r.notMeasured
            ? [r.store, r.limits ?? "off", r.mode, String(r.sessions), nm(r), "", "", "", ""]
            : [r.store, r.limits ?? "off", r.mode, String(r.sessions), r.rps.toFixed(0), ms(r.p50Ms), ms(r.p99Ms), String(r.requests), failures(r)],
        ),
      ),
      "",
    );
  }
  lines.push("### Memory per idle session", "");
  if (s.idle?.notMeasured) lines.push(nm(s.idle), "");
  else {
    lines.push(
      table(
        ["store", "sessions", "bytes per session", "measured as"],
        s.idle.map((r) =>
          r.notMeasured
            ? [r.store, String(r.sessions ?? ""), nm(r), ""]
            : [
                r.store,
                String(r.sessions),
                r.bytesPerSession.toFixed(0),
                `${r.method}${r.redisKeysPerSession != null ? `; ${r.redisKeysPerSession} Redis key(s) per session` : ""}; ${r.mode} mode, created through the start endpoint in ${r.createSeconds.toFixed(0)} s`,
              ],
        ),
      ),
      "",
    );
  }
  return lines.join("\n");
}

/** The headline numbers next to their issues' targets (a reading aid; nothing is asserted). */
function summarySection(r) {
  const rows = [];
  const kibOf = (x) => (x && !x.notMeasured ? `${kib(x.gzip)} KiB` : "not measured");
  const esm = r.sizes.captureSession?.esm;
  rows.push(["ESM package, gzip -9 (wasm + glue)", kibOf(esm), "at most 46 KiB (issue 13), stretch 40"]);
  rows.push(["script-tag file, gzip -9", kibOf(r.sizes.captureSession?.scriptTag), "–"]);
  const st = r.browser.startup;
  const h = st?.libraries ? startupHeadline(st.libraries) : null;
  const peer = h?.fastestPeer;
  const target = peer ? `at most the fastest peer's ${ms(peer.median)} ms (${peer.label}; issue 13), stretch 5 ms` : "at most the fastest peer's (issue 13), stretch 5 ms";
  for (const [key, what] of [["esm", "ESM package"], ["esmPrefetch", "ESM package, wasm fetched with the import"], ["script", "script tag"]]) {
    const x = h?.[key];
    rows.push([`start-up beyond the network, ${what}, warm cache (median)`, x ? `${ms(x.median)} ms` : "not measured", target]);
  }
  if (h?.peers?.length) rows.push(["start-up beyond the network, peers, warm cache (median)", h.peers.map((p) => `${p.label} ${ms(p.median)} ms`).join("; "), "–"]);
  const ro = r.browser.refreshOverhead;
  rows.push(["helper overhead per refresh (median)", ro && !ro.notMeasured ? `${ms(ro.median, 3)} ms` : "not measured", "under 1 ms (issue 7)"]);
  const fo = r.browser.fanout?.rows;
  rows.push([
    "refresh requests at the server per expiry, N = " + (fo ? fo.map((x) => x.tabs).join(" / ") : "1 / 5 / 10 / 20") + " tabs",
    fo ? fo.map((x) => (x.notMeasured ? "–" : String(x.refreshRequests))).join(" / ") : "not measured",
    "1 for every N (issue 7)",
  ]);
  const last = fo?.filter((x) => !x.notMeasured).at(-1);
  rows.push([`logout propagation to the last of ${last?.tabs ?? "N"} tabs`, last?.logoutPropagationMs != null ? `${ms(last.logoutPropagationMs, 1)} ms` : "not measured", "–"]);
  const load = Array.isArray(r.server.load) ? r.server.load.filter((x) => !x.notMeasured) : [];
  for (const store of ["memory", "redis", "redis-encrypted"]) {
    const best = load.filter((x) => x.store === store).sort((a, b) => b.rps - a.rps)[0];
    rows.push([`server refreshes/s, ${store} store (best of modes, concurrencies and rate limits)`, best ? `${best.rps.toFixed(0)} (${best.mode} mode, ${best.sessions} sessions, rate limits ${best.limits ?? "off"}, p99 ${ms(best.p99Ms)} ms)` : "not measured", "–"]);
  }
  const idle = Array.isArray(r.server.idle) ? r.server.idle : [];
  for (const x of idle) rows.push([`memory per idle session, ${x.store}`, x.notMeasured ? "not measured" : `${x.bytesPerSession.toFixed(0)} bytes`, "–"]);
  return ["## Summary", "", table(["", "measured", "target"], rows), ""].join("\n");
}

function machineSection(m, totalSeconds, parts) {
  const v = m.versions;
  const rows = [
    ["CPU", `${m.cpuModel} (nproc ${m.nproc})`],
    ["memory", `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`],
    ["OS", `${m.os}, kernel ${m.kernel}`],
    ["commit", `${m.commit}${m.dirtyTree ? " (with uncommitted changes)" : ""}`],
    ["node", v.node],
    ["chromium", v.chromium ?? "–"],
    ["rustc", [v.rustc, v.rustcDebian && `/usr/bin/rustc (Debian, used for wasm32 where rustup has no wasm32 std): ${v.rustcDebian}`].filter(Boolean).join("; ") || "–"],
    ["wasm-bindgen / wasm-opt", `${v.wasmBindgen ?? "–"} / ${v.wasmOpt ?? "–"}`],
    ["wrk / redis", `${v.wrk ?? "–"} / ${v.redis ?? "–"}`],
  ];
  const loads = Object.entries(parts)
    .filter(([, p]) => typeof p.loadavg1mAtStart === "number")
    .map(([name, p]) => `${name} ${p.loadavg1mAtStart.toFixed(1)} → ${p.loadavg1mAtEnd.toFixed(1)}`);
  if (loads.length) rows.push(["load average (1 min), part start → end", loads.join("; ")]);
  if (totalSeconds) rows.push(["bench run time", `${totalSeconds} s (npm run bench, including setup and build checks)`]);
  return ["## Machine", "", table(["", ""], rows), ""].join("\n");
}

const results = {
  generatedAt: new Date().toISOString(),
  totalSeconds: Number(process.env.BENCH_TOTAL_SECONDS) || null,
  machine: machine(),
  sizes: part("sizes"),
  browser: part("browser"),
  server: part("server"),
};

const md = [
  "# capture-session benchmarks",
  "",
  `Written by \`npm run bench\` on ${results.generatedAt}. Numbers are measured on the machine below, printed and never asserted. Raw data: results.json.`,
  "",
  summarySection(results),
  machineSection(results.machine, results.totalSeconds, { sizes: results.sizes, browser: results.browser, server: results.server }),
  sizesSection(results.sizes),
  browserSection(results.browser),
  serverSection(results.server),
].join("\n");

writeFileSync(join(BENCH_DIR, "results.json"), JSON.stringify(results, null, 2) + "\n");
writeFileSync(join(BENCH_DIR, "results.md"), md.replace(/\n{3,}/g, "\n\n"));
console.log(md);
