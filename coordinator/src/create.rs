//! CreateInstance: a request waits in its host type's queue (told how many
//! other users' requests are ahead of it), then the host type's pool starts
//! a machine, and the instance joins the table under the lowest free name.
//! A client that goes away gets nothing: a queued request is withdrawn at
//! once, and an instance started for it is destroyed as soon as it is up
//! (`gomote create -count=N` interrupted must not leave N instances).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::{CreateInstanceResponse, Instance as ProtoInstance};
use gomote_shared::timefmt::unix;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::Coordinator;
use crate::config::Builder;
use crate::error::CoordError;
use crate::health;
use crate::instances::{Cause, Instance, Record};
use crate::queue::{Permit, Poll};
use crate::tokens::Identity;

/// How often a waiting CreateInstance says it is still waiting (Go: 5 s).
const WAITING_EVERY: Duration = Duration::from_secs(5);

/// How long the COMPLETE message may sit unread before the instance is
/// left to the client anyway (a client that holds the stream open without
/// reading is not one that went away; its instance expires as usual).
const CLAIM_WITHIN: Duration = Duration::from_secs(60);

/// One message of a CreateInstance stream, with a receipt that fires when
/// the stream hands it on (dropped unread, the receipt says so).
#[derive(Debug)]
struct Outgoing {
    msg: Result<CreateInstanceResponse, CoordError>,
    receipt: Option<oneshot::Sender<()>>,
}

/// The creating task's end of a CreateInstance stream.
#[derive(Debug)]
pub(crate) struct Reply {
    tx: mpsc::Sender<Outgoing>,
}

/// The messages of one CreateInstance, as the gRPC edge sends them.
pub(crate) type Messages =
    Pin<Box<dyn Stream<Item = Result<CreateInstanceResponse, CoordError>> + Send + 'static>>;

/// A CreateInstance stream: the task's end and the client's. Dropping the
/// client's end (the client went away) is what the task watches for.
pub(crate) fn channel() -> (Reply, Messages) {
    let (tx, rx) = mpsc::channel(4);
    let stream = ReceiverStream::new(rx).map(|o: Outgoing| {
        if let Some(r) = o.receipt {
            let _ = r.send(());
        }
        o.msg
    });
    (Reply { tx }, Box::pin(stream))
}

impl Reply {
    fn gone(&self) -> bool {
        self.tx.is_closed()
    }

    async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends a message; false if the client has gone.
    async fn send(&self, msg: Result<CreateInstanceResponse, CoordError>) -> bool {
        self.tx.send(Outgoing { msg, receipt: None }).await.is_ok()
    }

    /// Sends the COMPLETE message; false if the client went away without
    /// taking it (it waits up to [`CLAIM_WITHIN`] to know).
    async fn hand_over(&self, msg: CreateInstanceResponse) -> bool {
        let (receipt, taken) = oneshot::channel();
        let out = Outgoing {
            msg: Ok(msg),
            receipt: Some(receipt),
        };
        if self.tx.send(out).await.is_err() {
            return false;
        }
        match tokio::time::timeout(CLAIM_WITHIN, taken).await {
            Ok(taken) => taken.is_ok(),
            Err(_) => true,
        }
    }
}

