//! The local API between the `gomote` CLI and the `gomoted` daemon:
//! HTTP/1.1 with JSON bodies over a local socket, versioned under `/v0/`.
//!
//! Every command is one `POST /v0/command` whose body is a
//! [`CommandRequest`]; the reply is a stream of newline-delimited JSON
//! [`Event`]s that the CLI prints as they come (`Log` lines to stderr with
//! a `# ` prefix, `Stdout` and `Output` to stdout) and ends with exactly one
//! `Exit`. The daemon owns all logic; the CLI only parses flags and prints.
//!
//! Other endpoints: `GET /v0/status` ([`Status`]), `POST
//! /v0/runs/<id>/cancel` (Ctrl-C on a run), `POST /v0/shutdown`.
//!
//! Compatibility: every request carries [`HEADER_CLI_VERSION`] and
//! [`HEADER_CLI_PROTO`]; every response carries [`HEADER_DAEMON_VERSION`]
//! and [`HEADER_DAEMON_PROTO`]. Changes are additive: new fields get
//! `#[serde(default)]`, unknown event kinds decode as [`Event::Unknown`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The protocol number; bumped only for incompatible changes.
pub const PROTO: u32 = 1;
/// This build's version (CLI and daemon are built together).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Request header: the CLI's version.
pub const HEADER_CLI_VERSION: &str = "gomote-version";
/// Request header: the CLI's protocol number.
pub const HEADER_CLI_PROTO: &str = "gomote-proto";
/// Response header: the daemon's version.
pub const HEADER_DAEMON_VERSION: &str = "gomoted-version";
/// Response header: the daemon's protocol number.
pub const HEADER_DAEMON_PROTO: &str = "gomoted-proto";
/// The Host header the daemon accepts (anything else is refused, so a web
/// page cannot reach the socket through DNS rebinding).
pub const HOST: &str = "gomoted.sock";

/// Distinct exit codes for the CLI's own failures (a remote command's
/// status passes through unchanged).
pub mod exit {
    /// A command failed (Go's gomote exits 1 for everything).
    pub const FAILURE: i32 = 1;
    /// Bad usage: unknown command, bad flag, wrong number of arguments.
    pub const USAGE: i32 = 2;
    /// The daemon could not be reached or started.
    pub const DAEMON: i32 = 3;
    /// The daemon died while the command was running.
    pub const DAEMON_DIED: i32 = 4;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// How the active group is chosen (docs/cli.md, "Groups"): the CLI
/// sends both sources and the daemon applies Go's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSel {
    /// The value of the global `-group` flag, if given on the command line
    /// (even if given empty).
    #[serde(default)]
    pub flag: Option<String>,
    /// The value of `$GOMOTE_GROUP`, if set and non-empty.
    #[serde(default)]
    pub env: Option<String>,
}

/// One CLI invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRequest {
    /// Which group is active.
    #[serde(default)]
    pub group: GroupSel,
    /// The global `-server` flag: a coordinator URL, or empty for the
    /// configured default (the embedded coordinator unless configured).
    #[serde(default)]
    pub server: Option<String>,
    /// The CLI's working directory (relative paths are resolved in it).
    pub cwd: PathBuf,
    /// The CLI's temporary directory (`$TMPDIR`), for run output files.
    #[serde(default)]
    pub tmpdir: Option<PathBuf>,
    /// `$GOROOT` as the CLI sees it (push, create -setup).
    #[serde(default)]
    pub goroot: Option<PathBuf>,
    /// `$GOMOTE_BUILDLET_PASSWORD`, for `TYPE@host:port` targets.
    #[serde(default)]
    pub buildlet_password: Option<String>,
    /// Whether stderr is a terminal (progress bars are drawn only then).
    #[serde(default)]
    pub tty: bool,
    /// The command.
    pub cmd: Command,
}

