// Part 1: bytes a browser downloads, raw / gzip -9 / brotli.
//   - capture-session's ESM package (pkg/: the JS glue it imports + the .wasm) as shipped
//   - capture-session's script-tag file (dist/capture-session.js + any .wasm it loads)
//   - oidc-client-ts, @auth0/auth0-spa-js, @okta/okta-auth-js, @azure/msal-browser, each
//     bundled by esbuild (minified, ESM, browser platform) from a one-line import of its
//     main class
//   - the floor: an empty exported function built like the helper (bench/floor, built by
//     scripts/bench into .work/floor)
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import { DIST_DIR, PKG_DIR, ROOT, WORK_DIR, compressedSizes, filesSizes, notMeasured, writePart } from "./lib/measure.mjs";
import { PEERS, bundle, packageVersion } from "./lib/peers.mjs";

// The order of the size table (it predates the start-up table's order).
const COMPETITORS = ["oidc-client-ts", "@auth0/auth0-spa-js", "@okta/okta-auth-js", "@azure/msal-browser"].map((n) => PEERS.find((p) => p.name === n));

/** The .wasm files a JS file names (wasm-bindgen: new URL('x_bg.wasm', import.meta.url)). */
function wasmNamedBy(jsFile) {
  const text = readFileSync(jsFile, "utf8");
  const names = new Set();
  for (const m of text.matchAll(/["'`]([^"'`\s]*?\.wasm)["'`]/g)) names.add(m[1].replace(/^\.\//, ""));
  return [...names].map((n) => join(dirname(jsFile), n)).filter((p) => existsSync(p));
}

/** The JS files an entry reaches through its imports (from esbuild's metafile), as shipped. */
async function jsReachedFrom(entry) {
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "browser",
    logLevel: "silent",
  });
  return Object.keys(result.metafile.inputs).map((p) => join(process.cwd(), p));
}

async function captureSessionPackage() {
  const pkgDir = PKG_DIR;
  const pjPath = join(pkgDir, "package.json");
  if (!existsSync(pjPath)) return notMeasured("pkg/package.json missing: `npm run build` produced no ESM package");
  const pj = JSON.parse(readFileSync(pjPath, "utf8"));
  const entryName = pj.module || pj.exports?.["."]?.import || pj.exports?.["."]?.default || pj.main;
  if (typeof entryName !== "string") return notMeasured("pkg/package.json names no module entry");
  const entry = join(pkgDir, entryName);
  const js = await jsReachedFrom(entry);
  const wasm = [...new Set(js.flatMap(wasmNamedBy))];
  if (wasm.length === 0) wasm.push(...readdirSync(pkgDir).filter((f) => f.endsWith(".wasm")).map((f) => join(pkgDir, f)));
  const sizes = filesSizes([...js, ...wasm]);
  sizes.files = sizes.files.map((f) => ({ ...f, path: `pkg/${relative(PKG_DIR, f.path)}` }));
  return { version: pj.version, entry: `pkg/${relative(PKG_DIR, entry)}`, ...sizes };
}

async function captureSessionScriptTag() {
  const file = join(DIST_DIR, "capture-session.js");
  if (!existsSync(file)) return notMeasured("dist/capture-session.js missing: `npm run build` produced no script-tag file");
  const sizes = filesSizes([file, ...wasmNamedBy(file)]);
  sizes.files = sizes.files.map((f) => ({ ...f, path: `dist/${relative(DIST_DIR, f.path)}` }));
  return sizes;
}

async function competitor({ name, main }) {
  const b = await bundle(name, [main], join(WORK_DIR, "competitors"));
  return { version: packageVersion(name), import: b.import, raw: b.raw, gzip: b.gzip, brotli: b.brotli };
}

async function floor() {
  const dir = join(WORK_DIR, "floor");
  if (!existsSync(dir)) return notMeasured("the floor module was not built (see bench/.work/floor.log)");
  const js = join(dir, "floor.min.js");
  const wasm = readdirSync(dir).filter((f) => f.endsWith(".wasm")).map((f) => join(dir, f));
  if (!existsSync(js) || wasm.length !== 1) return notMeasured("the floor build output is incomplete");
  // A floor that does not run is no floor: instantiate it and call its function.
  const glue = await import(pathToFileURL(js).href);
  glue.initSync({ module: readFileSync(wasm[0]) });
  glue.noop();
  const s = filesSizes([js, ...wasm]);
  return {
    raw: s.raw, gzip: s.gzip, brotli: s.brotli,
    wasm: compressedSizes(readFileSync(wasm[0]), { text: false }),
    glue: compressedSizes(readFileSync(js)),
  };
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    return notMeasured(e?.message || e);
  }
}

const out = {
  esbuild: esbuild.version,
  captureSession: {
    esm: await guarded(captureSessionPackage),
    scriptTag: await guarded(captureSessionScriptTag),
  },
  floor: await guarded(floor),
  competitors: {},
};
for (const c of COMPETITORS) out.competitors[c.name] = await guarded(() => competitor(c));
const file = writePart("sizes", out);
console.log(`sizes: wrote ${relative(ROOT, file)}`);
