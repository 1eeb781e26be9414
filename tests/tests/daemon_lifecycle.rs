//! The daemon's life cycle (issue 6): autostart on the first command, one
//! daemon for concurrent first commands, restart of an older daemon, a
//! daemon killed mid-`run`, systemd socket activation, and the systemd and
//! launchd files. Each test has its own `GomoteEnv`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gomote_shared::api;
use gomote_tests::{GomoteEnv, bin, builder, eventually, find_files, pid_alive, wait_all_ok};

/// The `key: value` lines of `gomote daemon status`.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

#[test]
fn first_command_autostarts() {
    let env = GomoteEnv::new("").unwrap();
    assert!(env.daemon_pid().is_none());
    let o = env.run(&["daemon", "status"]).unwrap();
    assert_eq!(o.code, api::exit::DAEMON, "{o:?}");
    assert!(o.stdout.contains("not running"), "{o:?}");
    // `daemon status` never starts one.
    assert!(env.gomoted_pids().is_empty());

    env.ok(&["list"]).unwrap();
    let pid = env.daemon_pid().expect("a daemon holds the lock");
    let st = env.ok(&["daemon", "status"]).unwrap();
    assert_eq!(status_field(&st, "pid"), pid.to_string(), "{st}");
    assert!(
        status_field(&st, "version").starts_with(api::VERSION),
        "{st}"
    );
    assert_eq!(
        status_field(&st, "socket"),
        env.socket.display().to_string()
    );
    assert!(status_field(&st, "sessions").contains("embedded"), "{st}");

    // start says it runs; stop ends it; start starts a new one.
    let o = env.ok(&["daemon", "start"]).unwrap();
    assert!(o.contains("already running"), "{o}");
    let o = env.ok(&["daemon", "stop"]).unwrap();
    assert!(o.contains(&format!("stopped gomoted (pid {pid})")), "{o}");
    assert!(!pid_alive(pid) || eventually(Duration::from_secs(5), || !pid_alive(pid)));
    let o = env.ok(&["daemon", "stop"]).unwrap();
    assert!(o.contains("not running"), "{o}");
    let o = env.ok(&["daemon", "restart"]).unwrap();
    assert!(o.contains("restarted gomoted"), "{o}");
    let o = env.ok(&["daemon", "logs"]).unwrap();
    let _ = o; // The log may be empty at GOMOTED_LOG=warn; it must be readable.

    // GOMOTE_NO_AUTOSTART=1: nothing is started.
    env.ok(&["daemon", "stop"]).unwrap();
    let o = env
        .run_with(&["list"], &[("GOMOTE_NO_AUTOSTART", "1")], None)
        .unwrap();
    assert_eq!(o.code, api::exit::DAEMON, "{o:?}");
    assert!(o.stderr.contains("GOMOTE_NO_AUTOSTART=1"), "{o:?}");
    // The stopped daemon may still be finishing its exit.
    assert!(
        eventually(Duration::from_secs(5), || env.gomoted_pids().is_empty()),
        "{:?}",
        env.gomoted_pids()
    );
}

#[test]
fn concurrent_first_commands_start_one_daemon() {
    let env = GomoteEnv::new("").unwrap();
    let children: Vec<_> = (0..4).map(|_| env.spawn(&["list"], &[]).unwrap()).collect();
    wait_all_ok(children).unwrap();
    let pid = env.daemon_pid().expect("a daemon holds the lock");
    // A loser (none is expected) would exit right after failing the lock.
    assert!(
        eventually(Duration::from_secs(5), || env.gomoted_pids() == vec![pid]),
        "gomoted processes: {:?}, lock holder {pid}",
        env.gomoted_pids()
    );
    // Another round against the running daemon changes nothing.
    let children: Vec<_> = (0..3)
        .map(|_| env.spawn(&["daemon", "start"], &[]).unwrap())
        .collect();
    wait_all_ok(children).unwrap();
    assert_eq!(env.gomoted_pids(), vec![pid]);
}

