//! Go `flag` package semantics on top of clap: [`normalise`] rewrites a
//! Go-style command line into one clap parses the same way Go would.
//!
//! Go's rules (docs/cli.md, "Conventions"): `-name` and `--name` are the same
//! flag; a value is attached (`-count=3`) or the next word (`-count 3`);
//! a boolean takes a value only when attached (`-status=false`); parsing
//! stops at the first word that is not a flag, at `--`, or at a lone `-`.
//! Which flags take values is read from the clap [`clap::Command`], so there
//! is no second table to keep in sync. The output spells every flag as clap
//! expects (`--count=3`, `-R`, `-e VALUE`) and puts `--` before the
//! positional words, so nothing after the first positional is ever read as
//! a flag (`gomote run NAME go/bin/go test -v` keeps `-v` remote).

use clap::{Arg, Command};

/// A flag error found while normalising, worded like Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct FlagError {
    /// The subcommand path, e.g. `["run"]`, for the usage hint.
    pub path: Vec<String>,
    /// The message.
    pub msg: String,
}

/// Rewrites `args` (without the program name) for clap; the result starts
/// with `bin` so it can go straight to `try_parse_from`.
pub fn normalise(root: &Command, bin: &str, args: &[String]) -> Result<Vec<String>, FlagError> {
    // Building adds the help and version flags and fills in value counts.
    let mut root = root.clone();
    root.build();
    let mut out = vec![bin.to_string()];
    let mut path = Vec::new();
    level(&root, args, &mut path, &mut out)?;
    Ok(out)
}

/// How a flag consumes its value.
enum Kind {
    /// A Go boolean: a value only with `=`.
    Bool,
    /// Needs a value: attached or the next word.
    Value,
    /// Takes nothing (help, version).
    Plain,
}

fn kind(arg: &Arg) -> Kind {
    let optional_value = arg.get_num_args().is_some_and(|r| r.min_values() == 0);
    if optional_value && arg.is_require_equals_set() {
        Kind::Bool
    } else if arg.get_action().takes_values() {
        Kind::Value
    } else {
        Kind::Plain
    }
}

fn find<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    let mut chars = name.chars();
    let single = match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    };
    cmd.get_arguments().find(|a| {
        !a.is_positional()
            && (a.get_long() == Some(name)
                || a.get_all_aliases().is_some_and(|al| al.contains(&name))
                || (single.is_some() && a.get_short() == single))
    })
}

/// Whether `cmd` takes free-form words, so an unknown flag starts them:
/// the commands that only print "not implemented" mark that with a hidden
/// trailing positional (`run`'s visible one must not swallow bad flags).
fn takes_anything(cmd: &Command) -> bool {
    cmd.get_arguments().any(|a| {
        a.is_positional()
            && a.is_hide_set()
            && a.is_allow_hyphen_values_set()
            && a.is_trailing_var_arg_set()
    })
}

