//! File commands: `ls`, `put`, `puttar`, `gettar`, `rm`, with Go's rules
//! for reading the first argument as an instance or as a path.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use gomote_shared::api::{GettarCmd, LsCmd, PutCmd, PuttarCmd, RmCmd};
use gomote_shared::filemode;
use tokio::io::AsyncWriteExt;

use super::ctx::{CmdResult, Ctx, Failure, usage};
use super::resolve;
use crate::target::Inst;
use crate::transfer::Payload;

fn abs(ctx: &Ctx, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.req.cwd.join(p)
    }
}

/// Go's rule for run/put/rm: the first argument is pinged; an instance
/// means just it, otherwise (with a group) every member and the argument
/// is data. Returns the targets and the remaining arguments.
async fn first_arg_targets(
    ctx: &Ctx,
    args: &[String],
) -> Result<(Vec<Inst>, Vec<String>, bool), Failure> {
    let Some(first) = args.first() else {
        return Err(usage("not enough arguments"));
    };
    match resolve::instance(ctx, first).await? {
        Some(i) => Ok((vec![i], args[1..].to_vec(), true)),
        None => match resolve::active(ctx).await? {
            Some(g) => Ok((resolve::members(ctx, &g).await?, args.to_vec(), false)),
            None => Err(Failure::new(resolve::unknown_instance(ctx, first).await)),
        },
    }
}

/// `gomote ls [instance] [dir]`.
pub async fn ls(ctx: &Ctx, c: &LsCmd) -> CmdResult {
    let LsCmd {
        args,
        recursive,
        digest,
        skip,
    } = c;
    let (targets, dir) = match args.len() {
        0 => match resolve::active(ctx).await? {
            Some(g) => (resolve::members(ctx, &g).await?, ".".to_string()),
            None => {
                return Err(usage(
                    "no group specified: name an instance, or use -group or GOMOTE_GROUP",
                ));
            }
        },
        1 => match resolve::instance(ctx, &args[0]).await? {
            Some(i) => (vec![i], ".".to_string()),
            None => match resolve::active(ctx).await? {
                Some(g) => (resolve::members(ctx, &g).await?, args[0].clone()),
                None => return Err(Failure::new(resolve::unknown_instance(ctx, &args[0]).await)),
            },
        },
        2 => (vec![resolve::named(ctx, &args[0]).await?], args[1].clone()),
        _ => return Err(usage("too many arguments")),
    };
    let skip: Vec<String> = skip
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let many = targets.len() > 1;
    for t in &targets {
        let lines = t.ls(&dir, *recursive, *digest, &skip).await.map_err(|e| {
            Failure::new(if e.is_not_found() {
                // The coordinator names the missing directory or instance.
                format!("unable to ls: {}", e.message())
            } else {
                format!("unable to ls: {e}")
            })
        })?;
        let mut s = String::new();
        if many {
            s.push_str(&format!("# {}\n", t.name()));
        }
        for l in lines {
            s.push_str(&l);
            s.push('\n');
        }
        if many {
            s.push('\n');
        }
        ctx.out.stdout(s).await;
    }
    Ok(0)
}

/// `gomote put [instance] <source|-> [destination]`.
pub async fn put(ctx: &Ctx, c: &PutCmd) -> CmdResult {
    let (targets, rest, _) = first_arg_targets(ctx, &c.args).await?;
    let (src, dest) = match rest.as_slice() {
        [] => return Err(usage("missing source")),
        [s] => (s.clone(), None),
        [s, d] => (s.clone(), Some(d.clone())),
        _ => return Err(usage("too many arguments")),
    };
    let dest = match dest {
        Some(d) => d,
        None if src == "-" => {
            return Err(Failure::new(
                "must specify destination file name when source is standard input",
            ));
        }
        None => Path::new(&src)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| Failure::new(format!("cannot name a destination for {src:?}")))?,
    };
    gomote_shared::relpath::validate(&dest)
        .map_err(|e| Failure::new(format!("bad destination: {e}")))?;
    ctx.daemon.touched(&targets);
    let (path, local_mode) = if src == "-" {
        let p = c
            .stdin_file
            .clone()
            .ok_or_else(|| Failure::new("the CLI sent no standard input"))?;
        (p, 0o666)
    } else {
        let p = abs(ctx, &src);
        let md =
            std::fs::metadata(&p).map_err(|e| Failure::new(format!("{}: {e}", p.display())))?;
        use std::os::unix::fs::MetadataExt;
        (p, filemode::from_unix(md.mode()) & !filemode::MODE_TYPE)
    };
    let mode = match &c.mode {
        None => local_mode,
        Some(m) => {
            let v = u32::from_str_radix(m, 8)
                .map_err(|e| Failure::new(format!("strconv.ParseInt: parsing {m:?}: {e}")))?;
            if v & !0o7777 != 0 {
                return Err(Failure::new(format!("bad mode: {m}")));
            }
            // Unix special bits to Go's FileMode bits.
            let mut go = v & 0o777;
            if v & 0o4000 != 0 {
                go |= filemode::MODE_SETUID;
            }
            if v & 0o2000 != 0 {
                go |= filemode::MODE_SETGID;
            }
            if v & 0o1000 != 0 {
                go |= filemode::MODE_STICKY;
            }
            go
        }
    };
    let payload = Payload::file(path, &dest);
    let results =
        futures_util::future::join_all(targets.iter().map(|t| t.put_file(&dest, mode, &payload)))
            .await;
    for (t, r) in targets.iter().zip(results) {
        r.map_err(|e| Failure::new(format!("unable to write the file to {}: {e}", t.name())))?;
    }
    Ok(0)
}

