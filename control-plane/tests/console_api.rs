//! The console's routes over HTTP: the stats behind its charts
//! (`GET /v1/functions/{name}/stats`) counting real executions, and the files at
//! `/ui/` with their types, caching, security headers, redirect and 404s.

mod support;

use reqwest::{header, Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn stats_count_the_last_hour_by_minute() {
    let server = Server::start().await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    server
        .deploy(stdio_function("fails", "exit 3", json!({})))
        .await;
    for i in 0..3 {
        let (status, body) = server.invoke("echo", json!({"i": i})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = server.invoke("fails", json!({})).await;
    assert_ne!(status, StatusCode::OK, "{body}");

    let (status, _, echo) = server
        .call(server.request(Method::GET, "/v1/functions/echo/stats"))
        .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["function"], "echo");
    assert_eq!(echo["bucketSeconds"], 60);
    assert_eq!((&echo["finished"], &echo["errors"]), (&json!(3), &json!(0)));
    assert_eq!(echo["last"]["status"], "success", "{echo}");
    let minutes = echo["minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 60);
    let counted: u64 = minutes
        .iter()
        .map(|m| m["finished"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 3, "every execution is in a minute: {echo}");
    // The runs happened in the last minute or two (a minute may have turned since).
    assert!(minutes[..58].iter().all(|m| m["finished"] == 0), "{echo}");
    let p50 = echo["p50Ms"].as_f64().expect("a p50");
    let p99 = echo["p99Ms"].as_f64().expect("a p99");
    assert!(p50 > 0.0 && p99 >= p50, "{echo}");
    let starts: Vec<u64> = minutes
        .iter()
        .map(|m| m["startMs"].as_u64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] == 60_000),
        "{starts:?}"
    );

    let (_, _, fails) = server
        .call(server.request(Method::GET, "/v1/functions/fails/stats"))
        .await;
    assert_eq!(
        (&fails["finished"], &fails["errors"]),
        (&json!(1), &json!(1)),
        "{fails}"
    );
    assert_eq!(fails["last"]["status"], "error", "{fails}");

    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/nothing/stats"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let response = server.get_open("/v1/functions/echo/stats").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_console_files_are_served_with_their_headers() {
    let server = Server::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", server.url));

    // The start-up line leads to the console and to the token's file, never the token.
    let said = server.stderr();
    let line = said
        .lines()
        .find(|line| line.starts_with("console: "))
        .unwrap_or_else(|| panic!("no console line in:\n{said}"));
    assert!(line.contains(&format!("{}/ui/", server.url)), "{line}");
    assert!(
        line.contains("#token=$(cat ") && line.contains("admin-token"),
        "{line}"
    );
    let token = server.token.as_deref().expect("the admin token");
    assert!(!said.contains(token), "the token was printed:\n{said}");

    let response = get("/ui").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()[header::LOCATION], "/ui/");

    // No token needed for the files; the page itself signs in.
    let page = get("/ui/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<script type=\"module\" src=\"app.js\">"),
        "{html}"
    );

    let again = get("/ui/")
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());

    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let response = get(&format!("/ui/{file}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], kind, "{file}");
        assert_ne!(response.headers()[header::ETAG], etag.as_str(), "{file}");
    }
    for missing in ["/ui/nope.js", "/ui/..%2fCargo.toml", "/ui/app.js/x"] {
        let response = get(missing).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    // The API's refusal of other sites' pages covers the console too.
    let response = get("/ui/")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
