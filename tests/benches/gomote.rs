//! The whole stack from a user's seat: `gomote run NAME /bin/true` and
//! `gomote list`, each timed from CLI start to exit with a warm daemon,
//! against `ssh` with ControlMaster running `true`, in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gomote_tests::GomoteEnv;
use gomote_tests::timing::{median, median_p90, ms};

fn main() -> Result<()> {
    // Build (or check) the binaries before anything is timed.
    gomote_tests::bin("gomote")?;
    // Room for the ten instances of the memory figure (the built-in pool holds 8).
    let env = GomoteEnv::with_local_capacity(16)?;
    let builder = gomote_tests::builder();
    let t = Instant::now();
    let name = env.ok(&["create", &builder])?.trim().to_string();
    println!(
        "gomote create (autostarts the daemon and its coordinator): {}",
        ms(t.elapsed())
    );
    let mut run = env.time(&["run", &name, "/bin/true"], 200)?;
    let mut list = env.time(&["list"], 200)?;
    println!(
        "gomote run NAME /bin/true, CLI start to exit: {}",
        median_p90(&mut run)
    );
    println!(
        "gomote list, CLI start to exit:               {}",
        median_p90(&mut list)
    );
    // Memory: the daemon (which embeds the coordinator) idle with one
    // instance, then with ten; buildlets are their own processes.
    let pid = env
        .daemon_pid()
        .context("no daemon after create")?
        .to_string();
    let rss = |pid: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("VmRSS:")
                        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
                })
            })
            .unwrap_or(0)
    };
    // Idle means a while after the last request, not a condition to wait
    // for: let a second pass so the figure is not taken mid-request.
    std::thread::sleep(Duration::from_secs(1));
    println!("gomoted RSS, idle with 1 instance: {} KiB", rss(&pid));
    let o = env.run(&["create", "-count=9", &builder])?;
    if o.code != 0 {
        bail!("create -count=9: {}", o.stderr);
    }
    for _ in 0..20 {
        env.ok(&["list"])?;
    }
    println!("gomoted RSS, with 10 instances:    {} KiB", rss(&pid));
    let buildlets: Vec<u64> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| {
            let p = e.file_name().to_string_lossy().to_string();
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).to_string();
            (cmd.starts_with(&format!(
                "{}",
                gomote_tests::bin("buildlet").ok()?.display()
            )) && cmd.contains(&env.dir.path().display().to_string()))
            .then(|| rss(&p))
        })
        .collect();
    if !buildlets.is_empty() {
        println!(
            "buildlet RSS, mean of {}: {} KiB",
            buildlets.len(),
            buildlets.iter().sum::<u64>() / buildlets.len() as u64
        );
    }
    match gomote_tests::anchor::ssh_true(30) {
        Ok(mut ssh) => {
            let a = median(&mut ssh);
            println!(
                "anchor: ssh ControlMaster `true`:             median {}",
                ms(a)
            );
            println!(
                "ratio: gomote run / ssh = {:.4}x",
                median(&mut run).as_secs_f64() / a.as_secs_f64()
            );
        }
        Err(e) => println!("anchor: ssh skipped: {e}"),
    }
    Ok(())
}
