//! Accounts against the real `gomote-coordinator`: the enrolment link
//! sets a password once (CSRF token required, cross-site posts refused),
//! disabling a user, revoking and expiry cut tokens at once, tokens from
//! before expiry keep working, admins see and destroy every instance, and
//! the audit log records it all without a secret.

use std::time::Duration;

use gomote_shared::proto::*;
use gomote_tests::Coordinator;
use gomote_tests::grpc::{self, Client};
use tonic::Code;

const CONFIG: &str = r#"
idle_timeout_secs = 600
reap_interval_secs = 1
heartbeat_interval_secs = 1
replace_builtin_builders = true
[[host_types]]
name = "host-test"
capacity = 4
[[builders]]
name = "linux-amd64"
host_type = "host-test"
"#;

async fn client(c: &Coordinator, token: &str) -> Client {
    grpc::client(c, Some(token)).await.unwrap()
}

async fn list(c: &Coordinator, token: &str) -> Result<Vec<String>, Code> {
    client(c, token)
        .await
        .list_instances(ListInstancesRequest {})
        .await
        .map(|r| {
            r.into_inner()
                .instances
                .into_iter()
                .map(|i| i.gomote_id)
                .collect()
        })
        .map_err(|s| s.code())
}

fn token(c: &Coordinator, email: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--user", email];
    args.extend_from_slice(extra);
    c.manage(&args).unwrap().trim().to_string()
}

fn audit(c: &Coordinator) -> (String, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(c.state.join("audit.log")).unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (text, lines)
}

fn has(lines: &[serde_json::Value], want: &[(&str, &str)]) -> bool {
    lines
        .iter()
        .any(|l| want.iter().all(|(k, v)| l[*k].as_str() == Some(*v)))
}

fn csrf_of(page: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
    re.captures(page).expect("a CSRF field")[1].to_string()
}

