//! The `local` pool: every instance is a `buildlet` child process on
//! loopback with its own work directory under the state directory and a
//! random password, sandboxed with bubblewrap when available (see
//! [`crate::bwrap`]: the system read-only without any Go toolchain, its own
//! /tmp and process ids, HOME inside the instance directory). Its
//! environment is a fixed one, not the coordinator's. Buildlets run in
//! their own process group, so they outlive a coordinator restart, and halt
//! by themselves when no coordinator has talked to them for longer than an
//! instance may stay idle.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use gomote_shared::buildlet_client::BuildletClient;
use gomote_shared::process::pid_alive;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bwrap::{self, Plan, SandboxError};
use crate::config::Sandbox;
use crate::pool::{Handle, Pool, PoolError, Started};

/// The name (and kind) of this pool, as host types name it.
pub const NAME: &str = "local";

/// What the local pool keeps in a [`Handle`]'s detail: the fields of the
/// record every local instance had before there were pools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Process {
    /// Process id of the buildlet (or of bwrap around it); its process group.
    pid: i32,
    /// The instance directory (work directory, home, log).
    dir: PathBuf,
}

impl Process {
    fn of(handle: &Handle) -> Result<Process, PoolError> {
        serde_json::from_value(serde_json::Value::Object(handle.detail.clone())).map_err(|e| {
            PoolError::BadHandle {
                pool: handle.pool.clone(),
                detail: e.to_string(),
            }
        })
    }

    fn handle(&self, addr: String, password: String) -> Result<Handle, PoolError> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(detail)) => Ok(Handle {
                pool: NAME.to_string(),
                addr,
                password,
                detail,
            }),
            Ok(_) => Err(PoolError::Start(
                "recording the buildlet: not an object".into(),
            )),
            Err(e) => Err(PoolError::Start(format!("recording the buildlet: {e}"))),
        }
    }
}

/// The local pool.
#[derive(Debug)]
pub struct LocalPool {
    buildlet: PathBuf,
    root: PathBuf,
    /// The sandbox, when buildlets get one.
    sandbox: Option<Plan>,
    /// The host types it provides, and how many of each may run at once.
    capacity: HashMap<String, usize>,
    /// How long a buildlet may go without a request before it halts.
    halt_after_idle: Option<Duration>,
    /// Instance directories of buildlets being stopped: their exit is no
    /// news for [`Pool::gone`] to report.
    stopping: Arc<Mutex<HashSet<PathBuf>>>,
}

/// The first `name` on this process's PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A standard system PATH, the same on every instance whatever the PATH of
/// the shell that started the coordinator.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The whole environment of a buildlet in instance directory `dir` (and so
/// the start of every command's): nothing of the coordinator's, whose
/// GOROOT, GOFLAGS or PATH would otherwise reach every instance. Builder
/// types add theirs to each command.
fn base_env(dir: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("HOME", dir.join("home").into_os_string()),
        ("PATH", SYSTEM_PATH.into()),
        ("LANG", "C.UTF-8".into()),
        ("TMPDIR", "/tmp".into()),
        ("BUILDLET_LOG", "info".into()),
    ]
}

/// Where the pool keeps the stub that replaces `go` binaries which are
/// regular files in system directories.
fn stub_path(root: &Path) -> PathBuf {
    root.join(".go-not-installed")
}

/// Plans the sandbox for buildlets under `root` and checks it runs
/// `buildlet` here; why not otherwise.
fn plan_sandbox(
    root: &Path,
    buildlet: &Path,
    bootstraps: &[PathBuf],
) -> Result<Plan, SandboxError> {
    let bwrap = find_on_path("bwrap").ok_or(SandboxError::NoBwrap)?;
    let stub = stub_path(root);
    let plan = Plan::new(bwrap, &stub, bootstraps);
    if !plan.stubbed.is_empty() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&stub, bwrap::NOT_INSTALLED)
            .and_then(|()| std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)))
            .map_err(|source| SandboxError::Io {
                what: "writing",
                path: stub.display().to_string(),
                source,
            })?;
    }
    let probe = root.join(format!(".probe.{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&probe).map_err(|source| SandboxError::Io {
        what: "creating",
        path: probe.display().to_string(),
        source,
    })?;
    let res = plan.probe(&probe, buildlet, &base_env(&probe));
    let _ = std::fs::remove_dir_all(&probe);
    res.map(|()| plan)
}

