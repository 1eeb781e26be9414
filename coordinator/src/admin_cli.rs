//! The `user` and `token` subcommands of `gomote-coordinator`: flags and
//! printing around [`gomote_coordinator::manage`].

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use gomote_coordinator::accounts::ENROL_TTL;
use gomote_coordinator::manage::Manage;
use gomote_coordinator::tokens::{DEFAULT_TTL, parse_ttl};

fn ttl(s: &str) -> Result<Duration, String> {
    parse_ttl(s).ok_or_else(|| format!("{s:?} is not a lifetime like 30d, 12h, 45m or 90s"))
}

fn date(unix: Option<u64>, none: &str) -> String {
    unix.and_then(|u| {
        time::OffsetDateTime::from(UNIX_EPOCH + Duration::from_secs(u))
            .format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| none.to_string())
}

/// `user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user and print their one-time enrolment link (where they set
    /// a password).
    Add {
        /// The user's e-mail address.
        email: String,
        /// Make them an administrator (sees and may destroy every instance).
        #[arg(long)]
        admin: bool,
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
        /// The coordinator's public URL for the link [default: the one the
        /// coordinator serving from --state noted].
        #[arg(long)]
        url: Option<String>,
        /// How long the link works.
        #[arg(long, default_value = "24h", value_parser = ttl)]
        link_valid: Duration,
    },
    /// List users: e-mail, role, state, created.
    List {
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
    /// Disable a user and revoke every token of theirs at once.
    Disable {
        /// The user's e-mail address.
        email: String,
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
    /// Enable a disabled user again (their old tokens stay revoked).
    Enable {
        /// The user's e-mail address.
        email: String,
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
    /// Remove a user and revoke their tokens.
    Remove {
        /// The user's e-mail address.
        email: String,
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
}

/// `token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for a user (or a robot such as CI) and print it.
    Create {
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
        /// The user's e-mail address (its local part names their instances).
        #[arg(long)]
        user: String,
        /// How long the token works (30d, 12h, 90s).
        #[arg(long, default_value = "90d", value_parser = ttl)]
        expires: Duration,
    },
    /// List tokens: ID, user, created, expires (never the token).
    List {
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
    /// Revoke a token by its ID (from `token list`).
    Revoke {
        /// The token's ID.
        id: String,
        /// State directory of the coordinator.
        #[arg(long)]
        state: PathBuf,
    },
}

/// Runs a `user` command.
pub fn user(cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            email,
            admin,
            state,
            url,
            link_valid,
        } => {
            let link = Manage::new(&state).user_add(&email, admin, url.as_deref(), link_valid)?;
            let hours = link_valid.as_secs() / 3600;
            println!("{link}");
            eprintln!(
                "Give this link to {email}: it sets their password, works once, and expires in {}.",
                if hours > 0 {
                    format!("{hours} h")
                } else {
                    format!("{} s", link_valid.as_secs())
                }
            );
        }
        UserCmd::List { state } => {
            println!("{:<40} {:<6} {:<9} CREATED", "EMAIL", "ROLE", "STATE");
            for u in Manage::new(&state).user_list()? {
                println!(
                    "{:<40} {:<6} {:<9} {}",
                    u.email,
                    u.role.to_string(),
                    u.state.to_string(),
                    date(Some(u.created), "-")
                );
            }
        }
        UserCmd::Disable { email, state } => {
            let n = Manage::new(&state).user_disable(&email)?;
            eprintln!("{email} disabled; {n} token(s) revoked");
        }
        UserCmd::Enable { email, state } => {
            Manage::new(&state).user_enable(&email)?;
            eprintln!("{email} enabled");
        }
        UserCmd::Remove { email, state } => {
            let n = Manage::new(&state).user_remove(&email)?;
            eprintln!("{email} removed; {n} token(s) revoked");
        }
    }
    Ok(())
}

/// Runs a `token` command.
pub fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            state,
            user,
            expires,
        } => {
            let t = Manage::new(&state)
                .token_create(&user, expires)
                .context("token create")?;
            println!("{}", t.token);
            eprintln!(
                "token {} for {user}, expires {}",
                t.id,
                date(Some(t.expires), "never")
            );
        }
        TokenCmd::List { state } => {
            println!("{:<12} {:<40} {:<20} EXPIRES", "ID", "USER", "CREATED");
            for e in Manage::new(&state).token_list()? {
                println!(
                    "{:<12} {:<40} {:<20} {}",
                    e.id(),
                    e.email,
                    date(e.created, "-"),
                    date(e.expires, "never")
                );
            }
        }
        TokenCmd::Revoke { id, state } => {
            let e = Manage::new(&state).token_revoke(&id)?;
            eprintln!("token {id} of {} revoked", e.email);
        }
    }
    Ok(())
}

// The default lifetimes are stated in the flags' help; keep them in step.
const _: () = assert!(DEFAULT_TTL.as_secs() == 90 * 86400 && ENROL_TTL.as_secs() == 86400);
