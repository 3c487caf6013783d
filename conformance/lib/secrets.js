// Everything secret the kit sees (tokens, codes, cookie values, the password) is registered
// here, and every line the kit prints goes through `scrub()`. Failure reasons are written with
// fingerprints and lengths in the first place; scrubbing is the second line of defence.

/**
 * FNV-1a 32-bit over the UTF-8 bytes, as 8 lowercase hex digits: the fingerprint the browser
 * helper sends as `replace` (contract 1.1), and the way the kit names a token in its output.
 * @param {string} value
 */
export function fingerprint(value) {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(value, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/** How the kit names a secret in its output: its kind, fingerprint and length. */
export function describeSecret(value, kind = "token") {
  return `${kind} fp ${fingerprint(value)} (${value.length} chars)`;
}

// A run of token alphabet characters this long, with a letter and a digit in it, looks like a
// credential even when the kit does not know it (a refresh token a backend echoes, say).
const TOKEN_LIKE = /[A-Za-z0-9_~+=-]{20,}/g;

export class Secrets {
  constructor() {
    /** @type {Map<string, string>} value -> kind */
    this.values = new Map();
  }

  /** Registers a secret; values under 6 characters are too short to recognise reliably. */
  add(value, kind) {
    if (typeof value === "string" && value.length >= 6 && !this.values.has(value)) {
      this.values.set(value, kind);
    }
    return value;
  }

  /** The kinds of the registered secrets that occur in `text`. */
  findIn(text) {
    const kinds = new Set();
    if (typeof text !== "string" || text === "") return [];
    for (const [value, kind] of this.values) {
      if (text.includes(value)) kinds.add(kind);
    }
    return [...kinds];
  }

  /** `text` with every registered secret, and anything token-like, replaced by a description. */
  scrub(text) {
    let out = String(text);
    // Longest first, so a secret that contains another is replaced whole.
    const known = [...this.values.keys()].sort((a, b) => b.length - a.length);
    for (const value of known) {
      if (out.includes(value)) out = out.split(value).join(`<${describeSecret(value, this.values.get(value))}>`);
    }
    return scrubTokenLike(out);
  }
}

/** Replaces runs that look like credentials (long, with letters and digits) by their length. */
export function scrubTokenLike(text) {
  return String(text).replace(TOKEN_LIKE, (run) =>
    /[A-Za-z]/.test(run) && /[0-9]/.test(run) ? `<redacted ${run.length} chars>` : run,
  );
}
