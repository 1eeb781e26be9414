//! `gomote push` end to end: a generated tree and a real GOROOT kept in
//! step through adds, edits, deletes, renames, mode changes and symlinks;
//! what must not move (ignored files, dist-generated files on the remote);
//! repairs after a command changed the remote; a push killed half-way; the
//! watcher with its barrier and scanning fallback; one upload for a group.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use gomote_tests::{GomoteEnv, Output, builder, eventually, find_files};

/// `gomote args...` with GOROOT set.
fn g(env: &GomoteEnv, root: &Path, args: &[&str]) -> Result<Output> {
    env.run_with(args, &[("GOROOT", root.to_str().unwrap_or_default())], None)
}

fn ok(env: &GomoteEnv, root: &Path, args: &[&str]) -> Result<Output> {
    let o = g(env, root, args)?;
    if o.code != 0 {
        bail!(
            "gomote {args:?} exited {}: {}{}",
            o.code,
            o.stdout,
            o.stderr
        );
    }
    Ok(o)
}

/// Creates one instance and returns its name.
fn create(env: &GomoteEnv, root: &Path) -> String {
    ok(env, root, &["create", &builder()])
        .unwrap()
        .stdout
        .trim()
        .to_string()
}

fn sha1_hex(b: &[u8]) -> String {
    gomote_shared::digest::sha1_bytes(b)
}

/// What push must make the remote hold: path -> kind, digest and exec bits
/// (files), or the target's digest (symlinks). Skips what push skips.
fn local_view(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap().flatten() {
            let r = rel.join(e.file_name());
            let rs = r.to_string_lossy().to_string();
            if skip
                .iter()
                .any(|s| rs == *s || rs.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(r);
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                if gomote_shared::relpath::symlink_target_stays_inside(&r, &t) {
                    m.insert(
                        rs,
                        format!("l {}", sha1_hex(t.to_string_lossy().as_bytes())),
                    );
                }
            } else {
                let d = sha1_hex(&std::fs::read(e.path()).unwrap());
                m.insert(rs, format!("f {d} {:o}", md.permissions().mode() & 0o111));
            }
        }
    }
    m
}

/// The same view of an instance's `go/`, from `gomote ls -R -d`.
fn remote_view(
    env: &GomoteEnv,
    root: &Path,
    inst: &str,
    skip: &[&str],
) -> BTreeMap<String, String> {
    let o = g(env, root, &["ls", "-R", "-d", inst, "go"]).unwrap();
    if o.code != 0 {
        assert!(o.stderr.contains("No such file"), "{}", o.stderr);
        return BTreeMap::new();
    }
    let mut m = BTreeMap::new();
    for l in o.stdout.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 5
            || skip
                .iter()
                .any(|s| f[1] == *s || f[1].starts_with(&format!("{s}/")))
        {
            continue;
        }
        let v = if f[0].starts_with('L') {
            format!("l {}", f[4])
        } else {
            let x: u32 = [(3, 0o100), (6, 0o010), (9, 0o001)]
                .iter()
                .filter(|(i, _)| f[0].as_bytes().get(*i) == Some(&b'x'))
                .map(|(_, b)| b)
                .sum();
            format!("f {} {x:o}", f[4])
        };
        m.insert(f[1].to_string(), v);
    }
    m
}

