//! Coordinator sessions: the embedded coordinator (started on first use,
//! with the local pool, reached over the same gRPC path as a remote one) or
//! a remote coordinator with the token `gomote login` stored. One warm
//! connection each, shared by every command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gomote_shared::proto::gomote_service_client::GomoteServiceClient;
use tokio::sync::Mutex;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::Config;
use crate::keepalive::KeepAlive;
use crate::manifest::LocalManifest;
use crate::push::Pusher;
use crate::state::State;
use crate::watch::Watches;

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

/// One coordinator connection.
#[derive(Debug)]
pub struct Session {
    /// `embedded` or the coordinator URL.
    pub name: String,
    /// The client; clone it per call.
    pub grpc: Grpc,
    /// Plain HTTP (uploads, downloads).
    pub http: reqwest::Client,
    /// Whether the coordinator is on this machine.
    pub loopback: bool,
}

/// Every session the daemon holds.
#[derive(Debug)]
pub struct Sessions {
    state: State,
    config: Config,
    data: PathBuf,
    embedded: Mutex<Option<(Arc<Session>, gomote_coordinator::Running)>>,
    remote: Mutex<HashMap<String, Arc<Session>>>,
    /// Which instances to keep alive, and why gone ones went.
    pub keepalive: Arc<KeepAlive>,
    /// Push manifests, local and remote.
    pub pusher: Arc<Pusher>,
    /// GOROOT watches and their subscribers.
    pub watches: Arc<Watches>,
}

const EMBEDDED: &str = "embedded";

impl Sessions {
    /// Sessions backed by `state`, with the embedded coordinator's state under `data`.
    pub fn new(state: State, config: Config, data: PathBuf) -> Sessions {
        let keepalive = Arc::new(KeepAlive::new(
            Duration::from_secs(config.keepalive_idle_secs.unwrap_or(2 * 3600)),
            Duration::from_secs(config.keepalive_interval_secs.unwrap_or(300).max(1)),
        ));
        let local = match state.tree("local_manifest") {
            Ok(t) => LocalManifest::load(t),
            Err(e) => {
                tracing::warn!(error = %e, "opening the local manifest; digests will not persist");
                LocalManifest::default()
            }
        };
        let pusher = Arc::new(Pusher {
            local: Arc::new(local),
            remotes: Default::default(),
        });
        let watches = Arc::new(Watches::new(
            pusher.clone(),
            state.tree("watches").ok(),
            config
                .watch_poll_secs
                .map(|s| Duration::from_secs(s.max(1))),
        ));
        Sessions {
            keepalive,
            pusher,
            watches,
            state,
            config,
            data,
            embedded: Mutex::new(None),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The session for `-server` (or the configured default).
    pub async fn get(&self, server: Option<&str>) -> Result<Arc<Session>, String> {
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

    /// Pings what the keeper wants kept, every interval, until cancelled.
    pub async fn keep_alive_loop(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.keepalive.interval) => {}
            }
            let mut live_on: HashMap<String, Arc<Session>> = HashMap::new();
            for s in self.open().await {
                match s
                    .grpc
                    .clone()
                    .list_instances(gomote_shared::proto::ListInstancesRequest {})
                    .await
                {
                    Ok(r) => {
                        for i in r.into_inner().instances {
                            live_on.insert(i.gomote_id, s.clone());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session = %s.name, error = %e, "keep-alive: listing instances")
                    }
                }
            }
            let mut grouped: std::collections::BTreeSet<String> = self
                .state
                .group_names()
                .iter()
                .flat_map(|g| self.state.group(g).unwrap_or_default())
                .collect();
            // Watched instances are held like group members.
            grouped.extend(self.watches.subscriber_ids());
            let live = live_on.keys().cloned().collect();
            for id in self.keepalive.plan(&live, &grouped) {
                if let Some(s) = live_on.get(&id) {
                    let r = s
                        .grpc
                        .clone()
                        .instance_alive(gomote_shared::proto::InstanceAliveRequest {
                            gomote_id: id.clone(),
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(%id, error = %e, "keep-alive ping failed");
                    }
                }
            }
        }
    }

    /// Subscribes again what an earlier daemon was watching, dropping
    /// instances that are gone, and syncs them once.
    pub async fn restore_watches(self: Arc<Self>) {
        for (root, subs) in self.watches.stored() {
            let mut insts = Vec::new();
            for st in subs {
                let sess = if st.server == EMBEDDED {
                    self.embedded().await
                } else {
                    self.remote(&st.server).await
                };
                let sess = match sess {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(server = %st.server, error = %e, "restoring a watch");
                        continue;
                    }
                };
                let live = sess
                    .grpc
                    .clone()
                    .list_instances(gomote_shared::proto::ListInstancesRequest {})
                    .await
                    .map(|r| r.into_inner().instances)
                    .unwrap_or_default();
                if live.iter().any(|i| i.gomote_id == st.id) {
                    insts.push(crate::target::Inst::Remote { sess, id: st.id });
                }
            }
            // Gone instances drop out of the stored list too.
            self.watches.replace(&root, &insts);
            for i in &insts {
                self.watches.rescan(&i.key());
            }
            tracing::info!(goroot = %root.display(), instances = insts.len(), "watch restored");
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

    async fn embedded(&self) -> Result<Arc<Session>, String> {
        let mut guard = self.embedded.lock().await;
        if let Some((s, _)) = guard.as_ref() {
            return Ok(s.clone());
        }
        let state_dir = self.data.join("coordinator");
        let config = self
            .config
            .coordinator
            .clone()
            .unwrap_or_else(gomote_coordinator::config::Config::builtin);
        let running = gomote_coordinator::start(gomote_coordinator::Options {
            listen: "127.0.0.1:0".into(),
            state: state_dir.clone(),
            config,
        })
        .await
        .map_err(|e| format!("starting the embedded coordinator: {e}"))?;
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
                .map_err(|e| format!("creating a token for the embedded coordinator: {e}"))?;
                self.state
                    .set_token(EMBEDDED, &t)
                    .map_err(|e| e.to_string())?;
                t
            }
        };
        let s = Arc::new(connect(EMBEDDED, &format!("http://{}", running.addr), &token).await?);
        *guard = Some((s.clone(), running));
        Ok(s)
    }