#[test]
fn older_daemon_is_restarted() {
    let env = GomoteEnv::new("").unwrap();
    // `daemon start` does not check versions, so the fake one stays up.
    let fake = [("GOMOTED_FAKE_VERSION", "0.0.1")];
    env.run_with(&["daemon", "start"], &fake, None).unwrap();
    let old = env.daemon_pid().expect("fake daemon running");
    // Without autostart the CLI only warns (once).
    let o = env
        .run_with(&["list"], &[("GOMOTE_NO_AUTOSTART", "1")], None)
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stderr.matches("older than this gomote").count(),
        1,
        "{o:?}"
    );
    assert_eq!(env.daemon_pid(), Some(old));

    let o = env.run(&["list"]).unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("restarting gomoted 0.0.1"), "{o:?}");
    let new = env.daemon_pid().expect("new daemon running");
    assert_ne!(new, old);
    assert!(!pid_alive(old));
    let st = env.ok(&["daemon", "status"]).unwrap();
    assert_eq!(status_field(&st, "pid"), new.to_string());
    assert!(
        status_field(&st, "version").starts_with(api::VERSION),
        "{st}"
    );
    // Up to date now: no restart, no warning.
    let o = env.run(&["list"]).unwrap();
    assert!(!o.stderr.contains("restarting"), "{o:?}");
    assert_eq!(env.daemon_pid(), Some(new));
}

#[test]
fn newer_daemon_is_only_warned_about() {
    let env = GomoteEnv::new("").unwrap();
    env.run_with(
        &["daemon", "start"],
        &[("GOMOTED_FAKE_VERSION", "99.0.0")],
        None,
    )
    .unwrap();
    let pid = env.daemon_pid().unwrap();
    let o = env.run(&["list"]).unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        o.stderr
            .matches("is older than the running gomoted")
            .count(),
        1,
        "{o:?}"
    );
    assert_eq!(env.daemon_pid(), Some(pid));
}

#[test]
fn daemon_killed_mid_run() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    env.ok(&["group", "create", "g1"]).unwrap();
    env.ok(&["-group=g1", "group", "add", &name]).unwrap();

    let mut child = env
        .spawn(
            &[
                "run",
                &name,
                "/bin/sh",
                "-c",
                "echo start; sleep 2; echo end",
            ],
            &[],
        )
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "start\n");
    let pid = env.kill_daemon().unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(api::exit::DAEMON_DIED), "{err}");
    assert!(err.contains("daemon died"), "{err}");

    let saved_name = format!("{name}.stdout");
    let files = find_files(&env.dir.path().join("tmp"), &|p| {
        p.file_name().is_some_and(|n| *n == *saved_name)
    });
    assert_eq!(files.len(), 1, "{files:?}");
    let saved = std::fs::read_to_string(&files[0]).unwrap();
    assert!(saved.starts_with("start\n"), "{saved:?}");

    // The next command starts a fresh daemon that still knows everything.
    let list = env.ok(&["list"]).unwrap();
    let new = env.daemon_pid().unwrap();
    assert_ne!(new, pid);
    assert!(list.contains(&name), "{list}");
    let groups = env.ok(&["group", "list"]).unwrap();
    assert!(groups.contains("g1") && groups.contains(&name), "{groups}");
}

