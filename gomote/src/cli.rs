//! The command line as clap sees it after [`crate::goflags`] has rewritten
//! Go-style flags: [`Cli`] (global flags) and [`Cmd`] (one variant per
//! subcommand). Values are read with Go's syntax ([`crate::govalue`]);
//! instance names and builder types complete from the daemon
//! ([`crate::candidates`]).
//!
//! Every boolean flag is declared the same way (an optional value that must
//! be attached with `=`), so `-setup`, `-setup=true` and `-status=false` all
//! work as in Go; [`crate::goflags`] recognises booleans by that shape.

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;

use crate::candidates;
use crate::govalue::{go_bool, go_count};

const ABOUT: &str = "Run commands on remote Go builders (gomotes).";

const LONG_ABOUT: &str = "\
Run commands on remote Go builders (gomotes).

gomote hands every command to the per-user daemon gomoted, starting it if no
daemon answers. Progress lines go to standard error prefixed with '# ';
results and remote output go to standard output.

Flags follow Go's rules: '-flag' and '--flag' are the same, values are given
as '-flag=value' or '-flag value', booleans as '-flag' or '-flag=false', and
flag parsing stops at the first argument that is not a flag (so in
'gomote run NAME go/bin/go test -v' the '-v' belongs to the remote command).
Global flags go before the command.";

const AFTER_HELP: &str = "\
Groups: with -group NAME or $GOMOTE_GROUP set, commands that take an instance
may leave it out and then apply to every instance in the group.

Environment: GOMOTE_GROUP (default group), GOROOT (what push sends),
GOMOTED_SOCKET (the daemon's socket), GOMOTE_NO_AUTOSTART=1 (never start
gomoted), GOMOTE_BUILDLET_PASSWORD (for TYPE@host:port targets).

Daemon: a gomoted older than this gomote is restarted before a command is
sent (with GOMOTE_NO_AUTOSTART=1 a warning is printed instead); 'gomote
daemon status|start|stop|restart|logs' manages it by hand.";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "gomote",
    bin_name = "gomote",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Group whose instances commands apply to [default: $GOMOTE_GROUP].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Coordinator to use; without it the daemon's configured one (by
    /// default a coordinator it embeds).
    #[arg(long, value_name = "ADDR")]
    pub server: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The clap definition, also used by the flag normaliser and completion.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Subcommands, in the order `gomote help` lists them.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create instances of a builder type (-list shows the types).
    #[command(long_about = CREATE_LONG)]
    Create(CreateArgs),
    /// Destroy an instance, or every instance of the group.
    Destroy(DestroyArgs),
    /// List your live instances and when they expire.
    List(ListArgs),
    /// List a directory on instances.
    Ls(LsArgs),
    /// Check that instances are alive (this also keeps them alive).
    Ping(PingArgs),
    /// Sync $GOROOT to the go/ directory of instances.
    Push(PushArgs),
    /// Copy a file (or standard input) to instances.
    Put(PutArgs),
    /// Unpack a .tar.gz (file, URL, stdin or Go commit) on instances.
    #[command(long_about = PUTTAR_LONG)]
    Puttar(PuttarArgs),
    /// Download a .tar.gz of a remote directory to ./<instance>.tar.gz.
    Gettar(GettarArgs),
    /// Delete files or directories on instances ('.' means everything).
    Rm(RmArgs),
    /// Run a command on instances, streaming its output.
    #[command(long_about = RUN_LONG)]
    Run(RunArgs),
    /// Manage named groups of instances.
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Group(GroupArgs),
    /// Store a coordinator token (read from standard input) for -server.
    Login(LoginArgs),
    /// Open an ssh session on an instance (not available yet).
    Ssh(UnimplementedArgs),
    /// Remote desktop to a Windows instance (not available yet).
    Rdp(UnimplementedArgs),
    /// Reproduce a LUCI build's environment (not available yet).
    Repro(UnimplementedArgs),
    /// Print a shell completion script.
    #[command(long_about = COMPLETION_LONG)]
    Completion(CompletionArgs),
    /// Manage the gomoted daemon (status, start, stop, restart, logs).
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Daemon(DaemonArgs),
}

/// `gomote daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The daemon command.
    #[command(subcommand)]
    pub sub: DaemonCmd,
}

