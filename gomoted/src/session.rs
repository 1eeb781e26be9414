//! Coordinator sessions: the embedded coordinator (started on first use,
//! with the local pool, reached over the same gRPC path as a remote one) or
//! a remote coordinator with the token `gomote login` stored. One warm
//! connection each, shared by every command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gomote_shared::proto::gomote_extension_service_client::GomoteExtensionServiceClient;
use gomote_shared::proto::gomote_service_client::GomoteServiceClient;
use tokio::sync::Mutex;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::Config;
use crate::rpc::rpc_text;
use crate::state::{State, StateError};

/// Why a coordinator session could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The embedded coordinator did not start.
    #[error("starting the embedded coordinator: {0}")]
    Embedded(#[from] gomote_coordinator::StartError),
    /// A start-up task died.
    #[error("starting the embedded coordinator: {0}")]
    Task(String),
    /// No token for the embedded coordinator.
    #[error("creating a token for the embedded coordinator: {0}")]
    EmbeddedToken(String),
    /// `-server` names a coordinator we have no token for.
    #[error("not logged in to {0}: run `gomote -server {0} login` with your token on stdin")]
    NotLoggedIn(String),
    /// The URL does not parse.
    #[error("bad coordinator URL {url:?}: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The coordinator did not answer.
    #[error("dialing the server={url} failed with: {detail}")]
    Dial {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The coordinator's certificate is neither vouched for by the system
    /// roots nor pinned.
    #[error(
        "The certificate of {url} is not trusted: {seen}; if that is the fingerprint \
         the coordinator printed, run `gomote -server {url} login -fingerprint {seen}`"
    )]
    Untrusted {
        /// The URL.
        url: String,
        /// The certificate's fingerprint.
        seen: String,
    },
    /// The certificate is not the one pinned.
    #[error(
        "the certificate of {url} changed: pinned {pinned}, now {seen}; if the \
         coordinator's certificate was replaced, re-pin it with \
         `gomote -server {url} login -fingerprint {seen}`"
    )]
    Changed {
        /// The URL.
        url: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The certificate's fingerprint.
        seen: String,
    },
    /// `login -fingerprint` names another certificate than the one seen.
    #[error("the certificate of {url} is {seen}, not {given} as -fingerprint says; refusing it")]
    Mismatch {
        /// The URL.
        url: String,
        /// What the user gave.
        given: String,
        /// The certificate's fingerprint.
        seen: String,
    },
    /// TLS could not be configured.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The token cannot be sent as a header.
    #[error("the stored token is not valid header text")]
    BadToken,
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The coordinator refused the token.
    #[error("{0}")]
    Refused(String),
    /// Storing the token.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A gRPC client with credentials.
