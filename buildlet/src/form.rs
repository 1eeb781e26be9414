//! Request parameters the way Go's `net/http` exposes them: `FormValue`
//! (form body first, then the query), `PostForm` (body only) and the query
//! alone. The buildlet protocol depends on which source each parameter
//! comes from (docs/protocol.md 4.5-4.6).

use axum::body::Body;
use http::{HeaderMap, Method, Uri, header};

use crate::http1::{BodyError, read_body_limited};

/// Go's `ParseForm` limit on a form body.
const MAX_FORM: usize = 10 << 20;

/// Why a request's form could not be parsed. The text is the HTTP 400 body.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The urlencoded body could not be read.
    #[error("reading form body: {0}")]
    Body(#[from] BodyError),
}

/// Parsed query and form-body parameters of one request.
#[derive(Debug, Default, Clone)]
pub struct Form {
    query: Vec<(String, String)>,
    post: Vec<(String, String)>,
}

fn parse(s: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(s).into_owned().collect()
}

impl Form {
    /// Parses only the query string.
    pub fn from_query(uri: &Uri) -> Form {
        Form {
            query: parse(uri.query().unwrap_or("").as_bytes()),
            post: Vec::new(),
        }
    }

    /// Parses the query and, for POST/PUT/PATCH with a urlencoded content
    /// type, the body (as Go's `ParseForm` does).
    pub async fn parse(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Form, FormError> {
        let mut f = Form::from_query(uri);
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
        if is_form && (method == Method::POST || method == Method::PUT || method == Method::PATCH) {
            let bytes = read_body_limited(body, MAX_FORM).await?;
            f.post = parse(&bytes);
        }
        Ok(f)
    }

    /// Go's `FormValue`: the first value from the body, else from the query.
    pub fn value(&self, key: &str) -> String {
        self.post
            .iter()
            .chain(self.query.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Go's `r.Form[key]`: every value, body values first.
    pub fn values(&self, key: &str) -> Vec<String> {
        self.post
            .iter()
            .chain(self.query.iter())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Go's `r.PostForm[key]`: every value from the body only.
    pub fn post_values(&self, key: &str) -> Vec<String> {
        self.post
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value from the query only.
    pub fn query_value(&self, key: &str) -> String {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Go's `strconv.ParseBool`, with anything unparsable counting as false.
pub fn parse_bool(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_wins_over_query_and_post_values_are_body_only() {
        let uri: Uri = "/exec?cmd=q&cmdArg=fromquery".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let f = Form::parse(
            &Method::POST,
            &uri,
            &h,
            Body::from("cmd=b&cmdArg=1&cmdArg=2"),
        )
        .await
        .unwrap();
        assert_eq!(f.value("cmd"), "b");
        assert_eq!(f.post_values("cmdArg"), vec!["1", "2"]);
        assert_eq!(f.values("cmdArg"), vec!["1", "2", "fromquery"]);
        assert_eq!(f.query_value("cmd"), "q");
    }

    #[tokio::test]
    async fn oversized_form_body_is_a_typed_error() {
        let uri: Uri = "/exec".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let big = vec![b'a'; MAX_FORM + 1];
        let err = Form::parse(&Method::POST, &uri, &h, Body::from(big))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FormError::Body(BodyError::TooLarge)),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "reading form body: length limit exceeded");
    }

    #[test]
    fn bools_like_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_bool(t));
        }
        for f in ["0", "yes", "", "tRUE"] {
            assert!(!parse_bool(f));
        }
    }
}
