// The four Capture (Akamai Identity Cloud) REST calls a capture-session backend makes. Every
// call is a form-encoded POST answered with JSON; failures are `{"stat": "error", "code": N,
// "error": "name", ...}`, usually with HTTP 200, sometimes 400/401 from /oauth/token.

/** A failed Capture call. `kind` decides what the browser is told; never holds a token. */
export class CaptureError extends Error {
  /**
   * @param {"grant"|"redirect"|"busy"|"timeout"|"failed"} kind
   *   grant: the token, code or refresh token is not (or no longer) valid;
   *   redirect: redirect_uri differs from the sign-in's; busy: 510 api_limit_error;
   *   timeout: no answer in time; failed: anything else (network, 5xx, our credentials).
   */
  constructor(kind, detail) {
    super(`Capture call failed (${kind}): ${detail}`);
    this.kind = kind;
  }
}

// Capture error codes that mean "the user's grant is not valid": 200 invalid_argument (an
// unknown token or code), 310 record_not_found, 413 no_access_grant, 414 access_token_expired,
// 415 authorization_code_expired; /oauth/token also answers `invalid_grant`.
const GRANT_ERRORS = new Set([200, 310, 413, 414, 415]);

/**
 * @param {object} c
 * @param {string} c.captureUrl   e.g. https://example.us.janraincapture.com
 * @param {string} c.clientId     API client with the access_issuer feature
 * @param {string} c.clientSecret
 * @param {string} c.typeName     entity type, usually "user"
 * @param {string} [c.forClientId] for_client_id of /access/getAccessToken, if the tenant needs it
 * @param {number} c.timeoutMs
 */
export function captureClient({ captureUrl, clientId, clientSecret, typeName, forClientId, timeoutMs }) {
  const basic = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString("base64")}`;

  async function call(path, params, { authenticate }) {
    let res;
    let body;
    try {
      res = await fetch(captureUrl + path, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          ...(authenticate ? { Authorization: basic } : {}),
        },
        body: new URLSearchParams(params),
        signal: AbortSignal.timeout(timeoutMs),
      });
      body = await res.json();
    } catch (e) {
      if (e.name === "TimeoutError") throw new CaptureError("timeout", `${path} took over ${timeoutMs} ms`);
      throw new CaptureError("failed", res ? `${path} answered HTTP ${res.status} without JSON` : `${path} unreachable`);
    }
    if (body.stat === "ok") return body;
    const detail = `${path}: ${body.code ?? res.status} ${body.error}`;
    if (body.code === 510) throw new CaptureError("busy", detail);
    if (body.code === 420) throw new CaptureError("redirect", detail);
    if (GRANT_ERRORS.has(body.code) || body.error === "invalid_grant") throw new CaptureError("grant", detail);
    throw new CaptureError("failed", detail);
  }

  return {
    /** The uuid of the user an access token belongs to (`/entity`, no client credentials). */
    async tokenOwner(accessToken) {
      const r = await call("/entity", { access_token: accessToken, attributes: '["uuid"]' }, { authenticate: false });
      if (typeof r.result?.uuid !== "string") throw new CaptureError("failed", "/entity returned no uuid");
      return r.result.uuid;
    },

    /** Token mode: a new access token for `uuid` (`/access/getAccessToken`; no expiry in the reply). */
    async mintAccessToken(uuid) {
      const params = { uuid, type_name: typeName, ...(forClientId ? { for_client_id: forClientId } : {}) };
      let r;
      try {
        r = await call("/access/getAccessToken", params, { authenticate: true });
      } catch (e) {
        // 200 invalid_argument here is about our parameters, not the user's grant.
        if (e.kind === "grant" && !/ 310 /.test(e.message)) throw new CaptureError("failed", e.message);
        throw e;
      }
      if (typeof r.accessToken !== "string") throw new CaptureError("failed", "/access/getAccessToken returned no token");
      return r.accessToken;
    },

    /** Code mode: the widget's authorization code for an access and a refresh token. */
    async exchangeCode(code, redirectUri) {
      return grant(await call("/oauth/token", { grant_type: "authorization_code", code, redirect_uri: redirectUri }, { authenticate: true }));
    },

    /** Code mode: a refresh token (single use: the reply carries the next one) for new tokens. */
    async refreshGrant(refreshToken) {
      return grant(await call("/oauth/token", { grant_type: "refresh_token", refresh_token: refreshToken }, { authenticate: true }));
    },
  };
}

function grant(r) {
  if (typeof r.access_token !== "string") throw new CaptureError("failed", "/oauth/token returned no access_token");
  return { accessToken: r.access_token, refreshToken: r.refresh_token, expiresIn: r.expires_in };
}
