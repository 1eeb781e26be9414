//! CreateInstance: a request waits in its host type's queue (told how many
//! are ahead of it), then the host type's pool starts a machine, and the
//! instance joins the table under the lowest free name.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::{CreateInstanceResponse, Instance as ProtoInstance};
use gomote_shared::timefmt::unix;
use tokio::sync::mpsc;

use crate::Coordinator;
use crate::config::Builder;
use crate::error::CoordError;
use crate::health;
use crate::instances::{Instance, Record};
use crate::queue::Poll;
use crate::tokens::Identity;

/// How often a waiting CreateInstance says it is still waiting (Go: 5 s).
const WAITING_EVERY: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Runs one CreateInstance: waits for a slot (reporting its place),
    /// starts a machine, and sends exactly one COMPLETE (or one error).
    pub(crate) async fn create(
        self: Arc<Self>,
        id: Identity,
        builder: Builder,
        tx: mpsc::Sender<Result<CreateInstanceResponse, CoordError>>,
    ) {
        let host = builder.host_type.clone();
        let ticket = rand::random::<u64>();
        let mut last: Option<(usize, tokio::time::Instant)> = None;
        let permit = loop {
            let changed = self.queues.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.queues.poll(&host, ticket) {
                Poll::Ready(p) => break p,
                Poll::Waiting(ahead) => {
                    let due = last.is_none_or(|(n, t)| n != ahead || t.elapsed() >= WAITING_EVERY);
                    if due {
                        let msg = CreateInstanceResponse {
                            instance: None,
                            status: CreateStatus::Waiting as i32,
                            waiters_ahead: ahead as i64,
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            self.queues.cancel(&host, ticket);
                            return;
                        }
                        last = Some((ahead, tokio::time::Instant::now()));
                    }
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep(WAITING_EVERY) => {}
                        () = tx.closed() => { self.queues.cancel(&host, ticket); return; }
                    }
                }
            }
        };
        let name = self.table.reserve(&id.user, &builder.name);
        let fail = |source| CoordError::Create {
            instance: name.clone(),
            source,
        };
        let pool = match self.pools.for_host(&host) {
            Ok(p) => p.clone(),
            Err(e) => {
                self.table.release(&name);
                let _ = tx.send(Err(fail(e))).await;
                return;
            }
        };
        let started = match pool.start(&host, &name).await {
            Ok(s) => s,
            Err(e) => {
                self.table.release(&name);
                let _ = tx.send(Err(fail(e))).await;
                return;
            }
        };
        let client = started.client;
        let wd = match client.workdir().await {
            Ok(w) => w,
            Err(e) => {
                self.table.release(&name);
                pool.stop(&started.handle).await;
                let _ = tx.send(Err(CoordError::WorkDir(e))).await;
                return;
            }
        };
        let now = SystemTime::now();
        let rec = Record {
            id: name.clone(),
            owner: id.owner.clone(),
            builder_type: builder.name.clone(),
            host_type: host,
            created: unix(now),
            expires: unix(now + self.table.idle()),
            working_dir: wd.clone(),
            buildlet: started.handle,
        };
        let inst = Arc::new(Instance::new(rec.clone(), client, permit));
        health::watch(&inst, pool, self.heartbeat_every());
        self.table.insert(inst);
        tracing::info!(id = %name, user = %id.user, "instance created");
        let done = CreateInstanceResponse {
            instance: Some(ProtoInstance {
                gomote_id: name,
                builder_type: rec.builder_type,
                host_type: rec.host_type,
                expires: rec.expires,
                working_dir: wd,
            }),
            status: CreateStatus::Complete as i32,
            waiters_ahead: 0,
        };
        // If the caller has gone, the instance stays and expires as usual.
        let _ = tx.send(Ok(done)).await;
    }
}
