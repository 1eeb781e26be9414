//! Code more than one gomote binary needs: client path validation (`relpath`),
//! Go `os.FileMode` bits and strings (`filemode`), Go-compatible quoting and
//! process-state text (`gofmt`), and the symlink-safe file-system helpers and
//! tar extraction the buildlet uses (`safefs`, `untar`).
#![warn(missing_docs)]

pub mod filemode;
pub mod gofmt;
pub mod platform;
pub mod relpath;
pub mod safefs;
pub mod tarpack;
pub mod untar;
