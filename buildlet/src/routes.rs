//! The buildlet's HTTP surface: the route table, the password check, and the
//! small endpoints (`/`, `/healthz`, `/debug/x`, `/status`, `/workdir`,
//! `/halt`). The larger ones live in `exec`, `files`, `listing`, `tarball`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use http::{HeaderValue, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::app::{App, AppState};
use crate::form::Form;
use crate::reply::{http_error, text, wrong_method};
use crate::{exec, files, listing, tarball};

/// The protocol version `/status` reports (Go's `buildletVersion`).
pub const BUILDLET_VERSION: u32 = 29;

/// Builds the route table: `/`, `/healthz` and `/debug/x` are open, the rest
/// need the password.
pub fn router(app: Arc<App>) -> Router {
    let open = Router::new()
        .route("/", any(root))
        .route("/healthz", any(healthz))
        .route("/debug/x", any(debug_x));
    let protected = Router::new()
        .route("/status", any(status))
        .route("/workdir", any(workdir))
        .route("/writetgz", any(files::writetgz))
        .route("/write", any(files::write))
        .route("/removeall", any(files::removeall))
        .route("/tgz", any(tarball::tgz))
        .route("/ls", any(listing::ls))
        .route("/exec", any(exec::exec))
        .route("/halt", any(halt))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            require_password,
        ));
    open.merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), note_request))
        .with_state(app)
}

/// Notes every request, authenticated or not, for `--halt-after-idle`: any
/// client still talking to the buildlet keeps it alive.
async fn note_request(State(app): AppState, req: Request, next: Next) -> Response {
    app.activity.touch();
    next.run(req).await
}

async fn require_password(State(app): AppState, req: Request, next: Next) -> Response {
    if let Some(want) = &app.password {
        let got = basic_password(req.headers()).unwrap_or_default();
        if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
            return http_error(StatusCode::FORBIDDEN, "invalid password");
        }
    }
    next.run(req).await
}

/// The password half of an HTTP Basic `Authorization` header.
fn basic_password(h: &http::HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.split_once(':').map(|(_, p)| p.to_string())
}

async fn root() -> Response {
    text(format!(
        "buildlet running on {}-{}\n",
        gomote_shared::platform::goos(),
        gomote_shared::platform::goarch()
    ))
}

async fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, "404 page not found")
}

async fn healthz() -> Response {
    text("ok\n")
}

async fn debug_x(req: Request) -> Response {
    let f = Form::from_query(req.uri());
    let n: usize = f.value("n").parse::<i64>().unwrap_or(0).clamp(0, 1 << 20) as usize;
    text(vec![b'X'; n])
}

async fn status() -> Response {
    let mut r = Response::new(Body::from(format!("{{\"Version\":{BUILDLET_VERSION}}}")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

async fn workdir(State(app): AppState) -> Response {
    text(app.wd.path().display().to_string())
}

async fn halt(State(app): AppState, req: Request) -> Response {
    if req.method() != Method::POST {
        return wrong_method("POST");
    }
    let _ = app.halt.try_send(());
    Response::new(Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_auth_password() {
        let mut h = http::HeaderMap::new();
        // "gomote:s3cret:with:colons"
        let v = base64::engine::general_purpose::STANDARD.encode("gomote:s3cret:with:colons");
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret:with:colons"));
        h.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_password(&h), None);
    }
}
