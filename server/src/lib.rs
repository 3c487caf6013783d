//! The reference backend of capture-session, and a simulator of Akamai
//! Identity Cloud (Janrain Capture).
//!
//! It answers the backend contract (`POST /capture-session/start`,
//! `/refresh`, `/end`; see `docs/backend-contract.md`) for the browser helper: it
//! verifies a login, keeps the user's grant server-side, and mints fresh
//! access tokens with `/access/getAccessToken` (token mode) or rotating
//! `refresh_token` grants (code mode), once per session however many tabs ask.
//!
//! ```no_run
//! use capture_session_server::{cli::Cli, settings::Settings, Server};
//! use clap::Parser;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cli = Cli::parse_from(["capture-session-server", "--simulate", "--listen", "127.0.0.1:0"]);
//! let server = Server::bind(Settings::from_args(cli.server)?).await?;
//! println!("demo at http://{}/", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod crypto;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod request;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod sim;
pub mod store;

pub use app::{RunningServer, Server, StartupError};
