//! The whole stack from a user's seat: `gomote run NAME /bin/true` and
//! `gomote list`, each timed from CLI start to exit with a warm daemon,
//! against `ssh` with ControlMaster running `true`, in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use gomote_tests::GomoteEnv;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() * 9 / 10]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn time(env: &GomoteEnv, args: &[&str], n: usize) -> Result<Vec<Duration>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = env.cmd(args)?;
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let st = c.status()?;
        v.push(t.elapsed());
        if !st.success() {
            bail!("gomote {args:?} failed: {st}");
        }
    }
    Ok(v)
}

fn main() -> Result<()> {
    // Build (or check) the binaries before anything is timed.
    gomote_tests::bin("gomote")?;
    let env = GomoteEnv::new("")?;
    let builder = format!(
        "{}-{}",
        gomote_shared::platform::goos(),
        gomote_shared::platform::goarch()
    );
    let t = Instant::now();
    let name = env.ok(&["create", &builder])?.trim().to_string();
    println!(
        "gomote create (autostarts the daemon and its coordinator): {}",
        ms(t.elapsed())
    );
    let mut run = time(&env, &["run", &name, "/bin/true"], 200)?;
    let mut list = time(&env, &["list"], 200)?;
    println!(
        "gomote run NAME /bin/true, CLI start to exit: median {}  p90 {}",
        ms(median(&mut run)),
        ms(p90(&mut run))
    );
    println!(
        "gomote list, CLI start to exit:               median {}  p90 {}",
        ms(median(&mut list)),
        ms(p90(&mut list))
    );
    let rsh = Path::new("/tmp/gomote-anchor/rsh");
    if rsh.exists() {
        let mut ssh = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let ok = Command::new(rsh)
                .args(["root@127.0.0.1", "true"])
                .status()?
                .success();
            ssh.push(t.elapsed());
            if !ok {
                bail!("ssh anchor failed");
            }
        }
        let a = median(&mut ssh);
        println!(
            "anchor: ssh ControlMaster `true`:             median {}",
            ms(a)
        );
        println!(
            "ratio: gomote run / ssh = {:.4}x",
            median(&mut run).as_secs_f64() / a.as_secs_f64()
        );
    } else {
        println!("anchor: ssh skipped (run ../shared/bench/ssh-anchor.sh)");
    }
    Ok(())
}
