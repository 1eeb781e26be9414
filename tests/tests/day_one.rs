//! What a Go developer trips over on day one, each a silent wrong turn
//! before: a tree that is not GOROOT pushed "successfully", `destroy A B`
//! destroying the group instead, the group announced over and over,
//! Ctrl-C on `create` leaving requests behind that turn into instances
//! later, Ctrl-C on `run` saying nothing about the partial output, a TOML
//! mistake only in the daemon's log, and `daemon status` without JSON.

use std::io::BufRead as _;
use std::sync::mpsc;
use std::time::Duration;

use gomote_tests::{GomoteEnv, builder, signal};

fn names(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Forwards a child's stderr lines, so a test can wait for one.
fn stderr_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (with a deadline) for a line containing `want`; returns every
/// line seen so far.
fn wait_for_line(rx: &mpsc::Receiver<String>, want: &str, within: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(want);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {want:?} within {within:?}; saw {seen:#?}");
}

#[test]
fn pushing_a_tree_that_is_not_goroot_is_refused_and_changes_nothing() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("main.go"), "package main\n").unwrap();
    std::fs::write(tree.path().join("go.mod"), "module example.com/x\n").unwrap();
    let o = env
        .run_with(
            &["push", &name],
            &[("GOROOT", tree.path().to_str().unwrap())],
            None,
        )
        .unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("is not a Go source tree"), "{}", o.stderr);
    assert!(o.stderr.contains("found: go.mod, main.go"), "{}", o.stderr);
    let ls = env.ok(&["ls", &name]).unwrap();
    assert!(
        !ls.lines().any(|l| l.ends_with("\tgo/")),
        "nothing was pushed: {ls}"
    );
}

#[test]
fn destroy_with_names_destroys_exactly_those() {
    let env = GomoteEnv::new("").unwrap();
    let made = env.ok(&["create", "-count=3", &builder()]).unwrap();
    let made: Vec<&str> = made.lines().collect();
    assert_eq!(made.len(), 3);
    env.ok(&["group", "create", "g"]).unwrap();
    env.ok(&["-group", "g", "group", "add", made[2]]).unwrap();
    // With a group active, names still mean those instances.
    let o = env
        .run_with(
            &["destroy", made[0], made[1]],
            &[("GOMOTE_GROUP", "g")],
            None,
        )
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let left = names(&env.ok(&["list"]).unwrap());
    assert_eq!(left, [made[2].to_string()], "only the two named are gone");
}

#[test]
fn the_group_from_the_environment_is_announced_once() {
    let env = GomoteEnv::new("").unwrap();
    let o = env
        .run_with(&["create", &builder()], &[("GOMOTE_GROUP", "g")], None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = env
        .run_with(&["destroy"], &[("GOMOTE_GROUP", "g")], None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stderr.matches("Using group").count(), 1, "{}", o.stderr);
}

#[test]
fn ctrl_c_on_create_withdraws_what_still_waits() {
    let env = GomoteEnv::with_local_capacity(2).unwrap();
    let first = env.ok(&["create", "-count=2", &builder()]).unwrap();
    // Two more cannot start while the first two hold both slots.
    let mut child = env
        .spawn(&["create", "-status", "-count=2", &builder()], &[])
        .unwrap();
    let rx = stderr_lines(&mut child);
    wait_for_line(&rx, "still creating", Duration::from_secs(30));
    signal(
        i32::try_from(child.id()).unwrap(),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    wait_for_line(&rx, "Interrupted: withdrew 2", Duration::from_secs(10));
    // Free the slots and ask again: were the withdrawn requests still
    // queued, they would be served first and appear in the list.
    let first: Vec<&str> = first.lines().collect();
    env.ok(&["destroy", first[0], first[1]]).unwrap();
    let next = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    assert_eq!(names(&env.ok(&["list"]).unwrap()), [next]);
}

#[test]
fn ctrl_c_on_run_says_where_the_partial_output_is() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let mut child = env
        .spawn(
            &[
                "run",
                &name,
                "/bin/sh",
                "-c",
                "echo partial; exec sleep 300",
            ],
            &[],
        )
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "partial\n");
    let rx = stderr_lines(&mut child);
    signal(
        i32::try_from(child.id()).unwrap(),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let seen = wait_for_line(&rx, "Interrupted", Duration::from_secs(10));
    let last = seen.last().unwrap();
    let file = last
        .split('"')
        .rev()
        .nth(1)
        .unwrap_or_else(|| panic!("no quoted file in {last:?}"));
    assert!(file.ends_with(&format!("{name}.stdout")), "{last}");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "partial\n");
}

#[test]
fn a_config_mistake_is_printed_by_the_command_that_started_the_daemon() {
    let env = GomoteEnv::with_config("keepalive_idle_secs = \"soon\"", "").unwrap();
    let o = env.run(&["list"]).unwrap();
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("config.toml:1:23: "), "{}", o.stderr);
}

