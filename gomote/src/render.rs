//! Printing the daemon's reply: [`Renderer`] turns each [`Event`] into
//! output (`Log` -> `# line` on stderr, `Stdout`/`Output` -> stdout, a
//! progress bar on a terminal) and [`Lines`] splits the NDJSON body into
//! events as chunks arrive.

use std::io::{self, Write};

use gomote_shared::api::Event;
use indicatif::{ProgressBar, ProgressStyle};

/// What to do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The command ended with this exit code.
    Exit(i32),
}

/// Prints events to `out` (stdout) and `err` (stderr).
pub struct Renderer<O: Write, E: Write> {
    out: O,
    err: E,
    /// Draw progress bars (stderr is a terminal).
    tty: bool,
    bar: Option<ProgressBar>,
    /// The run to cancel on Ctrl-C.
    pub run_id: Option<String>,
    /// `login` met an untrusted certificate: its URL and fingerprint.
    pub untrusted: Option<(String, String)>,
}

impl<O: Write, E: Write> Renderer<O, E> {
    /// A renderer; `tty` says whether stderr is a terminal.
    pub fn new(out: O, err: E, tty: bool) -> Self {
        Self {
            out,
            err,
            tty,
            bar: None,
            run_id: None,
            untrusted: None,
        }
    }

    /// Prints one event. Errors are write errors (a closed stdout).
    pub fn event(&mut self, ev: Event) -> io::Result<Flow> {
        match ev {
            Event::Log { line } => {
                let err = &mut self.err;
                let mut write = || -> io::Result<()> {
                    writeln!(err, "# {line}")?;
                    err.flush()
                };
                match &self.bar {
                    Some(bar) => bar.suspend(write)?,
                    None => write()?,
                }
            }
            Event::Stdout { text } => self.stdout(text.as_bytes())?,
            Event::Output { data } => self.stdout(&data)?,
            Event::RunStarted { id } => self.run_id = Some(id),
            Event::Progress { what, done, total } => self.progress(what, done, total),
            Event::Exit { code } => {
                self.finish();
                self.out.flush()?;
                return Ok(Flow::Exit(code));
            }
            Event::UntrustedCertificate { url, fingerprint } => {
                self.untrusted = Some((url, fingerprint));
            }
            Event::Unknown => {}
        }
        Ok(Flow::Continue)
    }

    /// Writes a `# ` line to stderr (the CLI's own messages).
    pub fn note(&mut self, line: &str) {
        self.finish();
        // Nothing useful is left to do if stderr is gone.
        let _ = writeln!(self.err, "# {line}");
        let _ = self.err.flush();
    }

    /// Removes any progress bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn stdout(&mut self, data: &[u8]) -> io::Result<()> {
        let out = &mut self.out;
        let mut write = || -> io::Result<()> {
            out.write_all(data)?;
            out.flush()
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn progress(&mut self, what: String, done: u64, total: Option<u64>) {
        if !self.tty {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| match total {
            Some(t) => {
                let style = ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::new(t).with_style(style)
            }
            None => ProgressBar::new_spinner(),
        });
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_message(what);
        bar.set_position(done);
        if total.is_some_and(|t| done >= t) {
            self.finish();
        }
    }
}

/// Splits a byte stream into lines, keeping an unfinished tail.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// Adds a chunk; returns the complete, non-blank lines it finished.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let rest = self.buf.split_off(i + 1);
            let mut line = std::mem::replace(&mut self.buf, rest);
            line.pop();
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                lines.push(line);
            }
        }
        lines
    }

    /// What is left when the stream ends (a last line without newline).
    pub fn rest(&mut self) -> Option<Vec<u8>> {
        let line = std::mem::take(&mut self.buf);
        line.iter()
            .any(|b| !b.is_ascii_whitespace())
            .then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(events: Vec<Event>) -> (Vec<u8>, String, Option<i32>, Option<String>) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut code = None;
        let run_id;
        {
            let mut r = Renderer::new(&mut out, &mut err, false);
            for ev in events {
                if let Flow::Exit(c) = r.event(ev).unwrap() {
                    code = Some(c);
                }
            }
            run_id = r.run_id.clone();
        }
        (out, String::from_utf8(err).unwrap(), code, run_id)
    }

    #[test]
    fn events_go_where_they_belong() {
        let (out, err, code, id) = render(vec![
            Event::Log {
                line: "Creating x".into(),
            },
            Event::RunStarted { id: "r1".into() },
            Event::Stdout {
                text: "alice-gotip-linux-amd64-0\n".into(),
            },
            Event::Output {
                data: b"raw\xffbytes".to_vec(),
            },
            Event::Progress {
                what: "upload".into(),
                done: 1,
                total: Some(2),
            },
            Event::Unknown,
            Event::Log {
                line: "done".into(),
            },
            Event::Exit { code: 3 },
        ]);
        assert_eq!(err, "# Creating x\n# done\n");
        assert_eq!(code, Some(3));
        assert_eq!(id.as_deref(), Some("r1"));
        assert_eq!(out, b"alice-gotip-linux-amd64-0\nraw\xffbytes");
    }

    #[test]
    fn raw_output_is_untouched() {
        let mut out = Vec::new();
        let mut r = Renderer::new(&mut out, Vec::new(), false);
        r.event(Event::Output {
            data: vec![0, 0xff, b'\n'],
        })
        .unwrap();
        drop(r);
        assert_eq!(out, [0, 0xff, b'\n']);
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let mut l = Lines::default();
        assert!(l.push(b"{\"a\"").is_empty());
        assert_eq!(
            l.push(b":1}\n\n{\"b\":2}\n{\"c\""),
            [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(l.rest(), Some(b"{\"c\"".to_vec()));
        assert_eq!(l.rest(), None);
    }
}
