//! End-to-end tests: each starts the real binaries on its own temporary
//! directories and loopback ports, so they run in parallel.

mod buildlet_http;
