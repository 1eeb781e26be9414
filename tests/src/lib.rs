//! Support for the end-to-end tests and benchmarks: finding (and building,
//! once per run) the real binaries, starting a buildlet or a coordinator on
//! a free port with its own temporary directories, a private `gomote`
//! environment, waiting for a condition under a deadline, and the small
//! helpers several test files share.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
            let mut build = Command::new(cargo);
            // Cargo gives a test or bench it runs variables describing it
            // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Passed on, they would
            // differ from a plain `cargo build`'s environment, and build
            // scripts that watch them (ring's watches CARGO_MANIFEST_DIR)
            // would rerun and rebuild half the workspace on every switch.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .contains(&k.as_ref())
                {
                    build.env_remove(k.as_ref());
                }
            }
            let out = build
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
        eventually(timeout, || matches!(self.child.try_wait(), Ok(Some(_))))
    }
}

impl Drop for Buildlet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the waiting helpers pause between two looks.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Calls `f` until it returns `Some`, for at most `timeout` (it always
/// looks at least once, and once more at the deadline); `None` if it never
/// did. For waiting on a condition instead of sleeping a guessed time.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY.min(deadline - now));
    }
}

/// Whether `f` holds within `timeout` (see [`poll`]).
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    poll(timeout, || f().then_some(())).is_some()
}

/// [`poll`] for async tests: `f` may borrow from the test (a client).
pub async fn poll_async<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline - now)).await;
    }
}

/// [`eventually`] for async tests.
pub async fn eventually_async(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    poll_async(timeout, async || f().await.then_some(()))
        .await
        .is_some()
}

/// The native builder's name, `<goos>-<goarch>` (what the built-in local
/// pool offers).
pub fn builder() -> String {
    format!(
        "{}-{}",
        gomote_shared::platform::goos(),
        gomote_shared::platform::goarch()
    )
}

/// The built-in local pool's host type for the native builder.
pub fn local_host_type() -> String {
    format!("host-{}-local", builder())
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .with_context(|| format!("sending {signal} to {pid}"))
}

/// Waits for every child and fails, with its stderr, on the first that
/// did not exit 0.
pub fn wait_all_ok(children: Vec<Child>) -> Result<()> {
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "child exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// A gzip'd tar of regular files (mode 0644, a fixed mtime).
pub fn tgz(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *body)?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner()?)?;
    Ok(gz.finish()?)
}

/// The entry names of a gzip'd tar, in order, as written.
pub fn tgz_names(data: &[u8]) -> Result<Vec<String>> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut names = Vec::new();
    for e in ar.entries()? {
        names.push(String::from_utf8(e?.path_bytes().into_owned())?);
    }
    Ok(names)
}