fn user_state(c: &Coordinator, email: &str) -> String {
    let out = c.manage(&["user", "list"]).unwrap();
    let line = out.lines().find(|l| l.starts_with(email)).expect("listed");
    line.split_whitespace().nth(2).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_enrolment_link_sets_a_password_once() {
    let c = Coordinator::start(CONFIG).unwrap();
    let link = c
        .manage(&["user", "add", "ann@example.com"])
        .unwrap()
        .trim()
        .to_string();
    assert!(
        link.starts_with(&format!("{}/enroll/gme_", c.url())),
        "{link}"
    );
    assert_eq!(user_state(&c, "ann@example.com"), "pending");

    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["referrer-policy"],
        "no-referrer",
        "the link must not leak"
    );
    let page = page.text().await.unwrap();
    assert!(page.contains("ann@example.com"), "{page}");
    let csrf = csrf_of(&page);
    let pw = [
        ("password", "a fine long password"),
        ("password2", "a fine long password"),
    ];

    // Without the CSRF token, or from another site: refused, nothing set.
    let r = http.post(&link).form(&pw).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let with_csrf = [("csrf", csrf.as_str()), pw[0], pw[1]];
    let r = http
        .post(&link)
        .header("origin", "https://evil.example")
        .form(&with_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(user_state(&c, "ann@example.com"), "pending");

    // Too short: the form again, still pending.
    let r = http
        .post(&link)
        .form(&[
            ("csrf", csrf.as_str()),
            ("password", "short"),
            ("password2", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(user_state(&c, "ann@example.com"), "pending");

    let r = http
        .post(&link)
        .header("origin", c.url())
        .form(&with_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("password of ann@example.com is set")
    );
    assert_eq!(user_state(&c, "ann@example.com"), "active");

    // The link is spent.
    assert_eq!(http.get(&link).send().await.unwrap().status(), 404);
    let r = http.post(&link).form(&with_csrf).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let (text, lines) = audit(&c);
    assert!(has(
        &lines,
        &[("event", "user.add"), ("subject", "ann@example.com")]
    ));
    assert!(has(
        &lines,
        &[("event", "user.enroll"), ("subject", "ann@example.com")]
    ));
    let secret = link.rsplit('/').next().unwrap();
    assert!(
        !text.contains(secret),
        "no enrolment token in the audit log"
    );
    assert!(!text.contains("a fine long password"));
    let users = std::fs::read_to_string(c.state.join("users.json")).unwrap();
    assert!(!users.contains(secret) && !users.contains("a fine long password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_disable_revoke_and_expiry_cut_tokens_at_once() {
    let c = Coordinator::start(CONFIG).unwrap();
    c.manage(&["user", "add", "bob@example.com"]).unwrap();
    let bob = token(&c, "bob@example.com", &[]);
    assert_eq!(list(&c, &bob).await, Ok(vec![]));
    c.manage(&["user", "disable", "bob@example.com"]).unwrap();
    assert_eq!(list(&c, &bob).await, Err(Code::Unauthenticated));
    assert_eq!(user_state(&c, "bob@example.com"), "disabled");
    let out = c
        .manage_output(&["token", "create", "--user", "bob@example.com"])
        .unwrap();
    assert!(!out.status.success(), "no tokens for a disabled user");
    // Enabled again, the old token stays revoked.
    c.manage(&["user", "enable", "bob@example.com"]).unwrap();
    assert_eq!(list(&c, &bob).await, Err(Code::Unauthenticated));

    let robot = token(&c, "ci@example.com", &["--expires", "1s"]);
    assert_eq!(list(&c, &robot).await, Ok(vec![]));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(list(&c, &robot).await, Err(Code::Unauthenticated));

    let carol = token(&c, "carol@example.com", &["--expires", "30d"]);
    assert_eq!(list(&c, &carol).await, Ok(vec![]));
    let tokens = c.manage(&["token", "list"]).unwrap();
    assert!(!tokens.contains(&carol[4..]), "token list shows no secret");
    let id = tokens
        .lines()
        .find(|l| l.contains("carol@example.com"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    c.manage(&["token", "revoke", &id]).unwrap();
    assert_eq!(list(&c, &carol).await, Err(Code::Unauthenticated));
    assert!(!c.manage(&["token", "list"]).unwrap().contains(&id));

    // A line from before tokens expired: still valid, listed as never
    // expiring.
    let old = "gmt_from_before_expiry";
    let line = format!("{} dan@example.com\n", hex::encode(sha256(old)));
    let mut text = std::fs::read_to_string(c.state.join("tokens")).unwrap();
    text.push_str(&line);
    std::fs::write(c.state.join("tokens"), text).unwrap();
    assert_eq!(list(&c, old).await, Ok(vec![]));
    let tokens = c.manage(&["token", "list"]).unwrap();
    let dan = tokens
        .lines()
        .find(|l| l.contains("dan@example.com"))
        .unwrap();
    assert!(dan.ends_with("never"), "{dan}");

    let (text, lines) = audit(&c);
    for secret in [&bob, &robot, &carol] {
        assert!(!text.contains(secret.as_str()), "no token in the audit log");
    }
    assert!(has(
        &lines,
        &[("event", "user.disable"), ("subject", "bob@example.com")]
    ));
    assert!(has(
        &lines,
        &[("event", "token.issue"), ("subject", "ci@example.com")]
    ));
    assert!(has(&lines, &[("event", "token.revoke"), ("token_id", &id)]));
    assert!(has(
        &lines,
        &[("event", "auth.denied"), ("reason", "expired")]
    ));
    assert!(has(
        &lines,
        &[("event", "auth.denied"), ("reason", "unknown")]
    ));
    assert!(
        has(
            &lines,
            &[
                ("event", "auth.denied"),
                ("rpc", "protos.GomoteService/ListInstances")
            ]
        ),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    for f in ["audit.log", "tokens", "users.json"] {
        let mode = std::fs::metadata(c.state.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is private");
    }
}

/// SHA-256 as the tokens file keeps it (from coreutils: the tests need
/// no hashing crate for this one line).
fn sha256(s: &str) -> Vec<u8> {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write as _;
            ch.stdin.take().unwrap().write_all(s.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    hex::decode(hex.split_whitespace().next().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_admins_see_and_destroy_every_instance() {
    let c = Coordinator::start(CONFIG).unwrap();
    c.manage(&["user", "add", "--admin", "root@example.com"])
        .unwrap();
    let root = token(&c, "root@example.com", &[]);
    let alice = token(&c, "alice@example.com", &[]);
    let bob = token(&c, "bob@example.com", &[]);

    let mut s = client(&c, &alice)
        .await
        .create_instance(CreateInstanceRequest {
            builder_type: "linux-amd64".into(),
            experiment_option: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let mut id = None;
    while let Some(m) = s.message().await.unwrap() {
        if let Some(i) = m.instance {
            id = Some(i.gomote_id);
        }
    }
    let id = id.expect("created");

    assert_eq!(list(&c, &root).await, Ok(vec![id.clone()]));
    assert_eq!(list(&c, &bob).await, Ok(vec![]));
    let denied = client(&c, &bob)
        .await
        .destroy_instance(DestroyInstanceRequest {
            gomote_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    client(&c, &root)
        .await
        .instance_alive(InstanceAliveRequest {
            gomote_id: id.clone(),
        })
        .await
        .unwrap();
    client(&c, &root)
        .await
        .destroy_instance(DestroyInstanceRequest {
            gomote_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(list(&c, &alice).await, Ok(vec![]));

    let (_, lines) = audit(&c);
    assert!(has(
        &lines,
        &[
            ("event", "instance.create"),
            ("actor", "alice@example.com"),
            ("subject", &id)
        ]
    ));
    assert!(has(
        &lines,
        &[
            ("event", "instance.destroy"),
            ("actor", "root@example.com"),
            ("owner", "alice@example.com"),
            ("subject", &id)
        ]
    ));
}
