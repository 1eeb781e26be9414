//! Helpers for the coordinator's HTML forms: escaping, CSRF tokens bound
//! to what the form acts on, and the Origin check that refuses cross-site
//! posts. Shared by every page with a form (enrolment now, device sign-in
//! later).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain page: a title and paragraphs of HTML already escaped.
pub fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body_html}</body></html>",
        t = escape(title)
    )
}

/// The key CSRF tokens are made with: random per coordinator process, so a
/// form outlives neither a restart nor the thing it is bound to.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl Default for CsrfKey {
    fn default() -> Self {
        CsrfKey(rand::random())
    }
}

impl CsrfKey {
    /// The CSRF token for a form acting on `binding` (e.g. the hash of an
    /// enrolment token): only a page this coordinator served for that same
    /// binding carries it.
    pub fn issue(&self, binding: &str) -> String {
        hex::encode(self.mac(binding))
    }

    /// Whether `got` is the token for `binding` (constant-time).
    pub fn verify(&self, binding: &str, got: &str) -> bool {
        let Ok(got) = hex::decode(got) else {
            return false;
        };
        bool::from(self.mac(binding).as_slice().ct_eq(&got))
    }

    fn mac(&self, binding: &str) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        m.update(b"gomote-csrf\0");
        m.update(binding.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
}

/// Whether a form post comes from our own pages: a browser names the
/// page's origin in `Origin` (and `Sec-Fetch-Site`); a different origin is
/// refused. Clients that send neither (curl, tests) pass here and still
/// need the CSRF token.
pub fn same_origin(headers: &http::HeaderMap, public_url: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    match (url::Url::parse(origin), url::Url::parse(public_url)) {
        (Ok(o), Ok(p)) => o.origin() == p.origin(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_is_bound_and_keyed() {
        let k = CsrfKey::default();
        let t = k.issue("enrol-a");
        assert!(k.verify("enrol-a", &t));
        assert!(!k.verify("enrol-b", &t), "bound to its form");
        assert!(!k.verify("enrol-a", ""), "missing");
        assert!(!k.verify("enrol-a", "zz"), "not hex");
        assert!(!CsrfKey::default().verify("enrol-a", &t), "keyed");
    }

    #[test]
    fn origin() {
        let mut h = http::HeaderMap::new();
        assert!(same_origin(&h, "http://127.0.0.1:8119"));
        h.insert("origin", "http://127.0.0.1:8119".parse().unwrap());
        assert!(same_origin(&h, "http://127.0.0.1:8119/"));
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h, "http://127.0.0.1:8119"));
        h.insert("origin", "null".parse().unwrap());
        assert!(!same_origin(&h, "http://127.0.0.1:8119"));
        let mut h = http::HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&h, "http://127.0.0.1:8119"));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
