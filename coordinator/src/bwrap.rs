//! The bubblewrap sandbox local buildlets run in, so that an instance is
//! hermetic: it sees this host's system directories read-only (`/usr`,
//! `/etc`, `/sys` and the `/bin`, `/lib`... links or directories) but no Go
//! toolchain in them, its own `/dev`, `/proc`, process ids and `/tmp`, its
//! instance directory, the buildlet binary, and each configured bootstrap
//! toolchain at a neutral path (`/gomote/bootstrap/<n>`) where `go1.4`
//! points. Nothing else: no home directories, `/var`, `/run`, `/opt`, other
//! instances, coordinator state or daemon socket.
//!
//! The plan is made once per pool from the host as it is at start-up; the
//! probe runs exactly the sandbox instances get.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gomote_shared::relpath;

/// Why the sandbox cannot be used on this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// bubblewrap is not installed.
    #[error("bubblewrap (bwrap) is not on PATH")]
    NoBwrap,
    /// A file or program could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// bubblewrap ran and refused (no user namespaces, say).
    #[error("bubblewrap cannot run the buildlet here: {said} ({status})")]
    Refused {
        /// Its last line of complaint.
        said: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// The system directories instances see, read-only, when they exist.
const SYSTEM_DIRS: [&str; 3] = ["usr", "etc", "sys"];

/// Top-level names that are links into `/usr` on merged-/usr systems and
/// directories elsewhere; recreated as the same links, or bound.
const TOP_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// Where system packages and hand installs put Go toolchains.
const TOOLCHAIN_PARENTS: [&str; 5] = [
    "usr/lib",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/share",
];

/// Where a `go` command may be installed.
const BIN_DIRS: [&str; 6] = [
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// Go's commands, which must not run from the host.
const GO_COMMANDS: [&str; 2] = ["go", "gofmt"];

/// Where instances see the configured bootstrap toolchains.
const BOOTSTRAP_ROOT: &str = "/gomote/bootstrap";

/// More binds than this for one bootstrap toolchain (a tree made of links
/// that leave it) and it is bound whole instead, its links left dangling.
const MAX_BOOTSTRAP_BINDS: usize = 256;

/// What stands in for a `go` command that is a regular file in a system
/// directory: a search cannot be made to skip a file, so it says what to do.
pub const NOT_INSTALLED: &str = "#!/bin/sh\n\
echo \"${0##*/}: not installed on this instance; push a GOROOT and add \\$WORKDIR/go/bin to -path\" >&2\n\
exit 127\n";

/// The sandbox of every local buildlet.
#[derive(Debug, Clone)]
pub struct Plan {
    bwrap: PathBuf,
    /// The arguments every instance shares, before its own binds.
    common: Vec<OsString>,
    /// Configured bootstrap directories (canonical host paths) and where
    /// instances see them.
    bootstraps: Vec<(PathBuf, PathBuf)>,
    /// Go toolchain directories hidden under empty read-only tmpfs.
    pub hidden: Vec<PathBuf>,
    /// Go commands that are regular files, replaced by the stub.
    pub stubbed: Vec<PathBuf>,
}

/// What the host holds that instances must not see, found under `root`
/// (`/`, or a fake tree in tests). Paths are as instances see them.
#[derive(Debug, Default, PartialEq)]
struct HostGo {
    /// Toolchain directories.
    dirs: Vec<PathBuf>,
    /// `go` commands that are regular files outside those directories.
    files: Vec<PathBuf>,
}

/// `p` (a path under `root`) as an instance sees it: `/` plus the rest.
fn inside(root: &Path, p: &Path) -> Option<PathBuf> {
    p.strip_prefix(root)
        .ok()
        .map(|rest| Path::new("/").join(rest))
}

/// Whether a directory name is a Go toolchain's: `go`, `golang`, or `go`
/// followed by a version (`go1.22`, `go-1.19`).
fn toolchain_name(name: &str) -> bool {
    name == "go"
        || name == "golang"
        || name
            .strip_prefix("go-")
            .or_else(|| name.strip_prefix("go"))
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether `dir` holds a Go tree.
fn looks_like_goroot(dir: &Path) -> bool {
    dir.join("src/runtime").is_dir() || dir.join("pkg/tool").is_dir()
}

/// Whether `p` (canonical, under `root`) is inside a directory instances
/// see: one of the bound system directories or a top-level directory that
/// is not a link.
fn visible(root: &Path, p: &Path) -> bool {
    SYSTEM_DIRS.iter().chain(&TOP_DIRS).any(|d| {
        let d = root.join(d);
        !d.is_symlink() && relpath::is_under(&d, p)
    })
}

/// Finds the host's Go toolchains and commands under `root`.
fn find_host_go(root: &Path) -> HostGo {
    let Ok(root) = root.canonicalize() else {
        return HostGo::default();
    };
    let mut found = HostGo::default();
    let hide_dir = |found: &mut HostGo, real: &Path| {
        if let Some(at) = inside(&root, real)
            && !found.dirs.iter().any(|d| relpath::is_under(d, &at))
        {
            found.dirs.retain(|d| !relpath::is_under(&at, d));
            found.dirs.push(at);
        }
    };
    for parent in TOOLCHAIN_PARENTS {
        let Ok(rd) = std::fs::read_dir(root.join(parent)) else {
            continue;
        };
        let mut names: Vec<_> = rd
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(toolchain_name))
            .map(|e| e.path())
            .collect();
        names.sort();
        for p in names {
            // A link is followed: hiding where it leads leaves it dangling.
            if let Ok(real) = p.canonicalize()
                && real.is_dir()
                && visible(&root, &real)
            {
                hide_dir(&mut found, &real);
            }
        }
    }
    // Go commands that lead somewhere still visible: into a Go tree (hide
    // the tree), or to a plain file (stub it).
    let system_roots = [root.clone(), root.join("usr"), root.join("usr/local")];
    for bin in BIN_DIRS {
        let bin = root.join(bin);
        if bin.is_symlink() {
            continue; // merged /usr: the same directory as one already seen
        }
        for cmd in GO_COMMANDS {
            let Ok(real) = bin.join(cmd).canonicalize() else {
                continue; // absent, or dangling already
            };
            let Some(at) = inside(&root, &real) else {
                continue;
            };
            if !visible(&root, &real) || found.dirs.iter().any(|d| relpath::is_under(d, &at)) {
                continue;
            }
            let tree = real.parent().and_then(Path::parent);
            match tree {
                Some(t) if looks_like_goroot(t) && !system_roots.iter().any(|s| s == t) => {
                    hide_dir(&mut found, t);
                }
                _ if real.is_file() && !found.files.contains(&at) => found.files.push(at),
                _ => {}
            }
        }
    }
    found
}

/// Whether a symlink below `dir` leads out of the tree shown whole, or is
/// absolute (the tree is seen elsewhere in the sandbox, so an absolute path
/// into it breaks too). `dir` is at `rel` in that tree: a link may climb
/// out of `dir` and still land in the tree. Stops at the first.
fn has_escaping_link(dir: &Path, rel: &Path) -> io::Result<bool> {
    let mut stack = vec![PathBuf::new()];
    while let Some(sub) = stack.pop() {
        for e in std::fs::read_dir(dir.join(&sub))? {
            let e = e?;
            let child = sub.join(e.file_name());
            let ft = e.file_type()?;
            if ft.is_symlink() {
                let target = std::fs::read_link(e.path())?;
                if !relpath::symlink_target_stays_inside(&rel.join(&child), &target) {
                    return Ok(true);
                }
            } else if ft.is_dir() {
                stack.push(child);
            }
        }
    }
    Ok(false)
}

/// The binds that show the tree at `host` at `at` with every link inside
/// it working: the whole tree when no link leaves it; otherwise each entry
/// on its own, links replaced by what they lead to (Debian's
/// `/usr/lib/go-1.19/src` is a link to `../../share/go-1.19/src`). `host`
/// is at `rel` in the tree being shown; the target of a link starts a tree
/// of its own, since its links are relative to where it really is.
fn tree_binds(
    host: &Path,
    at: &Path,
    rel: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> io::Result<()> {
    let host = host.canonicalize()?;
    if depth == 0 || !has_escaping_link(&host, rel)? {
        out.push((host, at.to_path_buf()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(&host)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    entries.sort();
    for name in entries {
        let entry = host.join(&name);
        let Ok(real) = entry.canonicalize() else {
            continue; // dangling on the host too
        };
        let to = at.join(&name);
        if entry.is_symlink() {
            // A link back up the tree would recurse forever; show it as is.
            if real.is_dir() && !relpath::is_under(&real, &host) {
                tree_binds(&real, &to, Path::new(""), depth - 1, out)?;
            } else {
                out.push((real, to));
            }
        } else if real.is_dir() {
            tree_binds(&real, &to, &rel.join(&name), depth - 1, out)?;
        } else {
            out.push((real, to));
        }
    }
    Ok(())
}

/// The binds for bootstrap directory `host` seen at `at`.
fn bootstrap_binds(host: &Path, at: &Path) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    tree_binds(host, at, Path::new(""), 8, &mut out)?;
    if out.len() > MAX_BOOTSTRAP_BINDS {
        tracing::warn!(bootstrap = %host.display(), binds = out.len(), "bootstrap toolchain has too many links leaving it; binding it whole");
        out = vec![(host.canonicalize()?, at.to_path_buf())];
    }
    Ok(out)
}

fn push_all(args: &mut Vec<OsString>, items: &[&dyn AsRef<std::ffi::OsStr>]) {
    args.extend(items.iter().map(|a| a.as_ref().to_os_string()));
}

impl Plan {
    /// Plans the sandbox for this host: `bwrap` runs it, `stub` is a file
    /// holding [`NOT_INSTALLED`] (written by the caller when
    /// [`Plan::stubbed`] is not empty), `bootstraps` the configured
    /// bootstrap directories (others are ignored: archives, missing paths).
    pub fn new(bwrap: PathBuf, stub: &Path, bootstraps: &[PathBuf]) -> Plan {
        Plan::under(Path::new("/"), bwrap, stub, bootstraps)
    }

    /// [`Plan::new`] for the host tree at `root`.
    fn under(root: &Path, bwrap: PathBuf, stub: &Path, bootstraps: &[PathBuf]) -> Plan {
        let mut a: Vec<OsString> = Vec::new();
        // Its own process ids: an instance sees (and can signal) only its
        // own processes, and when the buildlet dies everything it started
        // dies with the namespace.
        push_all(&mut a, &[&"--unshare-pid"]);
        for d in SYSTEM_DIRS {
            let host = root.join(d);
            if host.is_dir() {
                let at = Path::new("/").join(d);
                push_all(&mut a, &[&"--ro-bind", &host, &at]);
            }
        }
        for d in TOP_DIRS {
            let host = root.join(d);
            let at = Path::new("/").join(d);
            if let Ok(target) = std::fs::read_link(&host) {
                push_all(&mut a, &[&"--symlink", &target, &at]);
            } else if host.is_dir() {
                push_all(&mut a, &[&"--ro-bind", &host, &at]);
            }
        }
        // A resolv.conf that links outside what is bound (systemd-resolved
        // keeps it in /run): bind the file itself.
        if let Ok(real) = root.join("etc/resolv.conf").canonicalize()
            && real.is_file()
            && !visible(root, &real)
            && let Some(at) = root.canonicalize().ok().and_then(|r| inside(&r, &real))
        {
            push_all(&mut a, &[&"--ro-bind", &real, &at]);
        }
        push_all(
            &mut a,
            &[&"--dev", &"/dev", &"--proc", &"/proc", &"--tmpfs", &"/tmp"],
        );
        let go = find_host_go(root);
        // Empty and read-only: /usr/bin/go and friends dangle, so a PATH
        // search goes on to $WORKDIR/go/bin, and nothing can be put there.
        for d in &go.dirs {
            push_all(&mut a, &[&"--tmpfs", d, &"--remount-ro", d]);
        }
        for f in &go.files {
            push_all(&mut a, &[&"--ro-bind", &stub, f]);
        }
        let mut seen: Vec<(PathBuf, PathBuf)> = Vec::new();
        for b in bootstraps {
            let Ok(host) = b.canonicalize() else { continue };
            if !host.is_dir() || seen.iter().any(|(h, _)| h == &host) {
                continue;
            }
            let at = Path::new(BOOTSTRAP_ROOT).join(seen.len().to_string());
            match bootstrap_binds(&host, &at) {
                Ok(binds) => {
                    for (src, dst) in binds {
                        push_all(&mut a, &[&"--ro-bind", &src, &dst]);
                    }
                    seen.push((host, at));
                }
                Err(e) => {
                    tracing::warn!(bootstrap = %host.display(), error = %e, "bootstrap toolchain not shown to instances");
                }
            }
        }
        Plan {
            bwrap,
            common: a,
            bootstraps: seen,
            hidden: go.dirs,
            stubbed: go.files,
        }
    }

    /// The bwrap program.
    pub fn program(&self) -> &Path {
        &self.bwrap
    }

    /// bwrap's arguments for an instance in `dir` running `buildlet`, up
    /// to and including the `--` before the buildlet's command line.
    pub fn args(&self, dir: &Path, buildlet: &Path) -> Vec<OsString> {
        let mut a = self.common.clone();
        // The instance directory and the buildlet binary may live under
        // /tmp, which the tmpfs hid, or anywhere else nothing shows.
        push_all(
            &mut a,
            &[
                &"--bind",
                &dir,
                &dir,
                &"--ro-bind",
                &buildlet,
                &buildlet,
                &"--chdir",
                &dir,
                &"--",
            ],
        );
        a
    }

    /// Where instances see the bootstrap directory `host` (canonical), if
    /// it is one of those configured.
    pub fn bootstrap_path(&self, host: &Path) -> Option<PathBuf> {
        self.bootstraps
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, at)| at.clone())
    }

    /// Runs `buildlet --version` in the sandbox an instance in `dir` would
    /// get, with environment `env`; on failure, what bwrap said.
    pub fn probe(
        &self,
        dir: &Path,
        buildlet: &Path,
        env: &[(&str, OsString)],
    ) -> Result<(), SandboxError> {
        let out = std::process::Command::new(&self.bwrap)
            .args(self.args(dir, buildlet))
            .arg(buildlet)
            .arg("--version")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| SandboxError::Io {
                what: "running",
                path: self.bwrap.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        Err(SandboxError::Refused {
            said: said
                .lines()
                .last()
                .unwrap_or("no message")
                .trim()
                .to_string(),
            status: out.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Component;

    /// Whether `p` is a plain absolute path (what bwrap wants for a bind).
    fn plain_absolute(p: &Path) -> bool {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    }

    fn mkfile(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x").unwrap();
    }

    /// A Debian-like host: merged /usr, Go 1.19 in /usr/lib/go-1.19 with
    /// its sources in /usr/share/go-1.19, /usr/bin/go a link into it, a
    /// hand-installed tree reached through /usr/local/bin, and a stray go
    /// binary in /usr/sbin.
    fn fake_host() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in [
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/lib64",
            "etc",
            "home/dev",
            "var",
            "opt",
        ] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            symlink(target, r.join(link)).unwrap();
        }
        mkfile(&r.join("usr/lib/go-1.19/bin/go"));
        mkfile(&r.join("usr/share/go-1.19/src/runtime/proc.go"));
        symlink("../../share/go-1.19/src", r.join("usr/lib/go-1.19/src")).unwrap();
        symlink("go-1.19", r.join("usr/lib/go")).unwrap();
        symlink("go-1.19", r.join("usr/share/go")).unwrap();
        symlink("../lib/go-1.19/bin/go", r.join("usr/bin/go")).unwrap();
        // Not toolchains, whatever their names start with.
        std::fs::create_dir_all(r.join("usr/lib/gold-ld")).unwrap();
        std::fs::create_dir_all(r.join("usr/share/gocode")).unwrap();
        // A hand install somewhere the name patterns do not cover.
        mkfile(&r.join("usr/local/toolchains/gotip/bin/go"));
        std::fs::create_dir_all(r.join("usr/local/toolchains/gotip/src/runtime")).unwrap();
        std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
        symlink("../toolchains/gotip/bin/go", r.join("usr/local/bin/go")).unwrap();
        // A go binary copied into a system directory.
        mkfile(&r.join("usr/sbin/go"));
        // A toolchain outside what is bound needs nothing.
        mkfile(&r.join("opt/go/bin/go"));
        symlink("../../../opt/go/bin/go", r.join("usr/local/bin/gofmt")).unwrap();
        d
    }

    #[test]
    fn toolchain_names() {
        for n in ["go", "golang", "go-1.19", "go1.22.1"] {
            assert!(toolchain_name(n), "{n}");
        }
        for n in ["gold-ld", "gocode", "google-cloud-sdk", "go-md2man", "gox"] {
            assert!(!toolchain_name(n), "{n}");
        }
    }

    #[test]
    fn every_host_go_is_found() {
        let d = fake_host();
        let go = find_host_go(d.path());
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            go,
            HostGo {
                dirs: vec![
                    p("/usr/lib/go-1.19"),
                    p("/usr/share/go-1.19"),
                    p("/usr/local/toolchains/gotip")
                ],
                files: vec![p("/usr/sbin/go")],
            }
        );
    }

    #[test]
    fn the_plan_binds_the_system_and_hides_go() {
        let d = fake_host();
        let r = d.path();
        let boot = r.join("usr/lib/go");
        let plan = Plan::under(
            r,
            "bwrap".into(),
            Path::new("/stub"),
            &[boot.clone(), r.join("nope.tar.gz")],
        );
        let args: Vec<String> = plan
            .args(Path::new("/state/i.1"), Path::new("/x/buildlet"))
            .iter()
            .map(|a| {
                a.to_string_lossy()
                    .replace(&r.display().to_string(), "<root>")
            })
            .collect();
        let want = "--unshare-pid \
            --ro-bind <root>/usr /usr --ro-bind <root>/etc /etc \
            --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
            --dev /dev --proc /proc --tmpfs /tmp \
            --tmpfs /usr/lib/go-1.19 --remount-ro /usr/lib/go-1.19 \
            --tmpfs /usr/share/go-1.19 --remount-ro /usr/share/go-1.19 \
            --tmpfs /usr/local/toolchains/gotip --remount-ro /usr/local/toolchains/gotip \
            --ro-bind /stub /usr/sbin/go \
            --ro-bind <root>/usr/lib/go-1.19/bin /gomote/bootstrap/0/bin \
            --ro-bind <root>/usr/share/go-1.19/src /gomote/bootstrap/0/src \
            --bind /state/i.1 /state/i.1 --ro-bind /x/buildlet /x/buildlet --chdir /state/i.1 --";
        assert_eq!(args.join(" "), want);
        assert!(
            !args
                .iter()
                .any(|a| a.contains("home") || a.contains("var") || a.contains("opt"))
        );
        assert_eq!(
            plan.bootstrap_path(&boot.canonicalize().unwrap()),
            Some(PathBuf::from("/gomote/bootstrap/0"))
        );
        assert_eq!(plan.bootstrap_path(&r.join("usr")), None);
    }

    #[test]
    fn bootstrap_trees_without_escaping_links_are_bound_whole() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("go");
        mkfile(&t.join("bin/go"));
        mkfile(&t.join("src/a/b.go"));
        symlink("../a/b.go", t.join("src/a/c.go")).unwrap();
        let binds = bootstrap_binds(&t, Path::new("/gomote/bootstrap/0")).unwrap();
        assert_eq!(
            binds,
            [(
                t.canonicalize().unwrap(),
                PathBuf::from("/gomote/bootstrap/0")
            )]
        );
        // A link leaving it, one level down: that level is split.
        mkfile(&d.path().join("include/x.h"));
        symlink("../../include", t.join("src/include")).unwrap();
        let binds = bootstrap_binds(&t, Path::new("/b")).unwrap();
        let dst: Vec<_> = binds.iter().map(|(_, d)| d.display().to_string()).collect();
        assert_eq!(dst, ["/b/bin", "/b/src/a", "/b/src/include"]);
        assert!(
            binds
                .iter()
                .all(|(s, d)| plain_absolute(s) && plain_absolute(d))
        );
        // A link up the tree stays inside it, and one into the tree from
        // what a link leads to does not recurse forever.
        symlink("../..", t.join("src/a/up")).unwrap();
        symlink("../go", d.path().join("include/loop")).unwrap();
        let binds = bootstrap_binds(&t, Path::new("/b")).unwrap();
        assert!(binds.len() <= MAX_BOOTSTRAP_BINDS, "{}", binds.len());
        assert!(binds.iter().any(|(_, d)| d == Path::new("/b/src/a")));
    }

    /// The real sandbox on this host, when bubblewrap works here.
    #[test]
    fn instances_see_the_system_but_no_go_and_no_home() {
        let Some(bwrap) = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            eprintln!("skipping: no bwrap");
            return;
        };
        let env = [("PATH", OsString::from("/usr/bin:/bin"))];
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("inst");
        std::fs::create_dir_all(&dir).unwrap();
        let sh = Path::new("/bin/sh").canonicalize().unwrap();
        let plan = Plan::new(bwrap, &d.path().join("stub"), &[]);
        if let Err(e) = plan.probe(&dir, Path::new("/bin/true"), &env) {
            eprintln!("skipping: bwrap cannot run here: {e}");
            return;
        }
        let out = std::process::Command::new(plan.program())
            .args(plan.args(&dir, &sh))
            .args([
                "/bin/sh",
                "-c",
                "echo pid=$$; command -v go || echo no-go; ls -a /; touch /usr/lib/go-1.19/x 2>&1 | head -c0; \
                 ls /usr/lib/go-1.19 2>/dev/null | wc -l; touch ok && echo wrote",
            ])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pid=2", "its own process ids: {text}");
        assert_eq!(lines[1], "no-go", "{text}");
        let root: Vec<&str> = lines[2..lines.len() - 2].to_vec();
        for hidden in [
            "home", "root", "var", "run", "srv", "opt", "mnt", "media", "work",
        ] {
            assert!(!root.contains(&hidden), "/{hidden} visible: {root:?}");
        }
        for shown in ["usr", "etc", "bin", "tmp", "dev", "proc"] {
            assert!(root.contains(&shown), "/{shown} missing: {root:?}");
        }
        assert_eq!(
            lines[lines.len() - 2],
            "0",
            "hidden toolchains are empty: {text}"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "wrote",
            "the instance directory is writable"
        );
        assert!(dir.join("ok").exists());
    }
}
