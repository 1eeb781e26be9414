//! Instances are hermetic: whatever the shell that first started the
//! daemon held (GOROOT, GOFLAGS, anything else) does not reach them, the
//! host's Go is not on their PATH (only the bootstrap toolchain, as
//! `go1.4`, and what the user pushes), they see no home directories or
//! coordinator state, a buildlet killed behind the coordinator's back is
//! reported at once, and a buildlet nobody talks to halts by itself.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gomote_tests::{GomoteEnv, bin, builder, buildlet_pid, eventually, pid_alive, poll, signal};

/// What a developer's shell typically holds.
const LEAKY: [(&str, &str); 3] = [
    ("GOROOT", "/nonexistent"),
    ("GOFLAGS", "-mod=vendor"),
    ("FOO_LEAK", "1"),
];

/// Whether bubblewrap can sandbox instances here (the built-in `auto`
/// sandbox is then what they get).
fn sandboxed() -> bool {
    Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--unshare-pid", "--", "/bin/true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Go a local coordinator offers as the bootstrap toolchain, if any.
fn installed_go() -> bool {
    Path::new("/usr/lib/go-1.19/bin/go").exists()
}

#[test]
fn instances_see_neither_the_shells_environment_nor_the_hosts_go() {
    let env = GomoteEnv::new("").unwrap();
    // The first command starts the daemon, which inherits this environment.
    let o = env.run_with(&["create", &builder()], &LEAKY, None).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let name = o.stdout.trim().to_string();

    let seen = env.ok(&["run", &name, "/usr/bin/env"]).unwrap();
    for (k, v) in LEAKY {
        assert!(
            !seen.lines().any(|l| l == format!("{k}={v}")),
            "{k}={v} reached the instance:\n{seen}"
        );
    }
    assert!(!seen.contains("FOO_LEAK"), "{seen}");
    assert!(
        seen.lines()
            .any(|l| l == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "a standard PATH: {seen}"
    );

    if !sandboxed() {
        eprintln!("skipping the sandbox checks: bubblewrap cannot run here");
        return;
    }
    // The host's go is not found, even where the user asks for $PATH.
    let o = env
        .run(&[
            "run",
            "-path",
            "$PATH,$WORKDIR/go/bin",
            &name,
            "go",
            "version",
        ])
        .unwrap();
    assert_ne!(o.code, 0, "a go ran: {}{}", o.stdout, o.stderr);
    assert!(
        !o.stdout.contains("go version"),
        "the host's go ran: {}",
        o.stdout
    );
    let o = env
        .run(&[
            "run",
            &name,
            "/bin/sh",
            "-c",
            "command -v go gofmt; ls -a /; ls /proc | grep -c '^[0-9]'",
        ])
        .unwrap();
    let out: Vec<&str> = o.stdout.lines().collect();
    // (The buildlet binary is bound at its own path, which may show its
    // directories, empty but for it.)
    for hidden in ["home", "root", "var", "run", "srv", "opt", "mnt", "media"] {
        assert!(!out.contains(&hidden), "/{hidden} is visible: {}", o.stdout);
    }
    let procs: usize = out.last().unwrap().parse().unwrap();
    assert!(
        procs < 10,
        "the instance sees {procs} processes: {}",
        o.stdout
    );

    if installed_go() {
        // Push a (tiny) tree: the daemon then asks for the bootstrap
        // toolchain, found although the daemon's GOROOT names nothing.
        let tree = env.work().join("mygo");
        std::fs::create_dir_all(tree.join("src")).unwrap();
        std::fs::write(tree.join("src/make.bash"), "#!/bin/sh\n").unwrap();
        std::fs::write(tree.join("VERSION"), "devel\n").unwrap();
        let o = env
            .run_with(
                &["push", &name],
                &[("GOROOT", tree.to_str().unwrap())],
                None,
            )
            .unwrap();
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v = env.ok(&["run", &name, "go1.4/bin/go", "version"]).unwrap();
        assert!(v.starts_with("go version go1.19"), "{v}");
        let link = env.ok(&["run", &name, "/bin/readlink", "go1.4"]).unwrap();
        assert_eq!(link.trim(), "/gomote/bootstrap/0");
        // The bootstrap's std sources (a link out of its directory on
        // Debian) are there too, as building cmd/dist needs.
        env.ok(&["run", &name, "/bin/ls", "go1.4/src/fmt/print.go"])
            .unwrap();
    }

    // What the user pushes is what runs.
    let fake = env.work().join("fakego");
    std::fs::write(&fake, "#!/bin/sh\necho pushed go \"$@\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["put", &name, fake.to_str().unwrap(), "go/bin/go"])
        .unwrap();
    let v = env
        .ok(&[
            "run",
            "-path",
            "$PATH,$WORKDIR/go/bin",
            &name,
            "go",
            "version",
        ])
        .unwrap();
    assert_eq!(v, "pushed go version\n");
}

#[test]
fn a_killed_buildlet_is_reported_dead_at_once() {
    let env = GomoteEnv::new("").unwrap();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    let state = env.dir.path().join("data/gomote/coordinator");
    let pid = buildlet_pid(&state, &name).expect("the instance's buildlet");
    signal(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let t = Instant::now();
    // Heartbeats here are 2 s apart and need three misses; the pool's own
    // report comes first, and says what happened.
    let why = poll(Duration::from_secs(20), || {
        let o = env.run(&["ping", &name]).unwrap();
        (o.code != 0).then(|| format!("{}{}", o.stdout, o.stderr))
    })
    .expect("the dead instance still answers ping");
    eprintln!("noticed after {:?}", t.elapsed());
    assert!(why.contains("died at"), "{why}");
    assert!(
        why.contains("its buildlet process (pid") && why.contains("exited"),
        "{why}"
    );
    // `gomote list` marks it at once, and no longer as kept alive.
    let list = env.ok(&["list"]).unwrap();
    let line = list.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(line.contains("\tDEAD since "), "{list}");
    assert!(!line.contains("kept alive"), "{list}");
    let json = env.ok(&["list", "-json"]).unwrap();
    assert!(json.contains("\"dead\""), "{json}");
}

#[tokio::test]
async fn an_orphaned_buildlet_halts_with_its_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("buildlet").unwrap())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--halt-after-idle",
            "1500ms",
            "--workdir",
        ])
        .arg(dir.path().join("wd"))
        .env("BUILDLET_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = format!("http://{}", line.trim());
    let http = reqwest::Client::new();

    // Requests keep it alive well past the idle time.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        http.get(format!("{base}/healthz")).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(child.try_wait(), Ok(None)), "halted while in use");
    }

    // A command still running when it goes quiet dies with it.
    let mut resp = http
        .post(format!("{base}/exec"))
        .form(&[
            ("cmd", "/bin/sh"),
            ("mode", "sys"),
            ("cmdArg", "-c"),
            ("cmdArg", "echo $$; exec sleep 60"),
        ])
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    let sleep: i32 = String::from_utf8_lossy(&first).trim().parse().unwrap();
    assert!(pid_alive(sleep));
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            child.try_wait(),
            Ok(Some(_))
        )),
        "the buildlet did not halt"
    );
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(sleep)),
        "its command outlived it"
    );
    drop(resp);
}
