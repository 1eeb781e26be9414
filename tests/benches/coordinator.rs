//! ExecuteCommand of `/bin/true` through the coordinator (gRPC, one warm
//! connection) against a direct buildlet `/exec` on a keep-alive
//! connection, and the ssh ControlMaster anchor, all in the same run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use gomote_shared::proto::gomote_service_client::GomoteServiceClient;
use gomote_shared::proto::{CreateInstanceRequest, ExecuteCommandRequest, InstanceAliveRequest};
use gomote_tests::timing::{median, ms};
use gomote_tests::{Buildlet, Coordinator};

fn direct(b: &Buildlet, n: usize) -> Result<Vec<Duration>> {
    let mut s = TcpStream::connect(&b.addr)?;
    s.set_nodelay(true)?;
    let req = "POST /exec?cmd=/bin/true HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n";
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    for i in 0..n + 10 {
        let t = Instant::now();
        s.write_all(req.as_bytes())?;
        buf.clear();
        while !buf.ends_with(b"Process-State: ok\r\n\r\n") {
            let k = s.read(&mut tmp)?;
            if k == 0 {
                bail!("closed");
            }
            buf.extend_from_slice(&tmp[..k]);
        }
        if i >= 10 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let c = Coordinator::start("heartbeat_interval_secs = 10\n")?;
    let token = c.token("bench@example.com")?;
    let ch = tonic::transport::Channel::from_shared(c.url())?
        .connect()
        .await?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut cl = GomoteServiceClient::with_interceptor(ch, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", auth.clone());
        Ok(r)
    });
    let builder = gomote_tests::builder();
    let t = Instant::now();
    let mut s = cl
        .create_instance(CreateInstanceRequest {
            builder_type: builder,
            experiment_option: vec![],
        })
        .await?
        .into_inner();
    let mut id = String::new();
    while let Some(m) = s.next().await {
        if let Some(i) = m?.instance {
            id = i.gomote_id;
        }
    }
    println!(
        "CreateInstance (local pool, start a buildlet): {}",
        ms(t.elapsed())
    );
    cl.instance_alive(InstanceAliveRequest {
        gomote_id: id.clone(),
    })
    .await?;
    let mut grpc = Vec::new();
    for i in 0..310 {
        let t = Instant::now();
        let mut s = cl
            .execute_command(ExecuteCommandRequest {
                gomote_id: id.clone(),
                command: "/bin/true".into(),
                system_level: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        while let Some(m) = s.next().await {
            m?;
        }
        if i >= 10 {
            grpc.push(t.elapsed());
        }
    }
    let b = Buildlet::start()?;
    let mut d = direct(&b, 300)?;
    let (g, dm) = (median(&mut grpc), median(&mut d));
    println!("ExecuteCommand /bin/true via coordinator: median {}", ms(g));
    println!(
        "direct buildlet /exec /bin/true:          median {}",
        ms(dm)
    );
    println!(
        "ratio: coordinator / direct = {:.2}x",
        g.as_secs_f64() / dm.as_secs_f64()
    );
    match gomote_tests::anchor::ssh_true(30) {
        Ok(mut s) => {
            let a = median(&mut s);
            println!(
                "anchor: ssh ControlMaster `true`:          median {}",
                ms(a)
            );
            println!(
                "ratio: coordinator / ssh = {:.4}x",
                g.as_secs_f64() / a.as_secs_f64()
            );
        }
        Err(e) => println!("anchor: ssh skipped: {e}"),
    }
    Ok(())
}