fn assert_in_step(env: &GomoteEnv, root: &Path, inst: &str, skip: &[&str]) {
    let l = local_view(root, skip);
    let r = remote_view(env, root, inst, skip);
    let differ: Vec<_> = l
        .keys()
        .chain(r.keys())
        .filter(|k| l.get(*k) != r.get(*k))
        .take(10)
        .map(|k| format!("{k}: local {:?} remote {:?}", l.get(k), r.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{inst} differs from {}:\n{}",
        root.display(),
        differ.join("\n")
    );
}

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A small tree shaped like GOROOT.
fn generated_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(
        r,
        "src/internal/goversion/goversion.go",
        "package goversion\n\nconst Version = 19\n",
    );
    // dist writes src/go/build/zcgo.go there on the remote.
    write(r, "src/go/build/build.go", "package build\n");
    for i in 0..40 {
        write(
            r,
            &format!("src/pkg{}/f{i}.go", i % 7),
            &format!("package p\n// {i}\n"),
        );
    }
    write(r, "src/make.bash", "#!/bin/sh\necho made\n");
    std::fs::set_permissions(
        r.join("src/make.bash"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(r, ".gitignore", "/gen/\n*.tmp\n");
    write(r, "gen/out.txt", "generated locally");
    write(r, "pkg/linux_amd64/x.a", "build output");
    d
}

/// What push leaves alone on both sides, for the comparisons: VERSION,
/// the ignored and excluded, and dist's generated files (the daemon's own
/// list, so the two cannot drift apart).
fn skipped() -> Vec<&'static str> {
    ["VERSION", "gen", "pkg", "bin", ".git"]
        .into_iter()
        .chain(gomoted::DIST_GENERATED)
        .collect()
}

/// Every kind of change, pushed and checked, on the tree at `root`.
fn edits_round_trip(env: &GomoteEnv, root: &Path, inst: &str, edit_dir: &str) {
    // Edit, add, delete, rename, chmod, symlinks in and out, ignored file.
    let gi = root.join(".gitignore");
    let rules = std::fs::read_to_string(&gi).unwrap_or_default();
    if !rules.lines().any(|l| l == "*.tmp") {
        std::fs::write(&gi, format!("{rules}*.tmp\n")).unwrap();
    }
    let a = format!("{edit_dir}/gomote_a.go");
    write(root, &a, "package x // added\n");
    let victim = std::fs::read_dir(root.join(edit_dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file() && !p.ends_with("gomote_a.go"))
        .unwrap();
    std::fs::write(&victim, "package x // edited\n").unwrap();
    let renamed = root.join(edit_dir).join("gomote_renamed.go");
    let other = std::fs::read_dir(root.join(edit_dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file() && *p != victim && !p.ends_with("gomote_a.go"))
        .unwrap();
    std::fs::rename(&other, &renamed).unwrap();
    std::fs::set_permissions(&renamed, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("gomote_a.go", root.join(edit_dir).join("gomote_link.go")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join(edit_dir).join("gomote_escape")).unwrap();
    write(root, &format!("{edit_dir}/scratch.tmp"), "ignored");
    let o = ok(env, root, &["push", inst]).unwrap();
    assert!(
        o.stderr.contains("Not pushing 1 local entry"),
        "{}",
        o.stderr
    );
    let mut skip_all = skipped();
    let esc = format!("{edit_dir}/gomote_escape");
    let tmp = format!("{edit_dir}/scratch.tmp");
    skip_all.push(&esc);
    skip_all.push(&tmp);
    assert_in_step(env, root, inst, &skip_all);
    let r = remote_view(env, root, inst, &[]);
    assert!(!r.contains_key(&tmp), "ignored file was sent");
    assert!(!r.contains_key(&esc), "escaping symlink was sent");
    assert!(
        r.get(&format!("{edit_dir}/gomote_link.go"))
            .is_some_and(|v| v.starts_with("l "))
    );
    assert!(
        r.get(&format!("{edit_dir}/gomote_renamed.go"))
            .is_some_and(|v| v.ends_with(" 111"))
    );

    // A dist-generated file made remotely survives; a file a command broke
    // is repaired by the next push.
    ok(env, root, &["run", inst, "/bin/sh", "-c",
        &format!("mkdir -p go/src/go/build && echo gen > go/src/go/build/zcgo.go && echo broken > go/{a}")]).unwrap();
    let o = ok(env, root, &["push", inst]).unwrap();
    assert!(
        o.stderr
            .contains("1 to send (0 new, 1 changed), 0 to delete"),
        "{}",
        o.stderr
    );
    assert_in_step(env, root, inst, &skip_all);
    let r = remote_view(env, root, inst, &[]);
    assert!(
        r.contains_key("src/go/build/zcgo.go"),
        "generated file was deleted"
    );

    // A dry run reads and changes nothing.
    std::fs::write(root.join(&a), "package x // changed again\n").unwrap();
    let before = remote_view(env, root, inst, &[]);
    let o = ok(env, root, &["push", "-dry-run", inst]).unwrap();
    assert!(o.stderr.contains("Dry-run"), "{}", o.stderr);
    assert_eq!(before, remote_view(env, root, inst, &[]));
    // And the directory goes when it goes locally.
    std::fs::remove_file(root.join(edit_dir).join("gomote_escape")).unwrap();
    let o = ok(env, root, &["push", inst]).unwrap();
    assert!(o.stderr.contains("1 changed"), "{}", o.stderr);
    assert_in_step(env, root, inst, &skip_all);
}

#[test]
fn push_keeps_a_generated_tree_in_step() {
    let env = GomoteEnv::new("").unwrap();
    let tree = generated_tree();
    let root = tree.path();
    let inst = create(&env, root);
    let o = ok(&env, root, &["push", &inst]).unwrap();
    assert!(
        o.stderr
            .contains("Remote lacks a VERSION file; sending a fake one"),
        "{}",
        o.stderr
    );
    assert_in_step(&env, root, &inst, &skipped());
    let r = remote_view(&env, root, &inst, &[]);
    assert!(!r.contains_key("gen/out.txt") && !r.contains_key("pkg/linux_amd64/x.a"));
    // Nothing changed: nothing sent.
    let o = ok(&env, root, &["push", &inst]).unwrap();
    assert!(
        o.stderr
            .contains("0 to send (0 new, 0 changed), 0 to delete"),
        "{}",
        o.stderr
    );
    edits_round_trip(&env, root, &inst, "src/pkg3");
    // A file replaced by a directory and back.
    std::fs::remove_file(root.join("src/pkg1/f1.go")).unwrap();
    write(root, "src/pkg1/f1.go/inner.go", "package inner\n");
    ok(&env, root, &["push", &inst]).unwrap();
    let mut skip = skipped();
    skip.push("src/pkg3");
    assert_in_step(&env, root, &inst, &skip);
}

#[test]
fn push_keeps_a_real_goroot_in_step() {
    let Some(src) = gomote_tests::goroot_copy() else {
        eprintln!("skipping: no /usr/lib/go-1.19 (apt-get install golang-go)");
        return;
    };
    let env = GomoteEnv::new("").unwrap();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("go");
    assert!(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&src)
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    let inst = create(&env, &root);
    ok(&env, &root, &["push", &inst]).unwrap();
    assert_in_step(&env, &root, &inst, &skipped());
    edits_round_trip(&env, &root, &inst, "src/fmt");
}

#[test]
fn a_push_killed_half_way_leaves_no_half_file_and_the_next_completes() {
    let env = GomoteEnv::new("").unwrap();
    let tree = generated_tree();
    let root = tree.path();
    // About 96 MB that does not compress, so the push takes a while.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..48 {
        let mut buf = vec![0u8; 2 << 20];
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        std::fs::write(root.join(format!("src/big{i:02}.bin")), buf).unwrap();
    }
    let inst = create(&env, root);
    let mut child = env
        .spawn(&["push", &inst], &[("GOROOT", root.to_str().unwrap())])
        .unwrap();
    // Wait for the plan line: parts are being packed and sent from then on.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(" to send (") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // Kill the daemon (and the embedded coordinator with it) as soon as a
    // first big file has landed in its place on the instance's disk
    // (somewhere in this environment: the local tree is elsewhere), not in
    // a staging directory.
    let landed = || {
        !find_files(env.dir.path(), &|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("big")
                && name.ends_with(".bin")
                && p.parent().is_some_and(|d| d.ends_with("go/src"))
                && !p.to_string_lossy().contains("/.untar-")
        })
        .is_empty()
    };
    assert!(
        eventually(Duration::from_secs(30), landed),
        "no part of the push ever landed"
    );
    let start = Instant::now();
    env.kill_daemon().unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0), "push survived its daemon?");
    assert!(start.elapsed() < Duration::from_secs(30));
    // Whatever arrived is whole: every remote file has its local digest.
    let local = local_view(root, &skipped());
    let remote = remote_view(&env, root, &inst, &skipped());
    for (k, v) in &remote {
        assert_eq!(
            local.get(k),
            Some(v),
            "{k} is on the remote but not as pushed"
        );
    }
    assert!(
        remote
            .keys()
            .all(|k| !k.contains(".untar-") && !k.contains(".link-")),
        "staging debris visible: {remote:?}"
    );
    // The next push completes the tree.
    ok(&env, root, &["push", &inst]).unwrap();
    assert_in_step(&env, root, &inst, &skipped());
}

