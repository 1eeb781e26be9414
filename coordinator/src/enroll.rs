//! The enrolment page: `GET /enroll/<token>` shows a form to set a
//! password, `POST` sets it and spends the link. The form carries a CSRF
//! token bound to the link, and posts from another origin are refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::Coordinator;
use crate::accounts::AccountError;
use crate::audit::Event;
use crate::password;
use crate::webform::{escape, page, same_origin};

/// The routes.
pub fn router(c: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/enroll/{token}", get(show).post(submit))
        .with_state(c)
}

/// An HTML answer that is never cached, framed or given away as a
/// referrer (the URL holds the enrolment token).
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(status, page(title, &format!("<p>{}</p>", escape(text))))
}

fn bad_link() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Enrolment",
        &AccountError::BadLink.to_string(),
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "enrolment failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Enrolment",
        "Something went wrong on the coordinator; ask its administrator.",
    )
}

fn form(c: &Coordinator, token: &str, email: &str, problem: Option<&str>) -> String {
    let problem = problem.map_or_else(String::new, |p| {
        format!("<p role=\"alert\"><strong>{}</strong></p>", escape(p))
    });
    page(
        "Set your gomote password",
        &format!(
            "<p>Account: {email}</p>{problem}\
             <form method=\"post\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label>Password (at least {min} characters) <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required minlength=\"{min}\"></label></p>\
             <p><label>Again <input type=\"password\" name=\"password2\" autocomplete=\"new-password\" required minlength=\"{min}\"></label></p>\
             <p><button type=\"submit\">Set password</button></p></form>",
            email = escape(email),
            csrf = c.csrf.issue(token),
            min = password::MIN_LEN,
        ),
    )
}

async fn show(State(c): State<Arc<Coordinator>>, Path(token): Path<String>) -> Response {
    let c2 = c.clone();
    let t = token.clone();
    match tokio::task::spawn_blocking(move || c2.accounts.enrolment(&t)).await {
        Ok(Ok(u)) => html(StatusCode::OK, form(&c, &token, &u.email, None)),
        Ok(Err(AccountError::BadLink)) => bad_link(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn submit(
    State(c): State<Arc<Coordinator>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refused = || {
        message(
            StatusCode::FORBIDDEN,
            "Enrolment",
            "This form was not sent from its page; open the enrolment link again.",
        )
    };
    if !same_origin(&headers, &c.public_url) {
        return refused();
    }
    let mut csrf = None;
    let mut pw = None;
    let mut pw2 = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = Some(v.into_owned()),
            "password" => pw = Some(v.into_owned()),
            "password2" => pw2 = Some(v.into_owned()),
            _ => {}
        }
    }
    if !csrf.is_some_and(|t| c.csrf.verify(&token, &t)) {
        return refused();
    }
    let (pw, pw2) = (pw.unwrap_or_default(), pw2.unwrap_or_default());
    // Hashing is slow on purpose, and the file is read and written under a
    // lock: both off the async workers.
    let c2 = c.clone();
    let t = token.clone();
    let done = tokio::task::spawn_blocking(move || {
        let user = c2.accounts.enrolment(&t)?;
        if let Err(e) = password::check_new(&pw, &pw2) {
            return Ok(Err((user.email, e)));
        }
        let phc = match password::hash(&pw) {
            Ok(h) => h,
            Err(e) => return Ok(Err((user.email, e))),
        };
        c2.accounts.enrol(&t, phc).map(Ok)
    })
    .await;
    match done {
        Ok(Ok(Ok(email))) => {
            c.audit.record(Event::UserEnroll {
                subject: email.clone(),
            });
            tracing::info!(user = %email, "password set through enrolment link");
            message(
                StatusCode::OK,
                "Password set",
                &format!("The password of {email} is set. You can close this page."),
            )
        }
        Ok(Ok(Err((email, e)))) => html(
            StatusCode::BAD_REQUEST,
            form(&c, &token, &email, Some(&e.to_string())),
        ),
        Ok(Err(AccountError::BadLink)) => bad_link(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{ENROL_TTL, Role, UserState};

    async fn post(app: &Router, token: &str, body: String, origin: Option<&str>) -> StatusCode {
        use tower::ServiceExt as _;
        let mut req = http::Request::post(format!("/enroll/{token}"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        app.clone()
            .oneshot(req.body(axum::body::Body::from(body)).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn csrf_and_origin_are_checked() {
        let (c, _d) = crate::testing::coordinator(crate::testing::FakePool::new("p", 1));
        let link = c
            .accounts
            .add("e@example.com", Role::User, ENROL_TTL)
            .unwrap();
        let app = router(c.clone());
        let pw = "password=a+long+password&password2=a+long+password";
        assert_eq!(
            post(&app, &link, pw.into(), None).await,
            StatusCode::FORBIDDEN
        );
        let wrong = c.csrf.issue("gme_other");
        assert_eq!(
            post(&app, &link, format!("csrf={wrong}&{pw}"), None).await,
            StatusCode::FORBIDDEN
        );
        let good = c.csrf.issue(&link);
        assert_eq!(
            post(
                &app,
                &link,
                format!("csrf={good}&{pw}"),
                Some("https://evil.example")
            )
            .await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            c.accounts.find("e@example.com").unwrap().unwrap().state,
            UserState::Pending
        );
        assert_eq!(
            post(
                &app,
                &link,
                format!("csrf={good}&password=short&password2=short"),
                None
            )
            .await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            post(&app, &link, format!("csrf={good}&{pw}"), None).await,
            StatusCode::OK
        );
        assert_eq!(
            c.accounts.find("e@example.com").unwrap().unwrap().state,
            UserState::Active
        );
        assert_eq!(
            post(&app, &link, format!("csrf={good}&{pw}"), None).await,
            StatusCode::NOT_FOUND
        );
    }
}
