//! The `local` pool: every instance is a `buildlet` child process on
//! loopback with its own work directory under the state directory and a
//! random password, sandboxed with bubblewrap when available (read-only
//! system, private /tmp, HOME inside the instance directory). Buildlets run
//! in their own process group, so they outlive a coordinator restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use gomote_shared::buildlet_client::BuildletClient;
use gomote_shared::process::pid_alive;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

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
    bwrap: Option<PathBuf>,
    /// Host paths a sandboxed buildlet must still see (bootstrap
    /// toolchains that may live under the hidden /tmp).
    visible: Vec<PathBuf>,
    /// The host types it provides, and how many of each may run at once.
    capacity: HashMap<String, usize>,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The sandbox every local buildlet gets: the system read-only, its own
/// /dev, /proc and /tmp. The probe uses the same, so it tests what runs.
const SANDBOX: [&str; 9] = [
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
];

/// Reports whether bubblewrap can actually create a sandbox here (it needs
/// user namespaces or privileges some containers lack).
fn bwrap_works(bwrap: &Path) -> bool {
    std::process::Command::new(bwrap)
        .args(SANDBOX)
        .args(["--", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl LocalPool {
    /// Sets up the pool with instance directories under `root`, providing
    /// the host types in `capacity`.
    pub fn new(
        buildlet: Option<PathBuf>,
        root: PathBuf,
        sandbox: Sandbox,
        visible: Vec<PathBuf>,
        capacity: HashMap<String, usize>,
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
        let bwrap = match sandbox {
            Sandbox::None => None,
            Sandbox::Auto => find_on_path("bwrap").filter(|b| bwrap_works(b)),
            Sandbox::Bwrap => Some(
                find_on_path("bwrap")
                    .filter(|b| bwrap_works(b))
                    .ok_or_else(|| {
                        PoolError::Start(
                            "sandbox = \"bwrap\" but bubblewrap is missing or cannot run here"
                                .into(),
                        )
                    })?,
            ),
        };
        std::fs::create_dir_all(&root)
            .map_err(|e| PoolError::Start(format!("creating {}: {e}", root.display())))?;
        let visible = visible
            .into_iter()
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        Ok(LocalPool {
            buildlet,
            root,
            bwrap,
            visible,
            capacity,
        })
    }

    /// Whether buildlets are sandboxed.
    pub fn sandboxed(&self) -> bool {
        self.bwrap.is_some()
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

        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let program = match &self.bwrap {
            Some(bwrap) => {
                for a in SANDBOX {
                    args.push(a.into());
                }
                // The instance directory and the buildlet binary may live
                // under /tmp, which the tmpfs just hid.
                for p in [&dir, &self.buildlet] {
                    args.push(if p == &dir { "--bind" } else { "--ro-bind" }.into());
                    args.push(p.clone().into_os_string());
                    args.push(p.clone().into_os_string());
                }
                for p in &self.visible {
                    args.push("--ro-bind".into());
                    args.push(p.clone().into_os_string());
                    args.push(p.clone().into_os_string());
                }
                args.push("--setenv".into());
                args.push("HOME".into());
                args.push(home.clone().into_os_string());
                args.push("--".into());
                args.push(self.buildlet.clone().into_os_string());
                bwrap.clone()
            }
            None => self.buildlet.clone(),
        };
        for a in ["--listen", "127.0.0.1:0", "--workdir"] {
            args.push(a.into());
        }
        args.push(wd.clone().into_os_string());
        args.push("--password-file".into());
        args.push(pwfile.into_os_string());
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env("HOME", &home)
            .env("BUILDLET_LOG", "info")
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
                Ok(p) => kill_and_remove(&p).await,
                Err(e) => tracing::warn!(addr = %handle.addr, error = %e, "cannot stop buildlet"),
            }
        })
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
/// then waits a second before exiting.
async fn kill_and_remove(p: &Process) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(p.pid), Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while pid_alive(p.pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = killpg(Pid::from_raw(p.pid), Signal::SIGKILL);
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
}