/// Fails the test unless `f` holds within 15 s.
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    assert!(
        eventually(Duration::from_secs(15), f),
        "timed out waiting for {what}"
    );
}

#[test]
fn watch_pushes_saves_and_a_plain_push_is_a_barrier() {
    let env = GomoteEnv::new("").unwrap();
    let tree = generated_tree();
    let root = tree.path();
    let inst = create(&env, root);
    let o = ok(&env, root, &["push", "-watch", &inst]).unwrap();
    assert!(o.stderr.contains("(inotify)"), "{}", o.stderr);
    let list = ok(&env, root, &["list"]).unwrap().stdout;
    assert!(
        list.contains("pushing ") && list.contains("on save"),
        "{list}"
    );
    // Saved files arrive on their own.
    write(root, "src/pkg2/saved.go", "package p // saved\n");
    wait_for("the save to be pushed", || {
        remote_view(&env, root, &inst, &[]).contains_key("src/pkg2/saved.go")
    });
    // A burst, then a barrier: when push returns, everything is there.
    for i in 0..20 {
        write(
            root,
            &format!("src/pkg4/burst{i}.go"),
            &format!("package p // {i}\n"),
        );
    }
    std::fs::rename(root.join("src/pkg5/f5.go"), root.join("src/pkg5/moved.go")).unwrap();
    std::fs::remove_file(root.join("src/pkg6/f6.go")).unwrap();
    std::fs::set_permissions(
        root.join("src/pkg0/f0.go"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("src/newdir/deeper")).unwrap();
    write(root, "src/newdir/deeper/x.go", "package deeper\n");
    let o = ok(&env, root, &["push", &inst]).unwrap();
    assert!(o.stderr.contains("in sync with"), "{}", o.stderr);
    assert_in_step(&env, root, &inst, &skipped());
    // A command that changes go/ is noticed and repaired without a save.
    ok(
        &env,
        root,
        &[
            "run",
            &inst,
            "/bin/sh",
            "-c",
            "echo junk > go/src/pkg2/saved.go",
        ],
    )
    .unwrap();
    ok(&env, root, &["push", &inst]).unwrap();
    assert_in_step(&env, root, &inst, &skipped());
    let status = ok(&env, root, &["daemon", "status"]).unwrap().stdout;
    assert!(
        status.contains(&inst) && status.contains("inotify"),
        "{status}"
    );
    // Unwatched: saves stay local until the next push.
    ok(&env, root, &["push", "-unwatch", &inst]).unwrap();
    assert!(
        !ok(&env, root, &["list"])
            .unwrap()
            .stdout
            .contains("on save")
    );
    write(root, "src/pkg2/after.go", "package p\n");
    // Nothing to wait for: this checks that nothing happens, so it gives a
    // watcher (which pushes a save within milliseconds) time to misbehave.
    std::thread::sleep(Duration::from_millis(400));
    assert!(!remote_view(&env, root, &inst, &[]).contains_key("src/pkg2/after.go"));
    ok(&env, root, &["push", &inst]).unwrap();
    assert_in_step(&env, root, &inst, &skipped());
}

#[test]
fn watch_falls_back_to_scanning() {
    let env = GomoteEnv::with_config("watch_poll_secs = 1", "").unwrap();
    let tree = generated_tree();
    let root = tree.path();
    let inst = create(&env, root);
    let o = ok(&env, root, &["push", "-watch", &inst]).unwrap();
    assert!(o.stderr.contains("scanning every 1s"), "{}", o.stderr);
    write(root, "src/pkg2/scanned.go", "package p // scanned\n");
    std::fs::remove_file(root.join("src/pkg1/f1.go")).unwrap();
    wait_for("the scan to push", || {
        let r = remote_view(&env, root, &inst, &[]);
        r.contains_key("src/pkg2/scanned.go") && !r.contains_key("src/pkg1/f1.go")
    });
    assert_in_step(&env, root, &inst, &skipped());
}

#[test]
fn a_group_of_three_gets_one_upload() {
    let env = GomoteEnv::new("").unwrap();
    let tree = generated_tree();
    let root = tree.path();
    let members: Vec<String> = ok(
        &env,
        root,
        &["create", "-count=3", "-new-group=trio", &builder()],
    )
    .unwrap()
    .stdout
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let o = ok(&env, root, &["-group=trio", "push"]).unwrap();
    let uploads: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("Uploaded "))
        .collect();
    assert_eq!(uploads.len(), 1, "{}", o.stderr);
    assert_eq!(members.len(), 3, "{members:?}");
    for m in &members {
        assert!(uploads[0].contains(m.as_str()), "{m} not in {}", uploads[0]);
        assert_in_step(&env, root, m, &skipped());
    }
    // Watching the group: one save reaches all three.
    ok(&env, root, &["-group=trio", "push", "-watch"]).unwrap();
    write(root, "src/pkg2/everyone.go", "package p\n");
    ok(&env, root, &["-group=trio", "push"]).unwrap();
    for m in &members {
        assert_in_step(&env, root, m, &skipped());
    }
}
