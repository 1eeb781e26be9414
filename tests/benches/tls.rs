//! What TLS costs a command: `gomote run NAME /bin/true` with a warm
//! daemon against a standalone coordinator over TLS (a pinned self-signed
//! certificate) and over loopback plaintext, in the same run. The daemon
//! keeps its connection, so the handshake is paid once, not per command.

use std::time::Duration;

use anyhow::{Result, bail};
use gomote_tests::timing::{median, ms};
use gomote_tests::{Coordinator, GomoteEnv, builder, local_host_type};

const N: usize = 100;

/// The median of `run NAME /bin/true` against a coordinator started with
/// `args`, after a login (pinning when TLS) and a create.
fn bench(args: &[&str]) -> Result<Duration> {
    let config = format!(
        "idle_timeout_secs = 600\n[[host_types]]\nname = \"{}\"\ncapacity = 1\n",
        local_host_type()
    );
    let c = Coordinator::start_with(&config, args)?;
    let token = c.token("bench@example.com")?;
    let url = c.url();
    let env = GomoteEnv::new("")?;
    let mut login = vec!["-server", url.as_str(), "login"];
    let fp;
    if url.starts_with("https://") {
        fp = c.fingerprint()?;
        login.extend(["-fingerprint", fp.as_str()]);
    }
    let o = env.run_with(&login, &[], Some(token.as_bytes()))?;
    if o.code != 0 {
        bail!("login failed: {}", o.stderr);
    }
    let name = env
        .ok(&["-server", &url, "create", &builder()])?
        .trim()
        .to_string();
    // Warm: the daemon, its connection, the instance.
    env.time(&["-server", &url, "run", &name, "/bin/true"], 5)?;
    let mut v = env.time(&["-server", &url, "run", &name, "/bin/true"], N)?;
    env.ok(&["-server", &url, "destroy", &name])?;
    Ok(median(&mut v))
}

fn main() -> Result<()> {
    gomote_tests::bin("gomote")?;
    let plain = bench(&[])?;
    let tls = bench(&["--tls-self-signed"])?;
    println!("gomote run NAME /bin/true, p50 of {N}, warm daemon, standalone coordinator:");
    println!("  plaintext (loopback): {}", ms(plain));
    println!("  TLS (pinned):         {}", ms(tls));
    println!(
        "  ratio TLS/plaintext:  {:.3}",
        tls.as_secs_f64() / plain.as_secs_f64()
    );
    Ok(())
}
