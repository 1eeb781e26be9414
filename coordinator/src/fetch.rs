//! Bodies for the URLs WriteFileFromURL and WriteTGZFromURL name: one of
//! this coordinator's own objects is read from disk (its owner checked);
//! any other URL is fetched only from hosts the configuration allows, so a
//! coordinator is no open proxy.

use std::path::Path;
use std::time::Duration;

use crate::Coordinator;
use crate::error::CoordError;

/// How long fetching a foreign URL may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A file of the object store as a request body.
pub async fn file_body(path: &Path) -> Result<reqwest::Body, CoordError> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(CoordError::OpenObject)?;
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024),
    ))
}

fn url_host(u: &str) -> Option<(String, Option<u16>)> {
    let url = url::Url::parse(u).ok()?;
    Some((url.host_str()?.to_string(), url.port()))
}

impl Coordinator {
    /// The body at `url` for `owner`: an object of theirs, or what an
    /// allowed host serves.
    pub(crate) async fn url_body(
        &self,
        url: &str,
        owner: &str,
    ) -> Result<reqwest::Body, CoordError> {
        if let Some(path) = self.transfers.resolve_own_url(url, owner)? {
            return file_body(&path).await;
        }
        self.check_foreign_url(url)?;
        let resp = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|source| CoordError::Fetch {
                url: url.to_string(),
                source,
            })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(CoordError::FetchStatus {
                url: url.to_string(),
                status: resp.status(),
            });
        }
        Ok(reqwest::Body::wrap_stream(resp.bytes_stream()))
    }

    /// Refuses URLs whose host the configuration does not allow.
    pub(crate) fn check_foreign_url(&self, url: &str) -> Result<(), CoordError> {
        let Some((host, port)) = url_host(url) else {
            return Err(CoordError::NotAUrl(url.to_string()));
        };
        let with_port = port.map(|p| format!("{host}:{p}"));
        let allowed = self
            .config
            .allowed_url_hosts
            .iter()
            .any(|a| *a == host || Some(a) == with_port.as_ref());
        if allowed {
            Ok(())
        } else {
            Err(CoordError::ForeignHost(host))
        }
    }
}
