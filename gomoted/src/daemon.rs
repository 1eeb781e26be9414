//! The daemon's composition root: it owns every part (coordinator
//! sessions, keep-alive, the pusher and its watches, running commands, the
//! state database) and runs the background tasks that tie them together
//! (the keep-alive loop, restoring watches after a restart). Commands reach
//! the parts through it; no part knows about another except through here.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keepalive::KeepAlive;
use crate::manifest::LocalManifest;
use crate::push::Pusher;
use crate::runs::Runs;
use crate::session::{Session, Sessions};
use crate::state::State;
use crate::target::Inst;
use crate::watch::Watches;

/// Everything the daemon holds.
#[derive(Debug)]
pub struct Daemon {
    /// Groups, tokens and run records.
    pub state: State,
    /// Coordinator connections.
    pub sessions: Sessions,
    /// Which instances to keep alive, and why gone ones went.
    pub keepalive: KeepAlive,
    /// Push manifests, local and remote.
    pub pusher: Arc<Pusher>,
    /// GOROOT watches and their subscribers.
    pub watches: Watches,
    /// Commands running now.
    pub runs: Runs,
    /// Serialises group read-modify-writes (the daemon is their single
    /// writer, so concurrent CLIs never lose a member).
    pub groups: tokio::sync::Mutex<()>,
    /// When it started.
    pub started: Instant,
    /// Cancelled to stop the daemon and its background tasks.
    pub shutdown: CancellationToken,
}

impl Daemon {
    /// The daemon's parts over `state`, with the embedded coordinator's
    /// state under `data`.
    pub fn new(state: State, config: Config, data: PathBuf) -> Daemon {
        let keepalive = KeepAlive::new(
            Duration::from_secs(config.keepalive_idle_secs.unwrap_or(2 * 3600)),
            Duration::from_secs(config.keepalive_interval_secs.unwrap_or(300).max(1)),
            state.tree("keepalive").ok(),
        );
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
        let watches = Watches::new(
            pusher.clone(),
            state.tree("watches").ok(),
            config
                .watch_poll_secs
                .map(|s| Duration::from_secs(s.max(1))),
        );
        Daemon {
            sessions: Sessions::new(state.clone(), config, data),
            state,
            keepalive,
            pusher,
            watches,
            runs: Runs::default(),
            groups: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Starts the background tasks; they end with [`Daemon::shutdown`].
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().keep_alive_loop());
        tokio::spawn(self.clone().restore_watches());
    }

    /// Stops what runs: commands are cancelled and the embedded
    /// coordinator stops (its instances keep running and are restored when
    /// it starts again).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.runs.cancel_all();
        self.sessions.shutdown().await;
    }

    /// Instances kept alive now: by use, group or a running command, and
    /// every watch subscriber.
    pub fn kept_alive(&self) -> BTreeSet<String> {
        let mut k = self.keepalive.kept();
        k.extend(self.watches.subscriber_ids());
        k
    }

    /// Notes that instances' files may have changed outside a push, so
    /// their manifests are checked again before they are trusted.
    pub fn touched(&self, insts: &[Inst]) {
        for i in insts {
            self.pusher.remotes.touch(&i.key());
        }
    }

    /// Pings what the keeper wants kept, every interval, until shutdown.
    /// A restarted daemon first reopens the sessions whose instances it was
    /// keeping alive, so they go on being kept.
    async fn keep_alive_loop(self: Arc<Self>) {
        for server in self.keepalive.servers() {
            if let Err(e) = self.sessions.by_name(&server).await {
                tracing::warn!(%server, error = %e, "keep-alive: reopening a session");
            }
        }
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.keepalive.interval) => {}
                }
            }
            let mut live_on: HashMap<String, Arc<Session>> = HashMap::new();
            for s in self.sessions.open().await {
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
            let mut grouped: BTreeSet<String> = self
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
    async fn restore_watches(self: Arc<Self>) {
        for (root, subs) in self.watches.stored() {
            let mut insts = Vec::new();
            for st in subs {
                let sess = match self.sessions.by_name(&st.server).await {
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
                    insts.push(Inst::Remote { sess, id: st.id });
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
}
