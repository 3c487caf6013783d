//! The session engine: a deterministic state machine with no browser, clock or
//! network inside (inputs in, actions out, `now` passed in).

pub mod io;

pub use io::*;
