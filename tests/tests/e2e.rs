//! End-to-end tests: each starts the real binaries on its own temporary
//! directories and loopback ports, so they run in parallel.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod accounts;
mod buildlet_client;
mod buildlet_http;
mod coordinator;
mod coordinator_semantics;
mod daemon_lifecycle;
mod day_one;
mod gomote_cli;
mod hermetic;
mod module_cycles;
mod push;
mod seed;
mod tls;
