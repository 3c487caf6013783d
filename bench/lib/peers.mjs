// The session libraries capture-session is compared with, in one place: how each
// is bundled (sizes.mjs and the start-up measurement use the same esbuild
// options), how a page configures it and asks it for the stored session
// (pages/startup.html has the matching code), and the stored session a
// returning visitor's browser holds for it, in the keys and shapes the library
// itself reads (each read from the library's own source; cited below).
//
// No token here is real: every one is a random string made for this run. They
// are still handled like credentials: only lengths and fingerprints are ever
// printed or written to the results.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import * as esbuild from "esbuild";
import { BENCH_DIR, filesSizes } from "./measure.mjs";

const require = createRequire(join(BENCH_DIR, "package.json"));

/** What to measure; `exports` is what pages/startup.html needs from the bundle. */
export const PEERS = [
  {
    name: "oidc-client-ts",
    main: "UserManager",
    exports: ["UserManager", "WebStorageStateStore"],
    api: "`new UserManager({ ..., userStore: new WebStorageStateStore({ store: localStorage }) })`, `await getUser()`",
  },
  {
    name: "@okta/okta-auth-js",
    main: "OktaAuth",
    exports: ["OktaAuth"],
    api: "`new OktaAuth({ ..., tokenManager: { storage: \"localStorage\" } })`, `await start()`, `await tokenManager.get(\"accessToken\")`",
  },
  {
    name: "@auth0/auth0-spa-js",
    main: "Auth0Client",
    exports: ["Auth0Client"],
    api: "`new Auth0Client({ ..., cacheLocation: \"localstorage\" })`, `await getTokenSilently({ cacheMode: \"cache-only\" })`",
  },
  {
    name: "@azure/msal-browser",
    main: "PublicClientApplication",
    exports: ["PublicClientApplication", "CacheLookupPolicy"],
    api: "`new PublicClientApplication({ ..., cache: { cacheLocation: \"localStorage\" } })`, `await initialize()`, `getAllAccounts()`, `await acquireTokenSilent({ account, scopes, cacheLookupPolicy: CacheLookupPolicy.AccessToken })`",
  },
];

/** A file name for a package name: "@okta/okta-auth-js" -> "_okta_okta-auth-js". */
export const safeName = (name) => name.replace(/[@/]/g, "_");

export function packageVersion(name) {
  const pj = require.resolve(`${name}/package.json`, { paths: [BENCH_DIR] });
  return JSON.parse(readFileSync(pj, "utf8")).version;
}

/**
 * Bundles `export { names } from "package"` with esbuild (minified ESM for the
 * browser, as an application's bundler would) into outDir/<file>.js; returns the
 * file and the bytes a browser downloads.
 */
export async function bundle(name, names, outDir, file = safeName(name)) {
  mkdirSync(outDir, { recursive: true });
  const entry = join(outDir, `${file}.entry.mjs`);
  const line = `export { ${names.join(", ")} } from ${JSON.stringify(name)};`;
  writeFileSync(entry, line + "\n");
  const outfile = join(outDir, `${file}.js`);
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    outfile,
    nodePaths: [join(BENCH_DIR, "node_modules")],
    logLevel: "silent",
    metafile: true,
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => join(process.cwd(), p));
  const sizes = filesSizes(outputs.filter((p) => !p.endsWith(".map")));
  return { file: outfile, import: line, raw: sizes.raw, gzip: sizes.gzip, brotli: sizes.brotli, files: outputs.length };
}

// --- Fingerprints -------------------------------------------------------------------

