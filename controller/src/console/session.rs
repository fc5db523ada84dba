//! How a browser presents the controller's credentials (docs/console.md, "Authentication"). With
//! security on, the console and its APIs take what `/api/v1/cluster` takes (`Authorization: Bearer`
//! with the admin or cluster token, or a verified client certificate), and also the token in the
//! `chronik_console` cookie: `/login` is a form that checks a token like a header would and sets
//! that cookie.
//!
//! What must stay true: the cookie is `HttpOnly` (page scripts never see the token), `SameSite=
//! Strict` (other sites cannot make the browser send it) and `Secure` when the listener is HTTPS;
//! it is checked exactly as a header is, on every request, so a changed token file logs everyone
//! out at the next restart; a token is never logged or echoed back.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use chronik_control_auth::AUTHORIZATION;

use crate::api::auth::{Api, Authenticator, Caller, Refusal};
use crate::api::http_listener::HttpPeer;

/// The cookie that carries the token.
pub const COOKIE: &str = "chronik_console";

/// The login page.
const LOGIN_PAGE: &str = include_str!("assets/login.html");

/// What the HTTP layer knows about the caller's credentials, checked.
pub fn check(auth: &Authenticator, request: &Request) -> Result<Caller, Refusal> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<HttpPeer>>()
        .map(|ConnectInfo(peer)| *peer);
    let verified_certificate = peer.is_some_and(|p| p.verified_certificate);
    let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let from_cookie = match header {
        Some(_) => None,
        None => cookie_token(request.headers()).map(|token| format!("Bearer {token}")),
    };
    let authorization = header.or(from_cookie.as_deref().map(str::as_bytes));
    let checked = auth.check(Api::Http, authorization, verified_certificate);
    if let Err(refusal) = checked {
        auth.log_refusal(Api::Http, peer.map(|p| p.addr), refusal);
    }
    checked
}

/// The token in the console cookie, if the request has one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode(value))
}

/// Pages: without credentials, a browser is sent to the login form.
pub async fn require_for_pages(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    match check(&auth, &request) {
        Ok(_) => next.run(request).await,
        Err(_) => Redirect::to("/login").into_response(),
    }
}

/// APIs: without credentials, 401 (403 for a caller in the wrong place), with the reason.
pub async fn require_for_apis(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    match check(&auth, &request) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            let status = match refusal.status().code() {
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            (
                status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{}\n", refusal.message()),
            )
                .into_response()
        }
    }
}

pub async fn login_page() -> Html<String> {
    Html(LOGIN_PAGE.replace("{{message}}", ""))
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Checks the token as a bearer header would be; on success sets the cookie and goes to `/`.
pub async fn login(
    State(auth): State<Arc<Authenticator>>,
    ConnectInfo(peer): ConnectInfo<HttpPeer>,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = form.token.trim();
    let authorization = format!("Bearer {token}");
    match auth.check(Api::Http, Some(authorization.as_bytes()), false) {
        Ok(_) => {
            let secure = if peer.tls { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
                percent_encode(token)
            );
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(refusal) => {
            auth.log_refusal(Api::Http, Some(peer.addr), refusal);
            let message = if auth.enabled() {
                "That token is neither this controller's admin token nor its cluster token."
            } else {
                "This controller does not require credentials."
            };
            (
                StatusCode::UNAUTHORIZED,
                Html(LOGIN_PAGE.replace(
                    "{{message}}",
                    &format!("<p class=\"error\" id=\"login-error\">{message}</p>"),
                )),
            )
                .into_response()
        }
    }
}

/// Clears the cookie.
pub async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("chronik_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// Tokens are visible ASCII, some of which (`;`, `,`, `"`, `\`, `%`) a cookie value cannot hold.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~+/=".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_the_cookie_encoding() {
        for token in [
            "plain-token-0123456789",
            "a;b,c\"d\\e%f=g+h/i",
            "~!@#$^&*()",
        ] {
            let encoded = percent_encode(token);
            assert!(!encoded.contains([';', ',', '"', '\\', ' ']), "{encoded}");
            assert_eq!(percent_decode(&encoded).as_deref(), Some(token));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; chronik_console=tok%3Ben; b=2"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("tok;en"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
