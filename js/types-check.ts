// Compile-only check of js/index.d.ts as a TypeScript user would meet it
// (after `npm run build`, which copies it to pkg/):
//   npx tsc --noEmit --strict --target es2022 --module es2022 \
//     --moduleResolution bundler --lib es2022,dom js/types-check.ts
// Every line must type-check; the commented ones must not.
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
  // CaptureSession.attach({ refreshUrl: "/r", mode: "implicit" }); // error: not a Mode
  // s.on("bogus", () => {});                                       // error: not an event type
}
void main();
