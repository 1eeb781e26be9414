//! Listening: binds the address (reporting the bound `host:port` when asked
//! for port 0), optionally terminates TLS with rustls, and runs each
//! accepted connection through the HTTP/1.1 driver.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::http1::{self, ConnConfig};

/// Loads a PEM certificate chain and private key into a TLS acceptor that
/// speaks HTTP/1.1 only (Go buildlets never negotiate ALPN).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading private key from {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Binds `addr`; returns the listener and the address actually bound.
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = l.local_addr()?;
    Ok((l, local))
}

fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(180));
    let _ = socket2::SockRef::from(s).set_tcp_keepalive(&ka);
}

/// Accepts connections forever, serving each on its own task.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>) {
    let cfg = ConnConfig::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tune(&stream);
        let app = app.clone();
        let tls = tls.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let res = match tls {
                Some(acc) => {
                    match tokio::time::timeout(Duration::from_secs(30), acc.accept(stream)).await {
                        Ok(Ok(s)) => http1::serve(s, app, cfg).await,
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        )),
                    }
                }
                None => http1::serve(stream, app, cfg).await,
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
