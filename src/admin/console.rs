//! The web console: static files embedded in the binary, served at
//! `/console/`. It talks to the admin API with the token the user types
//! (kept in sessionStorage); the assets themselves need no token.
//!
//! Every asset forbids framing (`X-Frame-Options`, CSP `frame-ancestors`:
//! no clickjacking) and runs only the console's own files: `index.html`
//! holds no inline script, style or event handler attribute, so the
//! policy needs no `'unsafe-inline'` and an injected `<script>` never runs.

use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("console/index.html");
const APP: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| asset("text/html; charset=utf-8", INDEX)),
        )
        .route(
            "/console/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP)),
        )
        .route(
            "/console/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
}

/// The console's content security policy: its own script, styles and API
/// (`connect-src 'self'`), no plugins, no framing, forms only to itself.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    /// The policy allows no inline code: the page must hold none.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = super::INDEX.to_ascii_lowercase();
        assert!(!page.contains("<style"), "inline <style>");
        assert!(!page.contains(" style="), "style attribute");
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..i + page[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        let handler = page
            .split(|c: char| c.is_whitespace())
            .any(|w| w.starts_with("on") && w.contains('='));
        assert!(!handler, "inline event handler attribute");
        assert!(!page.contains("javascript:"));
    }
}
