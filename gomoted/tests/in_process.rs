//! The daemon run in-process through the library's one entry,
//! `gomoted::run`: it serves the local API on the listener it is given,
//! answers status, and returns when asked to shut down, removing its socket.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange over the socket; returns the status line and body.
async fn call(socket: &Path, method: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        gomote_shared::api::HOST
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_status_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/gomoted.sock");
    let dirs = gomoted::Dirs {
        data: dir.path().join("data"),
        config: dir.path().join("config"),
    };
    let listener = gomoted::Listener::bind(&socket).await.unwrap();
    let (never_tx, never) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(gomoted::run(listener, dirs, async move {
        let _ = never.await;
    }));

    let (status, body) = call(&socket, "GET", "/v0/status").await.unwrap();
    assert!(status.contains("200"), "{status}");
    // Chunked or not, the JSON object is in the body.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let st: gomote_shared::api::Status = serde_json::from_str(json).unwrap();
    assert_eq!(st.proto, gomote_shared::api::PROTO);
    assert_eq!(st.socket, socket.display().to_string());

    // A request naming another host is refused (DNS rebinding guard).
    let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
    s.write_all(b"GET /v0/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 403"));

    let (status, _) = call(&socket, "POST", "/v0/shutdown").await.unwrap();
    assert!(status.contains("204"), "{status}");
    let r = tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("run returns after POST /v0/shutdown")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(!socket.exists(), "a socket the daemon bound is removed");
    drop(never_tx);
}

#[tokio::test]
async fn a_second_daemon_on_a_live_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gomoted.sock");
    let _first = gomoted::Listener::bind(&socket).await.unwrap();
    let e = gomoted::Listener::bind(&socket).await.unwrap_err();
    assert!(e.to_string().contains("another daemon answers"), "{e}");
}