#[test]
fn daemon_status_as_json() {
    let env = GomoteEnv::new("").unwrap();
    // Started with info logging, so its log has lines to look at.
    let o = env
        .run_with(&["list"], &[("GOMOTED_LOG", "info")], None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = env.ok(&["daemon", "status", "-json"]).unwrap();
    let v: gomote_shared::api::Status = serde_json::from_str(&o).unwrap();
    assert_eq!(Some(i32::try_from(v.pid).unwrap()), env.daemon_pid());
    let o = env.run(&["daemon", "stop"]).unwrap();
    assert!(o.stdout.contains("stopped gomoted"), "{}", o.stdout);
    // It says what becomes of the instances.
    assert!(
        o.stderr.contains("nothing keeps them alive now"),
        "{}",
        o.stderr
    );
    // The daemon's log is a file: no terminal colour codes in it.
    let log = std::fs::read_to_string(env.dir.path().join("data/gomote/gomoted.log")).unwrap();
    assert!(log.contains("gomoted serving"), "{log}");
    assert!(!log.contains('\x1b'), "{log}");
    let o = env.run(&["daemon", "status", "-json"]).unwrap();
    assert_eq!((o.code, o.stdout.trim()), (3, "null"));
}

#[test]
fn create_beyond_what_can_ever_run_is_refused_before_anything_changes() {
    let env = GomoteEnv::with_local_capacity(2).unwrap();
    let o = env
        .run(&["create", "-count=3", "-new-group", "ng", &builder()])
        .unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("could never finish"), "{}", o.stderr);
    assert!(o.stderr.contains("ask for at most 2"), "{}", o.stderr);
    assert_eq!(env.ok(&["list"]).unwrap(), "");
    assert!(!env.ok(&["group", "list"]).unwrap().contains("ng"));
}

#[test]
fn go_builder_names_work_and_typos_get_a_suggestion() {
    let env = GomoteEnv::new("").unwrap();
    let types = env.ok(&["create"]).unwrap();
    let gotip = format!("gotip-{}", builder());
    assert!(types.lines().any(|l| l == gotip), "{types}");
    let name = env.ok(&["create", &gotip]).unwrap().trim().to_string();
    assert!(name.ends_with(&format!("-{}-0", builder())), "{name}");
    let typo = &builder()[..builder().len() - 1];
    let o = env.run(&["create", typo]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("did you mean"), "{}", o.stderr);
}

#[test]
fn missing_commands_directories_and_destroyed_instances_say_so() {
    let env = GomoteEnv::new("").unwrap();
    let made = env.ok(&["create", "-count=2", &builder()]).unwrap();
    let made: Vec<&str> = made.lines().collect();
    // One instance: one line naming the command and the instance.
    let o = env.run(&["run", made[0], "no-such-cmd"]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    let want = format!(
        "command \"no-such-cmd\" not found on instance \"{}\"",
        made[0]
    );
    assert!(o.stderr.contains(&want), "{}", o.stderr);
    // A flag after the instance name is pointed out.
    let o = env.run(&["run", made[0], "-v", "true"]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("flags go before the instance name"),
        "{}",
        o.stderr
    );
    // A group: a line per instance, non-zero exit.
    env.ok(&["group", "create", "g"]).unwrap();
    env.ok(&["-group", "g", "group", "add", made[0], made[1]])
        .unwrap();
    let o = env.run(&["-group", "g", "run", "no-such-cmd"]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(
        o.stderr.matches("not found on instance").count(),
        2,
        "{}",
        o.stderr
    );
    // A directory that is not there.
    let o = env.run(&["ls", made[0], "no/such/dir"]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("directory \"no/such/dir\" does not exist"),
        "{}",
        o.stderr
    );
    // A destroyed instance is reported as destroyed, by whom.
    env.ok(&["destroy", made[1]]).unwrap();
    let o = env.run(&["run", made[1], "true"]).unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("was destroyed at"), "{}", o.stderr);
    assert!(o.stderr.contains("by you"), "{}", o.stderr);
}

#[test]
fn what_the_daemon_keeps_alive_survives_its_restart() {
    // The coordinator expires idle instances after 3 s; the daemon keeps
    // recently used ones alive, pinging every second.
    let env =
        GomoteEnv::with_config("keepalive_interval_secs = 1", "idle_timeout_secs = 3").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    env.ok(&["ls", &name]).unwrap();
    env.ok(&["daemon", "restart"]).unwrap();
    // Time must pass here: more than twice the 3 s expiry, so an instance
    // the restarted daemon forgot would be gone by now.
    std::thread::sleep(Duration::from_secs(7));
    let list = env.ok(&["list"]).unwrap();
    assert!(list.starts_with(&format!("{name}\t")), "{list:?}");
    assert!(list.contains("kept alive by gomoted"), "{list:?}");
}

#[test]
fn bad_group_names_and_patterns_are_one_line_refusals() {
    let env = GomoteEnv::new("").unwrap();
    let o = env
        .run(&["create", "-new-group", "../escape", &builder()])
        .unwrap();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("invalid group name"), "{}", o.stderr);
    assert_eq!(env.ok(&["list"]).unwrap(), "", "nothing was created");
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let o = env.run(&["run", "-until", "(", &name, "true"]).unwrap();
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("unclosed group"), "{}", o.stderr);
}
