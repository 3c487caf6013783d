// Compile-only check of js/index.d.ts as a TypeScript user would meet it
// (after `npm run build`, which copies it to pkg/); the `types` step of
// `npm test` runs it (scripts/types-check):
//   tsc --noEmit --strict --target es2022 --module es2022 \
//     --moduleResolution bundler --lib es2022,dom js/types-check.ts
// Every line must type-check; each `@ts-expect-error` line must be an error
// (tsc fails when one stops being one).
import init, { CaptureSession, type CaptureSessionError } from "../pkg/index";

async function main(): Promise<void> {
  await init();
  const s = CaptureSession.attach({
    refreshUrl: "/capture-session/refresh",
    retry: { baseMs: 10 },
    headers: { "X-CSRF-Token": "t" },
    credentials: "include",
  });
  await s.ready;
  const state: "none" | "active" | "refreshing" | "ended" = s.state;
  const expiresAt: number | null = s.expiresAt;
  const off: () => void = s.on("refreshed", (d) => {
    const trigger: string = d.trigger;
    const at: number = d.expiresAt;
    void trigger;
    void at;
  });
  off();
  s.on("refresh-failed", (d) => {
    const retryInMs: number | null = d.retryInMs;
    void retryInMs;
  });
  window.addEventListener("capture-session:ended", (e) => {
    const reason: "logout" | "server" | "expired" | "tab" = e.detail.reason;
    void reason;
  });
  try {
    await s.refresh();
  } catch (error) {
    const code: string = (error as CaptureSessionError).code;
    void code;
  }
  await s.end();
  s.detach();
  void state;
  void expiresAt;
  // @ts-expect-error: not a mode
  CaptureSession.attach({ refreshUrl: "/r", mode: "implicit" });
  // @ts-expect-error: not an event type
  s.on("bogus", () => {});
  // @ts-expect-error: retry.baseMs is a number
  CaptureSession.attach({ refreshUrl: "/r", retry: { baseMs: "10" } });
  // @ts-expect-error: refreshUrl is required
  CaptureSession.attach({ startUrl: "/s" });
  s.on("ended", (d) => {
    // @ts-expect-error: an ended event has no expiresAt
    void d.expiresAt;
  });
  // @ts-expect-error: state is read-only
  s.state = "active";
}
void main();
