//! What a builder type gives the instances created for it: the
//! environment of their commands (or of another builder's, imitated on the
//! same host type; any name `builder_names` accepts), and the bootstrap Go
//! toolchain AddBootstrap installs.

use std::path::Path;
use std::sync::Arc;

use crate::Coordinator;
use crate::builder_names;
use crate::error::CoordError;
use crate::instances::{Instance, Record};

impl Coordinator {
    /// The builder environment for a command: the instance's builder's, or
    /// with `imitate` the named builder's, which must share the host type.
    pub(crate) fn builder_env(
        &self,
        rec: &Record,
        imitate: &str,
    ) -> Result<Vec<String>, CoordError> {
        if imitate.is_empty() {
            return Ok(self
                .config
                .builder(&rec.builder_type)
                .map(|b| b.env.clone())
                .unwrap_or_default());
        }
        let b = builder_names::resolve(&self.config, imitate)?;
        if b.host_type != rec.host_type {
            return Err(CoordError::WrongHostType {
                builder: imitate.to_string(),
                builder_host: b.host_type.clone(),
                instance_host: rec.host_type.clone(),
            });
        }
        Ok(b.env.clone())
    }

    /// Writes the builder's bootstrap toolchain into the instance's `go1.4`
    /// (once) and returns where it came from. A directory instances can see
    /// (their pool shares this host's file system) is linked at the path
    /// they see it under; anything else is sent as a tarball.
    pub(crate) async fn add_bootstrap(&self, inst: &Arc<Instance>) -> Result<String, CoordError> {
        let rec = inst.record();
        let Some(src) = self
            .config
            .builder(&rec.builder_type)
            .and_then(|b| b.bootstrap.clone())
        else {
            return Ok(String::new());
        };
        if src.is_dir() {
            let target = src
                .canonicalize()
                .map_err(|source| CoordError::BootstrapPath {
                    path: src.clone(),
                    source,
                })?;
            let seen = self
                .pools
                .of(&rec.buildlet)
                .ok()
                .and_then(|pool| pool.shared_path(&target));
            if let Some(seen) = seen {
                // A link is the whole toolchain at no cost.
                let link = Path::new(&rec.working_dir).join("go1.4");
                if std::fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(&seen, &link).map_err(CoordError::BootstrapLink)?;
                }
                return Ok(format!("file://{}", target.display()));
            }
        }
        let name = self.bootstrap_object(&src).await?;
        let url = self.transfers.signed_get_url(&name);
        inst.client
            .put_tar_from_url("go1.4", &url)
            .await
            .map_err(CoordError::BootstrapWrite)?;
        Ok(url)
    }

    /// Copies a bootstrap .tar.gz, or packs a directory, into the object
    /// store once.
    async fn bootstrap_object(&self, src: &Path) -> Result<String, CoordError> {
        let mut cache = self.bootstrap_objects.lock().await;
        if let Some(n) = cache.get(src) {
            return Ok(n.clone());
        }
        let name = self.transfers.new_name();
        let tmp = self.transfers.temp_path();
        let read_err = |source| CoordError::BootstrapRead {
            path: src.to_path_buf(),
            source,
        };
        if src.is_dir() {
            let (dir, out) = (src.to_path_buf(), tmp.clone());
            tokio::task::spawn_blocking(move || pack_dir(&dir, &out))
                .await
                .map_err(|e| read_err(std::io::Error::other(e)))?
                .map_err(read_err)?;
        } else {
            tokio::fs::copy(src, &tmp).await.map_err(read_err)?;
        }
        self.transfers
            .commit(&tmp, &name, "coordinator")
            .map_err(CoordError::BootstrapStore)?;
        cache.insert(src.to_path_buf(), name.clone());
        Ok(name)
    }
}

/// Writes the tree at `dir` as a .tar.gz to `out`, links replaced by what
/// they lead to: a toolchain's links may leave it (Debian's `src` is in
/// /usr/share), and on another machine they would lead nowhere.
fn pack_dir(dir: &Path, out: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(out)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(true);
    tar.append_dir_all(".", dir)?;
    tar.into_inner()?.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_packed_toolchain_carries_what_its_links_lead_to() {
        let d = tempfile::tempdir().unwrap();
        let (lib, share) = (d.path().join("lib/go"), d.path().join("share/go/src"));
        std::fs::create_dir_all(lib.join("bin")).unwrap();
        std::fs::create_dir_all(&share).unwrap();
        std::fs::write(lib.join("bin/go"), "go").unwrap();
        std::fs::write(share.join("fmt.go"), "package fmt").unwrap();
        std::os::unix::fs::symlink("../../share/go/src", lib.join("src")).unwrap();
        let out = d.path().join("boot.tgz");
        pack_dir(&lib, &out).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&out).unwrap(),
        ));
        let mut files = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            assert!(gomote_shared::relpath::validate(&name).is_ok(), "{name}");
            if e.header().entry_type().is_file() {
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                files.push((name, body));
            }
        }
        files.sort();
        assert_eq!(
            files,
            [
                ("bin/go".to_string(), "go".to_string()),
                ("src/fmt.go".to_string(), "package fmt".to_string())
            ]
        );
    }
}
