// What `npm pack` would publish: the command, its library and README, nothing else, and no file
// that points outside the package.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "node:test";
import { fileURLToPath } from "node:url";

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("npm pack publishes bin/, lib/, README.md and package.json only", () => {
  const [pack] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: DIR, encoding: "utf8" }));
  const files = pack.files.map((f) => f.path).sort();
  for (const f of files) assert.match(f, /^(bin\/[^/]+\.js|lib\/[^/]+\.js|README\.md|package\.json)$/, f);
  for (const f of ["bin/capture-session-conformance.js", "lib/cli.js", "lib/checks.js", "README.md", "package.json"]) {
    assert.ok(files.includes(f), `${f} is published`);
  }
  const pkg = JSON.parse(readFileSync(path.join(DIR, "package.json"), "utf8"));
  assert.deepEqual(pkg.dependencies ?? {}, {}, "no runtime dependencies");
  assert.equal(pkg.bin["capture-session-conformance"], "bin/capture-session-conformance.js");
  for (const f of files) {
    const text = readFileSync(path.join(DIR, f), "utf8");
    // The project's private requirements folder (spelled so that this file does not name it).
    assert.ok(!new RegExp(`${"shared"}/`).test(text), `${f} refers to the requirements folder`);
    assert.ok(!/\]\(\.\.\//.test(text) && !/from "\.\.\/\.\./.test(text), `${f} refers outside the package`);
  }
});

test("the command is executable and starts with a node shebang", () => {
  const bin = readFileSync(path.join(DIR, "bin/capture-session-conformance.js"), "utf8");
  assert.match(bin, /^#!\/usr\/bin\/env node\n/);
});
