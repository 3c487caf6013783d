#!/usr/bin/env node
// capture-session-conformance: checks a backend against the capture-session backend contract.
import { main } from "../lib/cli.js";

// Output piped into `head` and closed early is not an error of the checks.
process.stdout.on("error", (e) => {
  if (e.code !== "EPIPE") throw e;
});
process.exitCode = await main(process.argv.slice(2));
