//! What a Go developer trips over on day one, against the real
//! `gomote-coordinator`: creations whose client went away leave nothing
//! behind, WAITING counts only other users' requests, BuilderCapacity,
//! Go's builder names as aliases with "did you mean", tombstones of ended
//! instances (only for their owner, across a restart), and a missing
//! directory or command named as such.

use std::time::Duration;

use futures_util::StreamExt;
use gomote_shared::proto::create_instance_response::Status as CreateStatus;
use gomote_shared::proto::*;
use gomote_tests::grpc::{self, Client, Ext};
use gomote_tests::{Coordinator, eventually_async, kill_buildlets_under, poll_async};
use tonic::{Code, Status, Streaming};

async fn client(c: &Coordinator, token: &str) -> Client {
    grpc::client(c, Some(token)).await.unwrap()
}

async fn ext(c: &Coordinator, token: Option<&str>) -> Ext {
    grpc::ext(c, token).await.unwrap()
}

fn config(idle_secs: u64) -> String {
    format!(
        r#"
idle_timeout_secs = {idle_secs}
reap_interval_secs = 1
heartbeat_interval_secs = 1
replace_builtin_builders = true
[[host_types]]
name = "host-test"
capacity = 4
[[host_types]]
name = "host-one"
capacity = 1
[[builders]]
name = "linux-amd64"
host_type = "host-test"
[[builders]]
name = "linux-amd64-race"
host_type = "host-test"
[[builders]]
name = "one"
host_type = "host-one"
"#
    )
}

fn create_req(builder: &str) -> CreateInstanceRequest {
    CreateInstanceRequest {
        builder_type: builder.into(),
        experiment_option: vec![],
    }
}

/// Creates an instance and returns the COMPLETE message's Instance.
async fn create(cl: &mut Client, builder: &str) -> Instance {
    let mut s = cl
        .create_instance(create_req(builder))
        .await
        .unwrap()
        .into_inner();
    let mut done = None;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        if m.status == CreateStatus::Complete as i32 {
            done = m.instance;
        }
    }
    done.expect("a COMPLETE message")
}

/// Opens a CreateInstance stream and returns it with its first message's
/// `waiters_ahead`, which must be a WAITING one.
async fn queued(cl: &mut Client, builder: &str) -> (Streaming<CreateInstanceResponse>, i64) {
    let mut s = cl
        .create_instance(create_req(builder))
        .await
        .unwrap()
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("a message within 30 s")
        .expect("a message")
        .unwrap();
    assert_eq!(m.status, CreateStatus::Waiting as i32, "{m:?}");
    (s, m.waiters_ahead)
}

