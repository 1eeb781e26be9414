//! The real `gomote` CLI against a real `gomoted` with its embedded
//! coordinator and local buildlets, each test in its own XDG world: the
//! seed README's sequence, groups, file commands, `run -until`/`-collect`,
//! exit codes, concurrent group edits, direct buildlets and bad input.

use std::collections::BTreeSet;
use std::time::Duration;

use gomote_tests::{
    Buildlet, GomoteEnv, builder, eventually, goroot_copy, pid_alive, pid_by_argv, poll, signal,
    wait_all_ok,
};

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn seed_sequence() {
    let env = GomoteEnv::new("").unwrap();
    // With no argument, create lists builder types (first command: autostarts the daemon).
    let types = env.ok(&["create"]).unwrap();
    assert!(lines(&types).contains(&builder()), "{types}");
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    assert!(name.ends_with(&format!("-{}-0", builder())), "{name}");

    if let Some(goroot) = goroot_copy() {
        let push = || {
            env.run_with(
                &["push", &name],
                &[("GOROOT", goroot.to_str().unwrap())],
                None,
            )
            .unwrap()
        };
        let o = push();
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stderr.contains("Pushing GOROOT"), "{}", o.stderr);
        let ls = env.ok(&["ls", &name]).unwrap();
        let names: Vec<&str> = ls.lines().filter_map(|l| l.split('\t').nth(1)).collect();
        assert!(names.contains(&"go/"), "{ls}");
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == "go1.4"),
            "{ls}"
        );
        // A second push finds nothing to send.
        let o = push();
        assert!(o.stderr.contains("0 to send"), "{}", o.stderr);
        let v = env.ok(&["run", &name, "/bin/cat", "go/VERSION"]).unwrap();
        assert!(v.starts_with("go1.19"), "{v}");
    }

    let o = env
        .run(&["run", &name, "/bin/echo", "hello", "-v"])
        .unwrap();
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "hello -v\n"),
        "flags after the command are remote: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("# Streaming results from"),
        "{}",
        o.stderr
    );
    let list = env.ok(&["list"]).unwrap();
    let re = regex::Regex::new(&format!(
        r"^{name}\t{}\t\S+\texpires in (\d+m)?[\d.]+s\tkept alive by gomoted\n$",
        builder()
    ))
    .unwrap();
    assert!(
        re.is_match(&list),
        "list line (just used, so kept alive): {list:?}"
    );
    let o = env.run(&["ping", &name]).unwrap();
    assert_eq!(o.code, 0);
    assert!(
        o.stderr.contains(&format!("# {name}: alive")),
        "{}",
        o.stderr
    );
    env.ok(&["destroy", &name]).unwrap();
    assert_eq!(env.ok(&["list"]).unwrap(), "");
    let o = env.run(&["ping", &name]).unwrap();
    assert_ne!(o.code, 0, "ping of a destroyed instance fails");
}

#[test]
fn groups_broadcast_and_destroy_group() {
    let env = GomoteEnv::new("").unwrap();
    let g = [("GOMOTE_GROUP", "debug")];
    let o = env
        .run_with(&["create", "-count=3", &builder()], &g, None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let made: BTreeSet<String> = o.stdout.lines().map(str::to_string).collect();
    assert_eq!(made.len(), 3, "{}", o.stdout);
    let list = env.ok(&["list"]).unwrap();
    assert_eq!(list.matches(" (debug)\t").count(), 3, "{list}");
    let gl = env.ok(&["group", "list"]).unwrap();
    assert!(gl.starts_with("Name\tInstances\t\ndebug\t"), "{gl:?}");

    // Broadcast: no output on stdout, one file per member.
    let o = env
        .run_with(&["run", "/bin/sh", "-c", "echo from $WORKDIR"], &g, None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.contains("Using group \"debug\" from GOMOTE_GROUP"),
        "{}",
        o.stderr
    );
    for m in &made {
        let path = o
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# Wrote results from {m:?} to \"")))
            .map(|p| p.trim_end_matches("\".").to_string())
            .unwrap_or_else(|| panic!("no output file for {m}: {}", o.stderr));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("from /"), "{text}");
    }
    // One failing member does not cancel the others; exit 1 with a line naming it.
    let first = made.iter().next().unwrap().clone();
    // The others are still running when the failing one exits.
    let fail_where_marked = || {
        let script = "test -e $WORKDIR/fail && exit 5; sleep 0.3; echo done";
        env.run_with(&["run", "/bin/sh", "-c", script], &g, None)
            .unwrap()
    };
    let o = fail_where_marked();
    assert_eq!(o.code, 0, "{}", o.stderr);
    env.ok(&["run", &first, "/usr/bin/touch", "fail"]).unwrap();
    let o = fail_where_marked();
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("failed on {first:?}: exit status 5")),
        "{}",
        o.stderr
    );
    assert_eq!(o.stderr.matches("failed on").count(), 1, "{}", o.stderr);

    // destroy -destroy-group NAME-OF-ONE keeps the group.
    env.run_with(&["destroy", "-destroy-group", &first], &g, None)
        .unwrap();
    let gl = env.ok(&["group", "list"]).unwrap();
    assert!(gl.contains("debug"), "{gl}");
    assert!(!gl.contains(&first), "{gl}");
    let o = env
        .run_with(&["destroy", "-destroy-group"], &g, None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(env.ok(&["list"]).unwrap(), "");
    assert_eq!(
        env.ok(&["group", "list"]).unwrap(),
        "Name\tInstances\t\n(none)\n"
    );
}

