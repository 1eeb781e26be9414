//! The reply stream of one command: helpers that turn what a command wants
//! to say into `api::Event`s. A CLI that has gone away is not an error: the
//! command carries on (a run still writes its output file).

use gomote_shared::api::Event;
use tokio::sync::mpsc;

/// Where a command's events go.
#[derive(Debug, Clone)]
pub struct Out {
    tx: mpsc::Sender<Event>,
}

impl Out {
    /// A sink and the receiver the HTTP reply streams from.
    pub fn channel() -> (Out, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(64);
        (Out { tx }, rx)
    }

    /// Sends one event, ignoring a departed CLI.
    pub async fn send(&self, e: Event) {
        let _ = self.tx.send(e).await;
    }

    /// A `# ` line on the CLI's stderr.
    pub async fn log(&self, line: impl Into<String>) {
        self.send(Event::Log { line: line.into() }).await;
    }

    /// Text on the CLI's stdout.
    pub async fn stdout(&self, text: impl Into<String>) {
        self.send(Event::Stdout { text: text.into() }).await;
    }

    /// A value as pretty JSON on the CLI's stdout (the `-json` flags).
    pub async fn json(&self, v: &impl serde::Serialize) -> Result<(), serde_json::Error> {
        let text = serde_json::to_string_pretty(v)?;
        self.stdout(format!("{text}\n")).await;
        Ok(())
    }

    /// Raw bytes on the CLI's stdout.
    pub async fn output(&self, data: &[u8]) {
        self.send(Event::Output {
            data: data.to_vec(),
        })
        .await;
    }
}