fn is_git_hash(s: &str) -> bool {
    (7..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `gomote puttar [instance] <file|URL|-|commit>`.
pub async fn puttar(ctx: &Ctx, c: &PuttarCmd) -> CmdResult {
    let PuttarCmd {
        args,
        dir,
        stdin_file,
    } = c;
    let (targets, src) = match args.as_slice() {
        [] => return Err(usage("not enough arguments")),
        [s] => match resolve::active(ctx).await? {
            Some(g) => (resolve::members(ctx, &g).await?, s.clone()),
            None => {
                return Err(usage(
                    "no active group found; need an active group with only 1 argument",
                ));
            }
        },
        [i, s] => (vec![resolve::named(ctx, i).await?], s.clone()),
        _ => return Err(usage("too many arguments")),
    };
    if !dir.is_empty() {
        gomote_shared::relpath::validate(dir)
            .map_err(|e| Failure::new(format!("bad -dir: {e}")))?;
    }
    ctx.daemon.touched(&targets);
    if src.contains("://") {
        for t in &targets {
            t.put_tgz_url(dir, &src)
                .await
                .map_err(|e| Failure::new(format!("unable to write tar to instance: {e}")))?;
        }
        return Ok(0);
    }
    let path = if src == "-" {
        stdin_file
            .clone()
            .ok_or_else(|| Failure::new("the CLI sent no standard input"))?
    } else {
        let p = abs(ctx, &src);
        match std::fs::metadata(&p) {
            Ok(_) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_git_hash(&src) => {
                let url = format!("https://go.googlesource.com/go/+archive/{src}.tar.gz");
                for t in &targets {
                    t.put_tgz_url(dir, &url).await.map_err(|e| {
                        Failure::new(format!("unable to write tar to instance: {e}"))
                    })?;
                }
                let version = crate::push::pack::single_file_tgz(
                    "VERSION",
                    format!("devel {src}").as_bytes(),
                )
                .map_err(|e| Failure::new(format!("packing VERSION: {e}")))?;
                let p = Payload::bytes(version, "VERSION.tar.gz");
                for t in &targets {
                    t.put_tgz(dir, &p).await.map_err(|e| {
                        Failure::new(format!("unable to write tar to instance: {e}"))
                    })?;
                }
                return Ok(0);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::new(
                    "malformed source: not a path, a URL, -, or a git hash",
                ));
            }
            Err(e) => return Err(Failure::new(format!("failed to stat {src:?}: {e}"))),
        }
    };
    let payload = Payload::file(path, "archive.tar.gz");
    let results =
        futures_util::future::join_all(targets.iter().map(|t| t.put_tgz(dir, &payload))).await;
    for r in results {
        r.map_err(|e| Failure::new(format!("unable to write tar to instance: {e}")))?;
    }
    Ok(0)
}

/// Downloads a tarball of `dir` from `t` into `dest` (via a temporary file,
/// so a failed download leaves nothing half-written).
pub async fn download(t: &Inst, dir: &str, dest: &Path) -> Result<u64, Failure> {
    let mut stream = t
        .get_tgz(dir)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    let tmp = dest.with_extension("tar.gz.part");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| Failure::new(format!("{}: {e}", tmp.display())))?;
    let mut n = 0u64;
    while let Some(c) = stream.next().await {
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(Failure::from(e));
            }
        };
        n += c.len() as u64;
        f.write_all(&c)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
    }
    f.flush().await.map_err(|e| Failure::new(e.to_string()))?;
    tokio::fs::rename(&tmp, dest)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    Ok(n)
}

/// `gomote gettar [instance]`.
pub async fn gettar(ctx: &Ctx, c: &GettarCmd) -> CmdResult {
    let (targets, _) = resolve::one_or_group(ctx, &c.args).await?;
    let dir = &c.dir;
    let results = futures_util::future::join_all(targets.iter().map(|t| async {
        let file = format!("{}.tar.gz", t.name());
        ctx.out
            .log(format!(
                "Downloading tarball for {:?} to {file:?}...",
                t.name()
            ))
            .await;
        download(t, dir, &ctx.req.cwd.join(&file)).await
    }))
    .await;
    for (t, r) in targets.iter().zip(results) {
        r.map_err(|e| Failure::new(format!("unable to download tgz from {}: {e}", t.name())))?;
    }
    Ok(0)
}

/// `gomote rm [instance] <path>...`.
pub async fn rm(ctx: &Ctx, c: &RmCmd) -> CmdResult {
    let (targets, paths, _) = first_arg_targets(ctx, &c.args).await?;
    if paths.is_empty() {
        return Err(usage(
            "not enough arguments: name what to remove (`.` for everything)",
        ));
    }
    for p in &paths {
        gomote_shared::relpath::validate(p)
            .map_err(|e| Failure::new(format!("unable to remove files: {e}")))?;
    }
    ctx.daemon.touched(&targets);
    let results = futures_util::future::join_all(targets.iter().map(|t| t.remove(&paths))).await;
    for r in results {
        r.map_err(|e| Failure::new(format!("unable to remove files: {e}")))?;
    }
    Ok(0)
}
