// `capture-session/bundler`: the wasm-bindgen `bundler` build, which the
// bundler instantiates on import (ES module integration of wasm). `init()` and
// `initSync()` do nothing here; they exist so that code written for the
// default (`web`) entry runs unchanged.
export * from "./capture_session.js";
export default function init() {
  return Promise.resolve();
}
export function initSync() {}