async fn capacity(e: &mut Ext, builder: &str) -> BuilderCapacityResponse {
    e.builder_capacity(BuilderCapacityRequest {
        builder_type: builder.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn ids(cl: &mut Client) -> Vec<String> {
    grpc::instances(cl)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.gomote_id)
        .collect()
}

async fn alive(cl: &mut Client, id: &str) -> Result<(), Status> {
    cl.instance_alive(InstanceAliveRequest {
        gomote_id: id.into(),
    })
    .await
    .map(|_| ())
}

async fn exec(cl: &mut Client, req: ExecuteCommandRequest) -> Result<String, Status> {
    let mut s = cl.execute_command(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        out.extend_from_slice(&m?.output);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn creations_whose_client_left_leave_nothing_behind() {
    let c = Coordinator::start(&config(600)).unwrap();
    let t = c.token("alice@example.com").unwrap();
    let mut cl = client(&c, &t).await;
    let mut e = ext(&c, Some(&t)).await;
    let first = create(&mut cl, "one").await;

    // Three wait behind it; their clients go away (Ctrl-C on create -count=3).
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(queued(&mut cl, "one").await.0);
    }
    assert_eq!(capacity(&mut e, "one").await.queued, 3);
    drop(streams);
    assert!(
        eventually_async(Duration::from_secs(10), async || {
            capacity(&mut e, "one").await.queued == 0
        })
        .await,
        "waiters not withdrawn"
    );

    // One more waits; its client goes away just as the slot frees, so it
    // goes either while queued or while its instance starts.
    let (waiting, _) = queued(&mut cl, "one").await;
    cl.destroy_instance(DestroyInstanceRequest {
        gomote_id: first.gomote_id.clone(),
    })
    .await
    .unwrap();
    drop(waiting);
    assert!(
        eventually_async(Duration::from_secs(20), async || {
            let cap = capacity(&mut e, "one").await;
            cap.running == 0 && cap.queued == 0
        })
        .await,
        "an instance was left running for a client that went away"
    );
    // Nothing appears afterwards either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ids(&mut cl).await.is_empty());
    assert_eq!(capacity(&mut e, "one").await.running, 0);
}

#[tokio::test]
async fn waiting_counts_only_other_users_requests_and_capacity_says_whose() {
    let c = Coordinator::start(&config(600)).unwrap();
    let (ta, tb) = (
        c.token("alice@example.com").unwrap(),
        c.token("bob@example.com").unwrap(),
    );
    let (mut a, mut b) = (client(&c, &ta).await, client(&c, &tb).await);
    let (mut ea, mut eb) = (ext(&c, Some(&ta)).await, ext(&c, Some(&tb)).await);
    create(&mut a, "one").await;
    // Alice's `create -count=3`: two wait, neither behind anyone else's.
    let (s1, n1) = queued(&mut a, "one").await;
    let (s2, n2) = queued(&mut a, "one").await;
    assert_eq!((n1, n2), (0, 0));
    // Bob's waits behind Alice's two.
    let (s3, n3) = queued(&mut b, "one").await;
    assert_eq!(n3, 2);

    let want = BuilderCapacityResponse {
        builder_type: "one".into(),
        host_type: "host-one".into(),
        capacity: 1,
        running: 1,
        queued: 3,
        running_yours: 1,
        queued_yours: 2,
    };
    assert_eq!(capacity(&mut ea, "one").await, want);
    assert_eq!(
        capacity(&mut eb, "one").await,
        BuilderCapacityResponse {
            running_yours: 0,
            queued_yours: 1,
            ..want
        }
    );
    // Any name CreateInstance takes; the answer names the canonical one.
    let other = capacity(&mut eb, "gotip-linux-amd64-race").await;
    assert_eq!(
        (other.builder_type.as_str(), other.capacity, other.running),
        ("linux-amd64-race", 4, 0)
    );
    let bad = eb
        .builder_capacity(BuilderCapacityRequest {
            builder_type: "linux-amd46".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("did you mean \"linux-amd64\"?"),
        "{}",
        bad.message()
    );
    // Authenticated like GomoteService.
    let anon = ext(&c, None)
        .await
        .builder_capacity(BuilderCapacityRequest {
            builder_type: "one".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);
    drop((s1, s2, s3));
}

#[tokio::test]
async fn go_builder_names_are_aliases_and_typos_get_a_suggestion() {
    let c = Coordinator::start(&config(600)).unwrap();
    let t = c.token("alice@example.com").unwrap();
    let mut cl = client(&c, &t).await;
    let builders = cl
        .list_swarming_builders(ListSwarmingBuildersRequest {})
        .await
        .unwrap()
        .into_inner()
        .builders;
    assert_eq!(
        builders,
        vec![
            "gotip-linux-amd64",
            "gotip-linux-amd64-race",
            "gotip-one",
            "linux-amd64",
            "linux-amd64-race",
            "one"
        ]
    );

    let i = create(&mut cl, "gotip-linux-amd64").await;
    assert_eq!(
        (i.gomote_id.as_str(), i.builder_type.as_str()),
        ("alice-linux-amd64-0", "linux-amd64")
    );
    let i = create(&mut cl, "go1.23-linux-amd64-race").await;
    assert_eq!(
        (i.gomote_id.as_str(), i.builder_type.as_str()),
        ("alice-linux-amd64-race-0", "linux-amd64-race")
    );
    let listed: Vec<String> = grpc::instances(&mut cl)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.builder_type)
        .collect();
    assert_eq!(listed, vec!["linux-amd64", "linux-amd64-race"]);
    // imitate_host_type takes the aliases too.
    exec(
        &mut cl,
        ExecuteCommandRequest {
            gomote_id: "alice-linux-amd64-0".into(),
            command: "/bin/true".into(),
            system_level: true,
            imitate_host_type: "gotip-linux-amd64-race".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    for (typed, suggested) in [
        ("linux-amd46", Some("linux-amd64")),
        ("gotip-linux-amd64-rac", Some("gotip-linux-amd64-race")),
        ("go1.22-linx-amd64", Some("go1.22-linux-amd64")),
        ("plan9-arm", None),
    ] {
        let e = cl.create_instance(create_req(typed)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{typed}");
        let msg = e.message();
        assert!(
            msg.starts_with(&format!("unknown builder type {typed:?}")),
            "{msg}"
        );
        match suggested {
            Some(s) => assert!(msg.contains(&format!("did you mean {s:?}?")), "{msg}"),
            None => assert!(!msg.contains("did you mean"), "{msg}"),
        }
        assert!(msg.contains("linux-amd64-race"), "lists the offer: {msg}");
    }
}

#[tokio::test]
async fn ended_instances_tell_their_owner_when_and_why() {
    let idle = 3;
    let mut c = Coordinator::start(&config(idle)).unwrap();
    let (ta, tb) = (
        c.token("alice@example.com").unwrap(),
        c.token("bob@example.com").unwrap(),
    );
    let (mut a, mut b) = (client(&c, &ta).await, client(&c, &tb).await);
    // (Names are reused, and a name's tombstone is its latest ending: x's
    // builder is one nothing else here uses.)
    let x = create(&mut a, "linux-amd64-race").await.gomote_id;
    a.destroy_instance(DestroyInstanceRequest {
        gomote_id: x.clone(),
    })
    .await
    .unwrap();
    let destroyed = regex::Regex::new(&format!(
        r#"^instance "{x}" was destroyed at \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ by you$"#
    ))
    .unwrap();
    let e = alive(&mut a, &x).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(destroyed.is_match(e.message()), "{}", e.message());
    // Someone else learns nothing: the same NotFound as for no instance.
    let e = alive(&mut b, &x).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "specified gomote instance does not exist")
    );

    // One expires; another's machine dies, then it expires unused.
    let y = create(&mut a, "linux-amd64").await;
    let z = create(&mut a, "linux-amd64").await;
    kill_buildlets_under(std::path::Path::new(&z.working_dir));
    let died = poll_async(Duration::from_secs(30), async || {
        alive(&mut a, &z.gomote_id)
            .await
            .err()
            .filter(|e| e.code() == Code::Aborted)
    })
    .await
    .expect("a dead buildlet noticed within 30 s");
    assert!(died.message().contains("died at"), "{}", died.message());
    assert!(
        eventually_async(Duration::from_secs(30), async || ids(&mut a)
            .await
            .is_empty())
        .await,
        "instances never expired"
    );
    let e = alive(&mut a, &y.gomote_id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let expired = regex::Regex::new(&format!(
        r#"^instance "{}" expired at \S+Z after {idle}s idle$"#,
        y.gomote_id
    ))
    .unwrap();
    assert!(expired.is_match(e.message()), "{}", e.message());
    let e = alive(&mut a, &z.gomote_id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let lost = format!("instance \"{}\" was lost at ", z.gomote_id);
    assert!(e.message().starts_with(&lost), "{}", e.message());

    // They outlive a restart, and every RPC naming one says it.
    c.restart().unwrap();
    let mut a = client(&c, &ta).await;
    let e = a
        .destroy_instance(DestroyInstanceRequest {
            gomote_id: x.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(destroyed.is_match(e.message()), "{}", e.message());
    let e = exec(
        &mut a,
        ExecuteCommandRequest {
            gomote_id: y.gomote_id.clone(),
            command: "/bin/true".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(expired.is_match(e.message()), "{}", e.message());
    // A reused name is the live instance again.
    let again = create(&mut a, "linux-amd64-race").await.gomote_id;
    assert_eq!(again, x);
    alive(&mut a, &x).await.unwrap();
}

#[tokio::test]
async fn a_missing_directory_or_command_is_named() {
    let c = Coordinator::start(&config(600)).unwrap();
    let t = c.token("alice@example.com").unwrap();
    let mut cl = client(&c, &t).await;
    let id = create(&mut cl, "linux-amd64").await.gomote_id;
    let ls = |dir: &str| ListDirectoryRequest {
        gomote_id: id.clone(),
        directory: dir.into(),
        ..Default::default()
    };
    let want = format!("directory \"nope/deeper\" does not exist on instance \"{id}\"");
    let e = cl.list_directory(ls("nope/deeper")).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, want.as_str()));
    let e = match cl.list_directory_streaming(ls("nope/deeper")).await {
        Err(e) => e,
        Ok(s) => {
            let mut s = s.into_inner();
            loop {
                match s.next().await {
                    Some(Err(e)) => break e,
                    Some(Ok(_)) => {}
                    None => panic!("a missing directory listed without error"),
                }
            }
        }
    };
    assert_eq!((e.code(), e.message()), (Code::NotFound, want.as_str()));
    // Other buildlet refusals keep Go's code.
    let run = |cmd: &str, args: &[&str], dir: &str| ExecuteCommandRequest {
        gomote_id: id.clone(),
        command: cmd.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        directory: dir.into(),
        system_level: cmd.starts_with('/'),
        ..Default::default()
    };
    exec(&mut cl, run("/bin/sh", &["-c", "touch f"], ""))
        .await
        .unwrap();
    let e = cl.list_directory(ls("f/x")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{}", e.message());

    let e = exec(&mut cl, run("no-such-command-anywhere", &[], ""))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::Aborted,
            format!(
                "unable to execute command: command \"no-such-command-anywhere\" not found on instance \"{id}\""
            )
            .as_str()
        )
    );
    for cmd in ["go/bin/go", "bin/nosuch", "/no/such/program"] {
        let e = exec(&mut cl, run(cmd, &[], "")).await.unwrap_err();
        assert_eq!(e.code(), Code::Aborted, "{cmd}: {}", e.message());
        let want =
            format!("unable to execute command: command {cmd:?} not found on instance \"{id}\" (");
        assert!(e.message().starts_with(&want), "{}", e.message());
        assert!(!e.message().contains('\n'), "one line: {}", e.message());
    }
    let e = exec(&mut cl, run("/bin/true", &[], "nodir"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::Aborted,
            format!(
                "unable to execute command: directory \"nodir\" does not exist on instance \"{id}\""
            )
            .as_str()
        )
    );
    // A command that ran and failed is still the command's business.
    let e = exec(&mut cl, run("/bin/sh", &["-c", "exit 3"], ""))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "command execution failed: exit status 3")
    );
}