/// A command and its flags, exactly as the user gave them; positional
/// arguments are interpreted by the daemon (it knows which are instances).
/// On the wire each is a JSON object tagged by `"command"` with the
/// command's fields beside the tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// `gomote create`.
    Create(CreateCmd),
    /// `gomote destroy`.
    Destroy(DestroyCmd),
    /// `gomote list`.
    List(ListCmd),
    /// `gomote ls`.
    Ls(LsCmd),
    /// `gomote ping`.
    Ping(PingCmd),
    /// `gomote push`.
    Push(PushCmd),
    /// `gomote put`.
    Put(PutCmd),
    /// `gomote puttar`.
    Puttar(PuttarCmd),
    /// `gomote gettar`.
    Gettar(GettarCmd),
    /// `gomote rm`.
    Rm(RmCmd),
    /// `gomote run`.
    Run(RunCmd),
    /// `gomote group <sub> ...`.
    Group(GroupCmd),
    /// `gomote login -server URL` (token from stdin).
    Login(LoginCmd),
    /// Names of live instances, for shell completion.
    CompleteInstances,
    /// Builder types, for shell completion.
    CompleteBuilders,
}

impl Command {
    /// The command's name as the user typed it (`complete` for completions).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "create",
            Command::Destroy(_) => "destroy",
            Command::List(_) => "list",
            Command::Ls(_) => "ls",
            Command::Ping(_) => "ping",
            Command::Push(_) => "push",
            Command::Put(_) => "put",
            Command::Puttar(_) => "puttar",
            Command::Gettar(_) => "gettar",
            Command::Rm(_) => "rm",
            Command::Run(_) => "run",
            Command::Group(_) => "group",
            Command::Login(_) => "login",
            Command::CompleteInstances | Command::CompleteBuilders => "complete",
        }
    }
}

/// `gomote create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCmd {
    /// Positional arguments (the builder type).
    pub args: Vec<String>,
    /// `-count`.
    pub count: u32,
    /// `-list`.
    pub list: bool,
    /// `-new-group`.
    pub new_group: Option<String>,
    /// `-setup`.
    pub setup: bool,
    /// `-status`.
    pub status: bool,
    /// `-json` (with `-list`).
    pub json: bool,
}

/// `gomote destroy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyCmd {
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-destroy-group`.
    pub destroy_group: bool,
}

/// `gomote list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCmd {
    /// `-json`.
    pub json: bool,
}

/// `gomote ls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsCmd {
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-R`.
    pub recursive: bool,
    /// `-d`.
    pub digest: bool,
    /// `-skip`.
    pub skip: String,
}

/// `gomote ping`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingCmd {
    /// Positional arguments.
    pub args: Vec<String>,
}

/// `gomote push`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushCmd {
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-dry-run`.
    pub dry_run: bool,
    /// `-v`: one line per file.
    pub verbose: bool,
    /// `-watch`: push again whenever a file is saved.
    #[serde(default)]
    pub watch: bool,
    /// `-unwatch`: stop doing that.
    #[serde(default)]
    pub unwatch: bool,
}

/// `gomote put`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutCmd {
    /// Positional arguments (`-` stands for stdin; see `stdin_file`).
    pub args: Vec<String>,
    /// `-mode` (octal text).
    pub mode: Option<String>,
    /// Where the CLI saved its standard input when a source is `-`.
    pub stdin_file: Option<PathBuf>,
}

/// `gomote puttar`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PuttarCmd {
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-dir`.
    pub dir: String,
    /// Where the CLI saved its standard input when the source is `-`.
    pub stdin_file: Option<PathBuf>,
}

/// `gomote gettar`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GettarCmd {
    /// Positional arguments.
    pub args: Vec<String>,
    /// `-dir`.
    pub dir: String,
}

/// `gomote rm`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmCmd {
    /// Positional arguments.
    pub args: Vec<String>,
}

/// `gomote run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCmd {
    /// Positional arguments: `[instance] cmd [args...]`.
    pub args: Vec<String>,
    /// `-dir`.
    pub dir: String,
    /// `-e`, in order.
    pub env: Vec<String>,
    /// `-path` (raw; `EMPTY` means an empty PATH).
    pub path: Option<String>,
    /// `-system`.
    pub system: bool,
    /// `-debug`.
    pub debug: bool,
    /// `-firewall`.
    pub firewall: bool,
    /// `-builderenv`.
    pub builderenv: String,
    /// `-collect`.
    pub collect: bool,
    /// `-until`.
    pub until: Option<String>,
}

