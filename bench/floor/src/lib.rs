//! The size floor of a wasm-bindgen module: one exported function that does nothing.

use wasm_bindgen::prelude::wasm_bindgen;

/// Does nothing; exists so that wasm-bindgen has something to export.
#[wasm_bindgen]
pub fn noop() {}