pub type Grpc = GomoteServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of our extensions beside GomoteService (a Go coordinator
/// answers them Unimplemented).
pub type ExtGrpc = GomoteExtensionServiceClient<InterceptedService<Channel, Bearer>>;

/// One coordinator connection.
#[derive(Debug)]
pub struct Session {
    /// `embedded` or the coordinator URL.
    pub name: String,
    /// The client; clone it per call.
    pub grpc: Grpc,
    /// Our extension service on the same connection.
    pub ext: ExtGrpc,
    /// Plain HTTP (uploads, downloads).
    pub http: reqwest::Client,
    /// Whether the coordinator is on this machine.
    pub loopback: bool,
}

/// Every coordinator connection the daemon holds, opened on first use.
#[derive(Debug)]
pub struct Sessions {
    state: State,
    config: Config,
    data: PathBuf,
    embedded: Mutex<Option<(Arc<Session>, gomote_coordinator::Running)>>,
    remote: Mutex<HashMap<String, Arc<Session>>>,
}

/// The embedded coordinator's session name.
pub const EMBEDDED: &str = "embedded";

impl Sessions {
    /// Sessions whose tokens live in `state`, with the embedded
    /// coordinator's state under `data`.
    pub fn new(state: State, config: Config, data: PathBuf) -> Sessions {
        Sessions {
            state,
            config,
            data,
            embedded: Mutex::new(None),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The session for `-server` (or the configured default).
    pub async fn get(&self, server: Option<&str>) -> Result<Arc<Session>, SessionError> {
        let server = server
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| self.config.server.clone().filter(|s| !s.is_empty()));
        match server {
            None => self.embedded().await,
            Some(url) => self.remote(&url).await,
        }
    }

    /// The sessions opened so far.
    pub async fn open(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<Arc<Session>> = self.remote.lock().await.values().cloned().collect();
        if let Some((s, _)) = self.embedded.lock().await.as_ref() {
            v.push(s.clone());
        }
        v
    }

    /// The session named `name` as stored (`embedded` or a URL).
    pub async fn by_name(&self, name: &str) -> Result<Arc<Session>, SessionError> {
        if name == EMBEDDED {
            self.embedded().await
        } else {
            self.remote(name).await
        }
    }

    /// Names of the open sessions (for `daemon status`).
    pub async fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.remote.lock().await.keys().cloned().collect();
        if let Some((s, r)) = self.embedded.lock().await.as_ref() {
            v.insert(0, format!("{} (coordinator on {})", s.name, r.addr));
        }
        v
    }

    async fn embedded(&self) -> Result<Arc<Session>, SessionError> {
        let mut guard = self.embedded.lock().await;
        if let Some((s, _)) = guard.as_ref() {
            return Ok(s.clone());
        }
        let state_dir = self.data.join("coordinator");
        let config = match self.config.coordinator.clone() {
            Some(c) => c,
            // The built-in types ask the host's Go where it lives (a
            // bounded wait, but a blocking one).
            None => tokio::task::spawn_blocking(gomote_coordinator::config::Config::builtin)
                .await
                .map_err(|e| SessionError::Task(e.to_string()))?,
        };
        let running = gomote_coordinator::start(gomote_coordinator::Options {
            listen: "127.0.0.1:0".into(),
            state: state_dir.clone(),
            config,
            tls: gomote_coordinator::tls::TlsMode::Plaintext,
        })
        .await?;
        let token = match self.state.token(EMBEDDED) {
            Some(t) => t,
            None => {
                let user = std::env::var("USER")
                    .ok()
                    .filter(|u| !u.is_empty() && !u.contains('@'))
                    .unwrap_or_else(|| "user".into());
                let t = gomote_coordinator::Coordinator::create_token(
                    &state_dir,
                    &format!("{user}@localhost"),
                )
                .map_err(|e| SessionError::EmbeddedToken(e.to_string()))?;
                self.state.set_token(EMBEDDED, &t)?;
                t
            }
        };
        let s =
            Arc::new(connect(EMBEDDED, &format!("http://{}", running.addr), &token, None).await?);
        *guard = Some((s.clone(), running));
        Ok(s)
    }

    async fn remote(&self, url: &str) -> Result<Arc<Session>, SessionError> {
        let mut map = self.remote.lock().await;
        if let Some(s) = map.get(url) {
            return Ok(s.clone());
        }
        let token = self
            .state
            .token(url)
            .ok_or_else(|| SessionError::NotLoggedIn(url.to_string()))?;
        let s = Arc::new(connect(url, url, &token, self.pin(url)).await?);
        map.insert(url.to_string(), s.clone());
        Ok(s)
    }

    /// The pinned certificate fingerprint for a coordinator.
    fn pin(&self, url: &str) -> Option<String> {
        let v = self.state.tree("pins").ok()?.get(url).ok()??;
        String::from_utf8(v.to_vec()).ok()
    }

    /// Stores a token for a coordinator and checks it works; `fingerprint`
    /// pins the certificate if system roots do not vouch for it.
    pub async fn login(
        &self,
        url: &str,
        token: &str,
        fingerprint: Option<&str>,
    ) -> Result<(), SessionError> {
        let mut pin = None;
        let s = match connect(url, url, token, self.pin(url)).await {
            Ok(s) => s,
            Err(SessionError::Untrusted { seen, .. } | SessionError::Changed { seen, .. })
                if fingerprint.is_some_and(|f| gomote_shared::tls::same_fingerprint(f, &seen)) =>
            {
                pin = Some(seen.clone());
                connect(url, url, token, Some(seen)).await?
            }
            Err(SessionError::Untrusted { seen, .. } | SessionError::Changed { seen, .. })
                if fingerprint.is_some() =>
            {
                return Err(SessionError::Mismatch {
                    url: url.to_string(),
                    given: fingerprint.unwrap_or_default().to_string(),
                    seen,
                });
            }
            Err(e) => return Err(e),
        };
        s.grpc
            .clone()
            .authenticate(gomote_shared::proto::AuthenticateRequest {})
            .await
            .map_err(|e| SessionError::Refused(rpc_text(&e)))?;
        self.state.set_token(url, token)?;
        if let Some(p) = pin {
            let pins = self.state.tree("pins")?;
            pins.insert(url, p.as_bytes()).map_err(StateError::from)?;
            pins.flush_async().await.map_err(StateError::from)?;
            tracing::info!(%url, fingerprint = %p, "pinned the coordinator's certificate");
        }
        self.remote
            .lock()
            .await
            .insert(url.to_string(), Arc::new(s));
        Ok(())
    }

    /// Stops the embedded coordinator (its instances keep running and are
    /// restored when it starts again).
    pub async fn shutdown(&self) {
        if let Some((_, r)) = self.embedded.lock().await.take() {
            r.shutdown().await;
        }
    }
}

async fn connect(
    name: &str,
    url: &str,
    token: &str,
    pin: Option<String>,
) -> Result<Session, SessionError> {
    let endpoint = Channel::from_shared(url.to_string())
        .map_err(|e| SessionError::BadUrl {
            url: url.to_string(),
            detail: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    let ch = if url.starts_with("https://") {
        let verifier = crate::tls::PinVerifier::new(url, pin);
        // Uploads and downloads verify the same way as gRPC.
        http = http.use_preconfigured_tls(verifier.client_config(&[b"http/1.1"])?);
        let r = endpoint
            .connect_with_connector(crate::tls::Connector::new(&verifier)?)
            .await;
        r.map_err(|e| match verifier.refused.lock().take() {
            Some((seen, crate::tls::Decision::Changed { pinned })) => SessionError::Changed {
                url: url.to_string(),
                pinned,
                seen,
            },
            Some((seen, _)) => SessionError::Untrusted {
                url: url.to_string(),
                seen,
            },
            None => SessionError::Dial {
                url: url.to_string(),
                detail: error_chain(&e),
            },
        })?
    } else {
        endpoint.connect().await.map_err(|e| SessionError::Dial {
            url: url.to_string(),
            detail: e.to_string(),
        })?
    };
    let v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| SessionError::BadToken)?;
    Ok(Session {
        name: name.to_string(),
        ext: GomoteExtensionServiceClient::with_interceptor(ch.clone(), Bearer(v.clone())),
        grpc: GomoteServiceClient::with_interceptor(ch, Bearer(v))
            .max_decoding_message_size(64 << 20),
        http: http.build()?,
        loopback: is_loopback_url(url),
    })
}

/// An error and its causes, for transport errors whose top line says
/// little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Whether a URL's host is this machine.
fn is_loopback_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(gomote_shared::net::is_loopback_host))
        .unwrap_or(false)
}