impl LocalPool {
    /// Sets up the pool with instance directories under `root`, providing
    /// the host types in `capacity`; `bootstraps` are the bootstrap
    /// toolchains AddBootstrap links into instances (directories among them
    /// are shown in the sandbox), and buildlets halt after `halt_after_idle`
    /// without a request.
    pub fn new(
        buildlet: Option<PathBuf>,
        root: PathBuf,
        sandbox: Sandbox,
        bootstraps: Vec<PathBuf>,
        capacity: HashMap<String, usize>,
        halt_after_idle: Option<Duration>,
    ) -> Result<LocalPool, PoolError> {
        let buildlet = match buildlet {
            Some(b) => b,
            None => {
                let exe = std::env::current_exe().map_err(|e| PoolError::Start(e.to_string()))?;
                let beside = exe.with_file_name("buildlet");
                // Test binaries live one level down, in deps/.
                let above = exe
                    .parent()
                    .and_then(Path::parent)
                    .map(|p| p.join("buildlet"));
                if beside.is_file() {
                    beside
                } else if let Some(a) = above.filter(|a| a.is_file()) {
                    a
                } else {
                    find_on_path("buildlet").ok_or_else(|| {
                        PoolError::Start(format!(
                            "no buildlet binary beside {} or on PATH (set local_pool.buildlet)",
                            exe.display()
                        ))
                    })?
                }
            }
        };
        // The sandbox binds it at its own path, which must be a plain one.
        let buildlet = buildlet.canonicalize().unwrap_or(buildlet);
        std::fs::create_dir_all(&root)
            .map_err(|e| PoolError::Start(format!("creating {}: {e}", root.display())))?;
        let sandbox = match sandbox {
            Sandbox::None => None,
            Sandbox::Auto => match plan_sandbox(&root, &buildlet, &bootstraps) {
                Ok(p) => Some(p),
                Err(why) => {
                    tracing::warn!(%why, "instances are not sandboxed: they see this host's files, its Go and the coordinator's environment");
                    None
                }
            },
            Sandbox::Bwrap => Some(
                plan_sandbox(&root, &buildlet, &bootstraps)
                    .map_err(|why| PoolError::Start(format!("sandbox = \"bwrap\" but {why}")))?,
            ),
        };
        if let Some(p) = &sandbox {
            tracing::info!(hidden = ?p.hidden, stubbed = ?p.stubbed, "the host's Go toolchains are hidden from instances");
        }
        Ok(LocalPool {
            buildlet,
            root,
            sandbox,
            capacity,
            halt_after_idle,
            stopping: Arc::default(),
        })
    }

    /// Whether buildlets are sandboxed.
    pub fn sandboxed(&self) -> bool {
        self.sandbox.is_some()
    }

