//! TLS between the daemon and a standalone coordinator: pinning a
//! self-signed certificate at login, commands through it, refusals of
//! unknown and changed certificates, and plaintext only on loopback.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use gomote_tests::{Coordinator, GomoteEnv, bin, builder, local_host_type};

fn config() -> String {
    format!(
        "idle_timeout_secs = 600\nreap_interval_secs = 1\nheartbeat_interval_secs = 2\n\
         [[host_types]]\nname = \"{}\"\ncapacity = 2\n",
        local_host_type()
    )
}

fn tls_coordinator() -> Coordinator {
    Coordinator::start_with(&config(), &["--tls-self-signed"]).unwrap()
}

fn login(env: &GomoteEnv, c: &Coordinator, token: &str, fp: Option<&str>) -> gomote_tests::Output {
    let url = c.url();
    let mut args = vec!["-server", url.as_str(), "login"];
    if let Some(fp) = fp {
        args.extend(["-fingerprint", fp]);
    }
    env.run_with(&args, &[], Some(token.as_bytes())).unwrap()
}

#[test]
fn tls_pinned_login_and_commands() {
    let c = tls_coordinator();
    assert!(c.url().starts_with("https://"));
    let token = c.token("alice@example.com").unwrap();
    let fp = c.fingerprint().unwrap();
    let env = GomoteEnv::new("").unwrap();

    // No terminal, no -fingerprint: one line telling what to pass.
    let o = login(&env, &c, &token, None);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("is not trusted"), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("-fingerprint {fp}")),
        "{}",
        o.stderr
    );

    // A wrong fingerprint is refused naming both.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let o = login(&env, &c, &token, Some(wrong));
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(wrong) && o.stderr.contains(&fp),
        "{}",
        o.stderr
    );

    // The right one pins it.
    let o = login(&env, &c, &token, Some(&fp));
    assert_eq!(o.code, 0, "{o:?}");

    // create, push, run through TLS.
    let url = c.url();
    let name = env
        .ok(&["-server", &url, "create", &builder()])
        .unwrap()
        .trim()
        .to_string();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("src")).unwrap();
    std::fs::write(r.join("VERSION"), "go1.99-tls\n").unwrap();
    std::fs::write(r.join("src/make.bash"), "#!/bin/sh\necho made\n").unwrap();
    std::fs::set_permissions(
        r.join("src/make.bash"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(r.join("src/hello.txt"), "through TLS\n").unwrap();
    let o = env
        .run_with(
            &["-server", &url, "push", &name],
            &[("GOROOT", r.to_str().unwrap())],
            None,
        )
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    let out = env
        .ok(&[
            "-server",
            &url,
            "run",
            &name,
            "/bin/cat",
            "go/src/hello.txt",
        ])
        .unwrap();
    assert_eq!(out, "through TLS\n");
}

/// At a terminal (a pty from `script`), login asks and pins on `yes`.
#[test]
fn tls_login_asks_at_a_terminal() {
    use std::io::Write as _;
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no script(1): skipped");
        return;
    }
    let c = tls_coordinator();
    let token = c.token("carol@example.com").unwrap();
    let fp = c.fingerprint().unwrap();
    let env = GomoteEnv::new("").unwrap();
    let line = format!(
        "{} -server {} login",
        bin("gomote").unwrap().display(),
        c.url()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env.work())
        .envs(env.env_vars())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The token, then the answer; the pty hands them over a line at a time.
    let mut w = child.stdin.take().unwrap();
    write!(w, "{token}\nyes\n").unwrap();
    let o = child.wait_with_output().unwrap();
    drop(w);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("is not trusted: {fp}")) && out.contains("Trust it? (yes/no)"),
        "{out}"
    );
    assert!(out.contains("Logged in to"), "{out}");
    env.ok(&["-server", &c.url(), "list"]).unwrap();
}

#[test]
fn tls_changed_certificate_refused_for_commands() {
    // The same address before and after, so the pin applies.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    // A coordinator on a fixed port: run it by hand.
    let state = tempfile::tempdir().unwrap();
    let cfg = state.path().join("config.toml");
    std::fs::write(&cfg, config()).unwrap();
    let spawn = || {
        Command::new(bin("gomote-coordinator").unwrap())
            .args(["serve", "--tls-self-signed", "--listen", &listen, "--state"])
            .arg(state.path().join("state"))
            .arg("--config")
            .arg(&cfg)
            .env("GOMOTE_COORDINATOR_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_up = || {
        for _ in 0..100 {
            if std::net::TcpStream::connect(&listen).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("coordinator did not start");
    };
    let fp_of = || {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(state.path().join("state/tls/cert.pem")).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        gomote_shared::tls::fingerprint(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
    };
    let mut child = spawn();
    wait_up();
    let token = {
        let o = Command::new(bin("gomote-coordinator").unwrap())
            .args(["token", "create", "--state"])
            .arg(state.path().join("state"))
            .args(["--user", "bob@example.com"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let fp = fp_of();
    let url = format!("https://{listen}");
    let env = GomoteEnv::new("").unwrap();
    let o = env
        .run_with(
            &["-server", &url, "login", "-fingerprint", &fp],
            &[],
            Some(token.as_bytes()),
        )
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    env.ok(&["-server", &url, "list"]).unwrap();

    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(state.path().join("state/tls")).unwrap();
    let mut child = spawn();
    wait_up();
    let new_fp = fp_of();
    assert_ne!(fp, new_fp);
    // The daemon's kept connection redials and meets the new certificate;
    // a new daemon would meet it at connect.
    let o = env.run(&["-server", &url, "list"]).unwrap();
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains(&fp) && o.stderr.contains(&new_fp),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(&format!("login -fingerprint {new_fp}")),
        "{}",
        o.stderr
    );
    // Re-pinning fixes it.
    let o = env
        .run_with(
            &["-server", &url, "login", "-fingerprint", &new_fp],
            &[],
            Some(token.as_bytes()),
        )
        .unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    env.ok(&["-server", &url, "list"]).unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tls_plaintext_off_loopback_refused() {
    let state = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        Command::new(bin("gomote-coordinator").unwrap())
            .args(["serve", "--listen", "0.0.0.0:0", "--state"])
            .arg(state.path())
            .args(extra)
            .env("GOMOTE_COORDINATOR_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let o = serve(&["--plaintext"]).wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");

    // --insecure-plaintext serves: it prints its address.
    let mut child = serve(&["--insecure-plaintext"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.trim().starts_with("0.0.0.0:"), "{line:?}");

    // By default, off loopback, it makes a certificate and says so.
    let mut child = serve(&[]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fingerprint SHA256:"), "{err}");
    assert!(state.path().join("tls/cert.pem").exists());
}
