//! The browser console at `/ui/`: a handful of hand-written files compiled into the
//! binary and served from the API's own origin. The pages sign in with an API token
//! and use the public API like any client; the files themselves hold nothing secret
//! and need no token. Every answer carries a strict Content-Security-Policy (scripts
//! and styles from this origin only, no inline code) and an ETag.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// The policy of every console answer: nothing from elsewhere, nothing inline, no
/// framing, no form posts.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// An [`Asset`] of `control-plane/ui/`.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../ui/", $name)),
        }
    };
}

/// Every file served; anything else under `/ui/` is a 404.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", JS),
    asset!("dom.js", JS),
    asset!("api.js", JS),
    asset!("pages.js", JS),
    asset!("execution.js", JS),
    asset!("form.js", JS),
    asset!("charts.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The ETag of each asset (a hash of its bytes), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body);
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    })
}

/// `/ui` (redirected to `/ui/`), `/ui/` (the page) and `/ui/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    // Revalidated on each load (a 304 when unchanged), so an upgraded server's files
    // are never mixed with a cached older one.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_name_and_etag() {
        let mut names: Vec<_> = ASSETS.iter().map(|asset| asset.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(etags().len(), ASSETS.len());
        assert!(ASSETS.iter().all(|asset| !asset.body.is_empty()));
    }

    #[test]
    fn the_page_loads_no_inline_script() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for tag in page.split("<script").skip(1) {
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        assert!(!page.contains("style="), "inline style in index.html");
    }
}