/// `gomote daemon <sub>`.
#[derive(Debug, Clone, Subcommand)]
pub enum DaemonCmd {
    /// Print the running daemon's version, pid, uptime, socket, sessions,
    /// kept-alive instances and watches.
    Status {
        /// Print JSON (`null` when no daemon runs).
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
        json: bool,
    },
    /// Start the daemon unless one is running.
    Start,
    /// Ask the daemon to shut down and wait until it is gone (running
    /// commands are cancelled).
    Stop,
    /// Stop the daemon (if running) and start a new one.
    Restart,
    /// Print the daemon's log (<data dir>/gomoted.log).
    Logs {
        /// Keep printing what is appended, until interrupted.
        #[arg(short = 'f', action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
        follow: bool,
        /// Print only the last N lines (0: all).
        #[arg(short = 'n', default_value = "0", value_parser = go_count, value_name = "N")]
        lines: u32,
    },
}

const CREATE_LONG: &str = "\
Create instances of a builder type and print their names on standard output,
one per line, as each becomes ready. Progress goes to standard error.

With an active group (-group or $GOMOTE_GROUP) the new instances join it; if
$GOMOTE_GROUP names a group that does not exist yet, it is created.

Builder types look like [<subrepo>-]<go branch>-<goos>-<goarch>[_<host>][-<mods>],
for example gotip-linux-amd64 or x_tools-go1.23-darwin-arm64-race.
'gomote create' with no type (or -list) prints the ones the coordinator offers.";

const PUTTAR_LONG: &str = "\
Unpack a gzipped tar archive into the work directory of instances (or into
-dir below it). The source is one of: a local .tar.gz file; a URL the
instances fetch themselves; '-' for standard input; a Go commit hash (7 to 40
lower-case hex digits), which unpacks the Go tree at that commit.";

const RUN_LONG: &str = "\
Run a command on an instance, or on every instance of the group when the
first argument is not an instance. Flags must come before the instance; every
word after the command is passed to it unchanged.

Output is streamed to standard output (for a single instance) and saved to
<instance>.stdout in a temporary directory (or the current one with -collect).
gomote exits with the remote command's status.";

const COMPLETION_LONG: &str = "\
Print a script that makes your shell complete gomote's commands, flags,
instance names and builder types. Instance names and builder types are asked
from the running daemon each time you press Tab (a daemon is never started
for this). Load it from your shell's startup file:

  bash:        source <(gomote completion bash)
  zsh:         source <(gomote completion zsh)
  fish:        gomote completion fish | source
  elvish:      eval (gomote completion elvish | slurp)
  powershell:  gomote completion powershell | Out-String | Invoke-Expression

The script calls gomote itself with COMPLETE=<shell> set; completion uses the
double-dash spelling of flags (--group, --count).";

/// `gomote create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Number of instances to create.
    #[arg(long, default_value = "1", value_parser = go_count, value_name = "N", allow_hyphen_values = true)]
    pub count: u32,
    /// Print the builder types and exit.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub list: bool,
    /// Also create this new group and add the instances to it.
    #[arg(long, value_name = "NAME")]
    pub new_group: Option<String>,
    /// Push $GOROOT and build the Go toolchain on each new instance.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub setup: bool,
    /// Print status lines while waiting.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL")]
    pub status: bool,
    /// Accepted for compatibility with Go's gomote; has no effect.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide = true)]
    pub use_golangbuild: bool,
    /// With -list: print JSON.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub json: bool,
    /// The builder type; without one, the types on offer are listed.
    #[arg(value_name = "TYPE", add = ArgValueCompleter::new(candidates::builders))]
    pub builder: Option<String>,
}

/// `gomote destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// With a group: delete the group too.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub destroy_group: bool,
    /// The instance (optional with a group).
    #[arg(value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub json: bool,
}

/// `gomote ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Recursive.
    #[arg(short = 'R', action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub recursive: bool,
    /// Show SHA-1 digests of files.
    #[arg(short = 'd', action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub digest: bool,
    /// Comma-separated directories to skip (relative, forward slashes).
    #[arg(
        long,
        default_value = "",
        value_name = "DIRS",
        hide_default_value = true
    )]
    pub skip: String,
    /// [INSTANCE] [DIR]: the instance is optional with a group.
    #[arg(value_name = "ARG", num_args = 0..=2, add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// The instance (optional with a group).
    #[arg(value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Only print what would be done.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub dry_run: bool,
    /// Print one line per file sent or deleted.
    #[arg(short = 'v', action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub verbose: bool,
    /// Push now, then keep pushing each file as it is saved (the daemon
    /// watches $GOROOT); a later plain push just waits for it to catch up.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true, conflicts_with = "unwatch")]
    pub watch: bool,
    /// Stop pushing saved files to the instance (or group).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub unwatch: bool,
    /// The instance (optional with a group).
    #[arg(value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// File mode, octal [default: the source file's mode, 0666 for stdin].
    #[arg(long, value_name = "OCTAL")]
    pub mode: Option<String>,
    /// [INSTANCE] <SOURCE or - for stdin> [DESTINATION].
    #[arg(value_name = "ARG", required = true, num_args = 1..=3, add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote puttar`.
