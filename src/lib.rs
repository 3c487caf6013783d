//! capture-session keeps an Akamai Identity Cloud (Janrain Capture)
//! Registration UI session alive in the browser: it refreshes the access token
//! through the site's backend before it expires, when the widget reports an
//! expired or invalid token, and on demand; it shares one refresh and one
//! logout between all tabs; and it tells the backend about logins and logouts.
//!
//! This crate is the browser layer. The decisions (when to refresh, adopt,
//! retry or end) are made by the pure engine in `capture-session-core`; the
//! modules here only execute its actions with the browser's APIs and feed the
//! results back. From JavaScript:
//!
//! ```js
//! import init, { CaptureSession } from "capture-session";
//! await init();
//! const session = CaptureSession.attach({ refreshUrl: "/capture-session/refresh" });
//! await session.ready;
//! session.on("refreshed", ({ expiresAt, trigger }) => console.log(trigger, new Date(expiresAt)));
//! ```
//!
//! Where things live:
//! - `src/api.rs`: the whole JavaScript API (`#[wasm_bindgen]`): config
//!   reading, events and promises;
//! - `src/session.rs`: runs the engine, executes its actions (the one place
//!   that decides nothing but does everything);
//! - `src/widget.rs`: the duck-typed binding to the Registration UI (`janrain.*`);
//! - `src/backend.rs`: where a refresh, start or end request gets sent;
//! - `src/storage.rs`: `localStorage` with an in-memory fallback;
//! - `src/tabs.rs`: Web Locks, BroadcastChannel and `storage` events;
//! - `src/page.rs`: page lifecycle events that make the engine re-check the clock;
//! - `src/js.rs`: the one place where JavaScript values become Rust values;
//! - `js/`: the hand-written TypeScript types, the script-tag loader and the
//!   build helpers used by `scripts/build`.
//!
//! The JavaScript API is documented in `docs/api.md`.
//!
//! The browser layer is compiled for `wasm32` only; natively this crate holds
//! just its error type, so that `cargo test --workspace` stays browser-free.
#![deny(missing_docs)]

mod error;

pub use error::{Error, Result};

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod backend;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod session;
#[cfg(target_arch = "wasm32")]
mod storage;
#[cfg(target_arch = "wasm32")]
mod tabs;
#[cfg(target_arch = "wasm32")]
mod widget;

#[cfg(target_arch = "wasm32")]
pub use api::CaptureSession;

/// A 0.7 KB allocator instead of Rust's 5 KB dlmalloc (about 3 KiB gzip, see
/// `docs/wasm-size.md`). The helper allocates little and briefly (strings
/// crossing to JavaScript, a few small vectors), and the free list coalesces
/// neighbours, so fragmentation stays bounded.
// SAFETY: wasm32-unknown-unknown is built without the atomics feature here, so
// the module is single-threaded: no allocation ever races another.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };
