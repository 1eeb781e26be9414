//! The real `gomote-coordinator` (starting real buildlets) called through a
//! tonic client: every RPC's happy path, ownership and auth codes, exit
//! codes, expiry, restart, a dead buildlet, transfers and their refusals,
//! and the creation queue.

use std::time::Duration;

use futures_util::StreamExt;
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::*;
use gomote_tests::grpc::{self, Client};
use gomote_tests::{Coordinator, buildlet_pid, eventually_async, poll_async, signal, tgz_names};
use tonic::{Code, Status};

async fn client(c: &Coordinator, token: Option<&str>) -> Client {
    grpc::client(c, token).await.unwrap()
}

fn config(extra: &str) -> String {
    format!(
        r#"
idle_timeout_secs = 600
reap_interval_secs = 1
heartbeat_interval_secs = 1
{extra}
[[host_types]]
name = "host-test"
capacity = 4
[[host_types]]
name = "host-other"
capacity = 1
[[builders]]
name = "linux-amd64"
host_type = "host-test"
env = ["GOMOTE_TEST_BUILDER=native"]
[[builders]]
name = "linux-amd64-race"
host_type = "host-test"
env = ["GOMOTE_TEST_BUILDER=race"]
[[builders]]
name = "other-os"
host_type = "host-other"
"#
    )
}

/// Creates an instance and returns the COMPLETE message's Instance, with
/// the WAITING messages seen before it.
async fn create(cl: &mut Client, builder: &str) -> (Instance, Vec<i64>) {
    create_seen(cl, builder, |_| {}).await
}

/// [`create`], calling `seen` with each message's `waiters_ahead` as it
/// arrives (so a test can tell when a create is queued).
async fn create_seen(
    cl: &mut Client,
    builder: &str,
    mut seen: impl FnMut(i64),
) -> (Instance, Vec<i64>) {
    let mut s = cl
        .create_instance(CreateInstanceRequest {
            builder_type: builder.into(),
            experiment_option: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut waits = Vec::new();
    let mut done = None;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        if m.status == CreateStatus::Complete as i32 {
            assert!(done.is_none(), "exactly one COMPLETE");
            done = m.instance;
        } else {
            assert_eq!(m.status, CreateStatus::Waiting as i32);
            assert!(m.instance.is_none());
            seen(m.waiters_ahead);
            waits.push(m.waiters_ahead);
        }
    }
    (done.expect("a COMPLETE message"), waits)
}

async fn exec(cl: &mut Client, id: &str, cmd: &str, args: &[&str]) -> (String, Result<(), Status>) {
    let req = ExecuteCommandRequest {
        gomote_id: id.into(),
        command: cmd.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        system_level: cmd.starts_with('/'),
        ..Default::default()
    };
    exec_req(cl, req).await
}

async fn exec_req(cl: &mut Client, req: ExecuteCommandRequest) -> (String, Result<(), Status>) {
    let mut s = match cl.execute_command(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return (String::new(), Err(e)),
    };
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        match m {
            Ok(m) => out.extend_from_slice(&m.output),
            Err(e) => return (String::from_utf8_lossy(&out).into_owned(), Err(e)),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), Ok(()))
}

