// Builds the Vite variant of the demo into www/dist-vite/, served by
// `capture-session-server --simulate` at /dist-vite/. "capture-session" resolves to the local
// npm package (pkg/, made by `npm run build`), exactly what `npm install capture-session` gives.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  root: here("."),
  base: "/dist-vite/",
  publicDir: false,
  logLevel: "warn",
  resolve: {
    alias: [{ find: /^capture-session$/, replacement: here("../../pkg") }],
  },
  build: {
    outDir: here("../dist-vite"),
    emptyOutDir: true,
    target: "es2022",
    // The wasm file stays a separate asset (never a data: URL): the CSP needs no data: in connect-src.
    assetsInlineLimit: 0,
  },
});
