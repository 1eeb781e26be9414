//! Code more than one gomote binary needs: client path validation (`relpath`),
//! Go `os.FileMode` bits and strings (`filemode`), Go-compatible quoting and
//! process-state text (`gofmt`), and the symlink-safe file-system helpers and
//! tar extraction the buildlet uses (`safefs`, `untar`), the GomoteService
//! gRPC types (`proto`), and an async HTTP client for buildlets
//! (`buildlet_client`).
#![warn(missing_docs)]

pub mod api;
pub mod buildlet_client;
pub mod digest;
pub mod filemode;
pub mod goenv;
pub mod gofmt;
pub mod net;
pub mod paths;
pub mod platform;
pub mod process;
pub mod relpath;
pub mod safefs;
pub mod tarpack;
pub mod timefmt;
pub mod tls;
pub mod untar;

/// The GomoteService gRPC API, generated from `proto/gomote.proto`.
///
/// The proto package is `protos`, so method paths are
/// `/protos.GomoteService/<Method>` as the Go clients expect. Server code is in
/// [`proto::gomote_service_server`], client code in
/// [`proto::gomote_service_client`].
pub mod proto {
    /// The generated code, module-named after the proto package.
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
    pub mod protos {
        tonic::include_proto!("protos");
    }
    pub use protos::*;
}