/// The number of entries in each message of a streamed listing of `dir`.
async fn streamed_sizes(cl: &mut Client, id: &str, dir: &str) -> Vec<usize> {
    let mut s = cl
        .list_directory_streaming(ListDirectoryRequest {
            gomote_id: id.into(),
            directory: dir.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut sizes = Vec::new();
    while let Some(m) = s.next().await {
        sizes.push(m.unwrap().entries.len());
    }
    sizes
}

fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    gomote_tests::tgz(files).unwrap()
}

/// Uploads `data` as Go's client does; returns the object URL.
async fn upload(cl: &mut Client, data: Vec<u8>) -> String {
    let g = cl
        .upload_file(UploadFileRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in &g.fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name(g.object_name.clone()),
    );
    let r = reqwest::Client::new()
        .post(&g.url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    format!("{}{}", g.url, g.object_name)
}

#[tokio::test]
async fn every_rpc_happy_path() {
    let boot = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(boot.path().join("bin")).unwrap();
    std::fs::write(boot.path().join("bin/go"), "#!/bin/sh\necho bootstrap go\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        boot.path().join("bin/go"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let cfg = config("").replace(
        "env = [\"GOMOTE_TEST_BUILDER=native\"]",
        &format!(
            "env = [\"GOMOTE_TEST_BUILDER=native\"]\nbootstrap = {:?}",
            boot.path().display().to_string()
        ),
    );
    let c = Coordinator::start(&cfg).unwrap();
    let token = c.token("alice@example.com").unwrap();
    let mut cl = client(&c, Some(&token)).await;

    cl.authenticate(AuthenticateRequest {}).await.unwrap();
    let builders = cl
        .list_swarming_builders(ListSwarmingBuildersRequest {})
        .await
        .unwrap()
        .into_inner()
        .builders;
    // Ours and their gotip- forms, sorted (the built-in builders are there
    // too: configured ones add to them).
    for b in ["linux-amd64", "linux-amd64-race", "other-os"] {
        assert!(
            builders.contains(&b.to_string()) && builders.contains(&format!("gotip-{b}")),
            "{builders:?}"
        );
    }
    assert!(builders.is_sorted(), "{builders:?}");

    let (inst, waits) = create(&mut cl, "linux-amd64").await;
    assert!(waits.is_empty());
    assert_eq!(inst.gomote_id, "alice-linux-amd64-0");
    assert_eq!(inst.builder_type, "linux-amd64");
    assert_eq!(inst.host_type, "host-test");
    assert!(
        std::path::Path::new(&inst.working_dir).is_absolute(),
        "{}",
        inst.working_dir
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((inst.expires - now - 600).abs() <= 5, "expires in ~10 min");
    let id = inst.gomote_id.clone();
    let (second, _) = create(&mut cl, "linux-amd64").await;
    assert_eq!(second.gomote_id, "alice-linux-amd64-1", "lowest free n");

    let list = grpc::instances(&mut cl).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|i| i.gomote_id.as_str()).collect();
    assert_eq!(ids, vec!["alice-linux-amd64-0", "alice-linux-amd64-1"]);
    assert!(list.iter().all(|i| i.working_dir.is_empty()));
    cl.instance_alive(InstanceAliveRequest {
        gomote_id: id.clone(),
    })
    .await
    .unwrap();

    // The builder's environment applies; imitating a builder of the same
    // host type swaps it; another host type is refused.
    let (out, res) = exec(
        &mut cl,
        &id,
        "/bin/sh",
        &["-c", "echo $GOMOTE_TEST_BUILDER"],
    )
    .await;
    assert_eq!((out.as_str(), res.is_ok()), ("native\n", true));
    let mut req = ExecuteCommandRequest {
        gomote_id: id.clone(),
        command: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "echo $GOMOTE_TEST_BUILDER $EXTRA; echo $PATH".into(),
        ],
        system_level: true,
        append_environment: vec!["EXTRA=yes".into()],
        imitate_host_type: "linux-amd64-race".into(),
        path: vec!["$PATH".into(), "$WORKDIR/go/bin".into()],
        ..Default::default()
    };
    let (out, res) = exec_req(&mut cl, req.clone()).await;
    res.unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("race yes"));
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with(&format!("{}/go/bin", inst.working_dir))
    );
    req.imitate_host_type = "other-os".into();
    let (_, res) = exec_req(&mut cl, req).await;
    assert_eq!(res.unwrap_err().code(), Code::InvalidArgument);

    // Upload a tarball, then write it; write one file; list; remove; read back.
    let url = upload(
        &mut cl,
        tgz(&[("src/a.go", b"package a\n"), ("src/b.go", b"package b\n")]),
    )
    .await;
    cl.write_tgz_from_url(WriteTgzFromUrlRequest {
        gomote_id: id.clone(),
        url,
        directory: "go".into(),
    })
    .await
    .unwrap();
    let url = upload(&mut cl, b"#!/bin/sh\necho written\n".to_vec()).await;
    cl.write_file_from_url(WriteFileFromUrlRequest {
        gomote_id: id.clone(),
        url,
        filename: "bin/tool".into(),
        mode: 0o755,
    })
    .await
    .unwrap();
    let (out, res) = exec(&mut cl, &id, "bin/tool", &[]).await;
    assert_eq!((out.as_str(), res.is_ok()), ("written\n", true));
    let ls = cl
        .list_directory(ListDirectoryRequest {
            gomote_id: id.clone(),
            directory: "go".into(),
            recursive: true,
            digest: true,
            skip_files: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(ls.len(), 3, "{ls:?}");
    assert!(ls[0].starts_with("drwxr-xr-x\tsrc/"), "{ls:?}");
    assert!(ls[1].starts_with("-rw-r--r--\tsrc/a.go\t10\t"), "{ls:?}");
    assert_eq!(ls[1].split('\t').nth(4).unwrap().len(), 40, "sha1 digest");

    // Streaming: 100 entries a message; nothing for an empty directory.
    let many: Vec<(String, Vec<u8>)> = (0..250)
        .map(|i| (format!("many/f{i:03}"), vec![b'x']))
        .collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let url = upload(&mut cl, tgz(&refs)).await;
    cl.write_tgz_from_url(WriteTgzFromUrlRequest {
        gomote_id: id.clone(),
        url,
        directory: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        streamed_sizes(&mut cl, &id, "many").await,
        vec![100, 100, 50]
    );
    let (_, res) = exec(&mut cl, &id, "/bin/mkdir", &["-p", "empty"]).await;
    res.unwrap();
    assert_eq!(
        streamed_sizes(&mut cl, &id, "empty").await,
        Vec::<usize>::new(),
        "no message for an empty listing"
    );
    let missing = cl
        .list_directory(ListDirectoryRequest {
            gomote_id: id.clone(),
            directory: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());

    cl.remove_files(RemoveFilesRequest {
        gomote_id: id.clone(),
        paths: vec!["many".into()],
    })
    .await
    .unwrap();
    let bad = cl
        .remove_files(RemoveFilesRequest {
            gomote_id: id.clone(),
            paths: vec!["../x".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let url = cl
        .read_tgz_to_url(ReadTgzToUrlRequest {
            gomote_id: id.clone(),
            directory: "go".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        tgz_names(&body).unwrap(),
        vec!["src/", "src/a.go", "src/b.go"]
    );
    let tampered = url.replace("sig=", "sig=00");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);

    // AddBootstrap puts the builder's toolchain in go1.4.
    let b = cl
        .add_bootstrap(AddBootstrapRequest {
            gomote_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!b.bootstrap_go_url.is_empty());
    let (out, res) = exec(&mut cl, &id, "go1.4/bin/go", &[]).await;
    assert_eq!((out.as_str(), res.is_ok()), ("bootstrap go\n", true));
    let (_, none) = (
        0,
        cl.add_bootstrap(AddBootstrapRequest {
            gomote_id: second.gomote_id.clone(),
        })
        .await
        .unwrap(),
    );
    assert!(!none.into_inner().bootstrap_go_url.is_empty());

    cl.destroy_instance(DestroyInstanceRequest {
        gomote_id: id.clone(),
    })
    .await
    .unwrap();
    let gone = cl
        .instance_alive(InstanceAliveRequest {
            gomote_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(
        !std::path::Path::new(&inst.working_dir).exists(),
        "work directory removed"
    );
    // The freed name is reused.
    let (again, _) = create(&mut cl, "linux-amd64").await;
    assert_eq!(again.gomote_id, "alice-linux-amd64-0");
}

#[tokio::test]
async fn auth_ownership_and_exit_codes() {
    let c = Coordinator::start(&config("")).unwrap();
    let alice = c.token("alice@example.com").unwrap();
    let bob = c.token("bob@example.com").unwrap();
    let mut a = client(&c, Some(&alice)).await;
    let mut b = client(&c, Some(&bob)).await;

    let mut anon = client(&c, None).await;
    assert_eq!(
        anon.authenticate(AuthenticateRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut wrong = client(&c, Some("gmt_not_a_real_token")).await;
    assert_eq!(
        wrong
            .list_instances(ListInstancesRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let err = wrong
        .create_instance(CreateInstanceRequest {
            builder_type: "linux-amd64".into(),
            experiment_option: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let bad = a
        .create_instance(CreateInstanceRequest {
            builder_type: "nosuch".into(),
            experiment_option: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("linux-amd64"),
        "lists the offered builders: {}",
        bad.message()
    );
    let empty = a
        .create_instance(CreateInstanceRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    let (inst, _) = create(&mut a, "linux-amd64").await;
    let id = inst.gomote_id;
    assert_eq!(
        b.instance_alive(InstanceAliveRequest {
            gomote_id: id.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let (_, res) = exec(&mut b, &id, "/bin/true", &[]).await;
    assert_eq!(res.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        b.destroy_instance(DestroyInstanceRequest {
            gomote_id: id.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    assert!(grpc::instances(&mut b).await.unwrap().is_empty());
    assert_eq!(
        b.instance_alive(InstanceAliveRequest {
            gomote_id: "bob-nosuch-0".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        a.instance_alive(InstanceAliveRequest {
            gomote_id: String::new()
        })
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );

    // A failing command: Unknown, with its output still streamed.
    let (out, res) = exec(&mut a, &id, "/bin/sh", &["-c", "echo before; exit 7"]).await;
    assert_eq!(out, "before\n");
    let e = res.unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert_eq!(e.message(), "command execution failed: exit status 7");
    // A command that cannot start: Aborted.
    let (_, res) = exec(&mut a, &id, "no-such-command-anywhere", &[]).await;
    assert_eq!(res.unwrap_err().code(), Code::Aborted);

    // Transfers: bob cannot use alice's object; forged and foreign refused.
    let url = upload(&mut a, tgz(&[("x", b"x")])).await;
    let e = b
        .write_tgz_from_url(WriteTgzFromUrlRequest {
            gomote_id: id.clone(),
            url: url.clone(),
            directory: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = a
        .write_tgz_from_url(WriteTgzFromUrlRequest {
            gomote_id: id.clone(),
            url: "http://192.0.2.1/evil.tgz".into(),
            directory: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
    let e = a
        .write_file_from_url(WriteFileFromUrlRequest {
            gomote_id: id.clone(),
            url: "http://127.0.0.1:1/x".into(),
            filename: "f".into(),
            mode: 0o644,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = a
        .write_tgz_from_url(WriteTgzFromUrlRequest {
            gomote_id: id.clone(),
            url: String::new(),
            directory: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let g = a
        .upload_file(UploadFileRequest {})
        .await
        .unwrap()
        .into_inner();
    let post = |fields: std::collections::HashMap<String, String>| {
        let url = g.url.clone();
        let name = g.object_name.clone();
        async move {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in fields {
                form = form.text(k, v);
            }
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(b"data".to_vec()).file_name(name),
            );
            reqwest::Client::new()
                .post(url)
                .multipart(form)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut forged = g.fields.clone();
    forged.insert("x-gomote-signature".into(), "0".repeat(64));
    assert_eq!(post(forged).await, 403);
    let mut other_key = g.fields.clone();
    other_key.insert("key".into(), "someone-elses-object".into());
    assert_eq!(post(other_key).await, 400);
    assert_eq!(post(g.fields.clone()).await, 204);
}

#[tokio::test]
async fn queue_reports_waiters_and_serves_in_order() {
    let c = Coordinator::start(&config("")).unwrap();
    let t = c.token("carol@example.com").unwrap();
    let mut cl = client(&c, Some(&t)).await;
    let (first, _) = create(&mut cl, "other-os").await; // capacity 1
    let mut cl2 = cl.clone();
    let (queued_tx, mut queued) = tokio::sync::mpsc::unbounded_channel();
    let waiter = tokio::spawn(async move {
        create_seen(&mut cl2, "other-os", |ahead| {
            let _ = queued_tx.send(ahead);
        })
        .await
    });
    // The second create says it is waiting, and keeps waiting.
    let ahead = tokio::time::timeout(Duration::from_secs(30), queued.recv())
        .await
        .expect("no WAITING message for the second create");
    assert_eq!(ahead, Some(0));
    assert!(
        !waiter.is_finished(),
        "second create must wait for capacity"
    );
    cl.destroy_instance(DestroyInstanceRequest {
        gomote_id: first.gomote_id.clone(),
    })
    .await
    .unwrap();
    let (second, waits) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waits.first(), Some(&0), "WAITING with 0 ahead: {waits:?}");
    assert_eq!(second.gomote_id, "carol-other-os-0");
}

#[tokio::test]
async fn idle_instances_expire() {
    let cfg = config("").replace("idle_timeout_secs = 600", "idle_timeout_secs = 2");
    let c = Coordinator::start(&cfg).unwrap();
    let t = c.token("dave@example.com").unwrap();
    let mut cl = client(&c, Some(&t)).await;
    let (inst, _) = create(&mut cl, "linux-amd64").await;
    // A running command holds off expiry.
    let (_, res) = exec(&mut cl, &inst.gomote_id, "/bin/sleep", &["3"]).await;
    res.unwrap();
    cl.instance_alive(InstanceAliveRequest {
        gomote_id: inst.gomote_id.clone(),
    })
    .await
    .unwrap();
    assert!(
        eventually_async(Duration::from_secs(10), async || {
            grpc::instances(&mut cl).await.unwrap().is_empty()
        })
        .await,
        "instance never expired"
    );
    // Its buildlet is halted and its directory removed shortly after.
    let dir = std::path::Path::new(&inst.working_dir);
    assert!(
        eventually_async(Duration::from_secs(10), async || !dir.exists()).await,
        "expired instance never cleaned up"
    );
}

#[tokio::test]
async fn restart_keeps_instances_and_dead_buildlet_is_reported() {
    let mut c = Coordinator::start(&config("")).unwrap();
    let t = c.token("erin@example.com").unwrap();
    let mut cl = client(&c, Some(&t)).await;
    let (a, _) = create(&mut cl, "linux-amd64").await;
    let (b, _) = create(&mut cl, "linux-amd64").await;
    c.restart().unwrap();
    let mut cl = client(&c, Some(&t)).await;
    let ids: Vec<String> = grpc::instances(&mut cl)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.gomote_id)
        .collect();
    assert_eq!(ids, vec![a.gomote_id.clone(), b.gomote_id.clone()]);
    let (out, res) = exec(&mut cl, &a.gomote_id, "/bin/echo", &["still here"]).await;
    assert_eq!((out.as_str(), res.is_ok()), ("still here\n", true));

    // Kill b's buildlet: within 30 s (here heartbeats are 1 s apart) every
    // RPC on it says which instance died and when.
    // From outside: in its sandbox the instance has pids of its own.
    let pid = buildlet_pid(&c.state, &b.gomote_id).expect("b's buildlet process");
    signal(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let e = poll_async(Duration::from_secs(30), async || {
        exec(&mut cl, &b.gomote_id, "/bin/true", &[])
            .await
            .1
            .err()
            .filter(|e| e.message().contains("died at"))
    })
    .await
    .expect("dead buildlet not noticed within 30 s");
    assert_eq!(e.code(), Code::Aborted);
    let msg = e.message().to_string();
    assert!(msg.contains(&b.gomote_id), "{msg}");
    let e = cl
        .instance_alive(InstanceAliveRequest {
            gomote_id: b.gomote_id.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("died at"), "{}", e.message());
    // The other instance is unaffected.
    cl.instance_alive(InstanceAliveRequest {
        gomote_id: a.gomote_id.clone(),
    })
    .await
    .unwrap();
}
