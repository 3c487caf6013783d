// Writes a module whose default export is the wasm as a Latin-1 string (one
// character per byte), for the single-file script tag.
//
// Why not base64 (esbuild's binary loader): base64 breaks the byte structure
// that gzip finds, and costs about 11 KiB more gzip than this. Bytes >= 0x80
// become two UTF-8 bytes in the file, so the bundle must be read as UTF-8:
// scripts/build gives it a byte order mark, which browsers honour before any
// charset of the page or the response.
// Usage: node embed-wasm.mjs WASM OUT.js
import { readFileSync, writeFileSync } from "node:fs";

const [wasmPath, outPath] = process.argv.slice(2);
const bytes = readFileSync(wasmPath);
let text = "";
for (const b of bytes) text += String.fromCharCode(b);
writeFileSync(outPath, `export default ${JSON.stringify(text)};\n`, "utf8");
