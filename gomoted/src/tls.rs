//! TLS to remote coordinators: system roots, or the certificate pinned by
//! `gomote login -fingerprint`, for both the gRPC connection and the HTTP
//! client (uploads, downloads).

use std::sync::Arc;

use parking_lot::Mutex;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// What the verifier decided about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// System roots vouch for it, or it is the pinned one.
    Trusted,
    /// Nothing vouches for it and nothing is pinned.
    Untrusted,
    /// Something else is pinned.
    Changed {
        /// The pinned fingerprint.
        pinned: String,
    },
}

/// The rule: roots first, then the pin.
pub fn decide(roots_ok: bool, pinned: Option<&str>, seen: &str) -> Decision {
    match pinned {
        _ if roots_ok => Decision::Trusted,
        Some(p) if gomote_shared::tls::same_fingerprint(p, seen) => Decision::Trusted,
        Some(p) => Decision::Changed {
            pinned: p.to_string(),
        },
        None => Decision::Untrusted,
    }
}

/// A verifier that remembers the last certificate it refused, so the
/// daemon can tell the user its fingerprint.
#[derive(Debug)]
pub struct PinVerifier {
    roots: Option<Arc<WebPkiServerVerifier>>,
    url: String,
    pinned: Option<String>,
    provider: Arc<CryptoProvider>,
    /// The fingerprint of the last refused certificate and why.
    pub refused: Mutex<Option<(String, Decision)>>,
}

impl PinVerifier {
    /// A verifier with the system roots and an optional pin.
    pub fn new(url: &str, pinned: Option<String>) -> Arc<PinVerifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = rustls::RootCertStore::empty();
        // A machine without a CA bundle still works with pins.
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(c);
        }
        let roots = if store.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .ok()
        };
        Arc::new(PinVerifier {
            roots,
            url: url.to_string(),
            pinned,
            provider,
            refused: Mutex::new(None),
        })
    }

    /// A client configuration using this verifier, offering `alpn`.
    pub fn client_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let roots_ok = self.roots.as_ref().is_some_and(|r| {
            r.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .is_ok()
        });
        let seen = gomote_shared::tls::fingerprint(end_entity.as_ref());
        match decide(roots_ok, self.pinned.as_deref(), &seen) {
            Decision::Trusted => Ok(ServerCertVerified::assertion()),
            d => {
                // The text reaches users when a kept connection redials
                // after the coordinator's certificate changed.
                let msg = match &d {
                    Decision::Changed { pinned } => format!(
                        "the certificate of {url} changed: pinned {pinned}, now {seen}; if the \
                         coordinator's certificate was replaced, re-pin it with \
                         `gomote -server {url} login -fingerprint {seen}`",
                        url = self.url
                    ),
                    _ => format!("the certificate of {} is not trusted: {seen}", self.url),
                };
                *self.refused.lock() = Some((seen, d));
                Err(rustls::Error::General(msg))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A tonic connector: TCP, then TLS with ALPN h2 to the URI's host.
#[derive(Clone)]
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl Connector {
    /// A connector verifying with `verifier`.
    pub fn new(verifier: &Arc<PinVerifier>) -> Result<Connector, rustls::Error> {
        let cfg = verifier.client_config(&[b"h2"])?;
        Ok(Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let bad =
                |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
            let host = uri.host().ok_or_else(|| bad("no host in the URL"))?;
            // IPv6 literals come bracketed in URIs.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(|_| bad("bad host name"))?;
            let s = tls.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision() {
        assert_eq!(decide(true, None, "SHA256:a"), Decision::Trusted);
        assert_eq!(
            decide(true, Some("SHA256:b"), "SHA256:a"),
            Decision::Trusted
        );
        assert_eq!(
            decide(false, Some("SHA256:a"), "SHA256:a"),
            Decision::Trusted
        );
        assert_eq!(decide(false, None, "SHA256:a"), Decision::Untrusted);
        assert_eq!(
            decide(false, Some("SHA256:b"), "SHA256:a"),
            Decision::Changed {
                pinned: "SHA256:b".into()
            }
        );
    }
}
