//! The real `buildlet` binary over real HTTP: every endpoint, byte-exact
//! `/ls` lines, the `Process-State` trailer without `TE: trailers`,
//! kill-on-disconnect of a whole process group, and bad input that must be
//! refused with a 400 and leave the disk untouched.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use gomote_tests::{Buildlet, BuildletOpts, eventually, pid_alive, tgz_names};
use sha1::{Digest, Sha1};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Every path below `root` with its type and content digest.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                walk(root, &p, out);
                "dir".to_string()
            } else {
                format!("file {}", hex::encode(Sha1::digest(fs::read(&p).unwrap())))
            };
            out.insert(rel, what);
        }
    }
    walk(root, root, &mut out);
    out
}

/// A gzip'd tar built from raw headers, so hostile names can be written.
fn tgz(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, body, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(body.len() as u64);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *body).unwrap();
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn file<'a>(
    name: &'a str,
    body: &'static [u8],
) -> (&'a str, tar::EntryType, &'static [u8], &'static str) {
    (name, tar::EntryType::Regular, body, "")
}

/// Sends `req` and returns the body as text.
async fn text_of(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

/// Sends `req` and returns the body.
async fn bytes_of(req: reqwest::RequestBuilder) -> bytes::Bytes {
    req.send().await.unwrap().bytes().await.unwrap()
}

/// Sends a raw HTTP/1.1 request and returns everything the server wrote
/// until it closed the connection.
fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn open_endpoints_and_status() {
    let b = Buildlet::start().unwrap();
    let c = client();
    let root = text_of(c.get(b.url("/"))).await;
    assert!(root.starts_with("buildlet running on linux-"), "{root}");
    assert_eq!(text_of(c.get(b.url("/healthz"))).await, "ok\n");
    let x = bytes_of(c.get(b.url("/debug/x?n=1000"))).await;
    assert_eq!(&x[..], &[b'X'; 1000][..]);
    let capped = bytes_of(c.get(b.url("/debug/x?n=5000000"))).await;
    assert_eq!(capped.len(), 1 << 20);
    let st = c.get(b.url("/status")).send().await.unwrap();
    assert_eq!(
        st.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(st.text().await.unwrap(), "{\"Version\":29}");
    let wd = text_of(c.get(b.url("/workdir"))).await;
    assert_eq!(wd, b.workdir.display().to_string());
    for d in ["tmp", "gocache", "goplscache"] {
        assert!(b.workdir.join(d).is_dir(), "{d} missing");
    }
    let nf = c.get(b.url("/nosuch")).send().await.unwrap();
    assert_eq!(nf.status(), 404);
}

#[tokio::test]
async fn password_is_required_except_on_open_endpoints() {
    let b = Buildlet::start_with(BuildletOpts {
        password: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let c = client();
    let denied = c.get(b.url("/status")).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.text().await.unwrap(), "invalid password\n");
    let wrong = c
        .get(b.url("/status"))
        .basic_auth("gomote", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let ok = c
        .get(b.url("/status"))
        .basic_auth("anyone", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for open in ["/", "/healthz", "/debug/x?n=1"] {
        assert_eq!(
            c.get(b.url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
    // A wrong password changes nothing.
    let put = c
        .put(b.url("/write?path=f&mode=420"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    assert!(!b.workdir.join("f").exists());
}

#[test]
fn exec_trailer_without_te_trailers() {
    let b = Buildlet::start().unwrap();
    let body = "cmd=/bin/sh&cmdArg=-c&cmdArg=echo+out%3B+echo+err+1%3E%262%3B+exit+3";
    let req = format!(
        "POST /exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let out = raw(&b.addr, &req);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Trailer: Process-State\r\n"), "{out}");
    assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
    assert!(
        out.ends_with("0\r\nProcess-State: exit status 3\r\n\r\n"),
        "{out}"
    );

    let ok = raw(
        &b.addr,
        "POST /exec?cmd=/bin/true HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.ends_with("0\r\nProcess-State: ok\r\n\r\n"), "{ok}");
}

async fn exec(b: &Buildlet, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
    // reqwest does not surface trailers; read them from a raw response.
    let body: String = form_urlencoded_pairs(form);
    let req = format!(
        "POST /exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr = b.addr.clone();
    let out = tokio::task::spawn_blocking(move || raw(&addr, &req))
        .await
        .unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    if !head.contains("Transfer-Encoding: chunked") {
        return (status, rest.to_string(), None);
    }
    // Decode chunked framing.
    let mut data = String::new();
    let mut r = rest;
    loop {
        let (size, after) = r.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            let trailer = after
                .lines()
                .find_map(|l| l.strip_prefix("Process-State: "))
                .map(str::to_string);
            return (status, data, trailer);
        }
        data.push_str(&after[..n]);
        r = &after[n + 2..];
    }
}

fn form_urlencoded_pairs(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn exec_env_path_dir_and_debug() {
    let b = Buildlet::start().unwrap();
    let wd = b.workdir.display().to_string();
    let (st, out, tr) = exec(
        &b,
        &[
            ("cmd", "/bin/sh"),
            ("cmdArg", "-c"),
            (
                "cmdArg",
                "echo $FOO $TMPDIR $GOCACHE $GOROOT_BOOTSTRAP $WORKDIR $PWD; echo $PATH",
            ),
            ("env", "FOO=bar"),
            ("env", "TMPDIR=/client-value-loses"),
            ("path", "$PATH"),
            ("path", "$WORKDIR/go/bin"),
            ("mode", "sys"),
        ],
    )
    .await;
    assert_eq!((st, tr.as_deref()), (200, Some("ok")));
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("bar {wd}/tmp {wd}/gocache {wd}/go1.4 {wd} {wd}")
    );
    assert!(lines.next().unwrap().ends_with(&format!(":{wd}/go/bin")));

    // $EMPTY clears PATH; a bare name is then still found on the buildlet's PATH.
    let (_, out, _) = exec(
        &b,
        &[
            ("cmd", "sh"),
            ("cmdArg", "-c"),
            ("cmdArg", "echo \"[$PATH]\""),
            ("path", "$EMPTY"),
            ("mode", "sys"),
        ],
    )
    .await;
    assert_eq!(out, "[]\n");

    // A relative dir is joined to the work directory.
    fs::create_dir_all(b.workdir.join("sub")).unwrap();
    let (_, out, _) = exec(&b, &[("cmd", "/bin/pwd"), ("dir", "sub")]).await;
    assert_eq!(out.trim(), format!("{wd}/sub"));

    // A relative command runs from its own directory by default.
    fs::write(
        b.workdir.join("sub/hello.sh"),
        "#!/bin/sh\necho hello from $(pwd)\n",
    )
    .unwrap();
    fs::set_permissions(
        b.workdir.join("sub/hello.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (_, out, tr) = exec(&b, &[("cmd", "sub/hello.sh")]).await;
    assert_eq!(
        (out.trim(), tr.as_deref()),
        (format!("hello from {wd}/sub").as_str(), Some("ok"))
    );

    // debug writes Go's preamble first.
    let (_, out, _) = exec(
        &b,
        &[("cmd", "/bin/echo"), ("cmdArg", "hi"), ("debug", "true")],
    )
    .await;
    assert!(
        out.starts_with(":: Running /bin/echo with args [\"/bin/echo\" \"hi\"] and env ["),
        "{out}"
    );
    assert!(out.ends_with(" in dir /bin\n\nhi\n"), "{out}");

    // Start failures and signals are reported in the trailer.
    let (st, _, tr) = exec(&b, &[("cmd", "sub/missing")]).await;
    assert_eq!(st, 200);
    assert_eq!(
        tr.unwrap(),
        format!("fork/exec {wd}/sub/missing: no such file or directory")
    );
    let (_, _, tr) = exec(
        &b,
        &[
            ("cmd", "/bin/sh"),
            ("cmdArg", "-c"),
            ("cmdArg", "kill -9 $$"),
        ],
    )
    .await;
    assert_eq!(tr.as_deref(), Some("signal: killed"));
}

#[tokio::test]
async fn exec_refusals() {
    let b = Buildlet::start().unwrap();
    let (st, body, _) = exec(&b, &[("cmd", "no-such-command-anywhere")]).await;
    assert_eq!(
        (st, body.as_str()),
        (422, "command \"no-such-command-anywhere\" not found\n")
    );
    let (st, _, _) = exec(&b, &[("cmd", "../../bin/sh")]).await;
    assert_eq!(st, 400);
    let (st, body, _) = exec(&b, &[("cmd", "go/bin/go"), ("mode", "sys")]).await;
    assert_eq!(
        (st, body.as_str()),
        (400, "'sys' mode requires absolute or system 'cmd' path\n")
    );
    let (st, _, _) = exec(&b, &[]).await;
    assert_eq!(st, 400);
    let c = client();
    let get = c.get(b.url("/exec?cmd=/bin/true")).send().await.unwrap();
    assert_eq!(get.status(), 400);
    let old = raw(
        &b.addr,
        "POST /exec?cmd=/bin/true HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(old.starts_with("HTTP/1.1 400"), "{old}");
}

#[test]
fn exec_kills_process_group_when_client_disconnects() {
    let b = Buildlet::start().unwrap();
    // The shell starts a background grandchild and reports both pids.
    let body = format!(
        "cmd=/bin/sh&cmdArg=-c&cmdArg={}",
        enc("sleep 300 & echo $$ $!; wait")
    );
    let req = format!(
        "POST /exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(&b.addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let pids: Vec<i32> = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        // The chunk carrying "<sh pid> <sleep pid>\n".
        if let Some(line) = got.split("\r\n").find(|l| {
            l.split(' ').count() == 2 && l.split(' ').all(|p| p.trim().parse::<i32>().is_ok())
        }) {
            break line.split(' ').map(|p| p.trim().parse().unwrap()).collect();
        }
    };
    assert!(pids.iter().all(|p| pid_alive(*p)));
    drop(s);
    eventually(Duration::from_secs(1), || {
        !pids.iter().any(|p| pid_alive(*p))
    });
    for p in &pids {
        assert!(!pid_alive(*p), "process {p} survived the disconnect");
    }
}

#[tokio::test]
async fn ls_lines_match_go_byte_for_byte() {
    let b = Buildlet::start().unwrap();
    let wd = &b.workdir;
    fs::create_dir_all(wd.join("d/sub")).unwrap();
    fs::write(wd.join("d/f.txt"), "hello").unwrap();
    fs::write(wd.join("d/sub/x.sh"), "#!/bin/sh\n").unwrap();
    symlink("f.txt", wd.join("d/l")).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800); // 2024-05-01T12:00:00Z
    for (p, mode) in [("d/f.txt", 0o644), ("d/sub/x.sh", 0o4750)] {
        let f = fs::File::options().write(true).open(wd.join(p)).unwrap();
        f.set_modified(t).unwrap();
        fs::set_permissions(wd.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(wd.join("d"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(wd.join("d/sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    // The link's own time, for its digest line.
    assert!(
        std::process::Command::new("touch")
            .args(["-h", "-d", "@1714564800"])
            .arg(wd.join("d/l"))
            .status()
            .unwrap()
            .success()
    );
    let c = client();
    let get = |q: &'static str| {
        let c = c.clone();
        let url = b.url(q);
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let hello = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
    let xsh = hex::encode(Sha1::digest(b"#!/bin/sh\n"));
    // Beyond Go: with digests, a symlink's line carries its target's digest.
    let link = hex::encode(Sha1::digest(b"f.txt"));
    assert_eq!(
        get("/ls?dir=d&recursive=true&digest=true").await,
        format!(
            "-rw-r--r--\tf.txt\t5\t2024-05-01T12:00:00Z\t{hello}\n\
             Lrwxrwxrwx\tl\t5\t2024-05-01T12:00:00Z\t{link}\n\
             dtrwxrwxrwx\tsub/\n\
             urwxr-x---\tsub/x.sh\t10\t2024-05-01T12:00:00Z\t{xsh}\n"
        )
    );
    assert_eq!(
        get("/ls?dir=d").await,
        "-rw-r--r--\tf.txt\t5\t2024-05-01T12:00:00Z\nLrwxrwxrwx\tl\ndtrwxrwxrwx\tsub/\n"
    );
    assert_eq!(
        get("/ls?dir=d&recursive=1&skip=sub").await,
        "-rw-r--r--\tf.txt\t5\t2024-05-01T12:00:00Z\nLrwxrwxrwx\tl\n"
    );
    let top = get("/ls").await;
    assert!(top.starts_with("drwxr-xr-x\td/\n"), "{top}");
    let missing = c.get(b.url("/ls?dir=nope")).send().await.unwrap();
    assert_eq!(missing.status(), 500);
    let bad = c.get(b.url("/ls?dir=../etc")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let empty_dir = fs::create_dir(wd.join("empty"));
    assert!(empty_dir.is_ok());
    assert_eq!(get("/ls?dir=empty").await, "");
}

#[tokio::test]
async fn write_writetgz_tgz_and_removeall() {
    let b = Buildlet::start().unwrap();
    let c = client();
    let r = c
        .put(b.url("/write?path=a/b/c.sh&mode=493"))
        .body("#!/bin/sh\necho hi\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "OK".into())
    );
    let p = b.workdir.join("a/b/c.sh");
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        c.post(b.url("/write?path=x&mode=420"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    // setuid is Go's 1<<23, translated to the Unix bit.
    let r = c
        .put(b.url(&format!("/write?path=suid&mode={}", (1u32 << 23) | 0o755)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fs::metadata(b.workdir.join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    // Type bits (a directory) are refused.
    let r = c
        .put(b.url(&format!("/write?path=dir&mode={}", (1u32 << 31) | 0o755)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let data = tgz(&[
        ("src/", tar::EntryType::Directory, b"", ""),
        file("src/main.go", b"package main\n"),
        ("src/link", tar::EntryType::Symlink, b"", "main.go"),
    ]);
    let r = c
        .put(b.url("/writetgz?dir=go"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "OK".into())
    );
    assert_eq!(
        fs::read(b.workdir.join("go/src/main.go")).unwrap(),
        b"package main\n"
    );
    assert_eq!(
        fs::read_link(b.workdir.join("go/src/link")).unwrap(),
        Path::new("main.go")
    );

    // /tgz streams it back: directories with a trailing slash, links kept.
    let back = bytes_of(c.get(b.url("/tgz?dir=go"))).await;
    assert_eq!(
        tgz_names(&back).unwrap(),
        vec!["src/", "src/link", "src/main.go"]
    );
    assert_eq!(c.get(b.url("/tgz")).send().await.unwrap().status(), 400);

    // POST with a URL: the buildlet fetches it (here, from a second buildlet).
    let other = Buildlet::start().unwrap();
    fs::create_dir_all(other.workdir.join("pkg")).unwrap();
    fs::write(other.workdir.join("pkg/fetched.txt"), "via url").unwrap();
    let url = other.url("/tgz?dir=pkg");
    let r = c
        .post(b.url("/writetgz?dir=fetched"))
        .form(&[("url", url.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fs::read(b.workdir.join("fetched/fetched.txt")).unwrap(),
        b"via url"
    );
    let r = c
        .post(b.url("/writetgz"))
        .form(&[("url", other.url("/nosuch").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = c.post(b.url("/writetgz")).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // go1.4 is written once; a second POST answers SKIP without fetching.
    let r = c
        .post(b.url("/writetgz?dir=go1.4"))
        .form(&[("url", url.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "OK");
    let r = c
        .post(b.url("/writetgz?dir=go1.4"))
        .form(&[("url", "http://127.0.0.1:1/unreachable")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "SKIP".into())
    );

    // /removeall validates every path before removing any.
    let r = c
        .post(b.url("/removeall"))
        .form(&[("path", "a"), ("path", "../x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(b.workdir.join("a/b/c.sh").exists());
    let r = c
        .post(b.url("/removeall"))
        .form(&[("path", "a"), ("path", "go/src/main.go")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!b.workdir.join("a").exists());
    assert!(!b.workdir.join("go/src/main.go").exists());
    assert_eq!(
        c.post(b.url("/removeall")).send().await.unwrap().status(),
        400
    );
    // removeall . empties the work directory; the next request recreates it.
    let r = c
        .post(b.url("/removeall"))
        .form(&[("path", ".")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _, tr) = exec(&b, &[("cmd", "/bin/true")]).await;
    assert_eq!((st, tr.as_deref()), (200, Some("ok")));
    assert!(b.workdir.join("tmp").is_dir());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let b = Buildlet::start().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim"), "original").unwrap();
    fs::create_dir_all(b.workdir.join("go/src")).unwrap();
    fs::write(b.workdir.join("go/src/keep.go"), "keep").unwrap();
    symlink(outside.path(), b.workdir.join("escape")).unwrap();
    let c = client();
    let before = snapshot(&b.workdir);
    let outside_before = snapshot(outside.path());
    let assert_untouched = |what: &str| {
        assert_eq!(
            snapshot(&b.workdir),
            before,
            "{what} changed the work directory"
        );
        assert_eq!(
            snapshot(outside.path()),
            outside_before,
            "{what} changed a file outside"
        );
    };

    let full = tgz(&[file("a.txt", &[b'x'; 4096]), file("b.txt", &[b'y'; 4096])]);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "dotdot entry",
            "/writetgz".into(),
            tgz(&[file("ok.txt", b"x"), file("../evil", b"x")]),
        ),
        (
            "absolute entry",
            "/writetgz".into(),
            tgz(&[file("ok.txt", b"x"), file("/tmp/evil", b"x")]),
        ),
        (
            "drive letter entry",
            "/writetgz".into(),
            tgz(&[file("C:/evil", b"x")]),
        ),
        (
            "symlink escapes",
            "/writetgz".into(),
            tgz(&[("l", tar::EntryType::Symlink, b"", "../../../etc")]),
        ),
        (
            "absolute symlink",
            "/writetgz".into(),
            tgz(&[("l", tar::EntryType::Symlink, b"", "/etc")]),
        ),
        (
            "through existing symlink",
            "/writetgz".into(),
            tgz(&[file("escape/victim", b"pwned")]),
        ),
        (
            "through archive symlink",
            "/writetgz".into(),
            tgz(&[("l", tar::EntryType::Symlink, b"", "go"), file("l/x", b"x")]),
        ),
        (
            "dir is a symlink",
            "/writetgz?dir=escape".into(),
            tgz(&[file("victim", b"pwned")]),
        ),
        (
            "dir dotdot",
            "/writetgz?dir=../up".into(),
            tgz(&[file("x", b"x")]),
        ),
        (
            "invalid gzip",
            "/writetgz".into(),
            b"definitely not gzip data".to_vec(),
        ),
        (
            "truncated tar",
            "/writetgz".into(),
            full[..full.len() / 2].to_vec(),
        ),
        (
            "write dotdot",
            "/write?path=../evil&mode=420".into(),
            b"x".to_vec(),
        ),
        (
            "write absolute",
            "/write?path=/tmp/evil&mode=420".into(),
            b"x".to_vec(),
        ),
        (
            "write drive",
            "/write?path=C:evil&mode=420".into(),
            b"x".to_vec(),
        ),
        (
            "write through symlink",
            "/write?path=escape/victim&mode=420".into(),
            b"pwned".to_vec(),
        ),
        (
            "write bad mode",
            "/write?path=f&mode=abc".into(),
            b"x".to_vec(),
        ),
    ];
    for (what, path, body) in cases {
        let r = c.put(b.url(&path)).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {text}");
        assert_eq!(
            text.lines().count(),
            1,
            "{what}: one-line reason, got {text:?}"
        );
        assert_untouched(what);
    }
    for (what, paths) in [
        ("removeall through symlink", vec!["escape/victim"]),
        ("removeall dotdot", vec!["go", "../x"]),
        ("removeall absolute", vec!["/tmp"]),
    ] {
        let form: Vec<(&str, &str)> = paths.iter().map(|p| ("path", *p)).collect();
        let r = c
            .post(b.url("/removeall"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_untouched(what);
    }
    for (what, q) in [
        ("ls through symlink", "/ls?dir=escape/x"),
        ("tgz of symlink", "/tgz?dir=escape"),
    ] {
        let r = c.get(b.url(q)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
    }
    // Removing the link itself is fine and leaves its target alone.
    let r = c
        .post(b.url("/removeall"))
        .form(&[("path", "escape")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!b.workdir.join("escape").exists());
    assert_eq!(
        fs::read(outside.path().join("victim")).unwrap(),
        b"original"
    );
}

#[test]
fn halt_replies_then_exits() {
    let mut b = Buildlet::start().unwrap();
    let out = raw(
        &b.addr,
        "POST /halt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    let t = Instant::now();
    assert!(
        b.wait_exit(Duration::from_secs(5)),
        "buildlet did not exit after /halt"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "exited before replying could finish"
    );
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    let b = Buildlet::start().unwrap();
    let out = raw(
        &b.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\n\r\nPOST /exec?cmd=/bin/echo HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert!(out.contains("{\"Version\":29}"));
    assert!(out.ends_with("Process-State: ok\r\n\r\n"), "{out}");
}