#[test]
fn put_puttar_gettar_rm() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let work = env.work();
    std::fs::write(work.join("script.sh"), "#!/bin/sh\necho script ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        work.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    env.ok(&["put", &name, "script.sh"]).unwrap();
    assert_eq!(
        env.ok(&["run", &name, "script.sh"]).unwrap(),
        "script ran\n"
    );
    let o = env
        .run_with(
            &["put", &name, "-", "sub/from-stdin.txt"],
            &[],
            Some(b"piped data"),
        )
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        env.ok(&["run", &name, "/bin/cat", "sub/from-stdin.txt"])
            .unwrap(),
        "piped data"
    );
    env.ok(&["put", "-mode", "0600", &name, "script.sh", "private.sh"])
        .unwrap();
    let ls = env.ok(&["ls", &name]).unwrap();
    assert!(ls.contains("-rwxr-x---\tscript.sh\t"), "{ls}");
    assert!(ls.contains("-rw-------\tprivate.sh\t"), "{ls}");

    // puttar from a file, then gettar it back.
    let tgz = work.join("t.tgz");
    let st = std::process::Command::new("tar")
        .args([
            "czf",
            tgz.to_str().unwrap(),
            "-C",
            work.to_str().unwrap(),
            "script.sh",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    env.ok(&["puttar", "-dir=unpacked", &name, "t.tgz"])
        .unwrap();
    assert_eq!(
        env.ok(&["run", &name, "unpacked/script.sh"]).unwrap(),
        "script ran\n"
    );
    env.ok(&["gettar", "-dir=unpacked", &name]).unwrap();
    let got = work.join(format!("{name}.tar.gz"));
    let listing = std::process::Command::new("tar")
        .args(["tzf", got.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "script.sh\n");

    env.ok(&["rm", &name, "unpacked", "sub"]).unwrap();
    let ls = env.ok(&["ls", &name]).unwrap();
    assert!(!ls.contains("unpacked") && !ls.contains("sub/"), "{ls}");
    let o = env.run(&["rm", &name, "../outside"]).unwrap();
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("parent directory"), "{}", o.stderr);
}

#[test]
fn run_until_and_collect() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let script =
        "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo iteration $n";
    let o = env
        .run(&[
            "run",
            "-until",
            "(?m)^iteration 3$",
            "-collect",
            "-dir",
            ".",
            &name,
            "/bin/sh",
            "-c",
            script,
        ])
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stderr.matches("No match found").count(),
        2,
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("after 3 iteration(s)"), "{}", o.stderr);
    // The output file holds exactly the last iteration, rewritten cleanly.
    let out = std::fs::read_to_string(env.work().join(format!("{name}.stdout"))).unwrap();
    assert_eq!(out, "iteration 3\n");
    let tgz = env.work().join(format!("{name}.tar.gz"));
    let listing = std::process::Command::new("tar")
        .args(["tzf", tgz.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .any(|l| l == "count")
    );
}

#[test]
fn exit_codes_and_ctrl_c() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let o = env
        .run(&["run", &name, "/bin/sh", "-c", "echo partial; exit 42"])
        .unwrap();
    assert_eq!((o.code, o.stdout.as_str()), (42, "partial\n"));
    assert!(
        !o.stderr.contains("Usage"),
        "runtime errors print no usage: {}",
        o.stderr
    );

    // Ctrl-C cancels the remote command and exits 130.
    // The instance has pids of its own: the command is found from outside
    // by its (unique) arguments.
    let nap = format!("300.{}", std::process::id());
    let script = format!("echo started; exec sleep {nap}");
    let mut child = env
        .cmd(&["run", &name, "/bin/sh", "-c", &script])
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "started\n");
    let remote = poll(Duration::from_secs(5), || pid_by_argv(&["sleep", &nap]))
        .expect("the remote command's process");
    signal(
        i32::try_from(child.id()).unwrap(),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(remote)),
        "remote command survived Ctrl-C"
    );
}

