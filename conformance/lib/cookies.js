// Set-Cookie parsing (RFC 6265 section 5.2, the parts a session cookie uses) and a minimal
// cookie jar: one jar is one browser talking to one backend.

/**
 * @typedef {object} SetCookie
 * @property {string} name
 * @property {string} value
 * @property {boolean} httpOnly
 * @property {boolean} secure
 * @property {string|undefined} sameSite  as written ("Lax", "Strict", "None", ...)
 * @property {string|undefined} path
 * @property {string|undefined} domain
 * @property {number|undefined} maxAge    seconds
 * @property {Date|undefined} expires
 */

/**
 * Parses one Set-Cookie header value. Returns null for a header without `name=`.
 * @param {string} header
 * @returns {SetCookie|null}
 */
export function parseSetCookie(header) {
  const [pair, ...attrs] = String(header).split(";");
  const eq = pair.indexOf("=");
  if (eq <= 0) return null;
  const cookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    httpOnly: false,
    secure: false,
    sameSite: undefined,
    path: undefined,
    domain: undefined,
    maxAge: undefined,
    expires: undefined,
  };
  if (cookie.name === "") return null;
  for (const attr of attrs) {
    const i = attr.indexOf("=");
    const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
    const val = i < 0 ? "" : attr.slice(i + 1).trim();
    switch (key) {
      case "httponly":
        cookie.httpOnly = true;
        break;
      case "secure":
        cookie.secure = true;
        break;
      case "samesite":
        cookie.sameSite = val;
        break;
      case "path":
        cookie.path = val;
        break;
      case "domain":
        cookie.domain = val;
        break;
      case "max-age":
        // RFC 6265: an optional "-" then digits; anything else is ignored.
        if (/^-?[0-9]+$/.test(val)) cookie.maxAge = Number(val);
        break;
      case "expires": {
        const t = Date.parse(val);
        if (!Number.isNaN(t)) cookie.expires = new Date(t);
        break;
      }
      default:
        break;
    }
  }
  return cookie;
}

/** Whether a Set-Cookie deletes its cookie (Max-Age <= 0, or Expires in the past). */
export function isDeletion(cookie, now = Date.now()) {
  if (cookie.maxAge !== undefined) return cookie.maxAge <= 0;
  return cookie.expires !== undefined && cookie.expires.getTime() <= now;
}

/** Whether a cookie outlives the browser session (Max-Age or Expires in the future). */
export function isPersistent(cookie, now = Date.now()) {
  if (cookie.maxAge !== undefined) return cookie.maxAge > 0;
  return cookie.expires !== undefined && cookie.expires.getTime() > now;
}

export class CookieJar {
  /** @param {Iterable<[string, string]>} [entries] */
  constructor(entries = []) {
    /** @type {Map<string, string>} */
    this.cookies = new Map(entries);
  }

  /** Applies the Set-Cookie headers of a reply. */
  update(setCookies, now = Date.now()) {
    for (const c of setCookies) {
      if (isDeletion(c, now)) this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
  }

  set(name, value) {
    this.cookies.set(name, value);
  }

  /** The Cookie request header, or undefined when the jar is empty. */
  header() {
    if (this.cookies.size === 0) return undefined;
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join("; ");
  }

  copy() {
    return new CookieJar(this.cookies);
  }

  names() {
    return [...this.cookies.keys()];
  }

  values() {
    return [...this.cookies.values()];
  }
}
