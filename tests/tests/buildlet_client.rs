//! `gomote_shared::buildlet_client` against the real `buildlet` binary:
//! streamed exec output and the `Process-State` outcome, exec failures of
//! both kinds, a file round trip through every transfer endpoint, auth,
//! halt, and the heartbeat noticing a killed buildlet.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use flate2::read::GzDecoder;
use futures_util::StreamExt;
use gomote_shared::buildlet_client::{
    BuildletClient, Error, ExecEvent, ExecOpts, ExecOutcome, Health, Heartbeat, HeartbeatConfig,
};
use gomote_tests::{Buildlet, BuildletOpts, signal, tgz};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_for(b: &Buildlet) -> Result<BuildletClient> {
    Ok(BuildletClient::new(&b.addr, b.password.clone())?)
}

/// Serves `body` once over HTTP on a loopback port; returns its URL.
async fn serve_once(body: Vec<u8>) -> Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&body).await;
        let _ = s.shutdown().await;
    });
    Ok(format!("http://{addr}/archive.tgz"))
}

#[tokio::test]
async fn client_status_and_workdir() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    assert_eq!(c.status().await?, 29);
    assert_eq!(c.workdir().await?, b.workdir.display().to_string());
    Ok(())
}

#[tokio::test]
async fn client_exec_streams_output_then_ok() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    let opts = ExecOpts {
        env: vec!["GREETING=hello".into()],
        ..ExecOpts::new(
            "/bin/sh",
            ["-c", "echo \"$GREETING one\"; sleep 1; echo two"],
        )
    };
    let started = Instant::now();
    let mut stream = c.exec(&opts).await?;
    // The first line must arrive while the command is still sleeping.
    let first = stream.next().await.context("stream ended early")??;
    let first_at = started.elapsed();
    let ExecEvent::Output(first) = first else {
        bail!("expected output first, got {first:?}");
    };
    ensure!(
        first_at < Duration::from_millis(900),
        "first chunk took {first_at:?}: output is not streamed"
    );
    let mut out = first.to_vec();
    let mut outcome = None;
    while let Some(ev) = stream.next().await {
        match ev? {
            ExecEvent::Output(b) => {
                ensure!(outcome.is_none(), "output after the outcome");
                out.extend_from_slice(&b);
            }
            ExecEvent::Done(o) => outcome = Some(o),
        }
    }
    assert_eq!(String::from_utf8(out)?, "hello one\ntwo\n");
    assert_eq!(outcome, Some(ExecOutcome::Ok));
    Ok(())
}

#[tokio::test]
async fn client_exec_nonzero_exit_is_failed_outcome() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    let opts = ExecOpts::new("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"]);
    let (out, outcome) = c.exec(&opts).await?.collect_output().await?;
    assert_eq!(outcome, ExecOutcome::Failed("exit status 3".into()));
    let out = String::from_utf8(out)?;
    assert!(out.contains("out\n") && out.contains("err\n"), "{out:?}");

    // The outcome alone, with the output discarded.
    let outcome = c.exec(&opts).await?.outcome().await?;
    assert_eq!(outcome, ExecOutcome::Failed("exit status 3".into()));
    Ok(())
}

#[tokio::test]
async fn client_exec_unknown_command_is_an_error() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    let err = c
        .exec(&ExecOpts::new("no-such-command-gomote", ["x"]))
        .await
        .err()
        .context("exec of a missing command succeeded")?;
    assert_eq!(err.status().map(|s| s.as_u16()), Some(422), "{err}");
    let Error::Status { body, .. } = &err else {
        bail!("want a status error, got {err:?}");
    };
    assert!(body.contains("not found"), "{body:?}");
    Ok(())
}