#[test]
fn socket_activation() {
    let Some(activate) = [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists()) else {
        eprintln!(
            "skipping socket_activation: systemd-socket-activate is not installed (Debian package systemd)"
        );
        return;
    };
    let env = GomoteEnv::new("").unwrap();
    let dir = env.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut cmd = std::process::Command::new(activate);
    cmd.arg("-l").arg(&env.socket);
    // It passes the daemon only the variables named with -E.
    for (k, v) in env.env_vars() {
        cmd.arg("-E").arg(format!("{k}={}", v.display()));
    }
    cmd.arg(bin("gomoted").unwrap())
        .env_remove("GOMOTED_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut daemon = cmd.spawn().unwrap();
    // Kills the daemon if an assertion fails first.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // The socket exists once systemd-socket-activate has bound it.
    assert!(
        eventually(Duration::from_secs(10), || env.socket.exists()),
        "no socket: {:?}",
        daemon.try_wait()
    );
    let pid = daemon.id();
    let daemon = Reap(daemon);
    let no_auto = [("GOMOTE_NO_AUTOSTART", "1")];
    let o = env.run_with(&["list"], &no_auto, None).unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    let o = env.run_with(&["daemon", "status"], &no_auto, None).unwrap();
    assert_eq!(status_field(&o.stdout, "pid"), pid.to_string(), "{o:?}");
    // The lock file is the daemon's, as when autostarted.
    assert_eq!(env.daemon_pid(), Some(pid as i32));

    // Stopping it leaves the socket file (systemd's) in place.
    let o = env.run_with(&["daemon", "stop"], &no_auto, None).unwrap();
    assert!(o.stdout.contains("stopped"), "{o:?}");
    let mut daemon = daemon;
    assert!(eventually(Duration::from_secs(10), || matches!(
        daemon.0.try_wait(),
        Ok(Some(_))
    )));
    assert!(env.socket.exists(), "gomoted removed systemd's socket");
}

/// The unit files and the plist say what the READMEs rely on.
/// The value element after `<key>key</key>` in a plist `<dict>`.
fn value<'a, 'i>(dict: roxmltree::Node<'a, 'i>, key: &str) -> roxmltree::Node<'a, 'i> {
    // A dict alternates <key> and value elements.
    let elems: Vec<_> = dict.children().filter(|n| n.is_element()).collect();
    elems
        .chunks(2)
        .find(|kv| kv[0].tag_name().name() == "key" && kv[0].text() == Some(key))
        .map(|kv| kv[1])
        .unwrap_or_else(|| panic!("no key {key}"))
}

#[test]
fn service_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let socket = std::fs::read_to_string(root.join("systemd/gomoted.socket")).unwrap();
    for line in [
        "ListenStream=%t/gomote/gomoted.sock",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "WantedBy=sockets.target",
    ] {
        assert!(socket.lines().any(|l| l == line), "{line}");
    }
    let service = std::fs::read_to_string(root.join("systemd/gomoted.service")).unwrap();
    assert!(
        service
            .lines()
            .any(|l| l.starts_with("ExecStart=") && l.ends_with("/gomoted"))
    );
    assert!(service.lines().any(|l| l == "Requires=gomoted.socket"));

    let text = std::fs::read_to_string(root.join("launchd/com.golang.gomoted.plist")).unwrap();
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, opts).unwrap();
    let plist = doc.root_element();
    assert_eq!(plist.tag_name().name(), "plist");
    let dict = plist.children().find(|n| n.is_element()).unwrap();
    assert_eq!(dict.tag_name().name(), "dict");
    assert_eq!(value(dict, "Label").text(), Some("com.golang.gomoted"));
    let args = value(dict, "ProgramArguments");
    assert_eq!(args.tag_name().name(), "array");
    let first = args.children().find(|n| n.is_element()).unwrap();
    assert!(first.text().unwrap().ends_with("/gomoted"));
    assert_eq!(value(dict, "RunAtLoad").tag_name().name(), "false");
    let keep = value(dict, "KeepAlive");
    assert_eq!(keep.tag_name().name(), "dict");
    assert_eq!(value(keep, "SuccessfulExit").tag_name().name(), "false");
    // Not socket-activated under launchd (see launchd/README.md).
    let keys: Vec<_> = dict
        .children()
        .filter(|n| n.tag_name().name() == "key")
        .filter_map(|n| n.text())
        .collect();
    assert!(!keys.contains(&"Sockets"), "{keys:?}");
}
