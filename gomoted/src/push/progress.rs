//! Progress events for a long push, so a terminal can draw a bar; quick
//! pushes stay silent.

use std::time::{Duration, Instant};

use gomote_shared::api::Event;

use crate::out::Out;

/// Progress is reported only for pushes that take longer than this.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// Progress events for a push that runs longer than [`QUIET_FOR`].
pub(super) struct Progress<'a> {
    out: &'a Out,
    start: Instant,
    total: u64,
    done: tokio::sync::Mutex<(u64, bool)>,
}

impl<'a> Progress<'a> {
    pub(super) fn new(out: &'a Out, start: Instant, total: u64) -> Progress<'a> {
        Progress {
            out,
            start,
            total,
            done: tokio::sync::Mutex::new((0, false)),
        }
    }

    pub(super) async fn add(&self, n: u64) {
        let mut d = self.done.lock().await;
        d.0 += n;
        if self.start.elapsed() >= QUIET_FOR && self.total > 0 {
            d.1 = true;
            self.out
                .send(Event::Progress {
                    what: "pushing".into(),
                    done: d.0.min(self.total),
                    total: Some(self.total),
                })
                .await;
        }
    }

    pub(super) async fn done(&self) {
        let d = self.done.lock().await;
        if d.1 {
            self.out
                .send(Event::Progress {
                    what: "pushing".into(),
                    done: self.total,
                    total: Some(self.total),
                })
                .await;
        }
    }
}