/** FNV-1a 32-bit of a string's UTF-8 bytes, 8 hex digits (pages/startup.html computes the same). */
export function fnv1a(text) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(String(text), "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const secret = (what) => `bench-${what}-${randomBytes(24).toString("base64url")}`;
/** An unsigned JWT (header.payload.signature): the libraries decode claims; none checks a signature when reading its store. */
const jwt = (claims) => `${b64url({ alg: "RS256", typ: "JWT", kid: "bench" })}.${b64url(claims)}.${b64url(randomBytes(32).toString("hex"))}`;

// --- Stored sessions ------------------------------------------------------------------

/**
 * The configuration a page passes to the library, and the browser state (a
 * Playwright storageState) of a visitor who signed in with it a moment ago: the
 * access token is valid for the next hour. `expect` is what the library must
 * report: the access token's fingerprint and length.
 * MSAL's state is produced by MSAL itself (see seedMsal in lib/startup.mjs),
 * because it encrypts its localStorage entries with a key kept in a cookie.
 */
export function storedSession(name, origin, nowMs = Date.now()) {
  const now = Math.floor(nowMs / 1000);
  const exp = now + 3600;
  const accessToken = secret("access");
  const sub = "00u-bench-user";
  const local = (entries) => ({ cookies: [], origins: [{ origin, localStorage: Object.entries(entries).map(([n, value]) => ({ name: n, value })) }] });
  const expect = { fingerprint: fnv1a(accessToken), length: accessToken.length };
  switch (name) {
    case "oidc-client-ts": {
      // UserManager._userStoreKey: `user:${authority}:${client_id}`; WebStorageStateStore
      // prefixes "oidc."; the value is User.toStorageString() (dist/esm/oidc-client-ts.js).
      const authority = `${origin}/oidc`;
      const clientId = "bench-spa";
      const idToken = jwt({ iss: authority, aud: clientId, sub, iat: now, exp });
      const user = {
        id_token: idToken, session_state: null, access_token: accessToken, refresh_token: undefined,
        token_type: "Bearer", scope: "openid profile", profile: { sub, iss: authority, aud: clientId, iat: now, exp },
        expires_at: exp,
      };
      return {
        config: { settings: { authority, client_id: clientId, redirect_uri: `${origin}/bench/callback` } },
        storageState: local({ [`oidc.user:${authority}:${clientId}`]: JSON.stringify(user) }),
        expect,
      };
    }
    case "@okta/okta-auth-js": {
      // TokenManager: localStorage key "okta-token-storage" (constants.js TOKEN_STORAGE_NAME),
      // a JSON object of tokens by key; shapes as handleOAuthResponse.js stores them.
      const issuer = "https://okta.bench.invalid/oauth2/default";
      const clientId = "0oa-bench-spa";
      const scopes = ["openid", "profile"];
      const claims = { iss: issuer, aud: clientId, sub, iat: now, exp, nonce: "bench" };
      const tokens = {
        accessToken: {
          accessToken, expiresAt: exp, tokenType: "Bearer", scopes,
          authorizeUrl: `${issuer}/v1/authorize`, userinfoUrl: `${issuer}/v1/userinfo`,
          claims: { iss: issuer, aud: "api://default", sub, iat: now, exp, scp: scopes },
        },
        idToken: {
          idToken: jwt(claims), claims, expiresAt: exp, scopes,
          authorizeUrl: `${issuer}/v1/authorize`, issuer, clientId,
        },
      };
      return {
        config: { settings: { issuer, clientId, redirectUri: `${origin}/bench/callback`, tokenManager: { storage: "localStorage" } } },
        storageState: local({ "okta-token-storage": JSON.stringify(tokens) }),
        expect,
      };
    }
    case "@auth0/auth0-spa-js": {
      // LocalStorageCache (cache/cache-localstorage.ts) keeps JSON under CacheKey.toKey()
      // (cache/shared.ts): "@@auth0spajs@@::<clientId>::<audience>::<scope>" for the token
      // entry ({ body, expiresAt } from CacheManager.wrapCacheEntry, expiresAt in s) and
      // "@@auth0spajs@@::<clientId>::@@user@@" for the id token (CacheManager.setIdToken).
      // Default audience "default", default scope "openid profile email" (constants.ts).
      const domain = "auth0.bench.invalid";
      const clientId = "bench-spa";
      const scope = "openid profile email";
      const claims = { iss: `https://${domain}/`, aud: clientId, sub: `auth0|${sub}`, iat: now, exp, name: "Bench User", email: "bench@example.com" };
      const idToken = jwt(claims);
      const decodedToken = { claims: { __raw: idToken, ...claims }, user: { sub: claims.sub, name: claims.name, email: claims.email } };
      const entry = {
        body: { access_token: accessToken, id_token: idToken, expires_in: 3600, token_type: "Bearer", scope, audience: "default", client_id: clientId, decodedToken },
        expiresAt: exp,
      };
      return {
        config: { settings: { domain, clientId, cacheLocation: "localstorage", authorizationParams: { redirect_uri: `${origin}/bench/callback` } } },
        storageState: local({
          [`@@auth0spajs@@::${clientId}::default::${scope}`]: JSON.stringify(entry),
          [`@@auth0spajs@@::${clientId}::@@user@@`]: JSON.stringify({ id_token: idToken, decodedToken }),
        }),
        expect,
      };
    }
    case "@azure/msal-browser": {
      // Written by MSAL's own loadExternalTokens (pages/seed-msal.html): its
      // localStorage entries are AES-GCM encrypted under a key in the
      // `msal.cache.encryption` cookie (src/cache/LocalStorage.ts).
      const tenant = "11111111-2222-4333-8444-555555555555";
      const clientId = "6f1c2b1e-0000-4000-8000-000000000001";
      const oid = "00000000-0000-4000-8000-00000000b001";
      const authority = `https://login.microsoftonline.com/${tenant}`;
      const scopes = ["api://bench/read"];
      const host = "login.microsoftonline.com";
      const auth = {
        clientId, authority, redirectUri: `${origin}/bench/callback`,
        knownAuthorities: [host],
        // Given, so that MSAL resolves the authority without a network call (as its docs
        // recommend for start-up time): instance discovery and OpenID metadata.
        cloudDiscoveryMetadata: JSON.stringify({
          tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
          "api-version": "1.1",
          metadata: [{ preferred_network: host, preferred_cache: "login.windows.net", aliases: [host, "login.windows.net", "login.microsoft.com", "sts.windows.net"] }],
        }),
        authorityMetadata: JSON.stringify({
          token_endpoint: `${authority}/oauth2/v2.0/token`,
          authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
          end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
          jwks_uri: `https://${host}/${tenant}/discovery/v2.0/keys`,
          issuer: `https://${host}/${tenant}/v2.0`,
        }),
      };
      const claims = {
        aud: clientId, iss: `https://${host}/${tenant}/v2.0`, iat: now - 60, nbf: now - 60, exp,
        name: "Bench User", oid, preferred_username: "bench@example.com", sub: "bench-sub", tid: tenant, ver: "2.0",
      };
      return {
        config: { settings: { auth, cache: { cacheLocation: "localStorage" } }, scopes },
        seed: {
          request: { scopes, authority },
          response: {
            token_type: "Bearer", scope: scopes.join(" "), expires_in: 3600, ext_expires_in: 3600,
            id_token: jwt(claims), access_token: accessToken,
            client_info: b64url({ uid: oid, utid: tenant }),
          },
          options: {},
        },
        storageState: null,
        expect,
      };
    }
    default:
      throw new Error(`no stored session for ${name}`);
  }
}

/** capture-session's own stored session: what the Registration UI leaves in localStorage. */
export function captureSessionStored(origin, token, nowMs = Date.now()) {
  const expires = new Date(nowMs + 3600e3).toUTCString();
  return {
    storageState: {
      cookies: [],
      origins: [{ origin, localStorage: [{ name: "janrainCaptureToken", value: token }, { name: "janrainCaptureToken_Expires", value: expires }] }],
    },
    // The helper reports the expiry it read (Date.parse of the HTTP date: whole seconds).
    expect: { expiresAt: Date.parse(expires) },
  };
}