#[derive(Debug, Args)]
pub struct PuttarArgs {
    /// Directory, relative to the work directory, to unpack into.
    #[arg(
        long,
        default_value = "",
        value_name = "DIR",
        hide_default_value = true
    )]
    pub dir: String,
    /// [INSTANCE] <SOURCE>.
    #[arg(value_name = "ARG", required = true, num_args = 1..=2, add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote gettar`.
#[derive(Debug, Args)]
pub struct GettarArgs {
    /// Directory, relative to the work directory, to download.
    #[arg(
        long,
        default_value = "",
        value_name = "DIR",
        hide_default_value = true
    )]
    pub dir: String,
    /// The instance (optional with a group).
    #[arg(value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
    pub instance: Option<String>,
}

/// `gomote rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// [INSTANCE] <PATH>...: the instance is optional with a group.
    #[arg(value_name = "ARG", required = true, add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Builder type to act like (accepted; the coordinator ignores it).
    #[arg(
        long,
        default_value = "",
        value_name = "TYPE",
        hide_default_value = true
    )]
    pub builderenv: String,
    /// Save NAME.stdout and NAME.tar.gz of the work directory in the current directory.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub collect: bool,
    /// Print how the command is run before its output.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub debug: bool,
    /// Directory to run in [default: the command's directory, or the work directory with -system].
    #[arg(
        long,
        default_value = "",
        value_name = "DIR",
        hide_default_value = true
    )]
    pub dir: String,
    /// Add KEY=VALUE to the environment (repeatable).
    #[arg(short = 'e', value_name = "KEY=VALUE", action = ArgAction::Append, allow_hyphen_values = true)]
    pub env: Vec<String>,
    /// Turn on the outbound firewall (it then stays on for the instance's life).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub firewall: bool,
    /// Comma-separated PATH elements; '$PATH' and '$WORKDIR' are expanded remotely, EMPTY means no PATH.
    #[arg(long, value_name = "LIST")]
    pub path: Option<String>,
    /// Run outside the work directory (implied when the command starts with '/').
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
    pub system: bool,
    /// Run again and again until the output matches this regular expression.
    #[arg(long, value_name = "REGEXP")]
    pub until: Option<String>,
    /// [INSTANCE] <CMD> [ARGS]...
    #[arg(value_name = "ARG", required = true, trailing_var_arg = true, allow_hyphen_values = true, add = ArgValueCompleter::new(candidates::instances))]
    pub args: Vec<String>,
}

/// `gomote group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The group command.
    #[command(subcommand)]
    pub sub: GroupCmd,
}

/// `gomote group <sub>`.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a new, empty group.
    Create {
        /// The group's name.
        name: String,
    },
    /// Delete a group (its instances are not destroyed).
    Destroy {
        /// The group's name.
        name: String,
    },
    /// Add existing instances to the active group.
    Add {
        /// Instances to add.
        #[arg(required = true, value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
        instances: Vec<String>,
    },
    /// Remove instances from the active group.
    Remove {
        /// Instances to remove.
        #[arg(required = true, value_name = "INSTANCE", add = ArgValueCompleter::new(candidates::instances))]
        instances: Vec<String>,
    },
    /// List groups and their live instances.
    List {
        /// Print JSON.
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool, value_name = "BOOL", hide_default_value = true)]
        json: bool,
    },
}

/// `gomote login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Pin the coordinator's certificate with this fingerprint
    /// (`SHA256:...`, as the coordinator prints it) if system roots do not
    /// vouch for it.
    #[arg(long, value_name = "SHA256:...")]
    pub fingerprint: Option<String>,
}

/// Commands the daemon does not offer yet: anything is accepted.
#[derive(Debug, Args)]
pub struct UnimplementedArgs {
    /// Ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

/// `gomote completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_parser = ["bash", "elvish", "fish", "powershell", "zsh"])]
    pub shell: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn definition_is_consistent() {
        super::command().debug_assert();
    }
}
