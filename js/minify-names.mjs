// Shortens the wasm's import and export names in the `web` glue.
//
// wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` and exports
// `capturesession_attach`, `wasm_bindgen__convert__closures_____invoke__h…`;
// those strings sit in the wasm (import and export sections) and again in the
// glue, and hex hashes do not compress. `wasm-opt
// --minify-imports-and-exports-and-modules` renames them in the wasm and prints
// the mapping (JSON on stdout); this script applies it to the glue:
//   - the import object's keys (`__wbg_x_123abc: function`) and its module key,
//   - every `wasm.<export>` property access.
// Worth about 3 KiB gzip. Usage: node minify-names.mjs MAP.json GLUE.js WASM
import { readFileSync, writeFileSync } from "node:fs";

const [mapPath, gluePath, wasmPath] = process.argv.slice(2);
const raw = readFileSync(mapPath, "utf8");
const map = JSON.parse(raw.slice(raw.indexOf("{")));
let glue = readFileSync(gluePath, "utf8");

const wasm = new WebAssembly.Module(readFileSync(wasmPath));
const modules = new Set(WebAssembly.Module.imports(wasm).map((i) => i.module));
if (modules.size !== 1) throw new Error(`expected one import module, got ${[...modules]}`);
const [newModule] = modules;

const oldModules = new Set(map.imports.map(([module]) => module));
for (const module of oldModules) {
  const key = JSON.stringify(module) + ":";
  if (!glue.includes(key)) throw new Error(`import module ${module} not found in the glue`);
  glue = glue.replaceAll(key, JSON.stringify(newModule) + ":");
}

const escape = (s) => s.replace(/[$]/g, "\\$");
function replaceAll(pattern, from, to, what) {
  const re = new RegExp(pattern(escape(from)), "gm");
  let n = 0;
  glue = glue.replace(re, (m) => {
    n += 1;
    return m.replace(from, to);
  });
  if (n === 0) throw new Error(`${what} ${from} not found in the glue`);
}

for (const [, from, to] of map.imports) {
  // An import object key: `    name: function(` at the start of a line.
  replaceAll((n) => `(?<=^\\s*)${n}(?=:)`, from, JSON.stringify(to), "import");
}
for (const [from, to] of map.exports) {
  if (!new RegExp(`\\bwasm\\.${escape(from)}\\b`).test(glue)) continue; // unused by the glue
  replaceAll((n) => `\\bwasm\\.${n}(?![\\w$])`, from, to, "export");
}
// Quoted keys are fine for imports (`"$a": function`); accesses need valid identifiers.
for (const [, to] of map.exports) {
  if (!/^[A-Za-z_$][\w$]*$/.test(to)) throw new Error(`export name ${to} is not an identifier`);
}
writeFileSync(gluePath, glue);
