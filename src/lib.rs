//! capture-session: keeps an Akamai Identity Cloud Registration UI session alive in the browser.
#![deny(missing_docs)]

use wasm_bindgen::prelude::*;

/// The helper's version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}
