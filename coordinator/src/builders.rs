//! What a builder type gives the instances created for it: the
//! environment of their commands (or of another builder's, imitated on the
//! same host type), and the bootstrap Go toolchain AddBootstrap installs.

use std::path::Path;
use std::sync::Arc;

use crate::Coordinator;
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
        let b = self
            .config
            .builder(imitate)
            .ok_or_else(|| CoordError::UnknownBuilder(imitate.to_string()))?;
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
    /// (once) and returns where it came from.
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
            // A local buildlet sees this host's file system (read-only in
            // its sandbox): a link is the whole toolchain at no cost.
            let target = src
                .canonicalize()
                .map_err(|source| CoordError::BootstrapPath {
                    path: src.clone(),
                    source,
                })?;
            let link = Path::new(&rec.working_dir).join("go1.4");
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(&target, &link).map_err(CoordError::BootstrapLink)?;
            }
            return Ok(format!("file://{}", target.display()));
        }
        let name = self.bootstrap_object(&src).await?;
        let url = self.transfers.signed_get_url(&name);
        inst.client
            .put_tar_from_url("go1.4", &url)
            .await
            .map_err(CoordError::BootstrapWrite)?;
        Ok(url)
    }

    /// Copies a bootstrap .tar.gz into the object store once.
    async fn bootstrap_object(&self, src: &Path) -> Result<String, CoordError> {
        let mut cache = self.bootstrap_objects.lock().await;
        if let Some(n) = cache.get(src) {
            return Ok(n.clone());
        }
        let name = self.transfers.new_name();
        let tmp = self.transfers.temp_path();
        tokio::fs::copy(src, &tmp)
            .await
            .map_err(|source| CoordError::BootstrapRead {
                path: src.to_path_buf(),
                source,
            })?;
        self.transfers
            .commit(&tmp, &name, "coordinator")
            .map_err(CoordError::BootstrapStore)?;
        cache.insert(src.to_path_buf(), name.clone());
        Ok(name)
    }
}
