//! Writing tar entries for files on disk with exact names: directories keep
//! their trailing `/` (as Go's buildlet writes them, and the `tar` crate's
//! path helpers would strip), and names or link targets over 100 bytes use
//! GNU long-name records.

use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::path::Path;

fn put_long(
    b: &mut tar::Builder<impl Write>,
    kind: tar::EntryType,
    value: &[u8],
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    let name = b"././@LongLink";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    let mut data = value.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..])
}

fn set_name_field(field: &mut [u8; 100], value: &[u8]) {
    let n = value.len().min(100);
    field[..n].copy_from_slice(&value[..n]);
    for x in &mut field[n..] {
        *x = 0;
    }
}

/// Appends a header (already filled in, except name and link) named
/// `name`, linking to `link` when given, followed by `data`.
pub fn append_named(
    b: &mut tar::Builder<impl Write>,
    mut h: tar::Header,
    name: &str,
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    if name.len() > 100 {
        put_long(b, tar::EntryType::GNULongName, name.as_bytes())?;
    }
    set_name_field(&mut h.as_old_mut().name, name.as_bytes());
    if let Some(l) = link {
        if l.len() > 100 {
            put_long(b, tar::EntryType::GNULongLink, l)?;
        }
        set_name_field(&mut h.as_old_mut().linkname, l);
    }
    h.set_cksum();
    b.append(&h, data)
}

/// Appends the file at `abs` (described by its `lstat` metadata `md`) as
/// `rel`: directories as `rel/`, symlinks with their target, regular files
/// with their contents, anything else as a header only.
pub fn append_path(
    b: &mut tar::Builder<impl Write>,
    rel: &str,
    abs: &Path,
    md: &Metadata,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
    let ft = md.file_type();
    if ft.is_dir() {
        h.set_size(0);
        append_named(b, h, &format!("{rel}/"), None, io::empty())
    } else if ft.is_symlink() {
        use std::os::unix::ffi::OsStrExt;
        let target = std::fs::read_link(abs)?;
        h.set_size(0);
        append_named(b, h, rel, Some(target.as_os_str().as_bytes()), io::empty())
    } else if ft.is_file() {
        let f = std::fs::File::open(abs)?;
        // Exactly the size recorded in the header, even if the file grows.
        append_named(b, h, rel, None, f.take(md.len()))
    } else {
        h.set_size(0);
        append_named(b, h, rel, None, io::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_dir_slash_and_long_names() {
        let d = tempfile::tempdir().unwrap();
        let long = "x".repeat(150);
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join(&long), "hello").unwrap();
        std::os::unix::fs::symlink(&long, d.path().join("l")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for n in ["sub", long.as_str(), "l"] {
            let abs = d.path().join(n);
            let md = std::fs::symlink_metadata(&abs).unwrap();
            append_path(&mut b, n, &abs, &md).unwrap();
        }
        let data = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            seen.push((name, link, body));
        }
        assert_eq!(seen[0].0, "sub/");
        assert_eq!(seen[1], (long.clone(), None, "hello".to_string()));
        assert_eq!(seen[2], ("l".to_string(), Some(long), String::new()));
    }
}
