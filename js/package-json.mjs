// Prints pkg/package.json: the npm package `capture-session` as published.
import { readFileSync } from "node:fs";

const root = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const pkg = {
  name: root.name,
  version: root.version,
  description: root.description,
  license: root.license,
  type: "module",
  // The default entry is the `web` build: it works in browsers as is and in
  // every bundler that understands `new URL("x.wasm", import.meta.url)`
  // (Vite, webpack 5, Rollup, Parcel). `init()` loads the wasm.
  module: "./web/capture_session.js",
  types: "./index.d.ts",
  exports: {
    ".": { types: "./index.d.ts", default: "./web/capture_session.js" },
    "./web": { types: "./index.d.ts", default: "./web/capture_session.js" },
    // ES module integration of wasm (webpack asyncWebAssembly, vite-plugin-wasm).
    "./bundler": { types: "./index.d.ts", default: "./bundler/index.js" },
    // The single-file build for a plain <script src>.
    "./script": "./capture-session.js",
    "./package.json": "./package.json",
  },
  files: ["web/", "bundler/", "index.d.ts", "capture-session.js", "README.md", "docs/"],
  sideEffects: ["./bundler/*.js", "./capture-session.js"],
  keywords: ["janrain", "akamai", "identity-cloud", "capture", "session", "wasm"],
};
process.stdout.write(JSON.stringify(pkg, null, 2) + "\n");