/// `gomote group <sub> ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCmd {
    /// `create`, `destroy`, `add`, `remove` or `list`.
    pub sub: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// `-json` (with `list`).
    pub json: bool,
}

/// `gomote login -server URL`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginCmd {
    /// The token the CLI read from standard input.
    pub token: String,
    /// `-fingerprint`: the coordinator certificate to pin if system roots
    /// do not vouch for it (`SHA256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One item of a command's reply stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A progress line for stderr; the CLI adds the `# ` prefix.
    Log {
        /// The line, without prefix or newline.
        line: String,
    },
    /// Result text for stdout, written as is.
    Stdout {
        /// The text.
        text: String,
    },
    /// Raw remote output for stdout (a single-instance `run`).
    Output {
        /// The bytes, base64.
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    /// A run has started; Ctrl-C cancels it with `POST /v0/runs/<id>/cancel`.
    RunStarted {
        /// The run's id.
        id: String,
    },
    /// Progress of a long transfer, for a bar on a terminal.
    Progress {
        /// What is being done.
        what: String,
        /// Done so far.
        done: u64,
        /// Total, if known.
        total: Option<u64>,
    },
    /// The end: the CLI exits with this code.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// `login` met a certificate nothing vouches for; a CLI on a terminal
    /// asks whether to trust it and logs in again with this fingerprint.
    UntrustedCertificate {
        /// The coordinator URL.
        url: String,
        /// The certificate's `SHA256:...` fingerprint.
        fingerprint: String,
    },
    /// An event this CLI does not know (from a newer daemon); ignored.
    #[serde(other)]
    Unknown,
}

/// An error reply (non-200 status) body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// One line, for the user.
    pub error: String,
    /// What kind of failure.
    pub kind: ErrorKind,
}

/// Kinds of [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed.
    BadRequest,
    /// The CLI and daemon speak different protocols.
    VersionMismatch,
    /// Something else.
    #[serde(other)]
    Internal,
}

/// `GET /v0/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Its protocol number.
    pub proto: u32,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// The socket it serves.
    pub socket: String,
    /// Coordinator sessions: `embedded` or a URL.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// Instances it keeps alive.
    #[serde(default)]
    pub kept_alive: Vec<String>,
    /// Watched GOROOTs and their subscribers.
    #[serde(default)]
    pub watches: Vec<String>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_unknown_is_tolerated() {
        let e = Event::Output {
            data: vec![0, 1, 255],
        };
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#"{"event":"output","data":"AAH/"}"#);
        assert_eq!(serde_json::from_str::<Event>(&j).unwrap(), e);
        let future: Event = serde_json::from_str(r#"{"event":"hologram","x":1}"#).unwrap();
        assert_eq!(future, Event::Unknown);
    }

    #[test]
    fn commands_are_tagged() {
        let c = Command::Ping(PingCmd {
            args: vec!["a".into()],
        });
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"command":"ping","args":["a"]}"#
        );
        let back: Command =
            serde_json::from_str(r#"{"command":"push","args":[],"dry_run":false,"verbose":true}"#)
                .unwrap();
        assert!(matches!(
            back,
            Command::Push(PushCmd {
                verbose: true,
                watch: false,
                ..
            })
        ));
        assert_eq!(
            serde_json::to_string(&Command::CompleteBuilders).unwrap(),
            r#"{"command":"complete_builders"}"#
        );
    }
}