#[tokio::test]
async fn client_exec_path_and_debug() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    let script = ["-c", "echo \"[$PATH]\""];

    // Some(empty) clears PATH ($EMPTY on the wire).
    let opts = ExecOpts {
        path: Some(vec![]),
        ..ExecOpts::new("/bin/sh", script)
    };
    let (out, outcome) = c.exec(&opts).await?.collect_output().await?;
    assert_eq!(outcome, ExecOutcome::Ok);
    assert_eq!(String::from_utf8(out)?, "[]\n");

    // None leaves it alone.
    let (out, _) = c
        .exec(&ExecOpts::new("/bin/sh", script))
        .await?
        .collect_output()
        .await?;
    let out = String::from_utf8(out)?;
    assert!(out.len() > 3 && out.contains("/bin"), "{out:?}");

    // Entries are expanded by the buildlet.
    let opts = ExecOpts {
        path: Some(vec!["$WORKDIR/bin".into(), "/usr/bin".into()]),
        ..ExecOpts::new("/bin/sh", script)
    };
    let (out, _) = c.exec(&opts).await?.collect_output().await?;
    assert_eq!(
        String::from_utf8(out)?,
        format!("[{}/bin:/usr/bin]\n", b.workdir.display())
    );

    // debug prefixes a description of the command; system mode runs in the
    // work directory.
    let opts = ExecOpts {
        debug: true,
        system_level: true,
        ..ExecOpts::new("/bin/pwd", Vec::<String>::new())
    };
    let (out, outcome) = c.exec(&opts).await?.collect_output().await?;
    assert_eq!(outcome, ExecOutcome::Ok);
    let out = String::from_utf8(out)?;
    assert!(out.starts_with(":: Running /bin/pwd"), "{out:?}");
    assert!(
        out.ends_with(&format!("{}\n", b.workdir.display())),
        "{out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn client_file_round_trip() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;

    c.put("sub/hello.sh", 0o755, "#!/bin/sh\necho hi\n").await?;
    let body = b.workdir.join("sub/hello.sh");
    assert_eq!(std::fs::read_to_string(&body)?, "#!/bin/sh\necho hi\n");
    // A relative command with a separator runs from the work directory.
    let (out, _) = c
        .exec(&ExecOpts::new("sub/hello.sh", Vec::<String>::new()))
        .await?
        .collect_output()
        .await?;
    assert_eq!(out, b"hi\n");

    let archive = tgz(&[("a/b.txt", b"bee"), ("a/c.txt", b"sea"), ("top.txt", b"t")])?;
    c.put_tar("t", Bytes::from(archive)).await?;
    c.put_tar("skipme", Bytes::from(tgz(&[("x.txt", b"x")])?))
        .await?;

    let lines = c.list_dir(".", true, true, &["skipme"]).await?;
    let find = |name: &str| lines.iter().find(|l| l.split('\t').nth(1) == Some(name));
    let hello = find("sub/hello.sh").context("sub/hello.sh not listed")?;
    let fields: Vec<&str> = hello.split('\t').collect();
    assert_eq!(fields[0], "-rwxr-xr-x", "{hello:?}");
    assert_eq!(fields[2], "18", "{hello:?}");
    assert_eq!(
        fields[4],
        hex::encode(Sha1::digest(b"#!/bin/sh\necho hi\n")),
        "{hello:?}"
    );
    ensure!(find("t/a/").is_some(), "t/a/ not listed: {lines:?}");
    ensure!(
        find("t/a/b.txt").is_some(),
        "t/a/b.txt not listed: {lines:?}"
    );
    ensure!(
        !lines.iter().any(|l| l.contains("skipme")),
        "skipped dir listed: {lines:?}"
    );
    // Non-recursive, no digest: subdirectories listed but not entered.
    let top = c.list_dir("t", false, false, &[] as &[&str]).await?;
    let names: Vec<&str> = top.iter().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(names, ["a/", "top.txt"]);
    assert_eq!(top[1].split('\t').count(), 4, "{top:?}");

    // Read the directory back as a tarball.
    let mut tgz_bytes = Vec::new();
    let mut s = Box::pin(c.get_tar("t").await?);
    while let Some(chunk) = s.next().await {
        tgz_bytes.extend_from_slice(&chunk?);
    }
    let mut ar = tar::Archive::new(GzDecoder::new(&tgz_bytes[..]));
    let mut got = Vec::new();
    for e in ar.entries()? {
        let mut e = e?;
        let name = e.path()?.display().to_string();
        let mut body = String::new();
        e.read_to_string(&mut body)?;
        got.push((name, body));
    }
    got.sort();
    let want: Vec<(String, String)> = [
        ("a/", ""),
        ("a/b.txt", "bee"),
        ("a/c.txt", "sea"),
        ("top.txt", "t"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);

    c.remove_all(&["sub", "t/a"]).await?;
    assert!(!b.workdir.join("sub").exists());
    assert!(!b.workdir.join("t/a").exists());
    assert!(b.workdir.join("t/top.txt").exists());
    c.remove_all::<&str>(&[]).await?;

    // Errors carry the status: a missing directory, an escaping path.
    let err = c
        .get_tar("missing")
        .await
        .err()
        .context("get_tar of a missing dir succeeded")?;
    ensure!(err.status().is_some(), "{err:?}");
    let err = c
        .remove_all(&["../x"])
        .await
        .err()
        .context("remove_all ../x succeeded")?;
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400), "{err}");
    let err = c
        .put("../escape", 0o644, "x")
        .await
        .err()
        .context("put ../escape succeeded")?;
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400), "{err}");
    Ok(())
}

