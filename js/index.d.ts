// Types of the npm package `capture-session` (documented in docs/api.md).
// Hand-written: wasm-bindgen's generated types say `any` for the config, the
// events and the promises; these say what they hold.

/** `session.state`. */
export type SessionState = "none" | "active" | "refreshing" | "ended";

/** Integration mode of the Registration UI (`janrain.settings.capture.responseType`). */
export type Mode = "token" | "code";

/** Retry policy for failed refreshes: exponential backoff with full jitter. */
export interface RetryOptions {
  /** First backoff window in ms. Default 1000. */
  baseMs?: number;
  /** Longest backoff window in ms. Default 60000. */
  maxMs?: number;
  /** Attempts (including the first) before giving up. Default 8. */
  maxAttempts?: number;
}

/** The configuration of `CaptureSession.attach`. */
export interface CaptureSessionConfig {
  /** The backend's refresh endpoint (required). Relative URLs resolve against the page. */
  refreshUrl: string;
  /** Told about each login. Required in code mode. */
  startUrl?: string;
  /** Told about each logout (sent with `keepalive`, so it survives page unload). */
  endUrl?: string;
  /** Default: `janrain.settings.capture.responseType`, else `"token"`. */
  mode?: Mode;
  /** Code mode: keep a client-side session (default true). */
  clientSession?: boolean;
  /** Refresh this long before expiry (capped at half the lifetime). Default 300. */
  refreshAheadSeconds?: number;
  /** Assumed token lifetime when neither the backend nor the widget says. Default 3600. */
  tokenLifetimeSeconds?: number;
  /** Abort a backend request after this long. Default 10000. */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Extra request headers, e.g. a CSRF token. */
  headers?: Record<string, string>;
  /** `fetch` credentials mode. Default `"same-origin"`. */
  credentials?: "omit" | "same-origin" | "include";
  /** Backend origins other than the page's own that may be called. */
  allowedOrigins?: string[];
  /** One refresh for all tabs; logout reaches every tab. Default true. */
  crossTab?: boolean;
  /** After a reactive refresh, `janrain.capture.ui.renderScreen(screen)`. Default true. */
  rerenderOnRefresh?: boolean;
  /** The widget's localStorage key. Default `"janrainCaptureToken"`. */
  storageKey?: string;
}

/** Detail of `active`: a session started or was adopted. */
export interface ActiveDetail {
  /** Epoch milliseconds. */
  expiresAt: number;
  source: "login" | "storage" | "tab" | "start";
}

/** Detail of `refreshed`. */
export interface RefreshedDetail {
  /** Epoch milliseconds. */
  expiresAt: number;
  trigger:
    | "proactive"
    | "expired-token"
    | "invalid-token"
    | "access-denied"
    | "save-failed"
    | "manual"
    | "startup";
}

/** Detail of `refresh-failed` (the session stays while its token is valid). */
export interface RefreshFailedDetail {
  /** 1-based. */
  attempt: number;
  /** When the next attempt is planned, or `null` when giving up. */
  retryInMs: number | null;
  reason: "timeout" | "network" | "server-error" | "throttled" | "malformed-reply" | "rejected";
}

/** Detail of `ended`. */
export interface EndedDetail {
  reason: "logout" | "server" | "expired" | "tab";
}

/** Detail of `warning` (bad stored data, bad backend reply, unknown config key, ...). */
export interface WarningDetail {
  /** Stable, e.g. `"stored_data_invalid"`, `"storage_unavailable"`, `"config_unknown_key"`. */
  code: string;
  message: string;
}

/** Event types and their details. Also dispatched on `window` as `CustomEvent`s named `capture-session:<type>`. */
export interface CaptureSessionEventMap {
  active: ActiveDetail;
  refreshed: RefreshedDetail;
  "refresh-failed": RefreshFailedDetail;
  ended: EndedDetail;
  warning: WarningDetail;
}

/** Stable codes of the `Error`s the API throws or rejects with. */
export type CaptureSessionErrorCode =
  | "config_invalid"
  | "origin_not_allowed"
  | "invalid_argument"
  | "no_session"
  | "backend_unavailable"
  | "session_ended"
  | "detached";

/** What the API throws or rejects with. */
export interface CaptureSessionError extends Error {
  code: CaptureSessionErrorCode;
}

/** One attached helper. */
export class CaptureSession {
  private constructor();
  /**
   * Validates `config`, hooks into the Registration UI, the page and other tabs.
   * @throws {CaptureSessionError} `config_invalid` (naming the key) or `origin_not_allowed`.
   */
  static attach(config: CaptureSessionConfig): CaptureSession;
  /** Resolves once the stored session was checked (and refreshed if due). */
  readonly ready: Promise<void>;
  readonly state: SessionState;
  /** Epoch milliseconds, or `null`. */
  readonly expiresAt: number | null;
  /** Forces a refresh; concurrent calls (in every tab) share one request. */
  refresh(): Promise<void>;
  /** Logs out here and in every tab. */
  end(): Promise<void>;
  /** Subscribes; returns a function that unsubscribes. */
  on<K extends keyof CaptureSessionEventMap>(
    type: K,
    listener: (detail: CaptureSessionEventMap[K]) => void,
  ): () => void;
  /** Removes every listener, timer and channel of this helper. */
  detach(): void;
  /** Frees the wasm object (after `detach()`). */
  free(): void;
}

/** What `init` accepts: nothing (the wasm next to the glue), a URL, a response or bytes. */
export type InitInput =
  | RequestInfo
  | URL
  | Response
  | BufferSource
  | WebAssembly.Module;

/** Loads the wasm (the `web` build). A no-op in the `bundler` build. */
export default function init(
  moduleOrPath?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>,
): Promise<unknown>;

/** Loads the wasm synchronously from bytes or a compiled module. */
export function initSync(module: { module: BufferSource | WebAssembly.Module } | BufferSource | WebAssembly.Module): unknown;

declare global {
  interface WindowEventMap {
    "capture-session:active": CustomEvent<ActiveDetail>;
    "capture-session:refreshed": CustomEvent<RefreshedDetail>;
    "capture-session:refresh-failed": CustomEvent<RefreshFailedDetail>;
    "capture-session:ended": CustomEvent<EndedDetail>;
    "capture-session:warning": CustomEvent<WarningDetail>;
  }
}
