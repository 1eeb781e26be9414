//! The creation queue: each host type has a capacity; a request beyond it
//! waits in FIFO order and learns how many other users' requests are ahead
//! of it (the `waiters_ahead` of CreateInstance's WAITING messages). Slots
//! and waiters remember their owner, for BuilderCapacity's "yours".

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug)]
struct Waiter {
    ticket: u64,
    owner: String,
}

#[derive(Debug, Default)]
struct HostQueue {
    capacity: usize,
    in_use: usize,
    /// Slots held, by owner (sums to `in_use`).
    owners: HashMap<String, usize>,
    waiters: VecDeque<Waiter>,
}

impl HostQueue {
    fn take(&mut self, owner: &str) {
        self.in_use += 1;
        *self.owners.entry(owner.to_string()).or_default() += 1;
    }

    fn give_back(&mut self, owner: &str) {
        self.in_use = self.in_use.saturating_sub(1);
        if let Some(n) = self.owners.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }
}

/// One host type's load, as one owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Slots that may be held at once.
    pub capacity: usize,
    /// Slots held.
    pub in_use: usize,
    /// Requests waiting.
    pub waiting: usize,
    /// Of `in_use`, the owner's.
    pub in_use_yours: usize,
    /// Of `waiting`, the owner's.
    pub waiting_yours: usize,
}

/// All host types' queues.
#[derive(Debug, Default)]
pub struct Queues {
    hosts: Mutex<HashMap<String, HostQueue>>,
    changed: Notify,
}

/// A slot on a host type, held for an instance's whole life.
#[derive(Debug)]
pub struct Permit {
    queues: Arc<Queues>,
    host: String,
    owner: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut hosts = self.queues.hosts.lock();
        if let Some(h) = hosts.get_mut(&self.host) {
            h.give_back(&self.owner);
        }
        drop(hosts);
        self.queues.changed.notify_waiters();
    }
}

/// The answer to one poll of the queue.
#[derive(Debug)]
pub enum Poll {
    /// A slot was free and is now yours.
    Ready(Permit),
    /// Still waiting; this many other owners' requests are ahead (the
    /// owner's own requests ahead are not counted: a user's `-count=5` must
    /// not tell them four requests are ahead of them).
    Waiting(usize),
}

impl Queues {
    /// Sets a host type's capacity.
    pub fn configure(&self, host: &str, capacity: usize) {
        self.hosts
            .lock()
            .entry(host.to_string())
            .or_default()
            .capacity = capacity;
    }

    /// Takes a slot for `owner` regardless of capacity, for instances that
    /// already exist when the coordinator restarts.
    pub fn force(self: &Arc<Self>, host: &str, owner: &str) -> Permit {
        self.hosts
            .lock()
            .entry(host.to_string())
            .or_default()
            .take(owner);
        Permit {
            queues: self.clone(),
            host: host.to_string(),
            owner: owner.to_string(),
        }
    }

    /// Takes a slot for `owner`'s request `ticket` if one is free and
    /// nobody is ahead; otherwise enqueues it (once) and says how many
    /// other owners' requests are ahead.
    pub fn poll(self: &Arc<Self>, host: &str, owner: &str, ticket: u64) -> Poll {
        let mut hosts = self.hosts.lock();
        let h = hosts.entry(host.to_string()).or_default();
        let pos = match h.waiters.iter().position(|w| w.ticket == ticket) {
            Some(p) => p,
            None => {
                h.waiters.push_back(Waiter {
                    ticket,
                    owner: owner.to_string(),
                });
                h.waiters.len() - 1
            }
        };
        if pos == 0 && h.in_use < h.capacity {
            h.waiters.pop_front();
            h.take(owner);
            drop(hosts);
            // The next waiter's position changed.
            self.changed.notify_waiters();
            return Poll::Ready(Permit {
                queues: self.clone(),
                host: host.to_string(),
                owner: owner.to_string(),
            });
        }
        let others = h
            .waiters
            .iter()
            .take(pos)
            .filter(|w| w.owner != owner)
            .count();
        Poll::Waiting(others)
    }