#[test]
fn concurrent_group_edits_lose_nothing() {
    let env = GomoteEnv::new("").unwrap();
    let o = env.run(&["create", "-count=4", &builder()]).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let made: Vec<String> = o.stdout.lines().map(str::to_string).collect();
    env.ok(&["group", "create", "g"]).unwrap();
    let handles: Vec<_> = made
        .iter()
        .map(|m| {
            let mut c = env.cmd(&["-group", "g", "group", "add", m]).unwrap();
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    wait_all_ok(handles).unwrap();
    let gl = env.ok(&["group", "list"]).unwrap();
    for m in &made {
        assert!(gl.contains(m.as_str()), "{m} lost: {gl}");
    }
}

#[test]
fn direct_buildlet_target() {
    let env = GomoteEnv::new("").unwrap();
    let b = Buildlet::start().unwrap();
    let target = format!("{}@{}", builder(), b.addr);
    assert_eq!(
        env.ok(&["run", &target, "/bin/echo", "direct"]).unwrap(),
        "direct\n"
    );
    let ls = env.ok(&["ls", &target]).unwrap();
    assert!(ls.contains("gocache/"), "{ls}");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let before = env.ok(&["list"]).unwrap();

    let o = env.run(&["run", "nosuch", "/bin/true"]).unwrap();
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("does not exist") && o.stderr.contains(&name),
        "lists live instances: {}",
        o.stderr
    );
    let o = env.run(&["-group", "nosuch", "ls"]).unwrap();
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nosuch"), "{}", o.stderr);
    let o = env.run(&["create", "plan9-arm"]).unwrap();
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("plan9-arm") && o.stderr.contains(&builder()),
        "{}",
        o.stderr
    );
    let o = env
        .run(&["run", "-e", "NOEQUALS", &name, "/bin/true"])
        .unwrap();
    assert_eq!(o.code, 2, "{}", o.stderr);
    let o = env
        .run(&["run", "-until", "(unclosed", &name, "/bin/true"])
        .unwrap();
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("bad regexp"), "{}", o.stderr);
    let o = env.run(&["ls"]).unwrap();
    assert_ne!(o.code, 0, "ls with no group does not crash: {}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    // Nothing was created, destroyed or grouped by any of that.
    let after = env.ok(&["list"]).unwrap();
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.split("\texpires").next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before), strip(&after));
    assert_eq!(
        env.ok(&["group", "list"]).unwrap(),
        "Name\tInstances\t\n(none)\n"
    );
}

#[test]
fn keep_alive_by_group_membership() {
    // The coordinator expires idle instances after 3 s; the daemon pings
    // group members every second and keeps nothing for recent use alone.
    let env = GomoteEnv::with_config(
        "keepalive_interval_secs = 1\nkeepalive_idle_secs = 0",
        "idle_timeout_secs = 3",
    )
    .unwrap();
    let g = [("GOMOTE_GROUP", "keep")];
    let o = env.run_with(&["create", &builder()], &g, None).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let name = o.stdout.trim().to_string();
    // Time must pass here, not a condition come true: more than twice the
    // 3 s expiry, so an instance not kept alive would be gone by now.
    std::thread::sleep(Duration::from_secs(7));
    let list = env.ok(&["list"]).unwrap();
    assert!(
        list.starts_with(&format!("{name} (keep)\t")),
        "kept past its 3 s expiry: {list:?}"
    );
    assert!(
        list.trim_end().ends_with("\tkept alive by gomoted"),
        "{list:?}"
    );

    env.ok(&["-group", "keep", "group", "remove", &name])
        .unwrap();
    let none_listed = || env.ok(&["list"]).unwrap().is_empty();
    assert!(
        eventually(Duration::from_secs(20), none_listed),
        "instance never expired after leaving the group"
    );
    // Once the daemon's next pass has noticed, a command says why it is gone.
    let run = || env.run(&["run", &name, "/bin/true"]).unwrap();
    let o = poll(Duration::from_secs(10), || {
        let o = run();
        o.stderr.contains("expired").then_some(o)
    })
    .unwrap_or_else(|| panic!("never says why it is gone: {:?}", run()));
    assert_eq!(o.code, 1, "{o:?}");
}