#[tokio::test]
async fn client_put_tar_from_url() -> Result<()> {
    let b = Buildlet::start()?;
    let c = client_for(&b)?;
    let url = serve_once(tgz(&[("bin/go", b"fake go")])?).await?;
    let skipped = c.put_tar_from_url("go1.4", &url).await?;
    assert!(!skipped);
    assert_eq!(std::fs::read(b.workdir.join("go1.4/bin/go"))?, b"fake go");
    // go1.4 exists now, so the buildlet skips the download (nothing serves
    // this URL any more).
    assert!(c.put_tar_from_url("go1.4", &url).await?);
    Ok(())
}

#[tokio::test]
async fn client_password() -> Result<()> {
    let b = Buildlet::start_with(BuildletOpts {
        password: Some("s3cret".into()),
        ..Default::default()
    })?;
    assert_eq!(client_for(&b)?.status().await?, 29);

    for password in [None, Some("wrong".to_string())] {
        let c = BuildletClient::new(&b.addr, password)?;
        let err = c.status().await.err().context("status without password")?;
        assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
        let err = c
            .exec(&ExecOpts::new("/bin/true", Vec::<String>::new()))
            .await
            .err()
            .context("exec without password")?;
        assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
    }
    Ok(())
}

#[tokio::test]
async fn client_halt_stops_buildlet() -> Result<()> {
    let mut b = Buildlet::start()?;
    client_for(&b)?.halt().await?;
    ensure!(
        b.wait_exit(Duration::from_secs(10)),
        "buildlet still running"
    );
    Ok(())
}

#[tokio::test]
async fn client_heartbeat_notices_killed_buildlet() -> Result<()> {
    let b = Buildlet::start()?;
    let hb = Heartbeat::spawn(
        client_for(&b)?,
        HeartbeatConfig {
            interval: Duration::from_millis(100),
            max_failures: 3,
        },
    );
    // A live buildlet stays alive through five probes. Time must pass for
    // that (Alive is also the state before any probe), but a wrong verdict
    // ends the wait at once.
    let early = tokio::time::timeout(Duration::from_millis(500), hb.dead()).await;
    ensure!(early.is_err(), "live buildlet declared dead: {early:?}");
    assert_eq!(hb.health(), Health::Alive);

    signal(i32::try_from(b.pid())?, nix::sys::signal::Signal::SIGKILL)?;
    let started = Instant::now();
    let verdict = tokio::time::timeout(Duration::from_secs(10), hb.dead())
        .await
        .context("heartbeat never declared the buildlet dead")?;
    let Health::Dead { error, .. } = verdict else {
        bail!("want Dead, got {verdict:?}");
    };
    // Three failures in a row, not one: at least two intervals after the
    // kill (less a little for timer rounding).
    ensure!(
        started.elapsed() >= Duration::from_millis(180),
        "declared dead after {:?}",
        started.elapsed()
    );
    assert!(error.contains("status"), "{error}");
    Ok(())
}
