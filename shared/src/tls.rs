//! Certificate fingerprints in ssh's style (`SHA256:<base64, no padding>`),
//! the form the coordinator prints and `gomote login -fingerprint` takes.

use base64::Engine as _;
use sha2::Digest as _;

/// The fingerprint of a DER-encoded certificate.
pub fn fingerprint(der: &[u8]) -> String {
    let sum = sha2::Sha256::digest(der);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sum)
    )
}

/// Whether two fingerprints are the same; a user may paste one with the
/// padding `=` other tools print, so that is ignored.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('=') == b.trim().trim_end_matches('=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_style() {
        // sha256("") is e3b0c442...; its base64 is 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert!(same_fingerprint(
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            &fingerprint(b"")
        ));
        assert!(!same_fingerprint("SHA256:abc", &fingerprint(b"")));
    }
}