    /// Removes a waiter that gave up.
    pub fn cancel(&self, host: &str, ticket: u64) {
        if let Some(h) = self.hosts.lock().get_mut(host) {
            h.waiters.retain(|w| w.ticket != ticket);
        }
        self.changed.notify_waiters();
    }

    /// A host type's load as `owner` sees it (zeros for one never seen).
    pub fn load(&self, host: &str, owner: &str) -> Load {
        let hosts = self.hosts.lock();
        let Some(h) = hosts.get(host) else {
            return Load {
                capacity: 0,
                in_use: 0,
                waiting: 0,
                in_use_yours: 0,
                waiting_yours: 0,
            };
        };
        Load {
            capacity: h.capacity,
            in_use: h.in_use,
            waiting: h.waiters.len(),
            in_use_yours: h.owners.get(owner).copied().unwrap_or(0),
            waiting_yours: h.waiters.iter().filter(|w| w.owner == owner).count(),
        }
    }

    /// Resolves when any queue changes (a slot freed, a waiter left).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// (in use, capacity, waiting) for each host type, for the status page.
    pub fn snapshot(&self) -> Vec<(String, usize, usize, usize)> {
        let mut v: Vec<_> = self
            .hosts
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.in_use, h.capacity, h.waiters.len()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_positions() {
        let q = Arc::new(Queues::default());
        q.configure("h", 1);
        let p1 = match q.poll("h", "a", 1) {
            Poll::Ready(p) => p,
            Poll::Waiting(_) => panic!("first request must get the slot"),
        };
        assert!(matches!(q.poll("h", "b", 2), Poll::Waiting(0)));
        assert!(matches!(q.poll("h", "c", 3), Poll::Waiting(1)));
        drop(p1);
        // Ticket 3 may not jump the queue.
        assert!(matches!(q.poll("h", "c", 3), Poll::Waiting(1)));
        let p2 = match q.poll("h", "b", 2) {
            Poll::Ready(p) => p,
            Poll::Waiting(n) => panic!("ticket 2 should be served, {n} ahead"),
        };
        assert!(matches!(q.poll("h", "c", 3), Poll::Waiting(0)));
        q.cancel("h", 3);
        drop(p2);
        assert!(matches!(q.poll("h", "d", 4), Poll::Ready(_)));
    }

    #[test]
    fn only_other_owners_requests_count_as_ahead() {
        let q = Arc::new(Queues::default());
        q.configure("h", 1);
        let _p = q.force("h", "z");
        // Alice's -count=3, then Bob's request, then one more of Alice's.
        let ahead: Vec<usize> = [
            ("alice", 1),
            ("alice", 2),
            ("alice", 3),
            ("bob", 4),
            ("alice", 5),
        ]
        .into_iter()
        .map(|(o, t)| match q.poll("h", o, t) {
            Poll::Waiting(n) => n,
            Poll::Ready(_) => panic!("no slot is free"),
        })
        .collect();
        assert_eq!(ahead, vec![0, 0, 0, 3, 1]);
        let l = q.load("h", "alice");
        assert_eq!(
            l,
            Load {
                capacity: 1,
                in_use: 1,
                waiting: 5,
                in_use_yours: 0,
                waiting_yours: 4,
            }
        );
        assert_eq!(q.load("h", "z").in_use_yours, 1);
        assert_eq!(q.load("nosuch", "z").capacity, 0);
    }

    #[test]
    fn slots_are_counted_per_owner_until_released() {
        let q = Arc::new(Queues::default());
        q.configure("h", 2);
        let a = match q.poll("h", "a", 1) {
            Poll::Ready(p) => p,
            Poll::Waiting(_) => panic!("a slot is free"),
        };
        let _b = q.force("h", "b");
        assert_eq!(q.load("h", "a").in_use_yours, 1);
        assert_eq!(q.load("h", "b").in_use, 2);
        drop(a);
        assert_eq!(q.load("h", "a").in_use_yours, 0);
        assert_eq!(q.load("h", "b").in_use, 1);
    }
}
