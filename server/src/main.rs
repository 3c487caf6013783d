//! capture-session-server (being built).
fn main() {}