    async fn remote(&self, url: &str) -> Result<Arc<Session>, String> {
        let mut map = self.remote.lock().await;
        if let Some(s) = map.get(url) {
            return Ok(s.clone());
        }
        let token = self.state.token(url).ok_or_else(|| {
            format!(
                "not logged in to {url}: run `gomote -server {url} login` with your token on stdin"
            )
        })?;
        let s = Arc::new(connect(url, url, &token).await?);
        map.insert(url.to_string(), s.clone());
        Ok(s)
    }

    /// Stores a token for a coordinator and checks it works.
    pub async fn login(&self, url: &str, token: &str) -> Result<(), String> {
        let s = connect(url, url, token).await?;
        s.grpc
            .clone()
            .authenticate(gomote_shared::proto::AuthenticateRequest {})
            .await
            .map_err(|e| crate::target::rpc_text(&e))?;
        self.state
            .set_token(url, token)
            .map_err(|e| e.to_string())?;
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

async fn connect(name: &str, url: &str, token: &str) -> Result<Session, String> {
    let endpoint = Channel::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let ch = endpoint
        .connect()
        .await
        .map_err(|e| format!("dialing the server={url} failed with: {e}"))?;
    let v = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the stored token is not valid header text".to_string())?;
    Ok(Session {
        name: name.to_string(),
        grpc: GomoteServiceClient::with_interceptor(ch, Bearer(v))
            .max_decoding_message_size(64 << 20),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?,
        loopback: is_loopback_url(url),
    })
}

/// Whether a URL's host is this machine.
fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = url.parse::<http::Uri>() else {
        return false;
    };
    match u
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}
