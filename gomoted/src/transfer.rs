//! Data sent to instances: bytes or a local file, uploaded to a
//! coordinator's object store at most once per session (so a group push
//! uploads one archive and writes it to every member), or streamed straight
//! to a buildlet reached directly.

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::rpc::rpc_text;
use crate::session::Session;

/// Why data could not be sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The local file could not be opened.
    #[error("opening {path}: {detail}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The coordinator gave no upload grant.
    #[error("unable to request credentials for a file upload: {0}")]
    Grant(String),
    /// The upload request failed.
    #[error("unable to upload file: http request failed: {0}")]
    Request(String),
    /// The object store refused it.
    #[error("unable to upload file: http post failed: status code={0}")]
    Status(u16),
}

#[derive(Debug)]
enum Source {
    Bytes(Bytes),
    File(PathBuf),
}

/// Something to upload.
#[derive(Debug)]
pub struct Payload {
    source: Source,
    filename: String,
    urls: Mutex<HashMap<String, String>>,
}

impl Payload {
    /// In-memory data; `filename` names the multipart part.
    pub fn bytes(data: impl Into<Bytes>, filename: &str) -> Payload {
        Payload {
            source: Source::Bytes(data.into()),
            filename: filename.to_string(),
            urls: Mutex::default(),
        }
    }

    /// A local file, read when sent.
    pub fn file(path: PathBuf, filename: &str) -> Payload {
        Payload {
            source: Source::File(path),
            filename: filename.to_string(),
            urls: Mutex::default(),
        }
    }

    /// A request body with the data.
    pub async fn body(&self) -> Result<reqwest::Body, TransferError> {
        match &self.source {
            Source::Bytes(b) => Ok(reqwest::Body::from(b.clone())),
            Source::File(p) => {
                let f = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| TransferError::Open {
                        path: p.display().to_string(),
                        detail: e.to_string(),
                    })?;
                Ok(reqwest::Body::wrap_stream(
                    tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024),
                ))
            }
        }
    }

    /// Uploads to `sess`'s object store (once) and returns the object URL.
    pub async fn url_for(&self, sess: &Session) -> Result<String, TransferError> {
        let mut urls = self.urls.lock().await;
        if let Some(u) = urls.get(&sess.name) {
            return Ok(u.clone());
        }
        let grant = sess
            .grpc
            .clone()
            .upload_file(gomote_shared::proto::UploadFileRequest {})
            .await
            .map_err(|s| TransferError::Grant(rpc_text(&s)))?
            .into_inner();
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in &grant.fields {
            form = form.text(k.clone(), v.clone());
        }
        let part = reqwest::multipart::Part::stream(self.body().await?)
            .file_name(self.filename.clone())
            .mime_str("application/octet-stream")
            .map_err(|e| TransferError::Request(e.to_string()))?;
        form = form.part("file", part);
        let resp = sess
            .http
            .post(&grant.url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| TransferError::Request(e.to_string()))?;
        if resp.status().as_u16() != 204 {
            return Err(TransferError::Status(resp.status().as_u16()));
        }
        let url = format!("{}{}", grant.url, grant.object_name);
        urls.insert(sess.name.clone(), url.clone());
        Ok(url)
    }
}
