//! Turns a parsed [`Cli`] into what to do: an [`api::CommandRequest`] for
//! the daemon ([`Action::Send`]), a completion script, or a refusal for the
//! commands the daemon does not offer yet. Pure: the process environment
//! comes in as an [`Env`], and reading standard input is left to the
//! caller, which [`Stdin`] tells what is needed.

use gomote_shared::api::{self, Command as ApiCmd, GroupSel};

use crate::cli::{Cli, Cmd, DaemonCmd, GroupCmd};
use crate::procenv::Env;

/// What the request still needs from standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing.
    None,
    /// A source is `-`: save stdin to a file for `stdin_file`.
    File,
    /// `login`: the token.
    Token,
}

/// What the invocation asks for.
#[derive(Debug)]
pub enum Action {
    /// Send a command to the daemon.
    Send(Box<api::CommandRequest>, Stdin),
    /// Print a completion script for this shell.
    Completion(String),
    /// A command the daemon cannot do yet.
    Unimplemented(&'static str),
    /// `gomote daemon ...`: handled by the CLI itself.
    Daemon(DaemonCmd),
}

/// A usage error found after clap parsed (Go reports these as flag errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// The subcommand, for the usage hint.
    pub cmd: String,
    /// The message.
    pub msg: String,
}

/// Builds the action for `cli`.
pub fn build(cli: Cli, env: &Env) -> Result<Action, UsageError> {
    let (cmd, stdin) = match cli.cmd {
        Cmd::Create(c) => (
            ApiCmd::Create(api::CreateCmd {
                args: c.builder.into_iter().collect(),
                count: c.count,
                list: c.list,
                new_group: c.new_group.filter(|g| !g.is_empty()),
                setup: c.setup,
                status: c.status,
                json: c.json,
            }),
            Stdin::None,
        ),
        Cmd::Destroy(c) => (
            ApiCmd::Destroy(api::DestroyCmd {
                args: c.args,
                destroy_group: c.destroy_group,
            }),
            Stdin::None,
        ),
        Cmd::List(c) => (ApiCmd::List(api::ListCmd { json: c.json }), Stdin::None),
        Cmd::Ls(c) => (
            ApiCmd::Ls(api::LsCmd {
                args: c.args,
                recursive: c.recursive,
                digest: c.digest,
                skip: c.skip,
            }),
            Stdin::None,
        ),
        Cmd::Ping(c) => (ApiCmd::Ping(api::PingCmd { args: c.args }), Stdin::None),
        Cmd::Push(c) => (
            ApiCmd::Push(api::PushCmd {
                args: c.args,
                dry_run: c.dry_run,
                verbose: c.verbose,
                watch: c.watch,
                unwatch: c.unwatch,
            }),
            Stdin::None,
        ),
        Cmd::Put(c) => {
            let stdin = dash_stdin(&c.args);
            (
                ApiCmd::Put(api::PutCmd {
                    args: c.args,
                    mode: c.mode,
                    stdin_file: None,
                }),
                stdin,
            )
        }
        Cmd::Puttar(c) => {
            let stdin = dash_stdin(&c.args);
            (
                ApiCmd::Puttar(api::PuttarCmd {
                    args: c.args,
                    dir: c.dir,
                    stdin_file: None,
                }),
                stdin,
            )
        }
        Cmd::Gettar(c) => (
            ApiCmd::Gettar(api::GettarCmd {
                args: c.instance.into_iter().collect(),
                dir: c.dir,
            }),
            Stdin::None,
        ),
        Cmd::Rm(c) => (ApiCmd::Rm(api::RmCmd { args: c.args }), Stdin::None),
        Cmd::Run(c) => (
            ApiCmd::Run(api::RunCmd {
                env: check_env(c.env)?,
                args: c.args,
                dir: c.dir,
                path: c.path,
                system: c.system,
                debug: c.debug,
                firewall: c.firewall,
                builderenv: c.builderenv,
                collect: c.collect,
                until: c.until,
            }),
            Stdin::None,
        ),
        Cmd::Group(g) => {
            let (sub, args, json) = match g.sub {
                GroupCmd::Create { name } => ("create", vec![name], false),
                GroupCmd::Destroy { name } => ("destroy", vec![name], false),
                GroupCmd::Add { instances } => ("add", instances, false),
                GroupCmd::Remove { instances } => ("remove", instances, false),
                GroupCmd::List { json } => ("list", vec![], json),
            };
            (
                ApiCmd::Group(api::GroupCmd {
                    sub: sub.to_string(),
                    args,
                    json,
                }),
                Stdin::None,
            )
        }
        Cmd::Login(a) => (
            ApiCmd::Login(api::LoginCmd {
                token: String::new(),
                fingerprint: a.fingerprint.clone(),
            }),
            Stdin::Token,
        ),
        Cmd::Ssh(_) => return Ok(Action::Unimplemented("ssh")),
        Cmd::Rdp(_) => return Ok(Action::Unimplemented("rdp")),
        Cmd::Repro(_) => return Ok(Action::Unimplemented("repro")),
        Cmd::Completion(c) => return Ok(Action::Completion(c.shell)),
        Cmd::Daemon(d) => return Ok(Action::Daemon(d.sub)),
    };
    Ok(Action::Send(
        Box::new(api::CommandRequest {
            group: GroupSel {
                flag: cli.group,
                env: env.gomote_group.clone(),
            },
            server: cli.server,
            cwd: env.cwd.clone(),
            tmpdir: Some(env.tmpdir.clone()),
            goroot: env.goroot.clone(),
            buildlet_password: env.buildlet_password.clone(),
            tty: env.tty,
            cmd,
        }),
        stdin,
    ))
}

