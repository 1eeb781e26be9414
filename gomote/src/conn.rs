//! The daemon connection: HTTP/1.1 over an already dialled local socket
//! ([`handshake`]) and the requests the CLI sends on it ([`get`], [`post`]),
//! each carrying the version headers of docs/protocol.md §1.2. Dialling and
//! starting the daemon are [`crate::autostart`]'s.

use http::{Request, header};
use hyper_util::rt::TokioIo;

use gomote_shared::api;

/// An HTTP/1.1 connection to the daemon.
pub type Sender<B> = hyper::client::conn::http1::SendRequest<B>;

/// The connection or a request on it could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// HTTP/1.1 did not start on the socket.
    #[error("HTTP handshake with gomoted")]
    Handshake(#[source] hyper::Error),
    /// The request was malformed (a path that is not a URI).
    #[error("building the request")]
    Request(#[source] http::Error),
}

/// Starts HTTP/1.1 on a connected socket.
pub async fn handshake<B>(
    stream: interprocess::local_socket::tokio::Stream,
) -> Result<Sender<B>, ConnError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ConnError::Handshake)?;
    tokio::spawn(async move {
        // Its errors show up on the request or body, where they are reported.
        let _ = conn.await;
    });
    Ok(sender)
}

/// A `GET` with the headers every request to the daemon carries.
pub fn get<B>(path: &str, body: B) -> Result<Request<B>, ConnError> {
    Request::get(path)
        .header(header::HOST, api::HOST)
        .header(api::HEADER_CLI_VERSION, api::VERSION)
        .header(api::HEADER_CLI_PROTO, api::PROTO.to_string())
        .body(body)
        .map_err(ConnError::Request)
}

/// A `POST` of JSON with the headers every request to the daemon carries.
pub fn post<B>(path: &str, body: B) -> Result<Request<B>, ConnError> {
    Request::post(path)
        .header(header::HOST, api::HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(api::HEADER_CLI_VERSION, api::VERSION)
        .header(api::HEADER_CLI_PROTO, api::PROTO.to_string())
        .body(body)
        .map_err(ConnError::Request)
}
