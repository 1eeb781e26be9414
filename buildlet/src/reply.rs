//! The replies handlers build: plain-text errors shaped like Go's
//! `http.Error`, 200 text bodies, and the status a file-system refusal maps to.

use axum::body::Body;
use axum::response::Response;
use gomote_shared::safefs::SafeFsError;
use http::{HeaderValue, StatusCode, header};

/// A plain-text error as Go's `http.Error` writes it.
pub fn http_error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    let mut r = Response::new(Body::from(format!("{msg}\n")));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A 400 with `e` as its text.
pub fn bad(e: impl std::fmt::Display) -> Response {
    http_error(StatusCode::BAD_REQUEST, e)
}

/// A 500 with `e` as its text.
pub fn internal(e: impl std::fmt::Display) -> Response {
    http_error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// A 400 when the client asked for something unsafe, a 500 when the
/// machine failed.
pub fn safefs_error(e: SafeFsError) -> Response {
    if e.is_bad_request() {
        bad(e)
    } else {
        internal(e)
    }
}

/// A 200 plain-text reply.
pub fn text(body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A 400 for the wrong HTTP method (the buildlet never answers 405).
pub fn wrong_method(what: &str) -> Response {
    http_error(StatusCode::BAD_REQUEST, format!("requires {what} method"))
}
