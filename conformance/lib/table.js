// The report: one row per check (result, id, reason) and the closing `N passed, M failed`.

/**
 * @typedef {object} Result
 * @property {string} id
 * @property {"pass"|"fail"|"skip"} result
 * @property {string} [reason]  why it failed or was skipped
 */

const LABEL = { pass: "pass", fail: "FAIL", skip: "skip" };

/**
 * Formats results as an aligned table followed by the summary line.
 * @param {Result[]} results
 * @returns {string}
 */
export function formatReport(results) {
  const width = Math.max("check".length, ...results.map((r) => r.id.length));
  const lines = [`result  ${"check".padEnd(width)}  reason`];
  for (const r of results) {
    const reason = r.reason ? oneLine(r.reason) : "";
    lines.push(`${LABEL[r.result].padEnd(6)}  ${reason ? r.id.padEnd(width) : r.id}${reason ? `  ${reason}` : ""}`);
  }
  const c = counts(results);
  if (c.skip > 0) lines.push("", `${c.skip} skipped (see the reasons above)`);
  lines.push(summaryLine(results));
  return lines.join("\n");
}

/** `N passed, M failed` (skipped checks count as neither). */
export function summaryLine(results) {
  const c = counts(results);
  return `${c.pass} passed, ${c.fail} failed`;
}

export function counts(results) {
  const c = { pass: 0, fail: 0, skip: 0 };
  for (const r of results) c[r.result] += 1;
  return c;
}

function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}
