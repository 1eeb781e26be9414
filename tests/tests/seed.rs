//! The seed workflow on a real Go toolchain (Debian's Go 1.19 tree): create,
//! push GOROOT, ls, build, test, then a group hammering a test written to
//! fail at random with `run -until -collect`, and destroy the group.
//!
//! make.bash takes minutes on a small machine, so by default CI runs a
//! fast variant that builds make.bash's first stage (cmd/dist) from the
//! pushed tree with the bootstrap toolchain and runs it; with
//! `GOMOTE_SEED_FULL=1` (what `./quickstart` does) it runs make.bash itself,
//! `go test -short fmt`, and `go version` from the pushed toolchain.

use std::time::Instant;

use gomote_tests::{GomoteEnv, goroot_copy};

fn builder() -> String {
    format!(
        "{}-{}",
        gomote_shared::platform::goos(),
        gomote_shared::platform::goarch()
    )
}

const FLAKY_TEST: &str = r#"package flaky

import (
	"math/rand"
	"testing"
	"time"
)

func TestX(t *testing.T) {
	rand.Seed(time.Now().UnixNano())
	if rand.Intn(3) == 0 {
		t.Fatal("flaky failure: the bug showed up")
	}
}
"#;

/// Builds cmd/dist from the pushed tree with the bootstrap toolchain, as
/// make.bash's first step does, and runs `dist version`.
const DIST_STAGE: &str = r#"cd "$WORKDIR/go/src" && GOROOT="$GOROOT_BOOTSTRAP" GO111MODULE=off GOENV=off GOFLAGS= "$GOROOT_BOOTSTRAP/bin/go" build -o cmd/dist/dist ./cmd/dist && GOROOT="$WORKDIR/go" ./cmd/dist/dist version"#;

#[test]
fn seed_workflow_on_a_real_goroot() {
    let Some(goroot) = goroot_copy() else {
        eprintln!("skipping: no /usr/lib/go-1.19 (apt-get install golang-go)");
        return;
    };
    let full = std::env::var_os("GOMOTE_SEED_FULL").is_some();
    let env = GomoteEnv::new("").unwrap();
    let gr = goroot.to_str().unwrap();
    let t = Instant::now();
    let name = env.ok(&["create", &builder()]).unwrap().trim().to_string();
    eprintln!("create: {:?}", t.elapsed());
    let t = Instant::now();
    let o = env
        .run_with(&["push", &name], &[("GOROOT", gr)], None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    eprintln!("cold push: {:?}", t.elapsed());
    let ls = env.ok(&["ls", &name]).unwrap();
    let entries: Vec<&str> = ls
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .map(|n| n.trim_end_matches('/'))
        .collect();
    assert!(
        entries.contains(&"go") && entries.contains(&"go1.4"),
        "{ls}"
    );

    if full {
        let t = Instant::now();
        let o = env.run(&["run", &name, "go/src/make.bash"]).unwrap();
        assert_eq!(o.code, 0, "make.bash: {}\n{}", o.stdout, o.stderr);
        eprintln!("make.bash: {:?}", t.elapsed());
        let t = Instant::now();
        let out = env
            .ok(&["run", &name, "go/bin/go", "test", "-short", "fmt"])
            .unwrap();
        assert!(out.starts_with("ok  \tfmt"), "{out}");
        eprintln!("go test -short fmt: {:?}", t.elapsed());
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
        assert!(v.starts_with("go version go1.19"), "{v}");
    } else {
        let t = Instant::now();
        let out = env
            .ok(&["run", "-system", &name, "/bin/sh", "-c", DIST_STAGE])
            .unwrap();
        assert!(
            out.trim().starts_with("go1.19"),
            "dist built from the pushed tree reports its version: {out}"
        );
        eprintln!("cmd/dist from the pushed tree: {:?}", t.elapsed());
    }

    // The group part: two instances, a flaky test, -until and -collect.
    let g = [("GOMOTE_GROUP", "debug"), ("GOROOT", gr)];
    let b = builder();
    let create: Vec<&str> = if full {
        vec!["create", "-setup", "-count=2", &b]
    } else {
        vec!["create", "-count=2", &b]
    };
    let o = env.run_with(&create, &g, None).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let members: Vec<String> = o.stdout.lines().map(str::to_string).collect();
    assert_eq!(members.len(), 2);
    if !full {
        // -setup's push without its make.bash: one upload for the group.
        let t = Instant::now();
        let o = env.run_with(&["push"], &g, None).unwrap();
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(
            o.stderr.matches("Uploaded ").count(),
            1,
            "one upload for the group: {}",
            o.stderr
        );
        eprintln!("group push (2 members): {:?}", t.elapsed());
    }
    let pkg = env.work().join("flaky");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("go.mod"), "module flaky\n\ngo 1.19\n").unwrap();
    std::fs::write(pkg.join("flaky_test.go"), FLAKY_TEST).unwrap();
    let st = std::process::Command::new("tar")
        .args(["czf", "flaky.tgz", "flaky"])
        .current_dir(env.work())
        .status()
        .unwrap();
    assert!(st.success());
    let o = env.run_with(&["puttar", "flaky.tgz"], &g, None).unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let go = if full { "go/bin/go" } else { "go1.4/bin/go" };
    let t = Instant::now();
    let o = env
        .run_with(
            &[
                "run",
                "-until=flaky failure",
                "-collect",
                "-dir=flaky",
                go,
                "test",
                "-run=TestX",
                "-count=1",
                ".",
            ],
            &g,
            None,
        )
        .unwrap();
    eprintln!("run -until on the group: {:?}", t.elapsed());
    // Every member stopped at its first failure, which the test prints.
    assert_eq!(
        o.stderr.matches("Match found on").count(),
        2,
        "{}",
        o.stderr
    );
    for m in &members {
        let out = std::fs::read_to_string(env.work().join(format!("{m}.stdout"))).unwrap();
        assert!(
            out.contains("flaky failure: the bug showed up"),
            "{m}: {out}"
        );
        let tgz = env.work().join(format!("{m}.tar.gz"));
        let listing = std::process::Command::new("tar")
            .args(["tzf", tgz.to_str().unwrap()])
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&listing.stdout);
        assert!(
            names.lines().any(|l| l == "flaky/flaky_test.go"),
            "{m} work dir tarball: {names}"
        );
    }
    let o = env
        .run_with(&["destroy", "-destroy-group"], &g, None)
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let left = env.ok(&["list"]).unwrap();
    assert_eq!(
        left.lines().count(),
        1,
        "only the first instance is left: {left}"
    );
    assert_eq!(
        env.ok(&["group", "list"]).unwrap(),
        "Name\tInstances\t\n(none)\n"
    );
}
