//! The creation queue: each host type has a capacity; a request beyond it
//! waits in FIFO order and learns how many requests are ahead of it (the
//! `waiters_ahead` of CreateInstance's WAITING messages).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct HostQueue {
    capacity: usize,
    in_use: usize,
    waiters: VecDeque<u64>,
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
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut hosts = self.queues.hosts.lock();
        if let Some(h) = hosts.get_mut(&self.host) {
            h.in_use = h.in_use.saturating_sub(1);
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
    /// Still waiting; this many requests are ahead.
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

    /// Takes a slot regardless of capacity, for instances that already
    /// exist when the coordinator restarts.
    pub fn force(self: &Arc<Self>, host: &str) -> Permit {
        self.hosts
            .lock()
            .entry(host.to_string())
            .or_default()
            .in_use += 1;
        Permit {
            queues: self.clone(),
            host: host.to_string(),
        }
    }

    /// Takes a slot for `ticket` if one is free and nobody is ahead;
    /// otherwise enqueues it (once) and says how many are ahead.
    pub fn poll(self: &Arc<Self>, host: &str, ticket: u64) -> Poll {
        let mut hosts = self.hosts.lock();
        let h = hosts.entry(host.to_string()).or_default();
        let pos = match h.waiters.iter().position(|t| *t == ticket) {
            Some(p) => p,
            None => {
                h.waiters.push_back(ticket);
                h.waiters.len() - 1
            }
        };
        if pos == 0 && h.in_use < h.capacity {
            h.waiters.pop_front();
            h.in_use += 1;
            drop(hosts);
            // The next waiter's position changed.
            self.changed.notify_waiters();
            return Poll::Ready(Permit {
                queues: self.clone(),
                host: host.to_string(),
            });
        }
        Poll::Waiting(pos)
    }

    /// Removes a waiter that gave up.
    pub fn cancel(&self, host: &str, ticket: u64) {
        if let Some(h) = self.hosts.lock().get_mut(host) {
            h.waiters.retain(|t| *t != ticket);
        }
        self.changed.notify_waiters();
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
        let p1 = match q.poll("h", 1) {
            Poll::Ready(p) => p,
            Poll::Waiting(_) => panic!("first request must get the slot"),
        };
        assert!(matches!(q.poll("h", 2), Poll::Waiting(0)));
        assert!(matches!(q.poll("h", 3), Poll::Waiting(1)));
        drop(p1);
        // Ticket 3 may not jump the queue.
        assert!(matches!(q.poll("h", 3), Poll::Waiting(1)));
        let p2 = match q.poll("h", 2) {
            Poll::Ready(p) => p,
            Poll::Waiting(n) => panic!("ticket 2 should be served, {n} ahead"),
        };
        assert!(matches!(q.poll("h", 3), Poll::Waiting(0)));
        q.cancel("h", 3);
        drop(p2);
        assert!(matches!(q.poll("h", 4), Poll::Ready(_)));
    }
}
