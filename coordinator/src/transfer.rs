//! Transfers: the content store behind UploadFile, ReadTGZToURL and the
//! bootstrap toolchain. Uploads are multipart POSTs to this coordinator's
//! own HTTP port carrying an HMAC-signed policy (10-minute validity) that
//! names the object and its owner; downloads use short-lived signed URLs.
//! Objects are tied to the user who uploaded them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_util::{Stream, StreamExt};
use gomote_shared::timefmt::unix;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

/// How long upload policies and download URLs stay valid.
pub const SIGNED_TTL: Duration = Duration::from_secs(10 * 60);

/// Transfer failures, mapped to HTTP statuses and gRPC codes by callers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A policy or URL signature is wrong, or the policy is malformed.
    #[error("invalid signature")]
    BadSignature,
    /// The policy or URL has expired.
    #[error("expired {0}")]
    Expired(&'static str),
    /// The form or URL is missing something.
    #[error("{0}")]
    Malformed(String),
    /// No such object.
    #[error("no such object {0:?}")]
    NoObject(String),
    /// The object belongs to another user.
    #[error("object {0:?} belongs to another user")]
    NotOwner(String),
    /// Disk trouble.
    #[error("object store: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a byte stream could not be stored as an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream failed.
    #[error("{0}")]
    Read(String),
    /// Writing it to disk failed.
    #[error("{0}")]
    Write(std::io::Error),
    /// Putting it in place failed.
    #[error(transparent)]
    Commit(TransferError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Policy {
    key: String,
    owner: String,
    expires: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObjectMeta {
    owner: String,
    created: i64,
}

/// The object store and its signing key.
#[derive(Debug)]
pub struct Transfers {
    dir: PathBuf,
    key: Vec<u8>,
    public_url: String,
    meta: sled::Tree,
}

/// What UploadFile returns.
#[derive(Debug, Clone)]
pub struct UploadGrant {
    /// Where to POST (ends in `/`).
    pub url: String,
    /// Form fields to send before the file.
    pub fields: HashMap<String, String>,
    /// The object's name; it is then `url + object_name`.
    pub object_name: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl Transfers {
    /// Opens the store in `<state>/objects`, with a signing key kept in `meta`.
    pub fn open(
        state: &Path,
        db: &sled::Db,
        public_url: String,
    ) -> Result<Transfers, TransferError> {
        let dir = state.join("objects");
        std::fs::create_dir_all(&dir)?;
        let meta_tree = db
            .open_tree("meta")
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        let key = match meta_tree
            .get("hmac_key")
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?
        {
            Some(k) => k.to_vec(),
            None => {
                let k = rand::random::<[u8; 32]>().to_vec();
                meta_tree
                    .insert("hmac_key", k.clone())
                    .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
                k
            }
        };
        let meta = db
            .open_tree("objects")
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        Ok(Transfers {
            dir,
            key,
            public_url: public_url.trim_end_matches('/').to_string(),
            meta,
        })
    }

    fn sign(&self, what: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        m.update(what.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    fn check(&self, what: &str, sig: &str) -> Result<(), TransferError> {
        if bool::from(self.sign(what).as_bytes().ct_eq(sig.as_bytes())) {
            Ok(())
        } else {
            Err(TransferError::BadSignature)
        }
    }

    /// The URL uploads go to.
    pub fn upload_url(&self) -> String {
        format!("{}/upload/", self.public_url)
    }

    /// A fresh object name and the signed policy to upload it.
    pub fn grant_upload(&self, owner: &str) -> UploadGrant {
        let name = hex::encode(rand::random::<[u8; 16]>());
        let policy = Policy {
            key: name.clone(),
            owner: owner.to_string(),
            expires: unix(SystemTime::now() + SIGNED_TTL),
        };
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&policy).unwrap_or_default());
        let mut fields = HashMap::new();
        fields.insert("key".to_string(), name.clone());
        fields.insert(
            "x-gomote-signature".to_string(),
            self.sign(&format!("upload:{encoded}")),
        );
        fields.insert("policy".to_string(), encoded);
        UploadGrant {
            url: self.upload_url(),
            fields,
            object_name: name,
        }
    }

    /// Checks an upload's form fields; returns the object name and owner.
    pub fn verify_upload(
        &self,
        fields: &HashMap<String, String>,
    ) -> Result<(String, String), TransferError> {
        let get = |k: &str| {
            fields
                .get(k)
                .ok_or_else(|| TransferError::Malformed(format!("missing form field {k:?}")))
        };
        let encoded = get("policy")?;
        self.check(&format!("upload:{encoded}"), get("x-gomote-signature")?)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TransferError::BadSignature)?;
        let p: Policy = serde_json::from_slice(&raw).map_err(|_| TransferError::BadSignature)?;
        if p.expires < unix(SystemTime::now()) {
            return Err(TransferError::Expired("upload policy"));
        }
        if get("key")? != &p.key || !valid_name(&p.key) {
            return Err(TransferError::Malformed(
                "key does not match the policy".into(),
            ));
        }
        Ok((p.key, p.owner))
    }

    /// Where an object's bytes live.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A temporary path to write a new object to before [`Transfers::commit`].
    pub fn temp_path(&self) -> PathBuf {
        self.dir
            .join(format!(".incoming-{:016x}", rand::random::<u64>()))
    }

    /// Moves a fully written temporary file into place as `name`, owned by `owner`.
    pub fn commit(&self, tmp: &Path, name: &str, owner: &str) -> Result<(), TransferError> {
        if !valid_name(name) {
            return Err(TransferError::Malformed(format!(
                "bad object name {name:?}"
            )));
        }
        std::fs::rename(tmp, self.path(name))?;
        let meta = ObjectMeta {
            owner: owner.to_string(),
            created: unix(SystemTime::now()),
        };
        self.meta
            .insert(
                name.as_bytes(),
                serde_json::to_vec(&meta).unwrap_or_default(),
            )
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        // The caller is told the object exists; it must survive a crash.
        self.meta
            .flush()
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        Ok(())
    }

    /// Saves a byte stream as object `name` owned by `owner`; nothing is
    /// left behind if that fails.
    pub async fn store_stream<S, E>(
        &self,
        mut stream: S,
        name: &str,
        owner: &str,
    ) -> Result<(), StoreError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = self.temp_path();
        let res = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(StoreError::Write)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| StoreError::Read(e.to_string()))?;
                f.write_all(&chunk).await.map_err(StoreError::Write)?;
            }
            f.flush().await.map_err(StoreError::Write)?;
            self.commit(&tmp, name, owner).map_err(StoreError::Commit)
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        res
    }

    /// A new object name.
    pub fn new_name(&self) -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// If `url` names an object of this store, checks `owner` may use it
    /// and returns its path; `Ok(None)` for a foreign URL.
    pub fn resolve_own_url(
        &self,
        url: &str,
        owner: &str,
    ) -> Result<Option<PathBuf>, TransferError> {
        let rest = [
            format!("{}/upload/", self.public_url),
            format!("{}/objects/", self.public_url),
        ]
        .iter()
        .find_map(|p| url.strip_prefix(p.as_str()).map(str::to_string));
        let Some(rest) = rest else {
            return Ok(None);
        };
        let name = rest.split(['?', '#']).next().unwrap_or("");
        if !valid_name(name) {
            return Err(TransferError::NoObject(name.to_string()));
        }
        let meta = self
            .meta
            .get(name.as_bytes())
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?
            .ok_or_else(|| TransferError::NoObject(name.to_string()))?;
        let meta: ObjectMeta = serde_json::from_slice(&meta)
            .map_err(|e| TransferError::Io(std::io::Error::other(e)))?;
        if meta.owner != owner {
            return Err(TransferError::NotOwner(name.to_string()));
        }
        Ok(Some(self.path(name)))
    }

    /// A download URL for `name`, valid for [`SIGNED_TTL`].
    pub fn signed_get_url(&self, name: &str) -> String {
        let exp = unix(SystemTime::now() + SIGNED_TTL);
        let sig = self.sign(&format!("get:{name}:{exp}"));
        format!("{}/objects/{name}?expires={exp}&sig={sig}", self.public_url)
    }

    /// Checks a download URL's signature and expiry; returns the file.
    pub fn verify_get(
        &self,
        name: &str,
        expires: &str,
        sig: &str,
    ) -> Result<PathBuf, TransferError> {
        if !valid_name(name) {
            return Err(TransferError::NoObject(name.to_string()));
        }
        self.check(&format!("get:{name}:{expires}"), sig)?;
        let exp: i64 = expires.parse().map_err(|_| TransferError::BadSignature)?;
        if exp < unix(SystemTime::now()) {
            return Err(TransferError::Expired("download URL"));
        }
        let p = self.path(name);
        if !p.is_file() {
            return Err(TransferError::NoObject(name.to_string()));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Transfers) {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(d.path().join("db"))
            .open()
            .unwrap();
        let t = Transfers::open(d.path(), &db, "http://127.0.0.1:1".into()).unwrap();
        (d, t)
    }

    #[test]
    fn upload_policy_round_trip_and_forgery() {
        let (_d, t) = store();
        let g = t.grant_upload("local:a@x");
        assert!(g.url.ends_with("/upload/"));
        let (name, owner) = t.verify_upload(&g.fields).unwrap();
        assert_eq!(
            (name.as_str(), owner.as_str()),
            (g.object_name.as_str(), "local:a@x")
        );
        // Claiming another owner breaks the signature.
        let mut forged = g.fields.clone();
        let p = Policy {
            key: g.object_name.clone(),
            owner: "local:b@x".into(),
            expires: i64::MAX,
        };
        forged.insert(
            "policy".into(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&p).unwrap()),
        );
        assert!(matches!(
            t.verify_upload(&forged),
            Err(TransferError::BadSignature)
        ));
        let mut wrong_key = g.fields.clone();
        wrong_key.insert("key".into(), "other".into());
        assert!(matches!(
            t.verify_upload(&wrong_key),
            Err(TransferError::Malformed(_))
        ));
    }

    fn leftovers(d: &Path) -> Vec<String> {
        std::fs::read_dir(d.join("objects"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[tokio::test]
    async fn streams_become_owned_objects_or_nothing() {
        let (d, t) = store();
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok("hello, ".into()), Ok("world".into())];
        t.store_stream(futures_util::stream::iter(chunks), "obj1", "local:a@x")
            .await
            .unwrap();
        let path = t
            .resolve_own_url(&format!("{}obj1", t.upload_url()), "local:a@x")
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"hello, world");

        let broken: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok("partial".into()), Err(std::io::Error::other("cut off"))];
        let err = t
            .store_stream(futures_util::stream::iter(broken), "obj2", "local:a@x")
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Read(ref m) if m == "cut off"),
            "{err}"
        );
        let bad_name: Vec<Result<bytes::Bytes, std::io::Error>> = vec![Ok("x".into())];
        let err = t
            .store_stream(futures_util::stream::iter(bad_name), ".hidden", "local:a@x")
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Commit(TransferError::Malformed(_))),
            "{err}"
        );
        assert_eq!(leftovers(d.path()), ["obj1"]);
    }

    #[test]
    fn signed_urls_expire_and_resist_tampering() {
        let (_d, t) = store();
        let tmp = t.temp_path();
        std::fs::write(&tmp, b"data").unwrap();
        t.commit(&tmp, "obj1", "local:a@x").unwrap();
        let url = t.signed_get_url("obj1");
        let q = url.split_once('?').unwrap().1;
        let (e, s) = q.split_once('&').unwrap();
        let (e, s) = (
            e.trim_start_matches("expires="),
            s.trim_start_matches("sig="),
        );
        assert!(t.verify_get("obj1", e, s).is_ok());
        assert!(matches!(
            t.verify_get("obj1", &(e.parse::<i64>().unwrap() + 1).to_string(), s),
            Err(TransferError::BadSignature)
        ));
        let old = "1000";
        let sig = t.sign("get:obj1:1000");
        assert!(matches!(
            t.verify_get("obj1", old, &sig),
            Err(TransferError::Expired(_))
        ));
        assert!(
            t.resolve_own_url(&format!("{}obj1", t.upload_url()), "local:a@x")
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            t.resolve_own_url(&format!("{}obj1", t.upload_url()), "local:b@x"),
            Err(TransferError::NotOwner(_))
        ));
        assert!(
            t.resolve_own_url("http://elsewhere/x", "local:a@x")
                .unwrap()
                .is_none()
        );
    }
}
