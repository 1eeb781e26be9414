//! The coordinator's TLS: certificate files given by the operator, or a
//! self-signed certificate kept in the state directory, and the rule that
//! plaintext is only for loopback.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio_rustls::TlsAcceptor;

/// How the coordinator secures its port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS off loopback (a self-signed certificate unless files are given),
    /// plaintext on loopback.
    #[default]
    Auto,
    /// TLS with the operator's certificate chain and key (PEM).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// The self-signed certificate even on loopback (tests).
    SelfSigned,
    /// Plaintext, which is refused off loopback (the embedded coordinator).
    Plaintext,
    /// Plaintext on any address: the operator asked for it.
    InsecurePlaintext,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Plaintext on a network address without the operator's consent.
    #[error(
        "refusing to serve plaintext on {0}, which is not a loopback address: \
         drop --plaintext to serve TLS (a self-signed certificate unless \
         --tls-cert and --tls-key are given), or pass --insecure-plaintext if a \
         TLS-terminating proxy is in front"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// Reading or writing certificate files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A PEM file without what it should hold.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// Generating the self-signed certificate.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What to serve: a TLS acceptor and its certificate's fingerprint, or
/// plaintext.
pub struct Served {
    /// The acceptor (none: plaintext).
    pub acceptor: Option<TlsAcceptor>,
    /// `SHA256:...` of the leaf certificate.
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("tls", &self.acceptor.is_some())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Whether the coordinator serves TLS on `addr` in `mode`; plaintext off
/// loopback without `InsecurePlaintext` is an error.
pub fn wants_tls(mode: &TlsMode, addr: SocketAddr) -> Result<bool, TlsError> {
    match mode {
        TlsMode::Files { .. } | TlsMode::SelfSigned => Ok(true),
        TlsMode::InsecurePlaintext => Ok(false),
        TlsMode::Plaintext => check_plaintext(addr, false).map(|()| false),
        TlsMode::Auto => Ok(!addr.ip().is_loopback()),
    }
}

/// Refuses plaintext off loopback unless the operator insisted.
pub fn check_plaintext(addr: SocketAddr, insecure: bool) -> Result<(), TlsError> {
    if addr.ip().is_loopback() || insecure {
        Ok(())
    } else {
        Err(TlsError::PlaintextOffLoopback(addr))
    }
}

/// Sets up TLS for `addr` in `mode`, making the self-signed certificate
/// under `state/tls` on first use.
pub fn setup(mode: &TlsMode, addr: SocketAddr, state: &Path) -> Result<Served, TlsError> {
    if !wants_tls(mode, addr)? {
        return Ok(Served {
            acceptor: None,
            fingerprint: None,
        });
    }
    let (cert, key) = match mode {
        TlsMode::Files { cert, key } => (cert.clone(), key.clone()),
        _ => self_signed(addr, &state.join("tls"))?,
    };
    let certs = load_certs(&cert)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
        path: key.display().to_string(),
        detail: e.to_string(),
    })?;
    let fingerprint = certs
        .first()
        .map(|c| gomote_shared::tls::fingerprint(c.as_ref()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // gRPC needs h2; uploads and browsers may use either.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Served {
        acceptor: Some(TlsAcceptor::from(Arc::new(cfg))),
        fingerprint,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |detail: String| TlsError::Pem {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate".into()));
    }
    Ok(certs)
}

/// The self-signed certificate in `dir` (`cert.pem`, `key.pem`), made on
/// first use with the listen address, `localhost` and the host name as
/// names, and kept so pinned fingerprints stay valid across restarts.
fn self_signed(addr: SocketAddr, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut names = vec!["localhost".to_string()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        && !h.trim().is_empty()
    {
        names.push(h.trim().to_string());
    }
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    } else {
        names.push("127.0.0.1".into());
    }
    let ck = rcgen::generate_simple_self_signed(names)?;
    write_private(&key, ck.signing_key.serialize_pem().as_bytes()).map_err(io(&key))?;
    std::fs::write(&cert, ck.cert.pem()).map_err(io(&cert))?;
    tracing::info!(path = %cert.display(), "made a self-signed certificate");
    Ok((cert, key))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback() {
        let lo: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:1".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:1".parse().expect("addr");
        assert!(check_plaintext(lo, false).is_ok());
        assert!(check_plaintext(lo6, false).is_ok());
        let e = check_plaintext(any, false).expect_err("refused");
        assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
        assert!(check_plaintext(any, true).is_ok());
        assert!(!wants_tls(&TlsMode::Auto, lo).expect("ok"));
        assert!(wants_tls(&TlsMode::Auto, any).expect("ok"));
        assert!(wants_tls(&TlsMode::SelfSigned, lo).expect("ok"));
        assert!(!wants_tls(&TlsMode::InsecurePlaintext, any).expect("ok"));
        assert!(!wants_tls(&TlsMode::Plaintext, lo).expect("ok"));
        assert!(wants_tls(&TlsMode::Plaintext, any).is_err());
    }

    #[test]
    fn operator_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let ck = rcgen::generate_simple_self_signed(vec!["coord.example".into()]).expect("cert");
        let (cert, key) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).expect("write");
        std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write");
        let any: SocketAddr = "0.0.0.0:1".parse().expect("addr");
        let s = setup(&TlsMode::Files { cert, key }, any, d.path()).expect("setup");
        assert_eq!(
            s.fingerprint,
            Some(gomote_shared::tls::fingerprint(ck.cert.der()))
        );
        // No self-signed certificate is made beside the operator's.
        assert!(!d.path().join("tls").exists());
        let bad = TlsMode::Files {
            cert: d.path().join("k.pem"),
            key: d.path().join("k.pem"),
        };
        assert!(setup(&bad, any, d.path()).is_err());
    }

    #[test]
    fn self_signed_is_kept() {
        let d = tempfile::tempdir().expect("tempdir");
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let a = setup(&TlsMode::SelfSigned, lo, d.path()).expect("setup");
        let b = setup(&TlsMode::SelfSigned, lo, d.path()).expect("setup");
        assert!(
            a.fingerprint
                .as_deref()
                .is_some_and(|f| f.starts_with("SHA256:"))
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("tls/key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