    /// Starts a buildlet for instance `id` and waits until it answers.
    async fn spawn(&self, id: &str) -> Result<Started, PoolError> {
        let err = |what: &str, e: &dyn std::fmt::Display| PoolError::Start(format!("{what}: {e}"));
        let dir = self
            .root
            .join(format!("{id}.{:08x}", rand::random::<u32>()));
        let wd = dir.join("wd");
        let home = dir.join("home");
        for d in [&wd, &home] {
            std::fs::create_dir_all(d).map_err(|e| err("creating instance directory", &e))?;
        }
        let password = hex::encode(rand::random::<[u8; 16]>());
        let pwfile = dir.join("password");
        write_private(&pwfile, password.as_bytes()).map_err(|e| err("writing password", &e))?;
        let log =
            std::fs::File::create(dir.join("buildlet.log")).map_err(|e| err("creating log", &e))?;

        let (program, mut args) = match &self.sandbox {
            Some(plan) => (plan.program().to_path_buf(), {
                let mut a = plan.args(&dir, &self.buildlet);
                a.push(self.buildlet.clone().into_os_string());
                a
            }),
            None => (self.buildlet.clone(), Vec::new()),
        };
        for a in ["--listen", "127.0.0.1:0", "--workdir"] {
            args.push(a.into());
        }
        args.push(wd.clone().into_os_string());
        args.push("--password-file".into());
        args.push(pwfile.into_os_string());
        if let Some(idle) = self.halt_after_idle {
            args.push("--halt-after-idle".into());
            args.push(format!("{}s", idle.as_secs().max(1)).into());
        }
        tracing::debug!(program = %program.display(), ?args, "starting buildlet");
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(base_env(&dir))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own process group: a Ctrl-C to the coordinator must not
            // take the instances with it.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| err(&format!("spawning {}", program.display()), &e))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| PoolError::Start("buildlet exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| PoolError::Start("no stdout".into()))?;
        let mut line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        let addr = line.trim().to_string();
        if !matches!(read, Ok(Ok(n)) if n > 0) || addr.is_empty() {
            let _ = child.start_kill();
            let log = std::fs::read_to_string(dir.join("buildlet.log")).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(PoolError::Start(format!(
                "buildlet did not report its address: {}",
                log.lines().last().unwrap_or("no output")
            )));
        }
        // The child is reaped by tokio in the background when it exits.
        drop(child);
        let process = Process { pid, dir };
        let handle = match process.handle(addr, password) {
            Ok(h) => h,
            Err(e) => {
                kill_and_remove(&process).await;
                return Err(e);
            }
        };
        let client = match client_of(&handle) {
            Ok(c) => c,
            Err(e) => {
                kill_and_remove(&process).await;
                return Err(err("buildlet client", &e));
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match client.status().await {
                Ok(_) => return Ok(Started { handle, client }),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    kill_and_remove(&process).await;
                    return Err(err("buildlet never answered /status", &e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

impl Pool for LocalPool {
    fn name(&self) -> &str {
        NAME
    }

    fn kind(&self) -> &'static str {
        NAME
    }

    fn capacity(&self, host_type: &str) -> usize {
        self.capacity.get(host_type).copied().unwrap_or(0)
    }

    fn start<'a>(
        &'a self,
        _host_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Started, PoolError>> {
        Box::pin(self.spawn(id))
    }

    fn connect<'a>(
        &'a self,
        handle: &'a Handle,
    ) -> BoxFuture<'a, Result<BuildletClient, PoolError>> {
        Box::pin(async move {
            Process::of(handle)?;
            client_of(handle)
        })
    }

    fn stop<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match Process::of(handle) {
                Ok(p) => {
                    self.stopping.lock().insert(p.dir.clone());
                    kill_and_remove(&p).await;
                    // Whoever watched for its exit has seen it by now, or
                    // stopped watching with the instance.
                    let stopping = self.stopping.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(GONE_POLL * 5).await;
                        stopping.lock().remove(&p.dir);
                    });
                }
                Err(e) => tracing::warn!(addr = %handle.addr, error = %e, "cannot stop buildlet"),
            }
        })
    }

    /// The buildlet (or the bwrap around it) exited: it is a child, or
    /// after a restart someone else's, so its pid is polled.
    fn gone<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let Ok(p) = Process::of(handle) else {
                return std::future::pending().await;
            };
            while still_running(&p) {
                tokio::time::sleep(GONE_POLL).await;
            }
            if self.stopping.lock().contains(&p.dir) {
                // Stopped on purpose: the instance is ending, not dying.
                return std::future::pending().await;
            }
            format!("its buildlet process (pid {}) exited", p.pid)
        })
    }

    fn shared_path(&self, host_path: &Path) -> Option<PathBuf> {
        match &self.sandbox {
            Some(plan) => plan.bootstrap_path(host_path),
            None => Some(host_path.to_path_buf()),
        }
    }
}

