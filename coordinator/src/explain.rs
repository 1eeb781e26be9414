//! Buildlet failures in the user's terms. A command that never started
//! (not found on the instance, a working directory that does not exist) is
//! told apart from one that ran and failed, and a listing of a directory
//! that does not exist says so, each in one line naming the instance,
//! instead of the buildlet's HTTP status and body.

use gomote_shared::buildlet_client;
use http::StatusCode;

use crate::error::{CoordError, ExecFailure};

/// What ExecuteCommand asked for, as far as explaining a failure needs.
#[derive(Debug, Clone, Copy)]
pub struct ExecAsked<'a> {
    /// The command.
    pub cmd: &'a str,
    /// The working directory (empty: the buildlet's default).
    pub dir: &'a str,
    /// The instance.
    pub instance: &'a str,
}

impl ExecAsked<'_> {
    fn no_command(&self, detail: Option<String>) -> CoordError {
        CoordError::Exec(ExecFailure::NoCommand {
            cmd: self.cmd.to_string(),
            instance: self.instance.to_string(),
            detail,
        })
    }
}

/// `/exec` answered other than 200: 422 is the buildlet's "not found on
/// PATH" (Go's buildlet and ours).
pub fn exec_refused(asked: ExecAsked<'_>, e: buildlet_client::Error) -> CoordError {
    match e {
        buildlet_client::Error::Status { status, .. }
            if status == StatusCode::UNPROCESSABLE_ENTITY =>
        {
            asked.no_command(None)
        }
        e => CoordError::Exec(ExecFailure::Buildlet(e)),
    }
}

/// A `Process-State` that says the command never started (Go's start
/// errors, which the buildlet reports in the trailer), or `None` when it
/// ran: `exit status 1` and `signal: killed` are the command's own
/// business.
pub fn not_started(asked: ExecAsked<'_>, state: &str) -> Option<CoordError> {
    const ENOENT: &str = ": no such file or directory";
    let one_line = || state.replace(['\r', '\n'], " ");
    if state.starts_with("fork/exec ") {
        return Some(if state.ends_with(ENOENT) {
            asked.no_command(Some(one_line()))
        } else {
            CoordError::Exec(ExecFailure::NotStarted(one_line()))
        });
    }
    if state.starts_with("chdir ") && state.ends_with(ENOENT) {
        return Some(if !asked.dir.is_empty() {
            CoordError::Exec(ExecFailure::NoDirectory {
                dir: asked.dir.to_string(),
                instance: asked.instance.to_string(),
            })
        } else if asked.cmd.contains('/') {
            // With no directory given, a command with a slash runs in its
            // own directory: that directory is missing, so is the command.
            asked.no_command(Some(one_line()))
        } else {
            CoordError::Exec(ExecFailure::NotStarted(one_line()))
        });
    }
    if state.starts_with("pipe: ") || state.starts_with("chdir ") {
        return Some(CoordError::Exec(ExecFailure::NotStarted(one_line())));
    }
    None
}

/// `/ls` failed. A directory that does not exist is a 500 whose body is
/// the OS's "no such file or directory" (ours: `No such file or directory
/// (os error 2)`; Go's: `lstat /x: no such file or directory`); every other
/// failure keeps Go's odd Unimplemented.
pub fn list_failed(dir: &str, instance: &str, e: buildlet_client::Error) -> CoordError {
    match &e {
        buildlet_client::Error::Status { status, body, .. }
            if *status == StatusCode::INTERNAL_SERVER_ERROR
                && body
                    .to_ascii_lowercase()
                    .contains("no such file or directory") =>
        {
            CoordError::NoDirectory {
                dir: dir.to_string(),
                instance: instance.to_string(),
            }
        }
        _ => CoordError::ListDir(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: ExecAsked<'static> = ExecAsked {
        cmd: "go/bin/go",
        dir: "",
        instance: "alice-linux-amd64-0",
    };

    fn status(code: u16, body: &str) -> buildlet_client::Error {
        buildlet_client::Error::Status {
            op: "op",
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            body: body.into(),
        }
    }

    #[test]
    fn a_command_not_on_path_is_not_found_on_the_instance() {
        let asked = ExecAsked {
            cmd: "no-such-cmd",
            ..ASKED
        };
        let e = exec_refused(asked, status(422, "command \"no-such-cmd\" not found"));
        assert_eq!(
            e.to_string(),
            "unable to execute command: command \"no-such-cmd\" not found on instance \"alice-linux-amd64-0\""
        );
        let e = exec_refused(asked, status(500, "boom"));
        assert!(
            matches!(e, CoordError::Exec(ExecFailure::Buildlet(_))),
            "{e}"
        );
    }

    #[test]
    fn start_errors_in_the_trailer_are_explained() {
        let e = not_started(ASKED, "fork/exec /wd/go/bin/go: no such file or directory");
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "unable to execute command: command \"go/bin/go\" not found on instance \"alice-linux-amd64-0\" (fork/exec /wd/go/bin/go: no such file or directory)"
            )
        );
        let e = not_started(ASKED, "chdir /wd/go/bin: no such file or directory");
        assert!(
            matches!(e, Some(CoordError::Exec(ExecFailure::NoCommand { .. }))),
            "{e:?}"
        );
        let with_dir = ExecAsked {
            dir: "src",
            ..ASKED
        };
        let e = not_started(with_dir, "chdir /wd/src: no such file or directory");
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some(
                "unable to execute command: directory \"src\" does not exist on instance \"alice-linux-amd64-0\""
            )
        );
        let e = not_started(ASKED, "fork/exec /wd/x: permission denied");
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("unable to execute command: fork/exec /wd/x: permission denied")
        );
        for ran in [
            "exit status 1",
            "signal: killed",
            "wait: no child processes",
        ] {
            assert!(not_started(ASKED, ran).is_none(), "{ran}");
        }
    }

    #[test]
    fn only_a_missing_directory_is_not_found() {
        for body in [
            "No such file or directory (os error 2)",
            "lstat /wd/x: no such file or directory",
        ] {
            let e = list_failed("x", "i", status(500, body));
            assert_eq!(
                e.to_string(),
                "directory \"x\" does not exist on instance \"i\""
            );
        }
        let e = list_failed(
            "f/x",
            "i",
            status(400, "path \"f/x\": \"f\" is not a directory"),
        );
        assert!(matches!(e, CoordError::ListDir(_)), "{e}");
        let e = list_failed("x", "i", status(500, "Permission denied (os error 13)"));
        assert!(matches!(e, CoordError::ListDir(_)), "{e}");
    }
}
