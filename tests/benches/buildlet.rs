//! Buildlet benchmarks, each measured against an anchor in the same run:
//! `/exec` of `/bin/true` (keep-alive and fresh connections) against
//! `ssh` with ControlMaster running `true`, and `/writetgz` of a
//! GOROOT-sized archive against `tar xzf` of the same file.
//!
//! Run with `./bench buildlet` (sets up the ssh anchor and golang-go), or
//! `cargo bench -p gomote-tests --bench buildlet`; without the anchors the
//! corresponding rows are skipped and say why.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gomote_tests::timing::{median, median_p90, ms};
use gomote_tests::{Buildlet, anchor};

const EXEC_REQ: &str = "POST /exec?cmd=/bin/true HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n";

/// Reads one chunked `/exec` response up to its trailer.
fn read_exec_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let mut tmp = [0u8; 4096];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"\r\n\r\n") {
            let text = String::from_utf8_lossy(buf);
            if text.contains("Process-State: ok\r\n\r\n") {
                return Ok(());
            }
            if text.contains("Process-State:") {
                bail!("command failed: {text}");
            }
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn exec_keepalive(b: &Buildlet, n: usize) -> Result<Vec<Duration>> {
    let mut s = TcpStream::connect(&b.addr)?;
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        s.write_all(EXEC_REQ.as_bytes())?;
        read_exec_response(&mut s, &mut buf)?;
        if i >= 10 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

fn exec_fresh(b: &Buildlet, n: usize) -> Result<Vec<Duration>> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut s = TcpStream::connect(&b.addr)?;
        s.set_nodelay(true)?;
        s.write_all(EXEC_REQ.as_bytes())?;
        read_exec_response(&mut s, &mut buf)?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn goroot_src() -> Result<PathBuf> {
    let p = Path::new("/usr/lib/go-1.19/src");
    let real = p
        .canonicalize()
        .context("no /usr/lib/go-1.19/src (apt-get install golang-go)")?;
    Ok(real)
}

fn put_tgz(b: &Buildlet, dir: &str, data: &[u8]) -> Result<Duration> {
    let t = Instant::now();
    let mut s = TcpStream::connect(&b.addr)?;
    let head = format!(
        "PUT /writetgz?dir={dir} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(data)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let el = t.elapsed();
    if !resp.starts_with("HTTP/1.1 200") || !resp.ends_with("OK") {
        bail!("writetgz failed: {resp}");
    }
    Ok(el)
}

fn bench_exec(b: &Buildlet) -> Result<()> {
    let mut ka = exec_keepalive(b, 500)?;
    let mut fresh = exec_fresh(b, 200)?;
    println!(
        "exec /bin/true, keep-alive connection: {}",
        median_p90(&mut ka)
    );
    println!(
        "exec /bin/true, new connection each:   {}",
        median_p90(&mut fresh)
    );
    match anchor::ssh_true(30) {
        Ok(mut s) => {
            let a = median(&mut s);
            println!("anchor: ssh ControlMaster `true`:     median {}", ms(a));
            println!(
                "ratio: exec keep-alive / ssh = {:.4}x; new connection / ssh = {:.4}x",
                median(&mut ka).as_secs_f64() / a.as_secs_f64(),
                median(&mut fresh).as_secs_f64() / a.as_secs_f64()
            );
        }
        Err(e) => println!("anchor: ssh skipped: {e}"),
    }
    Ok(())
}

fn bench_writetgz(b: &Buildlet) -> Result<()> {
    let src = match goroot_src() {
        Ok(s) => s,
        Err(e) => {
            println!("writetgz skipped: {e:#}");
            return Ok(());
        }
    };
    let scratch = tempfile::tempdir()?;
    let tgz = scratch.path().join("src.tgz");
    let parent = src.parent().context("src has no parent")?;
    let st = Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(parent)
        .arg("src")
        .status()?;
    if !st.success() {
        bail!("tar czf failed");
    }
    let data = std::fs::read(&tgz)?;
    let files = Command::new("tar")
        .arg("tzf")
        .arg(&tgz)
        .output()?
        .stdout
        .split(|c| *c == b'\n')
        .count();
    println!(
        "archive: {} ({} entries, {:.1} MiB compressed)",
        src.display(),
        files,
        data.len() as f64 / 1048576.0
    );
    let runs = 5;
    let mut ours = Vec::new();
    let mut anchor = Vec::new();
    for i in 0..runs {
        ours.push(put_tgz(b, &format!("run{i}"), &data)?);
        let dst = scratch.path().join(format!("tar{i}"));
        std::fs::create_dir_all(&dst)?;
        let t = Instant::now();
        let st = Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&dst)
            .status()?;
        anchor.push(t.elapsed());
        if !st.success() {
            bail!("tar xzf failed");
        }
    }
    let (o, a) = (median(&mut ours), median(&mut anchor));
    println!("writetgz (PUT, staged, atomic renames): median {}", ms(o));
    println!("anchor: tar xzf of the same file:       median {}", ms(a));
    println!(
        "ratio: writetgz / tar xzf = {:.2}x",
        o.as_secs_f64() / a.as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; nothing else to parse.
    let b = Buildlet::start()?;
    bench_exec(&b)?;
    bench_writetgz(&b)?;
    Ok(())
}