impl Coordinator {
    /// Runs one CreateInstance: waits for a slot (reporting its place),
    /// starts a machine, and sends exactly one COMPLETE (or one error);
    /// nothing is left behind for a client that went away.
    pub(crate) async fn create(self: Arc<Self>, id: Identity, builder: Builder, reply: Reply) {
        let Some(permit) = self.wait_for_slot(&id, &builder.host_type, &reply).await else {
            tracing::debug!(user = %id.user, builder = %builder.name, "creation withdrawn while queued");
            return;
        };
        let name = self.table.reserve(&id.user, &builder.name);
        match self.start(&id, &builder, &name, permit, &reply).await {
            Ok(Some(done)) => {
                if !reply.hand_over(done).await {
                    // Nobody learned its name: no tombstone either.
                    tracing::info!(id = %name, "client went away before taking the instance; destroying it");
                    if let Some(inst) = self.table.remove(&name, Cause::Unclaimed) {
                        self.pools.stop(&inst.record().buildlet).await;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = reply.send(Err(e)).await;
            }
        }
    }

    /// Waits in the host type's queue, telling the client its place, until
    /// a slot is free; `None` if the client went away first (its place is
    /// given up at once).
    async fn wait_for_slot(&self, id: &Identity, host: &str, reply: &Reply) -> Option<Permit> {
        let ticket = rand::random::<u64>();
        let mut last: Option<(usize, tokio::time::Instant)> = None;
        loop {
            let changed = self.queues.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // A slot freed and the client leaving can wake us together:
            // never take a slot for a client that has gone.
            if reply.gone() {
                self.queues.cancel(host, ticket);
                return None;
            }
            let ahead = match self.queues.poll(host, &id.owner, ticket) {
                Poll::Ready(p) if reply.gone() => {
                    drop(p);
                    return None;
                }
                Poll::Ready(p) => return Some(p),
                Poll::Waiting(ahead) => ahead,
            };
            let due = last.is_none_or(|(n, t)| n != ahead || t.elapsed() >= WAITING_EVERY);
            if due {
                let msg = CreateInstanceResponse {
                    instance: None,
                    status: CreateStatus::Waiting as i32,
                    waiters_ahead: i64::try_from(ahead).unwrap_or(i64::MAX),
                };
                if !reply.send(Ok(msg)).await {
                    self.queues.cancel(host, ticket);
                    return None;
                }
                last = Some((ahead, tokio::time::Instant::now()));
            }
            tokio::select! {
                biased;
                () = reply.closed() => {
                    self.queues.cancel(host, ticket);
                    return None;
                }
                () = changed => {}
                () = tokio::time::sleep(WAITING_EVERY) => {}
            }
        }
    }

    /// Starts a machine for reserved name `name` and puts the instance in
    /// the table; the COMPLETE message to send, or `None` when the client
    /// went away while it started (the machine is stopped again).
    async fn start(
        &self,
        id: &Identity,
        builder: &Builder,
        name: &str,
        permit: Permit,
        reply: &Reply,
    ) -> Result<Option<CreateInstanceResponse>, CoordError> {
        let host = &builder.host_type;
        let fail = |source| CoordError::Create {
            instance: name.to_string(),
            source,
        };
        let pool = match self.pools.for_host(host) {
            Ok(p) => p.clone(),
            Err(e) => {
                self.table.release(name);
                return Err(fail(e));
            }
        };
        // Not raced against the client leaving: a pool's start is not
        // promised to clean up if dropped half-way. It is stopped below.
        let started = match pool.start(host, name).await {
            Ok(s) => s,
            Err(e) => {
                self.table.release(name);
                return Err(fail(e));
            }
        };
        if reply.gone() {
            tracing::info!(id = %name, "client went away while the instance started; stopping it");
            self.table.release(name);
            pool.stop(&started.handle).await;
            return Ok(None);
        }
        let client = started.client;
        let wd = match client.workdir().await {
            Ok(w) => w,
            Err(e) => {
                self.table.release(name);
                pool.stop(&started.handle).await;
                return Err(CoordError::WorkDir(e));
            }
        };
        let now = SystemTime::now();
        let rec = Record {
            id: name.to_string(),
            owner: id.owner.clone(),
            builder_type: builder.name.clone(),
            host_type: host.clone(),
            created: unix(now),
            expires: unix(now + self.table.idle()),
            working_dir: wd.clone(),
            buildlet: started.handle,
        };
        let inst = Arc::new(Instance::new(rec.clone(), client, permit));
        health::watch(&inst, pool, self.heartbeat_every());
        self.table.insert(inst);
        tracing::info!(id = %name, user = %id.user, "instance created");
        self.audit.record(crate::audit::Event::InstanceCreate {
            actor: id.email.clone(),
            subject: name.to_string(),
            builder: builder.name.clone(),
        });
        Ok(Some(CreateInstanceResponse {
            instance: Some(ProtoInstance {
                gomote_id: name.to_string(),
                builder_type: rec.builder_type,
                host_type: rec.host_type,
                expires: rec.expires,
                working_dir: wd,
            }),
            status: CreateStatus::Complete as i32,
            waiters_ahead: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{self, FakePool};

    fn identity(user: &str) -> Identity {
        Identity {
            email: format!("{user}@example.com"),
            owner: format!("local:{user}@example.com"),
            user: user.to_string(),
            admin: false,
        }
    }

    /// Reads one message, within a deadline.
    async fn next(m: &mut Messages) -> Option<Result<CreateInstanceResponse, CoordError>> {
        tokio::time::timeout(Duration::from_secs(10), m.next())
            .await
            .expect("a message within 10 s")
    }

    async fn until(mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition never held"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_queued_request_whose_client_left_is_withdrawn_at_once() {
        let pool = FakePool::starting("fake", 1).await;
        let (c, _dir) = testing::coordinator(pool.clone());
        let b = testing::builder();
        let alice = identity("alice");
        // One instance fills the host type.
        let (reply, mut first) = channel();
        let task = tokio::spawn(c.clone().create(alice.clone(), b.clone(), reply));
        let done = next(&mut first).await.expect("COMPLETE").expect("created");
        assert_eq!(done.status, CreateStatus::Complete as i32);
        assert!(next(&mut first).await.is_none(), "then the stream ends");
        task.await.expect("create task");
        // Three more wait; their clients go away.
        let mut queued = Vec::new();
        for _ in 0..3 {
            let (reply, mut m) = channel();
            queued.push(tokio::spawn(c.clone().create(
                alice.clone(),
                b.clone(),
                reply,
            )));
            let w = next(&mut m).await.expect("WAITING").expect("no error");
            assert_eq!(w.status, CreateStatus::Waiting as i32);
            drop(m);
        }
        for t in queued {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a withdrawn request's task ends at once")
                .expect("create task");
        }
        assert_eq!(c.queues.load(&b.host_type, &alice.owner).waiting, 0);
        // Freeing the slot creates nothing for them.
        c.destroy("alice-b-0", &alice).await.expect("destroy");
        assert_eq!(c.queues.load(&b.host_type, &alice.owner).in_use, 0);
        assert!(c.table.list(Some(&alice.owner)).is_empty());
        assert_eq!(pool.started(), 1);
    }

    #[tokio::test]
    async fn an_instance_started_for_a_client_that_left_is_destroyed() {
        let pool = FakePool::starting("fake", 1).await;
        pool.hold_starts();
        let (c, _dir) = testing::coordinator(pool.clone());
        let alice = identity("alice");
        let (reply, m) = channel();
        let task = tokio::spawn(c.clone().create(alice.clone(), testing::builder(), reply));
        until(|| pool.starting_now() == 1).await;
        drop(m);
        pool.release_starts();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends")
            .expect("create task");
        assert!(
            c.table.list(Some(&alice.owner)).is_empty(),
            "nothing listed"
        );
        assert_eq!(pool.stopped.lock().len(), 1, "its machine was stopped");
        assert_eq!(c.queues.load("h", &alice.owner).in_use, 0, "slot freed");
        // The name was never handed out, so it is free again and has no
        // tombstone.
        assert_eq!(c.table.reserve("alice", "b"), "alice-b-0");
        assert!(matches!(
            c.table.session("alice-b-0", &alice.owner),
            Err(CoordError::NoSuchInstance)
        ));
    }

    #[tokio::test]
    async fn a_complete_message_nobody_took_destroys_the_instance() {
        let pool = FakePool::starting("fake", 1).await;
        let (c, _dir) = testing::coordinator(pool.clone());
        let alice = identity("alice");
        let (reply, m) = channel();
        // The client's end is dropped only once the instance is in the
        // table, before anything was read from it.
        let c2 = c.clone();
        let owner = alice.owner.clone();
        let dropper = tokio::spawn(async move {
            until(|| !c2.table.list(Some(&owner)).is_empty()).await;
            drop(m);
        });
        c.clone()
            .create(alice.clone(), testing::builder(), reply)
            .await;
        dropper.await.expect("dropper");
        assert!(
            c.table.list(Some(&alice.owner)).is_empty(),
            "nothing listed"
        );
        assert_eq!(pool.stopped.lock().len(), 1, "its machine was stopped");
    }

    #[tokio::test]
    async fn waiting_messages_count_only_other_users_requests() {
        let pool = FakePool::starting("fake", 1).await;
        let (c, _dir) = testing::coordinator(pool.clone());
        let b = testing::builder();
        let (alice, bob) = (identity("alice"), identity("bob"));
        let _slot = c.queues.force(&b.host_type, "someone");
        let mut streams = Vec::new();
        for who in [&alice, &alice, &alice, &bob] {
            let (reply, mut m) = channel();
            tokio::spawn(c.clone().create(who.clone(), b.clone(), reply));
            let w = next(&mut m).await.expect("WAITING").expect("no error");
            streams.push((w.waiters_ahead, m));
        }
        let ahead: Vec<i64> = streams.iter().map(|(n, _)| *n).collect();
        assert_eq!(ahead, vec![0, 0, 0, 3]);
    }
}