/// Every file (not directory) below `dir` whose path satisfies `want`;
/// unreadable directories are passed over, links are not followed.
pub fn find_files(dir: &Path, want: &impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_files(&p, want));
        } else if want(&p) {
            found.push(p);
        }
    }
    found
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
    /// More `serve` flags (TLS).
    args: Vec<String>,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl Coordinator {
    /// Starts a coordinator with `config` (TOML) in a new state directory.
    pub fn start(config: &str) -> Result<Coordinator> {
        Self::start_with(config, &[])
    }

    /// Like [`Coordinator::start`], with more `serve` flags.
    pub fn start_with(config: &str, args: &[&str]) -> Result<Coordinator> {
        let dir = std::sync::Arc::new(tempfile::tempdir()?);
        let state = dir.path().join("state");
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config)?;
        let mut c = Coordinator {
            child: None,
            addr: String::new(),
            state,
            config: cfg,
            args: args.iter().map(|a| a.to_string()).collect(),
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
            .args(&self.args)
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

    /// Runs `gomote-coordinator <args> --state <state>` (the `user` and
    /// `token` commands) and returns its output, successful or not.
    pub fn manage_output(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(bin("gomote-coordinator")?)
            .args(args)
            .arg("--state")
            .arg(&self.state)
            .output()?)
    }

    /// [`Coordinator::manage_output`] that must succeed: its stdout.
    pub fn manage(&self, args: &[&str]) -> Result<String> {
        let out = self.manage_output(args)?;
        if !out.status.success() {
            bail!(
                "gomote-coordinator {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// `http://addr`, or `https://addr` with TLS.
    pub fn url(&self) -> String {
        if self.args.iter().any(|a| a == "--tls-self-signed") {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The `SHA256:...` fingerprint of its self-signed certificate.
    pub fn fingerprint(&self) -> Result<String> {
        use base64::Engine as _;
        let pem = std::fs::read_to_string(self.state.join("tls/cert.pem"))?;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
        Ok(gomote_shared::tls::fingerprint(&der))
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

/// The host pid of the buildlet of instance `id` of a coordinator whose
/// state directory is `state`: a `buildlet` process whose command line
/// names the instance's directory. Asked from outside because inside a
/// sandbox an instance has pids of its own (`$PPID` there is not the
/// buildlet's host pid).
pub fn buildlet_pid(state: &Path, id: &str) -> Option<i32> {
    let needle = format!("{}/instances/{id}.", state.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (comm.trim() == "buildlet" && String::from_utf8_lossy(&cmd).contains(&needle))
            .then_some(pid)
    })
}

/// The pid of a live process whose arguments are exactly `argv`: how a test
/// finds a command it ran on an instance, whose own pids (inside its
/// sandbox) are not the host's.
pub fn pid_by_argv(argv: &[&str]) -> Option<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd == want && pid_alive(pid)).then_some(pid)
    })
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
            let _ = signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A user's world for `gomote`: private XDG directories, socket, HOME and
/// TMPDIR, so each test gets its own daemon and embedded coordinator.
/// Dropping it stops the daemon and every buildlet it started.
pub struct GomoteEnv {
    /// The root of everything.
    pub dir: tempfile::TempDir,
    /// The daemon's socket.
    pub socket: PathBuf,
}

/// What a `gomote` run produced.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl GomoteEnv {
    /// A new environment whose embedded coordinator uses `coordinator_toml`
    /// (the `[coordinator]` table's body; empty for the built-in default).
    pub fn new(coordinator_toml: &str) -> Result<GomoteEnv> {
        Self::with_config("", coordinator_toml)
    }

    /// Like [`GomoteEnv::new`], with top-level daemon settings too.
    pub fn with_config(daemon_toml: &str, coordinator_toml: &str) -> Result<GomoteEnv> {
        let dir = tempfile::tempdir()?;
        for d in ["run", "data", "config/gomote", "home", "tmp", "work"] {
            std::fs::create_dir_all(dir.path().join(d))?;
        }
        let mut cfg = format!(
            "{daemon_toml}\n[coordinator]\nreap_interval_secs = 1\nheartbeat_interval_secs = 2\n"
        );
        cfg.push_str(coordinator_toml);
        std::fs::write(dir.path().join("config/gomote/config.toml"), cfg)?;
        let socket = dir.path().join("run/gomote/gomoted.sock");
        Ok(GomoteEnv { dir, socket })
    }

    /// Like [`GomoteEnv::new`], with room for `capacity` native instances
    /// in the built-in local pool.
    pub fn with_local_capacity(capacity: usize) -> Result<GomoteEnv> {
        Self::new(&format!(
            "[[coordinator.host_types]]\nname = \"{}\"\ncapacity = {capacity}\n",
            local_host_type()
        ))
    }

    /// The working directory commands run in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A `gomote` command with this environment.
    pub fn cmd(&self, args: &[&str]) -> Result<Command> {
        let mut c = Command::new(bin("gomote")?);
        c.args(args)
            .current_dir(self.work())
            .env_remove("GOMOTE_GROUP")
            .env_remove("GOMOTED_SOCKET")
            .envs(self.env_vars());
        Ok(c)
    }

    /// `cmd` with extra environment.
    fn cmd_with(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Command> {
        let mut c = self.cmd(args)?;
        c.envs(env.iter().copied());
        Ok(c)
    }

    /// Runs `gomote args...` with extra environment and optional stdin.
    pub fn run_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let mut c = self.cmd_with(args, env)?;
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        if let Some(data) = stdin
            && let Some(mut w) = child.stdin.take()
        {
            w.write_all(data)?;
        }
        let out = child.wait_with_output()?;
        Ok(Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `gomote args...`.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_with(args, &[], None)
    }

    /// Runs `gomote args...` and fails unless it exits 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args)?;
        if o.code != 0 {
            bail!(
                "gomote {args:?} exited {}:\nstdout: {}\nstderr: {}",
                o.code,
                o.stdout,
                o.stderr
            );
        }
        Ok(o.stdout)
    }
}

impl Drop for GomoteEnv {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            let _ = signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        kill_buildlets_under(self.dir.path());
    }
}

/// A copy of Debian's Go 1.19 tree (symlinks resolved, without the large
/// prebuilt `pkg`), made once per test run and shared; `None` when Go is
/// not installed.
pub fn goroot_copy() -> Option<PathBuf> {
    static COPY: OnceLock<Option<PathBuf>> = OnceLock::new();
    COPY.get_or_init(|| {
        let src = Path::new("/usr/lib/go-1.19");
        if !src.join("bin/go").exists() {
            return None;
        }
        // One copy shared by every run (tests never change it): built under
        // a private name, then renamed into place whole.
        let done = std::env::temp_dir().join("gomote-test-goroot-1.19");
        if done.join("src/internal/goversion/goversion.go").exists() {
            return Some(done);
        }
        let dst = std::env::temp_dir().join(format!("gomote-test-goroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst).ok()?;
        // Push never sends the top-level pkg and bin; do not copy them.
        for e in std::fs::read_dir(src).ok()?.flatten() {
            let name = e.file_name();
            if name == "pkg" || name == "bin" {
                continue;
            }
            let ok = Command::new("cp")
                .arg("-rL")
                .arg(e.path())
                .arg(dst.join(&name))
                .status()
                .ok()?
                .success();
            if !ok {
                return None;
            }
        }
        match std::fs::rename(&dst, &done) {
            Ok(()) => Some(done),
            // Another run got there first.
            Err(_) if done.join("src").exists() => {
                let _ = std::fs::remove_dir_all(&dst);
                Some(done)
            }
            Err(_) => Some(dst),
        }
    })
    .clone()
}

/// Daemon life-cycle helpers: where this environment's daemon keeps its
/// lock and log, which `gomoted` processes belong to it, and how to start
/// one directly (for socket activation).
impl GomoteEnv {
    /// Runs `gomote args...` `n` times, output discarded, and returns how
    /// long each took from start to exit (benchmarks).
    pub fn time(&self, args: &[&str], n: usize) -> Result<Vec<Duration>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = self.cmd(args)?;
            c.stdout(Stdio::null()).stderr(Stdio::null());
            let t = std::time::Instant::now();
            let st = c.status()?;
            v.push(t.elapsed());
            if !st.success() {
                bail!("gomote {args:?} failed: {st}");
            }
        }
        Ok(v)
    }

    /// The daemon's lock file (`<data>/gomoted.lock`: pid and version).
    pub fn lock_path(&self) -> PathBuf {
        self.dir.path().join("data/gomote/gomoted.lock")
    }

    /// Kills this environment's daemon (and so its embedded coordinator)
    /// with SIGKILL; returns its pid.
    pub fn kill_daemon(&self) -> Result<i32> {
        let pid = self.daemon_pid().context("no daemon running")?;
        signal(pid, nix::sys::signal::Signal::SIGKILL)?;
        Ok(pid)
    }

    /// The pid in the lock file, if that process is alive.
    pub fn daemon_pid(&self) -> Option<i32> {
        let s = std::fs::read_to_string(self.lock_path()).ok()?;
        let pid = s.split_whitespace().next()?.parse::<i32>().ok()?;
        pid_alive(pid).then_some(pid)
    }

    /// The environment `cmd` gives `gomote` (and so the daemon it starts).
    pub fn env_vars(&self) -> Vec<(&'static str, PathBuf)> {
        let d = self.dir.path();
        vec![
            ("XDG_RUNTIME_DIR", d.join("run")),
            ("XDG_DATA_HOME", d.join("data")),
            ("XDG_CONFIG_HOME", d.join("config")),
            ("HOME", d.join("home")),
            ("TMPDIR", d.join("tmp")),
            ("GOMOTED_LOG", PathBuf::from("warn")),
        ]
    }

    /// Live `gomoted` processes whose environment is this one's.
    pub fn gomoted_pids(&self) -> Vec<i32> {
        let needle = format!("XDG_DATA_HOME={}", self.dir.path().join("data").display());
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "gomoted" || !pid_alive(pid) {
                continue;
            }
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// A `gomote` child with this environment and piped output.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Child> {
        let mut c = self.cmd_with(args, env)?;
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(c.spawn()?)
    }
}

/// Summaries of timing samples for the benchmarks.
pub mod timing {
    use std::time::Duration;

    /// The median (sorts the samples).
    pub fn median(v: &mut [Duration]) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// The 90th percentile (sorts the samples).
    pub fn p90(v: &mut [Duration]) -> Duration {
        v.sort();
        v[v.len() * 9 / 10]
    }

    /// Milliseconds with three decimals.
    pub fn ms(d: Duration) -> String {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    }

    /// `median X  p90 Y` (sorts the samples).
    pub fn median_p90(v: &mut [Duration]) -> String {
        format!("median {}  p90 {}", ms(median(v)), ms(p90(v)))
    }
}

/// The ssh anchor the benchmarks measure against, set up by
/// `tests/benches/ssh-anchor.sh` (which `./bench` runs first).
pub mod anchor {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Result, bail};

    /// The ssh wrapper that multiplexes over one ControlMaster connection
    /// to `root@127.0.0.1` (usable as `rsync -e`).
    pub const RSH: &str = "/tmp/gomote-anchor/rsh";

    /// What to run to set the anchor up.
    pub const SETUP: &str = "tests/benches/ssh-anchor.sh";

    /// Whether the anchor has been set up.
    pub fn ready() -> bool {
        Path::new(RSH).exists()
    }

    /// Times `n` runs of `true` over the ssh master connection, after two
    /// untimed ones.
    pub fn ssh_true(n: usize) -> Result<Vec<Duration>> {
        if !ready() {
            bail!("no ssh anchor (run {SETUP})");
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n + 2 {
            let t = Instant::now();
            let st = Command::new(RSH)
                .args(["root@127.0.0.1", "true"])
                .stdin(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("ssh anchor failed: {st} (run {SETUP})");
            }
            if i >= 2 {
                out.push(t.elapsed());
            }
        }
        Ok(out)
    }
}

/// GomoteService and extension clients for tests that speak gRPC to a
/// coordinator directly, with or without a bearer token.
pub mod grpc {
    use gomote_shared::proto::gomote_extension_service_client::GomoteExtensionServiceClient;
    use gomote_shared::proto::gomote_service_client::GomoteServiceClient;
    use tonic::service::interceptor::InterceptedService;
    use tonic::transport::Channel;

    use super::Coordinator;

    /// Adds `authorization: Bearer <token>` when there is a token.
    #[derive(Debug, Clone)]
    pub struct Bearer(pub Option<String>);

    impl tonic::service::Interceptor for Bearer {
        fn call(
            &mut self,
            mut req: tonic::Request<()>,
        ) -> Result<tonic::Request<()>, tonic::Status> {
            if let Some(t) = &self.0 {
                let v = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| tonic::Status::internal("token is not header text"))?;
                req.metadata_mut().insert("authorization", v);
            }
            Ok(req)
        }
    }

    /// A GomoteService client.
    pub type Client = GomoteServiceClient<InterceptedService<Channel, Bearer>>;
    /// A GomoteExtensionService client.
    pub type Ext = GomoteExtensionServiceClient<InterceptedService<Channel, Bearer>>;

    /// A connection to `c`.
    pub async fn channel(c: &Coordinator) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(c.url())?.connect().await?)
    }

    /// A GomoteService client of `c` calling with `token`.
    pub async fn client(c: &Coordinator, token: Option<&str>) -> anyhow::Result<Client> {
        Ok(GomoteServiceClient::with_interceptor(
            channel(c).await?,
            Bearer(token.map(str::to_string)),
        ))
    }

    /// The caller's instances (ListInstances).
    pub async fn instances(
        cl: &mut Client,
    ) -> Result<Vec<gomote_shared::proto::Instance>, tonic::Status> {
        let r = cl
            .list_instances(gomote_shared::proto::ListInstancesRequest {})
            .await?;
        Ok(r.into_inner().instances)
    }

    /// An extension-service client of `c` calling with `token`.
    pub async fn ext(c: &Coordinator, token: Option<&str>) -> anyhow::Result<Ext> {
        Ok(GomoteExtensionServiceClient::with_interceptor(
            channel(c).await?,
            Bearer(token.map(str::to_string)),
        ))
    }
}
