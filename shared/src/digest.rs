//! File digests as the buildlet protocol carries them: lowercase hex SHA-1
//! (the `/ls` digest column, which `gomote push` compares with its own).

use std::io::Read;
use std::path::Path;

use sha1::{Digest, Sha1};

/// Lowercase hex SHA-1 of a file's contents.
pub fn sha1_file(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(
            super::sha1_file(&p).unwrap(),
            "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
        );
    }
}