/// How often [`Pool::gone`] looks at a buildlet's process.
const GONE_POLL: Duration = Duration::from_millis(200);

/// Whether `p`'s process still runs, and is still the buildlet of that
/// instance (its command line names the instance directory) rather than
/// an unrelated process that got the pid after a restart.
fn still_running(p: &Process) -> bool {
    pid_alive(p.pid) && names_dir(p)
}

/// Whether the command line of `p.pid` mentions `p.dir`; true where there
/// is no /proc to ask.
fn names_dir(p: &Process) -> bool {
    let needle = p.dir.as_os_str().as_bytes();
    match std::fs::read(format!("/proc/{}/cmdline", p.pid)) {
        Ok(cmd) => needle.is_empty() || cmd.windows(needle.len()).any(|w| w == needle),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Whether `p.pid` still names the buildlet's process group: its leader is
/// the buildlet, or the leader has exited and members remain (a pid is not
/// reused while a group of that number exists).
fn group_is_ours(p: &Process) -> bool {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    if pid_alive(p.pid) {
        names_dir(p)
    } else {
        p.pid > 1 && killpg(Pid::from_raw(p.pid), None).is_ok()
    }
}

fn client_of(handle: &Handle) -> Result<BuildletClient, PoolError> {
    Ok(BuildletClient::new(
        &handle.addr,
        Some(handle.password.clone()),
    )?)
}

/// Stops a buildlet and everything it started, and removes its directory.
/// The pool owns the process, so SIGTERM (on which the buildlet kills its
/// commands and exits at once) replaces Go's `/halt`, which answers and
/// then waits a second before exiting. In the sandbox the buildlet's exit
/// ends its pid namespace, which takes every process it started along.
async fn kill_and_remove(p: &Process) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if group_is_ours(p) {
        let group = Pid::from_raw(p.pid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while pid_alive(p.pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = killpg(group, Signal::SIGKILL);
        // Nothing may still write into the directory being removed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while killpg(group, None).is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let dir = p.dir.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = gomote_shared::safefs::remove_all(&dir, Path::new(""));
    })
    .await;
}

fn write_private(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::Record;

    fn pool(root: &Path) -> LocalPool {
        LocalPool::new(
            Some(PathBuf::from("/bin/true")),
            root.to_path_buf(),
            Sandbox::None,
            Vec::new(),
            HashMap::from([("h".to_string(), 2)]),
            None,
        )
        .unwrap()
    }

    #[test]
    fn records_from_before_pools_still_load_and_new_ones_keep_their_layout() {
        let old = r#"{"id":"u-b-0","owner":"local:u@x","builder_type":"b","host_type":"h",
            "created":1,"expires":2,"working_dir":"/wd","buildlet":{"pid":42,
            "addr":"127.0.0.1:5","password":"pw","dir":"/state/instances/u-b-0.0000abcd"}}"#;
        let rec: Record = serde_json::from_str(old).unwrap();
        let process = Process {
            pid: 42,
            dir: "/state/instances/u-b-0.0000abcd".into(),
        };
        assert_eq!(rec.buildlet.pool, NAME);
        assert_eq!(Process::of(&rec.buildlet).unwrap(), process);

        // What is written now has every field an older coordinator reads.
        let h = process.handle("127.0.0.1:5".into(), "pw".into()).unwrap();
        assert_eq!(h, rec.buildlet);
        let v = serde_json::to_value(&h).unwrap();
        for k in ["pid", "addr", "password", "dir", "pool"] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
        assert_eq!(serde_json::from_value::<Handle>(v).unwrap(), h);
    }

    #[tokio::test]
    async fn capacity_connect_and_unusable_handles() {
        let d = tempfile::tempdir().unwrap();
        let p = pool(d.path());
        assert_eq!((p.name(), p.kind()), ("local", "local"));
        assert_eq!((p.capacity("h"), p.capacity("other")), (2, 0));
        let h = Process {
            pid: 1 << 30,
            dir: d.path().join("x"),
        }
        .handle("127.0.0.1:5".into(), "pw".into())
        .unwrap();
        let c = p.connect(&h).await.unwrap();
        assert_eq!(c.base_url().as_str(), "http://127.0.0.1:5/");
        let mut bad = h.clone();
        bad.detail.remove("pid");
        assert!(matches!(
            p.connect(&bad).await,
            Err(PoolError::BadHandle { .. })
        ));
        // Stopping what cannot be identified does nothing (and says so).
        p.stop(&bad).await;
    }

    #[tokio::test]
    async fn a_buildlet_that_never_reports_its_address_is_cleaned_up() {
        let d = tempfile::tempdir().unwrap();
        let p = pool(d.path());
        let err = match p.start("h", "u-b-0").await {
            Ok(s) => panic!("/bin/true started as a buildlet: {:?}", s.handle),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("starting buildlet: buildlet did not report its address"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn gone_resolves_when_the_buildlet_exits_and_not_before() {
        let d = tempfile::tempdir().unwrap();
        let p = pool(d.path());
        let dir = d.path().join("u-b-0.00000001");
        // A process whose command line names the instance directory, as a
        // buildlet's (or its bwrap's) does.
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30; :"])
            .arg(&dir)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        let h = Process { pid, dir }
            .handle("127.0.0.1:5".into(), "pw".into())
            .unwrap();
        let gone = p.gone(&h);
        tokio::pin!(gone);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), &mut gone)
                .await
                .is_err(),
            "gone while running"
        );
        child.start_kill().unwrap();
        let why = tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("exit not noticed");
        assert_eq!(why, format!("its buildlet process (pid {pid}) exited"));
        let _ = child.wait().await;

        // After a restart the pid may belong to someone else: that is not
        // the buildlet, which is gone (and must not be signalled).
        let me = i32::try_from(std::process::id()).unwrap();
        let other = Process {
            pid: me,
            dir: d.path().join("u-b-1.00000002"),
        };
        assert!(!still_running(&other));
        assert!(!group_is_ours(&other));
        let h = other.handle("127.0.0.1:5".into(), "pw".into()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), p.gone(&h))
            .await
            .expect("a reused pid is not the buildlet");
    }

    #[tokio::test]
    async fn a_buildlet_stopped_on_purpose_is_not_reported_gone() {
        let d = tempfile::tempdir().unwrap();
        let p = pool(d.path());
        let dir = d.path().join("u-b-0.00000001");
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30; :"])
            .arg(&dir)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        let h = Process {
            pid,
            dir: dir.clone(),
        }
        .handle("127.0.0.1:5".into(), "pw".into())
        .unwrap();
        let gone = p.gone(&h);
        tokio::pin!(gone);
        let stop = p.stop(&h);
        tokio::select! {
            why = &mut gone => panic!("reported gone while being stopped: {why}"),
            () = stop => {}
        }
        let _ = child.wait().await;
        assert!(!dir.exists(), "the instance directory is removed");
        assert!(
            tokio::time::timeout(Duration::from_millis(600), gone)
                .await
                .is_err(),
            "reported gone after being stopped"
        );
    }

    #[test]
    fn without_a_sandbox_instances_see_bootstraps_where_they_are() {
        let d = tempfile::tempdir().unwrap();
        let p = pool(d.path());
        assert!(!p.sandboxed());
        assert_eq!(
            p.shared_path(Path::new("/usr/lib/go-1.19")),
            Some(PathBuf::from("/usr/lib/go-1.19"))
        );
    }

    #[test]
    fn the_buildlet_environment_is_fixed() {
        let env = base_env(Path::new("/s/i.1"));
        let keys: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["HOME", "PATH", "LANG", "TMPDIR", "BUILDLET_LOG"]);
        assert_eq!(env[0].1, "/s/i.1/home");
    }
}