fn dash_stdin(args: &[String]) -> Stdin {
    if args.iter().any(|a| a == "-") {
        Stdin::File
    } else {
        Stdin::None
    }
}

/// Go's `-e` flag: empty values are dropped, others need a `=`.
fn check_env(env: Vec<String>) -> Result<Vec<String>, UsageError> {
    let mut out = Vec::with_capacity(env.len());
    for e in env {
        if e.is_empty() {
            continue;
        }
        if !e.contains('=') {
            return Err(UsageError {
                cmd: "run".into(),
                msg: format!("invalid value {e:?} for flag -e: -e argument {e:?} has no '=' sign"),
            });
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::command;
    use crate::goflags::normalise;
    use clap::Parser as _;
    use std::path::PathBuf;

    fn env() -> Env {
        Env {
            gomote_group: Some("envgroup".into()),
            goroot: Some("/go".into()),
            buildlet_password: None,
            cwd: "/home/u/src".into(),
            tmpdir: "/tmp".into(),
            tty: false,
        }
    }

    fn act(args: &[&str]) -> Result<Action, UsageError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let v = normalise(&command(), "gomote", &args).unwrap();
        build(Cli::try_parse_from(v).unwrap(), &env())
    }

    fn req(args: &[&str]) -> (api::CommandRequest, Stdin) {
        match act(args).unwrap() {
            Action::Send(r, s) => (*r, s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_request_has_exactly_the_flags() {
        let (r, stdin) = req(&[
            "run",
            "-e",
            "A=1",
            "-e",
            "B=2",
            "-path",
            "$PATH,$WORKDIR/go/bin",
            "NAME",
            "go/bin/go",
            "test",
            "-v",
        ]);
        assert_eq!(stdin, Stdin::None);
        assert_eq!(
            r.group,
            GroupSel {
                flag: None,
                env: Some("envgroup".into())
            }
        );
        assert_eq!(r.cwd, PathBuf::from("/home/u/src"));
        assert_eq!(r.goroot, Some(PathBuf::from("/go")));
        let ApiCmd::Run(run) = r.cmd else { panic!() };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            run,
            api::RunCmd {
                args: strings(&["NAME", "go/bin/go", "test", "-v"]),
                env: strings(&["A=1", "B=2"]),
                path: Some("$PATH,$WORKDIR/go/bin".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn env_flag_is_validated_like_go() {
        let e = act(&["run", "-e", "X", "N", "c"]).unwrap_err();
        assert_eq!(
            e.msg,
            r#"invalid value "X" for flag -e: -e argument "X" has no '=' sign"#
        );
        let (r, _) = req(&["run", "-e", "", "-e=A=", "N", "c"]);
        let ApiCmd::Run(run) = r.cmd else { panic!() };
        assert_eq!(run.env, ["A="]);
    }

    #[test]
    fn group_flag_is_sent_only_when_given() {
        let (r, _) = req(&["-group=", "ping"]);
        assert_eq!(r.group.flag.as_deref(), Some(""));
        let (r, _) = req(&["-group", "g", "-server", "https://c", "ping", "a"]);
        assert_eq!(r.group.flag.as_deref(), Some("g"));
        assert_eq!(r.server.as_deref(), Some("https://c"));
        let ApiCmd::Ping(ping) = r.cmd else { panic!() };
        assert_eq!(ping.args, ["a"]);
    }

    #[test]
    fn create_and_friends() {
        let (r, _) = req(&[
            "create",
            "-count=0x2",
            "-new-group",
            "ng",
            "-use-golangbuild=false",
            "t",
        ]);
        let ApiCmd::Create(create) = r.cmd else {
            panic!()
        };
        assert_eq!(
            create,
            api::CreateCmd {
                args: vec!["t".into()],
                count: 2,
                new_group: Some("ng".into()),
                status: true,
                ..Default::default()
            }
        );

        let (r, _) = req(&["ls", "-R", "-skip=a,b", "inst", "dir"]);
        let ApiCmd::Ls(ls) = r.cmd else { panic!() };
        assert_eq!(
            ls,
            api::LsCmd {
                args: vec!["inst".into(), "dir".into()],
                recursive: true,
                digest: false,
                skip: "a,b".into(),
            }
        );

        let (r, _) = req(&["group", "add", "a", "b"]);
        let ApiCmd::Group(group) = r.cmd else {
            panic!()
        };
        assert_eq!(
            (group.sub.as_str(), group.args, group.json),
            ("add", vec!["a".into(), "b".into()], false)
        );

        let (r, _) = req(&["gettar", "-dir=go", "inst"]);
        assert!(matches!(r.cmd, ApiCmd::Gettar(ref g) if g.args == ["inst"] && g.dir == "go"));
    }

    #[test]
    fn stdin_needs() {
        assert_eq!(
            req(&["put", "-mode=0755", "inst", "-", "dst"]).1,
            Stdin::File
        );
        assert_eq!(req(&["put", "inst", "src"]).1, Stdin::None);
        assert_eq!(req(&["puttar", "-"]).1, Stdin::File);
        assert_eq!(req(&["login"]).1, Stdin::Token);
        let (r, _) = req(&["put", "-mode=0755", "inst", "src"]);
        assert!(matches!(r.cmd, ApiCmd::Put(ref p) if p.mode.as_deref() == Some("0755")));
    }

    #[test]
    fn local_actions() {
        assert!(matches!(
            act(&["ssh", "x"]).unwrap(),
            Action::Unimplemented("ssh")
        ));
        assert!(matches!(
            act(&["repro", "-public=false", "1"]).unwrap(),
            Action::Unimplemented("repro")
        ));
        assert!(
            matches!(act(&["completion", "bash"]).unwrap(), Action::Completion(ref s) if s == "bash")
        );
    }
}
