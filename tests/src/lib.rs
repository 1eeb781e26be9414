//! Support for the end-to-end tests and benchmarks: finding (and building,
//! once per run) the real binaries, and starting a buildlet on a free port
//! with its own temporary work directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The directory holding the workspace's binaries for this build profile.
fn bin_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one up.
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Builds every workspace binary once per test run, so tests never run a
/// stale binary even when only this crate was asked to build.
fn ensure_built() -> Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = option_env!("CARGO").unwrap_or("cargo");
            let profile = bin_dir()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "debug".into());
            let profile = if profile == "debug" {
                "dev".to_string()
            } else {
                profile
            };
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let out = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "--workspace",
                    "--bins",
                    "--profile",
                    &profile,
                    "--manifest-path",
                ])
                .arg(&manifest)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cargo build failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The path of a workspace binary, built if needed.
pub fn bin(name: &str) -> Result<PathBuf> {
    ensure_built()?;
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!("binary {} not found after building", p.display());
    }
    Ok(p)
}

/// A running `buildlet` process on a free loopback port, killed on drop.
pub struct Buildlet {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its work directory (inside `_dir`).
    pub workdir: PathBuf,
    /// The password it requires, if any.
    pub password: Option<String>,
    _dir: tempfile::TempDir,
}

/// How to start a buildlet.
#[derive(Default, Clone)]
pub struct BuildletOpts {
    /// Require this password.
    pub password: Option<String>,
    /// Extra environment for the buildlet process.
    pub env: Vec<(String, String)>,
}

impl Buildlet {
    /// Starts a buildlet with no password.
    pub fn start() -> Result<Buildlet> {
        Self::start_with(BuildletOpts::default())
    }

    /// Starts a buildlet with options.
    pub fn start_with(opts: BuildletOpts) -> Result<Buildlet> {
        let dir = tempfile::tempdir()?;
        let workdir = dir.path().join("wd");
        let mut cmd = Command::new(bin("buildlet")?);
        cmd.args(["--listen", "127.0.0.1:0", "--workdir"])
            .arg(&workdir)
            .env("BUILDLET_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(p) = &opts.password {
            let f = dir.path().join("password");
            std::fs::write(&f, p)?;
            cmd.arg("--password-file").arg(f);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting buildlet")?;
        let stdout = child.stdout.take().context("buildlet stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().to_string();
        if addr.is_empty() {
            let _ = child.kill();
            bail!("buildlet printed no address");
        }
        Ok(Buildlet {
            child,
            addr,
            workdir: workdir.canonicalize()?,
            password: opts.password,
            _dir: dir,
        })
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit; returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Buildlet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reports whether a process with this pid is still alive (and not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A running `gomote-coordinator serve` on a free loopback port with its
/// own state directory; killed on drop (its buildlets are killed too).
pub struct Coordinator {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its state directory.
    pub state: PathBuf,
    config: PathBuf,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl Coordinator {
    /// Starts a coordinator with `config` (TOML) in a new state directory.
    pub fn start(config: &str) -> Result<Coordinator> {
        let dir = std::sync::Arc::new(tempfile::tempdir()?);
        let state = dir.path().join("state");
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config)?;
        let mut c = Coordinator {
            child: None,
            addr: String::new(),
            state,
            config: cfg,
            _dir: dir,
        };
        c.spawn()?;
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut child = Command::new(bin("gomote-coordinator")?)
            .args(["serve", "--listen", "127.0.0.1:0", "--state"])
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .env("GOMOTE_COORDINATOR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting gomote-coordinator")?;
        let stdout = child.stdout.take().context("coordinator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        self.addr = line.trim().to_string();
        if self.addr.is_empty() {
            let _ = child.kill();
            bail!("coordinator printed no address");
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the coordinator with SIGKILL (its buildlets keep running) and
    /// starts it again on the same state directory.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn()
    }

    /// Makes a bearer token for `email`.
    pub fn token(&self, email: &str) -> Result<String> {
        let out = Command::new(bin("gomote-coordinator")?)
            .args(["token", "create", "--state"])
            .arg(&self.state)
            .args(["--user", email])
            .output()?;
        if !out.status.success() {
            bail!(
                "token create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Buildlets run in their own process groups so they survive a
        // coordinator restart; a finished test must not leave them behind.
        kill_buildlets_under(&self.state);
    }
}

/// Kills every process whose command line mentions `dir`.
pub fn kill_buildlets_under(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
