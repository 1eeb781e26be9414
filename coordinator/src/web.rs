//! The coordinator's HTTP side, on the same port as gRPC: multipart
//! uploads under a signed policy (`POST /upload/`, answered 204), signed
//! downloads (`GET /objects/<name>`), `/healthz`, and a status page that
//! shows counts only (Go's lists every user's instance names to anyone).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;

use crate::Coordinator;
use crate::transfer::{StoreError, TransferError};

/// The HTTP routes.
pub fn router(c: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/upload/", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/objects/{name}", get(download))
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(status_page))
        .with_state(c.clone())
        .merge(crate::enroll::router(c))
}

fn err(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("{msg}\n")).into_response()
}

fn transfer_err(e: TransferError) -> Response {
    let status = match e {
        TransferError::BadSignature | TransferError::Expired(_) | TransferError::NotOwner(_) => {
            StatusCode::FORBIDDEN
        }
        TransferError::NoObject(_) => StatusCode::NOT_FOUND,
        TransferError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    err(status, e)
}

async fn upload(State(c): State<Arc<Coordinator>>, mut form: Multipart) -> Response {
    let mut fields: HashMap<String, String> = HashMap::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return err(StatusCode::BAD_REQUEST, "missing file part"),
            Err(e) => return err(StatusCode::BAD_REQUEST, e),
        };
        let name = field.name().unwrap_or("").to_string();
        if name != "file" {
            match field.text().await {
                Ok(v) => {
                    fields.insert(name, v);
                }
                Err(e) => return err(StatusCode::BAD_REQUEST, e),
            }
            continue;
        }
        // The policy fields come first (as a GCS POST requires); check them
        // before accepting a byte of the file.
        let (key, owner) = match c.transfers().verify_upload(&fields) {
            Ok(v) => v,
            Err(e) => return transfer_err(e),
        };
        return match c.transfers().store_stream(field, &key, &owner).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(StoreError::Commit(e)) => transfer_err(e),
            Err(e) => err(StatusCode::BAD_REQUEST, format!("reading upload: {e}")),
        };
    }
}

async fn download(
    State(c): State<Arc<Coordinator>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (e, s) = (
        q.get("expires").map_or("", String::as_str),
        q.get("sig").map_or("", String::as_str),
    );
    let path = match c.transfers().verify_get(&name, e, s) {
        Ok(p) => p,
        Err(e) => return transfer_err(e),
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let len = f.metadata().await.map(|m| m.len()).ok();
            let mut r = Response::new(Body::from_stream(
                tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024),
            ));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            if let Some(l) = len {
                r.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(l));
            }
            r
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn status_page(State(c): State<Arc<Coordinator>>) -> Html<String> {
    let (n, hosts) = c.status();
    let mut rows = String::new();
    for h in hosts {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td></tr>",
            h.host_type.replace('&', "&amp;").replace('<', "&lt;"),
            h.pool_kind.unwrap_or("none"),
            h.in_use,
            h.capacity,
            h.waiting
        ));
    }
    Html(format!(
        "<!doctype html><title>gomote coordinator</title><h1>gomote coordinator</h1>\
         <p>{n} instance(s)</p><table><tr><th>host type</th><th>pool</th><th>in use</th><th>waiting</th></tr>{rows}</table>\
         <p>version {}</p>",
        env!("CARGO_PKG_VERSION")
    ))
}
