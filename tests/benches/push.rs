//! Pushing a copy of /usr/lib/go-1.19 (11,749 files, 146 MB): cold, with
//! no change, after one edit (plain and watching), and to a group of four,
//! against `rsync -a --delete` over ssh with ControlMaster to localhost,
//! measured in the same run on the same file system.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gomote_tests::GomoteEnv;
use gomote_tests::anchor::RSH;
use gomote_tests::timing::{median, ms};

fn gomote(env: &GomoteEnv, root: &Path, args: &[&str]) -> Result<(Duration, String)> {
    let mut c = env.cmd(args)?;
    c.env("GOROOT", root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let o = c.output()?;
    let took = t.elapsed();
    if !o.status.success() {
        bail!("gomote {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok((took, String::from_utf8_lossy(&o.stdout).trim().to_string()))
}

fn rsync(src: &Path, dst: &Path) -> Result<Duration> {
    let t = Instant::now();
    let ok = Command::new("rsync")
        .args(["-a", "--delete", "-e", RSH])
        .arg(format!("{}/", src.display()))
        .arg(format!("root@127.0.0.1:{}/", dst.display()))
        .status()?
        .success();
    if !ok {
        bail!("rsync failed");
    }
    Ok(t.elapsed())
}

fn edit(root: &Path, n: usize) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("src/fmt/print.go"))?;
    writeln!(f, "// edit {n}")?;
    Ok(())
}

fn row(what: &str, ours: Duration, anchor: Option<Duration>) {
    match anchor {
        Some(a) => println!(
            "{what:<34} gomote {:>10}   rsync {:>10}   ratio {:.3}x",
            ms(ours),
            ms(a),
            ours.as_secs_f64() / a.as_secs_f64()
        ),
        None => println!("{what:<34} gomote {:>10}", ms(ours)),
    }
}

/// A group figure against the same push to one instance.
fn group_row(what: &str, group: Duration, single: Duration) {
    println!(
        "{what} gomote {:>10}   one instance {:>10}   ratio {:.2}x",
        ms(group),
        ms(single),
        group.as_secs_f64() / single.as_secs_f64()
    );
}

fn main() -> Result<()> {
    gomote_tests::bin("gomote")?;
    let src = gomote_tests::goroot_copy().context("needs /usr/lib/go-1.19 (golang-go)")?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("go");
    if !Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&root)
        .status()?
        .success()
    {
        bail!("copying GOROOT");
    }
    let anchor = gomote_tests::anchor::ready();
    if !anchor {
        println!(
            "anchor: rsync over ssh skipped (run {})",
            gomote_tests::anchor::SETUP
        );
    }
    let builder = gomote_tests::builder();
    let env = GomoteEnv::with_local_capacity(16)?;
    // Warm the daemon and the local manifest (a first push hashes every file).
    let warm = gomote(&env, &root, &["create", &builder])?.1;
    gomote(&env, &root, &["push", &warm])?;
    gomote(&env, &root, &["destroy", &warm])?;

    // Cold: a fresh instance / an empty directory each time, interleaved.
    let (mut cold, mut rcold) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let inst = gomote(&env, &root, &["create", &builder])?.1;
        cold.push(gomote(&env, &root, &["push", &inst])?.0);
        gomote(&env, &root, &["destroy", &inst])?;
        if anchor {
            let dst = work.path().join(format!("rsync-cold-{i}"));
            std::fs::create_dir_all(&dst)?;
            rcold.push(rsync(&root, &dst)?);
        }
    }
    let rcold_m = anchor.then(|| median(&mut rcold));
    row("cold push", median(&mut cold), rcold_m);

    // One instance and one rsync copy kept in step from here on.
    let inst = gomote(&env, &root, &["create", &builder])?.1;
    gomote(&env, &root, &["push", &inst])?;
    let dst = work.path().join("rsync-warm");
    std::fs::create_dir_all(&dst)?;
    if anchor {
        rsync(&root, &dst)?;
    }
    let (mut same, mut rsame) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        same.push(gomote(&env, &root, &["push", &inst])?.0);
        if anchor {
            rsame.push(rsync(&root, &dst)?);
        }
    }
    let rsame_m = anchor.then(|| median(&mut rsame));
    row("no-change push", median(&mut same), rsame_m);

    let (mut one, mut rone) = (Vec::new(), Vec::new());
    for n in 0..7 {
        edit(&root, n)?;
        one.push(gomote(&env, &root, &["push", &inst])?.0);
        if anchor {
            rone.push(rsync(&root, &dst)?);
        }
    }
    let rone_m = anchor.then(|| median(&mut rone));
    row("one-edit push", median(&mut one), rone_m);

    // Watching: from the save to `gomote push` (the barrier) returning.
    gomote(&env, &root, &["push", "-watch", &inst])?;
    let mut watched = Vec::new();
    for n in 0..40 {
        // Saves a little apart, as an editor makes them: a pause, not a
        // condition (the barrier below is what is measured).
        std::thread::sleep(Duration::from_millis(30));
        let t = Instant::now();
        edit(&root, 100 + n)?;
        gomote(&env, &root, &["push", &inst])?;
        watched.push(t.elapsed());
    }
    let mut sorted = watched.clone();
    row(
        "one-edit push, watching (save->barrier)",
        median(&mut watched),
        rone_m,
    );
    println!(
        "  watching p90: {}",
        ms(gomote_tests::timing::p90(&mut sorted))
    );
    gomote(&env, &root, &["push", "-unwatch", &inst])?;
    gomote(&env, &root, &["destroy", &inst])?;

    // A group of four, cold, against one instance cold (above).
    let mut group = Vec::new();
    let mut group_watched = Vec::new();
    for i in 0..2 {
        let name = format!("four{i}");
        gomote(
            &env,
            &root,
            &[
                "create",
                "-count=4",
                &format!("-new-group={name}"),
                &builder,
            ],
        )?;
        group.push(gomote(&env, &root, &["-group", &name, "push"])?.0);
        if i == 0 {
            // The edit loop on the group: one save, four instances.
            gomote(&env, &root, &["-group", &name, "push", "-watch"])?;
            for n in 0..20 {
                // Saves a little apart, as above.
                std::thread::sleep(Duration::from_millis(30));
                let t = Instant::now();
                edit(&root, 200 + n)?;
                gomote(&env, &root, &["-group", &name, "push"])?;
                group_watched.push(t.elapsed());
            }
        }
        gomote(&env, &root, &["-group", &name, "destroy", "-destroy-group"])?;
    }
    group_row(
        "one-edit push to a group of 4, watching ",
        median(&mut group_watched),
        median(&mut sorted),
    );
    group_row(
        "cold push to a group of 4         ",
        median(&mut group),
        median(&mut cold),
    );
    Ok(())
}
