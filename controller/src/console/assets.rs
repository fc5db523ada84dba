//! The console's page, stylesheet and script, embedded in the binary: no framework, no CDN, no
//! build step. `index.html` is one page for every view (the view is in the URL's fragment:
//! `#/topics/orders`), `console.js` renders the views from the JSON APIs and follows
//! `/api/v1/events`, and `login.html` is the form of `crate::console::session`.
//!
//! What must stay true: every asset is served with `Cache-Control: no-store` (a binary upgrade
//! shows its own page at once) and the page loads nothing from outside this controller.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

pub async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}