fn level(
    cmd: &Command,
    args: &[String],
    path: &mut Vec<String>,
    out: &mut Vec<String>,
) -> Result<(), FlagError> {
    let err = |path: &Vec<String>, msg: String| FlagError {
        path: path.clone(),
        msg,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let body = a.strip_prefix("--").unwrap_or(&a[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(err(path, format!("bad flag syntax: {a}")));
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(arg) = find(cmd, name) else {
            if takes_anything(cmd) {
                break;
            }
            return Err(err(path, format!("flag provided but not defined: -{name}")));
        };
        let long = arg.get_long() == Some(name)
            || arg.get_all_aliases().is_some_and(|al| al.contains(&name));
        let spelled = if long {
            format!("--{name}")
        } else {
            format!("-{name}")
        };
        match kind(arg) {
            Kind::Bool => match value {
                // clap's shorts take `-R=false` as well as longs do.
                Some(v) => out.push(format!("{spelled}={v}")),
                None => out.push(spelled),
            },
            Kind::Value => {
                let v = match value {
                    Some(v) => v.to_string(),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => {
                                return Err(err(path, format!("flag needs an argument: -{name}")));
                            }
                        }
                    }
                };
                if long {
                    out.push(format!("{spelled}={v}"));
                } else {
                    out.push(spelled);
                    out.push(v);
                }
            }
            Kind::Plain => {
                if value.is_some() {
                    return Err(err(path, format!("flag -{name} does not take a value")));
                }
                out.push(spelled);
            }
        }
        i += 1;
    }
    let rest = &args[i..];
    if cmd.has_subcommands() {
        let Some((name, more)) = rest.split_first() else {
            return Ok(());
        };
        out.push(name.clone());
        match cmd.find_subcommand(name) {
            Some(sub) if name != "help" => {
                path.push(sub.get_name().to_string());
                level(sub, more, path, out)
            }
            // `help` and unknown names: clap reports or explains them.
            _ => {
                out.extend(more.iter().cloned());
                Ok(())
            }
        }
    } else {
        if !rest.is_empty() {
            out.push("--".to_string());
            out.extend(rest.iter().cloned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd, command};
    use clap::Parser;

    fn norm(args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut v = normalise(&command(), "gomote", &args).unwrap();
        v.remove(0);
        v
    }

    fn parse(args: &[&str]) -> Cli {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let v = normalise(&command(), "gomote", &args).unwrap();
        Cli::try_parse_from(v).unwrap()
    }

    fn fail(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        normalise(&command(), "gomote", &args).unwrap_err().msg
    }

    #[test]
    fn value_forms_are_equivalent() {
        for form in [
            &["create", "-count=3", "t"][..],
            &["create", "-count", "3", "t"],
            &["create", "--count=3", "t"],
            &["create", "--count", "3", "t"],
        ] {
            assert_eq!(norm(form), ["create", "--count=3", "--", "t"], "{form:?}");
            let Cmd::Create(c) = parse(form).cmd else {
                panic!()
            };
            assert_eq!(c.count, 3);
            assert_eq!(c.builder.as_deref(), Some("t"));
        }
        let Cmd::Create(c) = parse(&["create", "-count", "0x10", "t"]).cmd else {
            panic!()
        };
        assert_eq!(c.count, 16);
    }

    #[test]
    fn booleans() {
        let Cmd::Ls(l) = parse(&["ls", "-R", "-d", "x"]).cmd else {
            panic!()
        };
        assert!(l.recursive && l.digest);
        assert_eq!(l.args, ["x"]);
        let Cmd::Ls(l) = parse(&["ls", "--R=false", "-d=true"]).cmd else {
            panic!()
        };
        assert!(!l.recursive && l.digest);
        let Cmd::Create(c) = parse(&["create", "-status=false", "-setup", "t"]).cmd else {
            panic!()
        };
        assert!(!c.status && c.setup);
        let Cmd::Create(c) = parse(&["create", "t"]).cmd else {
            panic!()
        };
        assert!(c.status && !c.setup);
        // A boolean never takes the next word: `t` is the builder type.
        assert_eq!(
            norm(&["create", "-list", "t"]),
            ["create", "--list", "--", "t"]
        );
    }

    #[test]
    fn stops_at_first_positional() {
        assert_eq!(
            norm(&["run", "NAME", "go/bin/go", "test", "-v"]),
            ["run", "--", "NAME", "go/bin/go", "test", "-v"]
        );
        assert_eq!(
            norm(&["run", "-e", "A=1", "NAME", "cmd", "-x"]),
            ["run", "-e", "A=1", "--", "NAME", "cmd", "-x"]
        );
        let Cmd::Run(r) = parse(&["run", "-e", "A=1", "NAME", "cmd", "-x", "--", "-e"]).cmd else {
            panic!()
        };
        assert_eq!(r.env, ["A=1"]);
        assert_eq!(r.args, ["NAME", "cmd", "-x", "--", "-e"]);
    }

    #[test]
    fn terminator_and_dash() {
        assert_eq!(norm(&["rm", "--", "-R"]), ["rm", "--", "-R"]);
        assert_eq!(
            norm(&["put", "NAME", "-", "dst"]),
            ["put", "--", "NAME", "-", "dst"]
        );
        assert_eq!(norm(&["put", "-", "dst"]), ["put", "--", "-", "dst"]);
        assert_eq!(norm(&["ls", "--"]), ["ls"]);
        // `--` at the top ends global flags; the command still follows.
        assert_eq!(norm(&["-group", "g", "--", "ping"]), ["--group=g", "ping"]);
    }

    #[test]
    fn values_that_look_like_flags() {
        assert_eq!(
            norm(&["run", "-until", "-x", "NAME", "true"]),
            ["run", "--until=-x", "--", "NAME", "true"]
        );
        let Cmd::Run(r) = parse(&["run", "-until", "-x", "-e", "-A=1", "-dir=-d", "N", "c"]).cmd
        else {
            panic!()
        };
        assert_eq!(r.until.as_deref(), Some("-x"));
        assert_eq!(r.env, ["-A=1"]);
        assert_eq!(r.dir, "-d");
        let Cmd::Run(r) = parse(&["run", "-e=", "-e", "", "N", "c"]).cmd else {
            panic!()
        };
        assert_eq!(r.env, ["", ""]);
    }

    #[test]
    fn globals_and_groups() {
        let cli = parse(&["-group", "g", "-server=s", "group", "list", "-json"]);
        assert_eq!(cli.group.as_deref(), Some("g"));
        assert_eq!(cli.server.as_deref(), Some("s"));
        assert!(matches!(
            cli.cmd,
            Cmd::Group(crate::cli::GroupArgs {
                sub: crate::cli::GroupCmd::List { json: true }
            })
        ));
        assert_eq!(norm(&["help", "run", "-x"]), ["help", "run", "-x"]);
        assert_eq!(norm(&["frob", "-x"]), ["frob", "-x"]);
        assert_eq!(norm(&["-h"]), ["-h"]);
        assert_eq!(norm(&["run", "-help"]), ["run", "--help"]);
    }

    #[test]
    fn errors_are_worded_like_go() {
        assert_eq!(
            fail(&["create", "-frob", "t"]),
            "flag provided but not defined: -frob"
        );
        assert_eq!(fail(&["run", "-dir"]), "flag needs an argument: -dir");
        assert_eq!(fail(&["-group"]), "flag needs an argument: -group");
        assert_eq!(fail(&["ls", "---R"]), "bad flag syntax: ---R");
        assert_eq!(fail(&["ls", "-=x"]), "bad flag syntax: -=x");
        let e = normalise(&command(), "gomote", &["run".into(), "-x".into()]).unwrap_err();
        assert_eq!(e.path, ["run"]);
    }

    #[test]
    fn unimplemented_commands_take_anything() {
        assert_eq!(
            norm(&["repro", "-public=false", "123"]),
            ["repro", "--", "-public=false", "123"]
        );
    }

    #[test]
    fn clap_rejects_bad_values_and_counts() {
        let p = |a: &[&str]| {
            let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            Cli::try_parse_from(normalise(&command(), "gomote", &args).unwrap())
        };
        assert!(p(&["create", "-count=x", "t"]).is_err());
        assert!(p(&["create", "-status=maybe", "t"]).is_err());
        assert!(p(&["create"]).is_ok(), "bare create lists builder types");
        assert!(p(&["create", "a", "b"]).is_err());
        assert!(p(&["create", "-list"]).is_ok());
        assert!(p(&["ls", "a", "b", "c"]).is_err());
        assert!(p(&["list", "x"]).is_err());
        assert!(p(&["group", "create"]).is_err());
        assert!(p(&["frob"]).is_err());
    }
}
